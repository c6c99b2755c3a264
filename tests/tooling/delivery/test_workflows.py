"""The GitHub Actions workflows: actionlint-clean, and the delivery rules they must keep."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack_configs import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
SETUP_ACTION = ROOT / ".github" / "actions" / "setup" / "action.yml"
STACKS = ("core", "runtime")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})$")


def tool(name: str) -> str:
    """A dev dependency's binary: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} not found: install the dev dependencies (`python3 tasks.py sync`)"
    return found


def actionlint(*paths: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # ShellCheck from the dev dependencies checks the `run:` scripts, whatever the machine has.
    command = [tool("actionlint"), "-no-color", "-oneline", "-shellcheck", tool("shellcheck")]
    return subprocess.run(
        [*command, "-pyflakes=", *map(str, paths)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the key `on` as true.
    if True in data:
        data["on"] = data.pop(True)
    return data


WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.y*ml"))


@pytest.fixture(scope="module")
def pr() -> dict[str, Any]:
    return load(WORKFLOWS / "pull-request.yml")


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    return load(WORKFLOWS / "deploy.yml")


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def step(job: dict[str, Any], *, name: str | None = None, id_: str | None = None) -> dict[str, Any]:
    """The step with that name, or that id."""
    key, value = ("name", name) if name is not None else ("id", id_)
    return next(s for s in job["steps"] if s.get(key) == value)


def run_script(script: str, env: dict[str, str], cwd: Path) -> None:
    """A `run:` step as the runner does it: bash -e, with the step's environment."""
    subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        check=True,
        timeout=120,
    )


# --- actionlint ----------------------------------------------------------------------------


def test_there_are_workflows() -> None:
    assert [p.name for p in WORKFLOW_FILES] == ["deploy.yml", "pull-request.yml"]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actionlint_finds_nothing(path: Path) -> None:
    result = actionlint(path.relative_to(ROOT))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_actionlint_does_report_findings(tmp_path: Path) -> None:
    """The check above would pass vacuously with a linter that cannot fail."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo $UNQUOTED\n      - uses: pulumi/actions@v7\n"
        "        with:\n          stak-name: core\n"
    )
    result = actionlint(workflows / "bad.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert "SC2086" in result.stdout  # ShellCheck runs
    assert 'input "stak-name" is not defined' in result.stdout  # action inputs are known


# --- rules for every workflow ---------------------------------------------------------------


@pytest.mark.parametrize("path", [*WORKFLOW_FILES, SETUP_ACTION], ids=lambda p: p.name)
def test_actions_are_pinned_to_a_version(path: Path) -> None:
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)", path.read_text(), re.MULTILINE)
    assert uses
    for action in uses:
        assert action.startswith("./") or PINNED.match(action), action


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_permissions_are_minimal_per_job(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        granted = job["permissions"]
        assert set(granted.items()) <= {("contents", "read"), ("pull-requests", "write")}, name
        if "pull-requests" in granted:
            # Only the job that comments the real preview on the PR.
            assert steps_using(job, "pulumi/actions")[0]["with"]["comment-on-pr"] is True


def test_the_project_is_set_up_with_setup_python_then_tasks_py() -> None:
    action = load(SETUP_ACTION)
    steps = action["runs"]["steps"]
    assert steps[0]["uses"].startswith("actions/setup-python@")
    assert steps[0]["with"]["python-version"] == "3.11"
    assert "python3 tasks.py sync" in steps[-1]["run"]
    # Pulumi.yaml's uv toolchain needs uv on PATH; tasks.py installs it into .tools/.
    assert '"$GITHUB_WORKSPACE/.tools/bin" >> "$GITHUB_PATH"' in steps[-1]["run"]
    for path in WORKFLOW_FILES:
        for name, job in load(path)["jobs"].items():
            uses = [str(s.get("uses", "")) for s in job["steps"]]
            runs_python = any("tasks.py" in s.get("run", "") for s in job["steps"])
            if runs_python or any(u.startswith("pulumi/actions@") for u in uses):
                # Checkout, then the setup action, before anything else.
                assert uses[0].startswith("actions/checkout@"), name
                assert uses[1] == "./.github/actions/setup", name


def test_pulumi_action_version_is_the_same_everywhere(
    pr: dict[str, Any], deploy: dict[str, Any]
) -> None:
    versions = {
        s["uses"]
        for workflow in (pr, deploy)
        for job in workflow["jobs"].values()
        for s in steps_using(job, "pulumi/actions")
    }
    assert len(versions) == 1


# --- pull requests -------------------------------------------------------------------------


def test_pull_requests_run_lint_types_and_tests(pr: dict[str, Any]) -> None:
    assert "pull_request" in pr["on"]
    runs = [s.get("run") for s in pr["jobs"]["test"]["steps"]]
    assert "python3 tasks.py test" in runs


def test_the_real_preview_runs_per_stack_with_policies_and_an_edited_comment(
    pr: dict[str, Any],
) -> None:
    job = pr["jobs"]["preview"]
    assert job["if"] == "needs.backend.outputs.available == 'true'"
    matrix = {entry["stack"]: entry for entry in job["strategy"]["matrix"]["include"]}
    assert set(matrix) == set(STACKS)
    assert {s: matrix[s]["proxmox_token_secret"] for s in STACKS} == {
        "core": "PROXMOX_CORE_API_TOKEN",
        "runtime": "PROXMOX_RUNTIME_API_TOKEN",
    }
    [pulumi] = steps_using(job, "pulumi/actions")
    assert pulumi["with"] == {
        "command": "preview",
        "stack-name": "${{ matrix.stack }}",
        "policyPacks": "policy",
        "policyPackConfigs": "policy-config.json",
        "comment-on-pr": True,
        "edit-pr-comment": True,
        "comment-on-summary": True,
    }
    assert pulumi["env"] == {
        "PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}",
        "PROXMOX_VE_API_TOKEN": "${{ secrets[matrix.proxmox_token_secret] }}",
    }


def backend_check(pr: dict[str, Any], tmp_path: Path, **env: str) -> dict[str, str]:
    check = step(pr["jobs"]["backend"], id_="check")
    output = tmp_path / "github-output"
    output.write_text("")
    run_script(check["run"], {**env, "GITHUB_OUTPUT": str(output)}, tmp_path)
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


ALL_SECRETS = {"HAS_PULUMI_TOKEN": "true", "HAS_CORE_TOKEN": "true", "HAS_RUNTIME_TOKEN": "true"}


def test_the_backend_check_reads_the_fork_flag_and_the_secrets(pr: dict[str, Any]) -> None:
    env = step(pr["jobs"]["backend"], id_="check")["env"]
    assert env == {
        "FORK": "${{ github.event.pull_request.head.repo.fork }}",
        "HAS_PULUMI_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN != '' }}",
        "HAS_CORE_TOKEN": "${{ secrets.PROXMOX_CORE_API_TOKEN != '' }}",
        "HAS_RUNTIME_TOKEN": "${{ secrets.PROXMOX_RUNTIME_API_TOKEN != '' }}",
    }
    assert pr["jobs"]["backend"]["permissions"] == {}


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({**ALL_SECRETS, "FORK": "true"}, "comes from a fork"),
        ({**ALL_SECRETS, "FORK": "false", "HAS_PULUMI_TOKEN": "false"}, "PULUMI_ACCESS_TOKEN"),
        ({**ALL_SECRETS, "FORK": "false", "HAS_RUNTIME_TOKEN": "false"}, "PROXMOX_RUNTIME"),
    ],
    ids=["fork", "no-pulumi-token", "no-proxmox-token"],
)
def test_a_run_without_the_secrets_skips_the_real_preview_and_says_why(
    pr: dict[str, Any], tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    outputs = backend_check(pr, tmp_path, **env)
    assert outputs["available"] == "false"
    assert reason in outputs["reason"]

    # The offline job puts the reason at the top of its summary.
    job = pr["jobs"]["offline-preview"]
    assert job["needs"] == "backend"
    explain = step(job, name="Say why the real preview did not run")
    assert explain["if"] == "needs.backend.outputs.available != 'true'"
    assert explain["env"] == {"REASON": "${{ needs.backend.outputs.reason }}"}
    summary = tmp_path / "summary.md"
    run_script(
        explain["run"], {"REASON": outputs["reason"], "GITHUB_STEP_SUMMARY": str(summary)}, tmp_path
    )
    assert f"> The real `pulumi preview` was skipped: {outputs['reason']}." in summary.read_text()


def test_a_run_with_the_secrets_runs_the_real_preview(pr: dict[str, Any], tmp_path: Path) -> None:
    assert backend_check(pr, tmp_path, FORK="false", **ALL_SECRETS) == {
        "available": "true",
        "reason": "",
    }


def test_the_offline_preview_goes_to_the_summary_and_an_artifact(pr: dict[str, Any]) -> None:
    job = pr["jobs"]["offline-preview"]
    preview = step(job, name="Offline preview of both stacks, with the policy pack")["run"]
    assert "python3 tasks.py preview --format markdown --output out/preview.md" in preview
    assert "python3 tasks.py preview --format json --output out/preview.json" in preview
    assert 'cat out/preview.md >> "$GITHUB_STEP_SUMMARY"' in preview
    # A mandatory policy violation fails the job, after the summary is written.
    assert preview.rstrip().endswith('exit "$status"')
    [upload] = steps_using(job, "actions/upload-artifact")
    assert upload["with"]["path"] == "out/"
    assert upload["if"] == "${{ !cancelled() }}"


def test_the_base_branch_is_previewed_in_a_worktree(pr: dict[str, Any]) -> None:
    job = pr["jobs"]["offline-preview"]
    assert steps_using(job, "actions/checkout")[0]["with"]["fetch-depth"] == 0
    base = step(job, name="Offline preview of the base branch")
    assert base["env"] == {"BASE_SHA": "${{ github.event.pull_request.base.sha }}"}
    assert 'git worktree add --detach "$RUNNER_TEMP/base" "$BASE_SHA"' in base["run"]
    assert '--format json --output "$GITHUB_WORKSPACE/out/base.json"' in base["run"]


def test_the_plan_diff_step_posts_the_diff_to_the_summary(
    pr: dict[str, Any], tmp_path: Path, recorded_json: dict[str, Any]
) -> None:
    job = pr["jobs"]["offline-preview"]
    plan = step(job, name="Plan diff against the base branch")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / "out").mkdir()
    head = json.loads(json.dumps(recorded_json))
    runtime = next(s for s in head["stacks"] if s["stack"] == "runtime")
    kept = [r for r in runtime["resources"] if "mc-skyblock" not in r["urn"]]
    removed = len(runtime["resources"]) - len(kept)
    runtime["resources"] = kept
    (tmp_path / "out" / "base.json").write_text(json.dumps(recorded_json))
    (tmp_path / "out" / "preview.json").write_text(json.dumps(head))
    summary = tmp_path / "summary.md"

    run_script(plan["run"], {"GITHUB_STEP_SUMMARY": str(summary)}, tmp_path)
    text = summary.read_text()
    assert text.startswith("# Plan diff\n")
    assert removed > 1
    assert f"## Stack `runtime`: {removed} to delete" in text
    assert (tmp_path / "out" / "plan-diff.md").read_text() == text


# --- deploys -------------------------------------------------------------------------------


def test_main_deploys_core_then_runtime(deploy: dict[str, Any]) -> None:
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    assert set(deploy["jobs"]) == set(STACKS)
    runtime = deploy["jobs"]["runtime"]
    assert runtime["needs"] == "core"
    assert runtime["if"] == "needs.core.result == 'success'"
    assert "needs" not in deploy["jobs"]["core"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_deploys_alone_behind_its_environment_with_policies(
    deploy: dict[str, Any], stack: str
) -> None:
    job = deploy["jobs"][stack]
    assert job["concurrency"] == {"group": f"deploy-{stack}", "cancel-in-progress": False}
    assert job["environment"] == f"production-{stack}"
    [pulumi] = steps_using(job, "pulumi/actions")
    assert pulumi["with"] == {
        "command": "up",
        "stack-name": stack,
        "policyPacks": "policy",
        "policyPackConfigs": "policy-config.json",
    }
    assert pulumi["env"] == {
        "PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}",
        "PROXMOX_VE_API_TOKEN": f"${{{{ secrets.PROXMOX_{stack.upper()}_API_TOKEN }}}}",
    }


def test_deploy_concurrency_groups_are_per_stack(deploy: dict[str, Any]) -> None:
    groups = [job["concurrency"]["group"] for job in deploy["jobs"].values()]
    assert len(set(groups)) == len(groups) == len(STACKS)
    assert "concurrency" not in deploy  # a workflow-wide group would serialise both stacks


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_jobs_that_reach_the_nodes_run_on_the_operators_runner(path: Path) -> None:
    """The nodes admit their API and SSH from proxmox.adminSources only, never the internet."""
    for name, job in load(path)["jobs"].items():
        text = yaml.safe_dump(job)
        reaches_nodes = "PROXMOX_" in text and "pulumi/actions@" in text
        if reaches_nodes:
            assert job["runs-on"] == ["self-hosted", "zlh-deploy"], name
        else:
            assert job["runs-on"] == "ubuntu-latest", name


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_pulumi_run_gets_the_pack_config_derived_from_the_stack_files(path: Path) -> None:
    """The pack's addresses and nodes have one owner, the stack files, in CI as offline."""
    for name, job in load(path)["jobs"].items():
        steps = job.get("steps", [])
        for index, entry in enumerate(steps):
            if not str(entry.get("uses", "")).startswith("pulumi/actions@"):
                continue
            config = entry["with"]["policyPackConfigs"]
            writers = [
                s.get("run", "")
                for s in steps[:index]
                if "zlh_infra policy-config" in s.get("run", "")
            ]
            assert any(f"--output {config}" in run for run in writers), name
