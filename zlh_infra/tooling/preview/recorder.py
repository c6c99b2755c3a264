"""A mock resource monitor that records what a program registers, the way the engine sees it.

The stock ``MockMonitor`` builds URNs from the last parent type only, keeps the Stack
type in children's URNs and silently overwrites duplicate URNs. The engine does none
of that, and the policy pack matches on URNs, so this monitor computes engine URNs,
refuses duplicates with a diagnostic and keeps the raw request: wire-form inputs,
parent, dependencies, property dependencies, provider and resource options.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

from google.protobuf import empty_pb2, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import rpc
from pulumi.runtime.mocks import (
    MockCallArgs,
    MockEngine,
    MockMonitor,
    MockResourceArgs,
    Mocks,
    _resolve_callbacks,
)
from pulumi.runtime.proto import engine_pb2, resource_pb2
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from zlh_infra.platform import urns
from zlh_infra.platform.type_tokens import CONTAINER as CONTAINER_TYPE
from zlh_infra.platform.type_tokens import DOWNLOAD_FILE as DOWNLOAD_FILE_TYPE
from zlh_infra.platform.type_tokens import RANDOM_PASSWORD as RANDOM_PASSWORD_TYPE
from zlh_infra.platform.type_tokens import RANDOM_STRING as RANDOM_STRING_TYPE
from zlh_infra.platform.type_tokens import STACK as STACK_TYPE
from zlh_infra.platform.type_tokens import STACK_REFERENCE as STACK_REFERENCE_TYPE
from zlh_infra.platform.type_tokens import VM as VM_TYPE
from zlh_infra.platform.wire_numbers import whole_number
from zlh_infra.tooling.preview.durations import duration_seconds
from zlh_infra.tooling.preview.recording import (
    Diagnostic,
    RecordedRead,
    RecordedResource,
    StateOutputs,
)

# --- wire form -------------------------------------------------------------------------


def struct_to_wire(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A protobuf Struct as plain Python, without the SDK's rehydration.

    ``rpc.deserialize_properties`` turns resource references into Resource objects and
    assets into Asset objects; the engine hands a policy pack the raw values instead:
    every number a float, secrets, unknowns and resource references as their sentinels.
    """
    return {key: _value_to_wire(value) for key, value in struct.fields.items()}


def _value_to_wire(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_wire(value.struct_value)
    if kind == "list_value":
        return [_value_to_wire(item) for item in value.list_value.values]
    if kind == "number_value":
        return float(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def contains_secret(value: Any) -> bool:
    """Whether a wire-form value holds a secret sentinel anywhere."""
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_secret(item) for item in value)
    return False


# --- URNs --------------------------------------------------------------------------------


def engine_urn(stack: str, project: str, parent_urn: str | None, type_: str, name: str) -> str:
    """The URN the engine gives a resource (``resource.NewURN``).

    The qualified type is the parent's whole qualified type chain plus this type,
    joined by ``$``; a parent that is the root Stack adds nothing.
    """
    qualified = type_
    if parent_urn:
        parent = urns.parse(parent_urn)
        if parent is None:
            raise ValueError(f"parent {parent_urn!r} is not a URN")
        parent_type = parent.qualified_type
        if parent_type != STACK_TYPE:
            qualified = f"{parent_type}${type_}"
    return f"{urns.PREFIX}{stack}::{project}::{qualified}::{name}"


# --- resource options --------------------------------------------------------------------


def _alias_urns(request: Any, *, stack: str, project: str, parent_urn: str | None) -> list[str]:
    """The engine turns alias specs into URNs, defaulting each part to the resource's own."""
    urns = list(request.aliasURNs)
    for alias in request.aliases:
        if alias.WhichOneof("alias") == "urn":
            urns.append(alias.urn)
            continue
        spec = alias.spec
        if spec.noParent:
            alias_parent: str | None = None
        elif spec.parentUrn:
            alias_parent = spec.parentUrn
        else:
            alias_parent = parent_urn
        urns.append(
            engine_urn(
                spec.stack or stack,
                spec.project or project,
                alias_parent,
                spec.type or request.type,
                spec.name or request.name,
            )
        )
    return urns


# --- mocks -------------------------------------------------------------------------------


def fake_secret(seed: str, length: int = 20) -> str:
    """A deterministic stand-in for a generated secret, so two runs record the same inputs."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    digest = hashlib.sha256(seed.encode()).digest()
    while len(digest) < length:
        digest += hashlib.sha256(digest).digest()
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:length])


#: Answers a generated secret: ``(resource type, resource name, length) -> value``.
SecretValue = Callable[[str, str, int], str]


def _last_segment(stack_name: str) -> str:
    return stack_name.rsplit("/", 1)[-1]


class PreviewMocks(Mocks):
    """Deterministic answers: inputs come back as outputs, ids derive from names.

    StackReference reads are answered from ``stack_outputs`` (keyed by stack name; an
    ``org/project/stack`` reference matches on its last segment), with the outputs named
    in ``secret_output_names`` wrapped as secrets like the engine returns them.

    ``secret_value`` answers the ``result`` of RandomPassword and RandomString resources
    (``(type, name, length) -> value``); without it they are ``fake_secret`` values.
    """

    def __init__(
        self,
        stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
        secret_output_names: Mapping[str, Collection[str]] | None = None,
        secret_value: SecretValue | None = None,
    ) -> None:
        self.stack_outputs = dict(stack_outputs or {})
        self.secret_output_names = dict(secret_output_names or {})
        self.secret_value = secret_value
        #: Referenced stacks this run had no outputs for.
        self.unresolved_references: list[str] = []

    def call(self, args: MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, []

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        if args.typ == STACK_REFERENCE_TYPE:
            return self._stack_reference(args)
        outputs = dict(args.inputs)
        if args.typ == RANDOM_PASSWORD_TYPE:
            length = int(rpc.unwrap_rpc_secret(outputs.get("length")) or 20)
            password = self._secret(args.typ, args.name, f"password:{args.name}", length)
            # Wrapped here already; the monitor also wraps additionalSecretOutputs.
            outputs["result"] = rpc.wrap_rpc_secret(password)
            outputs["bcryptHash"] = rpc.wrap_rpc_secret(fake_secret(f"bcrypt:{args.name}", 60))
        elif args.typ == RANDOM_STRING_TYPE:
            length = int(rpc.unwrap_rpc_secret(outputs.get("length")) or 20)
            outputs["result"] = self._secret(args.typ, args.name, f"string:{args.name}", length)
        return args.resource_id or self._resource_id(args), outputs

    def _secret(self, type_: str, name: str, seed: str, length: int) -> str:
        if self.secret_value is None:
            return fake_secret(seed, length)
        return self.secret_value(type_, name, length)

    @staticmethod
    def _resource_id(args: MockResourceArgs) -> str:
        """Ids shaped like the provider's where the program feeds them on (guests, files)."""
        inputs = args.inputs
        if args.typ in (CONTAINER_TYPE, VM_TYPE):
            vmid = whole_number(rpc.unwrap_rpc_secret(inputs.get("vmId")), digits=False)
            if vmid is not None:
                return str(vmid)
        if args.typ == DOWNLOAD_FILE_TYPE:
            parts = [
                rpc.unwrap_rpc_secret(inputs.get(key))
                for key in ("datastoreId", "contentType", "fileName")
            ]
            if all(isinstance(part, str) and part for part in parts):
                return f"{parts[0]}:{parts[1]}/{parts[2]}"
        return f"{args.name}-id"

    def _stack_reference(self, args: MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        target = str(args.inputs.get("name") or args.resource_id or args.name)
        key = self._find_stack(target)
        if key is None:
            self.unresolved_references.append(target)
            outputs: dict[str, Any] = {}
            secret_names: list[str] = []
        else:
            secret_names = sorted(set(self.secret_output_names.get(key, ())))
            outputs = {
                name: rpc.wrap_rpc_secret(value) if name in secret_names else value
                for name, value in self.stack_outputs[key].items()
            }
            secret_names = sorted(
                set(secret_names) | {n for n, v in outputs.items() if contains_secret(v)}
            )
        return target, {**args.inputs, "outputs": outputs, "secretOutputNames": secret_names}

    def _find_stack(self, target: str) -> str | None:
        if target in self.stack_outputs:
            return target
        for key in self.stack_outputs:
            if _last_segment(key) == _last_segment(target):
                return key
        return None


# --- the monitor -------------------------------------------------------------------------


class RecordingMonitor(MockMonitor):
    """Answers the SDK's resource RPCs through ``Mocks`` and records every request.

    Method names are the gRPC service's. Registration RPCs arrive on executor
    threads, so all bookkeeping holds a lock.
    """

    def __init__(
        self,
        mocks: Mocks,
        *,
        stack: str,
        project: str,
        on_register: Callable[[RecordedResource], None] | None = None,
        state_outputs: StateOutputs | None = None,
    ) -> None:
        super().__init__(mocks)
        self.stack = stack
        self.project = project
        #: Asked, after the mocks, for outputs an earlier deployment left in the state.
        self.state_outputs = state_outputs
        #: Told of each resource as it registers, as the engine tells a policy pack.
        self.on_register = on_register
        self.recorded: list[RecordedResource] = []
        self.reads: list[RecordedRead] = []
        self.diagnostics: list[Diagnostic] = []
        #: The root stack's exports in wire form (secrets as sentinels).
        self.stack_outputs: dict[str, Any] = {}
        self._by_urn: dict[str, RecordedResource | RecordedRead] = {}
        self._responses: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._thread_loops: list[asyncio.AbstractEventLoop] = []

    def _thread_loop(self) -> None:
        """Give this executor thread the event loop the SDK's (de)serialisation needs.

        The loops are remembered so ``close`` can close them: left to the garbage
        collector they fail noisily at interpreter exit.
        """
        loop: asyncio.AbstractEventLoop = _ensure_event_loop()  # type: ignore[no-untyped-call]
        with self._lock:
            if loop not in self._thread_loops:
                self._thread_loops.append(loop)

    def close(self) -> None:
        """Close the executor threads' event loops; call once the run's executor is shut down."""
        with self._lock:
            loops, self._thread_loops = self._thread_loops, []
        for loop in loops:
            if not loop.is_running() and not loop.is_closed():
                loop.close()

    @property
    def stack_urn(self) -> str:
        return engine_urn(
            self.stack, self.project, None, STACK_TYPE, f"{self.project}-{self.stack}"
        )

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return engine_urn(self.stack, self.project, parent or None, type_, name)

    def _claim(self, urn: str, entry: RecordedResource | RecordedRead) -> bool:
        """Reserve a URN; on a clash record the engine's refusal and keep the first."""
        with self._lock:
            if urn in self._by_urn:
                self.diagnostics.append(
                    Diagnostic(
                        severity="error",
                        message=(
                            f"duplicate resource URN {urn}: the engine refuses a second "
                            "registration with the same type chain and name"
                        ),
                        source="program",
                        urn=urn,
                    )
                )
                return False
            self._by_urn[urn] = entry
            if isinstance(entry, RecordedRead):
                self.reads.append(entry)
            else:
                self.recorded.append(entry)
        if self.on_register is not None and isinstance(entry, RecordedResource):
            self.on_register(entry)
        return True

    def _options(self, request: Any, urn: str, parent: str | None) -> dict[str, Any]:
        timeouts: dict[str, float] | None = None
        if request.HasField("customTimeouts"):
            raw = request.customTimeouts
            try:
                values = {
                    op: duration_seconds(getattr(raw, op)) if getattr(raw, op) else 0.0
                    for op in ("create", "update", "delete")
                }
            except ValueError as error:
                self._add_diagnostic(
                    Diagnostic("error", f"customTimeouts: {error}", "program", urn=urn)
                )
            else:
                timeouts = values if any(values.values()) else None
        return {
            "protect": bool(request.protect),
            "ignoreChanges": list(request.ignoreChanges),
            "deleteBeforeReplace": (
                bool(request.deleteBeforeReplace) if request.deleteBeforeReplaceDefined else None
            ),
            "additionalSecretOutputs": list(request.additionalSecretOutputs),
            "aliases": _alias_urns(
                request, stack=self.stack, project=self.project, parent_urn=parent
            ),
            "customTimeouts": timeouts,
            "retainOnDelete": bool(request.retainOnDelete),
            "replaceOnChanges": list(request.replaceOnChanges),
            "parent": parent,
        }

    def _add_diagnostic(self, diagnostic: Diagnostic) -> None:
        with self._lock:
            self.diagnostics.append(diagnostic)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802
        parent = request.parent or None
        urn = self.make_urn(request.parent, request.type, request.name)
        inputs = struct_to_wire(request.object)
        record = RecordedResource(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=bool(request.custom),
            parent=parent,
            dependencies=list(request.dependencies),
            property_dependencies={
                key: list(deps.urns) for key, deps in request.propertyDependencies.items()
            },
            provider=urns.provider_urn(request.provider),
            inputs=inputs,
            options=self._options(request, urn, parent),
        )
        if not self._claim(urn, record):
            with self._lock:
                earlier = self._responses.get(urn)
            return earlier or resource_pb2.RegisterResourceResponse(urn=urn)

        if request.type == STACK_TYPE:
            response = resource_pb2.RegisterResourceResponse(urn=urn)
        else:
            self._thread_loop()
            resource_args = MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=rpc.deserialize_properties(request.object),
                provider=request.provider,
                resource_id=request.importId,
                custom=bool(request.custom),
                transforms=_resolve_callbacks(request.transforms),
            )
            resource_id, state = self.mocks.new_resource(resource_args)
            state = dict(state)
            if self.state_outputs is not None:
                state.update(self.state_outputs(urn, request.type, inputs) or {})
            # The engine, not the provider, makes these outputs secret.
            for key in request.additionalSecretOutputs:
                if key in state and not hasattr(state[key], "apply"):
                    state[key] = rpc.wrap_rpc_secret(state[key])
            obj = _sync_await(rpc.serialize_properties(state, {}))
            record.outputs = struct_to_wire(obj)
            record.id = (resource_id or "") if request.custom else None
            self.resources[urn] = MockMonitor.ResourceRegistration(urn, record.id or "", state)
            response = resource_pb2.RegisterResourceResponse(
                urn=urn, id=record.id or "", object=obj
            )
        with self._lock:
            self._responses[urn] = response
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802
        urn = self.make_urn(request.parent, request.type, request.name)
        read = RecordedRead(
            urn=urn,
            type=request.type,
            name=request.name,
            id=request.id,
            inputs=struct_to_wire(request.properties),
        )
        if not self._claim(urn, read):
            return resource_pb2.ReadResourceResponse(urn=urn)
        self._thread_loop()
        resource_id, state = self.mocks.new_resource(
            MockResourceArgs(
                typ=request.type,
                name=request.name,
                inputs=rpc.deserialize_properties(request.properties),
                provider=request.provider,
                resource_id=request.id,
            )
        )
        props = _sync_await(rpc.serialize_properties(state, {}))
        self.resources[urn] = MockMonitor.ResourceRegistration(urn, resource_id or "", state)
        return resource_pb2.ReadResourceResponse(urn=urn, properties=props)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        outputs = struct_to_wire(request.outputs)
        with self._lock:
            entry = self._by_urn.get(request.urn)
            if isinstance(entry, RecordedResource):
                entry.outputs = outputs
            if request.urn == self.stack_urn:
                self.stack_outputs = outputs
        return empty_pb2.Empty()


class RecordingEngine(MockEngine):
    """Keeps the program's warnings and errors (``pulumi.log``, field deprecations)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.diagnostics: list[Diagnostic] = []
        self._lock = threading.Lock()

    def Log(self, request: Any) -> None:  # noqa: N802
        severity = {engine_pb2.WARNING: "warning", engine_pb2.ERROR: "error"}.get(request.severity)
        if severity is None:
            return
        with self._lock:
            self.diagnostics.append(
                Diagnostic(severity, request.message, "program", urn=request.urn or None)
            )
