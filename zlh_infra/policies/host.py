"""The nodes themselves: no guest, tenant or not, reaches a node's API, SSH or consoles.

Proxmox applies the datacenter firewall's input policy to the node's own traffic, with
built-in accepts for the ``management`` IP set and the ``local_network`` alias and the
node's own rules before it (``zlh_infra/platform/host_firewall.py``). What the node
accepts on its management ports is computed from what the stack registers, read by the
evaluator's reader, and must not meet a network guests are on; a value the reader does
not understand is a violation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network

from zlh_infra.platform.firewall_state import GuestView, owner_vmid, read_firewall, rules_of
from zlh_infra.platform.fleet_firewall import API_IPSET
from zlh_infra.platform.host_firewall import API_PORT, MANAGEMENT_PORTS, node_reachable_from
from zlh_infra.platform.reachability import (
    TCP,
    AddressSet,
    FirewallReadError,
    HostFirewall,
    Rule,
    authentic,
    read_rule,
    read_source,
    resolve_source,
)
from zlh_infra.platform.type_tokens import DATACENTER_FIREWALL, FIREWALL_RULES, NODE_FIREWALL
from zlh_infra.policies.config import HostFirewallConfig
from zlh_infra.policies.placement import describe
from zlh_infra.policies.resources import Findings, Resource, is_guest, node_of

_PORT_NAMES = {
    8006: "the API (8006)",
    22: "SSH (22)",
    3128: "SPICE (3128)",
    5900: "VNC (5900-5999)",
    60000: "migration (60000-60050)",
}


def _datacenter(resources: Sequence[Resource], findings: Findings) -> tuple[bool, str]:
    """(enabled, input policy) of the datacenter firewall; every resource must agree."""
    found = [r for r in resources if r.type == DATACENTER_FIREWALL]
    if not found:
        findings.add(
            "the stack registers no datacenter firewall, so the node's own traffic is not filtered",
            "enable it with input policy DROP",
            joint=": ",
        )
        return False, "ACCEPT"
    enabled, policy = True, "DROP"
    for resource in found:
        value = resource.props.get("inputPolicy")
        if resource.props.get("enabled") is not True:
            enabled = False
            findings.add(
                f"{describe(resource)} does not enable the datacenter firewall, so neither the "
                "nodes nor any guest is filtered",
                "set enabled: true",
                resource.urn,
                joint=": ",
            )
        if not isinstance(value, str) or value.strip().upper() not in ("DROP", "REJECT"):
            policy = "ACCEPT"
            findings.add(
                f"{describe(resource)} has input policy {value!r}: the node accepts what no rule "
                "names",
                "set inputPolicy: DROP",
                resource.urn,
            )
    return enabled, policy


def _names_a_node(resource: Resource) -> bool:
    """A guest, a node's firewall switch, or a node's own rules (not a guest's).

    Rules whose owner cannot be read count: judging their node reports them unreadable.
    """
    if is_guest(resource) or resource.type == NODE_FIREWALL:
        return True
    if resource.type != FIREWALL_RULES:
        return False
    try:
        return owner_vmid(resource.props) is None
    except FirewallReadError:
        return True


def _node_rules(resources: Sequence[Resource], node: str, findings: Findings) -> list[Rule] | None:
    """The node's own rules, then the datacenter's accepts (its drops are not relied on)."""
    own: list[Rule] = []
    cluster: list[Rule] = []
    for resource in resources:
        if resource.type != FIREWALL_RULES:
            continue
        try:
            if owner_vmid(resource.props) is not None:
                continue
            rules = rules_of(resource.props)
            for rule in rules:
                read_rule(rule)
        except FirewallReadError as error:
            findings.add(
                str(error),
                "correct the value, so the node's exposure can be told",
                resource.urn,
                subject=describe(resource),
            )
            return None
        where = node_of(resource)
        if where == node:
            own += rules
        elif where is None:
            cluster += [r for r in rules if read_rule(r).action == "ACCEPT" or r.type == "group"]
    return own + cluster


def check_host_firewall(
    resources: Sequence[Resource], config: HostFirewallConfig, stack: str
) -> Findings:
    """Every node of the stack: firewall on, DROP, and its management ports closed to guests."""
    findings = Findings()
    with findings.reading():
        # Each node a guest runs on or the stack sets a firewall of, with the first such
        # resource (where a finding lands): a stack that only switches a node's firewall
        # is judged on that node as well.
        placed: dict[str, str] = {}
        for r in resources:
            if _names_a_node(r) and (n := node_of(r)) is not None:
                placed.setdefault(n, r.urn)
        nodes = sorted(placed)
        if not nodes:
            return findings
        enabled, policy = _datacenter(resources, findings)
        triples = [(r.type, r.name, r.props) for r in resources]
        try:
            host, views = read_firewall(triples)
            host = dataclasses.replace(host, enabled=enabled)
            platform = _platform_api_sources(host, views, config.management_bridge)
        except FirewallReadError as error:
            findings.add(
                f"the datacenter's firewall objects cannot be read: {error}",
                "correct the value it names, so the nodes' exposure can be told",
            )
            return findings
        switches: Mapping[str, list[Resource]] = {
            node: [r for r in resources if r.type == NODE_FIREWALL and node_of(r) == node]
            for node in nodes
        }
        for node in nodes:
            node_on = bool(switches[node]) and all(
                r.props.get("enabled") is not False for r in switches[node]
            )
            if not switches[node]:
                findings.add(
                    f"node {node} has no node firewall resource, so its firewall may be off",
                    "register proxmoxve.node.FirewallLegacy with enabled: true",
                    placed[node],
                    joint=": ",
                )
                continue  # with its firewall off, every port is open: said once
            if not node_on:
                for resource in switches[node]:
                    findings.add(
                        f"{describe(resource)} disables node {node}'s firewall",
                        "set enabled: true",
                        resource.urn,
                        joint=": ",
                    )
                continue
            rules = _node_rules(resources, node, findings)
            if rules is None:
                continue
            _check_exposure(
                findings, config.guest_networks, node, host, node_on, policy, rules, platform
            )
    return findings


def _check_exposure(
    findings: Findings,
    guest_networks: Sequence[IPv4Network],
    node: str,
    host: HostFirewall,
    node_on: bool,
    policy: str,
    rules: list[Rule],
    platform: AddressSet,
) -> None:
    guests = AddressSet.of(*guest_networks)
    for low, _high in MANAGEMENT_PORTS:
        try:
            sources = node_reachable_from(
                host,
                node_enabled=node_on,
                input_policy=policy,
                rules=rules,
                proto=TCP,
                port=low,
            )
        except FirewallReadError as error:
            findings.add(
                str(error), "define it, so the node's exposure can be told", subject=f"node {node}"
            )
            return
        if sources == AddressSet.everything():
            findings.add(
                f"{_PORT_NAMES[low]} is open to every address",
                "admit only the operators' networks (the management IP set, proxmox.adminSources)",
                subject=f"node {node}",
            )
            continue
        loose = sources & guests
        if low == API_PORT:
            loose -= platform
        if loose:
            findings.add(
                f"{_PORT_NAMES[low]} is open to {loose}, where guests (tenants included) are",
                "admit only the operators' own networks",
                subject=f"node {node}",
            )


def _platform_api_sources(
    host: HostFirewall, views: Mapping[int, GuestView], bridge: str
) -> AddressSet:
    """zpack-api on the API: the IP set ``zlh-api``, where no guest on the management
    ``bridge`` can send from it (``zlh-agent-port`` holds that set to zpack-api's address)."""
    if API_IPSET not in host.ipsets:
        return AddressSet()
    members = resolve_source(host, read_source(f"+{API_IPSET}"))
    senders = [
        sender
        for view in views.values()
        for sender in view.senders(host)
        if sender.bridge == bridge
    ]
    return authentic(senders, members, proto=TCP, port=API_PORT)
