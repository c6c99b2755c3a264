"""What a check sees of one resource, and readers for the properties the checks use.

Properties arrive as the engine sends them to a policy pack: camelCase keys, every
number a float, secrets already unwrapped to plain values by ``pulumi_policy``, and,
during preview, values not yet known. ``pulumi_policy`` wraps the properties in a
proxy that raises ``UnknownValueError`` when a check reads such a value; a resource
check lets it propagate (the SDK then reports "can't run policy ... during preview"
as advisory), and a stack check skips only the resource it could not read
(:meth:`Findings.reading`).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any, Literal
from urllib.parse import urlsplit

from pulumi_policy.proxy import UnknownValueError

from zlh_infra.platform import urns

# Re-exported (``X as X``): the checks name resources, and read guests, by these.
from zlh_infra.platform.firewall_state import CLONED_VM as CLONED_VM
from zlh_infra.platform.firewall_state import CLONED_VM_LEGACY as CLONED_VM_LEGACY
from zlh_infra.platform.firewall_state import GUEST_TYPES as GUEST_TYPES
from zlh_infra.platform.firewall_state import Nic as Nic
from zlh_infra.platform.firewall_state import guest_nics, guest_vmid, vmid_key
from zlh_infra.platform.topology import (
    TAG_PREFIX_LAYER,
    TAG_PREFIX_ROLE,
    TAG_PREFIX_SERVICE,
    Layer,
)
from zlh_infra.platform.topology import short_stack as short_stack
from zlh_infra.platform.type_tokens import CONTAINER as CONTAINER
from zlh_infra.platform.type_tokens import DATACENTER_FIREWALL
from zlh_infra.platform.type_tokens import FIREWALL_ALIAS as FIREWALL_ALIAS
from zlh_infra.platform.type_tokens import FIREWALL_IPSET as FIREWALL_IPSET
from zlh_infra.platform.type_tokens import FIREWALL_OPTIONS as FIREWALL_OPTIONS
from zlh_infra.platform.type_tokens import FIREWALL_RULES as FIREWALL_RULES
from zlh_infra.platform.type_tokens import PROXMOX_PROVIDER as PROXMOX_PROVIDER
from zlh_infra.platform.type_tokens import SECURITY_GROUP as SECURITY_GROUP
from zlh_infra.platform.type_tokens import VM as VM
from zlh_infra.platform.type_tokens import VM2 as VM2
from zlh_infra.platform.type_tokens import VM_FRAMEWORK as VM_FRAMEWORK
from zlh_infra.platform.vmids import DEFAULT_SCHEME
from zlh_infra.platform.wire_numbers import whole_number as whole_number

CLUSTER_FIREWALL = DATACENTER_FIREWALL


#: Type tokens of the program's own components start with this package name.
COMPONENT_PACKAGE = "zlh"


@dataclass(frozen=True, slots=True)
class Provider:
    """The explicit provider a resource is managed through."""

    urn: str
    type: str
    name: str
    props: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Resource:
    """One registered resource: a guest, a firewall resource, a component, a provider."""

    urn: str
    type: str
    name: str
    #: Inputs (resource policies) or outputs (stack policies), in wire form.
    props: Mapping[str, Any]
    provider: Provider | None = None
    parent: str | None = None
    dependencies: tuple[str, ...] = ()
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    protect: bool = False


#: How a message joins problem and fix: "; " mostly, ": " after a reason ("...; a host has
#: one datacenter firewall setting: remove it."), ". " when the problem is a sentence of its own.
Joint = Literal["; ", ": ", ". "]


@dataclass(frozen=True, slots=True)
class Violation:
    """What a check found: what is wrong, the change that fixes it, and where.

    ``urn`` is the resource to change (None: the stack); ``subject`` names it when the
    message leads with it (``"<subject>: <problem>"``), and is empty when the problem
    names it in its own words. ``fix`` is a clause without its final period.
    """

    problem: str
    fix: str
    urn: str | None = None
    subject: str = ""
    joint: Joint = "; "

    @property
    def message(self) -> str:
        """The violation as the pack reports it: ``"[<subject>: ]<problem>; <fix>."``."""
        head = f"{self.subject}: {self.problem}" if self.subject else self.problem
        fix = self.fix[:1].upper() + self.fix[1:] if self.joint == ". " else self.fix
        return f"{head}{self.joint}{fix}."


@dataclass(slots=True)
class Findings:
    """A stack check's violations, and the unknown values it had to skip."""

    violations: list[Violation] = field(default_factory=list)
    unknowns: list[UnknownValueError] = field(default_factory=list)

    def add(
        self,
        problem: str,
        fix: str,
        urn: str | None = None,
        *,
        subject: str = "",
        joint: Joint = "; ",
    ) -> None:
        self.violations.append(Violation(problem, fix, urn, subject, joint))

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Run a block; if it reads a value unknown during preview, skip the rest of it."""
        try:
            yield
        except UnknownValueError as error:
            self.unknowns.append(error)

    @property
    def messages(self) -> list[str]:
        return [violation.message for violation in self.violations]


# --- URNs and stacks ------------------------------------------------------------


def type_chain(urn: str) -> list[str]:
    """The type tokens of a resource's parents (outermost first) and its own, from its URN."""
    parsed = urns.parse(urn)
    return parsed.type_chain if parsed else []


def layer_of_type(type_token: str) -> Layer | None:
    """``zlh:edge:Edge`` -> Layer.EDGE; None for any other type."""
    parts = type_token.split(":")
    if len(parts) != 3 or parts[0] != COMPONENT_PACKAGE:
        return None
    try:
        return Layer(parts[1])
    except ValueError:
        return None


def current_stack(urn: str | None = None) -> str:
    """The stack under analysis: what the engine passed in PULUMI_STACK, else the URN's."""
    stack = os.environ.get("PULUMI_STACK", "").strip()
    if stack:
        return stack
    parsed = urns.parse(urn) if urn else None
    return parsed.stack if parsed else ""


# --- property readers -------------------------------------------------------------


def is_guest(resource: Resource) -> bool:
    return resource.type in GUEST_TYPES


def raw_vmid(resource: Resource) -> object:
    return resource.props.get(vmid_key(resource.type))


def vmid_of(resource: Resource) -> int | None:
    return guest_vmid(resource.type, resource.props)


def node_of(resource: Resource) -> str | None:
    node = resource.props.get("nodeName")
    return node if isinstance(node, str) and node else None


def tags_of(resource: Resource) -> list[str]:
    tags = resource.props.get("tags")
    if isinstance(tags, str):
        # Proxmox's own form is one string separated by ';' (or ',' / spaces).
        return [tag for tag in tags.replace(",", ";").replace(" ", ";").split(";") if tag]
    if isinstance(tags, Sequence):
        return [tag for tag in tags if isinstance(tag, str)]
    return []


def tag_values(tags: Iterable[str], prefix: str) -> list[str]:
    return [tag[len(prefix) :] for tag in tags if tag.startswith(prefix)]


def role_tags(resource: Resource) -> list[str]:
    return tag_values(tags_of(resource), TAG_PREFIX_ROLE)


def layer_tags(resource: Resource) -> list[str]:
    return tag_values(tags_of(resource), TAG_PREFIX_LAYER)


def service_tags(resource: Resource) -> list[str]:
    return tag_values(tags_of(resource), TAG_PREFIX_SERVICE)


def label(resource: Resource) -> str:
    """How messages name a guest: its logical name and VMID."""
    try:
        vmid = raw_vmid(resource)
    except UnknownValueError:
        return f"{resource.name} (VMID not known yet)"
    number = whole_number(vmid)
    if number is not None:
        return f"{resource.name} (VMID {number})"
    if vmid is None:
        return f"{resource.name} (no VMID)"
    return f"{resource.name} (VMID {vmid!r})"


def nics_of(resource: Resource) -> list[Nic]:
    return guest_nics(resource.type, resource.props)


def endpoint_host(endpoint: object) -> str | None:
    """The host name of a provider endpoint URL, lower case; None when there is none."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        return None
    text = endpoint.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def provider_host(provider: Provider | Resource) -> str | None:
    return endpoint_host(provider.props.get("endpoint"))


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def host_matches(host: str, names: Iterable[str]) -> bool:
    """Whether ``host`` is one of ``names``.

    An FQDN or address matches exactly; a bare name also matches any FQDN whose first
    label it is, so ``zlh-core`` covers ``zlh-core.zerolaghub.net``.
    """
    host = host.rstrip(".").lower()
    for name in names:
        name = name.strip().rstrip(".").lower()
        if not name:
            continue
        if host == name:
            return True
        if "." not in name and not _is_ip(name) and host.split(".", 1)[0] == name:
            return True
    return False


def is_fleet_guest(resource: Resource, roles: Collection[str]) -> bool:
    """A guest of one of the fleet's ``roles``: by its role tag or by its VMID's range.

    Either one makes it a fleet guest: a tag alone is free text a change can rename, and a
    VMID in the fleet's range is zpack-api's to reach whatever its tags say.
    """
    if not is_guest(resource) or resource.props.get("template") is True:
        return False
    if set(role_tags(resource)) & set(roles):
        return True
    vmid = vmid_of(resource)
    role = DEFAULT_SCHEME.role_of(vmid) if vmid is not None else None
    return role is not None and role.value in roles


def ipv4_configs(resource: Resource) -> list[Mapping[str, Any]]:
    """Each NIC's ``initialization.ipConfigs[].ipv4`` block, in NIC order ({} if none)."""
    init = resource.props.get("initialization")
    configs = init.get("ipConfigs") if isinstance(init, Mapping) else None
    if not isinstance(configs, Sequence) or isinstance(configs, str):
        return []
    found: list[Mapping[str, Any]] = []
    for config in configs:
        ipv4 = config.get("ipv4") if isinstance(config, Mapping) else None
        found.append(ipv4 if isinstance(ipv4, Mapping) else {})
    return found


def routes_and_resolvers(resource: Resource) -> list[tuple[str, object]]:
    """Where a guest routes and resolves, as set: ``("gateway of NIC <i>", value)`` for each
    NIC with a gateway, then ``("DNS resolver", value)`` for each server; values unread."""
    named: list[tuple[str, object]] = [
        (f"gateway of NIC {index}", ipv4["gateway"])
        for index, ipv4 in enumerate(ipv4_configs(resource))
        if ipv4.get("gateway") is not None
    ]
    init = resource.props.get("initialization")
    dns = init.get("dns") if isinstance(init, Mapping) else None
    servers = dns.get("servers") if isinstance(dns, Mapping) else None
    if isinstance(servers, Sequence) and not isinstance(servers, str):
        named += [("DNS resolver", server) for server in servers]
    return named
