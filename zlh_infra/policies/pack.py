"""The checks as ``pulumi_policy`` policies, ready for ``PolicyPack(...)``.

The wrappers turn the SDK's arguments into :class:`Resource` values, parse the
policy's configuration (reporting an unusable one as a violation, once per resource
it concerns), and report what the check finds. A resource check that reads a value
unknown during preview raises the SDK's ``UnknownValueError``, which the SDK reports
as an advisory "can't run policy ... during preview"; a stack check reports what it
could check, then raises the first unknown it skipped, for the same advisory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyProviderResource,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from zlh_infra.platform.topology import StackRole
from zlh_infra.policies import config as cfg
from zlh_infra.policies.agent import check_agent_port
from zlh_infra.policies.api_identity import API_IDENTITY, check_api_identity
from zlh_infra.policies.config import ConfigSpec, PolicyConfigError
from zlh_infra.policies.egress import check_tenant_egress
from zlh_infra.policies.host import check_host_firewall
from zlh_infra.policies.placement import (
    check_control_plane_independent,
    check_placement,
    check_runtime_isolation,
    role_of_stack,
)
from zlh_infra.policies.resilience import check_runtime_self_sufficient, check_stateful_protected
from zlh_infra.policies.resources import (
    Findings,
    Provider,
    Resource,
    Violation,
    current_stack,
    is_guest,
)
from zlh_infra.policies.secrets import CREDENTIAL_KEYS, mark_credentials_secret
from zlh_infra.policies.tags import check_required_tags, check_traefik_per_domain
from zlh_infra.policies.vmid import check_vmid_range, check_vmid_unique

C = TypeVar("C")

PACK_NAME = "zlh-platform"
PACK_DESCRIPTION = (
    "ZeroLagHub platform rules: VMID scheme, host placement, control plane and runtime "
    "kept apart, the agent port firewall, one Traefik per traffic domain, guest tags, "
    "protected and backed-up data, runtime hosts that run without the core, secret "
    "credentials."
)

ResourceCheck = Callable[[Resource, C, str], list[Violation]]
StackCheck = Callable[[Sequence[Resource], C, str], Findings]


def _provider(provider: PolicyProviderResource | None) -> Provider | None:
    if provider is None:
        return None
    return Provider(provider.urn, provider.resource_type, provider.name, provider.props)


def resource_of(args: ResourceValidationArgs) -> Resource:
    return Resource(
        urn=args.urn,
        type=args.resource_type,
        name=args.name,
        props=args.props,
        provider=_provider(args.provider),
        parent=args.opts.parent or None,
        protect=bool(args.opts.protect),
    )


def stack_resource_of(resource: PolicyResource) -> Resource:
    parent = resource.parent.urn if resource.parent is not None else resource.opts.parent
    return Resource(
        urn=resource.urn,
        type=resource.resource_type,
        name=resource.name,
        props=resource.props,
        provider=_provider(resource.provider),
        parent=parent or None,
        dependencies=tuple(dep.urn for dep in resource.dependencies),
        property_dependencies={
            key: tuple(dep.urn for dep in deps)
            for key, deps in resource.property_dependencies.items()
        },
        protect=bool(resource.opts.protect),
    )


def resource_policy(
    *,
    name: str,
    description: str,
    spec: ConfigSpec[C],
    check: ResourceCheck[C],
    applies: Callable[[Resource, str], bool],
    severity: Severity,
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        resource = resource_of(args)
        stack = current_stack(resource.urn)
        # Before parsing config, so a bad config is reported only where it matters.
        if not applies(resource, stack):
            return
        try:
            config = spec.parse(name, args.get_config())
        except PolicyConfigError as error:
            report_violation(str(error), None)
            return
        # The SDK attributes a resource policy's violations to the resource itself.
        for violation in check(resource, config, stack):
            report_violation(violation.message, None)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties=spec.properties),
        severity=severity,
    )


def stack_policy(
    *,
    name: str,
    description: str,
    spec: ConfigSpec[C],
    check: StackCheck[C],
    severity: Severity,
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [stack_resource_of(resource) for resource in args.resources]
        try:
            config = spec.parse(name, args.get_config())
        except PolicyConfigError as error:
            report_violation(str(error), None)
            return
        stack = current_stack(resources[0].urn if resources else None)
        findings = check(resources, config, stack)
        for violation in findings.violations:
            report_violation(violation.message, violation.urn)
        if findings.unknowns:
            raise findings.unknowns[0]

    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties=spec.properties),
        severity=severity,
    )


def _guest(resource: Resource, stack: str) -> bool:
    return is_guest(resource)


def _in_runtime_stack(resource: Resource, stack: str) -> bool:
    return role_of_stack(stack) is StackRole.RUNTIME


vmid_range = resource_policy(
    name="zlh-vmid-range",
    description=(
        "Every guest's VMID lies in the range of its role, and its role tag names that role."
    ),
    spec=cfg.VMID_RANGE,
    check=lambda resource, config, stack: check_vmid_range(resource, config),
    applies=_guest,
    severity=Severity.MEDIUM,
)

vmid_unique = stack_policy(
    name="zlh-vmid-unique",
    description="No two guests of a stack share a VMID, and no guest takes a reserved VMID.",
    spec=cfg.VMID_UNIQUE,
    check=lambda resources, config, stack: check_vmid_unique(resources, config),
    severity=Severity.HIGH,
)

guest_placement = resource_policy(
    name="zlh-guest-placement",
    description="Every guest runs on the Proxmox node of the host its stack deploys.",
    spec=cfg.PLACEMENT,
    check=check_placement,
    applies=_guest,
    severity=Severity.HIGH,
)

control_plane_independent = stack_policy(
    name="zlh-control-plane-independent",
    description=(
        "The core stack holds only the control plane, on the core host, and nothing in it "
        "depends on an edge or runtime resource."
    ),
    spec=cfg.INDEPENDENCE,
    check=check_control_plane_independent,
    severity=Severity.CRITICAL,
)

runtime_isolation = resource_policy(
    name="zlh-runtime-isolation",
    description=(
        "A runtime stack never manages the core host, places anything on its node or "
        "deploys a control-plane service."
    ),
    spec=cfg.ISOLATION,
    check=check_runtime_isolation,
    applies=_in_runtime_stack,
    severity=Severity.CRITICAL,
)

agent_port = stack_policy(
    name="zlh-agent-port",
    description=(
        "Only zpack-api's management address may reach the zlh-agent port, every game and dev "
        "container has its firewall on with ipfilter and macfilter, and no other guest on the "
        "management bridge can send from zpack-api's or zlh-monitor's address."
    ),
    spec=cfg.AGENT,
    check=lambda resources, config, stack: check_agent_port(resources, config),
    severity=Severity.CRITICAL,
)

traefik_per_domain = stack_policy(
    name="zlh-traefik-per-domain",
    description=(
        "Each traffic domain has exactly one Traefik: zlh-proxy in the core stack, "
        "zlh-zpack-proxy in a runtime stack."
    ),
    spec=cfg.TRAEFIK,
    check=check_traefik_per_domain,
    severity=Severity.MEDIUM,
)

required_tags = resource_policy(
    name="zlh-required-tags",
    description=(
        "Every guest carries the zlh, layer, role, stack and service tags, and its stack "
        "tag names its stack."
    ),
    spec=cfg.TAGS,
    check=check_required_tags,
    applies=_guest,
    severity=Severity.MEDIUM,
)

stateful_protected = stack_policy(
    name="zlh-stateful-protected",
    description=(
        "Every guest that holds data is protected from deletion in Pulumi and in Proxmox "
        "and is in a backup job of its host."
    ),
    spec=cfg.STATEFUL,
    check=check_stateful_protected,
    severity=Severity.CRITICAL,
)

runtime_self_sufficient = stack_policy(
    name="zlh-runtime-self-sufficient",
    description=(
        "A runtime host's guests need nothing on the core host to boot or run: their "
        "gateway, resolver and downloads are on the runtime side."
    ),
    spec=cfg.SELF_SUFFICIENT,
    check=check_runtime_self_sufficient,
    severity=Severity.HIGH,
)


def _unproxied(value: Any) -> Any:
    """A plain copy of remediation props that keeps pulumi_policy's Secret wrappers.

    Its secret-preserving proxies unwrap a Secret on every read; their ``__target`` is
    the data with the wrappers still on.
    """
    if isinstance(value, Mapping):
        with contextlib.suppress(KeyError):
            value = value["__target"]
        return {key: _unproxied(value[key]) for key in value}
    if isinstance(value, Sequence) and not isinstance(value, str):
        with contextlib.suppress(KeyError, TypeError):
            value = value["__target"]  # type: ignore[call-overload]
        return [_unproxied(item) for item in value]
    return value


def _remediate_secrets(args: ResourceValidationArgs) -> Any:
    # Most resources carry no credential at all: look before copying every input.
    if not _mentions_credential(args.props):
        return None
    props, changed = mark_credentials_secret(
        _unproxied(args.props), lambda value: isinstance(value, Secret), Secret
    )
    return props if changed else None


def _mentions_credential(value: Any) -> bool:
    try:
        if isinstance(value, Mapping):
            return any(key in CREDENTIAL_KEYS or _mentions_credential(value[key]) for key in value)
        if isinstance(value, Sequence) and not isinstance(value, str):
            return any(_mentions_credential(item) for item in value)
    except UnknownValueError:
        pass  # not known yet: judged again when it is
    return False


secret_inputs = ResourceValidationPolicy(
    name="zlh-secret-inputs",
    description=(
        "Passwords, tokens and keys reach a resource only as secrets, so state and logs "
        "never hold them in clear."
    ),
    remediate=_remediate_secrets,
    enforcement_level=EnforcementLevel.REMEDIATE,
    severity=Severity.CRITICAL,
)

host_firewall = stack_policy(
    name="zlh-host-firewall",
    description=(
        "Every node's firewall is on with inbound DROP, and no network a guest is on reaches "
        "a node's API, SSH or consoles."
    ),
    spec=cfg.HOST_FIREWALL,
    check=check_host_firewall,
    severity=Severity.CRITICAL,
)

tenant_egress = stack_policy(
    name="zlh-tenant-egress",
    description=(
        "Every game and dev container attaches the fleet security group and opens no "
        "connection into the platform: none on the management network, and on its LAN only "
        "to its resolver and zlh-artifacts."
    ),
    spec=cfg.EGRESS,
    check=check_tenant_egress,
    severity=Severity.CRITICAL,
)

api_identity = stack_policy(
    name="zlh-api-identity",
    description=(
        "zpack-api's Proxmox identity on a runtime host can create, configure, start, stop, "
        "back up and destroy containers of its own VMIDs, from the fleet's templates, on the "
        "fleet's storage and bridges, and nothing more."
    ),
    spec=API_IDENTITY,
    check=check_api_identity,
    severity=Severity.CRITICAL,
)

#: In the order the pack lists them.
POLICIES = [
    vmid_range,
    vmid_unique,
    guest_placement,
    control_plane_independent,
    runtime_isolation,
    agent_port,
    host_firewall,
    tenant_egress,
    traefik_per_domain,
    required_tags,
    stateful_protected,
    runtime_self_sufficient,
    api_identity,
    secret_inputs,
]
