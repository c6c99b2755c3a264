"""Address plan, firewall rule derivation and proxy config rendering (pure logic)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zlh_infra.platform.addressing import AddressPlanError, fleet_address, usable
from zlh_infra.platform.catalogue import (
    AGENT_PORT,
    CONTROL_PLANE_SERVICES,
    EDGE_SERVICES,
    FLEET_MANAGEMENT_INGRESS,
    RUNTIME_SERVICES,
    Ingress,
    Network,
    Peer,
)
from zlh_infra.platform.firewall import FirewallRule, iface_of, resolve_ingress
from zlh_infra.platform.firewall_state import rule_from_props
from zlh_infra.platform.proxy_config import (
    GameServer,
    HttpRoute,
    traefik_dynamic_config,
    velocity_servers,
)
from zlh_infra.platform.reachability import TCP, UDP, AddressSet, read_rule
from zlh_infra.platform.vmids import DEFAULT_SCHEME

NET = IPv4Network("10.20.0.0/22")


@given(st.integers(1000, 1199), st.integers(1000, 1199))
def test_fleet_addresses_are_distinct_for_distinct_vmids(a: int, b: int) -> None:
    assert (fleet_address(NET, 256, 1000, a) == fleet_address(NET, 256, 1000, b)) == (a == b)


@given(st.integers(1000, 1199))
def test_fleet_address_is_a_usable_host_address(vmid: int) -> None:
    assert usable(NET, fleet_address(NET, 256, 1000, vmid)) is None


def test_fleet_address_refuses_to_leave_the_network() -> None:
    with pytest.raises(AddressPlanError, match=r"host number 255, outside 10\.20\.0\.0/24"):
        fleet_address(IPv4Network("10.20.0.0/24"), 255, 1000, 1000)


def test_every_catalogue_service_role_is_a_seed_range() -> None:
    for spec in [
        *CONTROL_PLANE_SERVICES.values(),
        *EDGE_SERVICES.values(),
        *RUNTIME_SERVICES.values(),
    ]:
        assert DEFAULT_SCHEME.range_of(spec.role)


def test_agent_port_is_accepted_only_from_the_api_on_the_management_nic() -> None:
    api = IPv4Address("10.99.0.10")
    monitor = IPv4Address("10.99.0.20")
    rules = resolve_ingress(
        FLEET_MANAGEMENT_INGRESS,
        nics=(Network.LAN, Network.MANAGEMENT),
        networks={Network.LAN: NET, Network.MANAGEMENT: IPv4Network("10.99.0.0/22")},
        addresses={
            ("core:zpack-api", Network.MANAGEMENT): api,
            ("core:zlh-monitor", Network.MANAGEMENT): monitor,
        },
    )
    agent_rules = [rule for rule in rules if rule.dport == AGENT_PORT]
    assert agent_rules == [
        FirewallRule(
            "ACCEPT", "tcp", AGENT_PORT, "net1", "10.99.0.10/32", "zlh-agent from zpack-api"
        )
    ]
    assert all(rule.iface == "net1" for rule in rules)


def test_the_rules_the_program_writes_read_as_written() -> None:
    """The checks' reader takes every derived rule exactly: no rule is beyond it."""
    nets = {Network.LAN: NET, Network.MANAGEMENT: IPv4Network("10.99.0.0/22")}
    rules = resolve_ingress(
        [*FLEET_MANAGEMENT_INGRESS, Ingress(80, Peer.ANY), Ingress(53, Peer.LAN, proto="udp")],
        nics=(Network.LAN, Network.MANAGEMENT),
        networks=nets,
        addresses={
            ("core:zpack-api", Network.MANAGEMENT): IPv4Address("10.99.0.10"),
            ("core:zlh-monitor", Network.MANAGEMENT): IPv4Address("10.99.0.20"),
        },
    )
    for rule in rules:
        # As layers/guest.py hands it to the provider.
        wire: dict[str, str | None] = {
            "type": rule.direction,
            "action": rule.action,
            "proto": rule.proto,
        }
        wire |= {"dport": str(rule.dport), "source": rule.source, "iface": rule.iface}
        read = read_rule(rule_from_props(wire))
        assert (read.type, read.action, read.ports) == ("in", "ACCEPT", ((rule.dport,) * 2,))
        assert rule.proto is not None
        assert read.proto == {"tcp": TCP, "udp": UDP}[rule.proto]
        if rule.source is None:
            assert read.sources is None
        else:
            assert read.sources is not None
            assert [item.addresses for item in read.sources] == [AddressSet.of(rule.source)]


def test_peer_sources_resolve_to_networks_and_any() -> None:
    nets = {Network.LAN: NET, Network.MANAGEMENT: IPv4Network("10.99.0.0/22")}
    rules = resolve_ingress(
        [Ingress(80, Peer.ANY), Ingress(53, Peer.LAN, proto="udp")],
        nics=(Network.LAN,),
        networks=nets,
        addresses={},
    )
    assert [(r.source, r.proto, r.iface) for r in rules] == [
        (None, "tcp", "net0"),
        ("10.20.0.0/22", "udp", "net0"),
    ]


def test_ingress_on_a_missing_nic_is_refused() -> None:
    with pytest.raises(ValueError, match="no NIC there"):
        resolve_ingress(
            [Ingress(1, Peer.ANY, network=Network.MANAGEMENT)],
            nics=(Network.LAN,),
            networks={},
            addresses={},
        )


def test_iface_follows_nic_order() -> None:
    assert iface_of((Network.WAN, Network.LAN, Network.MANAGEMENT), Network.MANAGEMENT) == "net2"


def test_traefik_config_is_deterministic_and_routes_each_host() -> None:
    routes = [
        HttpRoute("b", "b.example.com", "http://10.0.0.2:80"),
        HttpRoute("a", "a.example.com", "http://10.0.0.1:80"),
    ]
    text = traefik_dynamic_config(routes)
    assert text == traefik_dynamic_config(list(reversed(routes)))
    assert '"rule": "Host(`a.example.com`)"' in text
    assert '"url": "http://10.0.0.2:80"' in text


def test_velocity_servers_table() -> None:
    text = velocity_servers(
        [GameServer("mc-b", "10.20.1.1:25565"), GameServer("mc-a", "10.20.1.0:25565")]
    )
    assert text.splitlines() == [
        "[servers]",
        '"mc-a" = "10.20.1.0:25565"',
        '"mc-b" = "10.20.1.1:25565"',
        'try = ["mc-a", "mc-b"]',
    ]
