"""The audit against two fake Proxmox hosts: the compliant platform, then one test per violation.

Each test seeds the hosts as ``Pulumi.core.yaml`` and ``Pulumi.runtime.yaml`` describe
them, changes one thing, runs ``python -m zlh_infra audit`` in-process, and asserts
the finding (rule, guest, message). The ``platform`` fixture also asserts that the
audit sent nothing but GET requests.
"""

from __future__ import annotations

import json
from typing import Any

from tests.tooling.audit.conftest import Platform, errors, findings, only, problems
from tests.tooling.audit.fakehosts import (
    API_ADDRESS,
    MANAGEMENT_CIDR,
    MONITOR_ADDRESS,
    Guest,
    Nic,
    firewall_options,
    fleet_guest,
    literal_fleet_rules,
    rule,
)
from zlh_infra.platform.catalogue import AGENT_PORT, METRICS_PORT
from zlh_infra.platform.vmids import VmidRole

#: The runtime host's game and dev containers, in VMID order.
FLEET = ("mc-survival", "mc-creative", "mc-skyblock", "dev-alice", "dev-bob")


#: The evaluator's port classes of a fleet NIC that calls out unfiltered: TCP and UDP
#: around the ports the fleet's groups name (DNS, zlh-artifacts), and other protocols.
PORT_CLASS_NAMES = (
    *(f"{proto} {ports}" for proto in ("TCP", "UDP") for ports in
      ("1-52", "53", "54-8079", "8080", "8081-65535")),
    "non-TCP/UDP",
)  # fmt: skip
PORT_CLASSES = len(PORT_CLASS_NAMES)
PRIVATE = (
    "10.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, fc00::/7, fe80::/10"
)
PLATFORM = "private addresses of the platform (its LAN, the other networks, the nodes)"
TENANT_CALLS_OUT = "; a tenant answers zpack-api and the monitor there and calls out to nothing"
#: The reasons the agent-port and egress findings give between their problem and its fix.
ONLY_THE_API = f"; only zpack-api's management address {API_ADDRESS} may reach zlh-agent"
ONLY_API_AND_MONITOR = (
    f"; there only zpack-api ({API_ADDRESS}, TCP {AGENT_PORT}) and zlh-monitor "
    f"({MONITOR_ADDRESS}, TCP {METRICS_PORT}) may connect"
)
API_OPEN_TO_THE_API_ADDRESS = (
    f"node zlh-runtime: the API (8006) is open to {API_ADDRESS}/32, where guests (tenants "
    "included) are"
)


def test_compliant_platform_passes_with_only_get_requests(platform: Platform) -> None:
    result = platform.audit("--format", "json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["compliant"] is True
    assert document["findings"] == []
    assert [(h["stack"], h["node"], h["guests"]) for h in document["hosts"]] == [
        ("core", "zlh-core", 10),
        ("runtime", "zlh-runtime", 13),
    ]
    # The audit read the guests' firewall, the datacenter's, the node's, the backup jobs
    # and, on the runtime host only, zpack-api's identity.
    paths = {path for _, path, _ in platform.hosts["runtime"].pve.requests}
    assert {
        "/api2/json/cluster/backup",
        "/api2/json/cluster/firewall/groups/zlh-fleet-mgmt",
        "/api2/json/cluster/firewall/groups/zlh-fleet-lan",
        "/api2/json/cluster/firewall/rules",
        "/api2/json/nodes/zlh-runtime/firewall/options",
        "/api2/json/nodes/zlh-runtime/firewall/rules",
        "/api2/json/nodes/zlh-runtime/lxc/1000/firewall/rules",
        "/api2/json/access/roles",
        "/api2/json/access/acl",
        "/api2/json/access/users/zpack-api@pve",
    } <= paths
    core_paths = {path for _, path, _ in platform.hosts["core"].pve.requests}
    assert "/api2/json/nodes/zlh-core/firewall/rules" in core_paths
    # The core's identity is read to find none of zpack-api's there (and there is none).
    assert "/api2/json/access/acl" in core_paths
    assert "/api2/json/access/users/zpack-api@pve" not in core_paths


def test_text_report_of_a_compliant_platform(platform: Platform) -> None:
    result = platform.audit()
    assert result.code == 0
    assert "runtime: https://127.0.0.1:" in result.out
    assert result.out.rstrip().endswith("0 error(s), 0 info: compliant.")


def test_vmid_outside_its_role_range(platform: Platform) -> None:
    bob = platform.runtime.guest(1101)
    bob.tags = ["role-game" if tag == "role-dev" else tag for tag in bob.tags]
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [("dev-bob", "zlh-vmid-range")]
    finding = only(result, "dev-bob", "zlh-vmid-range")
    assert (finding["vmid"], finding["node"], finding["stack"]) == (1101, "zlh-runtime", "runtime")
    assert finding["problem"] == (
        "VMID 1101 is in the dev range 1100-1199, but the guest is tagged role-game"
    )
    assert finding["fix"] == (
        "Give it a free VMID in the game range 1000-1099, or correct its tag to role-dev."
    )


def test_api_made_container_in_no_range_is_held_to_the_rules(platform: Platform) -> None:
    stray = fleet_guest(1250, "mc-stray", VmidRole.GAME)
    platform.runtime.guests.append(stray)
    platform.runtime.backup_jobs[0]["vmid"] += ",1250"
    result = platform.audit("--format", "json")
    assert errors(result) == [("mc-stray", "zlh-vmid-range")]
    assert only(result, "mc-stray", "zlh-vmid-range")["problem"].startswith(
        "VMID 1250 is in no VMID range (core-infra 100-199, template 200-299"
    )
    assert only(result, "mc-stray", "unmanaged")["severity"] == "info"


def test_runtime_guest_on_the_core_node(platform: Platform) -> None:
    # The platform API put a game container on the core host, as it would on a runtime
    # host: its gateway and resolver are the runtime LAN's router.
    misplaced = fleet_guest(1050, "mc-misplaced", VmidRole.GAME, stack="runtime")
    misplaced.rules = literal_fleet_rules(VmidRole.GAME)
    platform.core.guests.append(misplaced)
    platform.core.backup_jobs[0]["vmid"] += ",1050"
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [("mc-misplaced", "zlh-control-plane-independent")] * 6
    problems = [
        f["problem"] for f in findings(result) if f["rule"] == "zlh-control-plane-independent"
    ]
    outside = (
        "10.20.0.1 is outside the core host's networks (policy config coreNetworks: "
        "10.10.0.0/24), so the control plane would route or resolve through another host"
    )
    assert sorted(problems) == [
        f"its DNS resolver {outside}",
        f"its gateway of NIC 0 {outside}",
        "mc-misplaced (VMID 1050) has VMID 1050, in the game range 1000-1099 of the runtime hosts",
        "mc-misplaced (VMID 1050) is tagged layer-runtime",
        "mc-misplaced (VMID 1050) is tagged role-game, a role of the runtime hosts",
        "mc-misplaced (VMID 1050) is tagged svc-game, an edge/runtime service (policy config "
        "runtimeServices)",
    ]


def test_untagged_game_container_on_the_core_node_shows_by_its_vmid(platform: Platform) -> None:
    guest = fleet_guest(1051, "hand-made", VmidRole.GAME)
    guest.tags = []
    guest.rules = literal_fleet_rules(VmidRole.GAME)
    guest.nics[0].gateway, guest.nameserver = "10.10.0.1", "10.10.0.1"
    platform.core.guests.append(guest)
    platform.core.backup_jobs[0]["vmid"] += ",1051"
    result = platform.audit("--format", "json")
    assert errors(result) == [("hand-made", "zlh-control-plane-independent")]
    assert only(result, "hand-made", "zlh-control-plane-independent")["problem"] == (
        "hand-made (VMID 1051) has VMID 1051, in the game range 1000-1099 of the runtime hosts"
    )


def test_control_plane_guest_on_a_runtime_node(platform: Platform) -> None:
    build = platform.runtime.guest(151)
    build.tags = [t for t in build.tags if not t.startswith(("layer-", "svc-"))] + [
        "layer-control-plane",
        "svc-zpack-portal",
    ]
    result = platform.audit("--format", "json")
    assert errors(result) == [
        ("zlh-build", "zlh-runtime-isolation"),
        ("zlh-build", "zlh-runtime-isolation"),
    ]
    problems = [f["problem"] for f in findings(result) if f["rule"] == "zlh-runtime-isolation"]
    assert problems == [
        "zlh-build (VMID 151) is tagged layer-control-plane",
        "zlh-build (VMID 151) is tagged svc-zpack-portal, a control-plane service (policy config "
        "controlPlaneServices)",
    ]


def test_agent_port_open_to_all(platform: Platform) -> None:
    # After the fleet's security groups, which accept only zpack-api's IP set.
    platform.runtime.guest(1001).rules.insert(2, rule(AGENT_PORT, iface="net1"))
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [("mc-creative", "zlh-agent-port")]
    finding = only(result, "mc-creative", "zlh-agent-port")
    assert finding["problem"] == (
        "firewall rules mc-creative of container 1001: rule 2 accepts TCP 18888 from any "
        f"source{ONLY_THE_API}"
    )
    assert finding["fix"] == (
        "Set its source to 10.99.0.10/32, or narrow its proto and dport so they do not cover 18888."
    )


def test_agent_port_open_through_a_security_group(platform: Platform) -> None:
    # zpack-api's IP set grew to the whole management network.
    platform.runtime.ipsets["zlh-api"] = [MANAGEMENT_CIDR]
    result = platform.audit("--format", "json")
    assert errors(result) == [
        (None, "zlh-agent-port"),
        (None, "zlh-host-firewall"),
        *((guest, "zlh-agent-port") for guest in FLEET),
    ]
    group, *guests = (f for f in findings(result) if f["rule"] == "zlh-agent-port")
    # The names the program wrote are shown with what they stand for.
    assert (group["stack"], group["node"], group["problem"]) == (
        "runtime",
        "zlh-runtime",
        "security group zlh-fleet-mgmt: rule 0 (zlh-agent from zpack-api) accepts TCP 18888 "
        f"from source +zlh-api (= 10.99.0.0/22){ONLY_THE_API}",
    )
    assert {f["problem"] for f in guests} == {
        f"its management NIC net1 is reachable on TCP 18888 from 10.99.0.0/22{ONLY_API_AND_MONITOR}"
    }
    # The node's API admits the set too: the fleet's own management addresses are in it.
    assert only(result, None, "zlh-host-firewall")["problem"] == (
        "node zlh-runtime: the API (8006) is open to 10.99.1.0/31, 10.99.1.2/32, 10.99.1.100/31, "
        "where guests (tenants included) are"
    )


def test_ip_set_exclusion_is_honoured(platform: Platform) -> None:
    # A /30 around the API with its other three addresses excluded (nomatch): only the API.
    platform.runtime.ipsets["zlh-api"] = ["10.99.0.8/30", "!10.99.0.8", "!10.99.0.9"]
    platform.runtime.ipsets["zlh-api"].append("!10.99.0.11")
    assert platform.audit("--format", "json").code == 0
    entries = platform.hosts["runtime"].pve.firewall_config("cluster")["ipset"]["zlh-api"]
    entries[:] = [entry for entry in entries if entry["cidr"] != "10.99.0.11"]
    result = platform.audit("--format", "json")
    assert [f["problem"] for f in findings(result)] == [
        "security group zlh-fleet-mgmt: rule 0 (zlh-agent from zpack-api) accepts TCP 18888 "
        f"from source +zlh-api (= 10.99.0.10/31){ONLY_THE_API}",
        *[
            "its management NIC net1 is reachable on TCP 18888 from "
            f"10.99.0.10/31{ONLY_API_AND_MONITOR}"
        ]
        * len(FLEET),
    ]


def test_api_cannot_reach_the_agent(platform: Platform) -> None:
    # The fleet's management group lost its agent rule: no container answers zpack-api.
    group = platform.runtime.groups["zlh-fleet-mgmt"]
    group[:] = [r for r in group if r.get("dport") != str(AGENT_PORT)]
    result = platform.audit("--format", "json")
    assert errors(result) == [(guest, "zlh-agent-port") for guest in FLEET]
    assert {f["problem"] for f in findings(result)} == {
        "zpack-api (10.99.0.10) cannot reach zlh-agent (TCP 18888) on net1 (vmbr2), so the "
        "platform cannot manage this container"
    }


def test_firewall_off(platform: Platform) -> None:
    platform.runtime.guest(1002).options = firewall_options() | {"enable": 0}
    result = platform.audit("--format", "json")
    assert result.code == 1
    # Unfiltered, it reaches the agents and the node's API as zpack-api, and calls out
    # anywhere on both NICs (one finding per port class).
    assert errors(result) == [
        (None, "zlh-host-firewall"),
        ("mc-skyblock", "zlh-agent-port"),
        *[("mc-skyblock", "zlh-tenant-egress")] * 2 * PORT_CLASSES,
    ]
    finding = only(result, "mc-skyblock", "zlh-agent-port")
    assert (finding["problem"], finding["fix"]) == (
        "firewall options lxc/1002 leave its firewall disabled",
        "Set enabled=true.",
    )
    assert only(result, None, "zlh-host-firewall")["problem"] == API_OPEN_TO_THE_API_ADDRESS
    egress = problems(result, "mc-skyblock", "zlh-tenant-egress")
    assert f"net0 may open TCP 54-8079 connections to {PRIVATE}, {PLATFORM}" in egress
    assert (
        "net1 on the management bridge may open TCP 8081-65535 connections to 0.0.0.0/0, "
        f"::/0{TENANT_CALLS_OUT}" in egress
    )


def test_nic_without_firewall_flag(platform: Platform) -> None:
    alice = platform.runtime.guest(1100)
    alice.nics[1] = Nic("vmbr2", alice.nics[1].address, firewall=False)
    result = platform.audit("--format", "json")
    assert errors(result) == [
        (None, "zlh-host-firewall"),
        ("dev-alice", "zlh-agent-port"),
        *[("dev-alice", "zlh-tenant-egress")] * PORT_CLASSES,
    ]
    assert only(result, "dev-alice", "zlh-agent-port")["problem"] == (
        "its management NIC net1 on vmbr2 has firewall=false, so its firewall rules do not apply "
        "there"
    )
    assert only(result, None, "zlh-host-firewall")["problem"] == API_OPEN_TO_THE_API_ADDRESS
    assert {
        p.split(" connections")[0] for p in problems(result, "dev-alice", "zlh-tenant-egress")
    } == {f"net1 on the management bridge may open {ports}" for ports in PORT_CLASS_NAMES}


def test_datacenter_firewall_off(platform: Platform) -> None:
    platform.runtime.datacenter = {"enable": 0}
    result = platform.audit("--format", "json")
    host_level = [f for f in findings(result) if f["guest"] is None]
    assert [(f["rule"], f["stack"], f["node"]) for f in host_level] == [
        ("zlh-agent-port", "runtime", "zlh-runtime"),
        *[("zlh-host-firewall", "runtime", "zlh-runtime")] * 6,
    ]
    assert host_level[0]["problem"].startswith(
        "the stack has 5 game/dev container(s) but its datacenter firewall on node zlh-runtime "
        "is not enabled"
    )
    assert [(f["problem"], f["fix"]) for f in host_level[1:3]] == [
        (
            "/etc/pve/firewall/cluster.fw does not enable the datacenter firewall, so neither the "
            "nodes nor any guest is filtered",
            "Set enabled: true.",
        ),
        (
            "node zlh-runtime: SPICE (3128) is open to every address",
            "Admit only the operators' networks (the management IP set, proxmox.adminSources).",
        ),
    ]
    # Nothing filters what a tenant sends either.
    for guest in FLEET:
        assert len(problems(result, guest, "zlh-tenant-egress")) == 2 * PORT_CLASSES


def test_metrics_port_open_to_the_whole_management_network(platform: Platform) -> None:
    platform.runtime.guest(1100).rules.append(
        rule(METRICS_PORT, iface="net1", source=MANAGEMENT_CIDR)
    )
    result = platform.audit("--format", "json")
    assert errors(result) == [("dev-alice", "zlh-agent-port")]
    finding = only(result, "dev-alice", "zlh-agent-port")
    assert finding["problem"] == (
        f"its management NIC net1 is reachable on TCP 9100 from 10.99.0.0/22{ONLY_API_AND_MONITOR}"
    )
    assert finding["fix"] == "Remove or narrow the rule, alias or IP set that opens it."


def test_ssh_open_on_the_management_nic(platform: Platform) -> None:
    platform.runtime.guest(1000).rules.append(rule(22, iface="net1", source=API_ADDRESS))
    result = platform.audit("--format", "json")
    assert only(result, "mc-survival", "zlh-agent-port")["problem"] == (
        f"its management NIC net1 is reachable on TCP 22 from 10.99.0.10/32{ONLY_API_AND_MONITOR}"
    )


def test_rule_naming_a_guest_alias_then_the_alias_goes(platform: Platform) -> None:
    creative = platform.runtime.guest(1001)
    creative.aliases = {"api": API_ADDRESS}
    creative.rules.insert(2, rule(AGENT_PORT, iface="net1", source="api"))
    assert platform.audit("--format", "json").code == 0
    # Proxmox accepts the rule only while the alias exists; then someone removes the alias.
    platform.hosts["runtime"].pve.firewall_config("ct", vmid=1001)["aliases"].clear()
    result = platform.audit("--format", "json")
    assert errors(result) == [("mc-creative", "zlh-agent-port")]
    assert only(result, "mc-creative", "zlh-agent-port")["problem"] == (
        "firewall rules mc-creative of container 1001: rule 2 accepts TCP 18888 from source api, "
        f"which names no alias or IP set on the host{ONLY_THE_API}"
    )


def test_not_backed_up(platform: Platform) -> None:
    # A game container the platform API created and never added to the backup job.
    guest = fleet_guest(1023, "mc-new", VmidRole.GAME)
    platform.runtime.guests.append(guest)
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [("mc-new", "zlh-stateful-protected")]
    finding = only(result, "mc-new", "zlh-stateful-protected")
    assert (finding["problem"], finding["fix"]) == (
        "mc-new (VMID 1023) holds data but no enabled backup job of stack runtime includes it",
        "Add its VMID to the host's backup job to Proxmox Backup Server.",
    )
    assert only(result, "mc-new", "unmanaged")["problem"] == (
        "not managed by Pulumi (VMID 1023 is not among the VMIDs Pulumi.runtime.yaml declares); "
        "as a game/dev container (VMID in the game range 1000-1099) it is held to the platform's "
        "rules all the same"
    )


def test_backup_job_disabled(platform: Platform) -> None:
    platform.core.backup_jobs[0]["enabled"] = 0
    result = platform.audit("--format", "json")
    # Every stateful core guest but PBS itself, in VMID order.
    assert errors(result) == [
        ("zlh-db", "zlh-stateful-protected"),
        ("zlh-redis", "zlh-stateful-protected"),
        ("zlh-dns", "zlh-stateful-protected"),
        ("zlh-ctl", "zlh-stateful-protected"),
        ("zlh-proxy", "zlh-stateful-protected"),
        ("zlh-monitor", "zlh-stateful-protected"),
    ]


def test_backup_job_by_pool_covers_api_made_containers(platform: Platform) -> None:
    platform.runtime.guests.append(fleet_guest(1024, "mc-pooled", VmidRole.GAME))
    platform.runtime.backup_jobs = [
        {
            "id": "zlh-pbs",
            "enabled": 1,
            "schedule": "03:30",
            "storage": "pbs",
            "pool": "zlh-runtime",
        },
        # The edge's pool is another: its stateful proxy is backed up by VMID.
        {"id": "zlh-pbs-edge", "enabled": 1, "schedule": "03:30", "storage": "pbs", "vmid": "311"},
    ]
    result = platform.audit("--format", "json")
    # zlh-artifacts and every fleet container are members of the pool the job selects.
    assert result.code == 0, findings(result)


def test_unprotected_stateful_service(platform: Platform) -> None:
    platform.core.guest(102).protection = False
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [("zlh-db", "zlh-stateful-protected")]
    finding = only(result, "zlh-db", "zlh-stateful-protected")
    assert (finding["problem"], finding["fix"]) == (
        "zlh-db (VMID 102) holds data but Proxmox protection is off, so it can be removed from "
        "the Proxmox UI or API",
        "Set protection=true on the guest.",
    )


def test_zlh_back_needs_protection_but_no_backup_of_itself(platform: Platform) -> None:
    platform.core.guest(2001).protection = False
    result = platform.audit("--format", "json")
    assert errors(result) == [("zlh-back", "zlh-stateful-protected")]


def test_duplicate_vmid_across_hosts(platform: Platform) -> None:
    # A VM made by hand on the core host with zlh-artifacts' VMID.
    platform.core.guests.append(Guest(150, "scratch", kind="qemu", nics={0: Nic("vmbr1")}))
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [("zlh-artifacts", "zlh-vmid-unique")]
    finding = only(result, "zlh-artifacts", "zlh-vmid-unique")
    assert (finding["problem"], finding["fix"]) == (
        "VMID 150 is already used by scratch; a host refuses a second guest with one VMID and "
        "Proxmox Backup Server mixes up the backups of guests sharing one",
        "Give it a free VMID in its role's range.",
    )
    scratch = only(result, "scratch", "unmanaged")
    assert (scratch["severity"], scratch["node"]) == ("info", "zlh-core")


def test_hand_made_guest_is_only_information(platform: Platform) -> None:
    platform.runtime.guests.append(
        Guest(4242, "operator-test", nics={0: Nic("vmbr1", firewall=False)}, options=None)
    )
    result = platform.audit("--format", "json")
    assert result.code == 0
    assert [(f["severity"], f["guest"], f["rule"]) for f in findings(result)] == [
        ("info", "operator-test", "unmanaged")
    ]
    assert only(result, "operator-test", "unmanaged")["problem"] == (
        "not managed by Pulumi (it has no zlh tag); the platform's rules do not apply to it"
    )


def test_declared_guest_missing_from_its_host(platform: Platform) -> None:
    platform.runtime.guests = [g for g in platform.runtime.guests if g.vmid != 1002]
    platform.runtime.backup_jobs[0]["vmid"] = "150,311,1000,1001,1100,1101"
    result = platform.audit("--format", "json")
    assert result.code == 0
    missing = [f for f in findings(result) if f["rule"] == "missing"]
    assert [(f["severity"], f["vmid"], f["guest"]) for f in missing] == [("info", 1002, None)]
    assert missing[0]["problem"] == (
        "stack runtime declares VMID 1002 (zlh-infra:games[2].vmid) but the host has no guest "
        "with it"
    )


def test_text_table_lists_every_finding(platform: Platform) -> None:
    platform.core.guest(103).protection = False
    result = platform.audit()
    assert result.code == 1
    lines = result.out.splitlines()
    header = next(line for line in lines if line.startswith("LEVEL"))
    assert header.split() == ["LEVEL", "GUEST", "VMID", "NODE", "RULE", "PROBLEM", "FIX"]
    row = next(line for line in lines if line.startswith("error"))
    assert row.split()[:5] == ["error", "zlh-redis", "103", "zlh-core", "zlh-stateful-protected"]
    assert lines[-1] == "1 error(s), 0 info: NOT compliant."


def test_report_written_to_a_file(platform: Platform, tmp_path: Any) -> None:
    target = tmp_path / "audit.json"
    result = platform.audit("--format", "json", "--output", str(target))
    assert (result.code, result.out) == (0, "")
    assert json.loads(target.read_text())["compliant"] is True


def test_numbered_protocol_on_the_management_nic(platform: Platform) -> None:
    platform.runtime.guest(1000).rules.append(rule(22, iface="net1", proto="6"))
    result = platform.audit("--format", "json")
    assert errors(result) == [("mc-survival", "zlh-agent-port")]
    assert only(result, "mc-survival", "zlh-agent-port")["problem"] == (
        f"its management NIC net1 is reachable on TCP 22 from 0.0.0.0/0, ::/0{ONLY_API_AND_MONITOR}"
    )


def test_icmp_on_the_management_nic(platform: Platform) -> None:
    platform.runtime.guest(1100).rules.append(
        rule(None, iface="net1", proto="icmp", source=MONITOR_ADDRESS)
    )
    result = platform.audit("--format", "json")
    assert only(result, "dev-alice", "zlh-agent-port")["problem"] == (
        "its management NIC net1 is reachable on protocols other than TCP and UDP from "
        f"10.99.0.20/32{ONLY_API_AND_MONITOR}"
    )


#: What a second management NIC needs that the fleet's group gives net1: no way out.
DROP_OUT_NET2 = {"type": "out", "action": "DROP", "iface": "net2", "enable": 1}


def test_a_second_management_nic_calls_out_until_its_outbound_is_dropped(
    platform: Platform,
) -> None:
    survival = platform.runtime.guest(1000)
    survival.nics[2] = Nic("vmbr2", "10.99.3.0/22")
    result = platform.audit("--format", "json")
    # Its inbound DROP covers it; its outbound is open: the group drops net1's only.
    assert errors(result) == [("mc-survival", "zlh-tenant-egress")] * PORT_CLASSES
    assert {
        p.split(" connections")[0] for p in problems(result, "mc-survival", "zlh-tenant-egress")
    } == {f"net2 on the management bridge may open {ports}" for ports in PORT_CLASS_NAMES}
    assert {f["fix"] for f in findings(result) if f["rule"] == "zlh-tenant-egress"} == {
        "Drop all outbound on it."
    }
    # The fix: the host's file gets a DROP of everything out on net2.
    platform.hosts["runtime"].pve.firewall_config("ct", vmid=1000)["rules"].append(
        dict(DROP_OUT_NET2)
    )
    assert platform.audit("--format", "json").code == 0


def test_a_second_management_nic(platform: Platform) -> None:
    survival = platform.runtime.guest(1000)
    survival.nics[2] = Nic("vmbr2", "10.99.3.0/22")
    survival.rules += [DROP_OUT_NET2, rule(22, iface="net2", source=MANAGEMENT_CIDR)]
    result = platform.audit("--format", "json")
    assert errors(result) == [("mc-survival", "zlh-agent-port")]
    assert only(result, "mc-survival", "zlh-agent-port")["problem"] == (
        f"its management NIC net2 is reachable on TCP 22 from 10.99.0.0/22{ONLY_API_AND_MONITOR}"
    )


def test_an_ipv6_address_in_the_apis_ip_set(platform: Platform) -> None:
    platform.runtime.ipsets["zlh-api"].append("fd00::10")
    result = platform.audit("--format", "json")
    # No guest network holds it: the node's API is not in question, every agent is.
    assert errors(result) == [
        (None, "zlh-agent-port"),
        *((guest, "zlh-agent-port") for guest in FLEET),
    ]
    assert [f["problem"] for f in findings(result)] == [
        "security group zlh-fleet-mgmt: rule 0 (zlh-agent from zpack-api) accepts TCP 18888 "
        f"from source +zlh-api (= 10.99.0.10/32,fd00::10/128){ONLY_THE_API}",
        *[
            "its management NIC net1 is reachable on TCP 18888 from 10.99.0.10/32, "
            f"fd00::10/128{ONLY_API_AND_MONITOR}"
        ]
        * len(FLEET),
    ]


def test_a_value_the_reader_cannot_read_is_a_finding(platform: Platform) -> None:
    assert platform.audit("--format", "json").code == 0
    # What the API would not take from a client, but a host's file may still hold.
    rules = platform.hosts["runtime"].pve.firewall_config("ct", vmid=1001)["rules"]
    next(r for r in rules if r.get("dport") == "25565")["dport"] = "25565:"
    result = platform.audit("--format", "json")
    # Neither what reaches it nor where it may connect can be told.
    assert errors(result) == [
        ("mc-creative", "zlh-agent-port"),
        ("mc-creative", "zlh-tenant-egress"),
    ]
    unreadable = (
        "dport '25565:' is not a port number (0-65535), a port range (low:high) or a "
        "comma-separated list of them"
    )
    finding = only(result, "mc-creative", "zlh-agent-port")
    assert (finding["problem"], finding["fix"]) == (
        f"firewall rules mc-creative of container 1001: rule 2 (workload) cannot be judged: "
        f"{unreadable}",
        "Correct the value, so the checks can tell what it lets in.",
    )
    finding = only(result, "mc-creative", "zlh-tenant-egress")
    assert (finding["problem"], finding["fix"]) == (
        unreadable,
        "Correct it, so where it may connect can be told.",
    )


# --- nothing else on the management network can send from the API's address ------------

SPOOFED = (
    f"zpack-api's management address {API_ADDRESS} (the zlh-agent rule's source) and "
    f"zlh-monitor's management address {MONITOR_ADDRESS} (the metrics scrape rule's source)"
)


def test_a_core_guest_without_ipfilter_can_pass_as_the_api(platform: Platform) -> None:
    # zlh-back has no agent rule of its own, but shares the management network.
    back = platform.core.guest(2001)
    assert back.options is not None
    back.options["ipfilter"] = 0
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [("zlh-back", "zlh-agent-port")]
    finding = only(result, "zlh-back", "zlh-agent-port")
    assert (finding["stack"], finding["node"], finding["vmid"]) == ("core", "zlh-core", 2001)
    assert (finding["problem"], finding["fix"]) == (
        f"its NIC net1 on the management bridge vmbr2 can send from {SPOOFED}, because its "
        "firewall options lxc/2001 leave ipfilter off",
        "Set ipfilter=true in them, so Proxmox lets it send from its configured addresses only.",
    )


def test_a_hand_made_container_on_the_management_network(platform: Platform) -> None:
    scratch = Guest(vmid=160, name="scratch", nics={0: Nic("vmbr2", "10.99.1.250/22")})
    scratch.options = None
    platform.runtime.guests.append(scratch)
    result = platform.audit("--format", "json")
    # Whoever made it: it undoes every agent's firewall, and zpack-api's way to the node's
    # API is no longer zpack-api's alone.
    assert errors(result) == [(None, "zlh-host-firewall"), ("scratch", "zlh-agent-port")]
    assert only(result, None, "zlh-host-firewall")["problem"] == API_OPEN_TO_THE_API_ADDRESS
    assert (only(result, "scratch", "zlh-agent-port")["problem"]) == (
        f"its NIC net0 on the management bridge vmbr2 can send from {SPOOFED}, because its "
        "firewall options lxc/160 leave its firewall disabled, and Proxmox filters what a guest "
        "sends only while its firewall is on"
    )
    assert only(result, "scratch", "unmanaged")["severity"] == "info"


def test_a_hand_made_container_that_sends_from_its_own_address(platform: Platform) -> None:
    scratch = Guest(vmid=160, name="scratch", nics={0: Nic("vmbr2", "10.99.1.250/22")})
    scratch.options = {"enable": 1, "ipfilter": 1}
    platform.runtime.guests.append(scratch)
    result = platform.audit("--format", "json")
    assert result.code == 0
    assert [f["rule"] for f in findings(result)] == ["unmanaged"]


def test_an_api_made_container_without_the_filter_options(platform: Platform) -> None:
    guest = fleet_guest(1023, "mc-new", VmidRole.GAME)
    guest.options = {"enable": 1, "policy_in": "DROP", "macfilter": 0}
    platform.runtime.guests.append(guest)
    platform.runtime.backup_jobs[0]["vmid"] += ",1023"
    result = platform.audit("--format", "json")
    assert errors(result) == [(None, "zlh-host-firewall"), *[("mc-new", "zlh-agent-port")] * 2]
    assert [
        (f["problem"], f["fix"]) for f in findings(result) if f["rule"] == "zlh-agent-port"
    ] == [
        (
            "firewall options lxc/1023 leave ipfilter unset, so the guest can send from any "
            f"address, zpack-api's management address {API_ADDRESS} among them, and reach every "
            "zlh-agent as zpack-api",
            "Set ipfilter=true, so Proxmox lets it send from its configured addresses only.",
        ),
        (
            "firewall options lxc/1023 turn macfilter off, so the guest can send with another "
            "guest's MAC address and receive what the bridge delivers to that guest",
            "Set macfilter=true.",
        ),
    ]


def test_an_ipfilter_ip_set_that_admits_the_management_network(platform: Platform) -> None:
    build = platform.runtime.guest(151)
    build.ipsets = {"ipfilter-net1": [MANAGEMENT_CIDR]}
    result = platform.audit("--format", "json")
    assert errors(result) == [(None, "zlh-host-firewall"), ("zlh-build", "zlh-agent-port")]
    finding = only(result, "zlh-build", "zlh-agent-port")
    assert (finding["problem"], finding["fix"]) == (
        f"its NIC net1 on the management bridge vmbr2 can send from {SPOOFED}, because its IP "
        "set ipfilter-net1 admits 10.99.0.10/32, 10.99.0.20/32",
        "Keep only net1's own addresses in that IP set.",
    )


def test_an_ipfilter_ip_set_filters_with_the_option_off(platform: Platform) -> None:
    build = platform.runtime.guest(151)
    build.ipsets = {"ipfilter-net1": ["10.99.1.201", "10.99.0.0/24", "!10.99.0.0/26"]}
    assert build.options is not None
    build.options["ipfilter"] = 0
    assert platform.audit("--format", "json").code == 0


def test_the_core_datacenter_firewall_off(platform: Platform) -> None:
    platform.core.datacenter = {"enable": 0}
    result = platform.audit("--format", "json")
    host_level = [f for f in findings(result) if f["guest"] is None]
    assert [(f["rule"], f["stack"], f["node"]) for f in host_level] == [
        ("zlh-agent-port", "core", "zlh-core"),
        *[("zlh-host-firewall", "core", "zlh-core")] * 6,
    ]
    assert (host_level[0]["problem"], host_level[0]["fix"]) == (
        "datacenter firewall on node zlh-core is not enabled, so Proxmox filters nothing a "
        "guest sends: zpack-api (VMID 100), zlh-monitor (VMID 2000), zlh-back (VMID 2001) on "
        f"the management bridge vmbr2 can send from {SPOOFED}",
        "Enable it (or set policy config requireClusterFirewall to false if it is managed "
        "outside this stack).",
    )


def test_a_filter_option_the_reader_cannot_read_is_a_finding(platform: Platform) -> None:
    assert platform.audit("--format", "json").code == 0
    # What the API would not take from a client, but a host's file may still hold.
    options = platform.hosts["core"].pve.firewall_config("ct", vmid=2001)["options"]
    options["ipfilter"] = "yes"
    result = platform.audit("--format", "json")
    assert errors(result) == [("zlh-back", "zlh-agent-port")]
    finding = only(result, "zlh-back", "zlh-agent-port")
    assert (finding["problem"], finding["fix"]) == (
        "what it may send cannot be judged: ipfilter 'yes' is not true or false",
        "Correct the value, so the checks can tell what it lets in.",
    )
