"""The audit's adapters without a host: API answers -> wire form, tokens, jobs, messages."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from zlh_infra.platform.firewall_state import DATACENTER, RULES, read_firewall
from zlh_infra.platform.reachability import AddressSet, FirewallReadError, reachable_from
from zlh_infra.platform.topology import StackRole
from zlh_infra.platform.type_tokens import NODE_FIREWALL
from zlh_infra.policies.config import VMID_RANGE
from zlh_infra.policies.resources import CONTAINER, VM, nics_of
from zlh_infra.policies.vmid import check_vmid_range
from zlh_infra.tooling.audit.client import (
    REQUIRED_PRIVILEGES,
    GuestRecord,
    HostSnapshot,
    holds,
    required_privileges,
)
from zlh_infra.tooling.audit.convert import (
    CLUSTER_FW,
    AbsentNic,
    backup_job_resource,
    firewall_triples,
    guest_options_props,
    guest_props,
    guest_resource,
    host_firewall_resources,
    host_fw,
    nics,
    options_props,
    property_string,
    rule_props,
    split_tags,
)
from zlh_infra.tooling.audit.rules import RULE_API_SERVERS, audit, literal_source
from zlh_infra.tooling.audit.targets import (
    ApiToken,
    AuditOptions,
    AuditPlan,
    AuditUsageError,
    HostTarget,
    resolve,
)

REPO = Path(__file__).resolve().parents[3]
TARGET = HostTarget(
    stack="runtime",
    role=StackRole.RUNTIME,
    endpoint="https://zlh-runtime:8006/",
    node="zlh-runtime",
    token=ApiToken("audit@pve", "zlh", "secret"),
    verify=True,
)


def container(vmid: int = 1000, **config: Any) -> GuestRecord:
    return GuestRecord(
        kind="lxc",
        vmid=vmid,
        node="zlh-runtime",
        name=f"ct{vmid}",
        template=False,
        pool=None,
        config=config,
        firewall_options={},
        firewall_rules=[],
        aliases=[],
        ipsets={},
    )


def snapshot(*guests: GuestRecord, **fields: Any) -> HostSnapshot:
    return HostSnapshot(
        target=TARGET, version="9.0", nodes=["zlh-runtime"], guests=list(guests), **fields
    )


def test_property_strings_and_tags() -> None:
    assert property_string("name=eth1,bridge=vmbr2,firewall=1,ip=10.99.1.0/22") == {
        "name": "eth1",
        "bridge": "vmbr2",
        "firewall": "1",
        "ip": "10.99.1.0/22",
    }
    assert property_string("virtio=BC:24:11:00:00:01,bridge=vmbr0") == {
        "virtio": "BC:24:11:00:00:01",
        "bridge": "vmbr0",
    }
    assert split_tags("zlh;role-game; svc-game,layer-runtime") == [
        "layer-runtime",
        "role-game",
        "svc-game",
        "zlh",
    ]
    assert split_tags(None) == []


def test_container_in_the_providers_shape() -> None:
    guest = container(
        1000,
        hostname="mc-survival",
        tags="zlh;role-game",
        protection=1,
        net0="name=eth0,bridge=vmbr1,firewall=1,ip=10.20.1.0/22",
        net1="name=eth1,bridge=vmbr2,firewall=0,ip=10.99.1.0/22",
    )
    props = guest_props(guest)
    assert props["vmId"] == 1000
    assert props["nodeName"] == "zlh-runtime"
    assert props["tags"] == ["role-game", "zlh"]
    assert props["protection"] is True
    assert props["networkInterfaces"] == [
        {"bridge": "vmbr1", "firewall": True, "name": "eth0"},
        {"bridge": "vmbr2", "firewall": False, "name": "eth1"},
    ]
    assert props["initialization"]["ipConfigs"] == [
        {"ipv4": {"address": "10.20.1.0/22"}},
        {"ipv4": {"address": "10.99.1.0/22"}},
    ]
    assert guest_resource(snapshot(guest), guest).type == CONTAINER


def test_vm_nics_and_cloud_init_addresses() -> None:
    guest = GuestRecord(
        kind="qemu",
        vmid=310,
        node="zlh-runtime",
        name="zlh-zpack-router",
        template=False,
        pool=None,
        config={
            "net0": "virtio=BC:24:11:00:01:36,bridge=vmbr0,firewall=1",
            "net1": "e1000=BC:24:11:00:01:37,bridge=vmbr1",
            "ipconfig1": "ip=10.20.0.1/22",
        },
        firewall_options={},
        firewall_rules=[],
        aliases=[],
        ipsets={},
    )
    props = guest_props(guest)
    assert props["networkDevices"] == [
        {"bridge": "vmbr0", "firewall": True, "model": "virtio"},
        {"bridge": "vmbr1", "firewall": False, "model": "e1000"},
    ]
    assert [nic.address for nic in nics(guest)] == [None, "10.20.0.1/22"]
    assert guest_resource(snapshot(guest), guest).type == VM


def test_nic_gap_keeps_later_nics_at_their_index() -> None:
    # net1 was removed: net2 stays net2 for the checks and for the evaluator.
    assert isinstance(
        guest_props(container(net2="bridge=vmbr2"))["networkInterfaces"][0], AbsentNic
    )
    guest = container(
        net0="name=eth0,bridge=vmbr1,firewall=1", net2="name=eth2,bridge=vmbr2,firewall=1"
    )
    resource = guest_resource(snapshot(guest), guest)
    assert [(nic.iface, nic.bridge) for nic in nics_of(resource)] == [
        ("net0", "vmbr1"),
        ("net2", "vmbr2"),
    ]
    _, views = read_firewall(firewall_triples(snapshot(guest)))
    assert views[1000].iface_on("vmbr2") == "net2"
    assert views[1000].nic_firewall == {"net0": True, "net2": True}


def test_options_and_rules_in_the_providers_shape() -> None:
    assert options_props({"enable": 1, "policy_in": "DROP", "digest": "x"}) == {
        "enabled": True,
        "inputPolicy": "DROP",
    }
    # The datacenter switch may hold the time it was turned on.
    assert options_props({"enable": 1767225600})["enabled"] is True
    assert options_props({})["enabled"] is False
    assert rule_props(
        {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "18888", "enable": 0, "pos": 0}
    ) == {
        "type": "in",
        "action": "ACCEPT",
        "enabled": False,
        "proto": "tcp",
        "dport": "18888",
    }
    assert rule_props({"type": "group", "action": "zlh-agent-path", "iface": "net1"}) == {
        "type": "group",
        "action": "zlh-agent-path",
        "securityGroup": "zlh-agent-path",
        "enabled": True,
        "iface": "net1",
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Unset, Proxmox filters MACs and lets DHCP out; ipfilter stays off (and unset).
        ({"enable": 1}, {"enabled": True, "macfilter": True, "dhcp": True}),
        (
            {"enable": 1, "ipfilter": 1, "macfilter": "0", "dhcp": 0},
            {"enabled": True, "ipfilter": True, "macfilter": False, "dhcp": False},
        ),
        # What is not 0 or 1 stays as it came, for the reader to refuse.
        (
            {"ipfilter": "yes"},
            {"enabled": False, "ipfilter": "yes", "macfilter": True, "dhcp": True},
        ),
    ],
)
def test_guest_filter_options_in_the_providers_shape(
    options: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert guest_options_props(options) == expected


def test_unreadable_filter_options_reach_the_reader() -> None:
    guest = container(net0="name=eth0,bridge=vmbr2,firewall=1,ip=10.99.1.0/22")
    guest.firewall_options = {"enable": 1, "ipfilter": "yes"}
    _, views = read_firewall(firewall_triples(snapshot(guest)))
    with pytest.raises(FirewallReadError, match="ipfilter 'yes' is not true or false"):
        views[1000].firewall()


def test_nic_addresses_stay_at_their_nics_index() -> None:
    guest = container(
        net0="name=eth0,bridge=vmbr1,firewall=1,ip=dhcp",
        net2="name=eth2,bridge=vmbr2,firewall=1,ip=10.99.1.0/22,ip6=fd99::1:0/64",
    )
    assert guest_props(guest)["initialization"]["ipConfigs"] == [
        {"ipv4": {"address": "dhcp"}},
        {},
        {"ipv4": {"address": "10.99.1.0/22"}, "ipv6": {"address": "fd99::1:0/64"}},
    ]
    guest.firewall_options = {"enable": 1, "ipfilter": 1}
    host, views = read_firewall(firewall_triples(snapshot(guest, firewall_options={"enable": 1})))
    assert [(nic.iface, str(nic.sources)) for nic in views[1000].senders(host)] == [
        ("net0", "fe80::/64"),
        ("net2", "10.99.1.0/32, fd99::1:0/128, fe80::/64"),
    ]


def test_evaluator_on_converted_state_resolves_names() -> None:
    guest = container(net0="name=eth0,bridge=vmbr2,firewall=1")
    guest.firewall_options = {"enable": 1, "policy_in": "DROP"}
    guest.firewall_rules = [{"type": "group", "action": "agent", "iface": "net0", "enable": 1}]
    guest.aliases = [{"name": "api", "cidr": "10.99.0.10"}]
    host = snapshot(
        guest,
        firewall_options={"enable": 1},
        security_groups={
            "agent": [
                {
                    "type": "in",
                    "action": "ACCEPT",
                    "proto": "tcp",
                    "dport": "18888",
                    "source": "api",
                    "enable": 1,
                }
            ]
        },
    )
    firewall, views = read_firewall(firewall_triples(host))
    view = views[1000]
    sources = reachable_from(
        firewall,
        view.firewall(),
        iface="net0",
        proto="tcp",
        port=18888,
        guest_aliases=view.aliases,
        guest_ipsets=view.ipsets,
    )
    assert sources == AddressSet.of("10.99.0.10")


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "j", "type": "vzdump", **fields}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"vmid": "1000,1001"}, {"all": False, "vmids": ["1000", "1001"]}),
        ({"all": 1}, {"all": True, "vmids": []}),
        ({"all": 1, "exclude": "1001"}, {"all": False, "vmids": ["1000", "1002"]}),
        ({"pool": "zlh-runtime"}, {"all": False, "vmids": ["1000"]}),
        ({"pool": "elsewhere"}, {"all": False, "vmids": []}),
        ({"vmid": "1000", "enabled": 0}, {"enabled": False, "vmids": ["1000"]}),
        ({"vmid": "1000,1001", "node": "zlh-core"}, {"node": "zlh-core", "vmids": []}),
        ({"all": 1, "node": "zlh-runtime"}, {"all": True, "node": "zlh-runtime"}),
    ],
)
def test_backup_jobs_in_the_providers_shape(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    host = snapshot(
        container(1000), container(1001), container(1002), pools={"zlh-runtime": {1000}}
    )
    resource = backup_job_resource(host, job(**fields))
    assert resource is not None
    assert resource.props["resourceId"] == "j"
    assert {key: resource.props.get(key) for key in expected} == expected
    assert resource.props.get("enabled", True) is (fields.get("enabled", 1) == 1)


def test_only_vzdump_jobs_are_backup_jobs() -> None:
    assert backup_job_resource(snapshot(), {"id": "x", "type": "realm-sync"}) is None


def test_names_in_rule_sources_resolve_to_addresses() -> None:
    guest = container(net0="name=eth0,bridge=vmbr2,firewall=1")
    guest.aliases = [{"name": "api", "cidr": "10.99.0.10"}]
    guest.ipsets = {"local": [{"cidr": "10.99.0.8/30"}, {"cidr": "10.99.0.8", "nomatch": 1}]}
    host = snapshot(
        guest,
        aliases=[{"name": "monitor", "cidr": "10.99.0.20"}],
        ipsets={"empty": []},
    )
    firewall, views = read_firewall(firewall_triples(host))
    view = views[1000]
    assert literal_source("10.99.0.10/32", firewall, view) == "10.99.0.10/32"
    assert literal_source("api", firewall, view) == "10.99.0.10/32"
    assert literal_source("dc/monitor", firewall, view) == "10.99.0.20/32"
    assert literal_source("+local", firewall, view) == "10.99.0.9/32,10.99.0.10/31"
    assert literal_source("api,monitor", firewall, view) == "10.99.0.10/32,10.99.0.20/32"
    # An empty IP set stays a name: no source at all would mean "any".
    assert literal_source("+empty", firewall, view) == "+empty"
    assert literal_source("nothing", firewall, view) is None


def test_a_finding_carries_the_checks_problem_and_fix() -> None:
    record = container(1200, tags="layer-runtime;role-game;stack-runtime;svc-game;zlh")
    host = snapshot(record)
    (violation,) = check_vmid_range(
        guest_resource(host, record), VMID_RANGE.parse("zlh-vmid-range", None)
    )
    plan = AuditPlan(
        targets=(TARGET,),
        api_address=IPv4Address("10.99.0.10"),
        monitor_address=IPv4Address("10.99.0.20"),
        timeout=1,
    )
    found = [f for f in audit([host], plan) if f.rule == "zlh-vmid-range"]
    # The pack leads with the guest; the audit's GUEST and VMID columns name it instead.
    assert violation.message.startswith(f"{violation.subject}: {violation.problem}; ")
    assert violation.subject == "ct1200 (VMID 1200)"
    assert violation.fix == "give it a free VMID in the game range 1000-1099"
    assert [(f.guest, f.vmid, f.problem, f.fix) for f in found] == [
        ("ct1200", 1200, violation.problem, "Give it a free VMID in the game range 1000-1099.")
    ]


def test_a_privilege_is_held_where_the_paths_answer_lists_it() -> None:
    # GET /access/permissions?path=/vms with PVEAuditor on /, propagated.
    assert holds({"/vms": {"VM.Audit": 1, "Sys.Audit": 1}}, "/vms", "VM.Audit")
    # Set on the path without propagating further: still held there.
    assert holds({"/": {"Sys.Audit": 0}}, "/", "Sys.Audit")
    # NoAccess below a grant, or nothing granted: Proxmox answers without the path.
    assert not holds({}, "/access", "Sys.Audit")
    assert not holds({"/vms": {"VM.Audit": 1}}, "/vms", "Sys.Audit")
    assert not holds({"/": {"Sys.Audit": 1}}, "/vms", "Sys.Audit")


def test_token_parsing() -> None:
    token = ApiToken.parse("audit@pve!zlh=0c8f-1234", "$X")
    assert (token.token_id, token.secret) == ("audit@pve!zlh", "0c8f-1234")
    assert "0c8f" not in repr(token)
    with pytest.raises(AuditUsageError):
        ApiToken.parse("audit@pve=secret", "$X")


def test_targets_from_the_shipped_stack_files() -> None:
    plan = resolve(
        AuditOptions(), root=REPO, environ={"PROXMOX_VE_API_TOKEN": "audit@pve!zlh=s3cret"}
    )
    core, runtime = plan.targets[:2]
    assert (core.stack, core.node, core.endpoint) == (
        "core",
        "zlh-core",
        "https://zlh-core.zerolaghub.net:8006/",
    )
    assert core.host == "zlh-core.zerolaghub.net:8006"
    assert (runtime.stack, runtime.node, runtime.verify) == ("runtime", "zlh-runtime", True)
    assert runtime.recorded[1002] == "games[2].vmid"
    assert runtime.management_bridge == "vmbr2"
    assert (plan.api_address, plan.monitor_address) == (
        IPv4Address("10.99.0.10"),
        IPv4Address("10.99.0.20"),
    )
    assert plan.warnings == ()


def test_flags_override_the_stack_file_and_add_hosts() -> None:
    environ = {"PROXMOX_VE_API_TOKEN": "a@pve!t=1", "R2": "b@pve!t=2"}
    options = AuditOptions(
        stacks=("runtime-2",),
        hosts={"runtime-2": "https://[fd00::2]:8006/"},
        nodes={"runtime-2": "zlh-runtime-2"},
        token_envs={"runtime-2": "R2"},
        api_address=IPv4Address("10.99.0.11"),
    )
    plan = resolve(options, root=REPO, environ=environ)
    (target,) = plan.targets
    assert (target.host, target.node, target.token.user) == (
        "[fd00::2]:8006",
        "zlh-runtime-2",
        "b@pve",
    )
    assert target.recorded == {}
    assert plan.api_address == IPv4Address("10.99.0.11")
    assert plan.monitor_address == IPv4Address("10.99.0.20")  # still from Pulumi.core.yaml
    assert "no stack file" in plan.warnings[0]


# --- the node's firewall, tenants' resolvers, zpack-api's servers -------------------------


def test_gateway_and_resolvers_in_the_providers_shape() -> None:
    guest = container(
        nameserver="10.20.0.1 1.1.1.1",
        searchdomain="runtime.zlh.internal",
        net0="name=eth0,bridge=vmbr1,firewall=1,gw=10.20.0.1,ip=10.20.1.0/22",
        net1="name=eth1,bridge=vmbr2,firewall=1,ip=10.99.1.0/22",
    )
    initialization = guest_props(guest)["initialization"]
    assert initialization["ipConfigs"] == [
        {"ipv4": {"address": "10.20.1.0/22", "gateway": "10.20.0.1"}},
        {"ipv4": {"address": "10.99.1.0/22"}},
    ]
    assert initialization["dns"] == {
        "servers": ["10.20.0.1", "1.1.1.1"],
        "domain": "runtime.zlh.internal",
    }
    vm = GuestRecord(
        kind="qemu",
        vmid=310,
        node="zlh-runtime",
        name="router",
        template=False,
        pool=None,
        config={
            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr1",
            "ipconfig0": "ip=dhcp,gw=10.20.0.1",
        },
        firewall_options={},
        firewall_rules=[],
        aliases=[],
        ipsets={},
    )
    assert guest_props(vm)["initialization"] == {
        "ipConfigs": [{"ipv4": {"address": "dhcp", "gateway": "10.20.0.1"}}]
    }


@pytest.mark.parametrize(
    ("datacenter", "node", "policy", "node_on"),
    [
        # pve-firewall: the input policy is DROP unless set, a node's firewall on unless 0.
        ({"enable": 1}, {}, "DROP", True),
        ({"enable": 1, "policy_in": "ACCEPT"}, {"enable": 1}, "ACCEPT", True),
        ({"enable": 1, "policy_in": "REJECT"}, {"enable": 0}, "REJECT", False),
        # A value it cannot read counts as off, so it is reported.
        ({"enable": 1}, {"enable": "yes"}, "DROP", False),
    ],
)
def test_datacenter_and_node_firewall_read_as_proxmox_applies_them(
    datacenter: dict[str, Any], node: dict[str, Any], policy: str, node_on: bool
) -> None:
    found = host_firewall_resources(
        snapshot(
            firewall_options=datacenter,
            node_firewall_options=node,
            cluster_rules=[{"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "22"}],
            node_rules=[{"type": "in", "action": "DROP", "iface": "vmbr2", "enable": 1}],
        )
    )
    by_name = {(r.type, r.name): r.props for r in found}
    assert by_name[(DATACENTER, CLUSTER_FW)]["inputPolicy"] == policy
    assert by_name[(NODE_FIREWALL, host_fw("zlh-runtime"))] == {
        "nodeName": "zlh-runtime",
        "enabled": node_on,
    }
    # The datacenter's rules name no node (every node's), the node's rules name it.
    assert by_name[(RULES, CLUSTER_FW)] == {
        "rules": [
            {"type": "in", "action": "ACCEPT", "enabled": True, "proto": "tcp", "dport": "22"}
        ]
    }
    assert by_name[(RULES, host_fw("zlh-runtime"))]["nodeName"] == "zlh-runtime"


def test_privileges_asked_of_a_runtime_host_and_of_the_core() -> None:
    core = dataclasses.replace(TARGET, stack="core", role=StackRole.CORE, node="zlh-core")
    # The core too: its audit checks that zpack-api holds nothing there.
    assert required_privileges(core) == (
        *REQUIRED_PRIVILEGES,
        ("/nodes/zlh-core", "Sys.Audit"),
        ("/access", "Sys.Audit"),
        ("/access/groups", "Sys.Audit"),
    )
    assert required_privileges(TARGET) == (
        *REQUIRED_PRIVILEGES,
        ("/nodes/zlh-runtime", "Sys.Audit"),
        ("/access", "Sys.Audit"),
        ("/access/groups", "Sys.Audit"),
    )


def test_a_declared_server_in_zpack_apis_part() -> None:
    # The stack's config refuses it; a host may still hold one (an older stack file).
    target = dataclasses.replace(
        TARGET, recorded={1030: "games[0].vmid"}, stack_file=REPO / "Pulumi.runtime.yaml"
    )
    guest = container(
        1030,
        hostname="mc-declared",
        tags="layer-runtime;role-game;stack-runtime;svc-game;zlh",
        net0="name=eth0,bridge=vmbr1,firewall=1,ip=10.20.1.30/22",
    )
    plan = AuditPlan(
        targets=(target,),
        api_address=IPv4Address("10.99.0.10"),
        monitor_address=IPv4Address("10.99.0.20"),
        timeout=1,
    )
    found = audit(
        [HostSnapshot(target=target, version="9.0", nodes=["zlh-runtime"], guests=[guest])], plan
    )
    assert [(f.vmid, f.problem, f.fix) for f in found if f.rule == RULE_API_SERVERS] == [
        (
            1030,
            "VMID 1030 is in zpack-api's part 1020-1099 of the game range: a declared game server "
            "takes a VMID of 1000-1019",
            "Give it a VMID of the declared part 1000-1019 in Pulumi.runtime.yaml (a VMID cannot "
            "change in place: back it up, restore it under the new VMID, then remove the old one).",
        )
    ]


def test_what_the_stack_files_say_of_the_fleet_and_the_networks() -> None:
    plan = resolve(
        AuditOptions(), root=REPO, environ={"PROXMOX_VE_API_TOKEN": "audit@pve!zlh=s3cret"}
    )
    core, runtime = plan.targets[:2]
    assert (runtime.templates, runtime.datastore, runtime.lan_bridge) == (
        (210, 220),
        "local-lvm",
        "vmbr1",
    )
    assert core.templates is None
    assert [str(n) for n in plan.guest_networks] == ["10.10.0.0/24", "10.99.0.0/22", "10.20.0.0/22"]
    assert plan.core_vmids == frozenset(core.recorded)
    assert {100, 2001} <= plan.core_vmids
