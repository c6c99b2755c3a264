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


def check_placement(resource: Resource, config: PlacementConfig, stack: str) -> list[str]:
    """A guest runs on the node of the host its stack deploys."""
    if not is_guest(resource):
        return []
    name = short_stack(stack)
    expected = config.stack_nodes.get(name)
    role = role_of_stack(name)
    if expected is None and role is None:
        return [
            f"{label(resource)}: stack {name!r} is neither 'core' nor 'runtime' / "
            "'runtime-<name>' and policy config stackNodes names no node for it, so its "
            "host is unknown; rename the stack or add it to stackNodes."
        ]
    if expected is None and role is StackRole.CORE:
        expected = config.core_node
    node = node_of(resource)
    if node is None:
        target = expected or "its runtime host's node"
        return [f"{label(resource)} names no node; set its node to {target}."]
    owners = [
        other for other, owned in config.stack_nodes.items() if owned == node and other != name
    ]
    if expected is not None:
        if node == expected:
            return []
        where = f"declare it in stack {owners[0]}" if owners else "declare it in that host's stack"
        return [
            f"{label(resource)} is on node {node}, but stack {name} deploys to node {expected} "
            f"(policy config stackNodes); set its node to {expected}, or {where}."
        ]
    # A runtime stack that stackNodes does not list: its node is its own, whatever it is,
    # as long as it is neither the core host nor another stack's host.
    if node == config.core_node:
        return [
            f"{label(resource)} is on the core node {node}, but stack {name} is a runtime "
            f"stack; set its node to this runtime host's node and add stack {name} to "
            "policy config stackNodes."
        ]
    if owners:
        return [
            f"{label(resource)} is on node {node}, which policy config stackNodes gives to "
            f"stack {owners[0]}; each runtime host belongs to one runtime stack: give stack "
            f"{name} its own node and add it to stackNodes."
        ]
    return []


#: VMID roles only a runtime host has: its templates and its fleet.
RUNTIME_ROLES = frozenset({VmidRole.BASE_TEMPLATE, VmidRole.GAME, VmidRole.DEV})


def _runtime_side(resource: Resource, config: IndependenceConfig) -> list[str]:
    """Why a resource of the core stack belongs to the edge/runtime side, with the fix."""
    what = describe(resource)
    reasons: list[str] = []
    outer = [layer for layer in layers_of(resource) if layer is not Layer.CONTROL_PLANE]
    if outer:
        reasons.append(
            f"{what} sits in the {outer[0]} layer, which the core stack must not deploy; "
            "declare it in a runtime stack"
        )
    if is_guest(resource):
        for layer in layer_tags(resource):
            if layer in (Layer.EDGE, Layer.RUNTIME):
                reasons.append(
                    f"{what} is tagged layer-{layer}; declare it in a runtime stack, or "
                    "correct its layer tag"
                )
        for service in service_tags(resource):
            if service in config.runtime_services:
                reasons.append(
                    f"{what} is tagged svc-{service}, an edge/runtime service (policy config "
                    "runtimeServices); declare it in a runtime stack"
                )
        # Judged by role and VMID too: a tag alone says nothing a pull request cannot change.
        for role in role_tags(resource):
            if role in RUNTIME_ROLES:
                reasons.append(
                    f"{what} is tagged role-{role}, a role of the runtime hosts; declare it "
                    "in a runtime stack"
                )
        vmid = vmid_of(resource)
        by_range = DEFAULT_SCHEME.role_of(vmid) if vmid is not None else None
        if by_range in RUNTIME_ROLES:
            reasons.append(
                f"{what} has VMID {vmid}, in the {by_range} range "
                f"{DEFAULT_SCHEME.range_of(by_range).describe()} of the runtime hosts; "
                "declare it in a runtime stack"
            )
        reasons += _core_guest_references(resource, what, config)
    node = node_of(resource)
    if node is not None and node != config.core_node:
        reasons.append(
            f"{what} is on node {node}, not the core node {config.core_node}; set its node "
            f"to {config.core_node}"
        )
    if resource.type == PROXMOX_PROVIDER:
        host = provider_host(resource)
        if host is None:
            reasons.append(
                f"{what} sets no endpoint, so the host it manages cannot be checked; set its "
                "endpoint to the core host's API URL"
            )
        elif not host_matches(host, config.core_endpoint_hosts):
            reasons.append(
                f"{what} points at a host other than the core host (policy config "
                f"coreEndpointHosts: {', '.join(config.core_endpoint_hosts)}); point it at "
                "the core host's API"
            )
    return reasons


def _core_guest_references(resource: Resource, what: str, config: IndependenceConfig) -> list[str]:
    """A core guest's gateways, resolvers and clone source: all on the core side."""
    reasons: list[str] = []
    networks = ", ".join(str(n) for n in config.core_networks)
    for where, value in routes_and_resolvers(resource):
        try:
            address = ip_address(str(value))
        except ValueError:
            reasons.append(
                f"{what}: its {where} is {value!r}, not an address, so where the guest routes or "
                "resolves cannot be checked; give an address on the core LAN"
            )
            continue
        if not any(address in network for network in config.core_networks):
            reasons.append(
                f"{what}: its {where} {address} is outside the core host's networks (policy config "
                f"coreNetworks: {networks}), so the control plane would route or resolve "
                "through another host; use an address on the core LAN"
            )
    clone = resource.props.get("clone")
    if isinstance(clone, Mapping):
        source = whole_number(clone.get("vmId"))
        clone_node = clone.get("nodeName")
        by_range = DEFAULT_SCHEME.role_of(source) if source is not None else None
        if source is None:
            reasons.append(
                f"{what} is cloned from {clone.get('vmId')!r}, not a VMID, so its source "
                "cannot be checked; clone from a core guest by VMID, or build it from an image"
            )
        elif by_range in RUNTIME_ROLES:
            reasons.append(
                f"{what} is cloned from VMID {source}, in the {by_range} range of the runtime "
                "hosts; the control plane must never be built from the runtime side"
            )
        if clone_node is not None and clone_node != config.core_node:
            reasons.append(
                f"{what} is cloned from node {clone_node}, not the core node {config.core_node}"
            )
    elif clone is not None:
        reasons.append(f"{what} has a clone block that cannot be read ({type(clone).__name__})")
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
            for reason in reasons:
                findings.add(f"{reason}.", resource.urn)
            if reasons:
                runtime_side[resource.urn] = resource
            if resource.type in REMOTE_COMMANDS:
                for problem in _core_command_problems(resource, config):
                    findings.add(problem, resource.urn)
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
                "to the edge/runtime side; the control plane must never depend on the "
                "runtime: remove the dependency.",
                resource.urn,
            )
    return findings


def check_runtime_isolation(resource: Resource, config: IsolationConfig, stack: str) -> list[str]:
    """A runtime stack puts nothing on the core host and deploys no control-plane part."""
    if role_of_stack(stack) is not StackRole.RUNTIME:
        return []
    what = describe(resource)
    problems: list[str] = []
    if resource.type == PROXMOX_PROVIDER:
        host = provider_host(resource)
        if host is None:
            problems.append(
                f"{what} sets no endpoint, so the host it manages cannot be checked; set "
                "its endpoint to this runtime host's API URL."
            )
        elif host_matches(host, config.core_endpoint_hosts):
            problems.append(
                f"{what} points at the core host (policy config coreEndpointHosts: "
                f"{', '.join(config.core_endpoint_hosts)}); a runtime stack must never "
                "manage the core host: point it at this runtime host's API."
            )
    if resource.type in REMOTE_COMMANDS:
        problems += _command_connection_problems(resource, what, config)
    node = node_of(resource)
    if node is not None and node == config.core_node:
        problems.append(
            f"{what} is on the core node {node}; a runtime stack must never place anything "
            "on the core host: set its node to this runtime host's node."
        )
    if Layer.CONTROL_PLANE in layers_of(resource):
        problems.append(
            f"{what} sits in the control-plane layer; a runtime stack must not deploy the "
            "control plane: declare it in the core stack."
        )
    if is_guest(resource):
        if Layer.CONTROL_PLANE in layer_tags(resource):
            problems.append(
                f"{what} is tagged layer-control-plane; declare it in the core stack, or "
                "correct its layer tag."
            )
        for service in service_tags(resource):
            if service in config.control_plane_services:
                problems.append(
                    f"{what} is tagged svc-{service}, a control-plane service (policy config "
                    "controlPlaneServices); declare it in the core stack."
                )
    return problems


#: The pulumi-command resources that open an SSH connection.
REMOTE_COMMANDS = frozenset({"command:remote:Command", "command:remote:CopyToRemote"})


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


def _core_command_problems(resource: Resource, config: IndependenceConfig) -> list[str]:
    """A core stack's command runs on the core host, and on no host that merely answers there."""
    what = describe(resource)
    host, key = _connection(resource)
    hosts = ", ".join(config.core_endpoint_hosts)
    if host is None:
        return [
            f"{what} names no connection host, so where it runs as root cannot be checked; "
            "connect it to the core node."
        ]
    problems = []
    if not host_matches(host, config.core_endpoint_hosts):
        problems.append(
            f"{what} connects to {host}, not the core host (policy config coreEndpointHosts: "
            f"{hosts}); a core stack's commands run on the core host only: connect it to the "
            "core node, or add its address to coreEndpointHosts."
        )
    if key is None:
        problems.append(
            f"{what} connects to {host} without a pinned host key, so any host answering "
            "there gets its commands: set connection.hostKey to the node's SSH host key."
        )
    return problems


def _command_connection_problems(
    resource: Resource, what: str, config: IsolationConfig
) -> list[str]:
    """Its SSH connection goes to a named host, not the core's, and pins the host key."""
    host, key = _connection(resource)
    if host is None:
        return [
            f"{what} names no connection host, so where it runs as root cannot be checked; "
            "connect it to this runtime host's node."
        ]
    if host_matches(host, config.core_endpoint_hosts):
        return [
            f"{what} connects to {host}, the core host (policy config coreEndpointHosts: "
            f"{', '.join(config.core_endpoint_hosts)}); a runtime stack's commands must never "
            "run on the core host: connect it to this runtime host's node."
        ]
    if key is None:
        return [
            f"{what} connects to {host} without a pinned host key, so any host answering "
            "there gets its commands: set connection.hostKey to the node's SSH host key."
        ]
    return []
