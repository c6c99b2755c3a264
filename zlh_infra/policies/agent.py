"""The agent path: only zpack-api reaches zlh-agent, and every agent sits behind a firewall.

zlh-agent listens on TCP 18888 in every game and dev container, on the management
NIC. The seed allows one source, the API on the core host, over the management
network. Proxmox enforces that only when the datacenter firewall is on, the guest's
firewall options are enabled with inbound DROP, and the NIC carries ``firewall=1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from ipaddress import ip_network
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from zlh_infra.platform.firewall_state import FIREWALL_STATE_TYPES, read_firewall
from zlh_infra.platform.reachability import AddressSet, UnresolvedSourceError, exposure
from zlh_infra.platform.vmids import DEFAULT_SCHEME
from zlh_infra.policies.config import AgentPortConfig
from zlh_infra.policies.resources import (
    CLUSTER_FIREWALL,
    FIREWALL_OPTIONS,
    FIREWALL_RULES,
    SECURITY_GROUP,
    Findings,
    Resource,
    is_guest,
    label,
    nics_of,
    role_tags,
    vmid_of,
    whole_number,
)


def covers_port(dport: str, port: int) -> bool:
    """Whether a Proxmox port list (``80,443,18000:19000``) includes ``port``.

    Service names (``http``) never name zlh-agent's port, so they do not cover it.
    """
    for token in dport.replace(" ", "").split(","):
        low, _, high = token.partition(":")
        first, last = whole_number(low), whole_number(high or low)
        if first is not None and last is not None and first <= port <= last:
            return True
    return False


def accepts_tcp_port(rule: Mapping[str, Any], port: int) -> bool:
    """Whether an inbound rule lets TCP ``port`` in (a missing proto or dport means any)."""
    if rule.get("enabled") is False:
        return False
    if str(rule.get("type") or "in").lower() != "in":
        return False
    if str(rule.get("action") or "").upper() != "ACCEPT":
        return False
    if rule.get("macro"):
        # Macros bring their own ports; none of Proxmox's covers the agent port.
        return False
    proto = rule.get("proto")
    if proto and str(proto).lower() not in ("tcp", "6"):
        return False
    dport = rule.get("dport")
    return not dport or covers_port(str(dport), port)


def source_is(source: object, config: AgentPortConfig) -> bool:
    """Whether a rule's source is exactly the API's address (bare or /32)."""
    if not isinstance(source, str) or not source.strip():
        return False
    try:
        network = ip_network(source.strip(), strict=True)
    except ValueError:
        return False
    return network == ip_network(config.api_address)


def _rules_owner(resource: Resource) -> str:
    if resource.type == SECURITY_GROUP:
        return f"security group {resource.name}"
    container = whole_number(resource.props.get("containerId"))
    vm = whole_number(resource.props.get("vmId"))
    if container is not None:
        return f"firewall rules {resource.name} of container {container}"
    if vm is not None:
        return f"firewall rules {resource.name} of VM {vm}"
    if resource.props.get("nodeName"):
        return f"firewall rules {resource.name} of node {resource.props.get('nodeName')}"
    return f"datacenter firewall rules {resource.name}"


def is_fleet(resource: Resource, config: AgentPortConfig) -> bool:
    """A game or dev guest (by role tag; by VMID range when it has no role tag)."""
    if not is_guest(resource) or resource.props.get("template") is True:
        return False
    roles = role_tags(resource)
    if roles:
        return any(role in config.fleet_roles for role in roles)
    vmid = vmid_of(resource)
    role = DEFAULT_SCHEME.role_of(vmid) if vmid is not None else None
    return role is not None and role.value in config.fleet_roles


def _check_rules(resource: Resource, config: AgentPortConfig, findings: Findings) -> None:
    rules = resource.props.get("rules")
    if not isinstance(rules, Sequence) or isinstance(rules, str):
        return
    port, api = config.agent_port, config.api_address
    for index in range(len(rules)):
        with findings.reading():
            rule = rules[index]
            if not isinstance(rule, Mapping) or not accepts_tcp_port(rule, port):
                continue
            source = rule.get("source")
            if source_is(source, config):
                continue
            comment = f" ({rule.get('comment')})" if rule.get("comment") else ""
            origin = f"source {source}" if isinstance(source, str) and source else "any source"
            findings.add(
                f"{_rules_owner(resource)}: rule {index}{comment} accepts TCP {port} from "
                f"{origin}; only zpack-api's management address {api} may reach zlh-agent: "
                f"set its source to {api}/32, or narrow its proto and dport so they do not "
                f"cover {port}.",
                resource.urn,
            )


def _check_fleet_guest(
    guest: Resource,
    options: Sequence[Resource],
    config: AgentPortConfig,
    findings: Findings,
) -> None:
    name = label(guest)
    bridge = config.management_bridge
    nics = nics_of(guest)
    if not any(nic.bridge == bridge for nic in nics):
        findings.add(
            f"{name} has no NIC on the management bridge {bridge}, where zlh-agent listens "
            f"and zpack-api reaches it; give it a NIC on {bridge} with firewall=true.",
            guest.urn,
        )
    for nic in nics:
        if not nic.firewall:
            which = "management NIC" if nic.bridge == bridge else "NIC"
            findings.add(
                f"{name}: its {which} {nic.iface} on {nic.bridge} has firewall=false, so its "
                "firewall rules do not apply there; set firewall=true on it.",
                guest.urn,
            )
    if not options:
        findings.add(
            f"{name} has no firewall options, so its firewall stays off (Proxmox's default) "
            "and zlh-agent is open to the whole management network; add firewall options "
            "for it with enabled=true and input_policy DROP.",
            guest.urn,
        )
    for option in options:
        with findings.reading():
            if option.props.get("enabled") is not True:
                findings.add(
                    f"{name}: firewall options {option.name} leave its firewall disabled; "
                    "set enabled=true.",
                    option.urn,
                )
            # The provider's default inbound policy is DROP.
            policy = str(option.props.get("inputPolicy") or "DROP").upper()
            if policy != "DROP":
                findings.add(
                    f"{name}: firewall options {option.name} set input_policy {policy}; set "
                    "it to DROP so only the rules' ACCEPTs reach the container.",
                    option.urn,
                )


def check_agent_port(resources: Sequence[Resource], config: AgentPortConfig) -> Findings:
    """Agent-port rules name only the API; game/dev guests have their firewall on."""
    findings = Findings()
    options_of: dict[int, list[Resource]] = {}
    fleet: list[Resource] = []
    cluster_firewalls: list[Resource] = []
    for resource in resources:
        with findings.reading():
            if resource.type in (FIREWALL_RULES, SECURITY_GROUP):
                _check_rules(resource, config, findings)
            elif resource.type == FIREWALL_OPTIONS:
                owner = resource.props.get("containerId")
                if owner is None:
                    owner = resource.props.get("vmId")
                vmid = whole_number(owner)
                if vmid is not None:
                    options_of.setdefault(vmid, []).append(resource)
            elif resource.type == CLUSTER_FIREWALL:
                cluster_firewalls.append(resource)
            elif is_fleet(resource, config):
                fleet.append(resource)
    # Guests whose rules or firewall settings were already found wrong (or could not be
    # read) are not evaluated again: one finding per cause.
    flagged = {urn for violation in findings.violations if (urn := violation.urn)}
    exposed: list[Resource] = []
    for guest in fleet:
        with findings.reading():
            vmid = vmid_of(guest)
            options = options_of.get(vmid, []) if vmid is not None else []
            before = len(findings.violations)
            _check_fleet_guest(guest, options, config, findings)
            if len(findings.violations) == before:
                exposed.append(guest)
    if exposed:
        _check_exposure(resources, exposed, flagged, config, findings)
    if fleet and config.require_cluster_firewall:
        with findings.reading():
            enabled = [fw for fw in cluster_firewalls if fw.props.get("enabled") is True]
            if not enabled:
                disabled = cluster_firewalls[0] if cluster_firewalls else None
                findings.add(
                    f"the stack has {len(fleet)} game/dev container(s) but "
                    + (
                        f"its datacenter firewall {disabled.name} is not enabled"
                        if disabled is not None
                        else "no datacenter firewall resource"
                    )
                    + "; Proxmox applies guest firewall rules only while the datacenter "
                    "firewall is on: enable it (or set policy config requireClusterFirewall "
                    "to false if it is managed outside this stack).",
                    disabled.urn if disabled is not None else None,
                )
    return findings


def _plain(value: Any) -> Any:
    """A deep, plain copy of a property value (reads every value once)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(item) for item in value]
    return value


def _check_exposure(
    resources: Sequence[Resource],
    fleet: Sequence[Resource],
    flagged: set[str],
    config: AgentPortConfig,
    findings: Findings,
) -> None:
    """Prove, with the reachability evaluator, what reaches each management NIC.

    The per-rule checks above catch a wrong source on a rule; this catches the rest:
    rules opening other ports, aliases or IP sets that resolve elsewhere, rule order.
    """
    readable: list[tuple[str, str, Any]] = []
    skip: set[int] = set()
    for resource in resources:
        if resource.type not in FIREWALL_STATE_TYPES:
            continue  # copying its properties would only be thrown away
        owner = whole_number(resource.props.get("containerId") or resource.props.get("vmId"))
        try:
            readable.append((resource.type, resource.name, _plain(resource.props)))
        except UnknownValueError:
            # Already reported by the checks above; judge its guest when it is known.
            if owner is not None:
                skip.add(owner)
            continue
        if resource.urn in flagged and owner is not None:
            skip.add(owner)
    host, views = read_firewall(readable)
    if not config.require_cluster_firewall:
        # Managed outside this stack: judge the guests as Proxmox will, with it on.
        host = dataclasses.replace(host, enabled=True)
    elif not host.enabled:
        return  # reported above: nothing on this host is filtered yet
    allowed = {
        config.agent_port: AddressSet.of(config.api_address),
        config.metrics_port: AddressSet.of(config.monitor_address),
    }
    for guest in fleet:
        if vmid_of(guest) in skip:
            continue
        view = views.get(vmid_of(guest) or -1)
        iface = view.iface_on(config.management_bridge) if view is not None else None
        if view is None or iface is None:
            continue
        try:
            opened = exposure(
                host,
                view.firewall(),
                iface=iface,
                guest_aliases=view.aliases,
                guest_ipsets=view.ipsets,
            )
        except UnresolvedSourceError as error:
            findings.add(
                f"{label(guest)}: a firewall rule names what does not exist: {error}.", guest.urn
            )
            continue
        for entry in opened:
            named = entry.proto == "tcp" and entry.first_port == entry.last_port
            permitted = allowed.get(entry.first_port) if named else None
            if permitted is not None and not (entry.sources - permitted):
                continue
            ports = (
                str(entry.first_port)
                if entry.first_port == entry.last_port
                else f"{entry.first_port}-{entry.last_port}"
            )
            findings.add(
                f"{label(guest)}: its management NIC {iface} is reachable on "
                f"{entry.proto.upper()} {ports} from {entry.sources}; there only zpack-api "
                f"({config.api_address}, TCP {config.agent_port}) and zlh-monitor "
                f"({config.monitor_address}, TCP {config.metrics_port}) may connect: remove "
                "or narrow the rule, alias or IP set that opens it.",
                guest.urn,
            )
