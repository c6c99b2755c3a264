"""zlh-agent-port: who may reach zlh-agent, and the fleet's firewall."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from tests.policies.policy_fixtures import (
    API,
    core_stack,
    find,
    props,
    rule,
    runtime_builder,
    runtime_stack,
    unknown,
)
from zlh_infra.policies.agent import accepts_tcp_port, check_agent_port, covers_port
from zlh_infra.policies.config import AGENT, PolicyConfigError
from zlh_infra.policies.resources import (
    CLUSTER_FIREWALL,
    FIREWALL_OPTIONS,
    FIREWALL_RULES,
    Resource,
)

CONFIG = AGENT.parse("zlh-agent-port", None)


def rules_of(resources: list[Resource], guest: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = props(find(resources, f"{guest}-rules", FIREWALL_RULES))["rules"]
    return rules


# --- the pieces -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dport", "covered"),
    [
        ("18888", True),
        ("80,443,18888", True),
        ("18000:19000", True),
        (" 80 , 18888 ", True),
        ("18889", False),
        ("1:18887", False),
        ("http", False),
        ("", False),
    ],
)
def test_port_lists(dport: str, covered: bool) -> None:
    assert covers_port(dport, 18888) is covered


@pytest.mark.parametrize(
    ("changes", "accepts"),
    [
        ({}, True),
        ({"proto": None}, True),
        ({"proto": "6"}, True),
        ({"dport": None}, True),
        ({"type": None}, True),
        ({"action": "accept"}, True),
        ({"proto": "udp"}, False),
        ({"action": "DROP"}, False),
        ({"type": "out"}, False),
        ({"type": "group"}, False),
        ({"enabled": False}, False),
        ({"macro": "SSH", "dport": None, "proto": None}, False),
        ({"dport": "9100"}, False),
    ],
)
def test_which_rules_accept_the_agent_port(changes: dict[str, Any], accepts: bool) -> None:
    found = {**rule(18888, "10.0.0.1"), **changes}
    assert accepts_tcp_port({k: v for k, v in found.items() if v is not None}, 18888) is accepts


# --- the stacks -------------------------------------------------------------------


@pytest.mark.parametrize("stack", [core_stack, runtime_stack])
def test_platform_stacks_pass(stack: object) -> None:
    findings = check_agent_port(stack(), CONFIG)  # type: ignore[operator]
    assert findings.violations == []
    assert findings.unknowns == []


def test_an_agent_rule_from_another_source() -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival")[0]["source"] = "10.99.0.0/22"
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        "firewall rules mc-survival-rules of container 1000: rule 0 (zlh-agent from "
        "zpack-api) accepts TCP 18888 from source 10.99.0.0/22; only zpack-api's management "
        "address 10.99.0.10 may reach zlh-agent: set its source to 10.99.0.10/32, or narrow "
        "its proto and dport so they do not cover 18888."
    ]
    assert findings.violations[0].urn == find(resources, "mc-survival-rules", FIREWALL_RULES).urn


def test_an_agent_rule_with_two_sources() -> None:
    resources = runtime_stack()
    rules_of(resources, "dev-alice")[0]["source"] = f"{API},10.99.0.11"
    assert check_agent_port(resources, CONFIG).messages == [
        "firewall rules dev-alice-rules of container 1100: rule 0 (zlh-agent from zpack-api) "
        "accepts TCP 18888 from source 10.99.0.10,10.99.0.11; only zpack-api's management "
        "address 10.99.0.10 may reach zlh-agent: set its source to 10.99.0.10/32, or narrow "
        "its proto and dport so they do not cover 18888."
    ]


def test_the_bare_api_address_is_enough() -> None:
    resources = runtime_stack()
    rules_of(resources, "dev-alice")[0]["source"] = API
    assert check_agent_port(resources, CONFIG).violations == []


def test_a_catch_all_rule_from_the_monitor() -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival")[1] = {
        "type": "in",
        "action": "ACCEPT",
        "source": "10.99.0.20/32",
        "enabled": True,
    }
    assert check_agent_port(resources, CONFIG).messages == [
        "firewall rules mc-survival-rules of container 1000: rule 1 accepts TCP 18888 from "
        "source 10.99.0.20/32; only zpack-api's management address 10.99.0.10 may reach "
        "zlh-agent: set its source to 10.99.0.10/32, or narrow its proto and dport so they do "
        "not cover 18888."
    ]


def test_an_open_port_range_on_a_service_guest() -> None:
    resources = runtime_stack()
    rules_of(resources, "zlh-velocity").append(
        rule(0, None, iface="net0") | {"dport": "10000:20000"}
    )
    assert check_agent_port(resources, CONFIG).messages == [
        "firewall rules zlh-velocity-rules of container 312: rule 1 accepts TCP 18888 from "
        "any source; only zpack-api's management address 10.99.0.10 may reach zlh-agent: set "
        "its source to 10.99.0.10/32, or narrow its proto and dport so they do not cover "
        "18888."
    ]


def test_datacenter_rules_and_security_groups_count_too() -> None:
    builder = runtime_builder()
    builder.add(FIREWALL_RULES, "datacenter-rules", {"rules": [rule(18888, "10.20.0.0/22")]})
    builder.add(
        "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy",
        "agents",
        {"name": "agents", "rules": [rule(18888, None)]},
    )
    assert check_agent_port(builder.resources, CONFIG).messages == [
        "datacenter firewall rules datacenter-rules: rule 0 accepts TCP 18888 from source "
        "10.20.0.0/22; only zpack-api's management address 10.99.0.10 may reach zlh-agent: "
        "set its source to 10.99.0.10/32, or narrow its proto and dport so they do not cover "
        "18888.",
        "security group agents: rule 0 accepts TCP 18888 from any source; only zpack-api's "
        "management address 10.99.0.10 may reach zlh-agent: set its source to 10.99.0.10/32, "
        "or narrow its proto and dport so they do not cover 18888.",
    ]


def test_a_fleet_nic_without_firewall() -> None:
    resources = runtime_stack()
    guest = find(resources, "mc-survival")
    props(guest)["networkInterfaces"][1]["firewall"] = False
    del props(guest)["networkInterfaces"][0]["firewall"]
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        "mc-survival (VMID 1000): its NIC net0 on vmbr1 has firewall=false, so its firewall "
        "rules do not apply there; set firewall=true on it.",
        "mc-survival (VMID 1000): its management NIC net1 on vmbr2 has firewall=false, so its "
        "firewall rules do not apply there; set firewall=true on it.",
    ]
    assert {v.urn for v in findings.violations} == {guest.urn}


def test_a_fleet_guest_without_management_nic() -> None:
    resources = runtime_stack()
    props(find(resources, "dev-alice"))["networkInterfaces"].pop()
    assert check_agent_port(resources, CONFIG).messages == [
        "dev-alice (VMID 1100) has no NIC on the management bridge vmbr2, where zlh-agent "
        "listens and zpack-api reaches it; give it a NIC on vmbr2 with firewall=true."
    ]


def test_a_fleet_guest_without_firewall_options() -> None:
    resources = [r for r in runtime_stack() if r.name != "mc-survival-firewall"]
    assert check_agent_port(resources, CONFIG).messages == [
        "mc-survival (VMID 1000) has no firewall options, so its firewall stays off (Proxmox's "
        "default) and zlh-agent is open to the whole management network; add firewall "
        "options for it with enabled=true and input_policy DROP."
    ]


def test_fleet_firewall_options_disabled_or_accepting() -> None:
    resources = runtime_stack()
    options = find(resources, "dev-alice-firewall", FIREWALL_OPTIONS)
    props(options)["enabled"] = False
    props(options)["inputPolicy"] = "ACCEPT"
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        "dev-alice (VMID 1100): firewall options dev-alice-firewall leave its firewall "
        "disabled; set enabled=true.",
        "dev-alice (VMID 1100): firewall options dev-alice-firewall set input_policy ACCEPT; "
        "set it to DROP so only the rules' ACCEPTs reach the container.",
    ]
    assert {v.urn for v in findings.violations} == {options.urn}


def test_the_providers_default_input_policy_is_drop() -> None:
    resources = runtime_stack()
    del props(find(resources, "dev-alice-firewall", FIREWALL_OPTIONS))["inputPolicy"]
    assert check_agent_port(resources, CONFIG).violations == []


def test_a_fleet_guest_is_known_by_its_vmid_when_untagged() -> None:
    resources = runtime_stack()
    guest = find(resources, "mc-survival")
    props(guest)["tags"] = ["zlh"]
    props(guest)["networkInterfaces"].pop()
    assert len(check_agent_port(resources, CONFIG).violations) == 1


def test_no_datacenter_firewall() -> None:
    resources = [r for r in runtime_stack() if r.type != CLUSTER_FIREWALL]
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        "the stack has 2 game/dev container(s) but no datacenter firewall resource; Proxmox "
        "applies guest firewall rules only while the datacenter firewall is on: enable it (or "
        "set policy config requireClusterFirewall to false if it is managed outside this "
        "stack)."
    ]
    assert findings.violations[0].urn is None
    relaxed = AGENT.parse("zlh-agent-port", {"requireClusterFirewall": False})
    assert check_agent_port(resources, relaxed).violations == []


def test_a_disabled_datacenter_firewall() -> None:
    resources = runtime_stack()
    firewall = find(resources, "runtime-datacenter-firewall", CLUSTER_FIREWALL)
    props(firewall)["enabled"] = False
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        "the stack has 2 game/dev container(s) but its datacenter firewall "
        "runtime-datacenter-firewall is not enabled; Proxmox applies guest firewall rules "
        "only while the datacenter firewall is on: enable it (or set policy config "
        "requireClusterFirewall to false if it is managed outside this stack)."
    ]
    assert findings.violations[0].urn == firewall.urn


def test_config_moves_the_api_and_the_port() -> None:
    config = AGENT.parse("zlh-agent-port", {"apiAddress": "10.99.1.10", "agentPort": 9100})
    findings = check_agent_port(runtime_stack(), config)
    # 9100 is the monitor's port in the fixtures: now only the API may use it.
    assert len(findings.violations) == 2
    assert findings.messages[0].startswith(
        "firewall rules mc-survival-rules of container 1000: rule 1 (metrics scrape from "
        "zlh-monitor) accepts TCP 9100 from source 10.99.0.20/32; only zpack-api's management "
        "address 10.99.1.10 may reach zlh-agent"
    )


def test_a_bad_api_address_in_config() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        AGENT.parse("zlh-agent-port", {"apiAddress": "10.99.0.0/22"})
    assert caught.value.problems == ["apiAddress must be one IPv4 address, not '10.99.0.0/22'"]


def test_an_unknown_source_skips_only_that_rule() -> None:
    resources = runtime_stack()
    rules = find(resources, "mc-survival-rules", FIREWALL_RULES)
    entries = rules_of(resources, "mc-survival")
    entries[0]["source"] = UNKNOWN_STRING_VALUE
    entries[1]["source"] = "10.99.0.0/22"
    entries[1]["dport"] = "18888"
    resources[resources.index(rules)] = unknown(rules)
    findings = check_agent_port(resources, CONFIG)
    assert [v.message.split(";")[0] for v in findings.violations] == [
        "firewall rules mc-survival-rules of container 1000: rule 1 (metrics scrape from "
        "zlh-monitor) accepts TCP 18888 from source 10.99.0.0/22"
    ]
    assert [u.message for u in findings.unknowns] == [
        "string value at .rules.0.source can't be known during preview"
    ]


def test_another_port_open_on_the_management_nic_is_proven_open() -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival").append(rule(22, "10.99.0.0/22", iface="net1"))
    assert check_agent_port(resources, CONFIG).messages == [
        "mc-survival (VMID 1000): its management NIC net1 is reachable on TCP 22 from "
        "10.99.0.0/22; there only zpack-api (10.99.0.10, TCP 18888) and zlh-monitor "
        "(10.99.0.20, TCP 9100) may connect: remove or narrow the rule, alias or IP set that "
        "opens it."
    ]


def test_an_accepting_input_policy_behind_the_rules_is_proven_open() -> None:
    resources = runtime_stack()
    rules_of(resources, "dev-alice").append(
        {"type": "in", "action": "DROP", "proto": "udp", "iface": "net1", "enabled": True}
    )
    rules_of(resources, "dev-alice").append(
        {"type": "in", "action": "ACCEPT", "proto": "udp", "dport": "53", "iface": "net1"}
    )
    # The DROP comes first, so the later ACCEPT opens nothing: no finding.
    assert check_agent_port(resources, CONFIG).messages == []
