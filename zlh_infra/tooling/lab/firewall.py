"""The recorded Proxmox firewall as nftables on the lab's bridges, and what it predicts (pure).

The firewall state is read only through the evaluator's reader
(``zlh_infra.platform.firewall_state.read_firewall``, ``read_rule``), and every name a
rule uses (an alias, an IP set) is turned into addresses by asking the evaluator
(``reachable_from``), so the lab's nftables and the evaluator's prediction read a rule
alike; what the reader refuses, the lab refuses (:class:`LabFirewallError`), it never
skips it.

Semantics are pve-firewall's (``PVE::Firewall``): nothing is filtered unless the
datacenter firewall is on; a guest NIC is filtered when its guest's firewall is enabled
and the NIC has ``firewall=1``; conntrack drops invalid packets and accepts established
and related ones first; a sender's OUT chain (DHCP, MAC filter, IP filter, NDP, its
``out`` rules, ``policy_out``) then the receiver's IN chain (the datacenter's
``blacklist`` and smurf filter, DHCP, NDP, its ``in`` rules, ``policy_in``) decide the
rest, each rule in order, first match wins, security groups expanded in place. A node's
own address gets the host zone: ``host.fw`` rules then the datacenter's ``[RULES]``, the
standard management rules, the datacenter's ``policy_in``/``policy_out``.

Why ``bridge`` and ``inet`` together: this kernel has no ``nf_conntrack_bridge`` and no
bridge ``reject``, so a ``bridge``-family table can neither accept "established" nor send a
TCP reset. Bridged IPv4/IPv6 reaches the ``inet`` hooks (and conntrack) only through
``br_netfilter``, which the lab turns on per lab bridge (``nf_call_iptables``), not
machine-wide; but there ``iifname``/``oifname`` are the bridge, not the port. So the
``bridge`` table does the per-port work only it can (the MAC and ARP filters, before the
bridge learns a forged MAC) and writes the sending port's number into the low 16 bits
of the packet mark and the receiving port's into the high 16 bits; the ``inet`` table
keeps Proxmox's order on those marks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address
from typing import Any

from zlh_infra.platform import firewall_state as fs
from zlh_infra.platform.firewall_state import GuestView, read_firewall
from zlh_infra.platform.host_firewall import node_reachable_from
from zlh_infra.platform.reachability import (
    ALL,
    OTHER,
    TCP,
    UDP,
    AddressSet,
    FirewallReadError,
    GuestFirewall,
    HostFirewall,
    Rule,
    RuleReading,
    Sender,
    reachable_from,
    read_ports,
    read_rule,
    sender,
)
from zlh_infra.platform.type_tokens import NODE_FIREWALL
from zlh_infra.tooling.lab.lxcconf import host_veth, mac_address
from zlh_infra.tooling.lab.paths import FIREWALL_TABLE, WAN_BRIDGE, node_netns, node_port
from zlh_infra.tooling.lab.plan import LabGuest, LabPlan, has_unknown, unwrap
from zlh_infra.tooling.preview.recording import StackRecording

POLICIES = ("ACCEPT", "DROP", "REJECT")
#: The packet mark: the sending port's number, and the receiving port's shifted up.
SENDER_MASK = 0x0000FFFF
RECEIVER_SHIFT = 16
RECEIVER_MASK = 0xFFFF0000
MAX_PORTS = 0xFFFF
#: Proxmox's standard host rules for the ``management`` IP set, ``local_network`` in it
#: (PVEFW-HOST-IN: API, VNC, SPICE, SSH, migration), after the node's own rules.
MANAGEMENT_PORTS = ("8006", "5900:5999", "3128", "22", "60000:60050")
#: ... and for ``local_network`` going out (PVEFW-HOST-OUT).
LOCALNET_PORTS = ("8006", "22", "5900:5999", "3128")
#: Proxmox's own names for those: the IP set and the alias its standard rules admit.
ADMIN_SET = "management"
LOCAL_NETWORK = "local_network"
#: Protocols that exist for one IP family only (pve-firewall sets the rule's ipversion).
_FAMILY_OF_PROTO = {"icmp": 4, "1": 4, "icmpv6": 6, "ipv6-icmp": 6, "58": 6}
#: What the evaluator's sender model admits for the MAC-derived link-local address,
#: which the lab knows exactly (it gives each NIC its MAC).
_LINK_LOCAL_SPAN = AddressSet.of("fe80::/64")
#: What the lab reads besides the reader's types: the node's own firewall switch.
FIREWALL_TYPES = frozenset({*fs.FIREWALL_STATE_TYPES, NODE_FIREWALL})
#: The interface name the evaluator is asked about when it only resolves names.
_PROBE_IFACE = "net0"


class LabFirewallError(ValueError):
    """A recorded firewall value the lab cannot turn into rules; the message says where."""


# --- reading the recording ------------------------------------------------------------


def firewall_resources(recording: StackRecording) -> list[tuple[str, str, dict[str, Any]]]:
    """The (type, name, props) triples ``read_firewall`` takes, from one stack's recording.

    A firewall resource whose inputs are unknown until deploy time is refused: the lab
    would otherwise filter by a guess.
    """
    triples = []
    for resource in recording.resources:
        if resource.type not in FIREWALL_TYPES:
            continue
        props = unwrap(resource.inputs)
        if has_unknown(props):
            raise LabFirewallError(f"{resource.urn}: inputs unknown until deploy time")
        triples.append((resource.type, resource.name, props))
    return triples


def node_addresses(recordings: Sequence[StackRecording]) -> dict[str, IPv4Address]:
    """Each Proxmox node's own management address (``monitoring.proxmoxNodes``)."""
    found: dict[str, IPv4Address] = {}
    for recording in recordings:
        raw = recording.config.get(f"{recording.project}:monitoring")
        if raw is None:
            continue
        try:
            nodes = json.loads(raw).get("proxmoxNodes") or {}
        except (json.JSONDecodeError, AttributeError):
            raise LabFirewallError(
                f"{recording.stack}: {recording.project}:monitoring is not an object"
            ) from None
        for node, address in dict(nodes).items():
            try:
                found[str(node)] = IPv4Address(str(address))
            except ValueError:
                raise LabFirewallError(
                    f"{recording.stack}: monitoring.proxmoxNodes.{node} {address!r} is not an "
                    "IPv4 address"
                ) from None
    return found


@dataclass(frozen=True, slots=True)
class HostZone:
    """One host's firewall: the datacenter's switch, names and policies, and its own rules."""

    stack: str
    host: HostFirewall
    input_policy: str = "DROP"
    output_policy: str = "ACCEPT"
    #: The datacenter's ``ebtables`` option: without it, no ARP filter and a MAC filter
    #: for IP packets only (pve-firewall's iptables ``-m mac``).
    ebtables: bool = True
    #: ``host.fw`` rules of the node, then the datacenter's ``[RULES]`` (Proxmox's order).
    rules: tuple[Rule, ...] = ()
    #: The node's own switch (``host.fw`` ``enable``, on unless a resource turns it off).
    node_enabled: bool = True


def host_zone(
    stack: str, triples: Iterable[tuple[str, str, Mapping[str, Any]]], node: str | None
) -> tuple[HostZone, dict[int, GuestView]]:
    """One stack's (one host's) firewall: its zone and its guests' views.

    The reader gives the switch, the datacenter's aliases, IP sets and security groups
    and every guest's view; the datacenter's ``inputPolicy``/``outputPolicy``, the node's
    own switch and the rules resources that belong to no guest (the node's and the
    datacenter's rules) it does not read, so they are read here, with its rule reader.
    """
    triples = list(triples)
    try:
        host, views = read_firewall(triples)
    except FirewallReadError as error:
        raise LabFirewallError(f"{stack}: {error}") from None
    policies: dict[str, set[str]] = {"inputPolicy": set(), "outputPolicy": set()}
    ebtables: set[bool] = set()
    node_switches: list[bool] = []
    node_rules: list[Rule] = []
    cluster_rules: list[Rule] = []
    for type_, name, props in triples:
        if type_ == fs.DATACENTER:
            for key, found in policies.items():
                value = props.get(key)
                if value is not None:
                    found.add(_policy(value, f"{stack}: {name} {key}"))
            flag = props.get("ebtables")
            if flag is not None:
                ebtables.add(_flag(flag, f"{stack}: {name} ebtables"))
        elif type_ == NODE_FIREWALL and props.get("nodeName") == node:
            flag = props.get("enabled")
            node_switches.append(True if flag is None else _flag(flag, f"{stack}: {name} enabled"))
        elif type_ == fs.RULES:
            try:
                owner = fs.owner_vmid(props)
            except FirewallReadError as error:
                raise LabFirewallError(f"{stack}: {name}: {error}") from None
            if owner is not None:
                continue
            rules = fs.rules_of(props)
            where = props.get("nodeName")
            if where is None:
                cluster_rules += rules
            elif where == node:
                node_rules += rules
    for key, found in policies.items():
        if len(found) > 1:
            raise LabFirewallError(
                f"{stack}: the datacenter firewall resources disagree on {key}: "
                + ", ".join(sorted(found))
            )
    if len(ebtables) > 1:
        raise LabFirewallError(f"{stack}: the datacenter firewall resources disagree on ebtables")
    zone = HostZone(
        stack=stack,
        host=host,
        input_policy=next(iter(policies["inputPolicy"]), "DROP"),
        output_policy=next(iter(policies["outputPolicy"]), "ACCEPT"),
        ebtables=next(iter(ebtables), True),
        rules=(*node_rules, *cluster_rules),
        node_enabled=all(node_switches),
    )
    return zone, views


def _policy(value: object, where: str) -> str:
    text = str(value).strip().upper() if isinstance(value, str) else ""
    if text not in POLICIES:
        raise LabFirewallError(f"{where} {value!r} is not ACCEPT, DROP or REJECT")
    return text


def _flag(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise LabFirewallError(f"{where} {value!r} is not true or false")


def mac_to_link_local(mac: str) -> IPv6Address:
    """The modified EUI-64 link-local address of ``mac`` (RFC 4291), as pve-firewall derives it."""
    octets = bytes.fromhex(mac.replace(":", ""))
    if len(octets) != 6:
        raise LabFirewallError(f"MAC {mac!r} is not six octets")
    eui = bytes([octets[0] ^ 0x02, *octets[1:3], 0xFF, 0xFE, *octets[3:]])
    return IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def node_mac(node: str) -> str:
    """A stable, locally administered MAC for node ``node``'s stand-in."""
    digest = hashlib.sha256(f"node:{node}".encode()).digest()
    return "02:" + ":".join(f"{byte:02x}" for byte in digest[:5])


# --- what the lab filters -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Port:
    """A lab bridge port the firewall filters: a guest NIC, or a node stand-in."""

    number: int
    #: The interface on the lab bridge: ``veth<vmid>i<n>``, or ``zlhlab-n<i>``.
    name: str
    bridge: str
    #: The Proxmox interface a rule's ``iface`` names: ``net<n>``, or the node's bridge.
    iface: str
    #: Whose port: the guest's hostname, or the node's name.
    label: str
    stack: str | None
    address: IPv4Interface | None
    mac: str
    #: The guest's VMID; None for a node stand-in.
    vmid: int | None = None
    node: str | None = None

    @property
    def owner(self) -> str:
        return f"guest:{self.vmid}" if self.vmid is not None else f"node:{self.node}"

    @property
    def is_node(self) -> bool:
        return self.vmid is None

    def describe(self) -> str:
        where = f" {self.address.ip}" if self.address else ""
        return f"{self.label} {self.iface}{where}"


@dataclass(frozen=True, slots=True)
class NodeStandIn:
    """A Proxmox node's own IP stack on a lab bridge: a namespace behind one bridge port."""

    node: str
    netns: str
    #: Its port on the lab bridge, and the name of the other end inside its namespace.
    port: str
    inner: str
    bridge: str
    address: IPv4Interface
    mac: str


@dataclass(frozen=True, slots=True)
class PortFirewall:
    """What the recorded firewall says for one port, read and checked."""

    #: Filtered at all: datacenter on, and the guest's firewall and the NIC's flag on.
    active: bool
    input_policy: str = "DROP"
    output_policy: str = "ACCEPT"
    macfilter: bool = False
    #: The addresses the port may send from (pve-firewall's ``ipfilter-net<N>`` set);
    #: None when there is no IP filter.
    ipfilter: AddressSet | None = None
    dhcp: bool = False
    ndp: bool = True
    radv: bool = False
    #: The rules of each direction for this interface, groups expanded, in order.
    inbound: tuple[RuleReading, ...] = ()
    outbound: tuple[RuleReading, ...] = ()
    #: The evaluator's model of what the NIC may send from (None for a node).
    sender: Sender | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the evaluator predicts for one probe."""

    reachable: bool
    why: str


@dataclass(slots=True)
class LabFirewall:
    ports: tuple[Port, ...]
    zones: Mapping[str, HostZone]
    views: Mapping[int, GuestView]
    settings: Mapping[str, PortFirewall]
    nodes: tuple[NodeStandIn, ...] = ()
    #: Node addresses no lab network holds (no stand-in is made for them).
    unplaced: tuple[str, ...] = ()
    _cache: dict[tuple[str, str, str, int], AddressSet] = field(default_factory=dict, repr=False)

    def port(self, name: str) -> Port:
        return next(p for p in self.ports if p.name == name)

    def ports_of(self, owner: str) -> list[Port]:
        return [p for p in self.ports if p.owner == owner]

    def ruleset(self) -> str:
        """Both tables, as one ``nft -f`` transaction that replaces them."""
        return render(self)

    def digest(self) -> str:
        """What ``lab up`` loaded, to tell a recording whose firewall has changed since."""
        return hashlib.sha256(self.ruleset().encode()).hexdigest()

    # --- the evaluator's prediction ---

    def predict(self, sender: Port, receiver: Port, proto: str, port: int) -> Verdict:
        """Whether ``sender``, from its own address, reaches ``receiver``'s address on ``port``.

        All three parts are the evaluator's: what the sender may send from (``sender``,
        its IP filter), where it may send to (``reachable_from`` over its ``out`` rules
        turned around, destination for source), and who the receiver accepts
        (``reachable_from``, or ``node_reachable_from`` for a node).
        """
        if sender.bridge != receiver.bridge or sender.address is None or receiver.address is None:
            raise ValueError(f"{sender.name} and {receiver.name} are not on one lab network")
        source, destination = sender.address.ip, receiver.address.ip
        own = self.settings[sender.name]
        if own.sender is not None and not own.sender.forges(
            AddressSet.of(source), proto=proto, port=port
        ):
            return Verdict(False, f"{sender.label}'s IP filter drops its own address {source}")
        if destination not in self._allowed(sender, "out", proto, port):
            why = f"out rules, policy_out {own.output_policy}"
            return Verdict(False, f"{sender.label} {sender.iface} may not send it ({why})")
        theirs = self.settings[receiver.name]
        if source not in self._allowed(receiver, "in", proto, port):
            why = f"in rules, policy_in {theirs.input_policy}"
            return Verdict(False, f"{receiver.label} {receiver.iface} does not accept it ({why})")
        if not theirs.active:
            return Verdict(True, f"{receiver.label} {receiver.iface} is not filtered")
        return Verdict(True, f"{receiver.label} {receiver.iface} accepts it from {source}")

    def _allowed(self, port: Port, direction: str, proto: str, number: int) -> AddressSet:
        key = (port.name, direction, proto, number)
        if key in self._cache:
            return self._cache[key]
        settings = self.settings[port.name]
        zone = self.zones.get(port.stack or "")
        host = zone.host if zone is not None else HostFirewall(enabled=False)
        view = self.views.get(port.vmid) if port.vmid is not None else None
        aliases = view.aliases if view else {}
        ipsets = view.ipsets if view else {}
        if direction == "in" and port.is_node:
            found = (
                node_reachable_from(
                    host,
                    node_enabled=zone.node_enabled,
                    input_policy=zone.input_policy,
                    rules=zone.rules,
                    proto=proto,
                    port=number,
                )
                if zone is not None
                else AddressSet.everything()
            )
        else:
            if direction == "in" and view is not None:
                guest = view.firewall()
            else:
                own = port.address.ip if port.address else None
                readings = settings.inbound if direction == "in" else settings.outbound
                guest = GuestFirewall(
                    enabled=settings.active,
                    input_policy=(
                        settings.input_policy if direction == "in" else settings.output_policy
                    ),
                    nic_firewall={port.iface: settings.active},
                    rules=tuple(
                        rule
                        for reading in readings
                        if (rule := _as_inbound(reading, direction, own, host, aliases, ipsets))
                    ),
                )
            found = reachable_from(
                host,
                guest,
                iface=port.iface,
                proto=proto,
                port=number,
                guest_aliases=aliases,
                guest_ipsets=ipsets,
            )
        self._cache[key] = found
        return found


def _as_inbound(
    reading: RuleReading,
    direction: str,
    own: IPv4Address | None,
    host: HostFirewall,
    aliases: Mapping[str, str],
    ipsets: Mapping[str, Any],
) -> Rule | None:
    """A rule the evaluator judges as inbound: an ``out`` rule is turned around.

    Its destination becomes the source; its source, the sender's own address, either
    holds that address (the rule then applies whatever it says) or the rule never
    matches this sender.
    """
    rule = dataclasses.replace(reading.rule, iface=None)
    if direction == "in":
        return rule
    if rule.source is not None and (
        own is None or own not in resolve(rule.source, host, aliases, ipsets)
    ):
        return None
    return dataclasses.replace(rule, type="in", source=rule.dest, dest=None)


def resolve(
    text: str, host: HostFirewall, aliases: Mapping[str, str], ipsets: Mapping[str, Any]
) -> AddressSet:
    """The addresses a ``source``/``dest`` value stands for, as the evaluator reads it.

    The evaluator is asked which sources reach a port whose only rule accepts from
    ``text``: exactly the addresses ``text`` names, resolved by its own alias and IP set
    lookup (scopes, ``nomatch``), and refused by it where it refuses.
    """
    probe = GuestFirewall(
        enabled=True,
        input_policy="DROP",
        nic_firewall={_PROBE_IFACE: True},
        rules=(Rule(action="ACCEPT", proto="tcp", source=text),),
    )
    return reachable_from(
        dataclasses.replace(host, enabled=True),
        probe,
        iface=_PROBE_IFACE,
        proto=TCP,
        port=1,
        guest_aliases=aliases,
        guest_ipsets=ipsets,
    )


# --- building it -----------------------------------------------------------------------


def build_firewall(
    plan: LabPlan,
    stacks: Mapping[str, Sequence[tuple[str, str, Mapping[str, Any]]]],
    nodes: Mapping[str, IPv4Address] | None = None,
) -> LabFirewall:
    """The lab's firewall for ``plan``: each stack's recorded firewall, on its ports.

    ``stacks`` holds each stack's firewall resources (:func:`firewall_resources`);
    ``nodes`` each Proxmox node's own address, which gets a stand-in on the lab network
    holding it.
    """
    node_of = {guest.stack: guest.node for guest in plan.guests.values()}
    zones: dict[str, HostZone] = {}
    views: dict[int, GuestView] = {}
    for stack, triples in stacks.items():
        zone, found = host_zone(stack, triples, node_of.get(stack))
        zones[stack] = zone
        for vmid, view in found.items():
            if vmid in views:
                raise LabFirewallError(f"VMID {vmid} has firewall state in two stacks")
            views[vmid] = view

    ports: list[Port] = []
    settings: dict[str, PortFirewall] = {}
    for vmid, guest in sorted(plan.guests.items()):
        for index, nic in enumerate(guest.nics):
            port = Port(
                number=len(ports) + 1,
                name=host_veth(vmid, index),
                bridge=nic.bridge,
                iface=f"net{index}",
                label=guest.hostname,
                stack=guest.stack,
                address=nic.address,
                mac=mac_address(vmid, index),
                vmid=vmid,
                node=guest.node,
            )
            ports.append(port)
            settings[port.name] = _guest_port(
                guest, index, port, views.get(vmid), zones.get(guest.stack)
            )

    stand_ins, unplaced = _node_stand_ins(plan, nodes or {})
    stack_of_node = {node: stack for stack, node in node_of.items()}
    for stand_in in stand_ins:
        node_stack = stack_of_node.get(stand_in.node)
        port = Port(
            number=len(ports) + 1,
            name=stand_in.port,
            bridge=stand_in.bridge,
            iface=stand_in.inner,
            label=stand_in.node,
            stack=node_stack,
            address=stand_in.address,
            mac=stand_in.mac,
            node=stand_in.node,
        )
        ports.append(port)
        settings[port.name] = _node_port(port, zones.get(node_stack or ""))
    if len(ports) > MAX_PORTS:
        raise LabFirewallError(f"{len(ports)} bridge ports: the packet mark holds {MAX_PORTS}")
    return LabFirewall(
        ports=tuple(ports),
        zones=zones,
        views=views,
        settings=settings,
        nodes=tuple(stand_ins),
        unplaced=tuple(unplaced),
    )


def _where(guest: LabGuest) -> str:
    return f"{guest.stack}: {guest.hostname} (VMID {guest.vmid})"


def _guest_port(
    guest: LabGuest, index: int, port: Port, view: GuestView | None, zone: HostZone | None
) -> PortFirewall:
    where = _where(guest)
    if view is None or zone is None:
        return PortFirewall(active=False)
    if index >= len(view.nics) or view.nics[index].index != index:
        raise LabFirewallError(f"{where}: the firewall reader finds no net{index}")
    nic = view.nics[index]
    if nic.bridge != guest.nics[index].proxmox_bridge:
        raise LabFirewallError(
            f"{where}: net{index} is on {nic.bridge} for the firewall, "
            f"{guest.nics[index].proxmox_bridge} for the lab"
        )
    options = view.options or {}
    enabled = options.get("enabled")
    if enabled is not None:
        _flag(enabled, f"{where}: firewall enabled")
    try:
        fw = view.firewall()
        # Each NIC, templates too: the lab starts a template for its steps.
        sent = sender(
            zone.host,
            fw,
            vmid=guest.vmid,
            iface=port.iface,
            bridge=nic.bridge,
            container=view.container,
            addresses=nic.addresses,
            guest_aliases=view.aliases,
            guest_ipsets=view.ipsets,
        )
    except FirewallReadError as error:
        raise LabFirewallError(f"{where}: {error}") from None
    active = zone.host.enabled and fw.enabled and fw.nic_firewall.get(port.iface, False)
    input_policy = _policy(options.get("inputPolicy") or "DROP", f"{where}: inputPolicy")
    output_policy = _policy(options.get("outputPolicy") or "ACCEPT", f"{where}: outputPolicy")

    def option(key: str, default: bool) -> bool:
        value = options.get(key)
        return default if value is None else _flag(value, f"{where}: {key}")

    inbound, outbound = _readings(view.rules, zone.host, port.iface, where)
    _check_names((*inbound, *outbound), zone.host, view, where)
    ipfilter = None
    if active and sent.unfiltered is None:
        # The evaluator stands the whole fe80::/64 for the MAC-derived link-local address
        # (it may not know the MAC); the lab gave the NIC its MAC, so it admits just that.
        link_local = AddressSet.of(mac_to_link_local(port.mac))
        ipfilter = (sent.sources - _LINK_LOCAL_SPAN) | link_local
    return PortFirewall(
        active=active,
        input_policy=input_policy,
        output_policy=output_policy,
        macfilter=fw.macfilter,
        ipfilter=ipfilter,
        dhcp=fw.dhcp,
        # pve-firewall's defaults: NDP on, router advertisements off.
        ndp=option("ndp", True),
        radv=option("radv", False),
        inbound=inbound,
        outbound=outbound,
        sender=sent if active else None,
    )


def _node_port(port: Port, zone: HostZone | None) -> PortFirewall:
    if zone is None:
        return PortFirewall(active=False)
    host = zone.host
    rules = list(zone.rules)
    # Proxmox's standard rules, after the node's own: the management IP set, which holds
    # local_network, may reach the API, consoles, SSH and migration; the node may reach
    # local_network's API, SSH and consoles. An undefined local_network Proxmox detects
    # on the node itself, which the lab cannot: it then admits nothing for it.
    sources = [f"+dc/{ADMIN_SET}"] if ADMIN_SET in host.ipsets else []
    if LOCAL_NETWORK in host.aliases:
        sources.append(f"dc/{LOCAL_NETWORK}")
        rules += [
            Rule(type="out", proto="tcp", dport=p, dest=f"dc/{LOCAL_NETWORK}")
            for p in LOCALNET_PORTS
        ]
    rules += [Rule(proto="tcp", dport=p, source=src) for src in sources for p in MANAGEMENT_PORTS]
    where = f"{zone.stack}: node {port.label}"
    inbound, outbound = _readings(rules, host, port.iface, where)
    _check_names((*inbound, *outbound), host, None, where)
    return PortFirewall(
        active=host.enabled and zone.node_enabled,
        input_policy=zone.input_policy,
        output_policy=zone.output_policy,
        inbound=inbound,
        outbound=outbound,
    )


def _readings(
    rules: Sequence[Rule], host: HostFirewall, iface: str, where: str
) -> tuple[tuple[RuleReading, ...], tuple[RuleReading, ...]]:
    """The enabled ``in`` and ``out`` rules for ``iface``, groups expanded in place.

    Every rule is read, disabled or not, so a value the reader refuses stops the lab (a
    disabled group reference excepted, as in the evaluator: its group is not looked up).
    ``forward`` rules are read and not used: pve-firewall ignores them for guests.
    """
    inbound: list[RuleReading] = []
    outbound: list[RuleReading] = []
    for number, rule in enumerate(rules, 1):
        reading = _read(rule, f"{where}: rule {number}")
        members: list[tuple[Rule, RuleReading]]
        if reading.type == "group":
            if not rule.enabled:
                continue  # as the evaluator: a disabled group reference is not looked up
            group = host.security_groups.get(rule.action)
            if group is None:
                raise LabFirewallError(
                    f"{where}: rule {number}: security group {rule.action!r} does not exist"
                )
            members = []
            for inner, member in enumerate(group, 1):
                placed = dataclasses.replace(member, iface=rule.iface or member.iface)
                member_reading = _read(placed, f"{where}: group {rule.action} rule {inner}")
                if member_reading.type == "group":
                    raise LabFirewallError(
                        f"{where}: group {rule.action} rule {inner}: a group inside a group"
                    )
                members.append((placed, member_reading))
        else:
            members = [(rule, reading)]
        for member, member_reading in members:
            if not member.enabled or (member.iface and member.iface != iface):
                continue
            if member_reading.type == "in":
                inbound.append(member_reading)
            elif member_reading.type == "out":
                outbound.append(member_reading)
    return tuple(inbound), tuple(outbound)


def _read(rule: Rule, where: str) -> RuleReading:
    try:
        reading = read_rule(rule)
    except FirewallReadError as error:
        raise LabFirewallError(f"{where}: {error}") from None
    if reading.type != "group" and rule.macro:
        raise LabFirewallError(
            f"{where}: macro {rule.macro!r}: the lab does not expand Proxmox's macros"
        )
    if reading.type != "group" and reading.proto not in (TCP, UDP) and (rule.dport or rule.sport):
        raise LabFirewallError(
            f"{where}: ports on protocol {rule.proto!r}: the lab matches ports of TCP and UDP only"
        )
    return reading


def _check_names(
    readings: Iterable[RuleReading], host: HostFirewall, view: GuestView | None, where: str
) -> None:
    """Every alias and IP set the rules name exists and reads: refused now, not at render."""
    for reading in readings:
        for text in (reading.rule.source, reading.rule.dest):
            if text:
                _resolve(text, host, view, where)


def _resolve(text: str, host: HostFirewall, view: GuestView | None, where: str) -> AddressSet:
    try:
        return resolve(text, host, view.aliases if view else {}, view.ipsets if view else {})
    except FirewallReadError as error:
        raise LabFirewallError(f"{where}: {error}") from None


def _node_stand_ins(
    plan: LabPlan, nodes: Mapping[str, IPv4Address]
) -> tuple[list[NodeStandIn], list[str]]:
    """A stand-in per node address on a lab network (the management network)."""
    stand_ins: list[NodeStandIn] = []
    unplaced: list[str] = []
    for node, address in sorted(nodes.items()):
        networks = {
            (nic.bridge, nic.address.network)
            for guest in plan.guests.values()
            for nic in guest.nics
            if nic.address is not None and address in nic.address.network
        }
        if len(networks) != 1:
            unplaced.append(f"{node} ({address})")
            continue
        ((bridge, network),) = networks
        stands_for = plan.bridges[bridge].stands_for if bridge in plan.bridges else ()
        proxmox_bridge = next(
            (name for where, name in stands_for if where == node),
            next((name for _, name in stands_for), "vmbr0"),
        )
        stand_ins.append(
            NodeStandIn(
                node=node,
                netns=node_netns(node),
                port=node_port(len(stand_ins)),
                inner=proxmox_bridge,
                bridge=bridge,
                address=IPv4Interface(f"{address}/{network.prefixlen}"),
                mac=node_mac(node),
            )
        )
    return stand_ins, unplaced


# --- nftables ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """One nftables rule: what it matches and its verdict (empty: a comment line only)."""

    match: str
    verdict: str
    comment: str = ""
    #: Count what it matches (``nft list table`` shows what each rule decided).
    counter: bool = True

    def text(self) -> str:
        if not self.verdict:
            return f"# {self.comment}"
        count = "counter" if self.counter else ""
        line = " ".join(part for part in (self.match, count, self.verdict) if part)
        if self.comment:
            line += f' comment "{_comment(self.comment)}"'
        return line


@dataclass(slots=True)
class Chain:
    name: str
    #: A base chain's ``type ... hook ... priority ...; policy ...;``; empty for a regular one.
    base: str = ""
    statements: list[Statement] = field(default_factory=list)

    def add(self, match: str, verdict: str, comment: str = "", *, counter: bool = True) -> None:
        self.statements.append(Statement(match, verdict, comment, counter))

    @property
    def verdicts(self) -> list[str]:
        """The verdicts in order, for reading (comment lines left out)."""
        return [s.verdict for s in self.statements if s.verdict]


@dataclass(slots=True)
class NftSet:
    name: str
    family: int
    elements: AddressSet

    def text(self) -> str:
        kind = "ipv4_addr" if self.family == 4 else "ipv6_addr"
        lines = [f"  set {self.name} {{", f"    type {kind}; flags interval;"]
        items = _networks(self.elements, self.family)
        if items:
            lines.append(f"    elements = {{ {', '.join(items)} }}")
        lines.append("  }")
        return "\n".join(lines)


@dataclass(slots=True)
class Table:
    family: str
    name: str
    chains: list[Chain] = field(default_factory=list)
    sets: list[NftSet] = field(default_factory=list)

    def chain(self, name: str) -> Chain:
        return next(c for c in self.chains if c.name == name)

    def text(self) -> str:
        lines = [
            f"table {self.family} {self.name}",
            f"delete table {self.family} {self.name}",
            f"table {self.family} {self.name} {{",
        ]
        lines += [nft_set.text() for nft_set in self.sets]
        for chain in self.chains:
            lines.append(f"  chain {chain.name} {{")
            if chain.base:
                lines.append(f"    {chain.base}")
            lines += [f"    {statement.text()}" for statement in chain.statements]
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    clean = "".join(ch for ch in text if ch.isprintable() and ch not in '"\\')
    return clean[:120]


def _networks(addresses: AddressSet, family: int) -> list[str]:
    found = []
    for network in addresses.networks():
        if network.version != family:
            continue
        if network.prefixlen == network.max_prefixlen:
            found.append(str(network.network_address))
        else:
            found.append(str(network))
    return found


def _elements(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


REJECT_CHAIN = "zlh-reject"
#: PVEFW-Drop / PVEFW-Reject, where an ACCEPT ends the chain's own decision; the
#: ``-out`` twins return instead, so the receiver's IN chain still runs.
POLICY_CHAINS = {
    ("DROP", "in"): "zlh-policy-drop",
    ("DROP", "out"): "zlh-policy-drop-out",
    ("REJECT", "in"): "zlh-policy-reject",
    ("REJECT", "out"): "zlh-policy-reject-out",
}


def _policy_verdict(policy: str, direction: str) -> str:
    if policy == "ACCEPT":
        return "accept" if direction == "in" else "return"
    return f"jump {POLICY_CHAINS[(policy, direction)]}"


def _std_chains() -> list[Chain]:
    """pve-firewall's standard chains, as far as bridged unicast sees them."""
    reject = Chain(REJECT_CHAIN)  # PVEFW-reject
    reject.add("meta pkttype broadcast", "drop")
    reject.add("ip saddr 224.0.0.0/4", "drop")
    reject.add("meta l4proto { icmp, ipv6-icmp }", "drop")
    reject.add("meta l4proto tcp", "reject with tcp reset")
    reject.add("meta l4proto udp", "reject with icmpx type port-unreachable")
    reject.add("meta nfproto ipv4", "reject with icmp type host-prohibited")
    reject.add("meta nfproto ipv6", "reject with icmpv6 type admin-prohibited")
    chains = [reject]
    for (policy, direction), name in POLICY_CHAINS.items():
        accept = "accept" if direction == "in" else "return"
        chain = Chain(name)  # PVEFW-Drop / PVEFW-Reject, then the policy
        chain.add("meta nfproto ipv6 tcp dport 43", f"jump {REJECT_CHAIN}", "IPv6 auth")
        chain.add("meta pkttype { broadcast, multicast }", "drop")
        chain.add("ip daddr 224.0.0.0/4", "drop")
        chain.add("ip6 daddr ff00::/8", "drop")
        chain.add("icmp type destination-unreachable icmp code frag-needed", accept)
        chain.add("icmp type time-exceeded", accept)
        chain.add("icmpv6 type { destination-unreachable, time-exceeded, packet-too-big }", accept)
        chain.add("", "drop" if policy == "DROP" else f"jump {REJECT_CHAIN}", f"policy {policy}")
        chains.append(chain)
    return chains


def rule_statements(
    reading: RuleReading,
    *,
    direction: str,
    resolve_text: Any,
    label: str,
) -> list[Statement]:
    """The nftables rules for one Proxmox rule in a chain of ``direction`` (in/out).

    An ACCEPT accepts inbound; outbound it returns, so the receiver's IN chain still
    decides, as the packet meets it on Proxmox after leaving the sender's chain.
    """
    rule = reading.rule
    verdict = {
        "ACCEPT": "accept" if direction == "in" else "return",
        "DROP": "drop",
        "REJECT": f"jump {REJECT_CHAIN}",
    }[reading.action]
    name = (rule.proto or "").strip().lower()
    l4: list[str] = []
    if reading.proto in (TCP, UDP):
        proto = reading.proto
        sports = read_ports(rule.sport, "sport")
        if sports is not None:
            l4.append(f"{proto} sport {_elements(_spans(sports))}")
        if reading.ports is not None:
            l4.append(f"{proto} dport {_elements(_spans(reading.ports))}")
        if not l4:
            l4.append(f"meta l4proto {proto}")
    elif reading.proto == OTHER:
        l4.append(f"meta l4proto {name}")
    families = {_FAMILY_OF_PROTO[name]} if name in _FAMILY_OF_PROTO else {4, 6}
    if reading.proto == ALL:
        families = {4, 6}
    sources = resolve_text(rule.source) if rule.source else None
    dests = resolve_text(rule.dest) if rule.dest else None
    if sources is None and dests is None:
        return [Statement(" ".join(l4), verdict, label)]
    statements = []
    for family in (4, 6):
        if family not in families:
            continue
        prefix = "ip" if family == 4 else "ip6"
        parts = []
        for what, addresses in (("saddr", sources), ("daddr", dests)):
            if addresses is None:
                continue
            items = _networks(addresses, family)
            if not items:
                break
            parts.append(f"{prefix} {what} {_elements(items)}")
        else:
            statements.append(Statement(" ".join([*parts, *l4]), verdict, label))
    return statements or [Statement("", "", f"{label}: matches no address")]


def _spans(spans: Iterable[tuple[int, int]]) -> list[str]:
    return [str(low) if low == high else f"{low}-{high}" for low, high in spans]


def _describe(reading: RuleReading) -> str:
    rule = reading.rule
    words = [reading.type.upper(), reading.action]
    if rule.proto:
        words.append(str(rule.proto))
    if rule.dport:
        words.append(f"dport {rule.dport}")
    if rule.source:
        words.append(f"from {rule.source}")
    if rule.dest:
        words.append(f"to {rule.dest}")
    return " ".join(words)


def port_chains(firewall: LabFirewall, port: Port) -> list[Chain]:
    """The IN and OUT chains of one filtered port, in Proxmox's order."""
    settings = firewall.settings[port.name]
    zone = firewall.zones.get(port.stack or "")
    host = zone.host if zone else HostFirewall(enabled=False)
    view = firewall.views.get(port.vmid) if port.vmid is not None else None
    where = f"{port.stack}: {port.label} {port.iface}"

    def resolve_text(text: str) -> AddressSet:
        return _resolve(text, host, view, where)

    inbound = Chain(f"in-{port.name}")
    outbound = Chain(f"out-{port.name}")
    if port.is_node:
        inbound.add(_NDP_IN, "accept", "NDP")
    # PVEFW-FWBR-IN / PVEFW-HOST-IN input filters: the blacklist, then smurfs.
    if "blacklist" in host.ipsets:
        inbound.add(f"ip saddr @{_blacklist(port.stack, 4)}", "drop", "blacklist")
        inbound.add(f"ip6 saddr @{_blacklist(port.stack, 6)}", "drop", "blacklist")
    inbound.add("ip saddr { 224.0.0.0/4, 255.255.255.255 }", "drop", "smurfs")
    if port.is_node:
        inbound.add("meta l4proto igmp", "accept", "IGMP")
        outbound.add(_NDP_OUT, "return", "NDP")
        outbound.add("meta l4proto igmp", "return", "IGMP")
    else:
        if settings.dhcp:
            inbound.add("udp sport 67 udp dport 68", "accept", "DHCP")
            inbound.add("udp sport 547 udp dport 546", "accept", "DHCPv6")
            outbound.add("udp sport 68 udp dport 67", "return", "DHCP")
            outbound.add("udp sport 546 udp dport 547", "return", "DHCPv6")
        if not settings.radv:
            outbound.add("icmpv6 type nd-router-advert", "drop", "no router advertisements")
        if settings.ipfilter is not None:
            outbound.add(f"ip saddr != @ipfilter-{port.name}-v4", "drop", "ipfilter")
            outbound.add(f"ip6 saddr != @ipfilter-{port.name}-v6", "drop", "ipfilter")
        if settings.ndp:
            inbound.add(_NDP_IN, "accept", "NDP")
            ndp_out = _NDP_OUT_RADV if settings.radv else _NDP_OUT
            outbound.add(ndp_out, "return", "NDP")
    for chain, readings, direction in (
        (inbound, settings.inbound, "in"),
        (outbound, settings.outbound, "out"),
    ):
        for number, reading in enumerate(readings, 1):
            label = f"{port.label} {direction} {number}: {_describe(reading)}"
            chain.statements += rule_statements(
                reading, direction=direction, resolve_text=resolve_text, label=label
            )
    policy_in, policy_out = settings.input_policy, settings.output_policy
    inbound.add("", _policy_verdict(policy_in, "in"), f"policy_in {policy_in}")
    outbound.add("", _policy_verdict(policy_out, "out"), f"policy_out {policy_out}")
    return [inbound, outbound]


_NDP_OUT = "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }"
_NDP_IN = _NDP_OUT.replace("nd-router-solicit,", "nd-router-solicit, nd-router-advert,")
_NDP_OUT_RADV = _NDP_IN


def _blacklist(stack: str | None, family: int) -> str:
    return f"blacklist-{stack}-v{family}"


def _mark(number: int) -> str:
    return f"0x{number:08x}"


def bridge_table(firewall: LabFirewall) -> Table:
    """Per port: the MAC and ARP filters, and its number in the packet mark."""
    table = Table("bridge", FIREWALL_TABLE)
    pre = Chain("prerouting", "type filter hook prerouting priority -300; policy accept;")
    fwd = Chain("forward", "type filter hook forward priority -300; policy accept;")
    table.chains += [pre, fwd]
    entering, leaving = [], []
    for port in firewall.ports:
        settings = firewall.settings[port.name]
        zone = firewall.zones.get(port.stack or "")
        origin = Chain(f"from-{port.name}")
        if settings.active and settings.macfilter:
            only_ip = zone is not None and not zone.ebtables
            match = "ether type { ip, ip6 } " if only_ip else ""
            origin.add(f"{match}ether saddr != {port.mac}", "drop", "macfilter")
        if settings.active and settings.ipfilter is not None and (zone is None or zone.ebtables):
            own = _networks(settings.ipfilter, 4)
            if own:
                origin.add(f"ether type arp arp saddr ip != {_elements(own)}", "drop", "ARP filter")
        origin.add("", f"meta mark set {_mark(port.number)}", counter=False)
        target = Chain(f"to-{port.name}")
        mark = _mark(port.number << RECEIVER_SHIFT)
        target.add("", f"meta mark set meta mark or {mark}", counter=False)
        table.chains += [origin, target]
        entering.append(f'"{port.name}" : jump {origin.name}')
        leaving.append(f'"{port.name}" : jump {target.name}')
    if entering:
        pre.add("iifname vmap", "{ " + ", ".join(entering) + " }", counter=False)
        fwd.add("oifname vmap", "{ " + ", ".join(leaving) + " }", counter=False)
    return table


def inet_table(firewall: LabFirewall) -> Table:
    """Conntrack first, then the sender's OUT chain and the receiver's IN chain."""
    table = Table("inet", FIREWALL_TABLE)
    fwd = Chain("forward", "type filter hook forward priority -10; policy accept;")
    into = Chain("input", "type filter hook input priority -10; policy accept;")
    fwd.add("meta mark 0", "accept", "not a lab port")
    fwd.add(
        f'meta mark and {_mark(RECEIVER_MASK)} == 0 iifname != "{WAN_BRIDGE}"',
        "drop",
        "the lab namespace routes for its WAN only",
    )
    into.add(f"meta mark and {_mark(SENDER_MASK)} == 0", "accept", "not from a lab port")
    for chain in (fwd, into):
        chain.add("ct state invalid", "drop")
        chain.add("ct state established,related", "accept")
    table.chains += [fwd, into, *_std_chains()]
    senders, receivers = [], []
    for port in firewall.ports:
        settings = firewall.settings[port.name]
        if not settings.active:
            continue
        inbound, outbound = port_chains(firewall, port)
        table.chains += [inbound, outbound]
        senders.append(f"{_mark(port.number)} : jump {outbound.name}")
        receivers.append(f"{_mark(port.number << RECEIVER_SHIFT)} : jump {inbound.name}")
        if settings.ipfilter is not None:
            table.sets.append(NftSet(f"ipfilter-{port.name}-v4", 4, settings.ipfilter))
            table.sets.append(NftSet(f"ipfilter-{port.name}-v6", 6, settings.ipfilter))
    for stack, zone in sorted(firewall.zones.items()):
        if "blacklist" in zone.host.ipsets:
            listed = _resolve("+dc/blacklist", zone.host, None, f"{stack}: blacklist")
            table.sets.append(NftSet(_blacklist(stack, 4), 4, listed))
            table.sets.append(NftSet(_blacklist(stack, 6), 6, listed))
    if senders:
        out_map = "{ " + ", ".join(senders) + " }"
        in_map = "{ " + ", ".join(receivers) + " }"
        fwd.add(f"meta mark and {_mark(SENDER_MASK)} vmap", out_map, counter=False)
        fwd.add(f"meta mark and {_mark(RECEIVER_MASK)} vmap", in_map, counter=False)
        into.add(f"meta mark and {_mark(SENDER_MASK)} vmap", out_map, counter=False)
    return table


def render(firewall: LabFirewall) -> str:
    """The ruleset for ``nft -f``: both tables replaced in one transaction."""
    header = (
        "#!/usr/sbin/nft -f\n"
        "# The recorded Proxmox firewall on the lab's bridges (zlh_infra.tooling.lab.firewall).\n"
    )
    return header + bridge_table(firewall).text() + inet_table(firewall).text()
