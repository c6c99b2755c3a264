"""Run a stack's program in-process under recording mocks, as ``pulumi preview`` would.

The SDK keeps its state (settings, config, root stack) in context variables and module
globals. Every run resets them, runs in a copied context and on its own event loop, so
several stacks previewed in one process do not see each other's config, exports or
resources.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import os
import traceback
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pulumi
from google.protobuf import empty_pb2  # type: ignore[import-untyped]
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings
from pulumi.runtime.mocks import MockSettings
from pulumi.runtime.stack import run_in_stack

from zlh_infra.platform.topology import short_stack
from zlh_infra.platform.type_tokens import STACK as STACK_TYPE
from zlh_infra.tooling.preview.recorder import (
    PreviewMocks,
    RecordingEngine,
    RecordingMonitor,
    SecretValue,
    contains_secret,
)
from zlh_infra.tooling.preview.recording import (
    Diagnostic,
    RecordedResource,
    StackRecording,
    StateOutputs,
)
from zlh_infra.tooling.preview.stack_files import (
    PLACEHOLDER_SECRET,
    ProjectFile,
    StackFile,
    StackFileError,
    find_project_file,
    load_project,
    load_stack_file,
)

Program = Callable[[], None]


class StackObserver(Protocol):
    """Sees a stack's resources as they register, then its finished recording."""

    def register(self, resource: RecordedResource) -> None: ...

    def done(self, recording: StackRecording) -> None: ...


#: Exceptions the program raises on purpose for bad config: reported by message only.
_CONFIG_ERROR_NAMES = frozenset({"ConfigError", "ContractError"})

#: How long a failed run's registrations still in flight may take to finish.
_DRAIN_SECONDS = 5.0

#: Config key (in the project namespace) naming the core stack a runtime stack reads.
CORE_STACK_KEY = "coreStack"


def _find_config_error(error: BaseException) -> BaseException | None:
    """The first ``pulumi.RunError`` or ConfigError / ContractError in the cause chain.

    Matched by class name so this module does not import the program's error classes.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, pulumi.RunError) or any(
            cls.__name__ in _CONFIG_ERROR_NAMES for cls in type(current).__mro__
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def is_config_error(error: BaseException) -> bool:
    """Whether ``error`` is (or was caused by) an error the user fixes in the config."""
    return _find_config_error(error) is not None


#: Frames from these directories are the runtime's, not the program's.
_RUNTIME_DIRS = tuple(
    str(Path(module.__file__).resolve().parent) + os.sep
    for module in (pulumi, asyncio, concurrent.futures)
    if module.__file__
)


def program_traceback(error: BaseException) -> str:
    """The traceback without the SDK's and asyncio's frames: what the program's author needs.

    Falls back to the whole traceback when no frame is left.
    """
    report = traceback.TracebackException.from_exception(error)
    current: traceback.TracebackException | None = report
    while current is not None:
        kept = [
            frame
            for frame in current.stack
            if not str(Path(frame.filename).resolve()).startswith(_RUNTIME_DIRS)
            and Path(frame.filename).resolve() != Path(__file__).resolve()
        ]
        if kept:
            current.stack = traceback.StackSummary.from_list(kept)
        current = current.__cause__ or current.__context__
    return "".join(report.format()).rstrip()


def error_diagnostic(error: BaseException) -> Diagnostic:
    """A program exception as a diagnostic: config errors by message, others with traceback."""
    config_error = _find_config_error(error)
    if config_error is not None:
        return Diagnostic(severity="error", message=str(config_error), source="config")
    return Diagnostic(
        severity="error",
        message=f"{type(error).__name__}: {error}",
        source="program",
        detail=program_traceback(error),
    )


def run_stack(
    stack: str,
    config: Mapping[str, str],
    secret_keys: Collection[str],
    program: Program,
    *,
    project: str = "zlh-infra",
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    secret_output_names: Mapping[str, Collection[str]] | None = None,
    preview: bool = True,
    organization: str = "organization",
    on_register: Callable[[RecordedResource], None] | None = None,
    secret_value: SecretValue | None = None,
    state_outputs: StateOutputs | None = None,
) -> StackRecording:
    """Run ``program`` as stack ``stack`` and return what it registered.

    ``stack_outputs`` answers StackReference reads (stack name -> outputs), and
    ``secret_output_names`` says which of those outputs are secrets; ``secret_value``
    answers generated passwords and strings (see ``PreviewMocks``); ``state_outputs``
    adds what an earlier deployment's state holds for unchanged resources (see
    ``StateOutputs``). Exceptions from
    the program become diagnostics; this function only raises for its own bugs.
    """
    context = contextvars.copy_context()
    recording = context.run(
        _run_stack,
        stack,
        dict(config),
        list(secret_keys),
        program,
        project=project,
        stack_outputs=stack_outputs or {},
        secret_output_names=secret_output_names or {},
        preview=preview,
        organization=organization,
        on_register=on_register,
        secret_value=secret_value,
        state_outputs=state_outputs,
    )
    del context
    # A failed program leaves SDK coroutines that were created but never scheduled;
    # collect them now, quietly, rather than have Python warn about them at exit.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
        gc.collect()
    return recording


def _run_stack(
    stack: str,
    config: dict[str, str],
    secret_keys: list[str],
    program: Program,
    *,
    project: str,
    stack_outputs: Mapping[str, Mapping[str, Any]],
    secret_output_names: Mapping[str, Collection[str]],
    preview: bool,
    organization: str,
    on_register: Callable[[RecordedResource], None] | None,
    secret_value: SecretValue | None,
    state_outputs: StateOutputs | None,
) -> StackRecording:
    # A fresh Settings drops the previous run's root stack, RPC manager and pending outputs.
    settings.reset_options(project=project, stack=stack, preview=preview, organization=organization)
    runtime_config.set_all_config(config, secret_keys)

    mocks = PreviewMocks(stack_outputs, secret_output_names, secret_value)
    monitor = RecordingMonitor(
        mocks, stack=stack, project=project, on_register=on_register, state_outputs=state_outputs
    )
    engine = RecordingEngine()
    # What set_mocks does, minus creating a root Stack: run_in_stack creates the one
    # whose exports get registered at the end.
    features = monitor.GetDeploymentInfo(empty_pb2.Empty())  # type: ignore[no-untyped-call]
    settings.configure(
        MockSettings(  # type: ignore[no-untyped-call]
            monitor=monitor,
            monitor_features=set(features.supportedFeatures),
            engine=engine,
            project=project,
            stack=stack,
            dry_run=preview,
            organization=organization,
            callbacks=None,
        )
    )

    recording = StackRecording(stack=stack, project=project, config=dict(config))
    loop_errors: list[BaseException] = []

    def on_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, BaseException):
            loop_errors.append(error)

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(on_loop_error)
    try:
        loop.run_until_complete(run_in_stack(program))
    except Exception as error:  # the program's failure is the result, not ours
        recording.diagnostics.append(error_diagnostic(error))
    finally:
        _close_loop(loop)
        monitor.close()

    recording.resources = _ordered(monitor.recorded)
    recording.reads = list(monitor.reads)
    recording.outputs = dict(monitor.stack_outputs)
    recording.diagnostics[:0] = [*monitor.diagnostics, *engine.diagnostics]
    for target in dict.fromkeys(mocks.unresolved_references):
        recording.diagnostics.append(
            Diagnostic(
                severity="warning",
                message=(
                    f"StackReference {target!r}: no outputs of that stack are known offline, "
                    "so it was answered with none"
                ),
                source="program",
            )
        )
    if loop_errors and not any(d.severity == "error" for d in recording.diagnostics):
        recording.diagnostics.extend(error_diagnostic(error) for error in loop_errors)
    return recording


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Finish what a failed run left in flight, cancel the rest, and close the loop.

    The SDK stops at the first failure; registrations already under way still reach
    the monitor, so the preview shows how far the program got.
    """
    pending = asyncio.all_tasks(loop)
    if pending:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.wait(pending, timeout=_DRAIN_SECONDS))
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def _ordered(resources: Sequence[RecordedResource]) -> list[RecordedResource]:
    """Parents and dependencies before dependents, ties by URN.

    Registrations arrive from a thread pool in no fixed order; a stable order keeps
    the rendered previews diffable between runs.
    """
    by_urn = {resource.urn: resource for resource in resources}
    done: set[str] = set()
    result: list[RecordedResource] = []

    def visit(resource: RecordedResource, path: set[str]) -> None:
        if resource.urn in done or resource.urn in path:
            return
        path.add(resource.urn)
        before = [resource.parent, resource.provider, *resource.dependencies]
        for urn in sorted({u for u in before if u and u in by_urn}):
            visit(by_urn[urn], path)
        path.discard(resource.urn)
        done.add(resource.urn)
        result.append(resource)

    for resource in sorted(resources, key=lambda r: (r.type != STACK_TYPE, r.urn)):
        visit(resource, set())
    return result


# --- several stacks ------------------------------------------------------------------------


def secret_exports(outputs: Mapping[str, Any]) -> set[str]:
    """Names of wire-form exports that hold a secret anywhere (the engine's rule)."""
    return {name for name, value in outputs.items() if contains_secret(value)}


def load_program() -> Program:
    """The real program's entry point, imported only now: it imports every provider SDK."""
    from zlh_infra.program import main

    return main


def run_platform(
    stack_files: Mapping[str, Path],
    stacks: Sequence[str],
    *,
    project_file: Path | None = None,
    program: Program | None = None,
    observe: Callable[[str, Mapping[str, str]], StackObserver] | None = None,
    preview: bool = True,
    secret_values: Callable[[str], SecretValue] | None = None,
    config_overlay: Callable[[str, Mapping[str, str]], Mapping[str, str]] | None = None,
    state_outputs: Callable[[str], StateOutputs] | None = None,
) -> list[StackRecording]:
    """Preview ``stacks``, each from its stack file, core stacks before the stacks reading them.

    A stack whose config names a core stack (``<project>:coreStack``, last path segment)
    gets that stack's recorded exports as StackReference answers; the core stack is run
    even if not asked for, when its stack file is known. Returns the recordings of
    ``stacks`` in the order they ran. Raises ``StackFileError`` before running anything
    if a needed file is missing or malformed. ``observe(stack, config)`` is asked, before
    each asked-for stack runs, for an observer that sees its resources as they register
    and its finished recording (the preview runs the policy pack that way, beside the
    program, as the engine does).

    ``preview=False`` runs the programs as ``pulumi up`` would (no unknowns);
    ``secret_values(stack)`` gives the stack's ``secret_value`` answer (see
    ``PreviewMocks``); ``config_overlay(stack, config)`` returns the config a stack runs
    with instead of its stack file's; ``state_outputs(stack)`` gives the stack's
    ``state_outputs`` answer.
    """
    if project_file is None:
        first = next(iter(stack_files.values()), None)
        project_file = find_project_file(first.parent if first else Path.cwd())
    project: ProjectFile = load_project(project_file) if project_file else ProjectFile.default()

    loaded: dict[str, StackFile] = {}

    def load(name: str) -> StackFile:
        if name not in loaded:
            path = stack_files.get(name)
            if path is None:
                raise StackFileError(f"no stack file given for stack {name!r}")
            loaded[name] = load_stack_file(path, project=project, stack=name)
        return loaded[name]

    def core_of(name: str) -> str | None:
        value = load(name).config.get(f"{project.name}:{CORE_STACK_KEY}")
        core = short_stack(value) if value else None
        return core if core and core != name and core in stack_files else None

    order: list[str] = []

    def plan(name: str, path: tuple[str, ...]) -> None:
        if name in order or name in path:
            return
        core = core_of(name)
        if core is not None:
            plan(core, (*path, name))
        order.append(name)

    for name in stacks:
        plan(name, ())

    run_program = program or load_program()
    recordings: dict[str, StackRecording] = {}
    for name in order:
        stack_file = load(name)
        core = core_of(name)
        outputs: dict[str, Mapping[str, Any]] = {}
        secrets: dict[str, Collection[str]] = {}
        if core is not None:
            core_recording = recordings[core]
            outputs[core] = core_recording.outputs
            secrets[core] = secret_exports(core_recording.outputs)
        config = config_overlay(name, stack_file.config) if config_overlay else stack_file.config
        observer = observe(name, config) if observe and name in stacks else None
        recording = run_stack(
            name,
            config,
            stack_file.secret_keys,
            run_program,
            project=project.name,
            stack_outputs=outputs,
            secret_output_names=secrets,
            preview=preview,
            on_register=observer.register if observer else None,
            secret_value=secret_values(name) if secret_values else None,
            state_outputs=state_outputs(name) if state_outputs else None,
        )
        if stack_file.placeholder_keys:
            recording.diagnostics.insert(
                0,
                Diagnostic(
                    severity="info",
                    message=(
                        f"secure config {', '.join(sorted(stack_file.placeholder_keys))} cannot be "
                        f"decrypted offline and reads as {PLACEHOLDER_SECRET!r}"
                    ),
                    source="config",
                ),
            )
        if core is not None and _failed(recordings[core]):
            recording.diagnostics.insert(
                0,
                Diagnostic(
                    severity="warning",
                    message=(
                        f"core stack {core!r} failed offline, so the outputs this stack "
                        "reads from it may be missing"
                    ),
                    source="program",
                ),
            )
        recordings[name] = recording
        if observer is not None:
            observer.done(recording)
    return [recordings[name] for name in order if name in stacks]


def _failed(recording: StackRecording) -> bool:
    return any(d.severity == "error" and d.source != "policy" for d in recording.diagnostics)
