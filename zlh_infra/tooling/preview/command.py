"""``python -m zlh_infra preview``: run the stacks offline, check them, render the result."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zlh_infra.platform.topology import StackRole, is_stack_name
from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.preview.recording import Diagnostic, RecordedResource, StackRecording
from zlh_infra.tooling.preview.render import FORMATS, render
from zlh_infra.tooling.preview.stack_files import (
    PROJECT_FILE_NAMES,
    StackFileError,
    find_project_file,
    load_project,
    stack_files_in,
)
from zlh_infra.tooling.project import project_root

if TYPE_CHECKING:  # both load the Pulumi SDKs, which `--help` and usage errors do not need
    from zlh_infra.tooling.preview.policy_engine import PolicySession
    from zlh_infra.tooling.preview.runner import StackObserver

#: A check run on each stack's recording after the programs ran; it returns diagnostics
#: to add to that recording (a policy pack's violations have source "policy").
Check = Callable[[StackRecording], Iterable[Diagnostic]]


DEFAULT_POLICY_PACK = "policy"


def secret_inputs_check(recording: StackRecording) -> list[Diagnostic]:
    """Fail a stack whose resources take a credential in clear.

    The pack can only remediate this (validation policies never see whether a value is
    secret); the recording keeps the engine's secret markers, so here it is a failure.
    """
    from pulumi.runtime import rpc

    from zlh_infra.policies.secrets import plain_credentials

    found = []
    for resource in recording.resources:
        for path in plain_credentials(resource.inputs, rpc.is_rpc_secret):
            found.append(
                Diagnostic(
                    severity="error",
                    message=(
                        f"{resource.name}: input {path} is a credential in clear; pass it as "
                        "a secret (pulumi.Output.secret, a RandomPassword result, or "
                        "`pulumi config set --secret`)."
                    ),
                    source="policy",
                    urn=resource.urn,
                    policy_pack="zlh-preview",
                    policy_name="zlh-secret-inputs",
                    enforcement_level="mandatory",
                )
            )
    return found


class PolicyPackObserver:
    """Runs the CrossGuard pack in ``pack_dir`` beside each stack's program.

    As in ``pulumi preview --policy-pack``, the pack starts with the stack and analyses
    each resource as it registers; AnalyzeStack follows the program, in the background,
    while the next stack's program runs. A pack that cannot run fails the stack as a
    mandatory policy error: a policy gate that could not look must not pass.
    """

    def __init__(
        self,
        pack_dir: Path,
        config_file: Path | None,
        project: str,
        derived: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.pack_dir = pack_dir
        self.config_file = config_file
        self.project = project
        #: Per stack, the pack's config derived from the stack files (``config_file`` wins).
        self.derived = dict(derived or {})
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        self._pending: list[concurrent.futures.Future[None]] = []
        self._scratch = tempfile.TemporaryDirectory(prefix="zlh-policy-config-")

    def _config_file(self, stack: str) -> Path | None:
        derived = self.derived.get(stack)
        if not derived:
            return self.config_file
        given: Any = {}
        if self.config_file is not None:
            try:
                given = json.loads(self.config_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return self.config_file  # the session reports the file as it is
            if not isinstance(given, dict):
                return self.config_file
        path = Path(self._scratch.name) / f"{stack.replace('/', '_')}.json"
        from zlh_infra.tooling.preview.derived_policy_config import merged

        path.write_text(json.dumps(merged(derived, given)), encoding="utf-8")
        return path

    def __call__(self, stack: str, config: Mapping[str, str]) -> StackObserver:
        from zlh_infra.tooling.preview.policy_engine import PolicySession

        try:
            session = PolicySession(
                self.pack_dir,
                stack=stack,
                project=self.project,
                stack_config=config,
                policy_config_file=self._config_file(stack),
                # The deadline covers the program's run too: the pack starts with it.
                timeout=_POLICY_TIMEOUT,
            )
        except Exception as error:  # an unusable config file: reported for the stack
            return _FailedObserver(self.failure(error))
        return _SessionObserver(self, session)

    def failure(self, error: Exception) -> Diagnostic:
        from zlh_infra.tooling.preview.policy_engine import PolicyConfigError

        if isinstance(error, PolicyConfigError):
            return Diagnostic(severity="error", message=str(error), source="config")
        return Diagnostic(
            severity="error",
            message=f"policy pack {self.pack_dir} failed: {error}",
            source="policy",
            enforcement_level="mandatory",
        )

    def submit(self, task: Callable[[], None]) -> None:
        self._pending.append(self._pool.submit(task))

    def wait(self) -> None:
        """Every stack's analysis has finished (its diagnostics are in its recording)."""
        for future in self._pending:
            future.result()
        self._pool.shutdown()
        self._scratch.cleanup()


_POLICY_TIMEOUT = 600.0


class _SessionObserver:
    def __init__(self, owner: PolicyPackObserver, session: PolicySession) -> None:
        self.owner = owner
        self.session = session

    def register(self, resource: RecordedResource) -> None:
        self.session.analyze(resource)

    def done(self, recording: StackRecording) -> None:
        self.owner.submit(lambda: self._finish(recording))

    def _finish(self, recording: StackRecording) -> None:
        try:
            report = self.session.finish(recording)
        except Exception as error:
            recording.diagnostics.append(self.owner.failure(error))
        else:
            recording.diagnostics.extend(report.diagnostics)
        finally:
            self.session.close()


class _FailedObserver:
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic

    def register(self, resource: RecordedResource) -> None:
        pass

    def done(self, recording: StackRecording) -> None:
        recording.diagnostics.append(self.diagnostic)


def run_checks(recordings: Sequence[StackRecording], checks: Sequence[Check]) -> None:
    """Add every check's diagnostics to the recording it was given."""
    for recording in recordings:
        for check in checks:
            recording.diagnostics.extend(check(recording))


def exit_code(recordings: Sequence[StackRecording]) -> int:
    """The process exit code for a preview; config errors win, then program errors, then policy."""
    diagnostics = [d for recording in recordings for d in recording.diagnostics]
    if any(d.source == "config" and d.severity == "error" for d in diagnostics):
        return ExitCode.USAGE
    if any(d.source == "program" and d.severity == "error" for d in diagnostics):
        return ExitCode.PROGRAM
    if any(d.source == "policy" and d.enforcement_level == "mandatory" for d in diagnostics):
        return ExitCode.FAILED
    return ExitCode.OK


def _stack_choice(value: str) -> str:
    if value == "all" or is_stack_name(value):
        return value
    raise argparse.ArgumentTypeError(
        f"invalid stack {value!r}: expected core, runtime, runtime-<name> or all"
    )


def _stack_file_arg(value: str) -> tuple[str, Path]:
    stack, sep, path = value.partition("=")
    if not sep or not path or not is_stack_name(stack):
        raise argparse.ArgumentTypeError(
            f"invalid --stack-file {value!r}: expected STACK=PATH, "
            "STACK being core, runtime or runtime-<name>"
        )
    return stack, Path(path)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``preview`` to the project's command line (``zlh_infra.cli``)."""
    parser = commands.add_parser(
        "preview",
        help="run the stacks' program offline and show what it would deploy",
        description=(
            "Run the Pulumi program in-process under mocks, stack by stack (core first, "
            "its exports feeding the runtime stack's StackReference), and show what each "
            "stack registers. Secure config values read as a placeholder; secrets are "
            "never shown."
        ),
    )
    parser.add_argument(
        "--stack",
        type=_stack_choice,
        default="all",
        metavar="{core,runtime,all}",
        help="stack to preview (default: all)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    parser.add_argument(
        "--stack-file",
        type=_stack_file_arg,
        action="append",
        default=[],
        metavar="STACK=PATH",
        help="stack file to use for STACK instead of Pulumi.<STACK>.yaml (repeatable)",
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the output to FILE")
    parser.add_argument(
        "--policy-pack",
        type=Path,
        metavar="DIR",
        help=f"policy pack to run on each stack (default: {DEFAULT_POLICY_PACK}/ in the project)",
    )
    parser.add_argument(
        "--policy-pack-config",
        type=Path,
        metavar="FILE",
        help="JSON policy config, as for `pulumi preview --policy-pack-config`",
    )
    parser.add_argument("--no-policy", action="store_true", help="do not run the policy pack")


def _stacks(choice: str, files: dict[str, Path]) -> list[str]:
    if choice != "all":
        return [choice]
    core, runtime = StackRole.CORE.value, StackRole.RUNTIME.value
    extra = sorted(s for s in files if s.startswith(f"{runtime}-"))
    return [core, runtime, *extra]


def preview(
    args: argparse.Namespace,
    *,
    program: Callable[[], None] | None = None,
    checks: Sequence[Check] | None = None,
    cwd: Path | None = None,
) -> int:
    """The ``preview`` subcommand: load stack files, run the stacks, check, render."""
    # Imported here: it loads the Pulumi SDKs, which `--help` and usage errors do not need.
    from zlh_infra.tooling.preview.runner import load_program, run_platform

    root = project_root(cwd)
    project_file = find_project_file(root)
    if project_file is None:
        raise StackFileError(f"no {' or '.join(PROJECT_FILE_NAMES)} in {root}")
    files = stack_files_in(root, args.stack_file)
    stacks = _stacks(args.stack, files)
    missing = [stack for stack in stacks if stack not in files]
    if missing:
        expected = ", ".join(str(root / f"Pulumi.{stack}.yaml") for stack in missing)
        raise StackFileError(f"stack file not found: {expected}")

    if program is None:
        try:
            program = load_program()
        except ImportError as error:
            print(f"error: cannot load the program: {error}", file=sys.stderr)
            return ExitCode.PROGRAM

    observer = None
    if checks is None:
        checks = [secret_inputs_check]
        if not args.no_policy:
            pack = args.policy_pack or root / DEFAULT_POLICY_PACK
            project = load_project(project_file).name
            from zlh_infra.tooling.preview.derived_policy_config import derive, load_configs

            configs = load_configs(root, files)
            observer = PolicyPackObserver(
                pack,
                args.policy_pack_config,
                project,
                derived={stack: derive(stack, configs) for stack in stacks},
            )
    try:
        # The program's prints must not end up inside JSON or Markdown on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            recordings = run_platform(
                files, stacks, project_file=project_file, program=program, observe=observer
            )
    finally:
        if observer is not None:
            observer.wait()
    run_checks(recordings, checks)

    output = render(recordings, args.format)
    if args.output is not None:
        try:
            args.output.write_text(output, encoding="utf-8")
        except OSError as error:
            raise StackFileError(f"cannot write {args.output}: {error.strerror or error}") from None
    else:
        sys.stdout.write(output)

    for recording in recordings:
        for d in recording.diagnostics:
            if d.severity == "error":
                # A config error's every line is something to fix; the rest lead with a summary.
                message = d.message if d.source == "config" else d.message.splitlines()[0]
                print(f"error: {recording.stack}: {message}", file=sys.stderr)
    return exit_code(recordings)
