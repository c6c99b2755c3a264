"""zlh-host-firewall on live hosts: what the nodes themselves accept on their management ports.

The fakes hold each node's firewall as ``layers/host.py`` writes it (datacenter DROP, the
``management`` IP set, ``local_network`` pinned to the loopback, the node's own rules,
on the runtime node zpack-api's IP set on the API over the management bridge); each test
changes one thing and asserts the finding.
"""

from __future__ import annotations

from tests.tooling.audit.conftest import Platform, errors, findings, only
from tests.tooling.audit.fakehosts import API_ADDRESS, rule

RULE = "zlh-host-firewall"
EVERY_ADDRESS = "Admit only the operators' networks (the management IP set, proxmox.adminSources)."
OPERATORS_ONLY = "Admit only the operators' own networks."
PORTS = ("SPICE (3128)", "SSH (22)", "VNC (5900-5999)", "migration (60000-60050)", "the API (8006)")


def host_findings(platform: Platform, *extra: str) -> list[tuple[str, str, str, str]]:
    result = platform.audit("--format", "json", *extra)
    assert result.code in (0, 1), result.err
    return [
        (f["stack"], f["node"], f["problem"], f["fix"])
        for f in findings(result)
        if f["rule"] == RULE
    ]


def open_to_every_address(node: str) -> list[tuple[str, str]]:
    return [(f"node {node}: {port} is open to every address", EVERY_ADDRESS) for port in PORTS]


def test_the_nodes_as_the_program_builds_them_pass(platform: Platform) -> None:
    result = platform.audit("--format", "json")
    assert result.code == 0
    assert [f for f in findings(result) if f["rule"] == RULE] == []


def test_node_rule_opens_the_api_to_a_guest_network(platform: Platform) -> None:
    platform.runtime.node_rules.append(rule(8006, source="10.20.0.0/22"))
    result = platform.audit("--format", "json")
    assert result.code == 1
    assert errors(result) == [(None, RULE)]
    finding = only(result, None, RULE)
    assert (finding["stack"], finding["node"], finding["vmid"]) == ("runtime", "zlh-runtime", None)
    assert (finding["problem"], finding["fix"]) == (
        "node zlh-runtime: the API (8006) is open to 10.20.0.0/22, where guests (tenants "
        "included) are",
        OPERATORS_ONLY,
    )


def test_a_rule_bound_to_the_management_bridge_still_counts(platform: Platform) -> None:
    # The evaluator cannot tell which interface a sender arrives on: an ACCEPT on one is
    # read as an ACCEPT on all.
    platform.runtime.node_rules.insert(0, rule(22, source="10.99.0.0/22", iface="vmbr2"))
    assert host_findings(platform) == [
        (
            "runtime",
            "zlh-runtime",
            "node zlh-runtime: SSH (22) is open to 10.99.0.0/22, where guests (tenants included) "
            "are",
            OPERATORS_ONLY,
        )
    ]


def test_a_datacenter_rule_applies_to_the_node(platform: Platform) -> None:
    platform.core.cluster_rules.append(rule(22))
    assert host_findings(platform) == [
        ("core", "zlh-core", "node zlh-core: SSH (22) is open to every address", EVERY_ADDRESS)
    ]


def test_input_policy_accept(platform: Platform) -> None:
    platform.core.datacenter["policy_in"] = "ACCEPT"
    found = host_findings(platform)
    assert found[0] == (
        "core",
        "zlh-core",
        "/etc/pve/firewall/cluster.fw has input policy 'ACCEPT': the node accepts what no rule "
        "names",
        "Set inputPolicy: DROP.",
    )
    assert [(problem, fix) for _, _, problem, fix in found[1:]] == open_to_every_address("zlh-core")


def test_unset_options_read_as_pve_firewall_reads_them(platform: Platform) -> None:
    # The datacenter's input policy defaults to DROP, a node's firewall to on.
    platform.core.datacenter = {"enable": 1}
    platform.runtime.node_options = {}
    result = platform.audit("--format", "json")
    assert (result.code, findings(result)) == (0, [])


def test_node_firewall_disabled(platform: Platform) -> None:
    platform.runtime.node_options = {"enable": 0}
    assert host_findings(platform) == [
        (
            "runtime",
            "zlh-runtime",
            "/etc/pve/nodes/zlh-runtime/host.fw disables node zlh-runtime's firewall",
            "Set enabled: true.",
        )
    ]


def test_local_network_left_to_proxmox_may_be_any_network(platform: Platform) -> None:
    # Without the alias, Proxmox admits the network it detects the node on to every
    # management port: which network that is cannot be read from the API.
    del platform.core.aliases["local_network"]
    found = host_findings(platform)
    assert [(problem, fix) for _, _, problem, fix in found] == open_to_every_address("zlh-core")


def test_a_node_without_guests_is_judged_too(platform: Platform) -> None:
    platform.core.guests = []
    platform.core.datacenter["policy_in"] = "ACCEPT"
    found = host_findings(platform)
    assert len(found) == 1 + len(PORTS)
    assert found[0][2].startswith("/etc/pve/firewall/cluster.fw has input policy 'ACCEPT'")


def test_zpack_apis_ip_set_on_the_core_nodes_api(platform: Platform) -> None:
    # The exception holds only where no guest can send from the set's addresses: on the
    # core host zpack-api itself is a guest, so the set is one more guest address.
    platform.core.ipsets["zlh-api"] = [f"{API_ADDRESS}/32"]
    platform.core.node_rules.insert(0, rule(8006, source="+zlh-api", iface="vmbr2"))
    assert host_findings(platform) == [
        (
            "core",
            "zlh-core",
            f"node zlh-core: the API (8006) is open to {API_ADDRESS}/32, where guests (tenants "
            "included) are",
            OPERATORS_ONLY,
        )
    ]


def test_zpack_apis_ip_set_holding_a_tenants_address(platform: Platform) -> None:
    # mc-survival's management address joins the set: the node's API is open to a tenant.
    platform.runtime.ipsets["zlh-api"].append("10.99.1.0")
    found = host_findings(platform)
    assert found == [
        (
            "runtime",
            "zlh-runtime",
            "node zlh-runtime: the API (8006) is open to 10.99.1.0/32, where guests (tenants "
            "included) are",
            OPERATORS_ONLY,
        )
    ]


def test_a_node_rule_the_reader_cannot_read_is_a_finding(platform: Platform) -> None:
    assert platform.audit("--format", "json").code == 0
    # What the API would not take from a client, but the node's host.fw may still hold.
    rules = platform.hosts["runtime"].pve.firewall_config("host", node="zlh-runtime")["rules"]
    rules[0]["dport"] = "22:"
    assert host_findings(platform) == [
        (
            "runtime",
            "zlh-runtime",
            "/etc/pve/nodes/zlh-runtime/host.fw: dport '22:' is not a port number (0-65535), a "
            "port range (low:high) or a comma-separated list of them",
            "Correct the value, so the node's exposure can be told.",
        )
    ]
