"""The GitHub Actions workflows: actionlint-clean, the delivery rules they keep, and what
their `run:` steps do when run as the runner runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack_configs import ROOT
from zlh_infra.tooling.preview.derived_policy_config import derive, load_configs
from zlh_infra.tooling.preview.stack_files import stack_files_in

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
PR = load(WORKFLOWS / "pull-request.yml")
DEPLOY = load(WORKFLOWS / "deploy.yml")


def steps_using(job: Mapping[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def step(job: Mapping[str, Any], *, name: str | None = None, id_: str | None = None) -> Any:
    """The step with that name, or that id."""
    key, value = ("name", name) if name is not None else ("id", id_)
    return next(s for s in job["steps"] if s.get(key) == value)


# --- the runner's expressions, as far as these workflows use them ---------------------------

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
COMPARISON = re.compile(r"(.+?)\s*(==|!=)\s*'([^']*)'")
INDEXED = re.compile(r"([\w.]+)\[([\w.]+)\]")


def value(expression: str, context: Mapping[str, str]) -> str:
    """One expression: a name, ``name[other]``, or a comparison with a string literal.

    A name the context lacks is a KeyError: the workflow uses something this runner
    does not know, so the test says so rather than guessing.
    """
    if comparison := COMPARISON.fullmatch(expression):
        left, operator, literal = comparison.groups()
        return str((value(left, context) == literal) == (operator == "==")).lower()
    if indexed := INDEXED.fullmatch(expression):
        return context[f"{indexed[1]}.{context[indexed[2]]}"]
    return context[expression]


def substitute(text: str, context: Mapping[str, str]) -> str:
    return EXPRESSION.sub(lambda found: value(found[1], context), text)


def runs(entry: Mapping[str, Any], context: Mapping[str, str], *, failed: bool = False) -> bool:
    """Whether a job or step runs: its ``if:``, else ``success()``, after a failure or not."""
    condition = entry.get("if")
    if condition is None:
        return not failed
    expression = EXPRESSION.fullmatch(condition)
    text = expression[1] if expression else condition
    if text == "!cancelled()":
        return True
    return value(text, context) == "true"


class Runner:
    """A job's workspace and the files the runner gives its `run:` steps.

    ``python3`` and ``.venv/bin/python`` are this interpreter, importing this checkout's
    ``zlh_infra``: the environment may have been built from another checkout, whose code
    the steps would otherwise run.
    """

    def __init__(self, base: Path) -> None:
        self.workspace = base / "workspace"
        self.temp = base / "runner-temp"
        self.home = base / "home"
        self.bin = base / "bin"
        for path in (self.workspace, self.temp, self.home, self.bin):
            path.mkdir()
        # A wrapper, not a link: a link outside the environment would not find pyvenv.cfg.
        python3 = self.bin / "python3"
        python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        python3.chmod(0o755)
        (self.workspace / ".venv").symlink_to(Path(sys.prefix))
        self.files = {
            name: base / name
            for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH")
        }
        for path in self.files.values():
            path.write_text("")
        found = self.shell('.venv/bin/python -c "import zlh_infra; print(zlh_infra.__file__)"')
        assert Path(found.stdout.strip()).is_relative_to(ROOT / "zlh_infra"), found

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.home),
            "PYTHONPATH": str(ROOT),
            "GITHUB_WORKSPACE": str(self.workspace),
            "RUNNER_TEMP": str(self.temp),
            **{name: str(path) for name, path in self.files.items()},
            **env,
        }

    def shell(self, script: str, env: Mapping[str, str] = {}) -> subprocess.CompletedProcess[str]:
        """A script as the runner runs ``run:``: bash -e -o pipefail, in the workspace."""
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.workspace,
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run(
        self, entry: Mapping[str, Any], context: Mapping[str, str] = {}, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """A step: its ``env:`` and its script with the expressions substituted."""
        given = {
            name: substitute(str(text), context) for name, text in entry.get("env", {}).items()
        }
        return self.shell(substitute(entry["run"], context), {**given, **env})

    def written(self, name: str) -> str:
        return self.files[name].read_text()

    def outputs(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.written("GITHUB_OUTPUT").splitlines())


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


#: ``tasks.py`` in a workspace: its preview task takes the arguments the real command line
#: takes, writes a stand-in report where ``--output`` says (into an existing directory, as
#: the real one does), and exits with PREVIEW_EXIT.
STUB_TASKS = """\
import json, os, sys
from pathlib import Path
from zlh_infra.cli import build_parser

task, *args = sys.argv[1:]
assert task == "preview", task
options = build_parser().parse_args(["preview", *args])
report = {"cwd": os.getcwd(), "format": options.format, "policy": not options.no_policy}
text = json.dumps(report) if options.format == "json" else "# Offline preview\\n"
options.output.write_text(text)
sys.exit(int(os.environ.get("PREVIEW_EXIT", "0")))
"""


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


def test_jobs_set_up_the_project_before_using_it() -> None:
    """Checkout, then the setup action, before a job runs Python or Pulumi."""
    for path in WORKFLOW_FILES:
        for name, job in load(path)["jobs"].items():
            uses = [str(s.get("uses", "")) for s in job["steps"]]
            runs_python = any("python" in s.get("run", "") for s in job["steps"])
            if runs_python or any(u.startswith("pulumi/actions@") for u in uses):
                assert uses[0].startswith("actions/checkout@"), name
                assert uses[1] == "./.github/actions/setup", name


def test_the_setup_uses_the_oldest_python_the_project_supports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [setup_python] = steps_using(load(SETUP_ACTION)["runs"], "actions/setup-python")
    assert project["requires-python"] == f">={setup_python['with']['python-version']}"


def test_the_setup_syncs_the_locked_environment_and_puts_uv_on_path(runner: Runner) -> None:
    """Pulumi.yaml's uv toolchain needs uv on PATH; tasks.py installs it into .tools/."""
    (runner.workspace / "tasks.py").write_text(
        "import sys\nopen('tasks-ran', 'w').write(' '.join(sys.argv[1:]))\n"
    )
    steps = load(SETUP_ACTION)["runs"]["steps"]
    result = runner.run(step({"steps": steps}, name="Locked environment"))
    assert result.returncode == 0, result.stderr
    assert (runner.workspace / "tasks-ran").read_text() == "sync"
    assert runner.written("GITHUB_PATH").splitlines() == [f"{runner.workspace}/.tools/bin"]


def test_pulumi_action_version_is_the_same_everywhere() -> None:
    versions = {
        s["uses"]
        for workflow in (PR, DEPLOY)
        for job in workflow["jobs"].values()
        for s in steps_using(job, "pulumi/actions")
    }
    assert len(versions) == 1


def pulumi_runs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]]:
    """Each `pulumi/actions` step with its job and each matrix context it runs in."""
    for path in WORKFLOW_FILES:
        for name, job in load(path)["jobs"].items():
            matrix = job.get("strategy", {}).get("matrix", {}).get("include", [{}])
            for entry in matrix:
                context = {f"matrix.{key}": str(v) for key, v in entry.items()}
                for pulumi in steps_using(job, "pulumi/actions"):
                    yield f"{path.name}:{name}", job, pulumi, context


PULUMI_RUNS = list(pulumi_runs())
RUN_IDS = [f"{where}:{context.get('matrix.stack', '')}" for where, _, _, context in PULUMI_RUNS]


@pytest.mark.parametrize(("where", "job", "pulumi", "context"), PULUMI_RUNS, ids=RUN_IDS)
def test_each_pulumi_run_gets_the_policy_pack_and_its_stacks_tokens(
    where: str, job: dict[str, Any], pulumi: dict[str, Any], context: dict[str, str]
) -> None:
    secrets = {f"secrets.{name}": name for name in re.findall(r"secrets\.(\w+)", str(job))}
    secrets |= {f"secrets.{v}": v for k, v in context.items() if k.endswith("_secret")}
    stack = substitute(pulumi["with"]["stack-name"], context)
    env = {name: substitute(text, {**context, **secrets}) for name, text in pulumi["env"].items()}
    assert env == {
        "PULUMI_ACCESS_TOKEN": "PULUMI_ACCESS_TOKEN",
        "PROXMOX_VE_API_TOKEN": f"PROXMOX_{stack.upper()}_API_TOKEN",
    }
    assert (ROOT / pulumi["with"]["policyPacks"] / "PulumiPolicy.yaml").is_file()


def test_the_real_preview_and_the_deploys_cover_both_stacks() -> None:
    stacks: dict[str, set[str]] = {"preview": set(), "up": set()}
    for _, _, pulumi, context in PULUMI_RUNS:
        stacks[pulumi["with"]["command"]].add(substitute(pulumi["with"]["stack-name"], context))
    assert stacks == {"preview": set(STACKS), "up": set(STACKS)}


@pytest.mark.parametrize(("where", "job", "pulumi", "context"), PULUMI_RUNS, ids=RUN_IDS)
def test_every_pulumi_run_gets_the_pack_config_derived_from_the_stack_files(
    runner: Runner,
    where: str,
    job: dict[str, Any],
    pulumi: dict[str, Any],
    context: dict[str, str],
) -> None:
    """The pack's addresses and nodes have one owner, the stack files, in CI as offline."""
    for path in (ROOT / "Pulumi.yaml", *stack_files_in(ROOT).values()):
        (runner.workspace / path.name).symlink_to(path)
    for entry in job["steps"][: job["steps"].index(pulumi)]:
        if "run" in entry and "zlh_infra policy-config" in entry["run"]:
            result = runner.run(entry, context)
            assert result.returncode == 0, result.stderr
    stack = substitute(pulumi["with"]["stack-name"], context)
    written = json.loads((runner.workspace / pulumi["with"]["policyPackConfigs"]).read_text())
    assert written == derive(stack, load_configs(ROOT, stack_files_in(ROOT)))


# --- pull requests -------------------------------------------------------------------------


def test_pull_requests_run_lint_types_and_tests() -> None:
    assert "pull_request" in PR["on"]
    assert "python3 tasks.py test" in [s.get("run") for s in PR["jobs"]["test"]["steps"]]


BACKEND_CHECK = step(PR["jobs"]["backend"], id_="check")
#: The check's inputs that say whether a secret is set, and the secret each names.
SECRET_FLAGS = {
    flag: found[1]
    for flag, text in BACKEND_CHECK["env"].items()
    if (found := re.fullmatch(r"\$\{\{ secrets\.(\w+) != '' \}\}", text))
}


def event(*, fork: bool = False, missing: str | None = None) -> dict[str, str]:
    """The run's context: a pull request, from a fork or not, with every secret but one."""
    secrets = {
        f"secrets.{name}": "" if name == missing else "set" for name in SECRET_FLAGS.values()
    }
    return {"github.event.pull_request.head.repo.fork": str(fork).lower(), **secrets}


def backend(runner: Runner, context: Mapping[str, str]) -> dict[str, str]:
    """The backend job, run: the ``needs.backend.*`` its dependants see."""
    result = runner.run(BACKEND_CHECK, context)
    assert result.returncode == 0, result.stderr
    steps = {f"steps.check.outputs.{k}": v for k, v in runner.outputs().items()}
    outputs = PR["jobs"]["backend"]["outputs"]
    return {f"needs.backend.outputs.{k}": substitute(v, steps) for k, v in outputs.items()}


def test_the_backend_check_covers_every_secret_the_real_preview_uses() -> None:
    preview = PR["jobs"]["preview"]
    used = set(re.findall(r"secrets\.(\w+)", str(preview)))
    used |= {entry["proxmox_token_secret"] for entry in preview["strategy"]["matrix"]["include"]}
    assert set(SECRET_FLAGS.values()) == used
    assert PR["jobs"]["backend"]["permissions"] == {}


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        (event(fork=True), "comes from a fork"),
        *((event(missing=secret), secret) for secret in sorted(SECRET_FLAGS.values())),
    ],
    ids=["fork", *(f"no-{secret}" for secret in sorted(SECRET_FLAGS.values()))],
)
def test_a_run_without_the_secrets_skips_the_real_preview_and_says_why(
    runner: Runner, context: dict[str, str], reason: str
) -> None:
    needs = backend(runner, context)
    assert reason in needs["needs.backend.outputs.reason"]
    assert not runs(PR["jobs"]["preview"], needs)

    offline = PR["jobs"]["offline-preview"]
    assert offline["needs"] == "backend" and runs(offline, needs)
    explain = step(offline, name="Say why the real preview did not run")
    assert runs(explain, needs)
    result = runner.run(explain, needs)
    assert result.returncode == 0, result.stderr
    skipped = f"> The real `pulumi preview` was skipped: {needs['needs.backend.outputs.reason']}."
    assert skipped in runner.written("GITHUB_STEP_SUMMARY").splitlines()


def test_a_run_with_the_secrets_runs_the_real_preview(runner: Runner) -> None:
    needs = backend(runner, event())
    assert needs == {"needs.backend.outputs.available": "true", "needs.backend.outputs.reason": ""}
    assert runs(PR["jobs"]["preview"], needs)
    explain = step(PR["jobs"]["offline-preview"], name="Say why the real preview did not run")
    assert not runs(explain, needs)


OFFLINE = PR["jobs"]["offline-preview"]
OFFLINE_PREVIEW = step(OFFLINE, name="Offline preview of both stacks, with the policy pack")


@pytest.mark.parametrize("code", [0, 1], ids=["passes", "mandatory-violation"])
def test_the_offline_preview_reaches_the_summary_and_fails_the_step_after(
    runner: Runner, code: int
) -> None:
    (runner.workspace / "tasks.py").write_text(STUB_TASKS)
    result = runner.run(OFFLINE_PREVIEW, PREVIEW_EXIT=str(code))
    assert result.returncode == code, result.stderr
    assert runner.written("GITHUB_STEP_SUMMARY") == "# Offline preview\n"
    [upload] = steps_using(OFFLINE, "actions/upload-artifact")
    kept = runner.workspace / upload["with"]["path"]
    report = json.loads((kept / "preview.json").read_text())
    assert report["policy"] is True
    assert (kept / "preview.md").is_file()


def test_after_a_failed_offline_preview_the_rest_still_runs_and_is_kept() -> None:
    after = OFFLINE["steps"][OFFLINE["steps"].index(OFFLINE_PREVIEW) + 1 :]
    assert after and all(runs(entry, {}, failed=True) for entry in after)


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "zlh",
        "GIT_AUTHOR_EMAIL": "zlh@example.invalid",
        "GIT_COMMITTER_NAME": "zlh",
        "GIT_COMMITTER_EMAIL": "zlh@example.invalid",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize("code", [0, 1], ids=["previews", "fails"])
def test_the_base_branch_is_previewed_by_its_own_code_in_a_worktree(
    runner: Runner, code: int
) -> None:
    # The worktree needs the base commit: the checkout fetches the whole history.
    assert steps_using(OFFLINE, "actions/checkout")[0]["with"]["fetch-depth"] == 0
    repo = runner.workspace
    git(repo, "init", "-q")
    (repo / "tasks.py").write_text(STUB_TASKS)
    git(repo, "add", "tasks.py")
    git(repo, "commit", "-q", "-m", "base")
    base_sha = git(repo, "rev-parse", "HEAD")
    (repo / "tasks.py").write_text("raise SystemExit('the head branch ran')\n")
    git(repo, "commit", "-q", "-am", "head")

    base = step(OFFLINE, name="Offline preview of the base branch")
    context = {"github.event.pull_request.base.sha": base_sha}
    result = runner.run(base, context, PREVIEW_EXIT=str(code))

    assert result.returncode == 0, result.stderr
    worktree = runner.temp / "base"
    assert git(worktree, "rev-parse", "HEAD") == base_sha
    report = json.loads((repo / "out" / "base.json").read_text())
    assert (report["cwd"], report["policy"]) == (str(worktree), False)
    warned = "::warning::the base branch's offline preview failed" in result.stdout
    assert warned == bool(code)


PLAN_DIFF = step(OFFLINE, name="Plan diff against the base branch")


def test_the_plan_diff_step_posts_the_diff_to_the_summary(
    runner: Runner, recorded_json: dict[str, Any]
) -> None:
    out = runner.workspace / "out"
    out.mkdir()
    head = json.loads(json.dumps(recorded_json))
    runtime = next(s for s in head["stacks"] if s["stack"] == "runtime")
    kept = [r for r in runtime["resources"] if "mc-skyblock" not in r["urn"]]
    removed = len(runtime["resources"]) - len(kept)
    runtime["resources"] = kept
    (out / "base.json").write_text(json.dumps(recorded_json))
    (out / "preview.json").write_text(json.dumps(head))

    result = runner.run(PLAN_DIFF)
    assert result.returncode == 0, result.stderr
    text = runner.written("GITHUB_STEP_SUMMARY")
    assert text.startswith("# Plan diff\n")
    assert removed > 1
    assert f"## Stack `runtime`: {removed} to delete" in text
    assert (out / "plan-diff.md").read_text() == text


def test_without_a_base_preview_the_summary_says_there_is_no_plan_diff(runner: Runner) -> None:
    (runner.workspace / "out").mkdir()
    (runner.workspace / "out" / "preview.json").write_text("{}")
    result = runner.run(PLAN_DIFF)
    assert result.returncode == 0, result.stderr
    assert runner.written("GITHUB_STEP_SUMMARY").startswith("No plan diff:")
    assert not (runner.workspace / "out" / "plan-diff.md").exists()


# --- deploys -------------------------------------------------------------------------------


def test_main_deploys_core_then_runtime() -> None:
    assert DEPLOY["on"] == {"push": {"branches": ["main"]}}
    assert set(DEPLOY["jobs"]) == set(STACKS)
    runtime = DEPLOY["jobs"]["runtime"]
    assert runtime["needs"] == "core"
    assert not runs(runtime, {"needs.core.result": "failure"})
    assert runs(runtime, {"needs.core.result": "success"})
    assert "needs" not in DEPLOY["jobs"]["core"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_stack_deploys_its_own_stack_alone_behind_its_own_environment(stack: str) -> None:
    job = DEPLOY["jobs"][stack]
    [pulumi] = steps_using(job, "pulumi/actions")
    assert (pulumi["with"]["command"], pulumi["with"]["stack-name"]) == ("up", stack)
    # A deploy under way is never cancelled halfway.
    assert job["concurrency"]["cancel-in-progress"] is False
    others = [other for name, other in DEPLOY["jobs"].items() if name != stack]
    # Each stack's approvals are its own.
    assert job["environment"] not in {other["environment"] for other in others}


def test_deploy_concurrency_groups_are_per_stack() -> None:
    groups = [job["concurrency"]["group"] for job in DEPLOY["jobs"].values()]
    assert len(set(groups)) == len(groups) == len(STACKS)
    assert "concurrency" not in DEPLOY  # a workflow-wide group would serialise both stacks


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


@pytest.mark.parametrize("stack", STACKS)
def test_the_ssh_agent_step_holds_the_stacks_key_for_the_later_steps(
    runner: Runner, stack: str
) -> None:
    agent = step(DEPLOY["jobs"][stack], name="SSH agent for the node's shell")
    [secret] = re.findall(r"secrets\.(\w+)", str(agent["env"]))
    assert secret == f"PROXMOX_{stack.upper()}_SSH_KEY"

    without = runner.run(agent, {f"secrets.{secret}": ""})
    assert (without.returncode, runner.written("GITHUB_ENV")) == (0, "")

    key = runner.home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    pid_file = runner.home / "agent.pid"
    # The agent outlives the step, as on the runner; its pid is kept to end it here.
    agent = {**agent, "run": agent["run"] + f'echo "$SSH_AGENT_PID" > {pid_file}\n'}
    result = runner.run(agent, {f"secrets.{secret}": key.read_text()})
    try:
        assert result.returncode == 0, result.stderr
        [exported] = runner.written("GITHUB_ENV").splitlines()
        name, _, sock = exported.partition("=")
        assert name == "SSH_AUTH_SOCK"
        held = runner.shell("ssh-add -L", {"SSH_AUTH_SOCK": sock})
        public = (runner.home / "id_ed25519.pub").read_text().split()[:2]
        assert held.stdout.split()[:2] == public
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
