"""The analyzer protocol, driven the way the engine drives a policy pack.

The calls, in the engine's order: ``Handshake``, ``ConfigureStack``, ``GetPluginInfo``,
``GetAnalyzerInfo``, ``Configure``, then ``Remediate`` and ``Analyze`` for every
registered resource in registration order, then ``AnalyzeStack`` once.

What is sent, and why:

* Every registered resource is analysed: custom resources, components, explicit
  providers and the root ``pulumi:pulumi:Stack`` alike, because the engine's step
  generator analyses every ``RegisterResource`` it sees. Reads are never sent; default
  providers are not in a recording, so they are not analysed (the engine would).
* Properties are marshalled as the engine marshals them (``wire``).
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
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf import empty_pb2, message  # type: ignore[import-untyped]
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, plugin_pb2

from ..policy_config import PolicyConfig, PolicyConfigError, reconcile_policy_config
from ..recording import Diagnostic, RecordedResource, StackRecording
from .errors import PackFailedError
from .messages import (
    ResourceMessages,
    configure_request,
    initial_config_from_info,
    policy_diagnostic,
    policy_specs,
    remediation_diagnostics,
)
from .pack_process import PackProcess
from .report import PolicyReport
from .settings import SessionSettings

_M = TypeVar("_M", bound=message.Message)

# Same limit as the policy SDK's server, so large stacks fit in one AnalyzeStack.
_MAX_MESSAGE = 400 * 1024 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
]


class PackCalls:
    """Calls to the pack within one deadline; a failure names the call that failed."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        #: The pack's own name, once it has told it.
        self.name = "policy pack"

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise PackFailedError(f"{self.name} timed out")
        return left

    def start(self, method: grpc.UnaryUnaryMultiCallable, request: message.Message) -> grpc.Future:
        """Start a call; its answer is read with ``result``."""
        return method.future(request, timeout=self.remaining())

    def call(
        self,
        method: grpc.UnaryUnaryMultiCallable,
        request: message.Message,
        what: str,
        answer: type[_M],
    ) -> _M:
        """A blocking call, answered with an ``answer`` message."""
        return self.result(self.start(method, request), what, answer)

    def optional_call(
        self,
        method: grpc.UnaryUnaryMultiCallable,
        request: message.Message,
        what: str,
        answer: type[_M],
    ) -> _M | None:
        """A blocking call the pack may not implement (then None)."""
        return self.optional_result(self.start(method, request), what, answer)

    def result(self, future: grpc.Future, what: str, answer: type[_M]) -> _M:
        found = self._wait(future, what, optional=False)
        return self._checked(found, what, answer)

    def optional_result(self, future: grpc.Future, what: str, answer: type[_M]) -> _M | None:
        found = self._wait(future, what, optional=True)
        return None if found is None else self._checked(found, what, answer)

    def _wait(self, future: grpc.Future, what: str, *, optional: bool) -> object:
        try:
            found: object = future.result()
        except grpc.RpcError as exc:
            code = exc.code()
            if optional and code == grpc.StatusCode.UNIMPLEMENTED:
                return None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise PackFailedError(f"{self.name} timed out during {what}") from None
            raise PackFailedError(
                f"{self.name} failed during {what}: {code.name}: {exc.details()}"
            ) from None
        return found

    def _checked(self, found: object, what: str, answer: type[_M]) -> _M:
        # The stubs' hints name their messages by a module that does not exist
        # (``pulumi.analyzer_pb2``), so answers come back untyped: this types them.
        if not isinstance(found, answer):
            raise PackFailedError(
                f"{self.name} answered {what} with {type(found).__name__}, not {answer.__name__}"
            )
        return found


class ResourceFeed:
    """Each registered resource's Remediate and Analyze calls, started as it registers."""

    def __init__(
        self,
        stub: analyzer_pb2_grpc.AnalyzerStub,
        calls: PackCalls,
        messages: ResourceMessages,
        *,
        remediate: bool,
        max_unanswered: int,
    ) -> None:
        self._stub, self._calls, self._messages = stub, calls, messages
        self._remediate = remediate
        self._max_unanswered = max_unanswered
        self._lock = threading.Lock()
        self._in_flight: list[tuple[RecordedResource, grpc.Future | None, grpc.Future]] = []
        #: Calls started and perhaps not answered yet, oldest first.
        self._unanswered: collections.deque[grpc.Future] = collections.deque()
        self._error: Exception | None = None

    def submit(self, res: RecordedResource) -> None:
        """Start ``res``'s Remediate and Analyze calls without waiting for the answers.

        The answers are read once the stack is finished; only when too many calls are
        unanswered does this wait for the oldest. Remediations are reported, not
        applied, so Analyze need not wait for Remediate. This runs in the program's
        registering thread, so a failure is kept and raised by ``answers`` instead.
        """
        with self._lock:
            if self._error is not None:
                return
            try:
                analyze, remediate = self._messages.requests(res, remediate=self._remediate)
                self._wait_for_room()
                remediation = None
                if remediate is not None:
                    remediation = self._calls.start(self._stub.Remediate, remediate)
                    self._unanswered.append(remediation)
                analysis = self._calls.start(self._stub.Analyze, analyze)
                self._unanswered.append(analysis)
            except Exception as error:
                self._error = error
                return
            self._in_flight.append((res, remediation, analysis))

    def answers(self) -> list[Diagnostic]:
        """Wait for every call started so far; their diagnostics, in registration order."""
        with self._lock:
            if self._error is not None:
                raise self._error
            in_flight, self._in_flight = self._in_flight, []
        diagnostics: list[Diagnostic] = []
        for res, remediation, analysis in in_flight:
            if remediation is not None:
                remedied = self._calls.optional_result(
                    remediation, f"Remediate({res.urn})", analyzer_pb2.RemediateResponse
                )
                if remedied is not None:
                    diagnostics.extend(remediation_diagnostics(res, remedied))
            analysed = self._calls.result(
                analysis, f"Analyze({res.urn})", analyzer_pb2.AnalyzeResponse
            )
            diagnostics.extend(policy_diagnostic(d, res.urn) for d in analysed.diagnostics)
        return diagnostics

    def _wait_for_room(self) -> None:
        """Block until fewer than ``max_unanswered`` calls await their answer."""
        unanswered = self._unanswered
        while unanswered and unanswered[0].done():
            unanswered.popleft()
        while len(unanswered) >= self._max_unanswered:
            # Errors are read with the answers; here the call only has to end.
            try:
                unanswered.popleft().exception(timeout=self._calls.remaining())
            except grpc.FutureTimeoutError:
                raise PackFailedError(f"{self._calls.name} timed out") from None


class AnalyzerDriver:
    """One run: the calls to the pack, in the engine's order."""

    def __init__(
        self,
        *,
        pack: PackProcess,
        pack_dir: Path,
        engine_address: str,
        settings: SessionSettings,
        given: Mapping[str, PolicyConfig],
        attach: Callable[[ResourceFeed], None],
        final: Callable[[], StackRecording],
        deadline: float,
        yaml_version: str,
    ) -> None:
        self.pack = pack
        self.pack_dir = pack_dir
        self.engine_address = engine_address
        self.settings = settings
        #: The policy config file's entries.
        self.given = given
        #: Takes the feed for the registrations once the pack is ready; then ``final``
        #: gives the finished recording, for AnalyzeStack.
        self.attach = attach
        self.final = final
        self.yaml_version = yaml_version
        self._calls = PackCalls(deadline)

    def run(self) -> PolicyReport:
        port = self.pack.wait_port(self._calls.deadline)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_CHANNEL_OPTIONS)
        try:
            try:
                grpc.channel_ready_future(channel).result(timeout=self._calls.remaining())
            except grpc.FutureTimeoutError:
                raise PackFailedError(f"cannot connect to the policy pack on port {port}") from None
            return self._drive(analyzer_pb2_grpc.AnalyzerStub(channel))
        finally:
            channel.close()

    def _drive(self, stub: analyzer_pb2_grpc.AnalyzerStub) -> PolicyReport:
        calls, settings = self._calls, self.settings
        directory = str(self.pack_dir)
        calls.optional_call(
            stub.Handshake,
            analyzer_pb2.AnalyzerHandshakeRequest(
                engine_address=self.engine_address,
                root_directory=directory,
                program_directory=directory,
            ),
            "Handshake",
            analyzer_pb2.AnalyzerHandshakeResponse,
        )
        calls.optional_call(
            stub.ConfigureStack,
            analyzer_pb2.AnalyzerStackConfigureRequest(
                stack=settings.stack,
                project=settings.project,
                organization=settings.organization,
                dry_run=settings.dry_run,
                config=dict(settings.stack_config),
                tags=dict(settings.stack_tags),
            ),
            "ConfigureStack",
            analyzer_pb2.AnalyzerStackConfigureResponse,
        )
        calls.call(stub.GetPluginInfo, empty_pb2.Empty(), "GetPluginInfo", plugin_pb2.PluginInfo)
        info = calls.call(
            stub.GetAnalyzerInfo, empty_pb2.Empty(), "GetAnalyzerInfo", analyzer_pb2.AnalyzerInfo
        )
        calls.name = info.name
        version = self.yaml_version or info.version
        merged = self._configure(stub, info, version)

        analysis_started = time.perf_counter()
        messages = ResourceMessages()
        feed = ResourceFeed(
            stub,
            calls,
            messages,
            # Without a remediate-level policy, pulumi_policy's Remediate returns
            # nothing, so the round trip is skipped.
            remediate=any(c.enforcement_level == "remediate" for c in merged.values()),
            max_unanswered=settings.max_unanswered,
        )
        self.attach(feed)
        recording = self.final()
        diagnostics = feed.answers()

        # The engine analyses the whole stack only when the program ran to its end.
        messages.by_urn.update((r.urn, r) for r in recording.resources)
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
                resources=[messages.stack_resource(r) for r in recording.resources]
            )
            response = calls.optional_call(
                stub.AnalyzeStack, stack_request, "AnalyzeStack", analyzer_pb2.AnalyzeResponse
            )
        if response is not None:
            for d in response.diagnostics:
                urn = d.urn if d.urn in messages.by_urn else settings.root_urn
                diagnostics.append(policy_diagnostic(d, urn))

        return PolicyReport(
            pack_name=info.name,
            pack_version=version,
            diagnostics=diagnostics,
            config=merged,
            policies={p.name: merged[p.name].enforcement_level for p in info.policies},
            analysis_seconds=time.perf_counter() - analysis_started,
        )

    def _configure(
        self, stub: analyzer_pb2_grpc.AnalyzerStub, info: analyzer_pb2.AnalyzerInfo, version: str
    ) -> dict[str, PolicyConfig]:
        specs = policy_specs(info)
        if not info.supportsConfig:
            if self.given:
                raise PolicyConfigError([f"policy pack {info.name!r} does not support config"])
            return {s.name: PolicyConfig(s.enforcement_level) for s in specs}
        initial = initial_config_from_info(info)
        merged = reconcile_policy_config(
            specs, initial, self.given, pack=info.name, version=version
        )
        calls = self._calls
        calls.call(stub.Configure, configure_request(merged), "Configure", empty_pb2.Empty)
        return merged
