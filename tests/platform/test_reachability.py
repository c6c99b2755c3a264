"""The firewall reachability evaluator against a packet-by-packet reference model."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zlh_infra.platform.reachability import (
    AddressSet,
    GuestFirewall,
    HostFirewall,
    Rule,
    UnresolvedSourceError,
    exposure,
    reachable_from,
)

# A small address universe keeps collisions between rules and probes frequent.
BASE = int(IPv4Address("10.99.0.0"))
addresses = st.integers(0, 63).map(lambda n: IPv4Address(BASE + n))
networks = st.builds(
    lambda n, prefix: IPv4Network(f"{IPv4Address(BASE + n)}/{prefix}", strict=False),
    st.integers(0, 63),
    st.integers(26, 32),
)
ports = st.sampled_from([22, 80, 9100, 18888, 18889, 25565])
sources = st.one_of(
    st.none(),
    networks.map(str),
    addresses.map(str),
    st.just("+mgmt"),
    st.just("dc/api"),
    st.just("api"),
)
dports = st.one_of(
    st.none(),
    ports.map(str),
    st.just("80,443"),
    st.just("9000:19000"),
)
rules = st.builds(
    Rule,
    action=st.sampled_from(["ACCEPT", "DROP", "REJECT"]),
    type=st.sampled_from(["in", "in", "in", "out"]),
    proto=st.sampled_from([None, "tcp", "udp"]),
    dport=dports,
    source=sources,
    iface=st.sampled_from([None, "net0", "net1"]),
    enabled=st.booleans(),
)
HOST = HostFirewall(
    enabled=True,
    aliases={"api": "10.99.0.10"},
    ipsets={"mgmt": [("10.99.0.0/27", False), ("10.99.0.16/30", True)]},
)


def reference(
    guest: GuestFirewall, host: HostFirewall, iface: str, proto: str, port: int, src: IPv4Address
) -> bool:
    """One packet, evaluated literally: first matching rule wins, else the policy."""
    if not (host.enabled and guest.enabled and guest.nic_firewall.get(iface)):
        return True

    def in_source(source: str | None) -> bool:
        if source is None:
            return True
        if source == "+mgmt":
            return src in IPv4Network("10.99.0.0/27") and src not in IPv4Network("10.99.0.16/30")
        if source in ("api", "dc/api"):
            return src == IPv4Address("10.99.0.10")
        return src in IPv4Network(source, strict=False)

    for rule in guest.rules:
        if not rule.enabled or rule.type != "in" or (rule.iface and rule.iface != iface):
            continue
        if rule.proto and rule.proto != proto:
            continue
        if rule.dport:
            spans = []
            for part in rule.dport.split(","):
                low, _, high = part.partition(":")
                spans.append((int(low), int(high or low)))
            if not any(low <= port <= high for low, high in spans):
                continue
        if in_source(rule.source):
            return rule.action == "ACCEPT"
    return guest.input_policy == "ACCEPT"


guests = st.builds(
    GuestFirewall,
    enabled=st.booleans(),
    input_policy=st.sampled_from(["DROP", "ACCEPT", "REJECT"]),
    nic_firewall=st.fixed_dictionaries({"net0": st.booleans(), "net1": st.booleans()}),
    rules=st.lists(rules, max_size=8),
)


@settings(max_examples=400)
@given(
    guests,
    st.booleans(),
    st.sampled_from(["net0", "net1"]),
    st.sampled_from(["tcp", "udp"]),
    ports,
    addresses,
)
def test_reachable_from_matches_per_packet_evaluation(
    guest: GuestFirewall, dc_enabled: bool, iface: str, proto: str, port: int, src: IPv4Address
) -> None:
    host = HostFirewall(enabled=dc_enabled, aliases=HOST.aliases, ipsets=HOST.ipsets)
    reachable = reachable_from(host, guest, iface=iface, proto=proto, port=port)
    assert (src in reachable) == reference(guest, host, iface, proto, port, src)


@settings(max_examples=150)
@given(
    guests,
    st.sampled_from(["net0", "net1"]),
    st.integers(1, 65535),
    addresses,
    st.sampled_from(["tcp", "udp"]),
)
def test_exposure_covers_every_port(
    guest: GuestFirewall, iface: str, port: int, src: IPv4Address, proto: str
) -> None:
    opened = [
        e
        for e in exposure(HOST, guest, iface=iface)
        if e.proto == proto and e.first_port <= port <= e.last_port
    ]
    expected = reference(guest, HOST, iface, proto, port, src)
    assert any(src in e.sources for e in opened) == expected


@given(st.lists(networks, max_size=5), st.lists(networks, max_size=5), addresses)
def test_address_set_algebra(
    left: list[IPv4Network], right: list[IPv4Network], address: IPv4Address
) -> None:
    a, b = AddressSet.of(*left), AddressSet.of(*right)
    in_a, in_b = any(address in n for n in left), any(address in n for n in right)
    assert (address in (a | b)) == (in_a or in_b)
    assert (address in (a & b)) == (in_a and in_b)
    assert (address in (a - b)) == (in_a and not in_b)
    assert AddressSet.of(*a.networks()) == a


def test_agent_rule_opens_only_the_agent_port_to_the_api() -> None:
    guest = GuestFirewall(
        enabled=True,
        input_policy="DROP",
        nic_firewall={"net0": True, "net1": True},
        rules=[
            Rule(proto="tcp", dport="18888", source="10.99.0.10/32", iface="net1"),
            Rule(proto="tcp", dport="9100", source="10.99.0.20/32", iface="net1"),
        ],
    )
    opened = [
        (e.proto, e.first_port, e.last_port, str(e.sources))
        for e in exposure(HOST, guest, iface="net1")
    ]
    assert opened == [
        ("tcp", 9100, 9100, "10.99.0.20/32"),
        ("tcp", 18888, 18888, "10.99.0.10/32"),
    ]
    assert exposure(HOST, guest, iface="net0") == []


def test_nic_without_firewall_flag_is_open_to_everyone() -> None:
    guest = GuestFirewall(enabled=True, nic_firewall={"net1": False})
    assert (
        reachable_from(HOST, guest, iface="net1", proto="tcp", port=18888)
        == AddressSet.everything()
    )


def test_security_groups_are_inlined() -> None:
    host = HostFirewall(
        enabled=True,
        security_groups={"agent": [Rule(proto="tcp", dport="18888", source="10.99.0.10")]},
    )
    guest = GuestFirewall(
        enabled=True,
        nic_firewall={"net1": True},
        rules=[Rule(type="group", action="agent", iface="net1")],
    )
    assert (
        str(reachable_from(host, guest, iface="net1", proto="tcp", port=18888)) == "10.99.0.10/32"
    )


def test_unknown_alias_is_an_error_not_an_open_port() -> None:
    guest = GuestFirewall(enabled=True, nic_firewall={"net1": True}, rules=[Rule(source="nosuch")])
    with pytest.raises(UnresolvedSourceError, match="alias 'nosuch' does not exist"):
        reachable_from(HOST, guest, iface="net1", proto="tcp", port=1)


def test_a_provider_shaped_security_group_rule_is_a_group_reference() -> None:
    from zlh_infra.platform.firewall_state import rule_from_props

    rule = rule_from_props({"securityGroup": "agent", "iface": "net1"})
    host = HostFirewall(
        enabled=True,
        security_groups={"agent": [Rule(proto="tcp", dport="18888", source="10.99.0.10")]},
    )
    guest = GuestFirewall(enabled=True, nic_firewall={"net1": True}, rules=[rule])
    assert (
        str(reachable_from(host, guest, iface="net1", proto="tcp", port=18888)) == "10.99.0.10/32"
    )
