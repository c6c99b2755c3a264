"""Read a host's Proxmox firewall state out of resource properties.

The policy pack sees the provider's inputs (camelCase); the live audit sees the same
fields through the Proxmox API. Both become the evaluator's ``HostFirewall``,
``GuestFirewall`` and ``Sender`` (what a NIC may send from), so one evaluator answers
for both. The readers of a guest's VMID, NICs and their addresses and of a firewall
resource's owner live here too: the checks and the evaluator must find the same guest
behind the same properties.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zlh_infra.platform import type_tokens
from zlh_infra.platform.reachability import (
    FirewallReadError,
    GuestFirewall,
    HostFirewall,
    Rule,
    Sender,
    sender,
)
from zlh_infra.platform.wire_numbers import whole_number

CONTAINER = type_tokens.CONTAINER
VM = type_tokens.VM
VM_FRAMEWORK = type_tokens.VM_FRAMEWORK
VM2 = type_tokens.VM2
CLONED_VM = type_tokens.CLONED_VM
CLONED_VM_LEGACY = type_tokens.CLONED_VM_LEGACY
OPTIONS = type_tokens.FIREWALL_OPTIONS
RULES = type_tokens.FIREWALL_RULES
ALIAS = type_tokens.FIREWALL_ALIAS
IPSET = type_tokens.FIREWALL_IPSET
DATACENTER = type_tokens.DATACENTER_FIREWALL
SECURITY_GROUP = type_tokens.SECURITY_GROUP
#: Every guest resource type of the provider.
GUEST_TYPES = frozenset({CONTAINER, VM, VM_FRAMEWORK, VM2, CLONED_VM, CLONED_VM_LEGACY})
#: Every resource type ``read_firewall`` reads; it ignores the others.
FIREWALL_STATE_TYPES = frozenset(
    (*GUEST_TYPES, OPTIONS, RULES, ALIAS, IPSET, DATACENTER, SECURITY_GROUP)
)
#: Guests whose VMID is the framework resources' ``resourceId`` (a string), not ``vmId``.
_RESOURCE_ID_TYPES = frozenset({VM_FRAMEWORK, VM2, CLONED_VM, CLONED_VM_LEGACY})
#: Where a guest type keeps its NICs: a list (position i is ``net<i>``), or, for the
#: clones, a map keyed ``net<i>``. The framework VMs manage none.
_NIC_KEYS = {
    CONTAINER: "networkInterfaces",
    VM: "networkDevices",
    CLONED_VM: "network",
    CLONED_VM_LEGACY: "network",
}
_NIC_SLOT = re.compile(r"net(\d+)")


def vmid_key(type_: str) -> str:
    """The property holding a guest's VMID."""
    return "resourceId" if type_ in _RESOURCE_ID_TYPES else "vmId"


def guest_vmid(type_: str, props: Mapping[str, Any]) -> int | None:
    return whole_number(props.get(vmid_key(type_)))


@dataclass(frozen=True, slots=True)
class Nic:
    """A guest NIC; ``index`` i is Proxmox's ``net<i>``, the firewall's interface name."""

    index: int
    bridge: str
    firewall: bool
    #: Its configured addresses as written (``10.99.0.10/22``, ``dhcp``), IPv4 first.
    addresses: tuple[str, ...] = ()

    @property
    def iface(self) -> str:
        return f"net{self.index}"


def guest_nics(type_: str, props: Mapping[str, Any]) -> list[Nic]:
    """A guest's NICs in index order; entries that are not NICs are left out."""
    devices = props.get(_NIC_KEYS.get(type_, ""))
    slots: list[tuple[int, object]] = []
    if isinstance(devices, Mapping):
        for key, device in devices.items():
            match = _NIC_SLOT.fullmatch(str(key))
            if match is not None:
                slots.append((int(match.group(1)), device))
    elif isinstance(devices, Sequence) and not isinstance(devices, str):
        slots = list(enumerate(devices))
    addresses = _ip_configs(props)
    nics = []
    for index, device in sorted(slots, key=lambda slot: slot[0]):
        if not isinstance(device, Mapping):
            continue
        # The provider's resources default the bridge to vmbr0 and the firewall to off.
        bridge = device.get("bridge")
        nics.append(
            Nic(
                index,
                "vmbr0" if bridge is None else str(bridge),
                device.get("firewall") is True,
                addresses.get(index, ()),
            )
        )
    return nics


def _ip_configs(props: Mapping[str, Any]) -> dict[int, tuple[str, ...]]:
    """``initialization.ipConfigs``: position i holds the addresses of ``net<i>``."""
    initialization = props.get("initialization")
    configs = initialization.get("ipConfigs") if isinstance(initialization, Mapping) else None
    if not isinstance(configs, Sequence) or isinstance(configs, str):
        return {}
    found: dict[int, tuple[str, ...]] = {}
    for index, config in enumerate(configs):
        if not isinstance(config, Mapping):
            continue
        texts = []
        for family in ("ipv4", "ipv6"):
            block = config.get(family)
            value = block.get("address") if isinstance(block, Mapping) else None
            if value is not None:
                # Kept as written: the reader of what the guest sends judges the value.
                texts.append(value if isinstance(value, str) else repr(value))
        found[index] = tuple(texts)
    return found


#: A guest's firewall options that bound what it sends, with the provider's defaults.
FILTER_OPTIONS: Mapping[str, bool] = {"ipfilter": False, "macfilter": True, "dhcp": False}


def option_flag(options: Mapping[str, Any], key: str) -> bool:
    """``ipfilter``, ``macfilter`` or ``dhcp`` of firewall options; its default when unset.

    Raises :class:`FirewallReadError` for anything but true or false.
    """
    value = options.get(key)
    if value is None:
        return FILTER_OPTIONS[key]
    if not isinstance(value, bool):
        raise FirewallReadError(f"{key} {value!r} is not true or false")
    return value


def owner_vmid(props: Mapping[str, Any]) -> int | None:
    """The VMID of the guest a firewall resource belongs to; None for the host's own.

    Raises :class:`FirewallReadError` when ``containerId`` or ``vmId`` is not a VMID, or
    the two name different guests.
    """
    found: dict[str, int] = {}
    for key in ("containerId", "vmId"):
        value = props.get(key)
        if value is None:
            continue
        number = whole_number(value)
        if number is None:
            raise FirewallReadError(f"{key} {value!r} is not a VMID")
        found[key] = number
    if len(set(found.values())) > 1:
        raise FirewallReadError(
            f"containerId {found['containerId']} and vmId {found['vmId']} name two guests"
        )
    return next(iter(found.values()), None)


@dataclass(slots=True)
class GuestView:
    """One guest's firewall-relevant facts, gathered from several resources."""

    vmid: int
    name: str
    node: str | None
    nics: list[Nic] = field(default_factory=list)
    options: Mapping[str, Any] | None = None
    rules: list[Rule] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    ipsets: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    #: A container (Proxmox adds its configured addresses to its ipfilter sets), not a VM.
    container: bool = False
    #: A template, which Proxmox never starts (it is cloned): it sends nothing.
    template: bool = False

    @property
    def nic_firewall(self) -> dict[str, bool]:
        return {nic.iface: nic.firewall for nic in self.nics}

    def firewall(self) -> GuestFirewall:
        """Raises :class:`FirewallReadError` for an ipfilter, macfilter or dhcp it cannot read."""
        options = self.options or {}
        return GuestFirewall(
            enabled=options.get("enabled") is True,
            input_policy=str(options.get("inputPolicy") or "DROP"),
            nic_firewall=self.nic_firewall,
            rules=tuple(self.rules),
            ipfilter=option_flag(options, "ipfilter"),
            macfilter=option_flag(options, "macfilter"),
            dhcp=option_flag(options, "dhcp"),
        )

    def senders(self, host: HostFirewall) -> list[Sender]:
        """What each of its NICs may send from (none for a template).

        Raises :class:`FirewallReadError` for an option, address or ipfilter IP set entry
        it cannot read.
        """
        if self.template:
            return []
        firewall = self.firewall()
        return [
            sender(
                host,
                firewall,
                vmid=self.vmid,
                iface=nic.iface,
                bridge=nic.bridge,
                container=self.container,
                addresses=nic.addresses,
                guest_aliases=self.aliases,
                guest_ipsets=self.ipsets,
            )
            for nic in self.nics
        ]

    def ifaces_on(self, bridge: str) -> list[str]:
        """The Proxmox firewall interfaces of every NIC of this guest on ``bridge``."""
        return [nic.iface for nic in self.nics if nic.bridge == bridge]

    def iface_on(self, bridge: str) -> str | None:
        """The firewall interface of this guest's first NIC on ``bridge``."""
        return next(iter(self.ifaces_on(bridge)), None)


def rule_from_props(props: Mapping[str, Any]) -> Rule:
    group = props.get("securityGroup")
    if group:
        # The provider's rule shape names a security group without ``type: group``.
        return Rule(
            action=str(group),
            type="group",
            iface=_text(props.get("iface")),
            enabled=props.get("enabled", True) is not False,
        )
    return Rule(
        action=str(props.get("action") or "ACCEPT"),
        type=str(props.get("type") or "in"),
        proto=_text(props.get("proto")),
        dport=_text(props.get("dport")),
        source=_text(props.get("source")),
        iface=_text(props.get("iface")),
        macro=_text(props.get("macro")),
        enabled=props.get("enabled", True) is not False,
        sport=_text(props.get("sport")),
        dest=_text(props.get("dest")),
    )


def rules_of(props: Mapping[str, Any]) -> list[Rule]:
    """The rules of a rules resource or security group (entries that are not rules left out)."""
    rules = props.get("rules")
    if not isinstance(rules, Sequence) or isinstance(rules, str):
        return []
    return [rule_from_props(rule) for rule in rules if isinstance(rule, Mapping)]


def _text(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_firewall(
    resources: Iterable[tuple[str, str, Mapping[str, Any]]],
) -> tuple[HostFirewall, dict[int, GuestView]]:
    """Gather (type, name, props) triples of one host into its firewall state.

    The datacenter firewall is on only when every datacenter firewall resource enables
    it. What names no guest it can read (a VMID that is not one) is left out: the
    checks report it.
    """
    guests: dict[int, GuestView] = {}
    datacenter: list[bool] = []
    aliases: dict[str, str] = {}
    ipsets: dict[str, list[tuple[str, bool]]] = {}
    groups: dict[str, list[Rule]] = {}
    pending: list[tuple[str, int, Mapping[str, Any]]] = []

    for type_, name, props in resources:
        if type_ in GUEST_TYPES:
            vmid = guest_vmid(type_, props)
            if vmid is None:
                continue
            view = guests.setdefault(vmid, GuestView(vmid=vmid, name=name, node=None))
            view.name, view.node = name, props.get("nodeName")
            view.nics = guest_nics(type_, props)
            view.container = type_ == CONTAINER
            view.template = props.get("template") is True
        elif type_ == DATACENTER:
            datacenter.append(props.get("enabled") is True)
        elif type_ in (OPTIONS, RULES, ALIAS, IPSET):
            try:
                owner = owner_vmid(props)
            except FirewallReadError:
                continue
            if owner is None:
                if type_ == ALIAS:
                    aliases[str(props.get("name"))] = str(props.get("cidr"))
                elif type_ == IPSET:
                    ipsets[str(props.get("name"))] = _cidrs(props)
                continue
            pending.append((type_, owner, props))
        elif type_ == SECURITY_GROUP:
            groups[str(props.get("name"))] = rules_of(props)

    for type_, vmid, props in pending:
        view = guests.setdefault(vmid, GuestView(vmid=vmid, name=str(vmid), node=None))
        if type_ == OPTIONS:
            view.options = props
        elif type_ == RULES:
            view.rules.extend(rules_of(props))
        elif type_ == ALIAS:
            view.aliases[str(props.get("name"))] = str(props.get("cidr"))
        else:
            view.ipsets[str(props.get("name"))] = _cidrs(props)

    host = HostFirewall(
        enabled=bool(datacenter) and all(datacenter),
        aliases=aliases,
        ipsets=ipsets,
        security_groups=groups,
    )
    return host, guests


def _cidrs(props: Mapping[str, Any]) -> list[tuple[str, bool]]:
    entries = props.get("cidrs")
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return []
    return [
        (str(entry.get("name")), entry.get("nomatch") is True)
        for entry in entries
        if isinstance(entry, Mapping)
    ]
