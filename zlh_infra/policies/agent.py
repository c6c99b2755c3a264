"""The agent path: only zpack-api reaches zlh-agent, and every agent sits behind a firewall.

zlh-agent listens on TCP 18888 in every game and dev container, on the management
NIC. The seed allows one source, the API on the core host, over the management
network. Proxmox enforces that only when the datacenter firewall is on, the guest's
firewall options are enabled with inbound DROP, and the NIC carries ``firewall=1``.

Every firewall value is read by the evaluator's reader (``reachability.read_rule`` and
its kin), so the rule-by-rule checks and the proof of what reaches each management NIC
read a rule alike; a value the reader does not understand is a violation naming the
resource and the value.

A rule's source means something only if nothing else can send from it. Every game and
dev container must have ``ipfilter`` (it sends only from its own addresses) and
``macfilter`` (only with its own MAC) on; and no guest of the stack on the management
bridge may be able to send from zpack-api's or zlh-monitor's management address, which
the fleet's rules admit (``reachability.spoofers``). The management network spans the
hosts: each stack answers for its own guests on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy.proxy import UnknownValueError

from zlh_infra.platform.firewall_state import (
    FIREWALL_STATE_TYPES,
    GuestView,
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
    HostFirewall,
    RuleReading,
    Sender,
    Unfiltered,
    UnresolvedSourceError,
    covers,
    exposure,
    read_cidr,
    read_ipset_entry,
    read_rule,
    resolve_source,
    spoofers,
)
from zlh_infra.policies.config import AgentPortConfig
from zlh_infra.policies.resources import (
    CLUSTER_FIREWALL,
    CONTAINER,
    FIREWALL_ALIAS,
    FIREWALL_IPSET,
    FIREWALL_OPTIONS,
    FIREWALL_RULES,
    SECURITY_GROUP,
    Findings,
    Resource,
    is_fleet_guest,
    is_guest,
    label,
    nics_of,
    service_tags,
    vmid_of,
    whole_number,
)

_KINDS = {
    FIREWALL_RULES: "firewall rules",
    FIREWALL_OPTIONS: "firewall options",
    FIREWALL_ALIAS: "firewall alias",
    FIREWALL_IPSET: "firewall IP set",
}
_CORRECT = "correct the value, so the checks can tell what it lets in"


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
    """A game or dev guest: by role tag or by VMID range, either one makes it so."""
    return is_fleet_guest(resource, config.fleet_roles)


@dataclass(frozen=True, slots=True)
class _Names:
    """The stack's aliases and IP sets, to read a rule's named source by its addresses."""

    host: HostFirewall
    views: Mapping[int, GuestView]
    #: Names of aliases and IP sets whose values are not known yet (None: some name is not).
    pending: frozenset[str | None]

    def addresses(self, resource: Resource, rule: RuleReading) -> AddressSet | None:
        """What a rule's source with names stands for, in its resource's scope; None when it
        names none, or what it names is missing or unreadable (reported where it is written)."""
        sources = rule.sources
        if sources is None or all(item.addresses is not None for item in sources):
            return None
        view = None
        if resource.type != SECURITY_GROUP:
            with contextlib.suppress(FirewallReadError):
                view = self.views.get(owner_vmid(resource.props) or -1)
        try:
            return resolve_source(
                self.host,
                sources,
                guest_aliases=view.aliases if view else None,
                guest_ipsets=view.ipsets if view else None,
            )
        except FirewallReadError:
            return None

    def unknown(self, rule: RuleReading) -> bool:
        """Whether the rule names an alias or IP set whose value is not known yet."""
        names = {item.name for item in rule.sources or () if item.addresses is None}
        return bool(names) and (None in self.pending or bool(names & self.pending))


def _names_of(resources: Sequence[Resource]) -> _Names:
    readable: list[tuple[str, str, Any]] = []
    pending: set[str | None] = set()
    for resource in resources:
        if resource.type not in (FIREWALL_ALIAS, FIREWALL_IPSET):
            continue
        try:
            readable.append((resource.type, resource.name, _plain(resource.props)))
        except UnknownValueError:
            # Its value is reported as unknown by the name checks; a rule naming it waits.
            try:
                pending.add(str(resource.props.get("name")))
            except UnknownValueError:
                pending.add(None)
    host, views = read_firewall(readable)
    return _Names(host, views, frozenset(pending))


def _check_rules(
    resource: Resource, config: AgentPortConfig, names: _Names, findings: Findings
) -> None:
    rules = resource.props.get("rules")
    if rules is None:
        return
    owner = _owner(resource)
    if not isinstance(rules, Sequence) or isinstance(rules, str):
        findings.add(
            f"its rules {rules!r} are not a list of rules", _CORRECT, resource.urn, subject=owner
        )
        return
    port, api = config.agent_port, config.api_address
    for index in range(len(rules)):
        with findings.reading():
            entry = rules[index]
            if not isinstance(entry, Mapping):
                findings.add(
                    f"rule {index} ({entry!r}) is not a rule", _CORRECT, resource.urn, subject=owner
                )
                continue
            try:
                rule = read_rule(rule_from_props(entry))
            except FirewallReadError as error:
                findings.add(
                    f"rule {index}{_comment(entry)} cannot be judged: {error}",
                    _CORRECT,
                    resource.urn,
                    subject=owner,
                )
                continue
            if not admits_tcp_port(rule, port) or source_is(rule, config):
                continue
            resolved = names.addresses(resource, rule)
            if resolved == AddressSet.of(api):
                continue  # an alias or IP set holding the API's address only
            if resolved is None and names.unknown(rule):
                continue  # judged once what it names is known
            source = rule.rule.source
            origin = f"source {source}" if source else "any source"
            if resolved is not None:
                origin += f" (= {resolved})"
            findings.add(
                f"rule {index}{_comment(entry)} accepts TCP {port} from {origin}; only "
                f"zpack-api's management address {api} may reach zlh-agent",
                f"set its source to {api}/32, or narrow its proto and dport so they do not "
                f"cover {port}",
                resource.urn,
                subject=owner,
                joint=": ",
            )


def _comment(rule: Mapping[str, Any]) -> str:
    return f" ({rule.get('comment')})" if rule.get("comment") else ""


def _check_owner(resource: Resource, findings: Findings) -> int | None:
    """The VMID a firewall resource belongs to (None for the host's); reports an unreadable one."""
    try:
        return owner_vmid(resource.props)
    except FirewallReadError as error:
        findings.add(
            str(error),
            "set it to the VMID of the guest it belongs to",
            resource.urn,
            subject=_owner(resource),
        )
        return None


def _check_names(resource: Resource, findings: Findings) -> None:
    """An alias's address and an IP set's entries, as the evaluator reads them."""
    owner = _owner(resource)
    if resource.type == FIREWALL_ALIAS:
        try:
            read_cidr(resource.props.get("cidr"))
        except FirewallReadError as error:
            findings.add(str(error), _CORRECT, resource.urn, subject=owner)
        return
    entries = resource.props.get("cidrs") or []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        findings.add(
            f"its cidrs {entries!r} are not a list of entries",
            _CORRECT,
            resource.urn,
            subject=owner,
        )
        return
    for index in range(len(entries)):
        with findings.reading():
            entry = entries[index]
            try:
                read_ipset_entry(entry.get("name") if isinstance(entry, Mapping) else entry)
            except FirewallReadError as error:
                findings.add(str(error), _CORRECT, resource.urn, subject=owner)


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
            "and zpack-api reaches it",
            f"give it a NIC on {bridge} with firewall=true",
            guest.urn,
        )
    for nic in nics:
        if not nic.firewall:
            which = "management NIC" if nic.bridge == bridge else "NIC"
            findings.add(
                f"its {which} {nic.iface} on {nic.bridge} has firewall=false, so its firewall "
                "rules do not apply there",
                "set firewall=true on it",
                guest.urn,
                subject=name,
            )
    if not options:
        findings.add(
            f"{name} has no firewall options, so its firewall stays off (Proxmox's default) "
            "and zlh-agent is open to the whole management network",
            "add firewall options for it with enabled=true and input_policy DROP",
            guest.urn,
        )
    for option in options:
        with findings.reading():
            if option.props.get("enabled") is not True:
                findings.add(
                    f"firewall options {option.name} leave its firewall disabled",
                    "set enabled=true",
                    option.urn,
                    subject=name,
                )
            # The provider's default inbound policy is DROP.
            policy = str(option.props.get("inputPolicy") or "DROP").upper()
            if policy != "DROP":
                findings.add(
                    f"firewall options {option.name} set input_policy {policy}",
                    "set it to DROP so only the rules' ACCEPTs reach the container",
                    option.urn,
                    subject=name,
                )


def _state_of(value: object, key: str) -> str | None:
    """How options leave ``ipfilter`` or ``macfilter`` when not true; None when true."""
    if value is True:
        return None
    if value is None:
        return f"leave {key} unset"
    if value is False:
        return f"turn {key} off"
    return f"set {key} to {value!r}, which is not true or false"


def _check_fleet_filters(
    guest: Resource, options: Sequence[Resource], config: AgentPortConfig, findings: Findings
) -> bool:
    """ipfilter and macfilter on: the container can pass neither as zpack-api nor as a MAC.

    False when a value is not true or false, or not known yet.
    """
    name = label(guest)
    judged = True
    own = (
        "so Proxmox lets it send from its configured addresses only"
        if guest.type == CONTAINER
        else "and list the VM's own addresses in an IP set ipfilter-net<N> (Proxmox adds no "
        "VM's addresses to it)"
    )
    for option in options:
        readable = False
        with findings.reading():
            values = [option.props.get(key) for key in ("ipfilter", "macfilter")]
            readable = all(value is None or isinstance(value, bool) for value in values)
            state = _state_of(values[0], "ipfilter")
            if state is not None:
                findings.add(
                    f"firewall options {option.name} {state}, so the guest can send from any "
                    f"address, zpack-api's management address {config.api_address} among "
                    "them, and reach every zlh-agent as zpack-api",
                    f"set ipfilter=true, {own}",
                    option.urn,
                    subject=name,
                )
            state = _state_of(values[1], "macfilter")
            if state is not None:
                findings.add(
                    f"firewall options {option.name} {state}, so the guest can send with "
                    "another guest's MAC address and receive what the bridge delivers to that "
                    "guest",
                    "set macfilter=true",
                    option.urn,
                    subject=name,
                )
        judged = judged and readable
    return judged


def check_agent_port(resources: Sequence[Resource], config: AgentPortConfig) -> Findings:
    """Agent-port rules name only the API; game/dev guests have their firewall on, with
    ipfilter and macfilter; no other guest on the management bridge can send from the
    API's or the monitor's address."""
    findings = Findings()
    names = _names_of(resources)
    options_of: dict[int, list[Resource]] = {}
    fleet: list[Resource] = []
    guests: list[Resource] = []
    cluster_firewalls: list[Resource] = []
    for resource in resources:
        with findings.reading():
            if resource.type in _KINDS:
                owner = _check_owner(resource, findings)
                if resource.type == FIREWALL_OPTIONS and owner is not None:
                    options_of.setdefault(owner, []).append(resource)
            if resource.type in (FIREWALL_RULES, SECURITY_GROUP):
                _check_rules(resource, config, names, findings)
            elif resource.type in (FIREWALL_ALIAS, FIREWALL_IPSET):
                _check_names(resource, findings)
            elif resource.type == CLUSTER_FIREWALL:
                cluster_firewalls.append(resource)
            elif is_guest(resource):
                if is_fleet(resource, config):
                    fleet.append(resource)
                guests.append(resource)
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
            clean = len(findings.violations) == before
            # What the guest sends does not change what reaches it: judged either way,
            # unless an option is unreadable (then the evaluator cannot read the guest).
            if _check_fleet_filters(guest, options, config, findings) and clean:
                exposed.append(guest)
    reported = {urn for violation in findings.violations if (urn := violation.urn)}
    state = _read_state(resources, flagged, config, findings)
    if exposed:
        _check_exposure(state, exposed, config, findings)
    _check_datacenter(cluster_firewalls, len(fleet), config, findings)
    _check_spoofing(
        state,
        _Spoofing(guests, {g.urn for g in fleet}, options_of, reported, cluster_firewalls),
        config,
        findings,
        datacenter_reported=bool(fleet) and config.require_cluster_firewall,
    )
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
            "which the two would overwrite in turn",
            "remove it",
            extra.urn,
            joint=": ",
        )
    if not fleet or not config.require_cluster_firewall:
        return
    why = "; Proxmox applies guest firewall rules only while the datacenter firewall is on"
    fix = (
        "enable it (or set policy config requireClusterFirewall to false if it is managed "
        "outside this stack)"
    )
    if not firewalls:
        findings.add(
            f"the stack has {fleet} game/dev container(s) but no datacenter firewall resource{why}",
            fix,
            joint=": ",
        )
    for firewall in firewalls:
        with findings.reading():
            if firewall.props.get("enabled") is not True:
                findings.add(
                    f"the stack has {fleet} game/dev container(s) but its datacenter firewall "
                    f"{firewall.name} is not enabled{why}",
                    fix,
                    firewall.urn,
                    joint=": ",
                )


def _plain(value: Any) -> Any:
    """A deep, plain copy of a property value (reads every value once)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(item) for item in value]
    return value


#: Stands for the datacenter among the VMIDs of ``_State``.
_HOST = -1


@dataclass(slots=True)
class _State:
    """The host's firewall as the evaluator reads it, and what not to judge again."""

    host: HostFirewall
    views: dict[int, GuestView]
    #: Guests one of whose firewall resources was unreadable, or already found wrong.
    skip: set[int]
    #: Guests one of whose firewall resources holds a value not known yet (``_HOST``: a
    #: datacenter alias, IP set or security group, which any guest may name).
    unknown: set[int]
    #: A value of the host's own aliases, IP sets or groups was found unreadable above.
    host_unreadable: bool
    #: Guests whose firewall the exposure check found it cannot read (and said so).
    unjudged: set[int] = dataclasses.field(default_factory=set)


def _read_state(
    resources: Sequence[Resource], flagged: set[str], config: AgentPortConfig, findings: Findings
) -> _State:
    """Every readable firewall resource through ``read_firewall``, once for all checks."""
    readable: list[tuple[str, str, Any]] = []
    skip: set[int] = set()
    unknown: set[int] = set()
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
                    unknown.add(owner_vmid(resource.props) or _HOST)
                elif resource.type == SECURITY_GROUP:
                    unknown.add(_HOST)
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
    return _State(host, views, skip | unknown, unknown, host_unreadable)


def _check_exposure(
    state: _State, fleet: Sequence[Resource], config: AgentPortConfig, findings: Findings
) -> None:
    """Prove, with the reachability evaluator, what reaches each management NIC.

    The per-rule checks above catch a wrong source on a rule; this catches the rest:
    rules opening other ports or protocols, aliases or IP sets that resolve elsewhere,
    rule order, a second NIC on the management bridge.
    """
    host, views, skip = state.host, state.views, state.skip
    if not host.enabled:
        return  # reported by the datacenter check: nothing on this host is filtered yet
    allowed = {
        config.agent_port: AddressSet.of(config.api_address),
        config.metrics_port: AddressSet.of(config.monitor_address),
    }
    for guest in fleet:
        vmid = vmid_of(guest)
        view = views.get(vmid) if vmid is not None else None
        if vmid is None or view is None or vmid in skip:
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
                state.unjudged.add(vmid)
                if _HOST in state.unknown:
                    break  # it may name what is not known yet
                findings.add(
                    f"a firewall rule names what does not exist: {error}",
                    "define what it names, or correct the rule's source",
                    guest.urn,
                    subject=label(guest),
                )
                break
            except FirewallReadError as error:
                state.unjudged.add(vmid)
                if not state.host_unreadable:
                    findings.add(
                        f"its firewall cannot be judged: {error}",
                        _CORRECT,
                        guest.urn,
                        subject=label(guest),
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
        f"its management NIC {iface} is reachable on {what} from {entry.sources}; there only "
        f"zpack-api ({config.api_address}, TCP {config.agent_port}) and zlh-monitor "
        f"({config.monitor_address}, TCP {config.metrics_port}) may connect",
        "remove or narrow the rule, alias or IP set that opens it",
        guest.urn,
        subject=label(guest),
        joint=": ",
    )


# --- who can send from the addresses the fleet's rules admit ------------------------------


@dataclass(frozen=True, slots=True)
class _Spoofing:
    """What the spoofing check needs of the resources gathered above."""

    guests: Sequence[Resource]
    #: URNs of the game/dev guests, whose filter options are judged above.
    fleet: set[str]
    options_of: Mapping[int, Sequence[Resource]]
    #: URNs already reported by the checks above.
    reported: set[str]
    datacenter: Sequence[Resource]


def _admitted(config: AgentPortConfig) -> list[tuple[str, AddressSet, int, str]]:
    """(service, address, port, description) of each source the fleet's rules admit."""
    return [
        (
            "zpack-api",
            AddressSet.of(config.api_address),
            config.agent_port,
            f"zpack-api's management address {config.api_address} (the zlh-agent rule's source)",
        ),
        (
            "zlh-monitor",
            AddressSet.of(config.monitor_address),
            config.metrics_port,
            f"zlh-monitor's management address {config.monitor_address} (the metrics scrape "
            "rule's source)",
        ),
    ]


def _check_spoofing(
    state: _State,
    seen: _Spoofing,
    config: AgentPortConfig,
    findings: Findings,
    *,
    datacenter_reported: bool,
) -> None:
    """No guest on the management bridge can send from an address the fleet's rules admit.

    The address's own guest (tagged with its service and configured with it) may; any
    other guest that can is a finding naming why Proxmox lets it (its filter options, its
    NIC, its ipfilter IP set, its configured address) and how to stop it.
    """
    bridge = config.management_bridge
    senders: list[Sender] = []
    guest_of: dict[int, Resource] = {}
    services: dict[int, list[str]] = {}
    for guest in seen.guests:
        with findings.reading():
            vmid = vmid_of(guest)
            view = state.views.get(vmid) if vmid is not None else None
            # A VMID used twice is zlh-vmid-unique's finding; the first guest speaks for it.
            if vmid is None or view is None or vmid in state.unknown or vmid in guest_of:
                continue
            services[vmid] = service_tags(guest)
            guest_of[vmid] = guest
            try:
                found = view.senders(state.host)
            except FirewallReadError as error:
                said = vmid in state.skip or vmid in state.unjudged or _already(guest, seen)
                if not (said or state.host_unreadable or _HOST in state.unknown):
                    findings.add(
                        f"what it may send cannot be judged: {error}",
                        _CORRECT,
                        guest.urn,
                        subject=label(guest),
                    )
                continue
            senders += [nic for nic in found if nic.bridge == bridge]
    # Per NIC: the addresses it can forge, and which of the admitted sources they are.
    forged: dict[Sender, tuple[AddressSet, list[str]]] = {}
    for service, addresses, port, what in _admitted(config):
        owners = {
            nic.vmid for nic in senders if not addresses - nic.own and service in services[nic.vmid]
        }
        for nic, part in spoofers(senders, addresses, owners=owners, proto=TCP, port=port):
            before, whats = forged.get(nic, (AddressSet(), []))
            forged[nic] = (before | part, [*whats, what])
    unfiltered: list[tuple[Resource, Sender, list[str]]] = []
    for nic in senders:
        if nic not in forged:
            continue
        part, whats = forged[nic]
        guest = guest_of[nic.vmid]
        if nic.unfiltered is Unfiltered.DATACENTER:
            unfiltered.append((guest, nic, whats))
        elif nic.unfiltered is not None and guest.urn in seen.fleet:
            continue  # its filter options or NIC flag are reported above
        else:
            why, fix, urn = _why(guest, nic, part, seen.options_of.get(nic.vmid, ()))
            findings.add(
                f"its NIC {nic.iface} on the management bridge {bridge} can send from "
                f"{' and '.join(whats)}, because {why}",
                fix,
                urn,
                subject=label(guest),
            )
    if unfiltered and not datacenter_reported:
        with findings.reading():
            _report_unfiltered(unfiltered, seen.datacenter, config, findings)


def _already(guest: Resource, seen: _Spoofing) -> bool:
    """Whether the checks above reported the guest or its firewall options."""
    vmid = vmid_of(guest)
    options = seen.options_of.get(vmid, ()) if vmid is not None else ()
    return guest.urn in seen.reported or any(o.urn in seen.reported for o in options)


def _why(
    guest: Resource, nic: Sender, part: AddressSet, options: Sequence[Resource]
) -> tuple[str, str, str]:
    """Why Proxmox lets ``nic`` send from ``part``, the fix, and the resource to fix."""
    option = options[0] if options else None
    named = f"its firewall options {option.name}" if option else "its firewall options"
    if nic.unfiltered is Unfiltered.GUEST:
        if option is None:
            return (
                "it has no firewall options, so its firewall stays off and nothing filters "
                "what it sends",
                "add firewall options for it with enabled=true and ipfilter=true",
                guest.urn,
            )
        return (
            f"{named} leave its firewall disabled, and Proxmox filters what a guest sends "
            "only while its firewall is on",
            "set enabled=true and ipfilter=true in them",
            option.urn,
        )
    if nic.unfiltered is Unfiltered.NIC:
        return (
            f"{nic.iface} has firewall=false, and Proxmox filters what a NIC sends only with "
            "the flag on",
            f"set firewall=true on {nic.iface}",
            guest.urn,
        )
    if nic.unfiltered is Unfiltered.IPFILTER:
        own = (
            "so Proxmox lets it send from its configured addresses only"
            if guest.type == CONTAINER
            else f"and list the VM's own addresses in an IP set ipfilter-{nic.iface} (Proxmox "
            "adds no VM's addresses to it)"
        )
        return (
            f"{named} leave ipfilter off",
            f"set ipfilter=true in them, {own}",
            option.urn if option else guest.urn,
        )
    if part & nic.own:
        return (
            f"{nic.iface} is configured with {part & nic.own}",
            f"give {nic.iface} an address of its own",
            guest.urn,
        )
    return (
        f"its IP set ipfilter-{nic.iface} admits {part}",
        f"keep only {nic.iface}'s own addresses in that IP set",
        guest.urn,
    )


def _report_unfiltered(
    unfiltered: Sequence[tuple[Resource, Sender, list[str]]],
    datacenter: Sequence[Resource],
    config: AgentPortConfig,
    findings: Findings,
) -> None:
    """One finding for every guest the datacenter firewall leaves unfiltered."""
    names = ", ".join(dict.fromkeys(label(guest) for guest, _, _ in unfiltered))
    found = {what for _, _, whats in unfiltered for what in whats}
    whats = " and ".join(what for *_, what in _admitted(config) if what in found)
    off = next((f for f in datacenter if f.props.get("enabled") is not True), None)
    if off is not None:
        what, fix = f"datacenter firewall {off.name} is not enabled", "enable it"
    else:
        what, fix = "the stack has no datacenter firewall resource", "add one with enabled=true"
    findings.add(
        f"{what}, so Proxmox filters nothing a guest sends: {names} on the management bridge "
        f"{config.management_bridge} can send from {whats}",
        f"{fix} (or set policy config requireClusterFirewall to false if it is managed "
        "outside this stack)",
        off.urn if off is not None else None,
    )
