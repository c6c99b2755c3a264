"""zlh-agent-port: who may reach zlh-agent, and the fleet's firewall."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from tests.policies import policy_fixtures as fixtures
from tests.policies.policy_fixtures import (
    API,
    FLEET_RULES,
    MONITOR,
    StackBuilder,
    find,
    props,
    rule,
    unknown,
)
from zlh_infra.platform.reachability import FirewallReadError
from zlh_infra.policies.agent import accepts_tcp_port, check_agent_port
from zlh_infra.policies.config import AGENT, PolicyConfigError
from zlh_infra.policies.resources import (
    CLONED_VM,
    CLONED_VM_LEGACY,
    CLUSTER_FIREWALL,
    CONTAINER,
    FIREWALL_ALIAS,
    FIREWALL_IPSET,
    FIREWALL_OPTIONS,
    FIREWALL_RULES,
    SECURITY_GROUP,
    VM2,
    VM_FRAMEWORK,
    Resource,
    Violation,
)

CONFIG = AGENT.parse("zlh-agent-port", None)

#: The management addresses the shipped stacks give the fixtures' guests (net1).
MANAGEMENT = {"zpack-api": API, "zlh-monitor": MONITOR, "mc-survival": "10.99.1.0"}
MANAGEMENT["dev-alice"] = "10.99.1.100"


def as_the_program_writes(resources: list[Resource]) -> list[Resource]:
    """Filter options and management addresses as ``layers/guest.py`` writes them."""
    for resource in resources:
        values = props(resource)
        if resource.type == FIREWALL_OPTIONS:
            # Routers (VMs) forward others' traffic: only their MAC is filtered.
            values.setdefault("ipfilter", "containerId" in values)
            values.setdefault("macfilter", True)
            values.setdefault("dhcp", False)
        elif resource.type == CONTAINER and resource.name in MANAGEMENT:
            configs: list[dict[str, Any]] = [{} for _ in values["networkInterfaces"]]
            configs[1] = {"ipv4": {"address": f"{MANAGEMENT[resource.name]}/22"}}
            values.setdefault("initialization", {"ipConfigs": configs})
    return resources


def core_stack() -> list[Resource]:
    return as_the_program_writes(fixtures.core_stack())


def runtime_stack() -> list[Resource]:
    return as_the_program_writes(fixtures.runtime_stack())


def core_builder() -> StackBuilder:
    builder = fixtures.core_builder()
    as_the_program_writes(builder.resources)
    return builder


def runtime_builder() -> StackBuilder:
    builder = fixtures.runtime_builder()
    as_the_program_writes(builder.resources)
    return builder


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
        ("", True),
        (18888.0, True),
    ],
)
def test_port_lists(dport: object, covered: bool) -> None:
    assert accepts_tcp_port({**rule(18888, "10.0.0.1"), "dport": dport}, 18888) is covered


@pytest.mark.parametrize("dport", ["http", "abc", "70000", "1-", "1:", "19000:18000", "80,,443"])
def test_port_lists_the_reader_refuses(dport: str) -> None:
    with pytest.raises(FirewallReadError, match=f"dport '{dport}' is not a port number"):
        accepts_tcp_port({**rule(18888, "10.0.0.1"), "dport": dport}, 18888)


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
    assert findings.violations == [
        Violation(
            problem="rule 0 (zlh-agent from zpack-api) accepts TCP 18888 from source "
            "10.99.0.0/22; only zpack-api's management address 10.99.0.10 may reach zlh-agent",
            fix="set its source to 10.99.0.10/32, or narrow its proto and dport so they do not "
            "cover 18888",
            urn=find(resources, "mc-survival-rules", FIREWALL_RULES).urn,
            subject="firewall rules mc-survival-rules of container 1000",
            joint=": ",
        )
    ]


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
    # 9100 is the monitor's port in the fixtures (the node's and the fleet's rules): now
    # only the API may use it.
    assert [m.split(";")[0] for m in findings.messages] == [
        "firewall rules host-rules of node zlh-runtime: rule 2 accepts TCP 9100 from source "
        "10.99.0.20/32",
        "firewall rules mc-survival-rules of container 1000: rule 1 (metrics scrape from "
        "zlh-monitor) accepts TCP 9100 from source 10.99.0.20/32",
        "firewall rules dev-alice-rules of container 1100: rule 1 (metrics scrape from "
        "zlh-monitor) accepts TCP 9100 from source 10.99.0.20/32",
    ]
    assert "only zpack-api's management address 10.99.1.10 may reach" in findings.messages[1]


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


# --- what every check must read alike -----------------------------------------------------

OPEN_FIX = (
    "; there only zpack-api (10.99.0.10, TCP 18888) and zlh-monitor (10.99.0.20, TCP 9100) "
    "may connect: remove or narrow the rule, alias or IP set that opens it."
)
CORRECT = "; correct the value, so the checks can tell what it lets in."


def reachable(guest: str, what: str, sources: str, iface: str = "net1") -> str:
    return f"{guest}: its management NIC {iface} is reachable on {what} from {sources}{OPEN_FIX}"


def messages_of(resources: list[Resource], config: Any = CONFIG) -> list[str]:
    findings = check_agent_port(resources, config)
    assert findings.unknowns == []
    return findings.messages


def add_datacenter_firewall(builder: Any, name: str, *, enabled: bool) -> Resource:
    added: Resource = builder.add(
        CLUSTER_FIREWALL,
        name,
        {"enabled": enabled, "inputPolicy": "DROP"},
        parent=builder.root.urn,
        managed=True,
    )
    return added


# 1. One datacenter firewall resource per host, and none of them turning it off.


def test_a_second_datacenter_firewall_is_ambiguous() -> None:
    builder = runtime_builder()
    second = add_datacenter_firewall(builder, "second-firewall", enabled=True)
    findings = check_agent_port(builder.resources, CONFIG)
    assert findings.messages == [
        "datacenter firewall second-firewall is a second datacenter firewall resource (besides "
        "runtime-datacenter-firewall); a host has one datacenter firewall setting, which the "
        "two would overwrite in turn: remove it."
    ]
    assert findings.violations[0].urn == second.urn


@pytest.mark.parametrize("disabled_first", [False, True])
def test_a_second_datacenter_firewall_that_turns_it_off(disabled_first: bool) -> None:
    builder = runtime_builder()
    first = find(builder.resources, "runtime-datacenter-firewall", CLUSTER_FIREWALL)
    second = add_datacenter_firewall(builder, "second-firewall", enabled=disabled_first)
    props(first)["enabled"] = not disabled_first
    # Nothing is filtered: the evaluator is not asked about the open port.
    rules_of(builder.resources, "mc-survival").append(rule(22, None))
    off = first if disabled_first else second
    findings = check_agent_port(builder.resources, CONFIG)
    assert findings.messages == [
        "datacenter firewall second-firewall is a second datacenter firewall resource (besides "
        "runtime-datacenter-firewall); a host has one datacenter firewall setting, which the "
        "two would overwrite in turn: remove it.",
        f"the stack has 2 game/dev container(s) but its datacenter firewall {off.name} is not "
        "enabled; Proxmox applies guest firewall rules only while the datacenter firewall is "
        "on: enable it (or set policy config requireClusterFirewall to false if it is managed "
        "outside this stack).",
    ]
    assert [v.urn for v in findings.violations] == [second.urn, off.urn]


def test_two_datacenter_firewalls_are_ambiguous_even_when_managed_outside() -> None:
    builder = runtime_builder()
    add_datacenter_firewall(builder, "second-firewall", enabled=False)
    relaxed = AGENT.parse("zlh-agent-port", {"requireClusterFirewall": False})
    assert messages_of(builder.resources, relaxed) == [
        "datacenter firewall second-firewall is a second datacenter firewall resource (besides "
        "runtime-datacenter-firewall); a host has one datacenter firewall setting, which the "
        "two would overwrite in turn: remove it."
    ]


# 2. Guests of every type the provider has.


def add_fleet_vm(
    builder: Any,
    token: str,
    *,
    rules: Any = FLEET_RULES,
    network: Any = None,
    vmid: object = "1002",
) -> Resource:
    """A game VM of a framework/clone type: VMID in ``resourceId``, NICs keyed by slot."""
    chain = "zlh:runtime:Runtime$zlh:guest:VmGuest"
    component = builder.add(chain, "mc-clone", {}, parent=builder.layer("runtime").urn)
    guest_props: dict[str, Any] = {
        "resourceId": vmid,
        "nodeName": builder.node,
        "name": "mc-clone",
        "tags": ["layer-runtime", "role-game", "stack-runtime", "svc-game", "zlh"],
        "clone": {"sourceVmId": 200.0},
    }
    if network is not False:
        guest_props["network"] = network or {
            "net0": {"bridge": "vmbr1", "firewall": True},
            "net1": {"bridge": "vmbr2", "firewall": True},
        }
    guest: Resource = builder.add(
        f"{chain}${token}", "mc-clone", guest_props, parent=component.urn, managed=True
    )
    owner = {"vmId": 1002.0, "nodeName": builder.node}
    builder.add(
        f"{chain}${FIREWALL_OPTIONS}",
        "mc-clone-firewall",
        {**owner, "enabled": True, "inputPolicy": "DROP", "ipfilter": True, "macfilter": True},
        parent=component.urn,
    )
    builder.add(
        f"{chain}${FIREWALL_RULES}",
        "mc-clone-rules",
        {**owner, "rules": [dict(entry) for entry in rules]},
        parent=component.urn,
    )
    return guest


@pytest.mark.parametrize("token", [CLONED_VM, CLONED_VM_LEGACY])
def test_a_cloned_fleet_vm_is_judged(token: str) -> None:
    builder = runtime_builder()
    add_fleet_vm(builder, token)
    assert messages_of(builder.resources) == []
    builder = runtime_builder()
    add_fleet_vm(builder, token, rules=[*FLEET_RULES, rule(22, "10.99.0.0/22")])
    assert messages_of(builder.resources) == [
        reachable("mc-clone (VMID 1002)", "TCP 22", "10.99.0.0/22")
    ]
    builder = runtime_builder()
    add_fleet_vm(builder, token, network={"net1": {"bridge": "vmbr2"}})
    assert messages_of(builder.resources) == [
        "mc-clone (VMID 1002): its management NIC net1 on vmbr2 has firewall=false, so its "
        "firewall rules do not apply there; set firewall=true on it."
    ]


@pytest.mark.parametrize("token", [VM_FRAMEWORK, VM2])
def test_a_framework_fleet_vm_is_judged(token: str) -> None:
    builder = runtime_builder()
    add_fleet_vm(builder, token, network=False)
    assert messages_of(builder.resources) == [
        "mc-clone (VMID 1002) has no NIC on the management bridge vmbr2, where zlh-agent "
        "listens and zpack-api reaches it; give it a NIC on vmbr2 with firewall=true."
    ]


# 3. Protocols: numbers read as names, every other protocol judged conservatively.


@pytest.mark.parametrize(
    ("added", "found"),
    [
        (rule(22, None, proto="6"), ("TCP 22", "0.0.0.0/0, ::/0")),
        (rule(53, "10.99.0.0/22", proto="17"), ("UDP 53", "10.99.0.0/22")),
        (
            {"type": "in", "action": "ACCEPT", "proto": "icmp", "iface": "net1", "source": API},
            ("protocols other than TCP and UDP", "10.99.0.10/32"),
        ),
        (rule(1723, None, proto="47"), ("protocols other than TCP and UDP", "0.0.0.0/0, ::/0")),
    ],
)
def test_other_protocol_spellings_are_proven_open(
    added: dict[str, Any], found: tuple[str, str]
) -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival").append(added)
    assert messages_of(resources) == [reachable("mc-survival (VMID 1000)", *found)]


def test_a_protocol_that_may_stand_for_all_opens_everything_it_covers() -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival").append(rule(9100, "10.99.0.20/32", proto="all"))
    assert messages_of(resources) == [
        reachable("mc-survival (VMID 1000)", "UDP 9100", "10.99.0.20/32"),
        reachable("mc-survival (VMID 1000)", "protocols other than TCP and UDP", "10.99.0.20/32"),
    ]
    # Without a port it may accept the agent's port too.
    resources = runtime_stack()
    rules_of(resources, "dev-alice").append(rule(0, "10.99.0.20/32", proto="all") | {"dport": ""})
    assert messages_of(resources) == [
        "firewall rules dev-alice-rules of container 1100: rule 2 accepts TCP 18888 from source "
        "10.99.0.20/32; only zpack-api's management address 10.99.0.10 may reach zlh-agent: set "
        "its source to 10.99.0.10/32, or narrow its proto and dport so they do not cover 18888."
    ]


def test_protocol_spellings_that_keep_the_fleet_compliant() -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival")[0]["proto"] = "6"
    rules_of(resources, "mc-survival")[1]["proto"] = "TCP"
    rules_of(resources, "mc-survival").insert(0, rule(0, None, proto="icmp") | {"action": "DROP"})
    rules_of(resources, "mc-survival").append(rule(0, None, proto="icmp", iface="net0"))
    assert messages_of(resources) == []


def test_an_unknown_protocol_is_a_violation() -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival").append(rule(22, None, proto="tcpp"))
    assert messages_of(resources) == [
        "firewall rules mc-survival-rules of container 1000: rule 2 cannot be judged: proto "
        f"'tcpp' is not an IP protocol name or number (0-255){CORRECT}"
    ]


# 4. VMIDs as strings are the same guest.


def test_string_vmids_are_the_same_guest() -> None:
    resources = runtime_stack()
    props(find(resources, "mc-survival"))["vmId"] = "1000"
    props(find(resources, "mc-survival-firewall", FIREWALL_OPTIONS))["containerId"] = "1000"
    props(find(resources, "mc-survival-rules", FIREWALL_RULES))["containerId"] = " 1000 "
    assert messages_of(resources) == []
    rules_of(resources, "mc-survival").append(rule(22, None))
    assert messages_of(resources) == [
        reachable("mc-survival (VMID 1000)", "TCP 22", "0.0.0.0/0, ::/0")
    ]


@pytest.mark.parametrize("where", ["guest", "rules"])
def test_a_string_vmid_does_not_hide_an_open_port(where: str) -> None:
    resources = runtime_stack()
    if where == "guest":
        props(find(resources, "mc-survival"))["vmId"] = "1000"
    else:
        props(find(resources, "mc-survival-rules", FIREWALL_RULES))["containerId"] = "1000"
    rules_of(resources, "mc-survival").append(rule(22, None))
    assert messages_of(resources) == [
        reachable("mc-survival (VMID 1000)", "TCP 22", "0.0.0.0/0, ::/0")
    ]


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        (
            {"containerId": "abc"},
            "firewall rules mc-survival-rules of container 'abc': containerId 'abc' is not a "
            "VMID; set it to the VMID of the guest it belongs to.",
        ),
        (
            {"containerId": 1000.0, "vmId": 1100.0},
            "firewall rules mc-survival-rules of container 1000: containerId 1000 and vmId 1100 "
            "name two guests; set it to the VMID of the guest it belongs to.",
        ),
    ],
)
def test_a_firewall_owner_that_is_not_a_vmid(owner: dict[str, Any], message: str) -> None:
    resources = runtime_stack()
    entry = find(resources, "mc-survival-rules", FIREWALL_RULES)
    props(entry).update(owner)
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [message]
    assert findings.violations[0].urn == entry.urn


# 5. Every NIC on the management bridge.


def test_a_second_management_nic_is_proven_too() -> None:
    resources = runtime_stack()
    nics = props(find(resources, "mc-survival"))["networkInterfaces"]
    nics.append({"name": "eth2", "bridge": "vmbr2", "firewall": True})
    assert messages_of(resources) == []
    rules_of(resources, "mc-survival").append(rule(22, None, iface="net2"))
    assert messages_of(resources) == [
        reachable("mc-survival (VMID 1000)", "TCP 22", "0.0.0.0/0, ::/0", iface="net2")
    ]


def test_a_rule_without_iface_is_judged_on_each_management_nic() -> None:
    resources = runtime_stack()
    nics = props(find(resources, "dev-alice"))["networkInterfaces"]
    nics.append({"name": "eth2", "bridge": "vmbr2", "firewall": True})
    rules_of(resources, "dev-alice").append(rule(22, "10.99.0.0/22") | {"iface": None})
    del rules_of(resources, "dev-alice")[-1]["iface"]
    assert messages_of(resources) == [
        reachable("dev-alice (VMID 1100)", "TCP 22", "10.99.0.0/22", iface="net1"),
        reachable("dev-alice (VMID 1100)", "TCP 22", "10.99.0.0/22", iface="net2"),
    ]


# 6. IPv6 sources, aliases and IP sets.


@pytest.mark.parametrize(
    ("source", "sources"),
    [
        ("2001:db8::20", "10.99.0.20/32, 2001:db8::20/128"),
        ("fd00::/8", "10.99.0.20/32, fd00::/8"),
    ],
)
def test_an_ipv6_source_is_evaluated(source: str, sources: str) -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival").append(rule(9100, source))
    assert messages_of(resources) == [reachable("mc-survival (VMID 1000)", "TCP 9100", sources)]


def test_ipv6_in_aliases_and_ip_sets_is_evaluated() -> None:
    builder = runtime_builder()
    builder.add(FIREWALL_ALIAS, "monitor6", {"name": "monitor6", "cidr": "fd00::20"})
    builder.add(
        FIREWALL_IPSET,
        "monitors",
        {"name": "monitors", "cidrs": [{"name": "10.99.0.20"}, {"name": "monitor6"}]},
    )
    rules_of(builder.resources, "mc-survival")[1]["source"] = "+monitors"
    assert messages_of(builder.resources) == [
        reachable("mc-survival (VMID 1000)", "TCP 9100", "10.99.0.20/32, fd00::20/128")
    ]


def test_an_agent_rule_from_an_ipv6_source() -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival")[0]["source"] = "fd00::10"
    assert messages_of(resources) == [
        "firewall rules mc-survival-rules of container 1000: rule 0 (zlh-agent from zpack-api) "
        "accepts TCP 18888 from source fd00::10; only zpack-api's management address 10.99.0.10 "
        "may reach zlh-agent: set its source to 10.99.0.10/32, or narrow its proto and dport so "
        "they do not cover 18888."
    ]


def test_ipv6_rules_that_keep_the_fleet_compliant() -> None:
    resources = runtime_stack()
    entries = rules_of(resources, "mc-survival")
    entries.insert(0, rule(18888, "fd00::/8") | {"action": "DROP"})
    entries.append(rule(25565, "::/0", iface="net0"))
    assert messages_of(resources) == []


# 7. A value the reader does not understand fails its resource, by name and value.


@pytest.mark.parametrize("dport", ["abc", "70000", "1-", "1:"])
def test_a_malformed_port_fails_its_rule(dport: str) -> None:
    resources = runtime_stack()
    rules_of(resources, "mc-survival")[0]["dport"] = dport
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        "firewall rules mc-survival-rules of container 1000: rule 0 (zlh-agent from zpack-api) "
        f"cannot be judged: dport '{dport}' is not a port number (0-65535), a port range "
        f"(low:high) or a comma-separated list of them{CORRECT}"
    ]
    assert findings.violations[0].urn == find(resources, "mc-survival-rules", FIREWALL_RULES).urn


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"source": "10.0.0.0/33"}, "source '10.0.0.0/33' is not an IP address, a network, a "
         "range (first-last), an alias or an IP set (+name)"),
        ({"action": "ALLOW"}, "action 'ALLOW' is not ACCEPT, DROP or REJECT"),
        ({"type": "inbound"}, "type 'inbound' is not in, out, forward or group"),
        ({"enabled": False, "sport": "x"}, "sport 'x' is not a port number (0-65535), a port "
         "range (low:high) or a comma-separated list of them"),
    ],
)  # fmt: skip
def test_a_malformed_value_fails_its_rule(changes: dict[str, Any], what: str) -> None:
    resources = runtime_stack()
    rules_of(resources, "dev-alice")[1].update(changes)
    assert messages_of(resources) == [
        "firewall rules dev-alice-rules of container 1100: rule 1 (metrics scrape from "
        f"zlh-monitor) cannot be judged: {what}{CORRECT}"
    ]


def test_rules_that_are_not_rules() -> None:
    resources = runtime_stack()
    rules_of(resources, "dev-alice").append("ACCEPT tcp 22")  # type: ignore[arg-type]
    props(find(resources, "mc-survival-rules", FIREWALL_RULES))["rules"] = "ACCEPT"
    assert messages_of(resources) == [
        f"firewall rules mc-survival-rules of container 1000: its rules 'ACCEPT' are not a list "
        f"of rules{CORRECT}",
        f"firewall rules dev-alice-rules of container 1100: rule 2 ('ACCEPT tcp 22') is not a "
        f"rule{CORRECT}",
    ]


def test_a_malformed_datacenter_name_fails_once() -> None:
    builder = runtime_builder()
    alias = builder.add(FIREWALL_ALIAS, "monitor", {"name": "monitor", "cidr": "10.99.0.20/33"})
    ipset = builder.add(
        FIREWALL_IPSET, "apis", {"name": "apis", "cidrs": [{"name": API}, {"name": "10.99.0.300"}]}
    )
    rules_of(builder.resources, "mc-survival")[1]["source"] = "monitor"
    rules_of(builder.resources, "dev-alice").insert(0, rule(22, "+apis"))
    findings = check_agent_port(builder.resources, CONFIG)
    # The guests that name them are not reported again for the same value.
    assert findings.messages == [
        f"datacenter firewall alias monitor: cidr '10.99.0.20/33' is not an IP address or "
        f"network{CORRECT}",
        f"datacenter firewall IP set apis: entry '10.99.0.300' is not an IP address, a network "
        f"or an alias{CORRECT}",
    ]
    assert [v.urn for v in findings.violations] == [alias.urn, ipset.urn]


def test_a_malformed_security_group_rule_fails_the_group() -> None:
    builder = runtime_builder()
    builder.add(SECURITY_GROUP, "agents", {"name": "agents", "rules": [rule(18888, API, iface="")]})
    props(builder.resources[-1])["rules"][0]["dport"] = "18888:"
    rules_of(builder.resources, "mc-survival").insert(
        0, {"securityGroup": "agents", "iface": "net1"}
    )
    assert messages_of(builder.resources) == [
        "security group agents: rule 0 cannot be judged: dport '18888:' is not a port number "
        f"(0-65535), a port range (low:high) or a comma-separated list of them{CORRECT}"
    ]


def test_values_the_reader_takes_as_written() -> None:
    builder = runtime_builder()
    builder.add(FIREWALL_ALIAS, "monitor", {"name": "monitor", "cidr": "10.99.0.20"})
    entries = rules_of(builder.resources, "mc-survival")
    entries[0]["dport"] = " 18888 "
    entries[1] |= {"dport": 9100.0, "source": "monitor"}
    assert messages_of(builder.resources) == []


# 8. Only the API and the monitor can send from their addresses: ipfilter and macfilter.

SPOOFED = (
    "zpack-api's management address 10.99.0.10 (the zlh-agent rule's source) and "
    "zlh-monitor's management address 10.99.0.20 (the metrics scrape rule's source)"
)


def options_of(resources: list[Resource], guest: str) -> dict[str, Any]:
    return props(find(resources, f"{guest}-firewall", FIREWALL_OPTIONS))


def on_management(resources: list[Resource], guest: str, address: str | None = None) -> None:
    """Give ``guest`` a NIC net1 on the management bridge (with ``address``)."""
    values = props(find(resources, guest))
    nics = values.get("networkInterfaces") or values["networkDevices"]
    nics.append({"bridge": "vmbr2", "firewall": True})
    if address is not None:
        values["initialization"] = {"ipConfigs": [{}, {"ipv4": {"address": address}}]}


@pytest.mark.parametrize(
    ("value", "state"),
    [
        (None, "leave ipfilter unset"),
        (False, "turn ipfilter off"),
        ("true", "set ipfilter to 'true', which is not true or false"),
    ],
)
def test_a_fleet_container_without_ipfilter(value: object, state: str) -> None:
    resources = runtime_stack()
    options = find(resources, "mc-survival-firewall", FIREWALL_OPTIONS)
    props(options)["ipfilter"] = value
    findings = check_agent_port(resources, CONFIG)
    # One finding for the cause: not also one for each address it can send from.
    assert findings.messages == [
        f"mc-survival (VMID 1000): firewall options mc-survival-firewall {state}, so the "
        "guest can send from any address, zpack-api's management address 10.99.0.10 among "
        "them, and reach every zlh-agent as zpack-api; set ipfilter=true, so Proxmox lets it "
        "send from its configured addresses only."
    ]
    assert [v.urn for v in findings.violations] == [options.urn]


@pytest.mark.parametrize(
    ("value", "state"), [(None, "leave macfilter unset"), (False, "turn macfilter off")]
)
def test_a_fleet_container_without_macfilter(value: object, state: str) -> None:
    resources = runtime_stack()
    options = find(resources, "dev-alice-firewall", FIREWALL_OPTIONS)
    props(options)["macfilter"] = value
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        f"dev-alice (VMID 1100): firewall options dev-alice-firewall {state}, so the guest can "
        "send with another guest's MAC address and receive what the bridge delivers to that "
        "guest; set macfilter=true."
    ]
    assert [v.urn for v in findings.violations] == [options.urn]


def test_a_fleet_vm_needs_its_addresses_in_an_ip_set() -> None:
    builder = runtime_builder()
    add_fleet_vm(builder, CLONED_VM)
    del props(find(builder.resources, "mc-clone-firewall", FIREWALL_OPTIONS))["ipfilter"]
    assert messages_of(builder.resources) == [
        "mc-clone (VMID 1002): firewall options mc-clone-firewall leave ipfilter unset, so the "
        "guest can send from any address, zpack-api's management address 10.99.0.10 among "
        "them, and reach every zlh-agent as zpack-api; set ipfilter=true, and list the VM's own "
        "addresses in an IP set ipfilter-net<N> (Proxmox adds no VM's addresses to it)."
    ]


def test_what_reaches_the_agent_is_judged_without_ipfilter_too() -> None:
    resources = runtime_stack()
    options_of(resources, "mc-survival")["ipfilter"] = False
    rules_of(resources, "mc-survival").append(rule(22, None))
    assert [m.split(",")[0] for m in messages_of(resources)] == [
        "mc-survival (VMID 1000): firewall options mc-survival-firewall turn ipfilter off",
        "mc-survival (VMID 1000): its management NIC net1 is reachable on TCP 22 from 0.0.0.0/0",
    ]


def test_another_guest_on_the_management_bridge_without_ipfilter() -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-artifacts", "10.99.1.200/22")
    options = find(resources, "zlh-artifacts-firewall", FIREWALL_OPTIONS)
    props(options)["ipfilter"] = False
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        f"zlh-artifacts (VMID 150): its NIC net1 on the management bridge vmbr2 can send from "
        f"{SPOOFED}, because its firewall options zlh-artifacts-firewall leave ipfilter off; "
        "set ipfilter=true in them, so Proxmox lets it send from its configured addresses only."
    ]
    assert [v.urn for v in findings.violations] == [options.urn]
    # With ipfilter it sends from its own address only: compliant.
    props(options)["ipfilter"] = True
    assert messages_of(resources) == []


def test_a_router_vm_on_the_management_bridge_needs_an_ip_set() -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-zpack-router")
    assert messages_of(resources) == [
        "zlh-zpack-router (VMID 310): its NIC net2 on the management bridge vmbr2 can send from "
        f"{SPOOFED}, because its firewall options zlh-zpack-router-firewall leave ipfilter off; "
        "set ipfilter=true in them, and list the VM's own addresses in an IP set ipfilter-net2 "
        "(Proxmox adds no VM's addresses to it)."
    ]
    # The WAN and LAN bridges are not the management network: a router forwards there.
    assert messages_of(runtime_stack()) == []


@pytest.mark.parametrize(
    ("change", "why", "fix", "on"),
    [
        (
            lambda r: options_of(r, "zlh-velocity").update(enabled=False),
            "its firewall options zlh-velocity-firewall leave its firewall disabled, and "
            "Proxmox filters what a guest sends only while its firewall is on",
            "set enabled=true and ipfilter=true in them",
            "zlh-velocity-firewall",
        ),
        (
            lambda r: props(find(r, "zlh-velocity"))["networkInterfaces"][1].update(firewall=False),
            "net1 has firewall=false, and Proxmox filters what a NIC sends only with the flag on",
            "set firewall=true on net1",
            "zlh-velocity",
        ),
        (
            lambda r: r.remove(find(r, "zlh-velocity-firewall", FIREWALL_OPTIONS)),
            "it has no firewall options, so its firewall stays off and nothing filters what it "
            "sends",
            "add firewall options for it with enabled=true and ipfilter=true",
            "zlh-velocity",
        ),
    ],
)
def test_what_leaves_a_guest_unfiltered(change: Any, why: str, fix: str, on: str) -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-velocity", "10.99.1.203/22")
    change(resources)
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        f"zlh-velocity (VMID 312): its NIC net1 on the management bridge vmbr2 can send from "
        f"{SPOOFED}, because {why}; {fix}."
    ]
    assert findings.violations[0].urn in {r.urn for r in resources if r.name == on}


def test_a_guest_configured_with_the_apis_address() -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-velocity", f"{API}/22")
    guest = find(resources, "zlh-velocity")
    findings = check_agent_port(resources, CONFIG)
    # ipfilter admits a container's own addresses: here that is the API's.
    assert findings.messages == [
        "zlh-velocity (VMID 312): its NIC net1 on the management bridge vmbr2 can send from "
        "zpack-api's management address 10.99.0.10 (the zlh-agent rule's source), because "
        "net1 is configured with 10.99.0.10/32; give net1 an address of its own."
    ]
    assert [v.urn for v in findings.violations] == [guest.urn]


def test_an_ipfilter_ip_set_that_admits_the_monitor() -> None:
    builder = runtime_builder()
    on_management(builder.resources, "zlh-velocity", "10.99.1.203/22")
    ipset = builder.add(
        FIREWALL_IPSET,
        "velocity-ipfilter",
        {"containerId": 312.0, "name": "ipfilter-net1", "cidrs": [{"name": "10.99.0.0/24"}]},
    )
    assert messages_of(builder.resources) == [
        "zlh-velocity (VMID 312): its NIC net1 on the management bridge vmbr2 can send from "
        f"{SPOOFED}, because its IP set ipfilter-net1 admits 10.99.0.10/32, 10.99.0.20/32; "
        "keep only net1's own addresses in that IP set."
    ]
    # The set filters even with the ipfilter option off; nomatch entries, most specific
    # first, take the API's and the monitor's addresses out of it.
    options_of(builder.resources, "zlh-velocity")["ipfilter"] = False
    props(ipset)["cidrs"] += [
        {"name": API, "nomatch": True},
        {"name": "10.99.0.16/28", "nomatch": True},
        {"name": "10.99.0.21"},
    ]
    assert messages_of(builder.resources) == []


def test_the_api_and_the_monitor_may_send_from_their_own_addresses() -> None:
    resources = core_stack()
    assert messages_of(resources) == []
    # Without ipfilter, each could send from the other's address.
    for guest in ("zpack-api", "zlh-monitor"):
        options_of(resources, guest)["ipfilter"] = False
    assert messages_of(resources) == [
        "zpack-api (VMID 100): its NIC net1 on the management bridge vmbr2 can send from "
        "zlh-monitor's management address 10.99.0.20 (the metrics scrape rule's source), "
        "because its firewall options zpack-api-firewall leave ipfilter off; set ipfilter=true "
        "in them, so Proxmox lets it send from its configured addresses only.",
        "zlh-monitor (VMID 2000): its NIC net1 on the management bridge vmbr2 can send from "
        "zpack-api's management address 10.99.0.10 (the zlh-agent rule's source), because its "
        "firewall options zlh-monitor-firewall leave ipfilter off; set ipfilter=true in them, "
        "so Proxmox lets it send from its configured addresses only.",
    ]


def test_only_the_tagged_service_owns_its_address() -> None:
    resources = core_stack()
    api = find(resources, "zpack-api")
    props(api)["tags"] = [t for t in props(api)["tags"] if t != "svc-zpack-api"]
    assert messages_of(resources) == [
        "zpack-api (VMID 100): its NIC net1 on the management bridge vmbr2 can send from "
        "zpack-api's management address 10.99.0.10 (the zlh-agent rule's source), because "
        "net1 is configured with 10.99.0.10/32; give net1 an address of its own."
    ]


def test_a_core_datacenter_firewall_that_is_off() -> None:
    resources = core_stack()
    firewall = find(resources, "core-datacenter-firewall", CLUSTER_FIREWALL)
    props(firewall)["enabled"] = False
    findings = check_agent_port(resources, CONFIG)
    assert findings.messages == [
        "datacenter firewall core-datacenter-firewall is not enabled, so Proxmox filters "
        "nothing a guest sends: zpack-api (VMID 100), zlh-monitor (VMID 2000) on the "
        f"management bridge vmbr2 can send from {SPOOFED}; enable it (or set policy config "
        "requireClusterFirewall to false if it is managed outside this stack)."
    ]
    assert [v.urn for v in findings.violations] == [firewall.urn]
    relaxed = AGENT.parse("zlh-agent-port", {"requireClusterFirewall": False})
    assert check_agent_port(resources, relaxed).violations == []
    without = [r for r in resources if r is not firewall]
    assert (
        check_agent_port(without, CONFIG)
        .messages[0]
        .startswith(
            "the stack has no datacenter firewall resource, so Proxmox filters nothing a guest "
            "sends: "
        )
    )


def test_a_runtime_datacenter_firewall_that_is_off_is_reported_once() -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-velocity", "10.99.1.203/22")
    props(find(resources, "runtime-datacenter-firewall", CLUSTER_FIREWALL))["enabled"] = False
    assert [m.split(";")[0] for m in messages_of(resources)] == [
        "the stack has 2 game/dev container(s) but its datacenter firewall "
        "runtime-datacenter-firewall is not enabled"
    ]


def test_a_template_sends_nothing() -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-base")
    props(find(resources, "zlh-base"))["template"] = True
    options_of(resources, "zlh-base")["ipfilter"] = False
    assert messages_of(resources) == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            lambda r: options_of(r, "zlh-velocity").update(ipfilter="yes"),
            "ipfilter 'yes' is not true or false",
        ),
        (
            lambda r: options_of(r, "zlh-velocity").update(dhcp=1.0),
            "dhcp 1.0 is not true or false",
        ),
        (
            lambda r: props(find(r, "zlh-velocity")).update(
                initialization={"ipConfigs": [{}, {"ipv4": {"address": "10.99.1.300/22"}}]}
            ),
            "address '10.99.1.300/22' is not an IP address (with or without a prefix length), "
            "dhcp, auto or manual",
        ),
    ],
)
def test_what_a_guest_may_send_that_cannot_be_read(change: Any, error: str) -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-velocity", "10.99.1.203/22")
    change(resources)
    assert messages_of(resources) == [
        f"zlh-velocity (VMID 312): what it may send cannot be judged: {error}{CORRECT}"
    ]


def test_an_ipfilter_ip_set_naming_a_missing_alias() -> None:
    builder = runtime_builder()
    on_management(builder.resources, "zlh-velocity", "10.99.1.203/22")
    builder.add(
        FIREWALL_IPSET,
        "velocity-ipfilter",
        {"containerId": 312.0, "name": "ipfilter-net1", "cidrs": [{"name": "velocity"}]},
    )
    assert messages_of(builder.resources) == [
        "zlh-velocity (VMID 312): what it may send cannot be judged: IP set 'ipfilter-net1': "
        f"alias 'velocity' does not exist{CORRECT}"
    ]


def test_an_unknown_filter_option_is_not_a_pass() -> None:
    resources = runtime_stack()
    options = find(resources, "mc-survival-firewall", FIREWALL_OPTIONS)
    resources[resources.index(options)] = unknown(options, ipfilter=UNKNOWN_STRING_VALUE)
    findings = check_agent_port(resources, CONFIG)
    assert findings.violations == []
    assert [u.message for u in findings.unknowns] == [
        "string value at .ipfilter can't be known during preview"
    ]


def test_an_unknown_tag_skips_only_that_guest() -> None:
    resources = runtime_stack()
    on_management(resources, "zlh-velocity", "10.99.1.203/22")
    on_management(resources, "zlh-artifacts", "10.99.1.200/22")
    options_of(resources, "zlh-artifacts")["ipfilter"] = False
    velocity = find(resources, "zlh-velocity")
    resources[resources.index(velocity)] = unknown(velocity, tags=UNKNOWN_STRING_VALUE)
    findings = check_agent_port(resources, CONFIG)
    assert [m.split(",")[0] for m in findings.messages] == [
        "zlh-artifacts (VMID 150): its NIC net1 on the management bridge vmbr2 can send from "
        "zpack-api's management address 10.99.0.10 (the zlh-agent rule's source) and "
        "zlh-monitor's management address 10.99.0.20 (the metrics scrape rule's source)"
    ]
    assert [u.message for u in findings.unknowns] == [
        "string value at .tags can't be known during preview"
    ]


# 9. Names in an agent rule's source count by the addresses they stand for.


def fleet_group(builder: StackBuilder, cidrs: list[dict[str, Any]]) -> Resource:
    """The fleet's agent rule in a security group, from a datacenter IP set ``zlh-api``."""
    builder.add(FIREWALL_IPSET, "zlh-api-ipset", {"name": "zlh-api", "cidrs": cidrs})
    group = builder.add(
        SECURITY_GROUP,
        "fleet-security-group",
        # No interface inside a group (Proxmox refuses it): the reference names net1.
        {
            "name": "zlh-fleet",
            "rules": [{**rule(18888, "+zlh-api", comment="zlh-agent"), "iface": None}],
        },
    )
    for guest in ("mc-survival", "dev-alice"):
        rules_of(builder.resources, guest)[0] = {"securityGroup": "zlh-fleet", "iface": "net1"}
    return group


def test_an_ip_set_holding_only_the_api_may_be_the_agent_rules_source() -> None:
    builder = runtime_builder()
    fleet_group(builder, [{"name": f"{API}/32"}])
    assert messages_of(builder.resources) == []


def test_an_ip_set_holding_more_than_the_api() -> None:
    builder = runtime_builder()
    group = fleet_group(builder, [{"name": f"{API}/32"}, {"name": "10.99.1.0/24"}])
    findings = check_agent_port(builder.resources, CONFIG)
    assert findings.messages[0] == (
        "security group fleet-security-group: rule 0 (zlh-agent) accepts TCP 18888 from source "
        "+zlh-api (= 10.99.0.10/32, 10.99.1.0/24); only zpack-api's management address "
        "10.99.0.10 may reach zlh-agent: set its source to 10.99.0.10/32, or narrow its proto "
        "and dport so they do not cover 18888."
    )
    assert findings.violations[0].urn == group.urn


def test_a_guest_alias_holding_the_api_and_a_missing_one() -> None:
    builder = runtime_builder()
    builder.add(FIREWALL_ALIAS, "api", {"containerId": 1000.0, "name": "api", "cidr": API})
    rules_of(builder.resources, "mc-survival")[0]["source"] = "api"
    assert messages_of(builder.resources) == []
    # The same name means nothing in another guest: it stays a violation there.
    rules_of(builder.resources, "dev-alice")[0]["source"] = "api"
    assert messages_of(builder.resources)[0].startswith(
        "firewall rules dev-alice-rules of container 1100: rule 0 (zlh-agent from zpack-api) "
        "accepts TCP 18888 from source api; only zpack-api's management address"
    )


def test_an_ip_set_not_known_yet_waits() -> None:
    builder = runtime_builder()
    fleet_group(builder, [{"name": f"{API}/32"}])
    ipset = find(builder.resources, "zlh-api-ipset", FIREWALL_IPSET)
    builder.resources[builder.resources.index(ipset)] = unknown(ipset, cidrs=UNKNOWN_STRING_VALUE)
    findings = check_agent_port(builder.resources, CONFIG)
    assert findings.violations == []
    assert [u.message for u in findings.unknowns] == [
        "string value at .cidrs can't be known during preview"
    ]


def test_a_fleet_vmid_under_a_core_role_tag_is_judged_as_fleet() -> None:
    """Class 5: a tag is free text; the VMID's range makes it a fleet container all the same."""
    resources = runtime_stack()
    game = find(resources, "mc-survival")
    props(game)["tags"] = [t for t in props(game)["tags"] if not t.startswith("role-")] + [
        "role-core-infra"
    ]
    find_options = find(resources, "mc-survival-firewall", FIREWALL_OPTIONS)
    props(find_options)["ipfilter"] = False
    assert any(
        m.startswith("mc-survival (VMID 1000): firewall options mc-survival-firewall")
        for m in messages_of(resources)
    )
