"""The agent path: only zpack-api reaches zlh-agent, and every agent sits behind a firewall.

zlh-agent listens on TCP 18888 in every game and dev container, on the management
NIC. The seed allows one source, the API on the core host, over the management
network. Proxmox enforces that only when the datacenter firewall is on, the guest's
firewall options are enabled with inbound DROP, and the NIC carries ``firewall=1``.

Every firewall value is read by the evaluator's reader (``reachability.read_rule`` and
its kin), so the rule-by-rule checks and the proof of what reaches each management NIC
read a rule alike; a value the reader does not understand is a violation naming the
resource and the value.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from zlh_infra.platform.firewall_state import (
    FIREWALL_STATE_TYPES,
    owner_vmid,
    read_firewall,
    rule_from_props,
)
from zlh_infra.platform.reachability import (
    OTHER,
    TCP,
    AddressSet,
    Exposure,
    FirewallReadError,
    RuleReading,
    UnresolvedSourceError,
    covers,
    exposure,
    read_cidr,
    read_ipset_entry,
    read_rule,
)
from zlh_infra.platform.vmids import DEFAULT_SCHEME
from zlh_infra.policies.config import AgentPortConfig
from zlh_infra.policies.resources import (
    CLUSTER_FIREWALL,
    FIREWALL_ALIAS,
    FIREWALL_IPSET,
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

_KINDS = {
    FIREWALL_RULES: "firewall rules",
    FIREWALL_OPTIONS: "firewall options",
    FIREWALL_ALIAS: "firewall alias",
    FIREWALL_IPSET: "firewall IP set",
}
_CORRECT = "correct the value, so the checks can tell what it lets in."


def admits_tcp_port(rule: RuleReading, port: int) -> bool:
    """Whether an inbound ACCEPT may let TCP ``port`` in, on any NIC.

    Macros bring their own ports, and none of Proxmox's covers the agent port; any
    other uncertainty (a protocol standing for several, ``sport``, ``dest``) counts.
    """
    if rule.action != "ACCEPT" or rule.rule.macro:
        return False
    return covers(rule, proto=TCP, port=port) is not False


def accepts_tcp_port(rule: Mapping[str, Any], port: int) -> bool:
    """:func:`admits_tcp_port` of a rule in wire form (a missing proto or dport means any)."""
    return admits_tcp_port(read_rule(rule_from_props(rule)), port)


def source_is(rule: RuleReading, config: AgentPortConfig) -> bool:
    """Whether a rule's source is exactly the API's address (bare or /32)."""
    sources = rule.sources
    return (
        sources is not None
        and len(sources) == 1
        and sources[0].addresses == AddressSet.of(config.api_address)
    )


def _owner(resource: Resource) -> str:
    """How messages name a firewall resource: its kind, name and whose it is."""
    if resource.type == SECURITY_GROUP:
        return f"security group {resource.name}"
    kind = _KINDS.get(resource.type, resource.type)
    for key, noun in (("containerId", "container"), ("vmId", "VM")):
        value = resource.props.get(key)
        if value is not None:
            number = whole_number(value)
            shown = repr(value) if number is None else str(number)
            return f"{kind} {resource.name} of {noun} {shown}"
    if resource.props.get("nodeName"):
        return f"{kind} {resource.name} of node {resource.props.get('nodeName')}"
    return f"datacenter {kind} {resource.name}"


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
    if rules is None:
        return
    owner = _owner(resource)
    if not isinstance(rules, Sequence) or isinstance(rules, str):
        findings.add(
            f"{owner}: its rules {rules!r} are not a list of rules; {_CORRECT}", resource.urn
        )
        return
    port, api = config.agent_port, config.api_address
    for index in range(len(rules)):
        with findings.reading():
            entry = rules[index]
            if not isinstance(entry, Mapping):
                findings.add(
                    f"{owner}: rule {index} ({entry!r}) is not a rule; {_CORRECT}", resource.urn
                )
                continue
            try:
                rule = read_rule(rule_from_props(entry))
            except FirewallReadError as error:
                findings.add(
                    f"{owner}: rule {index}{_comment(entry)} cannot be judged: {error}; {_CORRECT}",
                    resource.urn,
                )
                continue
            if not admits_tcp_port(rule, port) or source_is(rule, config):
                continue
            source = rule.rule.source
            origin = f"source {source}" if source else "any source"
            findings.add(
                f"{owner}: rule {index}{_comment(entry)} accepts TCP {port} from "
                f"{origin}; only zpack-api's management address {api} may reach zlh-agent: "
                f"set its source to {api}/32, or narrow its proto and dport so they do not "
                f"cover {port}.",
                resource.urn,
            )


def _comment(rule: Mapping[str, Any]) -> str:
    return f" ({rule.get('comment')})" if rule.get("comment") else ""


def _check_owner(resource: Resource, findings: Findings) -> int | None:
    """The VMID a firewall resource belongs to (None for the host's); reports an unreadable one."""
    try:
        return owner_vmid(resource.props)
    except FirewallReadError as error:
        findings.add(
            f"{_owner(resource)}: {error}; set it to the VMID of the guest it belongs to.",
            resource.urn,
        )
        return None


def _check_names(resource: Resource, findings: Findings) -> None:
    """An alias's address and an IP set's entries, as the evaluator reads them."""
    owner = _owner(resource)
    if resource.type == FIREWALL_ALIAS:
        try:
            read_cidr(resource.props.get("cidr"))
        except FirewallReadError as error:
            findings.add(f"{owner}: {error}; {_CORRECT}", resource.urn)
        return
    entries = resource.props.get("cidrs") or []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        findings.add(
            f"{owner}: its cidrs {entries!r} are not a list of entries; {_CORRECT}", resource.urn
        )
        return
    for index in range(len(entries)):
        with findings.reading():
            entry = entries[index]
            try:
                read_ipset_entry(entry.get("name") if isinstance(entry, Mapping) else entry)
            except FirewallReadError as error:
                findings.add(f"{owner}: {error}; {_CORRECT}", resource.urn)


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
            if resource.type in _KINDS:
                owner = _check_owner(resource, findings)
                if resource.type == FIREWALL_OPTIONS and owner is not None:
                    options_of.setdefault(owner, []).append(resource)
            if resource.type in (FIREWALL_RULES, SECURITY_GROUP):
                _check_rules(resource, config, findings)
            elif resource.type in (FIREWALL_ALIAS, FIREWALL_IPSET):
                _check_names(resource, findings)
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
    _check_datacenter(cluster_firewalls, len(fleet), config, findings)
    return findings


def _check_datacenter(
    firewalls: Sequence[Resource], fleet: int, config: AgentPortConfig, findings: Findings
) -> None:
    """One datacenter firewall resource, enabled where game/dev containers need it.

    A host has one datacenter firewall setting: two resources overwrite each other, and
    the firewall counts as on only when none of them turns it off.
    """
    for extra in firewalls[1:]:
        findings.add(
            f"datacenter firewall {extra.name} is a second datacenter firewall resource "
            f"(besides {firewalls[0].name}); a host has one datacenter firewall setting, "
            "which the two would overwrite in turn: remove it.",
            extra.urn,
        )
    if not fleet or not config.require_cluster_firewall:
        return
    why = "; Proxmox applies guest firewall rules only while the datacenter firewall is on: "
    fix = (
        "enable it (or set policy config requireClusterFirewall to false if it is managed "
        "outside this stack)."
    )
    if not firewalls:
        findings.add(
            f"the stack has {fleet} game/dev container(s) but no datacenter firewall "
            f"resource{why}{fix}"
        )
    for firewall in firewalls:
        with findings.reading():
            if firewall.props.get("enabled") is not True:
                findings.add(
                    f"the stack has {fleet} game/dev container(s) but its datacenter firewall "
                    f"{firewall.name} is not enabled{why}{fix}",
                    firewall.urn,
                )


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
    rules opening other ports or protocols, aliases or IP sets that resolve elsewhere,
    rule order, a second NIC on the management bridge.
    """
    readable: list[tuple[str, str, Any]] = []
    skip: set[int] = set()
    # A value of the host's own aliases, IP sets or groups found unreadable above.
    host_unreadable = False
    for resource in resources:
        if resource.type not in FIREWALL_STATE_TYPES:
            continue  # copying its properties would only be thrown away
        try:
            props = _plain(resource.props)
        except UnknownValueError:
            # Already reported by the checks above; judge its guest when it is known.
            with findings.reading(), contextlib.suppress(FirewallReadError):
                if resource.type in _KINDS:
                    skip.add(owner_vmid(resource.props) or -1)
            continue
        readable.append((resource.type, resource.name, props))
        if resource.urn in flagged and resource.type in (*_KINDS, SECURITY_GROUP):
            try:
                owner = owner_vmid(props)
            except FirewallReadError:
                continue  # it names no guest
            if owner is None:
                host_unreadable = True
            else:
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
        vmid = vmid_of(guest)
        view = views.get(vmid) if vmid is not None else None
        if view is None or vmid in skip:
            continue
        for iface in view.ifaces_on(config.management_bridge):
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
                    f"{label(guest)}: a firewall rule names what does not exist: {error}.",
                    guest.urn,
                )
                break
            except FirewallReadError as error:
                if not host_unreadable:
                    findings.add(
                        f"{label(guest)}: its firewall cannot be judged: {error}; {_CORRECT}",
                        guest.urn,
                    )
                break
            for entry in opened:
                _report(guest, iface, entry, allowed, config, findings)


def _report(
    guest: Resource,
    iface: str,
    entry: Exposure,
    allowed: Mapping[int, AddressSet],
    config: AgentPortConfig,
    findings: Findings,
) -> None:
    named = entry.proto == TCP and entry.first_port == entry.last_port
    permitted = allowed.get(entry.first_port) if named else None
    if permitted is not None and not (entry.sources - permitted):
        return
    if entry.proto == OTHER:
        what = "protocols other than TCP and UDP"
    elif entry.first_port == entry.last_port:
        what = f"{entry.proto.upper()} {entry.first_port}"
    else:
        what = f"{entry.proto.upper()} {entry.first_port}-{entry.last_port}"
    findings.add(
        f"{label(guest)}: its management NIC {iface} is reachable on {what} from "
        f"{entry.sources}; there only zpack-api ({config.api_address}, TCP "
        f"{config.agent_port}) and zlh-monitor ({config.monitor_address}, TCP "
        f"{config.metrics_port}) may connect: remove or narrow the rule, alias or IP set "
        "that opens it.",
        guest.urn,
    )
