"""Read a host's Proxmox firewall state out of resource properties.

The policy pack sees the provider's inputs (camelCase); the live audit sees the same
fields through the Proxmox API. Both become the evaluator's ``HostFirewall`` and
``GuestFirewall``, so one evaluator answers for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zlh_infra.platform import type_tokens
from zlh_infra.platform.reachability import GuestFirewall, HostFirewall, Rule

CONTAINER = type_tokens.CONTAINER
VM = type_tokens.VM
OPTIONS = type_tokens.FIREWALL_OPTIONS
RULES = type_tokens.FIREWALL_RULES
ALIAS = type_tokens.FIREWALL_ALIAS
IPSET = type_tokens.FIREWALL_IPSET
DATACENTER = type_tokens.DATACENTER_FIREWALL
SECURITY_GROUP = type_tokens.SECURITY_GROUP
GUEST_TYPES = (CONTAINER, VM)
#: Every resource type ``read_firewall`` reads; it ignores the others.
FIREWALL_STATE_TYPES = frozenset(
    (*GUEST_TYPES, OPTIONS, RULES, ALIAS, IPSET, DATACENTER, SECURITY_GROUP)
)


@dataclass(slots=True)
class GuestView:
    """One guest's firewall-relevant facts, gathered from several resources."""

    vmid: int
    name: str
    node: str | None
    #: bridge of net0, net1, ... in order.
    bridges: list[str] = field(default_factory=list)
    nic_firewall: dict[str, bool] = field(default_factory=dict)
    options: Mapping[str, Any] | None = None
    rules: list[Rule] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    ipsets: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)

    def firewall(self) -> GuestFirewall:
        options = self.options or {}
        return GuestFirewall(
            enabled=bool(options.get("enabled", False)),
            input_policy=str(options.get("inputPolicy") or "DROP"),
            nic_firewall=dict(self.nic_firewall),
            rules=tuple(self.rules),
        )

    def iface_on(self, bridge: str) -> str | None:
        """The Proxmox firewall interface of this guest's NIC on ``bridge``."""
        for index, nic_bridge in enumerate(self.bridges):
            if nic_bridge == bridge:
                return f"net{index}"
        return None


def rule_from_props(props: Mapping[str, Any]) -> Rule:
    group = props.get("securityGroup")
    if group:
        # The provider's rule shape names a security group without ``type: group``.
        return Rule(
            action=str(group),
            type="group",
            iface=props.get("iface") or None,
            enabled=props.get("enabled", True) is not False,
        )
    return Rule(
        action=str(props.get("action") or "ACCEPT"),
        type=str(props.get("type") or "in"),
        proto=props.get("proto") or None,
        dport=_text(props.get("dport")),
        source=props.get("source") or None,
        iface=props.get("iface") or None,
        macro=props.get("macro") or None,
        enabled=props.get("enabled", True) is not False,
    )


def _text(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _vmid(props: Mapping[str, Any]) -> int | None:
    value = props.get("vmId") or props.get("containerId")
    return int(value) if isinstance(value, (int, float)) else None


def read_firewall(
    resources: Iterable[tuple[str, str, Mapping[str, Any]]],
) -> tuple[HostFirewall, dict[int, GuestView]]:
    """Gather (type, name, props) triples of one host into its firewall state."""
    guests: dict[int, GuestView] = {}
    datacenter_enabled = False
    aliases: dict[str, str] = {}
    ipsets: dict[str, list[tuple[str, bool]]] = {}
    groups: dict[str, list[Rule]] = {}
    pending: list[tuple[str, int, Mapping[str, Any]]] = []

    for type_, name, props in resources:
        if type_ in GUEST_TYPES:
            vmid = _vmid(props)
            if vmid is None:
                continue
            nics = props.get("networkInterfaces") or props.get("networkDevices") or []
            view = guests.setdefault(vmid, GuestView(vmid=vmid, name=name, node=None))
            view.name, view.node = name, props.get("nodeName")
            view.bridges = [str(nic.get("bridge", "")) for nic in nics]
            view.nic_firewall = {
                f"net{index}": bool(nic.get("firewall", False)) for index, nic in enumerate(nics)
            }
        elif type_ == DATACENTER:
            datacenter_enabled = bool(props.get("enabled", False))
        elif type_ in (OPTIONS, RULES, ALIAS, IPSET):
            vmid = _vmid(props)
            if vmid is None:
                if type_ == ALIAS:
                    aliases[str(props.get("name"))] = str(props.get("cidr"))
                elif type_ == IPSET:
                    ipsets[str(props.get("name"))] = _cidrs(props)
                continue
            pending.append((type_, vmid, props))
        elif type_ == SECURITY_GROUP:
            groups[str(props.get("name"))] = [rule_from_props(r) for r in props.get("rules") or []]

    for type_, vmid, props in pending:
        view = guests.setdefault(vmid, GuestView(vmid=vmid, name=str(vmid), node=None))
        if type_ == OPTIONS:
            view.options = props
        elif type_ == RULES:
            view.rules.extend(rule_from_props(rule) for rule in props.get("rules") or [])
        elif type_ == ALIAS:
            view.aliases[str(props.get("name"))] = str(props.get("cidr"))
        else:
            view.ipsets[str(props.get("name"))] = _cidrs(props)

    host = HostFirewall(
        enabled=datacenter_enabled, aliases=aliases, ipsets=ipsets, security_groups=groups
    )
    return host, guests


def _cidrs(props: Mapping[str, Any]) -> list[tuple[str, bool]]:
    return [(str(c.get("name")), bool(c.get("nomatch", False))) for c in props.get("cidrs") or []]
