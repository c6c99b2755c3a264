"""zlh-tenant-egress: a tenant calls out to the internet, never into the platform."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policies.policy_fixtures import find, props, runtime_stack
from zlh_infra.platform.type_tokens import FIREWALL_OPTIONS, FIREWALL_RULES, SECURITY_GROUP
from zlh_infra.policies.config import EGRESS
from zlh_infra.policies.egress import check_tenant_egress
from zlh_infra.policies.resources import Resource, Violation

CONFIG = EGRESS.parse("zlh-tenant-egress", None)
ATTACH = (
    "its rules do not start with the fleet's security groups (zlh-fleet-mgmt on net1 and "
    "zlh-fleet-lan on net0), which every game and dev container attaches first: reference "
    "them as its first rules."
)
LOOSE = (
    "private addresses of the platform (its LAN, the other networks, the nodes); allow only "
    "the resolver and zlh-artifacts, then drop the private IP set."
)


def messages(resources: list[Resource], stack: str = "runtime") -> list[str]:
    return check_tenant_egress(resources, CONFIG, stack).messages


def group(resources: list[Resource], name: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = props(find(resources, name, SECURITY_GROUP))["rules"]
    return rules


def test_the_programs_fleet_groups_let_a_tenant_out_to_the_internet_only() -> None:
    assert messages(runtime_stack(fleet_group=True)) == []


def test_a_container_without_the_groups_is_refused() -> None:
    resources = runtime_stack(fleet_group=True)
    props(find(resources, "mc-survival-rules", FIREWALL_RULES))["rules"] = [
        {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "25565"}
    ]
    found = messages(resources)
    assert found[0] == f"mc-survival (VMID 1000): {ATTACH}"
    # ... and with no outbound rule at all, it reaches every private address.
    assert "net0 may open TCP 1-65535 connections to 10.0.0.0/8, 100.64.0.0/10" in found[1]


def test_groups_attached_on_the_wrong_nics_are_refused() -> None:
    resources = runtime_stack(fleet_group=True)
    rules = props(find(resources, "mc-survival-rules", FIREWALL_RULES))["rules"]
    rules[0]["iface"], rules[1]["iface"] = "net0", "net1"
    found = messages(resources)
    assert found[0] == f"mc-survival (VMID 1000): {ATTACH}"
    assert any("net1 on the management bridge may open" in m for m in found)


@pytest.mark.parametrize(
    ("name", "comment", "expected"),
    [
        (
            "zlh-fleet-mgmt",
            "no connection out on the management network",
            "mc-survival (VMID 1000): net1 on the management bridge may open TCP 1-52 "
            "connections to 0.0.0.0/0, ::/0; a tenant answers zpack-api and the monitor there "
            "and calls out to nothing: drop all outbound on it.",
        ),
        (
            "zlh-fleet-lan",
            "nothing private: the LAN, the hosts, the other networks",
            "mc-survival (VMID 1000): net0 may open TCP 1-52 connections to 10.0.0.0/8, "
            "100.64.0.0/10, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, fc00::/7, "
            f"fe80::/10, {LOOSE}",
        ),
    ],
    ids=["management-drop-removed", "private-drop-removed"],
)
def test_a_group_that_lets_a_tenant_into_the_platform_is_refused(
    name: str, comment: str, expected: str
) -> None:
    resources = runtime_stack(fleet_group=True)
    rules = group(resources, name)
    rules[:] = [r for r in rules if r.get("comment") != comment]
    assert messages(resources)[0] == expected


def test_a_wider_accept_before_the_drop_is_refused() -> None:
    resources = runtime_stack(fleet_group=True)
    wide = {"type": "out", "action": "ACCEPT", "proto": "tcp", "dport": "22", "dest": "10.99.0.3"}
    group(resources, "zlh-fleet-lan").insert(0, wide)
    found = messages(resources)
    assert found[:2] == [
        f"mc-survival (VMID 1000): net0 may open TCP 22 connections to 10.99.0.3/32, {LOOSE}",
        f"dev-alice (VMID 1100): net0 may open TCP 22 connections to 10.99.0.3/32, {LOOSE}",
    ]


def test_a_fleet_vmid_under_another_role_tag_is_still_a_tenant() -> None:
    resources = runtime_stack(fleet_group=True)
    game = find(resources, "mc-survival")
    props(game)["tags"] = [t for t in props(game)["tags"] if not t.startswith("role-")] + [
        "role-core-infra"
    ]
    props(find(resources, "mc-survival-rules", FIREWALL_RULES))["rules"] = []
    assert messages(resources)[0] == f"mc-survival (VMID 1000): {ATTACH}"


def test_an_output_policy_it_cannot_read_is_a_violation() -> None:
    resources = runtime_stack(fleet_group=True)
    props(find(resources, "mc-survival-firewall", FIREWALL_OPTIONS))["outputPolicy"] = "SOMETIMES"
    assert check_tenant_egress(resources, CONFIG, "runtime").violations == [
        Violation(
            problem="output policy 'SOMETIMES' is not ACCEPT, DROP or REJECT, so where it may "
            "connect cannot be told",
            fix="set outputPolicy to ACCEPT, DROP or REJECT",
            urn=find(resources, "mc-survival").urn,
            subject="mc-survival (VMID 1000)",
        )
    ]
    assert messages(resources) == [
        "mc-survival (VMID 1000): output policy 'SOMETIMES' is not ACCEPT, DROP or REJECT, so "
        "where it may connect cannot be told; set outputPolicy to ACCEPT, DROP or REJECT."
    ]


def test_an_interface_inside_a_group_is_refused_as_proxmox_refuses_it() -> None:
    resources = runtime_stack(fleet_group=True)
    group(resources, "zlh-fleet-lan")[0]["iface"] = "net0"
    assert messages(resources)[0] == (
        "mc-survival (VMID 1000): security group 'zlh-fleet-lan': rule 0 names interface "
        "'net0', which Proxmox refuses inside a group; name the interface on the rule that "
        "references the group; correct it, so where it may connect can be told."
    )


def test_core_stacks_are_not_judged() -> None:
    assert messages(runtime_stack(), stack="core") == []
