"""zlh-host-firewall: no network a guest is on reaches a node's API, SSH or consoles."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policies.policy_fixtures import StackBuilder, core_builder, host_rule
from zlh_infra.policies.config import HOST_FIREWALL
from zlh_infra.policies.host import check_host_firewall
from zlh_infra.policies.resources import Resource, Violation, is_guest

CONFIG = HOST_FIREWALL.parse("zlh-host-firewall", None)
OPERATORS = "192.0.2.0/24"


def with_host_firewall(builder: StackBuilder | None = None, **change: Any) -> list[Resource]:
    builder = builder or core_builder(host_firewall=False)
    builder.host_firewall(**change)
    return builder.resources


def messages(resources: list[Resource]) -> list[str]:
    return check_host_firewall(resources, CONFIG, "core").messages


def test_the_programs_host_firewall_passes() -> None:
    assert messages(with_host_firewall()) == []


def test_operators_from_a_network_of_their_own_and_more_rules_pass() -> None:
    resources = with_host_firewall(
        core_builder(host_firewall=False),
        admins=("192.0.2.0/24", "198.51.100.7"),
        rules=(
            host_rule(8006, "+management"),
            {"type": "in", "action": "DROP", "proto": "tcp", "dport": "22", "iface": "vmbr2"},
            host_rule(22, "+management"),
        ),
    )
    assert messages(resources) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"admins": ("10.99.0.0/24",)},
            [
                f"node zlh-core: {port} is open to 10.99.0.0/24, where guests (tenants "
                "included) are; admit only the operators' own networks."
                for port in (
                    "the API (8006)",
                    "SSH (22)",
                    "SPICE (3128)",
                    "VNC (5900-5999)",
                    "migration (60000-60050)",
                )
            ],
        ),
        (
            {"rules": (host_rule(22, "10.20.0.0/22", iface="vmbr1"),)},
            [
                "node zlh-core: SSH (22) is open to 10.20.0.0/22, where guests (tenants "
                "included) are; admit only the operators' own networks."
            ],
        ),
        (
            {"rules": ({"type": "in", "action": "ACCEPT", "macro": "SSH"},)},
            [
                f"node zlh-core: {port} is open to every address; admit only the operators' "
                "networks (the management IP set, proxmox.adminSources)."
                for port in (
                    "the API (8006)",
                    "SSH (22)",
                    "SPICE (3128)",
                    "VNC (5900-5999)",
                    "migration (60000-60050)",
                )
            ],
        ),
    ],
    ids=["admins-on-the-management-network", "ssh-from-the-runtime-lan", "macro-from-anywhere"],
)
def test_a_guest_network_reaching_the_node_is_refused(
    change: dict[str, Any], expected: list[str]
) -> None:
    assert messages(with_host_firewall(**change)) == expected


def test_without_local_network_proxmox_admits_a_network_it_detects() -> None:
    resources = with_host_firewall(local_network=None)
    found = messages(resources)
    assert found[0] == (
        "node zlh-core: the API (8006) is open to every address; admit only the operators' "
        "networks (the management IP set, proxmox.adminSources)."
    )
    # The stack's own finding: no one resource opens it.
    assert check_host_firewall(resources, CONFIG, "core").violations[0] == Violation(
        problem="the API (8006) is open to every address",
        fix="admit only the operators' networks (the management IP set, proxmox.adminSources)",
        subject="node zlh-core",
    )


def test_a_node_whose_firewall_is_off_or_unknown_is_refused() -> None:
    assert messages(with_host_firewall(node_enabled=False))[0] == (
        "node-firewall (proxmoxve:node/firewallLegacy:FirewallLegacy) disables node "
        "zlh-core's firewall: set enabled: true."
    )
    assert messages(with_host_firewall(node_enabled=None))[0] == (
        "node zlh-core has no node firewall resource, so its firewall may be off: register "
        "proxmoxve.node.FirewallLegacy with enabled: true."
    )


def test_a_node_is_judged_even_where_the_stack_places_no_guest() -> None:
    """A stack that only switches a node's firewall (or holds its rules) is judged there too."""
    resources = with_host_firewall(node_enabled=False)
    without_guests = [r for r in resources if not is_guest(r)]
    assert len(without_guests) < len(resources)
    assert messages(without_guests) == [
        "node-firewall (proxmoxve:node/firewallLegacy:FirewallLegacy) disables node "
        "zlh-core's firewall: set enabled: true."
    ]
    assert messages([r for r in with_host_firewall() if not is_guest(r)]) == []


def test_rules_whose_owner_cannot_be_read_get_their_node_judged_and_reported() -> None:
    builder = core_builder(host_firewall=False)
    builder.host_firewall()
    builder.add(
        "proxmoxve:firewall/rulesLegacy:RulesLegacy",
        "odd-rules",
        {"nodeName": "zlh-core", "vmId": "one", "rules": [host_rule(22, "+management")]},
        parent=builder.root.urn,
        managed=True,
    )
    found = messages([r for r in builder.resources if not is_guest(r)])
    assert len(found) == 1
    assert found[0].startswith("odd-rules (proxmoxve:firewall/rulesLegacy:RulesLegacy): ")
    assert found[0].endswith("correct the value, so the node's exposure can be told.")


def test_a_datacenter_that_accepts_is_refused() -> None:
    builder = core_builder(host_firewall=False)
    builder.add(
        "proxmoxve:cluster/firewallLegacy:FirewallLegacy",
        "dc",
        {"enabled": True, "inputPolicy": "ACCEPT"},
        parent=builder.root.urn,
        managed=True,
    )
    found = messages(with_host_firewall(builder))
    assert found[0] == (
        "dc (proxmoxve:cluster/firewallLegacy:FirewallLegacy) has input policy 'ACCEPT': the "
        "node accepts what no rule names; set inputPolicy: DROP."
    )
    assert "node zlh-core: the API (8006) is open to every address" in found[1]


def test_an_unreadable_host_rule_is_a_violation_not_a_pass() -> None:
    broken = host_rule(8006, "+management", dport="80OO")
    found = messages(with_host_firewall(rules=(broken,)))
    assert found == [
        "host-rules (proxmoxve:firewall/rulesLegacy:RulesLegacy): dport '80OO' is not a port "
        "number (0-65535), a port range (low:high) or a comma-separated list of them; correct "
        "the value, so the node's exposure can be told."
    ]
