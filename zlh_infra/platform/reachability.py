"""Which addresses can reach a guest's port through the Proxmox firewall.

A pure evaluator over the firewall state as Proxmox holds it: the datacenter switch,
each guest's options (enabled, input policy), each NIC's ``firewall`` flag, ordered
rules (in/out/security-group, action, interface, protocol, port, source) and the
aliases and IP sets rules name. The policy pack, the live audit and the tests all ask
it the same question: from where is guest G reachable on interface I, protocol P, port N?

Proxmox evaluates a guest's inbound rules top to bottom; the first rule that matches
decides, and the input policy decides for what no rule matched. When the datacenter
firewall, the guest's firewall or the NIC's flag is off, nothing is filtered.

Rules are read by one reader (:func:`read_rule`), which the policy checks use too; a
value it does not understand raises :class:`FirewallReadError`, so a rule is never
skipped or guessed at. Where what a rule matches is uncertain (a macro, a protocol
standing for several, ``sport`` or ``dest``, which the evaluator does not model), an
ACCEPT counts as matching and a DROP or REJECT is not relied on. Addresses are IPv4
and IPv6 alike: a rule without a source applies to both families, as Proxmox applies it.

An ACCEPT from an address is only as strong as the guarantee that nothing else on the
bridge sends from that address. :func:`sender` models what Proxmox lets one guest NIC
send from (its ``ipfilter`` set), :func:`spoofers` and :func:`authentic` ask which of a
rule's source addresses another guest on the bridge could forge.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeAlias, TypeVar

Address: TypeAlias = IPv4Address | IPv6Address
Network: TypeAlias = IPv4Network | IPv6Network
T = TypeVar("T")

#: Both families on one number line: IPv4 addresses first, IPv6 addresses after them.
_V6 = 1 << 32
_MAX = _V6 + (1 << 128) - 1

TCP = "tcp"
UDP = "udp"
#: Every IP protocol but TCP and UDP, as one class: none of them has ports.
OTHER = "other"
#: The protocol classes a packet belongs to, in the order :func:`exposure` reports them.
PROTOCOLS = (TCP, UDP, OTHER)
#: A rule's protocol that may stand for every protocol (``all``, protocol 0).
ALL = "all"


def _number(address: Address) -> int:
    return int(address) + (_V6 if address.version == 6 else 0)


@dataclass(frozen=True, slots=True)
class AddressSet:
    """A set of IPv4 and IPv6 addresses as sorted, disjoint, non-adjacent closed intervals."""

    spans: tuple[tuple[int, int], ...] = ()

    @classmethod
    def everything(cls) -> AddressSet:
        return cls(((0, _MAX),))

    @classmethod
    def of(cls, *networks: Network | Address | str) -> AddressSet:
        spans = []
        for item in networks:
            network = ipaddress.ip_network(str(item), strict=False)
            spans.append((_number(network.network_address), _number(network.broadcast_address)))
        return cls(_normalise(spans))

    @classmethod
    def between(cls, first: Address, last: Address) -> AddressSet:
        if first.version != last.version or _number(first) > _number(last):
            raise ValueError(f"{first}-{last} is not a range of addresses")
        return cls(_normalise([(_number(first), _number(last))]))

    def __or__(self, other: AddressSet) -> AddressSet:
        return AddressSet(_normalise([*self.spans, *other.spans]))

    def __and__(self, other: AddressSet) -> AddressSet:
        out, i, j = [], 0, 0
        while i < len(self.spans) and j < len(other.spans):
            low = max(self.spans[i][0], other.spans[j][0])
            high = min(self.spans[i][1], other.spans[j][1])
            if low <= high:
                out.append((low, high))
            if self.spans[i][1] < other.spans[j][1]:
                i += 1
            else:
                j += 1
        return AddressSet(tuple(out))

    def __sub__(self, other: AddressSet) -> AddressSet:
        return self & other.complement()

    def complement(self) -> AddressSet:
        out, start = [], 0
        for low, high in self.spans:
            if low > start:
                out.append((start, low - 1))
            start = high + 1
        if start <= _MAX:
            out.append((start, _MAX))
        return AddressSet(tuple(out))

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __contains__(self, address: object) -> bool:
        value = _number(ipaddress.ip_address(str(address)))
        return any(low <= value <= high for low, high in self.spans)

    def networks(self) -> list[Network]:
        """The smallest list of CIDR blocks covering exactly this set (IPv4 first)."""
        found: list[Network] = []
        for low, high in self.spans:
            if low < _V6:
                found += ipaddress.summarize_address_range(
                    IPv4Address(low), IPv4Address(min(high, _V6 - 1))
                )
            if high >= _V6:
                found += ipaddress.summarize_address_range(
                    IPv6Address(max(low, _V6) - _V6), IPv6Address(high - _V6)
                )
        return found

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks()) or "nothing"


def _normalise(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Rule:
    """One firewall rule as Proxmox stores it (``pve-firewall`` rule syntax)."""

    action: str = "ACCEPT"  # ACCEPT, DROP, REJECT (or a group name when type is "group")
    type: str = "in"  # in, out, group
    proto: str | None = None
    dport: str | None = None
    source: str | None = None
    iface: str | None = None
    macro: str | None = None
    enabled: bool = True
    sport: str | None = None
    dest: str | None = None


@dataclass(frozen=True, slots=True)
class GuestFirewall:
    """A guest's firewall as Proxmox applies it."""

    enabled: bool
    input_policy: str = "DROP"
    #: Proxmox interface (``net0``...) -> that NIC's ``firewall`` flag.
    nic_firewall: Mapping[str, bool] = field(default_factory=dict)
    rules: Sequence[Rule] = ()
    #: The options that bound what the guest sends (see :func:`sender`).
    ipfilter: bool = False
    macfilter: bool = True
    dhcp: bool = False


@dataclass(frozen=True, slots=True)
class HostFirewall:
    """What one Proxmox host (datacenter) contributes: the switch and shared objects."""

    enabled: bool
    aliases: Mapping[str, str] = field(default_factory=dict)
    ipsets: Mapping[str, Sequence[tuple[str, bool]]] = field(default_factory=dict)
    security_groups: Mapping[str, Sequence[Rule]] = field(default_factory=dict)


class FirewallReadError(ValueError):
    """A firewall value the reader does not understand; the message names the value."""


class UnresolvedSourceError(FirewallReadError):
    """A rule names an alias, IP set or security group that does not exist on the host."""


# --- the reader ---------------------------------------------------------------------

#: Debian's /etc/protocols (netbase), by which a Proxmox VE host reads protocol names;
#: kept here so a check reads a rule alike on any machine.
_PROTOCOL_NUMBERS = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5,
    "tcp": 6, "egp": 8, "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22,
    "rdp": 27, "iso-tp4": 29, "dccp": 33, "xtp": 36, "ddp": 37, "idpr-cmtp": 38,
    "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45, "rsvp": 46, "gre": 47,
    "esp": 50, "ah": 51, "skip": 57, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93,
    "ipip": 94, "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112,
    "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135,
    "udplite": 136, "mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140,
    "wesp": 141, "rohc": 142, "ethernet": 143,
}  # fmt: skip

#: Whether a rule's protocol covers a packet of each class: True, False or None (it may).
_COVERAGE: dict[str | None, dict[str, bool | None]] = {
    None: {TCP: True, UDP: True, OTHER: True},
    TCP: {TCP: True, UDP: False, OTHER: False},
    UDP: {TCP: False, UDP: True, OTHER: False},
    # One protocol of the class: it may open the class, it does not close it.
    OTHER: {TCP: False, UDP: False, OTHER: None},
    ALL: {TCP: None, UDP: None, OTHER: None},
}

#: Proxmox's alias and IP set names, with the optional scope of a reference to one.
_NAME = re.compile(r"(?:(dc|guest)/)?([A-Za-z][A-Za-z0-9_-]+)")
_ITEMS = "an IP address, a network, a range (first-last), an alias or an IP set (+name)"


@dataclass(frozen=True, slots=True)
class Source:
    """One item of a source list: addresses, or a reference to an alias or an IP set."""

    text: str
    addresses: AddressSet | None = None
    ipset: bool = False
    scope: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class RuleReading:
    """A rule as the evaluator and the checks understand it."""

    rule: Rule
    #: in, out, forward or group.
    type: str
    #: ACCEPT, DROP or REJECT; a group rule's security group.
    action: str
    #: None (no protocol: every one), TCP, UDP, OTHER (another protocol) or ALL.
    proto: str | None = None
    #: Inclusive port spans; None for any port.
    ports: tuple[tuple[int, int], ...] | None = None
    #: None for any source.
    sources: tuple[Source, ...] | None = None


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _digits(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


@lru_cache(maxsize=256)
def read_proto(value: str | None) -> str | None:
    """A rule's ``proto``: None (none given), TCP, UDP, OTHER or ALL; ``6`` is TCP, ``17`` UDP."""
    text = _text(value)
    if text is None:
        return None
    name = text.lower()
    if name == ALL:
        return ALL
    number = _digits(name)
    if number is None:
        number = _PROTOCOL_NUMBERS.get(name)
    if number is None or number > 255:
        raise FirewallReadError(f"proto {value!r} is not an IP protocol name or number (0-255)")
    # iptables reads protocol 0 as every protocol.
    return {0: ALL, 6: TCP, 17: UDP}.get(number, OTHER)


@lru_cache(maxsize=4096)
def read_ports(value: str | None, what: str = "dport") -> tuple[tuple[int, int], ...] | None:
    """A port list (``80,443,18000:19000``) as inclusive spans; None when empty (any port)."""
    text = _text(value)
    if text is None:
        return None
    spans = []
    for part in text.split(","):
        low, colon, high = part.strip().partition(":")
        first = _digits(low.strip())
        last = _digits(high.strip()) if colon else first
        if first is None or last is None or not first <= last <= 65535:
            raise FirewallReadError(
                f"{what} {value!r} is not a port number (0-65535), a port range (low:high) "
                "or a comma-separated list of them"
            )
        spans.append((first, last))
    return tuple(spans)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _addresses(text: str) -> AddressSet | None:
    try:
        return AddressSet.of(text)
    except ValueError:
        return None


def _item(text: str, *, ranges: bool = True, ipsets: bool = True) -> Source | None:
    addresses = _addresses(text)
    if addresses is not None:
        return Source(text, addresses)
    first, dash, last = text.partition("-")
    low, high = (_address(first), _address(last)) if ranges and dash else (None, None)
    if low is not None and high is not None:
        try:
            return Source(text, AddressSet.between(low, high))
        except ValueError:
            return None
    ipset = ipsets and text.startswith("+")
    match = _NAME.fullmatch(text[1:] if ipset else text)
    if match is None:
        return None
    return Source(text, ipset=ipset, scope=match.group(1) or "", name=match.group(2))


@lru_cache(maxsize=4096)
def read_source(value: str | None, what: str = "source") -> tuple[Source, ...] | None:
    """A source (or dest) list, its items parsed; None when empty (any address)."""
    text = _text(value)
    if text is None:
        return None
    items = []
    for part in text.split(","):
        item = _item(part.strip())
        if item is None:
            where = f"{value!r}" if part.strip() == text else f"{value!r}: {part.strip()!r}"
            raise FirewallReadError(f"{what} {where} is not {_ITEMS}")
        items.append(item)
    return tuple(items)


def read_cidr(value: object) -> AddressSet:
    """An alias's value: one IP address or network."""
    addresses = _addresses(str(value).strip()) if isinstance(value, str) else None
    if addresses is None:
        raise FirewallReadError(f"cidr {value!r} is not an IP address or network")
    return addresses


def read_ipset_entry(value: object) -> Source:
    """One IP set entry: an IP address, a network or an alias."""
    item = _item(value.strip(), ranges=False, ipsets=False) if isinstance(value, str) else None
    if item is None:
        raise FirewallReadError(f"entry {value!r} is not an IP address, a network or an alias")
    return item


@lru_cache(maxsize=4096)
def read_rule(rule: Rule) -> RuleReading:
    """Every field of ``rule`` the evaluator uses, or checks for syntax, read once."""
    kind = (_text(rule.type) or "in").lower()
    if kind not in ("in", "out", "forward", "group"):
        raise FirewallReadError(f"type {rule.type!r} is not in, out, forward or group")
    if kind == "group":
        return RuleReading(rule, kind, rule.action)
    action = (_text(rule.action) or "").upper()
    if action not in ("ACCEPT", "DROP", "REJECT"):
        raise FirewallReadError(f"action {rule.action!r} is not ACCEPT, DROP or REJECT")
    proto = read_proto(rule.proto)
    ports = read_ports(rule.dport, "dport")
    sources = read_source(rule.source, "source")
    read_ports(rule.sport, "sport")
    read_source(rule.dest, "dest")
    return RuleReading(rule, kind, action, proto, ports, sources)


def covers(rule: RuleReading, *, proto: str, port: int, iface: str | None = None) -> bool | None:
    """Whether ``rule`` matches inbound ``proto`` packets to ``port`` on ``iface`` (None: any).

    None when it may or may not: a macro (its ports are the macro's), a protocol that
    may stand for several, a port list on a protocol without ports, ``sport`` or ``dest``.
    """
    if not rule.rule.enabled or rule.type != "in":
        return False
    if iface is not None and rule.rule.iface and rule.rule.iface != iface:
        return False
    if rule.rule.macro:
        return None
    found = _COVERAGE[rule.proto][proto]
    if found is False:
        return False
    if proto == OTHER:
        if rule.ports is not None:
            found = None
    elif rule.ports is not None and not any(low <= port <= high for low, high in rule.ports):
        return False
    if found and (rule.rule.sport or rule.rule.dest):
        return None
    return found


# --- the evaluator --------------------------------------------------------------------


def reachable_from(
    host: HostFirewall,
    guest: GuestFirewall,
    *,
    iface: str,
    proto: str,
    port: int,
    guest_aliases: Mapping[str, str] | None = None,
    guest_ipsets: Mapping[str, Sequence[tuple[str, bool]]] | None = None,
) -> AddressSet:
    """Every source address from which ``proto`` ``port`` on ``iface`` is reachable.

    ``proto`` is a class of :data:`PROTOCOLS`; the port of :data:`OTHER` is ignored.
    """
    if proto not in PROTOCOLS:
        raise ValueError(f"proto {proto!r} is not one of {', '.join(PROTOCOLS)}")
    rules = _read_all(guest.rules, host.security_groups)
    if not (host.enabled and guest.enabled and guest.nic_firewall.get(iface, False)):
        return AddressSet.everything()
    names = _Names(host, guest_aliases or {}, guest_ipsets or {})
    remaining = AddressSet.everything()
    allowed = AddressSet()
    for rule in rules:
        accept = rule.action == "ACCEPT"
        matches = covers(rule, proto=proto, port=port, iface=iface)
        if matches is False or (matches is None and not accept):
            continue
        matched = remaining & names.resolve(rule.sources)
        if accept:
            allowed |= matched
        remaining -= matched
        if not remaining:
            break
    if guest.input_policy.strip().upper() not in ("DROP", "REJECT"):
        allowed |= remaining
    return allowed


@dataclass(frozen=True, slots=True)
class Exposure:
    """What reaches ``proto`` ports ``first_port``-``last_port`` of an interface.

    For :data:`OTHER`, which has no ports, both ports are 0.
    """

    proto: str
    first_port: int
    last_port: int
    sources: AddressSet


def exposure(
    host: HostFirewall,
    guest: GuestFirewall,
    *,
    iface: str,
    guest_aliases: Mapping[str, str] | None = None,
    guest_ipsets: Mapping[str, Sequence[tuple[str, bool]]] | None = None,
) -> list[Exposure]:
    """Everything open on ``iface``: all 65,535 TCP and UDP ports, then every other protocol.

    Ports that every rule treats alike form a class; a class starts at port 1, at the
    first port a rule names, or right after the last. Asking one port per class is
    asking every port.
    """
    starts = {1}
    for rule in _read_all(guest.rules, host.security_groups):
        for low, high in rule.ports or ():
            starts.add(max(low, 1))
            if high < 65535:
                starts.add(high + 1)
    ordered = sorted(starts)
    probes = [
        (proto, first, ordered[index + 1] - 1 if index + 1 < len(ordered) else 65535)
        for proto in (TCP, UDP)
        for index, first in enumerate(ordered)
    ]
    found = []
    for proto, first, last in [*probes, (OTHER, 0, 0)]:
        sources = reachable_from(
            host,
            guest,
            iface=iface,
            proto=proto,
            port=first,
            guest_aliases=guest_aliases,
            guest_ipsets=guest_ipsets,
        )
        if sources:
            found.append(Exposure(proto, first, last, sources))
    return found


def resolve_source(
    host: HostFirewall,
    sources: Sequence[Source] | None,
    *,
    guest_aliases: Mapping[str, str] | None = None,
    guest_ipsets: Mapping[str, Sequence[tuple[str, bool]]] | None = None,
) -> AddressSet:
    """The addresses a read source list stands for (None: every address), names resolved
    as a rule of a guest with these aliases and IP sets resolves them (the guest's, then the
    datacenter's); without them, as the datacenter's and its security groups' rules do.

    Raises :class:`UnresolvedSourceError` for a name that does not exist, and
    :class:`FirewallReadError` for one whose value cannot be read.
    """
    return _Names(host, guest_aliases or {}, guest_ipsets or {}).resolve(sources)


def _read_all(rules: Sequence[Rule], groups: Mapping[str, Sequence[Rule]]) -> list[RuleReading]:
    """Read every rule, inlining security-group references (``type: group``) as Proxmox does."""
    found = []
    for rule in rules:
        reading = read_rule(rule)
        if reading.type != "group":
            found.append(reading)
            continue
        if not rule.enabled:
            continue
        if rule.action not in groups:
            raise UnresolvedSourceError(f"security group {rule.action!r} does not exist")
        for index, member in enumerate(groups[rule.action]):
            if member.iface:
                # pve-firewall's verify_rule: "parameter -i not allowed for this rule type".
                raise FirewallReadError(
                    f"security group {rule.action!r}: rule {index} names interface "
                    f"{member.iface!r}, which Proxmox refuses inside a group; name the "
                    "interface on the rule that references the group"
                )
            found.append(read_rule(dataclasses.replace(member, iface=rule.iface)))
    return found


@dataclass(frozen=True, slots=True)
class _Names:
    host: HostFirewall
    guest_aliases: Mapping[str, str]
    guest_ipsets: Mapping[str, Sequence[tuple[str, bool]]]

    def resolve(self, sources: Sequence[Source] | None) -> AddressSet:
        if sources is None:
            return AddressSet.everything()
        result = AddressSet()
        for item in sources:
            result |= self._one(item)
        return result

    def _one(self, item: Source) -> AddressSet:
        if item.addresses is not None:
            return item.addresses
        if item.ipset:
            return self._ipset(item)
        return self._alias(item)

    @staticmethod
    def _scoped(item: Source, guest: Mapping[str, T], host: Mapping[str, T]) -> T | None:
        """The guest's definition of ``item``, else the datacenter's, as its scope allows."""
        found = guest.get(item.name) if item.scope in ("", "guest") else None
        if found is None and item.scope in ("", "dc"):
            found = host.get(item.name)
        return found

    def entry(self, name: str, cidr: object, nomatch: bool) -> tuple[Network, bool]:
        """One entry of IP set ``name`` as the network it stands for (an alias resolved)."""
        try:
            item = read_ipset_entry(cidr)
            if item.addresses is None:
                value = self._scoped(item, self.guest_aliases, self.host.aliases)
                if value is None:
                    raise UnresolvedSourceError(f"alias {item.text!r} does not exist")
                read_cidr(value)
                cidr = value
            return ipaddress.ip_network(str(cidr).strip(), strict=False), nomatch
        except UnresolvedSourceError as error:
            raise UnresolvedSourceError(f"IP set {name!r}: {error}") from None
        except FirewallReadError as error:
            raise FirewallReadError(f"IP set {name!r}: {error}") from None

    def _alias(self, item: Source) -> AddressSet:
        value = self._scoped(item, self.guest_aliases, self.host.aliases)
        if value is None:
            raise UnresolvedSourceError(f"alias {item.text!r} does not exist")
        try:
            return read_cidr(value)
        except FirewallReadError as error:
            raise FirewallReadError(f"alias {item.text!r}: {error}") from None

    def _ipset(self, item: Source) -> AddressSet:
        entries = self._scoped(item, self.guest_ipsets, self.host.ipsets)
        if entries is None:
            raise UnresolvedSourceError(f"IP set {item.text[1:]!r} does not exist")
        included, excluded = AddressSet(), AddressSet()
        for cidr, nomatch in entries:
            try:
                entry = read_ipset_entry(cidr)
            except FirewallReadError as error:
                raise FirewallReadError(f"IP set {item.text[1:]!r}: {error}") from None
            addresses = self._one(entry)
            if nomatch:
                excluded |= addresses
            else:
                included |= addresses
        return included - excluded


# --- what a guest can send from -------------------------------------------------------

#: Proxmox admits a NIC's MAC-derived IPv6 link-local address (in fe80::/64) and no
#: other link-local one. The MAC is not always known beforehand, so the whole /64 stands
#: for that one address: what the guest may send is then over-, never under-estimated.
_LINK_LOCAL = IPv6Network("fe80::/64")
_ALL_LINK_LOCAL = IPv6Network("fe80::/10")
#: With the ``dhcp`` option, UDP to these ports (from 68, or 546 for IPv6) leaves ahead
#: of every filter, whatever its source address of that family.
_DHCP_OUT = {67: AddressSet.of("0.0.0.0/0"), 547: AddressSet.of("::/0")}
#: What a container's ``ip=`` / ``ip6=`` may hold instead of an address.
_NO_ADDRESS = frozenset({"dhcp", "auto", "manual"})


class Unfiltered(StrEnum):
    """Why Proxmox lets a guest NIC send from any source address."""

    DATACENTER = "the datacenter firewall is off"
    GUEST = "the guest's firewall is disabled"
    NIC = "the NIC's firewall flag is off"
    IPFILTER = "ipfilter is off and the guest has no IP set ipfilter-net<N> for the NIC"


@dataclass(frozen=True, slots=True)
class Sender:
    """One guest NIC on a bridge, and the source addresses Proxmox lets it send from."""

    vmid: int
    iface: str
    bridge: str
    #: Every source address its IPv4 and IPv6 packets may carry.
    sources: AddressSet
    #: Its configured addresses (``ip=``, ``ip6=``; a VM's cloud-init ones).
    own: AddressSet = AddressSet()
    #: Why nothing holds it to an IP set; None when its ``ipfilter-net<N>`` set does.
    unfiltered: Unfiltered | None = None
    #: The guest's ``dhcp`` option: DHCP requests leave ahead of the filter.
    dhcp: bool = False
    #: The guest's ``macfilter`` option: it sends with its NIC's MAC only. That does not
    #: bound the source address (ipfilter does, whatever the MAC), but without it the NIC
    #: can take another guest's MAC on the bridge and receive what is sent to that guest.
    macfilter: bool = True

    def forges(self, addresses: AddressSet, *, proto: str = TCP, port: int = 0) -> AddressSet:
        """Which of ``addresses`` it can send ``proto`` packets to ``port`` from."""
        found = addresses & self.sources
        if self.dhcp and proto == UDP and port in _DHCP_OUT:
            found |= addresses & _DHCP_OUT[port]
        return found


def read_nic_address(value: object) -> Address | None:
    """A NIC's configured address (``10.99.0.10/22``); None for ``dhcp``, ``auto``, ``manual``."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.lower() in _NO_ADDRESS:
        return None
    try:
        return ipaddress.ip_interface(text or "").ip
    except ValueError:
        raise FirewallReadError(
            f"address {value!r} is not an IP address (with or without a prefix length), "
            "dhcp, auto or manual"
        ) from None


def sender(
    host: HostFirewall,
    guest: GuestFirewall,
    *,
    vmid: int,
    iface: str,
    bridge: str,
    container: bool,
    addresses: Iterable[object] = (),
    guest_aliases: Mapping[str, str] | None = None,
    guest_ipsets: Mapping[str, Sequence[tuple[str, bool]]] | None = None,
) -> Sender:
    """What Proxmox lets NIC ``iface`` of guest ``vmid`` send from.

    As the Proxmox VE firewall documentation ("Standard IP set ipfilter-net*") and
    pve-firewall (``PVE::Firewall``: ``generate_tap_rules_direction``,
    ``ruleset_create_vm_chain``, ``compile_ipsets``) describe it:

    - a NIC's outgoing traffic is filtered only while the datacenter firewall is on, the
      guest's firewall is enabled and the NIC has ``firewall=1``;
    - then, when the guest's ``ipfilter`` option is on or it has an IP set
      ``ipfilter-net<N>``, a packet from ``net<N>`` whose source is not in that set is
      dropped. The set holds its own entries, the NIC's MAC-derived IPv6 link-local
      address and, for a container only, the addresses of ``ip=`` and ``ip6=`` (not
      ``dhcp``, ``auto`` or ``manual``): a VM's addresses must be listed;
    - the ``dhcp`` option lets DHCP requests out ahead of that filter (see
      :meth:`Sender.forges`).

    ``addresses`` are the NIC's configured addresses as written. An address that is none,
    or an entry of the NIC's IP set that is none, raises :class:`FirewallReadError`.
    """
    own = AddressSet()
    for text in addresses:
        found = read_nic_address(text)
        if found is not None:
            own |= AddressSet.of(found)
    ipsets = guest_ipsets or {}
    explicit = ipsets.get(f"ipfilter-{iface}")
    unfiltered = None
    if not host.enabled:
        unfiltered = Unfiltered.DATACENTER
    elif not guest.enabled:
        unfiltered = Unfiltered.GUEST
    elif not guest.nic_firewall.get(iface, False):
        unfiltered = Unfiltered.NIC
    elif not guest.ipfilter and explicit is None:
        unfiltered = Unfiltered.IPFILTER
    if unfiltered is not None:
        sources = AddressSet.everything()
    else:
        names = _Names(host, guest_aliases or {}, ipsets)
        name = f"ipfilter-{iface}"
        entries = [names.entry(name, cidr, nomatch) for cidr, nomatch in explicit or ()]
        entries += [(_LINK_LOCAL, False), (_ALL_LINK_LOCAL, True)]
        if container:
            entries += [(network, False) for network in own.networks()]
        sources = _hash_net(entries)
    return Sender(vmid, iface, bridge, sources, own, unfiltered, guest.dhcp, guest.macfilter)


def spoofers(
    senders: Iterable[Sender],
    addresses: AddressSet,
    *,
    owners: Collection[int] = (),
    proto: str = TCP,
    port: int = 0,
) -> list[tuple[Sender, AddressSet]]:
    """Each sender but the owners' that can send ``proto`` to ``port`` from some of
    ``addresses``, with the addresses it can forge.

    A rule admitting those addresses admits that sender too. ``senders`` are the NICs of
    one network segment (a bridge, and whatever is bridged to it); the model assumes
    the segment is not routed into from elsewhere, and trusts the Proxmox hosts on it.
    """
    if proto not in PROTOCOLS:
        raise ValueError(f"proto {proto!r} is not one of {', '.join(PROTOCOLS)}")
    found = []
    for candidate in senders:
        if candidate.vmid in owners:
            continue
        forged = candidate.forges(addresses, proto=proto, port=port)
        if forged:
            found.append((candidate, forged))
    return found


def authentic(
    senders: Iterable[Sender],
    addresses: AddressSet,
    *,
    owners: Collection[int] = (),
    proto: str = TCP,
    port: int = 0,
) -> AddressSet:
    """The part of ``addresses`` that no guest but the owners can send from on the segment."""
    forged = AddressSet()
    for _, part in spoofers(senders, addresses, owners=owners, proto=proto, port=port):
        forged |= part
    return addresses - forged


def _hash_net(entries: Iterable[tuple[Network, bool]]) -> AddressSet:
    """The members of an ipset of type hash:net: an address's most specific entry decides.

    ipset(8) matches a hash:net set's prefixes from the longest to the shortest, a
    ``nomatch`` entry being an exception. A firewall that reads nomatch entries as plain
    exclusions admits a subset of this, so this bounds what either lets through.
    """
    members, decided = AddressSet(), AddressSet()
    # Most specific first; of two equal entries the one that matches wins.
    for network, nomatch in sorted(entries, key=lambda entry: (entry[0].num_addresses, entry[1])):
        block = AddressSet.of(network)
        if not nomatch:
            members |= block - decided
        decided |= block
    return members
