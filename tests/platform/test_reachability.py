"""The firewall reachability evaluator against a packet-by-packet reference model."""

from __future__ import annotations

import re
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    Sender,
    Unfiltered,
    UnresolvedSourceError,
    authentic,
    exposure,
    reachable_from,
    read_nic_address,
    read_ports,
    read_proto,
    read_source,
    sender,
    spoofers,
)

# A small address universe per family keeps collisions between rules and probes frequent.
BASE = int(IPv4Address("10.99.0.0"))
BASE6 = int(IPv6Address("fd99::"))
addresses = st.one_of(
    st.integers(0, 63).map(lambda n: IPv4Address(BASE + n)),
    st.integers(0, 63).map(lambda n: IPv6Address(BASE6 + n)),
)
networks = st.one_of(
    st.builds(
        lambda n, prefix: IPv4Network(f"{IPv4Address(BASE + n)}/{prefix}", strict=False),
        st.integers(0, 63),
        st.integers(26, 32),
    ),
    st.builds(
        lambda n, prefix: IPv6Network(f"{IPv6Address(BASE6 + n)}/{prefix}", strict=False),
        st.integers(0, 63),
        st.integers(122, 128),
    ),
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
    proto=st.sampled_from([None, "tcp", "udp", "6", "17"]),
    dport=dports,
    source=sources,
    iface=st.sampled_from([None, "net0", "net1"]),
    enabled=st.booleans(),
)
HOST = HostFirewall(
    enabled=True,
    aliases={"api": "10.99.0.10"},
    ipsets={
        "mgmt": [("10.99.0.0/27", False), ("10.99.0.16/30", True), ("fd99::/122", False)],
    },
)
NUMBERED = {"6": "tcp", "17": "udp"}


def reference(
    guest: GuestFirewall,
    host: HostFirewall,
    iface: str,
    proto: str,
    port: int,
    src: IPv4Address | IPv6Address,
) -> bool:
    """One packet, evaluated literally: first matching rule wins, else the policy."""
    if not (host.enabled and guest.enabled and guest.nic_firewall.get(iface)):
        return True

    def in_source(source: str | None) -> bool:
        if source is None:
            return True
        if source == "+mgmt":
            return src in ip_network("fd99::/122") or (
                src in IPv4Network("10.99.0.0/27") and src not in IPv4Network("10.99.0.16/30")
            )
        if source in ("api", "dc/api"):
            return src == IPv4Address("10.99.0.10")
        return src in ip_network(source, strict=False)

    for rule in guest.rules:
        if not rule.enabled or rule.type != "in" or (rule.iface and rule.iface != iface):
            continue
        if rule.proto and NUMBERED.get(rule.proto, rule.proto) != proto:
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
    guest: GuestFirewall,
    dc_enabled: bool,
    iface: str,
    proto: str,
    port: int,
    src: IPv4Address | IPv6Address,
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
    guest: GuestFirewall, iface: str, port: int, src: IPv4Address | IPv6Address, proto: str
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
    left: list[IPv4Network | IPv6Network],
    right: list[IPv4Network | IPv6Network],
    address: IPv4Address | IPv6Address,
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


# --- the reader -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proto", "read"),
    [
        (None, None),
        ("", None),
        ("tcp", TCP),
        ("TCP", TCP),
        ("6", TCP),
        ("udp", UDP),
        ("17", UDP),
        ("icmp", OTHER),
        ("ipv6-icmp", OTHER),
        ("1", OTHER),
        ("47", OTHER),
        ("sctp", OTHER),
        ("all", ALL),
        ("0", ALL),
    ],
)
def test_protocols_by_name_and_number(proto: str | None, read: str | None) -> None:
    assert read_proto(proto) == read


@pytest.mark.parametrize("proto", ["tcpp", "256", "-1", "6,17", "tcp udp"])
def test_protocols_the_reader_refuses(proto: str) -> None:
    with pytest.raises(
        FirewallReadError, match=f"^proto '{proto}' is not an IP protocol name or number"
    ):
        read_proto(proto)


@pytest.mark.parametrize(
    ("dport", "spans"),
    [
        (None, None),
        ("", None),
        ("18888", ((18888, 18888),)),
        (" 80 , 443 ", ((80, 80), (443, 443))),
        ("18000:19000,22", ((18000, 19000), (22, 22))),
        ("0:65535", ((0, 65535),)),
    ],
)
def test_port_lists(dport: str | None, spans: tuple[tuple[int, int], ...] | None) -> None:
    assert read_ports(dport) == spans


@pytest.mark.parametrize(
    "dport", ["abc", "http", "70000", "1-", "1:", ":5", "5:1", "80,,443", "80,", "1:2:3", "²"]
)
def test_ports_the_reader_refuses(dport: str) -> None:
    with pytest.raises(FirewallReadError) as caught:
        read_ports(dport)
    assert str(caught.value) == (
        f"dport {dport!r} is not a port number (0-65535), a port range (low:high) or a "
        "comma-separated list of them"
    )


@pytest.mark.parametrize(
    ("source", "addresses"),
    [
        ("10.99.0.10", "10.99.0.10/32"),
        ("10.99.0.5/24", "10.99.0.0/24"),
        ("10.99.0.8-10.99.0.11", "10.99.0.8/30"),
        ("fd00::/8", "fd00::/8"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("fd00::-fd00::3", "fd00::/126"),
        ("10.0.0.1, 10.0.0.2", "10.0.0.1/32, 10.0.0.2/32"),
        ("10.0.0.1,fd00::1", "10.0.0.1/32, fd00::1/128"),
    ],
)
def test_literal_sources(source: str, addresses: str) -> None:
    items = read_source(source)
    assert items is not None
    found = AddressSet()
    for item in items:
        assert item.addresses is not None
        found |= item.addresses
    assert str(found) == addresses


def test_named_sources() -> None:
    items = read_source("dc/zpack-api,+guest/mgmt,api")
    assert items is not None
    assert [(i.ipset, i.scope, i.name) for i in items] == [
        (False, "dc", "zpack-api"),
        (True, "guest", "mgmt"),
        (False, "", "api"),
    ]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("10.0.0.0/33", "source '10.0.0.0/33' is not an IP address, a network"),
        ("fd00::/129", "source 'fd00::/129' is not an IP address, a network"),
        ("10.0.0.5-10.0.0.1", "source '10.0.0.5-10.0.0.1' is not an IP address"),
        ("10.0.0.1-fd00::1", "source '10.0.0.1-fd00::1' is not an IP address"),
        ("10.0.0.1,,10.0.0.2", "source '10.0.0.1,,10.0.0.2': '' is not an IP address"),
        ("!10.0.0.1", "source '!10.0.0.1' is not an IP address"),
    ],
)
def test_sources_the_reader_refuses(source: str, message: str) -> None:
    with pytest.raises(FirewallReadError, match=f"^{re.escape(message)}"):
        read_source(source)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule(dport="1:"), "dport '1:' is not a port number"),
        (Rule(proto="tcpp"), "proto 'tcpp' is not an IP protocol"),
        (Rule(source="10.0.0.0/33"), "source '10.0.0.0/33' is not an IP address"),
        (Rule(action="ALLOW"), "action 'ALLOW' is not ACCEPT, DROP or REJECT"),
        (Rule(type="inbound"), "type 'inbound' is not in, out, forward or group"),
        (Rule(sport="x"), "sport 'x' is not a port number"),
        (Rule(dest="10.0.0.0/33"), "dest '10.0.0.0/33' is not an IP address"),
        # Read even while disabled: a value no reader understands is never passed over.
        (Rule(dport="abc", enabled=False), "dport 'abc' is not a port number"),
    ],
)
def test_the_evaluator_refuses_what_it_cannot_read(rule: Rule, message: str) -> None:
    guest = GuestFirewall(enabled=True, nic_firewall={"net1": True}, rules=[rule])
    with pytest.raises(FirewallReadError, match=f"^{re.escape(message)}"):
        exposure(HOST, guest, iface="net1")


@pytest.mark.parametrize(
    ("source", "host", "message"),
    [
        (
            "api",
            HostFirewall(True, aliases={"api": "10.0.0.0/33"}),
            "alias 'api': cidr '10.0.0.0/33' is not an IP address or network",
        ),
        (
            "api",
            HostFirewall(True, aliases={"api": "other"}),
            "alias 'api': cidr 'other' is not an IP address or network",
        ),
        (
            "+api",
            HostFirewall(True, ipsets={"api": [("+api", False)]}),
            "IP set 'api': entry '+api' is not an IP address, a network or an alias",
        ),
        (
            "+api",
            HostFirewall(True, ipsets={"api": [("10.0.0.1-10.0.0.2", False)]}),
            "IP set 'api': entry '10.0.0.1-10.0.0.2' is not an IP address, a network or an alias",
        ),
    ],
)
def test_names_holding_what_the_reader_cannot_read(
    source: str, host: HostFirewall, message: str
) -> None:
    guest = GuestFirewall(enabled=True, nic_firewall={"net1": True}, rules=[Rule(source=source)])
    with pytest.raises(FirewallReadError) as caught:
        reachable_from(host, guest, iface="net1", proto=TCP, port=1)
    assert str(caught.value) == message


def test_an_unresolved_name_is_reported_where_read_errors_are_handled() -> None:
    """The host check handles read errors alone: a name that does not exist reaches it as one."""
    from tests.policies.policy_fixtures import core_builder, host_rule
    from zlh_infra.policies.config import HOST_FIREWALL
    from zlh_infra.policies.host import check_host_firewall

    builder = core_builder(host_firewall=False)
    builder.host_firewall(rules=(host_rule(8006, "+management"), host_rule(22, "nosuch")))
    config = HOST_FIREWALL.parse("zlh-host-firewall", None)
    assert check_host_firewall(builder.resources, config, "core").messages == [
        "node zlh-core: alias 'nosuch' does not exist; define it, so the node's exposure can be "
        "told."
    ]


# --- protocols ----------------------------------------------------------------------------


def open_on(*rules: Rule, policy: str = "DROP") -> list[tuple[str, int, int, str]]:
    guest = GuestFirewall(
        enabled=True, input_policy=policy, nic_firewall={"net1": True}, rules=rules
    )
    return [
        (e.proto, e.first_port, e.last_port, str(e.sources))
        for e in exposure(HOST, guest, iface="net1")
    ]


def test_numbered_tcp_and_udp_read_as_their_names() -> None:
    assert open_on(Rule(proto="6", dport="22")) == open_on(Rule(proto="tcp", dport="22"))
    assert open_on(Rule(proto="17", dport="53", source="10.99.0.0/24")) == [
        ("udp", 53, 53, "10.99.0.0/24")
    ]


def test_another_protocol_opens_the_other_protocols_only() -> None:
    assert open_on(Rule(proto="icmp", source="10.99.0.20")) == [(OTHER, 0, 0, "10.99.0.20/32")]
    assert open_on(Rule(proto="47", dport="18888")) == [(OTHER, 0, 0, "0.0.0.0/0, ::/0")]


def test_a_drop_of_one_other_protocol_does_not_close_the_others() -> None:
    assert open_on(Rule(action="DROP", proto="icmp"), Rule(proto="gre")) == [
        (OTHER, 0, 0, "0.0.0.0/0, ::/0")
    ]
    assert open_on(Rule(action="DROP", proto="icmp"), policy="ACCEPT")[-1] == (
        OTHER,
        0,
        0,
        "0.0.0.0/0, ::/0",
    )


def test_a_rule_without_protocol_opens_every_protocol() -> None:
    assert open_on(Rule(source="10.99.0.20")) == [
        ("tcp", 1, 65535, "10.99.0.20/32"),
        ("udp", 1, 65535, "10.99.0.20/32"),
        (OTHER, 0, 0, "10.99.0.20/32"),
    ]
    assert open_on(Rule(action="DROP"), Rule(source="10.99.0.20")) == []


def test_all_may_open_everything_and_closes_nothing() -> None:
    assert open_on(Rule(proto="all", dport="9100", source="10.99.0.20")) == [
        ("tcp", 9100, 9100, "10.99.0.20/32"),
        ("udp", 9100, 9100, "10.99.0.20/32"),
        (OTHER, 0, 0, "10.99.0.20/32"),
    ]
    assert open_on(Rule(action="DROP", proto="all"), Rule(proto="tcp", dport="22")) == [
        ("tcp", 22, 22, "0.0.0.0/0, ::/0")
    ]


def test_a_drop_narrowed_by_dest_or_sport_is_not_relied_on() -> None:
    for narrowed in (Rule(action="DROP", dest="10.0.0.99"), Rule(action="DROP", sport="1")):
        assert open_on(narrowed, Rule(proto="tcp", dport="22")) == [
            ("tcp", 22, 22, "0.0.0.0/0, ::/0")
        ]
    # An ACCEPT narrowed the same way counts as open.
    assert open_on(Rule(proto="tcp", dport="22", dest="10.0.0.99")) == [
        ("tcp", 22, 22, "0.0.0.0/0, ::/0")
    ]


# --- IPv6 -------------------------------------------------------------------------------


def test_everything_is_both_families() -> None:
    assert str(AddressSet.everything()) == "0.0.0.0/0, ::/0"
    assert "2001:db8::1" in AddressSet.everything()
    assert str(AddressSet.everything() - AddressSet.of("0.0.0.0/0")) == "::/0"
    assert str(AddressSet.everything() - AddressSet.of("::/0")) == "0.0.0.0/0"


def test_ipv6_sources_aliases_and_ip_sets_are_evaluated() -> None:
    host = HostFirewall(
        enabled=True,
        aliases={"monitor6": "fd00::20"},
        ipsets={"monitors": [("10.99.0.20", False), ("fd00::/64", False), ("fd00::1", True)]},
    )
    guest = GuestFirewall(
        enabled=True,
        nic_firewall={"net1": True},
        rules=[
            Rule(proto="tcp", dport="22", source="2001:db8::/32"),
            Rule(proto="tcp", dport="9100", source="+monitors"),
            Rule(proto="tcp", dport="9100", source="monitor6"),
            Rule(proto="tcp", dport="9100", source="fd01::/16", action="DROP"),
        ],
    )
    assert str(reachable_from(host, guest, iface="net1", proto=TCP, port=22)) == "2001:db8::/32"
    metrics = reachable_from(host, guest, iface="net1", proto=TCP, port=9100)
    assert "10.99.0.20" in metrics and "fd00::2" in metrics and "fd00::20" in metrics
    assert "fd00::1" not in metrics and "fd01::1" not in metrics and "10.99.0.21" not in metrics


# --- what a guest can send from ------------------------------------------------------------

API = AddressSet.of("10.99.0.10")
FILTERED = GuestFirewall(enabled=True, nic_firewall={"net1": True}, ipfilter=True)


def nic(
    guest: GuestFirewall = FILTERED,
    *,
    vmid: int = 1000,
    host: HostFirewall = HOST,
    container: bool = True,
    addresses: tuple[str, ...] = ("10.99.1.0/22",),
    ipsets: dict[str, list[tuple[str, bool]]] | None = None,
    aliases: dict[str, str] | None = None,
) -> Sender:
    return sender(
        host,
        guest,
        vmid=vmid,
        iface="net1",
        bridge="vmbr2",
        container=container,
        addresses=addresses,
        guest_aliases=aliases,
        guest_ipsets=ipsets,
    )


def test_a_filtered_container_sends_from_its_own_addresses_only() -> None:
    found = nic(addresses=("10.99.1.0/22", "fd99::1:0/64"))
    assert found.unfiltered is None
    # Its ip=, ip6= and the MAC-derived link-local address (somewhere in fe80::/64).
    assert str(found.sources) == "10.99.1.0/32, fd99::1:0/128, fe80::/64"
    assert str(found.own) == "10.99.1.0/32, fd99::1:0/128"
    assert not found.forges(API)
    assert "fe80:1::1" not in found.sources


def test_a_filtered_vm_needs_its_addresses_in_an_ip_set() -> None:
    found = nic(container=False)
    # Proxmox adds no VM's configured address to its ipfilter set.
    assert str(found.sources) == "fe80::/64"
    assert str(found.own) == "10.99.1.0/32"
    listed = nic(container=False, ipsets={"ipfilter-net1": [("10.99.1.0", False)]})
    assert str(listed.sources) == "10.99.1.0/32, fe80::/64"


@pytest.mark.parametrize(
    ("host", "guest", "why"),
    [
        (HostFirewall(enabled=False), FILTERED, Unfiltered.DATACENTER),
        (HOST, replace(FILTERED, enabled=False), Unfiltered.GUEST),
        (HOST, replace(FILTERED, nic_firewall={"net1": False}), Unfiltered.NIC),
        (HOST, replace(FILTERED, nic_firewall={"net0": True}), Unfiltered.NIC),
        (HOST, replace(FILTERED, ipfilter=False), Unfiltered.IPFILTER),
    ],
)
def test_what_leaves_a_nic_unfiltered(
    host: HostFirewall, guest: GuestFirewall, why: Unfiltered
) -> None:
    found = nic(guest, host=host)
    assert found.unfiltered is why
    assert found.sources == AddressSet.everything()
    assert found.forges(API) == API


def test_an_ipfilter_ip_set_filters_without_the_option() -> None:
    guest = replace(FILTERED, ipfilter=False)
    found = nic(guest, ipsets={"ipfilter-net1": [("10.99.1.5", False)], "ipfilter-net0": []})
    assert found.unfiltered is None
    assert str(found.sources) == "10.99.1.0/32, 10.99.1.5/32, fe80::/64"
    # Another NIC's set does not filter this one.
    other = nic(guest, ipsets={"ipfilter-net0": [("10.99.1.0", False)]})
    assert other.unfiltered is Unfiltered.IPFILTER


def test_ip_set_entries_name_aliases_of_the_guest_then_of_the_datacenter() -> None:
    entries = [("api", False), ("dc/api", False), ("guest/own", False)]
    found = nic(ipsets={"ipfilter-net1": entries}, aliases={"api": "10.99.1.7", "own": "fd99::7"})
    assert str(found.sources) == "10.99.0.10/32, 10.99.1.0/32, 10.99.1.7/32, fd99::7/128, fe80::/64"
    with pytest.raises(UnresolvedSourceError) as caught:
        nic(ipsets={"ipfilter-net1": [("guest/api", False)]})
    assert str(caught.value) == "IP set 'ipfilter-net1': alias 'guest/api' does not exist"
    with pytest.raises(FirewallReadError) as unreadable:
        nic(ipsets={"ipfilter-net1": [("+zpack-api", False)]})
    assert str(unreadable.value) == (
        "IP set 'ipfilter-net1': entry '+zpack-api' is not an IP address, a network or an alias"
    )


IPSET_ENTRIES = st.lists(st.tuples(networks, st.booleans()), max_size=6)


@settings(max_examples=300)
@given(IPSET_ENTRIES, addresses)
def test_an_ip_set_admits_what_its_most_specific_entry_says(
    entries: list[tuple[IPv4Network | IPv6Network, bool]], address: IPv4Address | IPv6Address
) -> None:
    """ipset hash:net: the longest matching prefix decides; nomatch is an exception."""
    found = nic(addresses=(), ipsets={"ipfilter-net1": [(str(n), m) for n, m in entries]})
    matching = sorted(
        ((n.prefixlen, not nomatch) for n, nomatch in entries if address in n), reverse=True
    )
    expected = bool(matching) and matching[0][1]
    assert (address in found.sources) == expected


def test_dhcp_requests_leave_ahead_of_the_filter() -> None:
    found = nic(replace(FILTERED, dhcp=True))
    both = AddressSet.of("10.99.0.10", "fd99::10")
    assert found.forges(both) == AddressSet()
    assert str(found.forges(both, proto=UDP, port=67)) == "10.99.0.10/32"
    assert str(found.forges(both, proto=UDP, port=547)) == "fd99::10/128"
    assert found.forges(both, proto=TCP, port=67) == AddressSet()
    assert nic().forges(both, proto=UDP, port=67) == AddressSet()


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("10.99.0.10/22", "10.99.0.10"),
        (" 10.99.0.10 ", "10.99.0.10"),
        ("fd99::10/64", "fd99::10"),
        ("dhcp", None),
        ("DHCP", None),
        ("auto", None),
        ("manual", None),
    ],
)
def test_nic_addresses(text: str, address: str | None) -> None:
    found = read_nic_address(text)
    assert (str(found) if found is not None else None) == address


@pytest.mark.parametrize("text", ["10.99.0.300/22", "10.99.0.10/33", "", "eth0", 10])
def test_nic_addresses_the_reader_refuses(text: object) -> None:
    with pytest.raises(FirewallReadError) as caught:
        read_nic_address(text)
    assert str(caught.value) == (
        f"address {text!r} is not an IP address (with or without a prefix length), dhcp, auto "
        "or manual"
    )


def test_spoofers_are_the_other_guests_that_can_send_from_an_address() -> None:
    api = nic(vmid=100, addresses=("10.99.0.10/22",))
    tenant = nic(vmid=1000)
    open_tenant = nic(replace(FILTERED, ipfilter=False), vmid=1001)
    duplicate = nic(vmid=1002, addresses=("10.99.0.10/22",))
    senders = [api, tenant, open_tenant, duplicate]
    assert spoofers(senders, API, owners={100}) == [(open_tenant, API), (duplicate, API)]
    assert spoofers(senders, API) == [(api, API), (open_tenant, API), (duplicate, API)]
    assert authentic(senders, API, owners={100}) == AddressSet()
    assert authentic([api, tenant], API | AddressSet.of("10.99.1.0"), owners={100}) == API
    assert authentic([api, tenant], API) == AddressSet()
    assert authentic([], API) == API
    with pytest.raises(ValueError, match="proto 'icmp' is not one of tcp, udp, other"):
        spoofers(senders, API, proto="icmp")
