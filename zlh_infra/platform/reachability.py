"""Which addresses can reach a guest's port through the Proxmox firewall.

A pure evaluator over the firewall state as Proxmox holds it: the datacenter switch,
each guest's options (enabled, input policy), each NIC's ``firewall`` flag, ordered
rules (in/out/security-group, action, interface, protocol, port, source) and the
aliases and IP sets rules name. The policy pack, the live audit and the tests all ask
it the same question: from where is guest G reachable on interface I, port P?

Proxmox evaluates a guest's inbound rules top to bottom; the first rule that matches
decides, and the input policy decides for what no rule matched. When the datacenter
firewall, the guest's firewall or the NIC's flag is off, nothing is filtered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

_MAX = int(IPv4Address("255.255.255.255"))


@dataclass(frozen=True, slots=True)
class AddressSet:
    """A set of IPv4 addresses as sorted, disjoint, non-adjacent closed intervals."""

    spans: tuple[tuple[int, int], ...] = ()

    @classmethod
    def everything(cls) -> AddressSet:
        return cls(((0, _MAX),))

    @classmethod
    def of(cls, *networks: IPv4Network | IPv4Address | str) -> AddressSet:
        spans = []
        for item in networks:
            network = ipaddress.ip_network(str(item), strict=False)
            spans.append((int(network.network_address), int(network.broadcast_address)))
        return cls(_normalise(spans))

    @classmethod
    def between(cls, first: IPv4Address, last: IPv4Address) -> AddressSet:
        return cls(_normalise([(int(first), int(last))]))

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
        value = int(IPv4Address(str(address)))
        return any(low <= value <= high for low, high in self.spans)

    def networks(self) -> list[IPv4Network]:
        """The smallest list of CIDR blocks covering exactly this set."""
        return [
            network
            for low, high in self.spans
            for network in ipaddress.summarize_address_range(IPv4Address(low), IPv4Address(high))
        ]

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


@dataclass(frozen=True, slots=True)
class GuestFirewall:
    """A guest's firewall as Proxmox applies it."""

    enabled: bool
    input_policy: str = "DROP"
    #: Proxmox interface (``net0``...) -> that NIC's ``firewall`` flag.
    nic_firewall: Mapping[str, bool] = field(default_factory=dict)
    rules: Sequence[Rule] = ()


@dataclass(frozen=True, slots=True)
class HostFirewall:
    """What one Proxmox host (datacenter) contributes: the switch and shared objects."""

    enabled: bool
    aliases: Mapping[str, str] = field(default_factory=dict)
    ipsets: Mapping[str, Sequence[tuple[str, bool]]] = field(default_factory=dict)
    security_groups: Mapping[str, Sequence[Rule]] = field(default_factory=dict)


class UnresolvedSourceError(ValueError):
    """A rule names an alias or IP set that does not exist on the host."""


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
    """Every source address from which ``proto``/``port`` on ``iface`` is reachable."""
    if not (host.enabled and guest.enabled and guest.nic_firewall.get(iface, False)):
        return AddressSet.everything()
    names = _Names(host, guest_aliases or {}, guest_ipsets or {})
    remaining = AddressSet.everything()
    allowed = AddressSet()
    for rule in _expand(guest.rules, host.security_groups):
        if not _applies(rule, iface=iface, proto=proto, port=port):
            continue
        matched = remaining & names.resolve(rule.source)
        if rule.action.upper() == "ACCEPT":
            allowed |= matched
        remaining -= matched
        if not remaining:
            break
    if guest.input_policy.upper() == "ACCEPT":
        allowed |= remaining
    return allowed


@dataclass(frozen=True, slots=True)
class Exposure:
    """What reaches ``proto`` ports ``first_port``-``last_port`` of an interface."""

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
    """Everything open on ``iface``, over all 65,535 TCP and UDP ports.

    Ports that every rule treats alike form a class; a class starts at port 1, at the
    first port a rule names, or right after the last. Asking one port per class is
    asking every port.
    """
    rules = list(_expand(guest.rules, host.security_groups))
    starts = {1}
    for rule in rules:
        for low, high in _port_spans(rule.dport):
            starts.add(low)
            if high < 65535:
                starts.add(high + 1)
    ordered = sorted(starts)
    found = []
    for proto in ("tcp", "udp"):
        for index, first in enumerate(ordered):
            last = ordered[index + 1] - 1 if index + 1 < len(ordered) else 65535
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


def _port_spans(dport: str | None) -> Iterator[tuple[int, int]]:
    for part in (dport or "").split(","):
        part = part.strip()
        if ":" in part:
            low, high = part.split(":", 1)
            yield int(low), int(high)
        elif part.isdigit():
            yield int(part), int(part)


def _port_matches(dport: str | None, port: int) -> bool:
    return not dport or any(low <= port <= high for low, high in _port_spans(dport))


def _applies(rule: Rule, *, iface: str, proto: str, port: int) -> bool:
    if not rule.enabled or rule.type != "in":
        return False
    if rule.iface and rule.iface != iface:
        return False
    if rule.macro:
        # Macros stand for service port lists this evaluator does not carry: an
        # ACCEPT macro may open any port, a DROP macro is not relied on to close one.
        return rule.action.upper() == "ACCEPT"
    if rule.proto and rule.proto.lower() != proto:
        return False
    return _port_matches(rule.dport, port)


def _expand(rules: Sequence[Rule], groups: Mapping[str, Sequence[Rule]]) -> Iterator[Rule]:
    """Inline security-group references (``type: group``) in place, as Proxmox does."""
    for rule in rules:
        if rule.type == "group":
            if not rule.enabled:
                continue
            if rule.action not in groups:
                raise UnresolvedSourceError(f"security group {rule.action!r} does not exist")
            for member in groups[rule.action]:
                yield Rule(
                    action=member.action,
                    type=member.type,
                    proto=member.proto,
                    dport=member.dport,
                    source=member.source,
                    iface=rule.iface or member.iface,
                    macro=member.macro,
                    enabled=member.enabled,
                )
        else:
            yield rule


@dataclass(frozen=True, slots=True)
class _Names:
    host: HostFirewall
    guest_aliases: Mapping[str, str]
    guest_ipsets: Mapping[str, Sequence[tuple[str, bool]]]

    def resolve(self, source: str | None) -> AddressSet:
        if not source:
            return AddressSet.everything()
        result = AddressSet()
        for part in source.split(","):
            result |= self._one(part.strip())
        return result

    def _one(self, item: str) -> AddressSet:
        if item.startswith("+"):
            return self._ipset(item[1:])
        if "-" in item and item[0].isdigit():
            first, last = item.split("-", 1)
            return AddressSet.between(IPv4Address(first), IPv4Address(last))
        if item[0].isdigit():
            return AddressSet.of(item)
        return self.resolve(self._alias(item))

    def _alias(self, name: str) -> str:
        scope, _, bare = name.rpartition("/")
        if scope in ("", "guest") and bare in self.guest_aliases:
            return self.guest_aliases[bare]
        if scope in ("", "dc") and bare in self.host.aliases:
            return self.host.aliases[bare]
        raise UnresolvedSourceError(f"alias {name!r} does not exist")

    def _ipset(self, name: str) -> AddressSet:
        scope, _, bare = name.rpartition("/")
        entries = None
        if scope in ("", "guest"):
            entries = self.guest_ipsets.get(bare)
        if entries is None and scope in ("", "dc"):
            entries = self.host.ipsets.get(bare)
        if entries is None:
            raise UnresolvedSourceError(f"IP set {name!r} does not exist")
        included, excluded = AddressSet(), AddressSet()
        for cidr, nomatch in entries:
            if nomatch:
                excluded |= self._one(cidr)
            else:
                included |= self._one(cidr)
        return included - excluded
