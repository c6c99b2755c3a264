"""The platform's rules, applied to what the hosts hold.

The rules are the policy pack's own checks (``zlh_infra.policies``), run on the live
guests, firewall and backup jobs converted to the provider's property shape, so a
rule has one definition for ``pulumi preview`` and for the audit. The agent path, the
nodes' own firewall and the tenants' egress are proved by the pack's checks with the
firewall reachability evaluator on the host's real firewall state, and zpack-api's
Proxmox identity by the validator the pack runs on the stack's declaration. The audit
adds what only a live host shows: VMIDs unique across hosts, game/dev containers the
platform API made (in zpack-api's VMIDs, its pool, with the platform's tags), whether
zpack-api can still reach each agent, and the ACL entries Proxmox removed when it
destroyed a server.

Which guests the rules cover: those Pulumi manages (tagged ``zlh`` and among the
stack's recorded VMIDs), and every game or dev container whoever made it, since the
platform API creates those. Any other guest is reported as unmanaged, for information,
and held only to what it can send on the management network: one that can send from
zpack-api's address undoes the agent path's firewall, whoever made it.

Adapters, where a check reads what a live host does not hold as the program writes it:

- rule sources naming an alias or IP set are resolved to addresses (by the evaluator)
  before the agent check reads them, and its messages then say which name a rule wrote
  and what it stands for, or that it names nothing on the host;
- a game/dev container without a role tag gets the role of its VMID range, so the
  stateful check sees it as the pack's VMID fallback for the fleet does;
- Pulumi's ``protect`` option is not on a host: the audit judges Proxmox protection only;
- the host firewall check judges the nodes guests run on; the audit hands it the
  audited node as a placeholder guest, so a node without guests is judged too, and it
  names the datacenter's and the node's firewall by their files (``cluster.fw``,
  ``host.fw``) instead of provider types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from zlh_infra.platform import firewall_state as fs
from zlh_infra.platform.api_identity import (
    BACKUP_STORAGE,
    FLEET_POOL,
    FLEET_ROLE,
    ROLES,
    USER_ID,
    AclEntry,
    ApiIdentityError,
    IdentityInputs,
    acl_entries,
    acls_from_proxmox,
    check_identity,
    identity_acls,
    missing_acls,
    roles_from_proxmox,
)
from zlh_infra.platform.firewall_state import GuestView, read_firewall
from zlh_infra.platform.reachability import (
    FirewallReadError,
    GuestFirewall,
    HostFirewall,
    Rule,
    UnresolvedSourceError,
    reachable_from,
    read_source,
)
from zlh_infra.platform.topology import PLATFORM_TAG, TAG_PREFIX_ROLE, Layer, StackRole, guest_tags
from zlh_infra.platform.vmids import (
    DEFAULT_SCHEME,
    FLEET_ROLES,
    VmidRole,
    fleet_owner_problem,
    fleet_split,
)
from zlh_infra.policies import config as cfg
from zlh_infra.policies import pack
from zlh_infra.policies.agent import check_agent_port, is_fleet
from zlh_infra.policies.egress import check_tenant_egress
from zlh_infra.policies.host import check_host_firewall
from zlh_infra.policies.placement import (
    check_control_plane_independent,
    check_placement,
    check_runtime_isolation,
)
from zlh_infra.policies.resilience import check_stateful_protected
from zlh_infra.policies.resources import (
    Findings,
    Resource,
    Violation,
    label,
    role_tags,
    tags_of,
)
from zlh_infra.policies.vmid import check_vmid_range, check_vmid_unique
from zlh_infra.tooling.audit.client import GuestRecord, HostSnapshot, IdentityRecord
from zlh_infra.tooling.audit.convert import (
    backup_job_resource,
    firewall_resources,
    guest_resource,
    host_firewall_resources,
    pbs_storage_resources,
)
from zlh_infra.tooling.audit.targets import AuditPlan

Severity = Literal["error", "info"]

RULE_VMID_RANGE = pack.vmid_range.name
RULE_VMID_UNIQUE = pack.vmid_unique.name
RULE_PLACEMENT = pack.guest_placement.name
RULE_INDEPENDENT = pack.control_plane_independent.name
RULE_ISOLATION = pack.runtime_isolation.name
RULE_AGENT = pack.agent_port.name
RULE_HOST = pack.host_firewall.name
RULE_EGRESS = pack.tenant_egress.name
RULE_STATEFUL = pack.stateful_protected.name
RULE_API_SERVERS = "zlh-api-servers"
RULE_IDENTITY = pack.api_identity.name
RULE_UNMANAGED = "unmanaged"
RULE_MISSING = "missing"

#: Every rule the audit applies, in report order, with one sentence each.
RULES: dict[str, str] = {
    RULE_VMID_RANGE: pack.vmid_range.description,
    RULE_VMID_UNIQUE: "No two guests on the audited hosts share a VMID.",
    RULE_PLACEMENT: pack.guest_placement.description,
    RULE_INDEPENDENT: pack.control_plane_independent.description,
    RULE_ISOLATION: pack.runtime_isolation.description,
    RULE_AGENT: pack.agent_port.description
    + " On a live host also: zpack-api can reach every agent.",
    RULE_HOST: pack.host_firewall.description,
    RULE_EGRESS: pack.tenant_egress.description,
    RULE_STATEFUL: "Every guest that holds data has Proxmox protection on and is in an "
    "enabled backup job of its host.",
    RULE_API_SERVERS: "Every game and dev container's VMID is in its owner's part of the range "
    "(the stack's for a declared one, zpack-api's otherwise), and each one zpack-api made "
    f"is in pool {FLEET_POOL} with the platform's tags.",
    RULE_IDENTITY: pack.api_identity.description
    + " On a live host also: the ACL entries Proxmox removed with a destroyed server "
    "(information).",
    RULE_UNMANAGED: "A guest Pulumi does not manage (information).",
    RULE_MISSING: "A guest the stack declares but the host does not have (information).",
}


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    rule: str
    stack: str
    node: str | None
    guest: str | None
    vmid: int | None
    problem: str
    fix: str


@dataclass(slots=True)
class LiveGuest:
    snapshot: HostSnapshot
    record: GuestRecord
    resource: Resource
    managed: bool
    fleet: bool

    @property
    def in_scope(self) -> bool:
        return self.managed or self.fleet

    @property
    def stack(self) -> str:
        return self.snapshot.target.stack

    def finding(self, rule: str, problem: str, fix: str, severity: Severity = "error") -> Finding:
        return Finding(
            severity,
            rule,
            self.stack,
            self.record.node,
            self.record.name,
            self.record.vmid,
            problem,
            fix,
        )


def audit(snapshots: Sequence[HostSnapshot], plan: AuditPlan) -> list[Finding]:
    """Every finding on the hosts read, errors and information, in report order."""
    agent_configs = {
        snapshot.target.stack: cfg.AGENT.parse(
            RULE_AGENT,
            {
                "apiAddress": str(plan.api_address),
                "monitorAddress": str(plan.monitor_address),
                "managementBridge": snapshot.target.management_bridge,
            },
        )
        for snapshot in snapshots
    }
    guests = _live_guests(snapshots, agent_configs)
    findings: list[Finding] = []
    for guest in guests:
        if not guest.managed:
            findings.append(_unmanaged(guest))
    findings += _missing(snapshots, guests)
    scoped = [guest for guest in guests if guest.in_scope]
    by_urn = {guest.resource.urn: guest for guest in guests}

    range_config = cfg.VMID_RANGE.parse(RULE_VMID_RANGE, None)
    for guest in scoped:
        violations = check_vmid_range(guest.resource, range_config)
        findings += _from_violations(guest, RULE_VMID_RANGE, violations)

    # Guests out of scope go first, so a clash with one is reported on the guest in scope.
    ordered = [g.resource for g in guests if not g.in_scope] + [g.resource for g in scoped]
    unique = check_vmid_unique(ordered, cfg.VMID_UNIQUE.parse(RULE_VMID_UNIQUE, None))
    findings += _from_findings(unique, RULE_VMID_UNIQUE, by_urn, scoped_only=True)

    findings += _placement(snapshots, scoped, plan)
    stateful_config = cfg.STATEFUL.parse(RULE_STATEFUL, None)
    for snapshot in snapshots:
        on_host = [g for g in scoped if g.snapshot is snapshot]
        hosted = [g for g in guests if g.snapshot is snapshot]
        findings += _agent_path(snapshot, hosted, plan, agent_configs[snapshot.target.stack])
        findings += _host_firewall(snapshot, hosted, plan)
        findings += _egress(snapshot, hosted)
        findings += _stateful(snapshot, on_host, stateful_config)
        findings += _api_servers(snapshot, on_host)
        findings += _identity(snapshot, plan)
    return sorted(findings, key=_order(snapshots))


# --- which guests ----------------------------------------------------------------


def _live_guests(
    snapshots: Sequence[HostSnapshot], agent_configs: Mapping[str, cfg.AgentPortConfig]
) -> list[LiveGuest]:
    nodes = {snapshot.target.node for snapshot in snapshots}
    guests = []
    for snapshot in snapshots:
        target = snapshot.target
        config = agent_configs[target.stack]
        for record in snapshot.guests:
            # Hosts joined in one cluster list each other's guests: audit each on its own host.
            if record.node != target.node and record.node in nodes:
                continue
            resource = guest_resource(snapshot, record)
            role = DEFAULT_SCHEME.role_of(record.vmid)
            in_fleet_range = (
                not record.template and role is not None and role.value in config.fleet_roles
            )
            guests.append(
                LiveGuest(
                    snapshot=snapshot,
                    record=record,
                    resource=resource,
                    managed=PLATFORM_TAG in tags_of(resource) and record.vmid in target.recorded,
                    fleet=is_fleet(resource, config) or in_fleet_range,
                )
            )
    return guests


def _unmanaged(guest: LiveGuest) -> Finding:
    target = guest.snapshot.target
    if PLATFORM_TAG not in tags_of(guest.resource):
        why = f"it has no {PLATFORM_TAG} tag"
    elif target.stack_file is None:
        why = f"stack {target.stack} has no stack file to record its VMIDs"
    else:
        why = f"VMID {guest.record.vmid} is not among the VMIDs {target.stack_file.name} declares"
    if guest.fleet:
        role = DEFAULT_SCHEME.role_of(guest.record.vmid)
        return guest.finding(
            RULE_UNMANAGED,
            f"not managed by Pulumi ({why}); as a game/dev container ("
            + (
                f"VMID in the {role} range {DEFAULT_SCHEME.range_of(role).describe()}"
                if role is not None
                else "by its role tag"
            )
            + ") it is held to the platform's rules all the same",
            "Nothing, if the platform API made it; otherwise declare it in the stack's "
            "configuration or remove it.",
            severity="info",
        )
    return guest.finding(
        RULE_UNMANAGED,
        f"not managed by Pulumi ({why}); the platform's rules do not apply to it",
        "Nothing, if it was made by hand on purpose; if it is a platform guest, declare it in "
        "the stack's configuration and import it with `pulumi import`.",
        severity="info",
    )


def _missing(snapshots: Sequence[HostSnapshot], guests: Sequence[LiveGuest]) -> list[Finding]:
    present = {(g.stack, g.record.vmid) for g in guests}
    found = []
    for snapshot in snapshots:
        target = snapshot.target
        for vmid, key in sorted(target.recorded.items()):
            if (target.stack, vmid) not in present:
                found.append(
                    Finding(
                        "info",
                        RULE_MISSING,
                        target.stack,
                        target.node,
                        None,
                        vmid,
                        f"stack {target.stack} declares VMID {vmid} (zlh-infra:{key}) but the "
                        "host has no guest with it",
                        f"Run `pulumi up -s {target.stack}` to create it, or remove it from the "
                        "stack's configuration.",
                    )
                )
    return found


# --- placement ---------------------------------------------------------------------


def _placement(
    snapshots: Sequence[HostSnapshot], scoped: Sequence[LiveGuest], plan: AuditPlan
) -> list[Finding]:
    stack_nodes = {**cfg.DEFAULT_STACK_NODES, **{s.target.stack: s.target.node for s in snapshots}}
    placement = cfg.PLACEMENT.parse(RULE_PLACEMENT, {"stackNodes": stack_nodes})
    independence = cfg.INDEPENDENCE.parse(RULE_INDEPENDENT, {"coreNode": plan.core_node})
    isolation = cfg.ISOLATION.parse(RULE_ISOLATION, {"coreNode": plan.core_node})
    by_urn = {guest.resource.urn: guest for guest in scoped}
    findings: list[Finding] = []
    for guest in scoped:
        violations = check_placement(guest.resource, placement, guest.stack)
        findings += _from_violations(guest, RULE_PLACEMENT, violations)
        if guest.snapshot.target.role is StackRole.RUNTIME:
            violations = check_runtime_isolation(guest.resource, isolation, guest.stack)
            findings += _from_violations(guest, RULE_ISOLATION, violations)
    for snapshot in snapshots:
        if snapshot.target.role is not StackRole.CORE:
            continue
        stack = snapshot.target.stack
        on_host = [g for g in scoped if g.snapshot is snapshot]
        independent = check_control_plane_independent(
            [g.resource for g in on_host], independence, stack
        )
        # The pack judges role and VMID range too, so an untagged container shows.
        findings += _from_findings(independent, RULE_INDEPENDENT, by_urn, scoped_only=True)
    return findings


# --- the agent path ------------------------------------------------------------------


def _agent_path(
    snapshot: HostSnapshot,
    hosted: Sequence[LiveGuest],
    plan: AuditPlan,
    config: cfg.AgentPortConfig,
) -> list[Finding]:
    """The pack's agent-port check on the host's firewall, then zpack-api's reach.

    The check sees the fleet's whole firewall, and of every other guest on the host,
    whoever made it, what bounds what it sends (its NICs and addresses, firewall options
    and ipfilter IP sets): a guest that can send from zpack-api's address on the
    management network undoes every agent's firewall.
    """
    fleet = [g for g in hosted if g.fleet and not g.record.template]
    host_firewall, views = read_firewall(
        (r.type, r.name, r.props) for r in firewall_resources(snapshot)
    )
    # The fleet's firewall, and the security groups its rules use, with names resolved.
    used_groups = {
        str(rule.get("action"))
        for guest in fleet
        for rule in guest.record.firewall_rules
        if rule.get("type") == "group"
    }
    by_vmid = {guest.record.vmid: guest for guest in hosted}
    fleet_vmids = {guest.record.vmid for guest in fleet}
    resources = []
    shown: dict[str, dict[str, str]] = {}
    by_urn: dict[str, LiveGuest] = {}
    for resource in firewall_resources(snapshot, [g.record for g in hosted]):
        owner = resource.props.get("containerId") or resource.props.get("vmId")
        guest = by_vmid.get(owner) if isinstance(owner, int) else None
        if resource.type == fs.SECURITY_GROUP and resource.name not in used_groups:
            continue
        if guest is not None and owner not in fleet_vmids and not _bounds_sending(resource, guest):
            continue
        if resource.type in (fs.RULES, fs.SECURITY_GROUP):
            resource, shown[resource.urn] = _with_literal_sources(
                resource, host_firewall, views.get(owner or -1)
            )
        resources.append(resource)
        if guest is not None:
            by_urn[resource.urn] = guest
    found = check_agent_port(resources, config)
    # Say which name a rule wrote, not only the addresses the check was given.
    for index, violation in enumerate(found.violations):
        problem = violation.problem
        for text, display in shown.get(violation.urn or "", {}).items():
            problem = problem.replace(f"from source {text};", f"from source {display};")
        found.violations[index] = dataclasses.replace(violation, problem=problem)
    findings = _from_findings(found, RULE_AGENT, by_urn, host=snapshot)

    # The pack proves nothing but the API reaches the agent; a live host must show it does.
    for guest in fleet:
        view = views.get(guest.record.vmid)
        iface = view.iface_on(config.management_bridge) if view is not None else None
        if view is None or iface is None:
            continue  # no management NIC: reported by the pack's check
        try:
            sources = reachable_from(
                host_firewall,
                view.firewall(),
                iface=iface,
                proto="tcp",
                port=config.agent_port,
                guest_aliases=view.aliases,
                guest_ipsets=view.ipsets,
            )
        except FirewallReadError:
            continue  # reported by the pack's check
        if plan.api_address not in sources:
            findings.append(
                guest.finding(
                    RULE_AGENT,
                    f"zpack-api ({plan.api_address}) cannot reach zlh-agent (TCP "
                    f"{config.agent_port}) on {iface} ({config.management_bridge}), so the "
                    "platform cannot manage this container",
                    f"Add an ACCEPT rule for TCP {config.agent_port} on {iface} from "
                    f"{plan.api_address}/32 above any rule that drops or rejects it.",
                )
            )
    return findings


def _bounds_sending(resource: Resource, guest: LiveGuest) -> bool:
    """Whether a resource of a guest outside the fleet bears on what the guest sends."""
    if resource.type in (fs.CONTAINER, fs.VM, fs.OPTIONS):
        return True
    filters = [name for name in guest.record.ipsets if name.startswith("ipfilter-net")]
    if resource.type == fs.IPSET:
        return resource.name in filters
    # The entries of an ipfilter set may name the guest's aliases.
    return resource.type == fs.ALIAS and bool(filters)


def _with_literal_sources(
    resource: Resource, host: HostFirewall, view: GuestView | None
) -> tuple[Resource, dict[str, str]]:
    """The rules of ``resource`` with alias and IP set sources replaced by their addresses.

    Also returns, per source text the check will quote, how to show it to a person.
    """
    rules = []
    shown: dict[str, str] = {}
    for rule in resource.props.get("rules") or []:
        source = rule.get("source")
        if isinstance(source, str) and source:
            literal = literal_source(source, host, view)
            if literal is None:
                shown[source] = f"{source}, which names no alias or IP set on the host"
            elif literal != source:
                shown[literal] = f"{source} (= {literal})"
                rule = {**rule, "source": literal}
        rules.append(rule)
    return dataclasses.replace(resource, props={**resource.props, "rules": rules}), shown


def literal_source(source: str, host: HostFirewall, view: GuestView | None) -> str | None:
    """What a rule's source names, as addresses; None when it names nothing that exists.

    The evaluator resolves it: a probe guest accepting everything from ``source``
    is reachable from exactly the addresses the source stands for.
    """
    try:
        items = read_source(source) or ()
    except FirewallReadError:
        return source  # the pack's check reports the value itself
    if all(item.addresses is not None for item in items):
        return source
    probe = GuestFirewall(enabled=True, nic_firewall={"net0": True}, rules=(Rule(source=source),))
    try:
        resolved = reachable_from(
            dataclasses.replace(host, enabled=True),
            probe,
            iface="net0",
            proto="tcp",
            port=1,
            guest_aliases=view.aliases if view else None,
            guest_ipsets=view.ipsets if view else None,
        )
    except UnresolvedSourceError:
        return None
    except FirewallReadError:
        return source  # an alias or IP set the pack's check reports
    # An empty set cannot be written as addresses (no source means any): keep the name.
    return ",".join(str(network) for network in resolved.networks()) or source


# --- stateful guests -----------------------------------------------------------------


def _stateful(
    snapshot: HostSnapshot, on_host: Sequence[LiveGuest], config: cfg.StatefulConfig
) -> list[Finding]:
    resources: list[Resource] = []
    by_urn: dict[str, LiveGuest] = {}
    for guest in on_host:
        by_urn[guest.resource.urn] = guest
        resource = guest.resource
        role = DEFAULT_SCHEME.role_of(guest.record.vmid)
        if guest.fleet and not role_tags(resource) and role is not None:
            props = {**resource.props, "tags": [*tags_of(resource), TAG_PREFIX_ROLE + role.value]}
            resource = dataclasses.replace(resource, props=props)
        # Pulumi's protect option lives in Pulumi's state, not on the host.
        resources.append(dataclasses.replace(resource, protect=True))
    for job in snapshot.backup_jobs:
        converted = backup_job_resource(snapshot, job)
        if converted is not None:
            resources.append(converted)
    resources += pbs_storage_resources(snapshot)
    found = check_stateful_protected(resources, config, snapshot.target.stack)
    return _from_findings(found, RULE_STATEFUL, by_urn, host=snapshot)


# --- the nodes' own firewall -----------------------------------------------------------


def _host_firewall(
    snapshot: HostSnapshot, hosted: Sequence[LiveGuest], plan: AuditPlan
) -> list[Finding]:
    """The pack's host firewall check on the datacenter's and the node's live firewall.

    It sees every guest of the host (what each can send from decides whether zpack-api's
    IP set may reach a runtime node's API) and, as a placeholder guest, the node itself.
    """
    target = snapshot.target
    config = cfg.HOST_FIREWALL.parse(
        RULE_HOST,
        {
            "guestNetworks": [str(network) for network in plan.guest_networks],
            "managementBridge": target.management_bridge,
        },
    )
    node = Resource(
        urn=f"pve:{target.stack}/nodes/{target.node}",
        type=fs.CONTAINER,
        name=f"node {target.node}",
        props={"nodeName": target.node},
    )
    own = host_firewall_resources(snapshot)
    resources = [
        node,
        *(
            r
            for r in firewall_resources(snapshot, [g.record for g in hosted])
            if r.type != fs.DATACENTER
        ),
        *own,
    ]
    found = check_host_firewall(resources, config, target.stack)
    findings = []
    for violation in found.violations:
        # Name the datacenter's and the node's firewall by their files, not provider types.
        subject, problem = violation.subject, violation.problem
        for resource in own:
            described = f"{resource.name} ({resource.type})"
            subject = subject.replace(described, resource.name)
            problem = problem.replace(described, resource.name)
        named = dataclasses.replace(violation, subject=subject, problem=problem)
        findings.append(_host_finding(snapshot, RULE_HOST, named))
    return findings


# --- tenant egress -------------------------------------------------------------------


def _egress(snapshot: HostSnapshot, hosted: Sequence[LiveGuest]) -> list[Finding]:
    """The pack's egress check on every game and dev container of the host (it judges
    runtime hosts only), with the host's security groups and IP sets."""
    resources = firewall_resources(snapshot, [g.record for g in hosted])
    config = cfg.EGRESS.parse(RULE_EGRESS, {"managementBridge": snapshot.target.management_bridge})
    found = check_tenant_egress(resources, config, snapshot.target.stack)
    by_urn = {guest.resource.urn: guest for guest in hosted}
    return _from_findings(found, RULE_EGRESS, by_urn, host=snapshot)


# --- the servers zpack-api makes -------------------------------------------------------


def _fleet_role(guest: LiveGuest) -> VmidRole | None:
    """A fleet container's role: its VMID range's, else its role tag's."""
    role = DEFAULT_SCHEME.role_of(guest.record.vmid)
    if role in FLEET_ROLES:
        return role
    tagged = [r for r in FLEET_ROLES if r.value in role_tags(guest.resource)]
    return tagged[0] if tagged else None


def _api_servers(snapshot: HostSnapshot, on_host: Sequence[LiveGuest]) -> list[Finding]:
    """On a runtime host: each game/dev container's VMID in its owner's part, and each one
    no stack file declares (zpack-api's) in the fleet's pool with the platform's tags.

    Its firewall, protection and backup job are the other rules' (the fleet is in their
    scope whoever made it).
    """
    target = snapshot.target
    if target.role is not StackRole.RUNTIME:
        return []
    findings = []
    where = target.stack_file.name if target.stack_file else f"stack {target.stack}'s file"
    for guest in on_host:
        if not guest.fleet or guest.record.template:
            continue
        vmid = guest.record.vmid
        declared = vmid in target.recorded
        problem = fleet_owner_problem(vmid, declared=declared)
        role = _fleet_role(guest)
        if problem is not None and role is not None:
            split = fleet_split(role)
            if declared:
                fix = (
                    f"Give it a VMID of the declared part {split.declared.describe()} in "
                    f"{where} (a VMID cannot change in place: back it up, restore it under "
                    "the new VMID, then remove the old one)."
                )
            else:
                fix = (
                    f"If zpack-api made it, back it up and restore it under a free VMID of "
                    f"{split.api.describe()}, and find out why it took this one; if it is "
                    f"one of the platform's own servers, declare it in {where}."
                )
            findings.append(guest.finding(RULE_API_SERVERS, problem.replace("; ", ": ", 1), fix))
        if declared:
            continue
        what = f"not declared in {where}, so it is zpack-api's (or made by hand)"
        if guest.record.pool != FLEET_POOL:
            pool = f"pool {guest.record.pool}" if guest.record.pool else "no pool"
            findings.append(
                guest.finding(
                    RULE_API_SERVERS,
                    f"{what}, but in {pool}; zpack-api's servers join pool {FLEET_POOL}, the "
                    "pool the host's backup job selects",
                    f"Add it to the pool: pveum pool modify {FLEET_POOL} --vms {vmid}.",
                )
            )
        if role is not None:
            expected = guest_tags(
                layer=Layer.RUNTIME, role=role, stack=target.stack, service=role.value
            )
            tags = tags_of(guest.resource)
            absent = [tag for tag in expected if tag not in tags]
            wanted = sorted({*expected, *tags})
            if absent:
                findings.append(
                    guest.finding(
                        RULE_API_SERVERS,
                        f"{what}, but it lacks the tag(s) {', '.join(absent)}; a server "
                        f"zpack-api makes carries a declared {role} server's tags "
                        f"({', '.join(expected)})",
                        f"Set them: pct set {vmid} --tags '{';'.join(wanted)}'.",
                    )
                )
    return findings


# --- zpack-api's identity ------------------------------------------------------------


def _identity(snapshot: HostSnapshot, plan: AuditPlan) -> list[Finding]:
    """zpack-api's roles and ACL entries on a runtime host, judged by the pack's validator;
    the entries it lacks are information."""
    target = snapshot.target
    record = snapshot.identity
    if record is None:
        return []

    def finding(problem: str, fix: str, severity: Severity = "error") -> Finding:
        return Finding(severity, RULE_IDENTITY, target.stack, target.node, None, None, problem, fix)

    if target.role is not StackRole.RUNTIME:
        return _identity_on_core(record, finding)

    refresh = f"pulumi up --refresh -s {target.stack}"
    if record.user is None:
        return [
            finding(
                f"the host has no user {USER_ID}, so zpack-api cannot make servers on it",
                f"Run `{refresh}`: the runtime stack creates the user, its roles and its ACL "
                "entries.",
                "info",
            )
        ]
    templates = target.templates
    if templates is None:  # no stack file: the host's template-range guests
        template_range = DEFAULT_SCHEME.range_of(VmidRole.BASE_TEMPLATE)
        templates = tuple(sorted(g.vmid for g in snapshot.guests if g.vmid in template_range))
    try:
        inputs = IdentityInputs(
            template_vmids=templates,
            storages=(target.datastore, BACKUP_STORAGE),
            bridges=(target.lan_bridge, target.management_bridge),
            pool=FLEET_POOL,
            core_vmids=plan.core_vmids,
        )
        roles = roles_from_proxmox(record.roles)
        acls = acls_from_proxmox(record.acls, origin=target.label)
        groups = _user_groups(record)
        tokens = _user_tokens(record)
    except ApiIdentityError as error:
        return [
            finding(
                f"zpack-api's identity cannot be judged: {error}",
                "Correct it, so what zpack-api may do can be told.",
            )
        ]
    mine = identity_acls(acls, USER_ID, groups)
    fix = (
        "Remove what it names (Datacenter > Permissions, or pveum); "
        f"`{refresh}` then sets exactly the roles and ACL entries the runtime stack declares."
    )
    findings = [finding(item.message, fix) for item in check_identity(roles, mine, inputs)]
    findings += [
        finding(
            f"{USER_ID} has an API token {name}; zpack-api logs in with the password the core "
            "stack hands over, and a token made on the runtime host is a second credential",
            f"Remove it: pveum user token remove {USER_ID} {name}.",
        )
        for name in tokens
    ]
    findings += _missing_acls(missing_acls(mine, inputs), inputs, refresh, finding)
    return findings


def _identity_on_core(
    record: IdentityRecord, finding: Callable[[str, str], Finding]
) -> list[Finding]:
    """The core host holds no part of zpack-api's identity: it makes servers on runtime
    hosts only, and a login on the core host would reach the control plane itself."""
    found = []
    if record.user is not None:
        found.append(
            finding(
                f"the core host has a user {USER_ID}; zpack-api makes servers on runtime hosts "
                "only, and a login here would reach the control plane's own guests",
                f"Remove it: pveum user delete {USER_ID} (its ACL entries and tokens go with it).",
            )
        )
    paths = sorted(
        {
            str(entry.get("path"))
            for entry in record.acls
            if str(entry.get("ugid") or "").split("!", 1)[0] == USER_ID
        }
    )
    if paths:
        found.append(
            finding(
                f"the core host has ACL entries for {USER_ID} or its tokens on "
                f"{', '.join(paths)}; zpack-api holds nothing on the core host",
                f"Remove them: pveum acl delete <path> --users {USER_ID} (or --tokens).",
            )
        )
    return found


def _user_groups(record: IdentityRecord) -> list[str]:
    """The user's groups: a list (its own answer) or a comma-separated string (the list's)."""
    value = (record.user or {}).get("groups")
    if value is None:
        return []
    if isinstance(value, str):
        return [group for group in value.split(",") if group]
    if isinstance(value, list) and all(isinstance(group, str) for group in value):
        return list(value)
    raise ApiIdentityError(f"user {USER_ID}: groups {value!r} is not a list of group ids")


def _user_tokens(record: IdentityRecord) -> list[str]:
    """The user's API token ids: its own answer keys them (the list's answer lists them)."""
    value = (record.user or {}).get("tokens")
    if value is None:
        return []
    if isinstance(value, Mapping):
        return sorted(str(name) for name in value)
    if isinstance(value, list) and all(
        isinstance(token, Mapping) and isinstance(token.get("tokenid"), str) for token in value
    ):
        return sorted(str(token["tokenid"]) for token in value)
    raise ApiIdentityError(f"user {USER_ID}: tokens {value!r} is not a map of token ids")


def _missing_acls(
    missing: Sequence[AclEntry],
    inputs: IdentityInputs,
    refresh: str,
    finding: Callable[..., Finding],
) -> list[Finding]:
    """One information finding for the spent grants on fleet VMIDs, one for the rest."""
    total = len(acl_entries(inputs))
    fleet = [acl for acl in missing if acl.role_id == FLEET_ROLE.role_id]
    other = [acl for acl in missing if acl.role_id != FLEET_ROLE.role_id]
    found = []
    if fleet:
        vmids = [int(acl.path.rsplit("/", 1)[1]) for acl in fleet]
        found.append(
            finding(
                f"{USER_ID} holds no {FLEET_ROLE.role_id} entry on VMID(s) {_spans(vmids)} "
                f"({len(fleet)} of its {total} ACL entries): Proxmox removes a VMID's entries "
                "when it destroys the guest, so these are destroyed servers' spent grants, and "
                "zpack-api cannot take those VMIDs again until they are granted again",
                f"Once the old servers' backups are pruned or kept on purpose, run `{refresh}`, "
                "which grants them again.",
                "info",
            )
        )
    if other:
        what = {role.role_id: role.what for role in ROLES}
        found.append(
            finding(
                f"{USER_ID} lacks its ACL entries on "
                + ", ".join(f"{acl.path} ({what[acl.role_id]}, {acl.role_id})" for acl in other)
                + ", so zpack-api cannot make servers that need them",
                f"Run `{refresh}`, which grants them again.",
                "info",
            )
        )
    return found


def _spans(numbers: Iterable[int]) -> str:
    """``[1020, 1021, 1022, 1030]`` -> ``1020-1022, 1030``."""
    spans: list[list[int]] = []
    for number in sorted(set(numbers)):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(f"{low}-{high}" if high > low else str(low) for low, high in spans)


# --- the pack's violations -> findings ---------------------------------------------------


def _problem(violation: Violation, guest: LiveGuest | None) -> str:
    """The violation's problem, led by what it names unless that is the finding's guest."""
    if not violation.subject or (guest is not None and violation.subject == label(guest.resource)):
        return violation.problem
    return f"{violation.subject}: {violation.problem}"


def _fix(violation: Violation) -> str:
    return violation.fix[:1].upper() + violation.fix[1:] + "."


def _from_violations(guest: LiveGuest, rule: str, violations: Iterable[Violation]) -> list[Finding]:
    return [guest.finding(rule, _problem(v, guest), _fix(v)) for v in violations]


def _host_finding(snapshot: HostSnapshot, rule: str, violation: Violation) -> Finding:
    target = snapshot.target
    return Finding(
        "error",
        rule,
        target.stack,
        target.node,
        None,
        None,
        _problem(violation, None),
        _fix(violation),
    )


def _from_findings(
    found: Findings,
    rule: str,
    by_urn: dict[str, LiveGuest],
    *,
    scoped_only: bool = False,
    host: HostSnapshot | None = None,
) -> list[Finding]:
    findings = []
    for violation in found.violations:
        guest = by_urn.get(violation.urn or "")
        if guest is not None:
            if scoped_only and not guest.in_scope:
                continue
            findings.extend(_from_violations(guest, rule, [violation]))
        elif host is not None:
            findings.append(_host_finding(host, rule, violation))
    return findings


def _order(
    snapshots: Sequence[HostSnapshot],
) -> Callable[[Finding], tuple[int, int, int, int, str]]:
    stacks = {snapshot.target.stack: index for index, snapshot in enumerate(snapshots)}
    rules = {rule: index for index, rule in enumerate(RULES)}

    def key(finding: Finding) -> tuple[int, int, int, int, str]:
        return (
            stacks.get(finding.stack, len(stacks)),
            finding.vmid if finding.vmid is not None else -1,
            0 if finding.severity == "info" else 1,
            rules.get(finding.rule, len(rules)),
            finding.problem,
        )

    return key
