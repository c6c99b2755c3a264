"""Running programs: errors become diagnostics, runs do not leak, core exports feed runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime import rpc

from tests.tooling.preview.preview_programs import CONTAINER, container, nested_platform
from zlh_infra.errors import ConfigError
from zlh_infra.tooling.preview.recording import Diagnostic, StackRecording
from zlh_infra.tooling.preview.runner import is_config_error, run_platform, run_stack
from zlh_infra.tooling.preview.stack_files import StackFileError


class ContractError(ValueError):
    """Stands for any class of that name: matched by name, not imported."""


def only_error(recording: StackRecording) -> Diagnostic:
    errors = [d for d in recording.diagnostics if d.severity == "error"]
    assert len(errors) == 1, recording.diagnostics
    return errors[0]


def test_program_exception_becomes_a_program_diagnostic_with_traceback() -> None:
    def program() -> None:
        container("zlh-db", 102, "10.10.0.12/24")
        raise RuntimeError("boom in program")

    recording = run_stack("core", {}, [], program)
    error = only_error(recording)
    assert error.source == "program"
    assert error.message == "RuntimeError: boom in program"
    assert (
        error.detail is not None
        and "Traceback" in error.detail
        and "boom in program" in error.detail
    )
    assert any(r.type == CONTAINER for r in recording.resources)


def test_exception_inside_an_apply_is_caught_and_in_flight_work_recorded() -> None:
    def program() -> None:
        container("zlh-db", 102, "10.10.0.12/24")
        pulumi.export("ratio", pulumi.Output.from_input(0).apply(lambda zero: 1 / zero))
        container("zlh-redis", 103, "10.10.0.13/24")

    recording = run_stack("core", {}, [], program)
    error = only_error(recording)
    assert error.source == "program" and error.message.startswith("ZeroDivisionError")
    # The traceback is the program's, not the SDK's or asyncio's.
    assert error.detail is not None and "test_preview_runner.py" in error.detail
    assert "site-packages" not in error.detail and "asyncio" not in error.detail
    assert {r.name for r in recording.resources} == {"zlh-infra-core", "zlh-db", "zlh-redis"}


@pytest.mark.parametrize("in_apply", [False, True])
def test_config_errors_are_reported_by_message_only(in_apply: bool) -> None:
    def fail(_: object = None) -> str:
        raise ConfigError(["zlh-infra:guests: zpack-api vmid 100 is taken"], stack="core")

    def program() -> None:
        if in_apply:
            container("zlh-db", 102, pulumi.Output.from_input("x").apply(fail))
        else:
            fail()

    error = only_error(run_stack("core", {}, [], program))
    assert error.source == "config"
    assert error.message.startswith("stack 'core': invalid configuration:")
    assert "vmid 100 is taken" in error.message
    assert error.detail is None and "Traceback" not in error.message


def test_contract_errors_and_missing_config_are_config_errors() -> None:
    def contract() -> None:
        raise ContractError("core stack 'core' does not export pbsServer")

    def missing() -> None:
        pulumi.Config("zlh-infra").require("proxmox")

    assert only_error(run_stack("runtime", {}, [], contract)).source == "config"
    error = only_error(run_stack("runtime", {}, [], missing))
    assert error.source == "config" and "zlh-infra:proxmox" in error.message


def test_is_config_error_follows_the_cause_chain() -> None:
    try:
        try:
            raise ContractError("bad contract")
        except ContractError as inner:
            raise KeyError("wrapped") from inner
    except KeyError as outer:
        assert is_config_error(outer)
    assert not is_config_error(ValueError("plain"))
    assert is_config_error(pulumi.RunError("run error"))


def test_runs_in_one_process_do_not_leak() -> None:
    seen: list[dict[str, object]] = []

    def program() -> None:
        config = pulumi.Config("zlh-infra")
        seen.append(
            {
                "stack": pulumi.get_stack(),
                "greeting": config.get("greeting"),
                "token_secret": pulumi.runtime.is_config_secret("zlh-infra:token"),
            }
        )
        name = config.get("guest")
        if name:
            container(name, 150, "10.20.0.10/24")
            pulumi.export(name, name)

    first = run_stack(
        "core",
        {"zlh-infra:greeting": "hi", "zlh-infra:guest": "a", "zlh-infra:token": "t"},
        ["zlh-infra:token"],
        program,
    )
    second = run_stack("runtime", {"zlh-infra:guest": "b"}, [], program)
    third = run_stack("core", {}, [], program)

    assert seen == [
        {"stack": "core", "greeting": "hi", "token_secret": True},
        {"stack": "runtime", "greeting": None, "token_secret": False},
        {"stack": "core", "greeting": None, "token_secret": False},
    ]
    assert first.outputs == {"a": "a"} and second.outputs == {"b": "b"} and third.outputs == {}
    assert [r.name for r in second.resources] == ["zlh-infra-runtime", "b"]
    assert [r.name for r in third.resources] == ["zlh-infra-core"]
    for recording in (first, second, third):
        assert not recording.diagnostics


def test_failed_run_does_not_poison_the_next() -> None:
    def failing() -> None:
        container("zlh-db", 102, pulumi.Output.from_input(1).apply(lambda _: f"{1 / 0}"))

    assert only_error(run_stack("core", {}, [], failing)).source == "program"
    again = run_stack("core", {}, [], nested_platform)
    assert [d for d in again.diagnostics if d.severity == "error"] == []
    assert len(again.resources) == 7


def test_same_program_twice_records_the_same() -> None:
    first = run_stack("core", {}, [], nested_platform)
    second = run_stack("core", {}, [], nested_platform)
    assert first == second


# --- several stacks ------------------------------------------------------------------------


def core_and_runtime(calls: list[str]) -> Callable[[], None]:
    """Core exports a secret and a plain value; runtime reads them through a StackReference."""

    def program() -> None:
        stack = pulumi.get_stack()
        calls.append(stack)
        config = pulumi.Config("zlh-infra")
        if stack == "core":
            secret = config.require_secret("pbsPassword")
            pulumi.export("pbsPassword", secret)
            pulumi.export("coreNode", config.require("node"))
            pulumi.export("coreVmids", [100, 101])
        else:
            core = pulumi.StackReference("core", stack_name=config.require("coreStack"))
            pulumi.export("seenPassword", core.require_output("pbsPassword"))
            pulumi.export("seenNode", core.require_output("coreNode"))
            pulumi.export("seenVmids", core.require_output("coreVmids"))

    return program


@pytest.fixture
def stack_files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "Pulumi.yaml").write_text("name: zlh-infra\nruntime: python\n")
    core = tmp_path / "Pulumi.core.yaml"
    core.write_text(
        "config:\n  zlh-infra:node: zlh-core\n  zlh-infra:pbsPassword:\n    secure: v1:abc:def\n"
    )
    runtime = tmp_path / "Pulumi.runtime.yaml"
    runtime.write_text("config:\n  zlh-infra:coreStack: acme/zlh-infra/core\n")
    return {"core": core, "runtime": runtime}


def test_core_exports_feed_the_runtime_stack_reference(stack_files: dict[str, Path]) -> None:
    calls: list[str] = []
    core, runtime = run_platform(stack_files, ["runtime", "core"], program=core_and_runtime(calls))

    assert calls == ["core", "runtime"]
    assert (core.stack, runtime.stack) == ("core", "runtime")
    assert rpc.is_rpc_secret(core.outputs["pbsPassword"])
    assert rpc.is_rpc_secret(runtime.outputs["seenPassword"])
    assert runtime.outputs["seenPassword"] == core.outputs["pbsPassword"]
    assert runtime.outputs["seenNode"] == "zlh-core"
    assert runtime.outputs["seenVmids"] == [100.0, 101.0]
    assert runtime.reads[0].id == "acme/zlh-infra/core"
    assert [d.severity for d in runtime.diagnostics] == []
    placeholder = [d for d in core.diagnostics if d.severity == "info"]
    assert len(placeholder) == 1 and "zlh-infra:pbsPassword" in placeholder[0].message


def test_runtime_alone_still_runs_core_first(stack_files: dict[str, Path]) -> None:
    calls: list[str] = []
    recordings = run_platform(stack_files, ["runtime"], program=core_and_runtime(calls))
    assert calls == ["core", "runtime"]
    assert [r.stack for r in recordings] == ["runtime"]
    assert recordings[0].outputs["seenNode"] == "zlh-core"


# A program that fails midway leaves SDK coroutines that never ran; that is the SDK's
# doing, and the preview reports the failure itself.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_runtime_is_told_when_core_failed(stack_files: dict[str, Path]) -> None:
    stack_files["core"].write_text("config: {}\n")  # core now lacks its required keys
    core, runtime = run_platform(stack_files, ["core", "runtime"], program=core_and_runtime([]))
    assert only_error(core).source == "config"
    assert runtime.diagnostics[0].severity == "warning"
    assert "core stack 'core' failed" in runtime.diagnostics[0].message
    assert only_error(runtime).source == "program"  # require_output of a missing key


def test_missing_stack_file_fails_before_running_anything(stack_files: dict[str, Path]) -> None:
    calls: list[str] = []
    stack_files["runtime"].unlink()
    with pytest.raises(StackFileError, match=r"Pulumi\.runtime\.yaml"):
        run_platform(stack_files, ["core", "runtime"], program=core_and_runtime(calls))
    with pytest.raises(StackFileError, match="no stack file given for stack 'runtime-b'"):
        run_platform(stack_files, ["runtime-b"], program=core_and_runtime(calls))
    assert calls == []


def _printing_program() -> None:
    """A step whose printed value feeds a second step, as the program reads keys from guests."""
    import pulumi_command as command

    from zlh_infra.layers.vendor import read_value

    connection = command.remote.ConnectionArgs(host="10.99.0.2", user="root")
    printer = command.remote.Command("print-key", connection=connection, create="cat key.pub")
    key = read_value(printer, str.strip, secret=True)
    command.remote.Command("use-key", connection=connection, create="install", stdin=key)


def _stdin_of(recording: StackRecording, name: str) -> object:
    return next(r for r in recording.resources if r.name == name).inputs.get("stdin")


def test_a_steps_printed_value_is_unknown_until_the_state_holds_it() -> None:
    previewed = run_stack("core", {}, [], _printing_program)
    unknown = _stdin_of(previewed, "use-key")
    assert isinstance(unknown, dict) and unknown.get("value") == rpc.UNKNOWN

    asked: list[tuple[str, str]] = []

    def state(urn: str, type_: str, inputs: object) -> dict[str, str] | None:
        asked.append((urn.rsplit("::", 1)[-1], type_))
        return {"stdout": "ssh-ed25519 AAAA printed\n"} if urn.endswith("::print-key") else None

    deployed = run_stack("core", {}, [], _printing_program, state_outputs=state)
    stdin = _stdin_of(deployed, "use-key")
    # Known now, and still a secret: the engine's additional secret outputs apply to it.
    assert isinstance(stdin, dict) and stdin.get("value") == "ssh-ed25519 AAAA printed"
    assert rpc.is_rpc_secret(stdin)
    assert ("print-key", "command:remote:Command") in asked
    assert not [d for d in deployed.diagnostics if d.severity == "error"]
