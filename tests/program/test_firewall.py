"""The agent firewall as recorded: proven with the reachability evaluator, not pattern-matched."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from tests.program.conftest import CONTAINER, by_vmid, guests, of_type, tag
from tests.stack_configs import shipped
from zlh_infra.platform.catalogue import AGENT_PORT, METRICS_PORT
from zlh_infra.platform.egress import egress
from zlh_infra.platform.firewall_state import read_firewall, rules_of
from zlh_infra.platform.fleet_firewall import (
    API_IPSET,
    FLEET_GROUPS,
    MONITOR_IPSET,
    PRIVATE_IPSET,
    PRIVATE_NETWORKS,
)
from zlh_infra.platform.host_firewall import node_reachable_from
from zlh_infra.platform.reachability import TCP, AddressSet, exposure
from zlh_infra.platform.type_tokens import DATACENTER_FIREWALL, NODE_FIREWALL, SECURITY_GROUP
from zlh_infra.tooling.preview.recording import StackRecording

MANAGEMENT_BRIDGE = "vmbr2"


def firewall(recording: StackRecording):  # type: ignore[no-untyped-def]
    return read_firewall((r.type, r.name, r.inputs) for r in recording.resources)


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_every_guest_nic_and_guest_has_the_firewall_on(
    platform: dict[str, StackRecording], stack: str
) -> None:
    host, views = firewall(platform[stack])
    assert host.enabled
    for guest in guests(platform[stack]):
        view = views[int(guest.inputs["vmId"])]
        assert view.nic_firewall and all(view.nic_firewall.values()), guest.urn
        assert view.options is not None and view.options["enabled"] is True, guest.urn


def test_fleet_management_nic_exposes_only_agent_and_metrics(
    core: StackRecording, runtime: StackRecording
) -> None:
    api = core.outputs["apiManagementAddress"]
    monitor = core.outputs["monitorManagementAddress"]
    host, views = firewall(runtime)
    fleet = [g for g in guests(runtime) if tag(g, "role-") in ("game", "dev")]
    assert len(fleet) == 5
    for guest in fleet:
        view = views[int(guest.inputs["vmId"])]
        iface = view.iface_on(MANAGEMENT_BRIDGE)
        assert iface == "net1", guest.urn
        assert view.firewall().input_policy == "DROP", guest.urn
        opened = {
            (e.proto, e.first_port, e.last_port): str(e.sources)
            for e in exposure(host, view.firewall(), iface=iface)
        }
        assert opened == {
            ("tcp", METRICS_PORT, METRICS_PORT): f"{monitor}/32",
            ("tcp", AGENT_PORT, AGENT_PORT): f"{api}/32",
        }, guest.urn


def test_game_ports_open_only_to_velocity_on_the_lan(runtime: StackRecording) -> None:
    host, views = firewall(runtime)
    velocity = by_vmid(runtime)[312].inputs["initialization"]["ipConfigs"][0]["ipv4"]["address"]
    for vmid in (1000, 1001, 1002):
        opened = [
            (e.proto, e.first_port, str(e.sources))
            for e in exposure(host, views[vmid].firewall(), iface="net0")
        ]
        assert opened == [("tcp", 25565, f"{IPv4Address(velocity.split('/')[0])}/32")]


def lan_address(recording: StackRecording, vmid: int) -> str:
    address = by_vmid(recording)[vmid].inputs["initialization"]["ipConfigs"][0]["ipv4"]["address"]
    return str(address.split("/")[0])


def test_core_database_only_reachable_from_the_api_and_the_monitor(core: StackRecording) -> None:
    host, views = firewall(core)
    opened = [
        (e.proto, e.first_port, str(e.sources))
        for e in exposure(host, views[102].firewall(), iface="net0")
    ]
    assert opened == [
        ("tcp", 3306, f"{lan_address(core, 100)}/32"),
        ("tcp", METRICS_PORT, f"{lan_address(core, 2000)}/32"),
    ]


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_zlh_monitor_may_scrape_every_running_container(
    platform: dict[str, StackRecording], stack: str
) -> None:
    """Core guests on the core LAN; runtime-host guests on their management NIC only."""
    core = platform["core"]
    host, views = firewall(platform[stack])
    # Base images and templates stay stopped; their exporter listens on loopback.
    containers = [
        g for g in guests(platform[stack]) if g.type == CONTAINER and tag(g, "role-") != "template"
    ]
    assert containers
    for guest in containers:
        view = views[int(guest.inputs["vmId"])]
        if stack == "core":
            iface, monitor = "net0", lan_address(core, 2000)
        else:
            iface, monitor = (
                view.iface_on(MANAGEMENT_BRIDGE),
                core.outputs["monitorManagementAddress"],
            )
            assert iface is not None, guest.urn
            lan = exposure(host, view.firewall(), iface="net0")
            assert METRICS_PORT not in {e.first_port for e in lan}, guest.urn
        scrapes = [
            str(e.sources)
            for e in exposure(host, view.firewall(), iface=iface)
            if e.proto == "tcp" and e.first_port == METRICS_PORT
        ]
        assert scrapes == [f"{monitor}/32"], guest.urn


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_containers_filter_their_source_addresses_and_routers_their_mac(
    platform: dict[str, StackRecording], stack: str
) -> None:
    options = of_type(platform[stack], "proxmoxve:firewall/optionsLegacy:OptionsLegacy")
    assert options
    for option in options:
        is_container = "containerId" in option.inputs
        assert option.inputs["macfilter"] is True, option.name
        assert option.inputs["ipfilter"] is is_container, option.name


def test_pbs_accepts_backups_from_the_proxmox_nodes_only(core: StackRecording) -> None:
    """Not from a network: every tenant container is on the management network."""
    host, views = firewall(core)
    back = views[2001].firewall()
    nodes = shipped("core")["monitoring"]["proxmoxNodes"].values()
    [pbs] = [e for e in exposure(host, back, iface="net1") if e.first_port == 8007]
    assert (pbs.proto, pbs.last_port) == ("tcp", 8007)
    assert pbs.sources == AddressSet.of(*nodes)
    assert 8007 not in {e.first_port for e in exposure(host, back, iface="net0")}


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_each_node_admits_only_the_operators_to_its_api_and_ssh(
    platform: dict[str, StackRecording], stack: str
) -> None:
    """Computed from the recorded host firewall, as Proxmox applies it to the node."""
    recording = platform[stack]
    host, _views = firewall(recording)
    (datacenter,) = of_type(recording, DATACENTER_FIREWALL)
    assert datacenter.inputs["inputPolicy"] == "DROP"
    (switch,) = of_type(recording, NODE_FIREWALL)
    node = shipped(stack)["proxmox"]["node"]
    assert (switch.inputs["nodeName"], switch.inputs["enabled"]) == (node, True)
    [host_rules] = [
        r
        for r in of_type(recording, "proxmoxve:firewall/rulesLegacy:RulesLegacy")
        if "vmId" not in r.inputs and "containerId" not in r.inputs
    ]
    rules = rules_of(host_rules.inputs)
    operators = AddressSet.of(*shipped(stack)["proxmox"]["adminSources"])
    reach = {
        port: node_reachable_from(
            host, node_enabled=True, input_policy="DROP", rules=rules, proto=TCP, port=port
        )
        for port in (8006, 22, 3128, 5900, 60000, METRICS_PORT, 80)
    }
    loopback = AddressSet.of("127.0.0.1/32")
    # A runtime node also lets zpack-api make the fleet's containers through its API.
    api = f"{shipped('core')['guests']['zpack-api']['managementAddress']}/32"
    assert {port: sources - loopback for port, sources in reach.items()} == {
        8006: operators | AddressSet.of(api) if stack == "runtime" else operators,
        22: operators,
        3128: operators,
        5900: operators,
        60000: operators,
        METRICS_PORT: AddressSet.of(
            f"{shipped('core')['guests']['zlh-monitor']['managementAddress']}/32"
        ),
        80: AddressSet(),
    }


def test_every_fleet_container_starts_with_the_hosts_fleet_groups(
    core: StackRecording, runtime: StackRecording
) -> None:
    """One pair of groups per host, its sets holding the contract's addresses."""
    groups = {g.inputs["name"]: g.inputs["rules"] for g in of_type(runtime, SECURITY_GROUP)}
    assert sorted(groups) == sorted(group for group, _iface in FLEET_GROUPS)
    # Proxmox refuses an interface on a rule inside a group.
    assert not any(rule.get("iface") for rules in groups.values() for rule in rules)
    ipsets = {
        r.inputs["name"]: [c["name"] for c in r.inputs["cidrs"]]
        for r in of_type(runtime, "proxmoxve:firewall/ipsetLegacy:IpsetLegacy")
        if r.inputs["name"] != "management"
    }
    assert ipsets == {
        API_IPSET: [f"{core.outputs['apiManagementAddress']}/32"],
        MONITOR_IPSET: [f"{core.outputs['monitorManagementAddress']}/32"],
        PRIVATE_IPSET: [str(n) for n in PRIVATE_NETWORKS],
    }
    fleet = {int(g.inputs["vmId"]) for g in guests(runtime) if tag(g, "role-") in ("game", "dev")}
    rules = {
        int(r.inputs["containerId"]): r.inputs["rules"]
        for r in of_type(runtime, "proxmoxve:firewall/rulesLegacy:RulesLegacy")
        if "containerId" in r.inputs
    }
    for vmid in fleet:
        attached = [(r.get("securityGroup"), r.get("iface")) for r in rules[vmid][:2]]
        assert attached == list(FLEET_GROUPS), vmid
        # The container adds inbound workload ports only: egress is the groups' alone.
        assert {(r["type"], r["action"]) for r in rules[vmid][2:]} == {("in", "ACCEPT")}, vmid
    assert not any(
        rule.get("securityGroup") for vmid, rs in rules.items() if vmid not in fleet for rule in rs
    )


def test_a_tenant_reaches_the_internet_its_resolver_and_zlh_artifacts_only(
    runtime: StackRecording,
) -> None:
    """Computed over the recorded outbound rules, group and sets, as Proxmox applies them."""
    host, views = firewall(runtime)
    gateway = shipped("runtime")["network"]["lan"]["gateway"]
    store = shipped("runtime")["guests"]["zlh-artifacts"]["lanAddress"]
    private = AddressSet.of(*PRIVATE_NETWORKS)
    fleet = [g for g in guests(runtime) if tag(g, "role-") in ("game", "dev")]
    for guest in fleet:
        view = views[int(guest.inputs["vmId"])]
        policy = str((view.options or {}).get("outputPolicy") or "ACCEPT")
        management = egress(host, view.firewall(), iface="net1", output_policy=policy)
        assert management == [], guest.urn
        reached = {
            (e.proto, e.first_port, e.last_port): e.sources & private
            for e in egress(host, view.firewall(), iface="net0", output_policy=policy)
        }
        assert {k: str(v) for k, v in reached.items() if v} == {
            ("tcp", 53, 53): f"{gateway}/32",
            ("udp", 53, 53): f"{gateway}/32",
            ("tcp", 8080, 8080): f"{store}/32",
        }, guest.urn
        # Everything public stays open: the internet through the router.
        assert all(
            e.sources | private == AddressSet.everything()
            for e in egress(host, view.firewall(), iface="net0", output_policy=policy)
        ), guest.urn
