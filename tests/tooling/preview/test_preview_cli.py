"""``python -m zlh_infra preview``: arguments, stack files, output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pulumi
import pytest

from tests.tooling.preview.preview_programs import container
from zlh_infra import cli
from zlh_infra.errors import ConfigError
from zlh_infra.tooling.preview import command
from zlh_infra.tooling.preview.recording import Diagnostic, StackRecording

REPO = Path(__file__).resolve().parents[3]
SECRET = "cli-secret-41b7"


def program() -> None:
    config = pulumi.Config("zlh-infra")
    if config.get_bool("fail"):
        raise ConfigError(["zlh-infra:fail is set"])
    print("chatter from the program")
    container(config.require("guest"), 100, "10.10.0.10/24")
    if config.get("secret") is not None:
        pulumi.export("secret", config.require_secret("secret"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: zlh-infra\nruntime: python\n")
    (tmp_path / "Pulumi.core.yaml").write_text(
        "config:\n  zlh-infra:guest: zpack-api\n  zlh-infra:secret:\n    secure: v1:xyz\n"
    )
    (tmp_path / "Pulumi.runtime.yaml").write_text("config:\n  zlh-infra:guest: zlh-build\n")
    return tmp_path


def run(project: Path, *argv: str, checks: Iterable[command.Check] = ()) -> int:
    """The CLI on a toy project: its program, and only the given checks (no policy pack)."""
    return cli.main(["preview", *argv], program=program, cwd=project, checks=list(checks))


def test_clean_preview_exits_0_with_pure_json_on_stdout(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "--format", "json") == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # the program's print went to stderr
    assert [s["stack"] for s in data["stacks"]] == ["core", "runtime"]
    assert data["stacks"][0]["outputs"]["secret"] == "[secret]"
    assert "chatter from the program" in err


def test_output_file_and_stack_selection(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = project / "out" / "summary.md"
    target.parent.mkdir()
    assert run(project, "--stack", "runtime", "--format", "markdown", "--output", str(target)) == 0
    assert capsys.readouterr().out == ""
    text = target.read_text()
    assert "## Stack `runtime`" in text and "## Stack `core`" not in text
    assert "| 100 | zlh-build |" in text


def test_stack_file_override(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text("config:\n  zlh-infra:guest: zlh-other\n")
    assert run(project, "--stack", "runtime", "--stack-file", f"runtime={other}") == 0
    assert "container zlh-other" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--stack", "staging"],
        ["--format", "yaml"],
        ["--stack-file", "runtime"],
        ["--stack-file", "prod=x.yaml"],
    ],
)
def test_usage_errors_exit_2(
    project: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        run(project, *argv)
    assert raised.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_stack_file_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "Pulumi.runtime.yaml").unlink()
    assert run(project) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "stack file not found" in err and "Pulumi.runtime.yaml" in err
    assert "Traceback" not in err


def test_override_pointing_nowhere_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "--stack", "core", "--stack-file", f"core={project / 'nope.yaml'}") == 2
    assert "file not found" in capsys.readouterr().err


def test_malformed_stack_file_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "Pulumi.core.yaml").write_text("config: [\n")
    assert run(project) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_stack_file_that_is_not_utf8_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = project / "Pulumi.core.yaml"
    path.write_bytes(b"config:\n  zlh-infra:guest: zpack-\xe4pi\n")
    assert run(project) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {path}: line 2: not UTF-8 text (invalid continuation byte at byte 33)\n"


def test_alias_bomb_exits_2_at_once(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "Pulumi.core.yaml"
    lines = [
        "config:",
        "  zlh-infra:guest: zpack-api",
        "  zlh-infra:l0: &l0 [a, a, a, a, a, a, a, a]",
    ]
    lines += [f"  zlh-infra:l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 8)}]" for n in range(1, 7)]
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    assert run(project) == 2
    assert time.monotonic() - started < 5.0
    assert capsys.readouterr().err == f"error: {path}: line 3: anchor &l0 is not allowed\n"


def test_duplicate_key_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "Pulumi.runtime.yaml"
    path.write_text("config:\n  zlh-infra:guest: zlh-build\n  zlh-infra:guest: zlh-other\n")
    assert run(project) == 2
    assert capsys.readouterr().err == (
        f"error: {path}: line 3: duplicate key 'zlh-infra:guest' (first at line 2)\n"
    )


TOY_PACK = REPO / "tests" / "tooling" / "policy_engine" / "toy_pack"


def test_unknown_policy_in_policy_pack_config_exits_2(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"all": "advisory", "vmid-rnage": {"maxVmId": 500}}))
    argv = ["preview", "--stack", "core", "--policy-pack", str(TOY_PACK)]
    argv += ["--policy-pack-config", str(config)]
    assert cli.main(argv, program=program, cwd=project) == 2
    assert capsys.readouterr().err.endswith(
        "error: core: validating policy config: toy-pack 0.3.0  unknown policy 'vmid-rnage'; "
        "the pack's policies are description-required, explode, internal-keys, probe, "
        "provider-https, tag-secrets, trace, unique-vmids, vmid-range (or 'all')\n"
    )


def test_policy_pack_config_that_is_not_utf8_exits_2(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policy-config.json"
    config.write_bytes(b'{"vmid-range": "mandat\xf6ry"}')
    argv = ["preview", "--stack", "core", "--policy-pack", str(TOY_PACK)]
    argv += ["--policy-pack-config", str(config)]
    assert cli.main(argv, program=program, cwd=project) == 2
    assert capsys.readouterr().err.endswith(
        f"error: core: {config}: not UTF-8 text (invalid start byte at byte 22)\n"
    )


def test_config_error_from_the_program_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "Pulumi.runtime.yaml").write_text("config:\n  zlh-infra:fail: true\n")
    assert run(project, "--format", "json") == 2
    out, err = capsys.readouterr()
    # Every problem on stderr, not only in the report on stdout.
    assert "error: runtime: invalid configuration:\n  - zlh-infra:fail is set\n" in err
    assert "zlh-infra:fail is set" in json.dumps(json.loads(out))
    assert "Traceback" not in out + err


def test_program_error_exits_3(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "Pulumi.runtime.yaml").write_text("config: {}\n")  # guest missing: a config error
    assert run(project) == 2
    capsys.readouterr()

    def broken() -> None:
        raise RuntimeError("bug")

    assert cli.main(["preview"], program=broken, cwd=project) == 3
    assert "RuntimeError: bug" in capsys.readouterr().err


def mandatory(recording: StackRecording) -> list[Diagnostic]:
    return (
        [
            Diagnostic(
                "error",
                "vmid out of range",
                "policy",
                policy_pack="zlh",
                policy_name="vmid-range",
                enforcement_level="mandatory",
            )
        ]
        if recording.stack == "runtime"
        else []
    )


def advisory(recording: StackRecording) -> list[Diagnostic]:
    return [
        Diagnostic(
            "warning", "no backup", "policy", policy_name="backup", enforcement_level="advisory"
        )
    ]


def test_checks_seam_and_policy_exit_code(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, checks=[advisory]) == 0
    assert "no backup" in capsys.readouterr().out
    assert run(project, "--format", "json", checks=[advisory, mandatory]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["stacks"][1]["diagnostics"][-1]["enforcementLevel"] == "mandatory"


def test_exit_code_precedence() -> None:
    def recording(*diagnostics: Diagnostic) -> StackRecording:
        return StackRecording("core", "zlh-infra", diagnostics=list(diagnostics))

    policy = Diagnostic("error", "m", "policy", enforcement_level="mandatory")
    program_error = Diagnostic("error", "bug", "program")
    config = Diagnostic("error", "bad", "config")
    assert command.exit_code([recording()]) == 0
    assert command.exit_code([recording(Diagnostic("warning", "w", "program"))]) == 0
    assert command.exit_code([recording(Diagnostic("info", "i", "config"))]) == 0
    assert command.exit_code([recording(policy)]) == 1
    assert command.exit_code([recording(policy), recording(program_error)]) == 3
    assert command.exit_code([recording(program_error, config, policy)]) == 2


def test_module_entry_point_usage_error_exits_2_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zlh_infra", "preview", "--stack", "staging"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid stack 'staging'" in result.stderr
    assert "Traceback" not in result.stderr


def test_module_entry_point_missing_stack_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: zlh-infra\n")
    result = subprocess.run(
        [sys.executable, "-m", "zlh_infra", "preview", "--stack", "core"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "stack file not found" in result.stderr
    assert "Traceback" not in result.stderr
