"""Run a CrossGuard policy pack over a recorded stack, as ``pulumi preview --policy-pack`` does.

The pack runs as its own process and is driven over the real analyzer gRPC protocol, in
the engine's order: ``Handshake``, ``ConfigureStack``, ``GetPluginInfo``,
``GetAnalyzerInfo``, ``Configure``, then ``Remediate`` and ``Analyze`` for every
registered resource in registration order, then ``AnalyzeStack`` once.

What is sent, and why:

* Every registered resource is analysed: custom resources, components, explicit
  providers and the root ``pulumi:pulumi:Stack`` alike, because the engine's step
  generator analyses every ``RegisterResource`` it sees. Reads are never sent; default
  providers are not in a recording, so they are not analysed (the engine would).
* Properties are the program's wire-form inputs marshalled like the engine's
  ``MarshalProperties(KeepUnknowns, KeepSecrets, SkipInternalKeys)``: secrets keep the
  secret signature, unknowns stay the unknown sentinel, output values become their value
  (or unknown, wrapped as secret if secret), resource references become their ID, or URN
  for components, and ``__``-prefixed keys are dropped (kept for ``Remediate``). The
  engine sends provider-checked inputs; offline there is no provider ``Check``.
* ``pulumi_policy`` itself unwraps secrets to plain values in ``Analyze`` and
  ``AnalyzeStack``; only ``Remediate`` sees ``pulumi_policy.Secret`` wrappers. An unknown
  raises inside the policy, which the pack reports as an advisory "can't run policy ...
  during preview".
* ``Remediate`` is only called when some policy is configured ``remediate``: for any
  other level ``pulumi_policy`` answers with nothing, and the round trip would double the
  time per resource. Remediations are reported as info diagnostics and not applied, so
  ``Analyze`` sees the inputs as the program gave them.
* ``AnalyzeStack`` gets outputs, parent, dependencies and property dependencies. Like the
  engine, it is skipped when the program itself failed, and a stack-policy violation
  whose URN is empty or not in the stack is filed under the root stack's URN.
* The pack version is the one in ``PulumiPolicy.yaml`` when it has one (the Python SDK
  always reports 0.0.1).
* The pack's stdout (after the port line) and stderr lines become info diagnostics, as
  the engine shows them; ``pulumi.log`` inside a policy writes to stderr. A minimal
  Engine gRPC service is served at the engine address for packs that log through it.

Interpreter: ``python`` if given; else the ``runtime.options.virtualenv`` of
``PulumiPolicy.yaml`` (relative to the pack directory) when it holds ``bin/python``;
else the current interpreter. The engine's Python shim would fail on a missing
virtualenv instead; falling back keeps offline runs working from the project's own
environment.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import empty_pb2, json_format  # type: ignore[import-untyped]
from pulumi.runtime.proto import (
    analyzer_pb2,
    analyzer_pb2_grpc,
    engine_pb2,
    engine_pb2_grpc,
)

from .policy_config import (
    PolicyConfig,
    PolicyConfigError,
    PolicySpec,
    load_policy_config_file,
    reconcile_policy_config,
)
from .recording import Diagnostic, RecordedResource, StackRecording

__all__ = [
    "PolicyConfigError",
    "PolicyEngineError",
    "PolicyPackError",
    "PolicyReport",
    "has_mandatory_violation",
    "run_policy_pack",
]

_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

# Same limit as the policy SDK's server, so large stacks fit in one AnalyzeStack.
_MAX_MESSAGE = 400 * 1024 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
]
_STDERR_TAIL_LINES = 60
#: Calls awaiting their answer at most. The pack's gRPC server queues the calls its
#: Python side has not picked up yet, and refuses some at random (the call ends
#: CANCELLED) once that backlog is large: a whole stack sent at once trips it.
_MAX_UNANSWERED = 256

_LEVEL_NAMES = {
    analyzer_pb2.ADVISORY: "advisory",
    analyzer_pb2.MANDATORY: "mandatory",
    # A remediate-level violation means remediation did not fix it: the engine
    # reports it as mandatory.
    analyzer_pb2.REMEDIATE: "mandatory",
    analyzer_pb2.DISABLED: "disabled",
}
_LEVEL_VALUES = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "remediate": analyzer_pb2.REMEDIATE,
    "disabled": analyzer_pb2.DISABLED,
}
_SEVERITY = {"mandatory": "error", "advisory": "warning"}
_LOG_SEVERITY = {
    engine_pb2.DEBUG: "info",
    engine_pb2.INFO: "info",
    engine_pb2.WARNING: "warning",
    engine_pb2.ERROR: "error",
}


class PolicyEngineError(Exception):
    """Base class of everything that makes a policy run fail."""


class PolicyPackError(PolicyEngineError):
    """The pack did not start, crashed, timed out or a policy raised."""

    def __init__(self, message: str, stderr: str = "") -> None:
        full = f"{message}\n--- policy pack stderr (tail) ---\n{stderr}" if stderr else message
        super().__init__(full)
        self.stderr = stderr


@dataclass(slots=True)
class PolicyReport:
    """The outcome of one policy pack run over one stack."""

    pack_name: str
    pack_version: str
    diagnostics: list[Diagnostic]
    #: Merged configuration actually sent to the pack, per policy (and "all" if given).
    config: dict[str, PolicyConfig]
    #: Interpreter the pack ran with.
    python: str
    #: Enforcement level of each policy the pack declares, after configuration.
    policies: dict[str, str] = field(default_factory=dict)
    #: Seconds spent analysing (Analyze and AnalyzeStack calls), without the pack's start.
    analysis_seconds: float = 0.0


def has_mandatory_violation(diagnostics: Iterable[Diagnostic]) -> bool:
    """True when a policy reported a mandatory violation (preview must fail)."""
    return any(d.source == "policy" and d.enforcement_level == "mandatory" for d in diagnostics)


def run_policy_pack(
    pack_dir: Path,
    recording: StackRecording,
    *,
    stack_config: Mapping[str, str] | None = None,
    policy_config_file: Path | None = None,
    organization: str = "organization",
    dry_run: bool = True,
    python: str | None = None,
    timeout: float = 60,
    stack_tags: Mapping[str, str] | None = None,
) -> PolicyReport:
    """Run the policy pack in ``pack_dir`` over a finished ``recording``.

    ``stack_config`` is the stack's plain config, keyed ``namespace:key``. Raises
    PolicyConfigError for unusable policy config and PolicyPackError when the pack fails;
    the pack process is ended in every case.
    """
    with PolicySession(
        pack_dir,
        stack=recording.stack,
        project=recording.project,
        stack_config=stack_config,
        policy_config_file=policy_config_file,
        organization=organization,
        dry_run=dry_run,
        python=python,
        timeout=timeout,
        stack_tags=stack_tags,
    ) as session:
        for resource in recording.resources:
            session.analyze(resource)
        return session.finish(recording)


class PolicySession:
    """A policy pack beside a running program, as the engine runs one during a preview.

    The pack starts at once; ``analyze`` hands it each resource as it registers (from
    any thread), ``finish`` sends the whole stack to AnalyzeStack and returns the
    report. Used as a context manager, the pack process is ended in every case.

    Once the pack is configured, ``analyze`` starts the resource's calls in the
    registering thread itself and returns without waiting for their answers, which are
    read when the stack is finished. Handing each resource to another thread instead
    costs a GIL hand-off per call, and a busy program starves that thread.
    """

    def __init__(
        self,
        pack_dir: Path,
        *,
        stack: str,
        project: str,
        stack_config: Mapping[str, str] | None = None,
        policy_config_file: Path | None = None,
        organization: str = "organization",
        dry_run: bool = True,
        python: str | None = None,
        timeout: float = 60,
        stack_tags: Mapping[str, str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        #: Resources registered before the pack was ready; then the live session.
        self._backlog: list[RecordedResource] = []
        self._feed: _Session | None = None
        self._recording: concurrent.futures.Future[StackRecording] = concurrent.futures.Future()
        self._closed = False
        # Config file errors surface here, before any process starts.
        given = load_policy_config_file(policy_config_file) if policy_config_file else {}
        self._pack_dir = Path(pack_dir).resolve()
        self._stack, self._project = stack, project
        self._config = dict(stack_config or {})
        self._given = given
        self._organization, self._dry_run = organization, dry_run
        self._python, self._timeout = python, timeout
        self._tags = dict(stack_tags or {})
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._report = self._worker.submit(self._run)

    def analyze(self, resource: RecordedResource) -> None:
        """Start analysing ``resource``; never raises, and waits for the pack only while
        too many calls are unanswered."""
        with self._lock:
            feed = self._feed
            if feed is None:
                self._backlog.append(resource)
                return
        feed.submit(resource)

    def finish(self, recording: StackRecording) -> PolicyReport:
        """AnalyzeStack over ``recording``, and the report (raises the pack's failure)."""
        self._recording.set_result(recording)
        return self._report.result()

    def close(self) -> None:
        """End the session, finished or not: the pack process never outlives it."""
        if self._closed:
            return
        self._closed = True
        if not self._recording.done():
            self._recording.set_exception(PolicyEngineError("the preview ended early"))
        with contextlib.suppress(Exception):
            self._report.result()
        self._worker.shutdown(wait=True)

    def __enter__(self) -> PolicySession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _attach(self, feed: _Session) -> None:
        """The pack is configured: send it the backlog, then every registration."""
        with self._lock:
            for resource in self._backlog:
                feed.submit(resource)
            self._backlog.clear()
            self._feed = feed

    def _run(self) -> PolicyReport:
        pack_dir, config = self._pack_dir, self._config
        pack_yaml = _load_pack_yaml(pack_dir)
        interpreter, env_path = _choose_python(pack_dir, pack_yaml, self._python)

        env = dict(os.environ)
        env.update(
            PULUMI_ORGANIZATION=self._organization,
            PULUMI_PROJECT=self._project,
            PULUMI_STACK=self._stack,
            PULUMI_DRY_RUN="true" if self._dry_run else "false",
            PULUMI_CONFIG=json.dumps(config),
        )
        if env_path is not None:
            # What the engine's shim does when it runs a virtualenv's python.
            env["PATH"] = env_path + os.pathsep + env.get("PATH", "")
            env.pop("PYTHONHOME", None)

        deadline = time.monotonic() + self._timeout
        logs = _EngineLogService()
        executor = futures.ThreadPoolExecutor(max_workers=2)
        engine_server = grpc.server(executor)
        engine_pb2_grpc.add_EngineServicer_to_server(logs, engine_server)
        engine_address = f"127.0.0.1:{engine_server.add_insecure_port('127.0.0.1:0')}"
        engine_server.start()

        pack: _PackProcess | None = None
        failure: str | None = None
        try:
            pack = _PackProcess(
                [interpreter, "-u", "-m", "pulumi.policy", engine_address, "."], pack_dir, env
            )
            session = _Session(
                pack=pack,
                pack_dir=pack_dir,
                engine_address=engine_address,
                stack=self._stack,
                project=self._project,
                attach=self._attach,
                final=self._recording.result,
                deadline=deadline,
                yaml_version=str(pack_yaml.get("version") or ""),
            )
            try:
                report = session.run(
                    config=config,
                    organization=self._organization,
                    dry_run=self._dry_run,
                    given=self._given,
                    tags=self._tags,
                    python=interpreter,
                )
            except _PackFailedError as exc:
                failure = str(exc)
        finally:
            if pack is not None:
                pack.shutdown()
            engine_server.stop(None)
            executor.shutdown(wait=False)
        if failure is not None:
            raise PolicyPackError(failure, pack.stderr_tail())

        name = report.pack_name
        report.diagnostics.extend(logs.diagnostics(name))
        report.diagnostics.extend(
            Diagnostic(severity="info", message=line, source="policy", policy_pack=name)
            for line in pack.output_lines()
        )
        return report


class _PackFailedError(Exception):
    """Internal: a call failed; becomes PolicyPackError once stderr is complete."""


class _PackProcess:
    """The policy pack process, its port and its output."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.argv = argv
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._port: str | None = None
        self._port_ready = threading.Event()
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise PolicyPackError(f"cannot start policy pack with {argv[0]}: {exc}") from exc
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        first = True
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if first:
                first = False
                self._port = line.strip()
                self._port_ready.set()
            elif line.strip():
                self._stdout.append(line)
        self._port_ready.set()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def wait_port(self, deadline: float) -> int:
        self._port_ready.wait(max(0.0, deadline - time.monotonic()))
        if self._port is None:
            # stdout closes a moment before the process is reaped: wait for the exit
            # so a pack that died is reported as such, not as slow.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=max(0.0, min(5.0, deadline - time.monotonic())))
            if self.proc.poll() is None:
                raise _PackFailedError("policy pack did not report its port in time")
            raise _PackFailedError(
                f"policy pack exited with code {self.proc.returncode} before serving"
            )
        if not self._port.isdigit():
            raise _PackFailedError(f"policy pack printed {self._port!r} instead of its port")
        return int(self._port)

    def shutdown(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The pipes reach EOF once the process is gone, so every line is read.
        for reader, pipe in zip(self._readers, (self.proc.stdout, self.proc.stderr), strict=True):
            reader.join(timeout=3)
            if pipe is not None and not reader.is_alive():
                pipe.close()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr[-_STDERR_TAIL_LINES:])

    def output_lines(self) -> list[str]:
        return [*self._stdout, *(line for line in self._stderr if line.strip())]


class _EngineLogService(engine_pb2_grpc.EngineServicer):
    """Just enough of the engine's host service to capture ``Log`` calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: list[tuple[str, str, str]] = []

    def Log(self, request: Any, context: Any) -> empty_pb2.Empty:  # noqa: N802 - gRPC method name
        with self._lock:
            severity = _LOG_SEVERITY.get(request.severity, "info")
            self._logs.append((severity, request.message, request.urn))
        return empty_pb2.Empty()

    def GetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        return engine_pb2.GetRootResourceResponse(urn="")

    def SetRootResource(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        return engine_pb2.SetRootResourceResponse()

    def diagnostics(self, pack: str) -> list[Diagnostic]:
        with self._lock:
            return [
                Diagnostic(
                    severity=sev,
                    message=msg,
                    source="policy",
                    urn=urn or None,
                    policy_pack=pack,
                )
                for sev, msg, urn in self._logs
            ]


class _Session:
    """One run: the calls to the pack, in the engine's order."""

    def __init__(
        self,
        *,
        pack: _PackProcess,
        pack_dir: Path,
        engine_address: str,
        stack: str,
        project: str,
        attach: Callable[[_Session], None],
        final: Callable[[], StackRecording],
        deadline: float,
        yaml_version: str,
    ) -> None:
        self.pack = pack
        self.pack_dir = pack_dir
        self.engine_address = engine_address
        self.stack = stack
        self.project = project
        #: Asks for the registrations once the pack is ready; then the finished
        #: recording, for AnalyzeStack.
        self.attach = attach
        self.final = final
        self.deadline = deadline
        self.yaml_version = yaml_version
        self.name = "policy pack"
        self.by_urn: dict[str, RecordedResource] = {}
        self._stub: Any = None
        self._remediate = False
        self._submit_lock = threading.Lock()
        self._in_flight: list[tuple[RecordedResource, Any, Any]] = []
        #: Calls started and perhaps not answered yet, oldest first.
        self._unanswered: collections.deque[Any] = collections.deque()
        self._submit_error: Exception | None = None
        #: Wire-form provider resources by reference, built once per provider.
        self._providers: dict[str, Any] = {}
        #: Each analysed resource's inputs and their Struct, reused by AnalyzeStack
        #: when the outputs equal the inputs (as they do in a preview's creates).
        self._input_props: dict[str, tuple[Mapping[str, Any], Any]] = {}
        self.root_urn = f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _PackFailedError(f"{self.name} timed out")
        return left

    def _call(self, method: Any, request: Any, what: str, *, optional: bool = False) -> Any:
        """A blocking call; its failure becomes the pack's error naming the call."""
        return self._result(method.future(request, timeout=self._remaining()), what, optional)

    def _result(self, future: Any, what: str, optional: bool = False) -> Any:
        try:
            return future.result()
        except grpc.RpcError as exc:
            code = exc.code()
            if optional and code == grpc.StatusCode.UNIMPLEMENTED:
                return None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _PackFailedError(f"{self.name} timed out during {what}") from None
            raise _PackFailedError(
                f"{self.name} failed during {what}: {code.name}: {exc.details()}"
            ) from None

    def run(
        self,
        *,
        config: dict[str, str],
        organization: str,
        dry_run: bool,
        given: Mapping[str, PolicyConfig],
        tags: dict[str, str],
        python: str,
    ) -> PolicyReport:
        port = self.pack.wait_port(self.deadline)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS)
        try:
            try:
                grpc.channel_ready_future(channel).result(timeout=self._remaining())
            except grpc.FutureTimeoutError:
                raise _PackFailedError(
                    f"cannot connect to the policy pack on port {port}"
                ) from None
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            return self._drive(stub, config, organization, dry_run, given, tags, python)
        finally:
            channel.close()

    def _drive(
        self,
        stub: Any,
        config: dict[str, str],
        organization: str,
        dry_run: bool,
        given: Mapping[str, PolicyConfig],
        tags: dict[str, str],
        python: str,
    ) -> PolicyReport:
        directory = str(self.pack_dir)
        self._call(
            stub.Handshake,
            analyzer_pb2.AnalyzerHandshakeRequest(
                engine_address=self.engine_address,
                root_directory=directory,
                program_directory=directory,
            ),
            "Handshake",
            optional=True,
        )
        self._call(
            stub.ConfigureStack,
            analyzer_pb2.AnalyzerStackConfigureRequest(
                stack=self.stack,
                project=self.project,
                organization=organization,
                dry_run=dry_run,
                config=config,
                tags=tags,
            ),
            "ConfigureStack",
            optional=True,
        )
        self._call(stub.GetPluginInfo, empty_pb2.Empty(), "GetPluginInfo")
        info = self._call(stub.GetAnalyzerInfo, empty_pb2.Empty(), "GetAnalyzerInfo")
        self.name = info.name
        version = self.yaml_version or info.version
        merged = self._configure(stub, info, version, given)

        analysis_started = time.perf_counter()
        self._stub = stub
        # Without a remediate-level policy, pulumi_policy's Remediate returns nothing,
        # so the round trip is skipped.
        self._remediate = any(c.enforcement_level == "remediate" for c in merged.values())
        self.attach(self)
        recording = self.final()
        with self._submit_lock:
            if self._submit_error is not None:
                raise self._submit_error
            in_flight, self._in_flight = self._in_flight, []
        diagnostics: list[Diagnostic] = []
        for res, remediation, analysis in in_flight:
            if remediation is not None:
                response = self._result(remediation, f"Remediate({res.urn})", optional=True)
                self._remediations(res, response, diagnostics, version)
            response = self._result(analysis, f"Analyze({res.urn})")
            diagnostics.extend(self._convert(d, res.urn, version) for d in response.diagnostics)

        # The engine analyses the whole stack only when the program ran to its end.
        self.by_urn.update((r.urn, r) for r in recording.resources)
        # Resources arrive in registration order, which varies between runs; report in
        # the recording's order so that one stack always reads the same.
        position = {r.urn: index for index, r in enumerate(recording.resources)}
        diagnostics.sort(key=lambda d: position.get(d.urn or "", -1))
        program_failed = any(
            d.severity == "error" and d.source != "policy" for d in recording.diagnostics
        )
        response = None
        if not program_failed:
            stack_request = analyzer_pb2.AnalyzeStackRequest(
                resources=[self._stack_resource(r) for r in recording.resources]
            )
            response = self._call(stub.AnalyzeStack, stack_request, "AnalyzeStack", optional=True)
        if response is not None:
            for d in response.diagnostics:
                urn = d.urn if d.urn in self.by_urn else self.root_urn
                diagnostics.append(self._convert(d, urn, version))

        return PolicyReport(
            pack_name=info.name,
            pack_version=version,
            diagnostics=diagnostics,
            config=merged,
            python=python,
            policies={p.name: merged[p.name].enforcement_level for p in info.policies},
            analysis_seconds=time.perf_counter() - analysis_started,
        )

    def submit(self, res: RecordedResource) -> None:
        """Start ``res``'s Remediate and Analyze calls without waiting for the answers.

        The answers are read once the stack is finished; only when too many calls are
        unanswered does this wait for the oldest. Remediations are reported, not
        applied, so Analyze need not wait for Remediate. This runs in the program's
        registering thread, so a failure is kept and raised by the session instead.
        """
        with self._submit_lock:
            if self._submit_error is not None:
                return
            try:
                self.by_urn[res.urn] = res
                analyze, remediate = self._requests(res)
                self._wait_for_room()
                remediation = None
                if remediate is not None:
                    remediation = self._stub.Remediate.future(remediate, timeout=self._remaining())
                    self._unanswered.append(remediation)
                analysis = self._stub.Analyze.future(analyze, timeout=self._remaining())
                self._unanswered.append(analysis)
            except Exception as error:
                self._submit_error = error
                return
            self._in_flight.append((res, remediation, analysis))

    def _wait_for_room(self) -> None:
        """Block until fewer than ``_MAX_UNANSWERED`` calls await their answer."""
        unanswered = self._unanswered
        while unanswered and unanswered[0].done():
            unanswered.popleft()
        while len(unanswered) >= _MAX_UNANSWERED:
            # Errors are read with the answers; here the call only has to end.
            try:
                unanswered.popleft().exception(timeout=self._remaining())
            except grpc.FutureTimeoutError:
                raise _PackFailedError(f"{self.name} timed out") from None

    def _requests(self, res: RecordedResource) -> tuple[Any, Any]:
        """The Analyze request, and the Remediate request when remediations run.

        They differ only when the inputs hold ``__`` keys (the engine keeps those for
        Remediate alone); otherwise one message serves both calls.
        """
        dropped: list[str] = []
        analyze = self._analyze_request(res, skip_internal=True, dropped=dropped)
        self._input_props[res.urn] = (res.inputs, analyze.properties)
        if not self._remediate:
            return analyze, None
        if not dropped:
            return analyze, analyze
        return analyze, self._analyze_request(res, skip_internal=False)

    def _configure(
        self, stub: Any, info: Any, version: str, given: Mapping[str, PolicyConfig]
    ) -> dict[str, PolicyConfig]:
        specs = [
            PolicySpec(
                name=p.name,
                enforcement_level=_LEVEL_NAMES_EXACT[p.enforcementLevel],
                schema_properties=(
                    json_format.MessageToDict(p.configSchema.properties)
                    if info.supportsConfig
                    else None
                ),
                required=list(p.configSchema.required),
            )
            for p in info.policies
        ]
        if not info.supportsConfig:
            if given:
                raise PolicyConfigError([f"policy pack {info.name!r} does not support config"])
            return {s.name: PolicyConfig(s.enforcement_level) for s in specs}
        initial = initial_config_from_info(info)
        merged = reconcile_policy_config(specs, initial, given, pack=info.name, version=version)
        request = analyzer_pb2.ConfigureAnalyzerRequest()
        for name, cfg in merged.items():
            entry = request.policyConfig[name]
            entry.enforcementLevel = _LEVEL_VALUES[cfg.enforcement_level or "advisory"]
            entry.properties.update(cfg.properties)
        self._call(stub.Configure, request, "Configure")
        return merged

    def _remediations(
        self, res: RecordedResource, response: Any, out: list[Diagnostic], version: str
    ) -> None:
        if response is None:
            return
        for rem in response.remediations:
            common: dict[str, Any] = {
                "source": "policy",
                "urn": res.urn,
                "policy_pack": rem.policyPackName,
                "policy_name": rem.policyName,
            }
            if rem.diagnostic:
                out.append(
                    Diagnostic(
                        severity="warning",
                        message=rem.diagnostic,
                        enforcement_level="advisory",
                        **common,
                    )
                )
            elif rem.HasField("properties"):
                after = json_format.MessageToDict(rem.properties)
                changed = {k: v for k, v in after.items() if res.inputs.get(k, _MISSING) != v}
                shown = ", ".join(
                    f"{k}={json.dumps(_mask(v), sort_keys=True)}"
                    for k, v in sorted(changed.items())
                )
                out.append(
                    Diagnostic(
                        severity="info",
                        message=(
                            f"{rem.description}\nremediation would set {shown or 'nothing'}"
                            " (not applied offline)"
                        ),
                        enforcement_level="remediate",
                        **common,
                    )
                )

    def _convert(self, d: Any, urn: str, version: str) -> Diagnostic:
        level = _LEVEL_NAMES[d.enforcementLevel]
        return Diagnostic(
            severity=_SEVERITY.get(level, "info"),
            message=d.message,
            source="policy",
            urn=urn,
            policy_pack=d.policyPackName,
            policy_name=d.policyName,
            enforcement_level=level,
        )

    def _provider(self, res: RecordedResource) -> Any:
        if not res.provider:
            return None
        ref = res.provider
        cached = self._providers.get(ref)
        if cached is not None:
            return cached
        prov = self.by_urn.get(ref) or self.by_urn.get(ref.rsplit("::", 1)[0])
        if prov is None:
            # A provider the recording does not hold: identity only.
            urn = ref if ref.count("::") == 3 else ref.rsplit("::", 1)[0]
            return analyzer_pb2.AnalyzerProviderResource(
                urn=urn, type=_urn_type(urn), name=_urn_name(urn, "")
            )
        msg = analyzer_pb2.AnalyzerProviderResource(
            urn=prov.urn, type=prov.type, name=_urn_name(prov.urn, prov.name)
        )
        msg.properties.update(marshal_properties(prov.inputs, skip_internal=True))
        self._providers[ref] = msg
        return msg

    def _analyze_request(
        self, res: RecordedResource, *, skip_internal: bool, dropped: list[str] | None = None
    ) -> Any:
        request = analyzer_pb2.AnalyzeRequest(
            urn=res.urn,
            type=res.type,
            name=_urn_name(res.urn, res.name),
            options=_options(res),
            provider=self._provider(res),
        )
        request.properties.update(
            marshal_properties(res.inputs, skip_internal=skip_internal, dropped=dropped)
        )
        return request

    def _stack_resource(self, res: RecordedResource) -> Any:
        msg = analyzer_pb2.AnalyzerResource(
            urn=res.urn,
            type=res.type,
            name=_urn_name(res.urn, res.name),
            options=_options(res),
            provider=self._provider(res),
            parent=res.parent or "",
            dependencies=res.dependencies,
        )
        analysed = self._input_props.get(res.urn)
        if analysed is not None and analysed[0] == res.outputs:
            msg.properties.CopyFrom(analysed[1])
        else:
            msg.properties.update(marshal_properties(res.outputs, skip_internal=True))
        for key, urns in res.property_dependencies.items():
            if urns:
                msg.propertyDependencies[key].urns.extend(urns)
        return msg


#: Declared levels map one to one (no remediate downgrade, unlike diagnostics).
_LEVEL_NAMES_EXACT = {v: k for k, v in _LEVEL_VALUES.items()}
_MISSING = object()


def initial_config_from_info(info: Any) -> dict[str, PolicyConfig]:
    """The pack's ``initial_config`` as the engine reads it (a missing level is advisory)."""
    return {
        name: PolicyConfig(
            _LEVEL_NAMES_EXACT[cfg.enforcementLevel],
            json_format.MessageToDict(cfg.properties),
        )
        for name, cfg in info.initialConfig.items()
    }


def marshal_properties(
    props: Mapping[str, Any], *, skip_internal: bool, dropped: list[str] | None = None
) -> dict[str, Any]:
    """Wire-form properties as the engine marshals them for an analyzer.

    ``dropped``, when given, collects the internal keys that were left out.
    """
    marshalled = {}
    for k, v in props.items():
        if skip_internal and k.startswith("__"):
            if dropped is not None:
                dropped.append(k)
            continue
        marshalled[k] = _marshal(v, skip_internal, dropped)
    return marshalled


def _marshal(value: Any, skip_internal: bool, dropped: list[str] | None) -> Any:
    if isinstance(value, dict):
        sig = value.get(_SIG)
        if sig == _SECRET_SIG:
            return {
                _SIG: _SECRET_SIG,
                "value": _marshal(value.get("value"), skip_internal, dropped),
            }
        if sig == _OUTPUT_SIG:
            inner = (
                _marshal(value["value"], skip_internal, dropped) if "value" in value else _UNKNOWN
            )
            return {_SIG: _SECRET_SIG, "value": inner} if value.get("secret") else inner
        if sig == _RESOURCE_SIG:
            if "id" in value:
                return value["id"] or _UNKNOWN
            return value.get("urn", "")
        if sig is not None:
            return value  # assets and archives pass unchanged
        return marshal_properties(value, skip_internal=skip_internal, dropped=dropped)
    if isinstance(value, list):
        return [_marshal(v, skip_internal, dropped) for v in value]
    return value


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(_SIG) == _SECRET_SIG:
            return "[secret]"
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _seconds(value: Any) -> float:
    """A custom timeout in seconds; strings use Go duration syntax ("5m", "1h30m")."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid custom timeout {value!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _options(res: RecordedResource) -> Any:
    opts = res.options or {}
    dbr = opts.get("deleteBeforeReplace")
    timeouts = opts.get("customTimeouts") or {}
    aliases = [
        a if isinstance(a, str) else a.get("urn", "")
        for a in opts.get("aliases") or []
        if isinstance(a, str) or (isinstance(a, dict) and a.get("urn"))
    ]
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(opts.get("protect", False)),
        ignoreChanges=list(opts.get("ignoreChanges") or []),
        deleteBeforeReplace=bool(dbr),
        deleteBeforeReplaceDefined=bool(opts.get("deleteBeforeReplaceDefined", dbr is not None)),
        additionalSecretOutputs=list(opts.get("additionalSecretOutputs") or []),
        aliases=aliases,
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
            create=_seconds(timeouts.get("create")),
            update=_seconds(timeouts.get("update")),
            delete=_seconds(timeouts.get("delete")),
        ),
        parent=res.parent or "",
    )


def _urn_name(urn: str, fallback: str) -> str:
    # The engine names a resource by its URN (``URN.Name()``).
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else fallback


def _urn_type(urn: str) -> str:
    parts = urn.split("::", 3)
    return parts[2].rsplit("$", 1)[-1] if len(parts) == 4 else ""


def _load_pack_yaml(pack_dir: Path) -> dict[str, Any]:
    path = pack_dir / "PulumiPolicy.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise PolicyPackError(f"no policy pack at {pack_dir}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyPackError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyPackError(f"{path}: expected a mapping")
    runtime = data.get("runtime")
    name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if name != "python":
        raise PolicyPackError(f"{path}: runtime {name!r} is not supported, only python")
    return data


def _choose_python(
    pack_dir: Path, pack_yaml: Mapping[str, Any], python: str | None
) -> tuple[str, str | None]:
    """The interpreter to run, and a bin directory to put first on PATH (venv only)."""
    if python:
        return python, None
    runtime = pack_yaml.get("runtime")
    options = runtime.get("options") if isinstance(runtime, dict) else None
    venv = options.get("virtualenv") if isinstance(options, dict) else None
    if venv:
        bindir = (pack_dir / str(venv)).resolve() / ("Scripts" if os.name == "nt" else "bin")
        candidate = bindir / ("python.exe" if os.name == "nt" else "python")
        if candidate.is_file():
            return str(candidate), str(bindir)
    return sys.executable, None
