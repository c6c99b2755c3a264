"""zlh-tenant-egress on a live runtime host: where a game or dev container may connect to.

The fake runtime host holds the fleet's security groups and IP sets as
``fleet_firewall.py`` defines them and every container attaches them first, as
``layers/runtime.py`` and zpack-api do; each test changes one thing.
"""

from __future__ import annotations

from typing import Any

from tests.tooling.audit.conftest import Platform, errors, findings, only, problems
from tests.tooling.audit.fakehosts import fleet_guest
from zlh_infra.platform.vmids import VmidRole

RULE = "zlh-tenant-egress"
FLEET = ("mc-survival", "mc-creative", "mc-skyblock", "dev-alice", "dev-bob")
PRIVATE = (
    "10.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, fc00::/7, fe80::/10"
)
PLATFORM = "private addresses of the platform (its LAN, the other networks, the nodes)"
LAN_FIX = "Allow only the resolver and zlh-artifacts, then drop the private IP set."
TENANT_CALLS_OUT = "; a tenant answers zpack-api and the monitor there and calls out to nothing"
MANAGEMENT_FIX = "Drop all outbound on it."
NOT_FIRST = (
    "its rules do not start with the fleet's security groups (zlh-fleet-mgmt on net1 and "
    "zlh-fleet-lan on net0), which every game and dev container attaches first"
)


def out_rule(proto: str, port: int, dest: str) -> dict[str, Any]:
    return {"type": "out", "action": "ACCEPT", "proto": proto, "dport": str(port),
            "dest": dest, "enable": 1}  # fmt: skip


def test_the_fleet_as_the_program_builds_it_passes(platform: Platform) -> None:
    result = platform.audit("--format", "json")
    assert result.code == 0
    assert [f for f in findings(result) if f["rule"] == RULE] == []


def test_security_groups_not_first(platform: Platform) -> None:
    bob = platform.runtime.guest(1101)
    bob.rules = bob.rules[2:] + bob.rules[:2]  # the workload's port first
    result = platform.audit("--format", "json")
    assert result.code == 1
    # Nothing opens more yet, but a rule put above the groups would decide first.
    assert errors(result) == [("dev-bob", RULE)]
    finding = only(result, "dev-bob", RULE)
    assert (finding["vmid"], finding["problem"], finding["fix"]) == (
        1101,
        NOT_FIRST,
        "Reference them as its first rules.",
    )


def test_the_lan_group_lets_tenants_into_the_core_lan(platform: Platform) -> None:
    # Someone opened zlh-db's port to the fleet, above the group's private DROP.
    platform.runtime.groups["zlh-fleet-lan"].insert(0, out_rule("tcp", 5432, "10.10.0.0/24"))
    result = platform.audit("--format", "json")
    assert errors(result) == [(guest, RULE) for guest in FLEET]
    assert {(f["problem"], f["fix"]) for f in findings(result)} == {
        (f"net0 may open TCP 5432 connections to 10.10.0.0/24, {PLATFORM}", LAN_FIX)
    }


def test_the_management_group_without_its_outbound_drop(platform: Platform) -> None:
    group = platform.runtime.groups["zlh-fleet-mgmt"]
    group[:] = [r for r in group if r["type"] != "out"]
    result = platform.audit("--format", "json")
    assert {guest for guest, _ in errors(result)} == set(FLEET)
    assert {rule for _, rule in errors(result)} == {RULE}
    survival = problems(result, "mc-survival", RULE)
    # Every port class of TCP and UDP, and the other protocols.
    assert len(survival) == 11
    assert (
        "net1 on the management bridge may open UDP 53 connections to 0.0.0.0/0, "
        f"::/0{TENANT_CALLS_OUT}" in survival
    )
    assert {f["fix"] for f in findings(result)} == {MANAGEMENT_FIX}


def test_dns_allowed_beyond_the_containers_resolver(platform: Platform) -> None:
    # The group's DNS accepts grew from the router to a /30 of the LAN.
    for accept in platform.runtime.groups["zlh-fleet-lan"][:2]:
        accept["dest"] = "10.20.0.0/30"
    result = platform.audit("--format", "json")
    assert errors(result) == [(guest, RULE) for guest in FLEET for _ in ("tcp", "udp")]
    # The router (10.20.0.1), the containers' gateway and nameserver, stays allowed.
    assert problems(result, "dev-alice", RULE) == [
        f"net0 may open {proto} 53 connections to 10.20.0.0/32, 10.20.0.2/31, {PLATFORM}"
        for proto in ("TCP", "UDP")
    ]


def test_the_resolver_is_the_containers_own(platform: Platform) -> None:
    # Without a gateway or nameserver in its config, the router is no resolver of it.
    survival = platform.runtime.guest(1000)
    survival.nameserver, survival.nics[0].gateway = None, None
    result = platform.audit("--format", "json")
    assert errors(result) == [("mc-survival", RULE)] * 2
    assert problems(result, "mc-survival", RULE) == [
        f"net0 may open {proto} 53 connections to 10.20.0.1/32, {PLATFORM}"
        for proto in ("TCP", "UDP")
    ]


def test_an_api_made_container_without_the_groups(platform: Platform) -> None:
    # zpack-api made it and set only its workload's port: nothing holds its egress.
    guest = fleet_guest(1125, "dev-api", VmidRole.DEV)
    guest.rules = guest.rules[2:]
    platform.runtime.guests.append(guest)
    platform.runtime.backup_jobs[0]["vmid"] += ",1125"
    result = platform.audit("--format", "json")
    egress = problems(result, "dev-api", RULE)
    assert egress == [
        NOT_FIRST,
        *(
            f"net0 may open {what} connections to {PRIVATE}, {PLATFORM}"
            for what in ("TCP 1-65535", "UDP 1-65535", "non-TCP/UDP")
        ),
        *(
            f"net1 on the management bridge may open {what} connections to 0.0.0.0/0, "
            f"::/0{TENANT_CALLS_OUT}"
            for what in ("TCP 1-65535", "UDP 1-65535", "non-TCP/UDP")
        ),
    ]
    # Its agent answers nobody either: the management group carried that rule.
    assert only(result, "dev-api", "zlh-agent-port")["problem"].startswith(
        "zpack-api (10.99.0.10) cannot reach zlh-agent"
    )


def test_a_container_by_its_role_tag_alone(platform: Platform) -> None:
    # Outside the fleet's ranges, a role tag still makes it a tenant.
    guest = fleet_guest(4300, "odd-game", VmidRole.GAME)
    guest.rules = guest.rules[2:]
    platform.runtime.guests.append(guest)
    platform.runtime.backup_jobs[0]["vmid"] += ",4300"
    result = platform.audit("--format", "json")
    assert problems(result, "odd-game", RULE)[0] == NOT_FIRST


def test_no_egress_rule_on_the_core_host(platform: Platform) -> None:
    # The core host has no fleet: the rule is a runtime host's (placement covers the rest).
    platform.core.guests.append(fleet_guest(1050, "mc-misplaced", VmidRole.GAME))
    platform.core.backup_jobs[0]["vmid"] += ",1050"
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert problems(result, "mc-misplaced", RULE) == []
