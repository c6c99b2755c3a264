"""Every malformed configuration is refused before any resource is registered.

Through the program as `pulumi up` runs it (a RunError whose message the engine prints
without a traceback), and through the offline preview's command line (exit code 2, every
problem on stderr).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import pytest
import yaml
from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from pulumi.automation import _server
from pulumi.runtime import mocks, settings
from pulumi.runtime.proto import language_pb2

from tests.stack_configs import NAMESPACE, apply_case, bad_cases, engine_config
from zlh_infra.cli import main as cli_main
from zlh_infra.tooling.preview.recording import StackRecording
from zlh_infra.tooling.preview.runner import load_program, run_stack, secret_exports

CASES = bad_cases()


def expected_message(case: dict[str, Any]) -> str:
    lines = "\n".join(f"  - {error}" for error in case["errors"])
    return f"stack {case['stack']!r}: invalid configuration:\n{lines}"


class NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def engine_run(program: Callable[[], None], config: dict[str, str]) -> tuple[str, list[str]]:
    """``program`` run by the SDK's language host loop, the one behind `pulumi up`: the
    error it returns to the engine, and what it logged as errors."""

    def against_mocks(*, project: str, stack: str, **_: Any) -> None:
        settings.reset_options(project=project, stack=stack, preview=True)
        monitor = mocks.MockMonitor(NoResources())
        features = monitor.GetDeploymentInfo(empty_pb2.Empty())  # type: ignore[no-untyped-call]
        settings.configure(
            mocks.MockSettings(  # type: ignore[no-untyped-call]
                monitor=monitor,
                monitor_features=set(features.supportedFeatures),
                engine=mocks.MockEngine(None),
                project=project,
                stack=stack,
                dry_run=True,
                organization="organization",
                callbacks=None,
            )
        )

    logged: list[str] = []
    request = language_pb2.RunRequest(
        project="zlh-infra", stack="core", config=config, monitor_address="mocked", dryRun=True
    )
    with (
        mock.patch.object(_server, "reset_options", against_mocks),
        mock.patch.object(pulumi.log, "error", logged.append),
    ):
        response = _server.LanguageServer(program).Run(request, None)  # type: ignore[no-untyped-call]
    return str(response.error), logged


def test_pulumi_up_ends_a_bad_config_with_its_message_alone() -> None:
    [case] = [c for c in CASES if c["id"] == "vmid-outside-role-range"]
    config, _ = apply_case(case)
    assert engine_run(load_program(), engine_config(config)) == (
        expected_message(case),
        [expected_message(case)],
    )


def test_pulumi_up_shows_a_bug_in_the_program_with_its_traceback() -> None:
    """The contrast: what the engine shows for an error that is not the user's to fix."""

    def program() -> None:
        raise KeyError("node")

    error, logged = engine_run(program, {})
    assert error.startswith("python inline source runtime error: 'node'\nTraceback")
    assert logged == [error]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_program_refuses_bad_config_before_registering_anything(
    case: dict[str, Any], core: StackRecording
) -> None:
    config, secret_keys = apply_case(case)
    recording = run_stack(
        case["stack"],
        engine_config(config),
        secret_keys,
        load_program(),
        stack_outputs={"core": core.outputs},
        secret_output_names={"core": secret_exports(core.outputs)},
    )
    errors = [d for d in recording.diagnostics if d.severity == "error"]
    assert [(d.source, d.message) for d in errors] == [("config", expected_message(case))]
    assert all(d.detail is None for d in errors), "a user mistake must not carry a traceback"
    assert [r.urn for r in recording.resources if r.custom] == []
    shown = str([(d.message, d.detail) for d in recording.diagnostics])
    assert all(text not in shown for text in case.get("absent", ()))


def write_stack_file(path: Path, config: dict[str, Any]) -> None:
    document = {
        "config": {
            key if ":" in key else f"{NAMESPACE}:{key}": value for key, value in config.items()
        }
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))


# Secret values cannot be encrypted here; the stack file carries them in clear, which is
# the point of the plain-text case and not representable for the empty-secret case.
CLI_CASES = [c for c in CASES if not c.get("secret") and c["stack"] in ("core", "runtime")]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c["id"] for c in CLI_CASES])
def test_preview_exits_2_naming_key_and_rule(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.stack_configs import shipped

    config, _ = apply_case(case)
    stack_file = tmp_path / f"Pulumi.{case['stack']}.yaml"
    write_stack_file(stack_file, config)
    write_stack_file(
        tmp_path / "Pulumi.core.yaml", config if case["stack"] == "core" else shipped("core")
    )
    code = cli_main(
        [
            "preview",
            "--stack",
            case["stack"],
            "--no-policy",
            "--stack-file",
            f"core={tmp_path / 'Pulumi.core.yaml'}",
            "--stack-file",
            f"{case['stack']}={stack_file}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    # Every problem reaches stderr in full, however the report on stdout is formatted.
    assert f"error: {case['stack']}: {expected_message(case)}\n" in captured.err
    assert "Traceback" not in captured.out + captured.err
    assert all(text not in captured.out + captured.err for text in case.get("absent", ()))


def test_unknown_stack_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["preview", "--stack", "staging"])
    assert exit_info.value.code == 2
    assert "invalid stack 'staging'" in capsys.readouterr().err
