"""What the offline preview records of one stack, in the shape the engine sees it.

Inputs are kept in wire form (camelCase keys, numbers as floats, secrets as the
RPC secret sentinel, unknowns as the unknown sentinel) so the policy pack receives
exactly what ``pulumi preview`` would send it; the renderers mask secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: ``(urn, type, wire inputs) -> outputs`` the engine's state holds for a resource
#: whose inputs are unchanged (what an earlier ``pulumi up`` saw a step print), or None.
StateOutputs = Callable[[str, str, Mapping[str, Any]], Mapping[str, Any] | None]


@dataclass(slots=True)
class RecordedResource:
    """One resource registration (a custom resource, a component or a provider)."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    #: URN of the explicit provider, or None (components, the stack itself).
    provider: str | None
    #: Wire-form inputs: camelCase keys, secrets as the RPC secret sentinel.
    inputs: dict[str, Any]
    #: Resource options as the engine passes them to a policy pack:
    #: protect, ignoreChanges, deleteBeforeReplace, additionalSecretOutputs,
    #: aliases, customTimeouts, retainOnDelete, replaceOnChanges.
    options: dict[str, Any]
    #: Outputs as the mocks resolved them (wire form, like ``inputs``).
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True)
class RecordedRead:
    """A resource read (StackReference, ``get_*``): never shown to a policy pack."""

    urn: str
    type: str
    name: str
    id: str
    inputs: dict[str, Any]


@dataclass(slots=True)
class Diagnostic:
    """A message about the stack: a program error or a policy violation."""

    severity: str  # "error", "warning", "info"
    message: str
    #: "program", "config" or "policy".
    source: str
    urn: str | None = None
    policy_pack: str | None = None
    policy_name: str | None = None
    enforcement_level: str | None = None  # "advisory" | "mandatory" | "remediate" | "disabled"
    #: Longer text shown after the message where there is room (a program's traceback).
    detail: str | None = None


@dataclass(slots=True)
class StackRecording:
    """Everything the offline preview learnt about one stack."""

    stack: str
    project: str
    resources: list[RecordedResource] = field(default_factory=list)
    reads: list[RecordedRead] = field(default_factory=list)
    #: The stack's exports, as resolved values (secrets as ``pulumi.Output``-free
    #: wire sentinels so they stay marked).
    outputs: dict[str, Any] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: The flat config the program ran with (secure values as the offline placeholder);
    #: a policy pack receives it as the engine's PULUMI_CONFIG.
    config: dict[str, str] = field(default_factory=dict)
