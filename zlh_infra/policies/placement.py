"""Where things run: guests on their stack's node, and the two hosts kept apart.

The seed's rules "control plane never depends on runtime" and "runtime cannot break
control plane", as far as a policy pack can see them: nodes, provider endpoints,
layer components, tags and the dependency graph of one stack. What a stack reads from
another through a StackReference is never shown to a pack; the program and its tests
enforce that the core stack reads nothing.

Endpoints are judged on the provider resource itself (the engine analyses explicit
providers like any resource), not again on every resource managed through it. Messages
never quote an endpoint: ``pulumi_policy`` hands secret properties to a policy as plain
values, and an endpoint may be configured as a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import ip_address

from zlh_infra.platform.topology import Layer, StackRole, UnknownStackError, stack_role
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole
from zlh_infra.policies.config import IndependenceConfig, IsolationConfig, PlacementConfig
from zlh_infra.policies.resources import (
    PROXMOX_PROVIDER,
    Findings,
    Resource,
    Violation,
    host_matches,
    is_guest,
    label,
    layer_of_type,
    layer_tags,
    node_of,
    provider_host,
    role_tags,
    routes_and_resolvers,
    service_tags,
    short_stack,
    type_chain,
    vmid_of,
    whole_number,
)


def role_of_stack(stack: str) -> StackRole | None:
    try:
        return stack_role(stack)
    except UnknownStackError:
        return None


def describe(resource: Resource) -> str:
    """How messages name any resource: guests by name and VMID, others by name and kind."""
    if is_guest(resource):
        return label(resource)
    if resource.type == PROXMOX_PROVIDER:
        return f"provider {resource.name}"
    return f"{resource.name} ({resource.type})"


def layers_of(resource: Resource) -> list[Layer]:
    """Layer components above (or at) a resource, from its URN and its parent's URN.

    The engine's URNs carry the whole parent type chain; the parent's URN is read too
    so a URN that keeps only the nearest parent type still shows the layer.
    """
    urns = [resource.urn] + ([resource.parent] if resource.parent else [])
    found: list[Layer] = []
    for urn in urns:
        for token in type_chain(urn):
            layer = layer_of_type(token)
            if layer is not None and layer not in found:
                found.append(layer)
    return found


def check_placement(resource: Resource, config: PlacementConfig, stack: str) -> list[Violation]:
    """A guest runs on the node of the host its stack deploys."""
    if not is_guest(resource):
        return []
    name = short_stack(stack)
    expected = config.stack_nodes.get(name)
    role = role_of_stack(name)
    what = label(resource)
    if expected is None and role is None:
        problem = (
            f"stack {name!r} is neither 'core' nor 'runtime' / 'runtime-<name>' and policy "
            "config stackNodes names no node for it, so its host is unknown"
        )
        fix = "rename the stack or add it to stackNodes"
        return [Violation(problem, fix, resource.urn, what)]
    if expected is None and role is StackRole.CORE:
        expected = config.core_node
    node = node_of(resource)
    if node is None:
        target = expected or "its runtime host's node"
        return [Violation(f"{what} names no node", f"set its node to {target}", resource.urn)]
    owners = [
        other for other, owned in config.stack_nodes.items() if owned == node and other != name
    ]
    if expected is not None:
        if node == expected:
            return []
        where = f"declare it in stack {owners[0]}" if owners else "declare it in that host's stack"
        problem = (
            f"{what} is on node {node}, but stack {name} deploys to node {expected} "
            "(policy config stackNodes)"
        )
        return [Violation(problem, f"set its node to {expected}, or {where}", resource.urn)]
    # A runtime stack that stackNodes does not list: its node is its own, whatever it is,
    # as long as it is neither the core host nor another stack's host.
    if node == config.core_node:
        problem = f"{what} is on the core node {node}, but stack {name} is a runtime stack"
        fix = (
            f"set its node to this runtime host's node and add stack {name} to policy config "
            "stackNodes"
        )
        return [Violation(problem, fix, resource.urn)]
    if owners:
        problem = (
            f"{what} is on node {node}, which policy config stackNodes gives to stack "
            f"{owners[0]}; each runtime host belongs to one runtime stack"
        )
        fix = f"give stack {name} its own node and add it to stackNodes"
        return [Violation(problem, fix, resource.urn, joint=": ")]
    return []


#: VMID roles only a runtime host has: its templates and its fleet.
RUNTIME_ROLES = frozenset({VmidRole.BASE_TEMPLATE, VmidRole.GAME, VmidRole.DEV})

_TO_RUNTIME = "declare it in a runtime stack"


def _runtime_side(resource: Resource, config: IndependenceConfig) -> list[Violation]:
    """Why a resource of the core stack belongs to the edge/runtime side, with the fix."""
    what = describe(resource)
    urn = resource.urn
    reasons: list[Violation] = []
    outer = [layer for layer in layers_of(resource) if layer is not Layer.CONTROL_PLANE]
    if outer:
        problem = f"{what} sits in the {outer[0]} layer, which the core stack must not deploy"
        reasons.append(Violation(problem, _TO_RUNTIME, urn))
    if is_guest(resource):
        for layer in layer_tags(resource):
            if layer in (Layer.EDGE, Layer.RUNTIME):
                reasons.append(
                    Violation(
                        f"{what} is tagged layer-{layer}",
                        f"{_TO_RUNTIME}, or correct its layer tag",
                        urn,
                    )
                )
        for service in service_tags(resource):
            if service in config.runtime_services:
                problem = (
                    f"{what} is tagged svc-{service}, an edge/runtime service (policy config "
                    "runtimeServices)"
                )
                reasons.append(Violation(problem, _TO_RUNTIME, urn))
        # Judged by role and VMID too: a tag alone says nothing a pull request cannot change.
        for role in role_tags(resource):
            if role in RUNTIME_ROLES:
                problem = f"{what} is tagged role-{role}, a role of the runtime hosts"
                reasons.append(Violation(problem, _TO_RUNTIME, urn))
        vmid = vmid_of(resource)
        by_range = DEFAULT_SCHEME.role_of(vmid) if vmid is not None else None
        if by_range in RUNTIME_ROLES:
            problem = (
                f"{what} has VMID {vmid}, in the {by_range} range "
                f"{DEFAULT_SCHEME.range_of(by_range).describe()} of the runtime hosts"
            )
            reasons.append(Violation(problem, _TO_RUNTIME, urn))
        reasons += _core_guest_references(resource, what, config)
    node = node_of(resource)
    if node is not None and node != config.core_node:
        problem = f"{what} is on node {node}, not the core node {config.core_node}"
        reasons.append(Violation(problem, f"set its node to {config.core_node}", urn))
    if resource.type == PROXMOX_PROVIDER:
        host = provider_host(resource)
        if host is None:
            problem = f"{what} sets no endpoint, so the host it manages cannot be checked"
            fix = "set its endpoint to the core host's API URL"
            reasons.append(Violation(problem, fix, urn))
        elif not host_matches(host, config.core_endpoint_hosts):
            problem = (
                f"{what} points at a host other than the core host (policy config "
                f"coreEndpointHosts: {', '.join(config.core_endpoint_hosts)})"
            )
            reasons.append(Violation(problem, "point it at the core host's API", urn))
    return reasons


def _core_guest_references(
    resource: Resource, what: str, config: IndependenceConfig
) -> list[Violation]:
    """A core guest's gateways, resolvers and clone source: all on the core side."""
    urn = resource.urn
    reasons: list[Violation] = []
    networks = ", ".join(str(n) for n in config.core_networks)
    for where, value in routes_and_resolvers(resource):
        try:
            address = ip_address(str(value))
        except ValueError:
            problem = (
                f"its {where} is {value!r}, not an address, so where the guest routes or "
                "resolves cannot be checked"
            )
            reasons.append(Violation(problem, "give an address on the core LAN", urn, what))
            continue
        if not any(address in network for network in config.core_networks):
            problem = (
                f"its {where} {address} is outside the core host's networks (policy config "
                f"coreNetworks: {networks}), so the control plane would route or resolve "
                "through another host"
            )
            reasons.append(Violation(problem, "use an address on the core LAN", urn, what))
    clone = resource.props.get("clone")
    from_core = "clone from a core guest by VMID, or build it from an image"
    if isinstance(clone, Mapping):
        source = whole_number(clone.get("vmId"))
        clone_node = clone.get("nodeName")
        by_range = DEFAULT_SCHEME.role_of(source) if source is not None else None
        if source is None:
            problem = (
                f"{what} is cloned from {clone.get('vmId')!r}, not a VMID, so its source "
                "cannot be checked"
            )
            reasons.append(Violation(problem, from_core, urn))
        elif by_range in RUNTIME_ROLES:
            problem = (
                f"{what} is cloned from VMID {source}, in the {by_range} range of the runtime "
                "hosts; the control plane must never be built from the runtime side"
            )
            reasons.append(Violation(problem, from_core, urn, joint=": "))
        if clone_node is not None and clone_node != config.core_node:
            problem = (
                f"{what} is cloned from node {clone_node}, not the core node {config.core_node}"
            )
            fix = f"clone it from a guest on {config.core_node}"
            reasons.append(Violation(problem, fix, urn))
    elif clone is not None:
        problem = f"{what} has a clone block that cannot be read ({type(clone).__name__})"
        fix = "give it a vmId and nodeName, or build it from an image"
        reasons.append(Violation(problem, fix, urn))
    return reasons


def check_control_plane_independent(
    resources: Sequence[Resource], config: IndependenceConfig, stack: str
) -> Findings:
    """The core stack holds no edge/runtime guest, node or endpoint and depends on none."""
    findings = Findings()
    if role_of_stack(stack) is not StackRole.CORE:
        return findings
    runtime_side: dict[str, Resource] = {}
    for resource in resources:
        with findings.reading():
            reasons = _runtime_side(resource, config)
            findings.violations += reasons
            if reasons:
                runtime_side[resource.urn] = resource
            if resource.type in REMOTE_COMMANDS:
                findings.violations += _core_command_problems(resource, config)
    for resource in resources:
        if resource.urn in runtime_side:
            continue
        edges = [resource.parent, *resource.dependencies]
        edges += [urn for urns in resource.property_dependencies.values() for urn in urns]
        seen: set[str] = set()
        for urn in edges:
            if urn is None or urn in seen or urn not in runtime_side:
                continue
            seen.add(urn)
            findings.add(
                f"{describe(resource)} depends on {describe(runtime_side[urn])}, which belongs "
                "to the edge/runtime side; the control plane must never depend on the runtime",
                "remove the dependency",
                resource.urn,
                joint=": ",
            )
    return findings


def check_runtime_isolation(
    resource: Resource, config: IsolationConfig, stack: str
) -> list[Violation]:
    """A runtime stack puts nothing on the core host and deploys no control-plane part."""
    if role_of_stack(stack) is not StackRole.RUNTIME:
        return []
    what = describe(resource)
    urn = resource.urn
    to_core = "declare it in the core stack"
    problems: list[Violation] = []
    if resource.type == PROXMOX_PROVIDER:
        host = provider_host(resource)
        if host is None:
            problem = f"{what} sets no endpoint, so the host it manages cannot be checked"
            fix = "set its endpoint to this runtime host's API URL"
            problems.append(Violation(problem, fix, urn))
        elif host_matches(host, config.core_endpoint_hosts):
            problem = (
                f"{what} points at the core host (policy config coreEndpointHosts: "
                f"{', '.join(config.core_endpoint_hosts)}); a runtime stack must never "
                "manage the core host"
            )
            fix = "point it at this runtime host's API"
            problems.append(Violation(problem, fix, urn, joint=": "))
    if resource.type in REMOTE_COMMANDS:
        problems += _command_connection_problems(resource, what, config)
    node = node_of(resource)
    if node is not None and node == config.core_node:
        problem = (
            f"{what} is on the core node {node}; a runtime stack must never place anything "
            "on the core host"
        )
        fix = "set its node to this runtime host's node"
        problems.append(Violation(problem, fix, urn, joint=": "))
    if Layer.CONTROL_PLANE in layers_of(resource):
        problem = (
            f"{what} sits in the control-plane layer; a runtime stack must not deploy the "
            "control plane"
        )
        problems.append(Violation(problem, to_core, urn, joint=": "))
    if is_guest(resource):
        if Layer.CONTROL_PLANE in layer_tags(resource):
            problems.append(
                Violation(
                    f"{what} is tagged layer-control-plane",
                    f"{to_core}, or correct its layer tag",
                    urn,
                )
            )
        for service in service_tags(resource):
            if service in config.control_plane_services:
                problem = (
                    f"{what} is tagged svc-{service}, a control-plane service (policy config "
                    "controlPlaneServices)"
                )
                problems.append(Violation(problem, to_core, urn))
    return problems


#: The pulumi-command resources that open an SSH connection.
REMOTE_COMMANDS = frozenset({"command:remote:Command", "command:remote:CopyToRemote"})

_PIN_KEY = "set connection.hostKey to the node's SSH host key"


def _connection(resource: Resource) -> tuple[str | None, str | None]:
    """A remote command's SSH host and pinned host key, each None unless a non-blank string."""
    connection = resource.props.get("connection")
    if not isinstance(connection, Mapping):
        return None, None
    host, key = connection.get("host"), connection.get("hostKey")
    return (
        host if isinstance(host, str) and host.strip() else None,
        key if isinstance(key, str) and key.strip() else None,
    )


def _unpinned(what: str, host: str, urn: str) -> Violation:
    problem = (
        f"{what} connects to {host} without a pinned host key, so any host answering there "
        "gets its commands"
    )
    return Violation(problem, _PIN_KEY, urn, joint=": ")


def _no_host(what: str, node: str, urn: str) -> Violation:
    problem = f"{what} names no connection host, so where it runs as root cannot be checked"
    return Violation(problem, f"connect it to {node}", urn)


def _core_command_problems(resource: Resource, config: IndependenceConfig) -> list[Violation]:
    """A core stack's command runs on the core host, and on no host that merely answers there."""
    what = describe(resource)
    host, key = _connection(resource)
    hosts = ", ".join(config.core_endpoint_hosts)
    if host is None:
        return [_no_host(what, "the core node", resource.urn)]
    problems = []
    if not host_matches(host, config.core_endpoint_hosts):
        problem = (
            f"{what} connects to {host}, not the core host (policy config coreEndpointHosts: "
            f"{hosts}); a core stack's commands run on the core host only"
        )
        fix = "connect it to the core node, or add its address to coreEndpointHosts"
        problems.append(Violation(problem, fix, resource.urn, joint=": "))
    if key is None:
        problems.append(_unpinned(what, host, resource.urn))
    return problems


def _command_connection_problems(
    resource: Resource, what: str, config: IsolationConfig
) -> list[Violation]:
    """Its SSH connection goes to a named host, not the core's, and pins the host key."""
    host, key = _connection(resource)
    if host is None:
        return [_no_host(what, "this runtime host's node", resource.urn)]
    if host_matches(host, config.core_endpoint_hosts):
        problem = (
            f"{what} connects to {host}, the core host (policy config coreEndpointHosts: "
            f"{', '.join(config.core_endpoint_hosts)}); a runtime stack's commands must never "
            "run on the core host"
        )
        fix = "connect it to this runtime host's node"
        return [Violation(problem, fix, resource.urn, joint=": ")]
    if key is None:
        return [_unpinned(what, host, resource.urn)]
    return []
