"""A recording turned into a lab: containers, bridges, router stand-ins, steps and their order.

Pure: no subprocess, no file system. The lab builds one LXC container per recorded
``ContainerLegacy``, one small router container per recorded ``VmLegacy``, and runs every
``command:remote:Command`` with exactly its recorded ``create`` and ``stdin``, in the
order the recording's dependency graph (``dependencies`` and ``parent``) allows, core
stacks before the stacks reading them.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, Literal

from zlh_infra.platform.type_tokens import CONTAINER, VM
from zlh_infra.platform.wire_numbers import whole_number
from zlh_infra.tooling.lab.paths import WAN_BRIDGE, WAN_GATEWAY_ADDRESS, container_name, wan_address
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording, StateOutputs
from zlh_infra.tooling.wire_values import SECRET_MASK, is_secret
from zlh_infra.tooling.wire_values import UNKNOWN as UNKNOWN

COMMAND = "command:remote:Command"
#: Bridge names are network interface names: at most 15 characters.
_IFNAME_MAX = 15


class PlanError(ValueError):
    """The recording cannot be built as a lab (an unknown value, a clash, a cycle)."""


# --- wire form --------------------------------------------------------------------------


def unwrap(value: Any) -> Any:
    """A wire-form value with every secret sentinel replaced by the value it holds."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def secret_strings(value: Any) -> set[str]:
    """Every string a wire-form value holds as a secret of its own (a password, a key).

    A secret object (the SSH connection) is not taken apart: its host and user names
    are secret only as part of it, and masking them everywhere would hide plain names.
    """
    if is_secret(value):
        inner = value.get("value")
        return {inner} if isinstance(inner, str) and inner else set()
    if isinstance(value, dict):
        return {s for item in value.values() for s in secret_strings(item)}
    if isinstance(value, list):
        return {s for item in value for s in secret_strings(item)}
    return set()


def has_unknown(value: Any) -> bool:
    if value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(item) for item in value.values())
    if isinstance(value, list):
        return any(has_unknown(item) for item in value)
    return False


def _vmid(resource: RecordedResource) -> int:
    vmid = whole_number(unwrap(resource.inputs.get("vmId")), digits=False)
    if vmid is None:
        raise PlanError(f"{resource.urn}: no vmId")
    return vmid


def _clone_source(resource: RecordedResource, value: object) -> int | None:
    if value is None:
        return None
    vmid = whole_number(value, digits=False)
    if vmid is None:
        raise PlanError(f"{resource.urn}: clone.vmId {value!r} is not a whole number")
    return vmid


# --- what the lab builds ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabNic:
    """One guest NIC: ``eth<i>`` in the guest, on the lab bridge standing for its Proxmox one."""

    name: str
    bridge: str
    #: The Proxmox bridge it stands for (``vmbr1``).
    proxmox_bridge: str
    address: IPv4Interface | None = None
    gateway: IPv4Address | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bridge": self.bridge,
            "proxmoxBridge": self.proxmox_bridge,
            "address": str(self.address) if self.address else None,
            "gateway": str(self.gateway) if self.gateway else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabNic:
        return cls(
            name=str(data["name"]),
            bridge=str(data["bridge"]),
            proxmox_bridge=str(data["proxmoxBridge"]),
            address=IPv4Interface(data["address"]) if data.get("address") else None,
            gateway=IPv4Address(data["gateway"]) if data.get("gateway") else None,
        )


@dataclass(frozen=True, slots=True)
class LabGuest:
    """A container as the lab builds it: a recorded container, or a router's stand-in."""

    vmid: int
    hostname: str
    stack: str
    node: str
    urn: str
    nics: tuple[LabNic, ...]
    dns_servers: tuple[str, ...] = ()
    dns_domain: str | None = None
    #: Paths inside the guest of its data disks (bind mounts of lab directories).
    mount_points: tuple[str, ...] = ()
    #: Whether the recording starts it (base images are ``started: false``).
    started: bool = True
    #: The VMID it is a full clone of.
    clone_of: int | None = None
    #: The recorded VM this container stands in for (a router), else None.
    stand_in_for: str | None = None
    #: The root password (a secret): kept out of repr and of ``spec``.
    root_password: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return container_name(self.vmid)

    @property
    def is_stand_in(self) -> bool:
        return self.stand_in_for is not None

    def spec(self) -> dict[str, Any]:
        """What the container is made of, without secrets: a changed spec rebuilds it."""
        return {
            "vmid": self.vmid,
            "hostname": self.hostname,
            "stack": self.stack,
            "node": self.node,
            "nics": [nic.to_json() for nic in self.nics],
            "dnsServers": list(self.dns_servers),
            "dnsDomain": self.dns_domain,
            "mountPoints": list(self.mount_points),
            "started": self.started,
            "cloneOf": self.clone_of,
            "standInFor": self.stand_in_for,
        }

    def spec_hash(self) -> str:
        return _digest(self.spec())

    @classmethod
    def from_spec(cls, data: Mapping[str, Any], urn: str = "") -> LabGuest:
        return cls(
            vmid=int(data["vmid"]),
            hostname=str(data["hostname"]),
            stack=str(data["stack"]),
            node=str(data["node"]),
            urn=urn,
            nics=tuple(LabNic.from_json(nic) for nic in data["nics"]),
            dns_servers=tuple(str(s) for s in data.get("dnsServers", ())),
            dns_domain=data.get("dnsDomain"),
            mount_points=tuple(str(p) for p in data.get("mountPoints", ())),
            started=bool(data.get("started", True)),
            clone_of=int(data["cloneOf"]) if data.get("cloneOf") is not None else None,
            stand_in_for=data.get("standInFor"),
        )

    def nic_on(self, bridge: str) -> LabNic | None:
        return next((nic for nic in self.nics if nic.bridge == bridge), None)


@dataclass(frozen=True, slots=True)
class LabStep:
    """A recorded ``command:remote:Command``: run on the node's shell exactly as recorded."""

    urn: str
    name: str
    stack: str
    create: str
    stdin: str | None = field(repr=False)
    triggers: tuple[Any, ...] = field(repr=False)
    #: Its inputs hold a value known only once ``pulumi up`` ran the step printing it
    #: (a fingerprint, a key) that no run of the lab has printed yet.
    deferred: bool = False
    #: The program keeps what the step prints secret (a pre-auth key): never logged.
    secret_stdout: bool = False

    @property
    def hash(self) -> str:
        """A step reruns only when this changes (like the provider's replace on change)."""
        return _command_hash((self.create, self.stdin, self.triggers))


#: What a Command runs with, as the lab reads it: ``create``, ``stdin``, ``triggers``.
CommandFields = tuple[str, str | None, tuple[Any, ...]]


def _command_hash(fields: CommandFields) -> str:
    create, stdin, triggers = fields
    return _digest({"create": create, "stdin": stdin, "triggers": triggers})


def _command_fields(inputs: Mapping[str, Any]) -> CommandFields | None:
    """A Command's wire-form inputs as the lab runs them; None while any is unknown, or
    when it has no ``create`` command."""
    if has_unknown(dict(inputs)):
        return None
    plain = unwrap(dict(inputs))
    create, stdin = plain.get("create"), plain.get("stdin")
    if not isinstance(create, str) or not create:
        return None
    return create, str(stdin) if stdin is not None else None, tuple(plain.get("triggers") or ())


ActionKind = Literal["guest", "step"]


@dataclass(frozen=True, slots=True, order=True)
class Action:
    """One thing ``lab up`` does: create a guest (``guest``, by VMID) or run a step (by URN)."""

    kind: ActionKind
    key: str

    @classmethod
    def guest(cls, vmid: int) -> Action:
        return cls("guest", str(vmid))

    @classmethod
    def step(cls, urn: str) -> Action:
        return cls("step", urn)


@dataclass(frozen=True, slots=True)
class Bridge:
    """A lab bridge and the Proxmox (node, bridge) pairs it stands for."""

    name: str
    stands_for: tuple[tuple[str, str], ...]
    shared: bool = False
    uplink: bool = False


@dataclass(slots=True)
class LabPlan:
    stacks: list[str]
    bridges: dict[str, Bridge]
    guests: dict[int, LabGuest]
    steps: dict[str, LabStep]
    #: Every action in the order ``lab up`` takes them.
    order: list[Action]
    #: For each action, the earlier actions it depends on in the recording (directly or
    #: through resources the lab does not build; a clone on its source).
    depends_on: dict[Action, frozenset[Action]]
    #: Every secret value the recording holds (to redact from anything printed).
    secrets: frozenset[str] = frozenset()

    def guest_by_hostname(self, hostname: str) -> LabGuest | None:
        return next((g for g in self.guests.values() if g.hostname == hostname), None)

    def describe(self, action: Action) -> str:
        if action.kind == "guest":
            guest = self.guests[int(action.key)]
            what = f"router stand-in for {guest.stand_in_for}" if guest.is_stand_in else "container"
            clone = f", clone of {guest.clone_of}" if guest.clone_of is not None else ""
            return f"{guest.name} ({guest.hostname}, {what}{clone})"
        return f"step {self.steps[action.key].name}"


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- bridges ----------------------------------------------------------------------------


def _stack_tags(stacks: Sequence[str]) -> dict[str, str]:
    """A short tag per stack for bridge names: the initials of its dash-separated parts."""
    tags: dict[str, str] = {}
    for stack in stacks:
        base = "".join(part[:1] for part in stack.split("-") if part) or "x"
        tag, n = base, 1
        while tag in tags.values():
            n += 1
            tag = f"{base}{n}"
        tags[stack] = tag
    return tags


@dataclass(frozen=True, slots=True)
class _Port:
    stack: str
    node: str
    bridge: str
    address: IPv4Interface | None
    gateway: IPv4Address | None


def plan_bridges(ports: Iterable[_Port], stacks: Sequence[str]) -> dict[tuple[str, str], str]:
    """(node, Proxmox bridge) -> lab bridge name.

    A bridge of one name carrying the same networks on several nodes is one shared lab
    bridge (``l-<bridge>``: the management network); a bridge carrying no container
    address is an uplink (``l-wan``); any other is the node's own (``l<tag>-<bridge>``).
    """
    ports = list(ports)
    tags = _stack_tags(stacks)
    node_stack: dict[str, str] = {}
    networks: dict[tuple[str, str], set[str]] = {}
    for port in ports:
        node_stack.setdefault(port.node, port.stack)
        key = (port.node, port.bridge)
        networks.setdefault(key, set())
        if port.address is not None:
            networks[key].add(str(port.address.network))
    by_name: dict[str, list[tuple[str, str]]] = {}
    for node, bridge in networks:
        by_name.setdefault(bridge, []).append((node, bridge))
    result: dict[tuple[str, str], str] = {}
    for bridge, keys in sorted(by_name.items()):
        sets = [networks[key] for key in keys]
        if all(not nets for nets in sets):
            for key in keys:
                result[key] = WAN_BRIDGE
            continue
        shared = len(keys) > 1 and all(nets == sets[0] for nets in sets)
        for key in keys:
            name = f"l-{bridge}" if shared else f"l{tags[node_stack[key[0]]]}-{bridge}"
            if len(name) > _IFNAME_MAX:
                name = f"l{_digest([key])[:8]}"
            result[key] = name
    return result


# --- the plan ---------------------------------------------------------------------------


def _nic_inputs(resource: RecordedResource) -> list[tuple[str, str, dict[str, Any]]]:
    """A container's (name, bridge, ipv4 config) per NIC, in NIC order."""
    inputs = unwrap(resource.inputs)
    nics = inputs.get("networkInterfaces") or []
    ip_configs = (inputs.get("initialization") or {}).get("ipConfigs") or []
    result = []
    for index, nic in enumerate(nics):
        # The provider pairs ipConfigs with NICs by position.
        config = ip_configs[index] if index < len(ip_configs) else None
        ipv4 = (config or {}).get("ipv4") or {}
        result.append((str(nic.get("name") or f"eth{index}"), str(nic["bridge"]), ipv4))
    return result


def _ports(recordings: Sequence[StackRecording]) -> list[_Port]:
    ports = []
    for recording in recordings:
        for resource in recording.resources:
            node = str(unwrap(resource.inputs.get("nodeName")))
            if resource.type == CONTAINER:
                for _name, bridge, ipv4 in _nic_inputs(resource):
                    address = ipv4.get("address")
                    gateway = ipv4.get("gateway")
                    ports.append(
                        _Port(
                            recording.stack,
                            node,
                            bridge,
                            IPv4Interface(address) if address and address != "dhcp" else None,
                            IPv4Address(gateway) if gateway else None,
                        )
                    )
            elif resource.type == VM:
                for device in unwrap(resource.inputs.get("networkDevices")) or []:
                    ports.append(_Port(recording.stack, node, str(device["bridge"]), None, None))
    return ports


def _container(
    stack: str, resource: RecordedResource, bridges: Mapping[tuple[str, str], str]
) -> LabGuest:
    if has_unknown(resource.inputs):
        raise PlanError(f"{resource.urn}: inputs unknown until deploy time")
    inputs = unwrap(resource.inputs)
    node = str(inputs["nodeName"])
    init = inputs.get("initialization") or {}
    nics = []
    for name, bridge, ipv4 in _nic_inputs(resource):
        address = ipv4.get("address")
        gateway = ipv4.get("gateway")
        nics.append(
            LabNic(
                name=name,
                bridge=bridges[(node, bridge)],
                proxmox_bridge=bridge,
                address=IPv4Interface(address) if address and address != "dhcp" else None,
                gateway=IPv4Address(gateway) if gateway else None,
            )
        )
    dns = init.get("dns") or {}
    clone = inputs.get("clone") or {}
    password = (init.get("userAccount") or {}).get("password")
    return LabGuest(
        vmid=_vmid(resource),
        hostname=str(init.get("hostname") or resource.name),
        stack=stack,
        node=node,
        urn=resource.urn,
        nics=tuple(nics),
        dns_servers=tuple(str(s) for s in dns.get("servers") or ()),
        dns_domain=dns.get("domain"),
        mount_points=tuple(str(mp["path"]) for mp in inputs.get("mountPoints") or ()),
        started=bool(inputs.get("started", True)),
        clone_of=_clone_source(resource, clone.get("vmId")),
        root_password=str(password) if password else None,
    )


def _router(
    stack: str,
    resource: RecordedResource,
    bridges: Mapping[tuple[str, str], str],
    gateways: Mapping[tuple[str, str], set[IPv4Interface]],
    index: int,
    upstream_dns: str,
) -> LabGuest:
    """A router VM's stand-in: its WAN NIC on ``l-wan``, its LAN NIC at the LAN's gateway."""
    inputs = unwrap(resource.inputs)
    node = str(inputs["nodeName"])
    nics = []
    for number, device in enumerate(inputs.get("networkDevices") or []):
        bridge = str(device["bridge"])
        lab_bridge = bridges[(node, bridge)]
        name = f"eth{number}"
        if lab_bridge == WAN_BRIDGE:
            nics.append(LabNic(name, lab_bridge, bridge, wan_address(index), WAN_GATEWAY_ADDRESS))
            continue
        found = gateways.get((node, bridge), set())
        if len(found) > 1:
            listed = ", ".join(sorted(str(g) for g in found))
            raise PlanError(
                f"{resource.urn}: guests on {node} {bridge} use several gateways: {listed}"
            )
        nics.append(LabNic(name, lab_bridge, bridge, next(iter(found), None)))
    return LabGuest(
        vmid=_vmid(resource),
        hostname=str(inputs.get("name") or resource.name),
        stack=stack,
        node=node,
        urn=resource.urn,
        nics=tuple(nics),
        dns_servers=(upstream_dns,),
        started=bool(inputs.get("started", True)),
        stand_in_for=f"VM {_vmid(resource)} {inputs.get('name') or resource.name}",
    )


def _step(stack: str, resource: RecordedResource) -> LabStep:
    secret_stdout = "stdout" in resource.options.get("additionalSecretOutputs", ())
    if has_unknown(resource.inputs):
        return LabStep(
            resource.urn,
            resource.name,
            stack,
            "",
            None,
            (),
            deferred=True,
            secret_stdout=secret_stdout,
        )
    fields = _command_fields(resource.inputs)
    if fields is None:
        raise PlanError(f"{resource.urn}: no create command")
    return LabStep(resource.urn, resource.name, stack, *fields, secret_stdout=secret_stdout)


def step_hash(inputs: Mapping[str, Any]) -> str | None:
    """The hash a step with these wire-form inputs has (``LabStep.hash``); None if deferred."""
    fields = _command_fields(inputs)
    return None if fields is None else _command_hash(fields)


def printed_outputs(printed: Mapping[str, Mapping[str, str]]) -> StateOutputs:
    """The engine's state for the lab's steps: what each printed when it last succeeded.

    ``printed`` maps a step's URN to the ``hash`` it ran with and its ``stdout``. Like
    the engine, a step whose inputs changed since has no outputs until it runs again.
    """

    def answer(urn: str, type_: str, inputs: Mapping[str, Any]) -> Mapping[str, Any] | None:
        entry = printed.get(urn) if type_ == COMMAND else None
        if entry is None or entry.get("hash") != step_hash(inputs):
            return None
        return {"stdout": entry.get("stdout", ""), "stderr": ""}

    return answer


def build_plan(recordings: Sequence[StackRecording], *, upstream_dns: str) -> LabPlan:
    """The lab for ``recordings`` (core stacks first, as ``run_platform`` returns them).

    ``upstream_dns`` is the resolver the router stand-ins forward to (the host's).
    """
    stacks = [recording.stack for recording in recordings]
    ports = _ports(recordings)
    bridge_of = plan_bridges(ports, stacks)
    gateways: dict[tuple[str, str], set[IPv4Interface]] = {}
    for port in ports:
        if port.gateway is not None and port.address is not None:
            gateways.setdefault((port.node, port.bridge), set()).add(
                IPv4Interface(f"{port.gateway}/{port.address.network.prefixlen}")
            )

    guests: dict[int, LabGuest] = {}
    steps: dict[str, LabStep] = {}
    lab_action: dict[str, Action] = {}
    routers = 0
    for recording in recordings:
        for resource in recording.resources:
            guest: LabGuest | None = None
            if resource.type == CONTAINER:
                guest = _container(recording.stack, resource, bridge_of)
            elif resource.type == VM:
                guest = _router(
                    recording.stack, resource, bridge_of, gateways, routers, upstream_dns
                )
                routers += 1
            elif resource.type == COMMAND:
                step = _step(recording.stack, resource)
                steps[step.urn] = step
                lab_action[resource.urn] = Action.step(step.urn)
                continue
            if guest is None:
                continue
            if guest.vmid in guests:
                raise PlanError(f"VMID {guest.vmid} is recorded twice ({guests[guest.vmid].urn})")
            guests[guest.vmid] = guest
            lab_action[resource.urn] = Action.guest(guest.vmid)

    for guest in guests.values():
        if guest.clone_of is not None and guest.clone_of not in guests:
            raise PlanError(f"{guest.urn}: clone of VMID {guest.clone_of}, which is not recorded")

    depends_on: dict[Action, frozenset[Action]] = {}
    position: dict[Action, tuple[int, int]] = {}
    for stack_index, recording in enumerate(recordings):
        by_urn = {resource.urn: resource for resource in recording.resources}
        for index, resource in enumerate(recording.resources):
            action = lab_action.get(resource.urn)
            if action is None:
                continue
            position[action] = (stack_index, index)
            deps = _lab_dependencies(resource, by_urn, lab_action)
            if action.kind == "guest":
                source = guests[int(action.key)].clone_of
                if source is not None:
                    deps.add(Action.guest(source))
            depends_on[action] = frozenset(deps)

    rank = {
        action: (0 if guests[int(action.key)].is_stand_in else 1) if action.kind == "guest" else 2
        for action in position
    }
    # Core stacks run to completion before the stacks that read them (order only: a
    # runtime action waits on what it depends on, not on every core step).
    ordering = {
        action: deps | {a for a, (s, _) in position.items() if s < position[action][0]}
        for action, deps in depends_on.items()
    }
    order = _topological(position, ordering, rank)
    secrets = {
        secret
        for recording in recordings
        for resource in recording.resources
        for value in (resource.inputs, resource.outputs)
        for secret in secret_strings(value)
    }
    return LabPlan(
        stacks=stacks,
        bridges=_bridges(bridge_of),
        guests=guests,
        steps=steps,
        order=order,
        depends_on={action: depends_on[action] for action in order},
        secrets=frozenset(secrets),
    )


def _bridges(bridge_of: Mapping[tuple[str, str], str]) -> dict[str, Bridge]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for key, name in bridge_of.items():
        grouped.setdefault(name, []).append(key)
    return {
        name: Bridge(
            name=name,
            stands_for=tuple(sorted(keys)),
            shared=len({node for node, _ in keys}) > 1,
            uplink=name == WAN_BRIDGE,
        )
        for name, keys in sorted(grouped.items())
    }


def _lab_dependencies(
    resource: RecordedResource,
    by_urn: Mapping[str, RecordedResource],
    lab_action: Mapping[str, Action],
) -> set[Action]:
    """The lab actions ``resource`` waits for: its dependencies and its parents', through
    resources the lab does not build (firewall options, components, passwords)."""
    found: set[Action] = set()
    seen: set[str] = {resource.urn}
    pending = [
        *resource.dependencies,
        *(d for ds in resource.property_dependencies.values() for d in ds),
    ]
    parent = resource.parent
    while parent:
        if parent in seen or parent not in by_urn:
            break
        seen.add(parent)
        pending.extend(by_urn[parent].dependencies)
        parent = by_urn[parent].parent
    while pending:
        urn = pending.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in lab_action:
            found.add(lab_action[urn])
            continue
        upstream = by_urn.get(urn)
        if upstream is not None:
            pending.extend(upstream.dependencies)
            # A component stands for its children: depending on it waits for them all.
            pending.extend(r.urn for r in by_urn.values() if r.parent == urn)
    return found


def _topological(
    position: Mapping[Action, tuple[int, int]],
    depends_on: Mapping[Action, frozenset[Action]],
    rank: Mapping[Action, int],
) -> list[Action]:
    """Dependencies first; among the ready, the lowest rank, then the one recorded first.

    The engine creates whatever is ready in parallel; the lab goes one at a time, and
    takes guests before steps (routers first), so a step finds every guest it could
    have found running on a real deploy, its router included.
    """
    remaining = {action: set(deps) & set(position) for action, deps in depends_on.items()}
    dependents: dict[Action, list[Action]] = {}
    for action, deps in remaining.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(action)

    def key(action: Action) -> tuple[int, int, tuple[int, int]]:
        stack, _ = position[action]
        return (stack, rank[action], position[action])

    ready = [(key(a), a) for a, deps in remaining.items() if not deps]
    heapq.heapify(ready)
    order: list[Action] = []
    while ready:
        _, action = heapq.heappop(ready)
        order.append(action)
        for dependent in dependents.get(action, ()):
            remaining[dependent].discard(action)
            if not remaining[dependent]:
                heapq.heappush(ready, (key(dependent), dependent))
    if len(order) != len(remaining):
        stuck = sorted(a.key for a in remaining if a not in order)
        raise PlanError(f"dependency cycle among {', '.join(stuck)}")
    return order


# --- what a run does --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: ``create``, ``recreate``, ``run``, ``skip`` or ``unavailable``.
    verb: str
    reason: str


#: Why a deferred step does not run in the lab.
DEFERRED = (
    "its inputs hold a value known only once pulumi up has run the step that prints it "
    "(a step the lab could not run)"
)


def decide(
    plan: LabPlan,
    *,
    guest_specs: Mapping[int, str],
    existing: Iterable[int],
    step_hashes: Mapping[str, str],
    unavailable: Mapping[str, str] | None = None,
) -> list[Decision]:
    """What ``lab up`` does for each action, from what the last runs left.

    ``guest_specs`` are the spec hashes of the containers the lab made, ``existing`` the
    VMIDs whose containers exist now, ``step_hashes`` each succeeded step's hash. A guest
    is created when missing and rebuilt when its spec changed; a step runs when it never
    succeeded, when its hash changed, or when a guest it depends on is (re)built now
    (a new container has none of its steps' work). ``unavailable`` holds the hashes of
    steps that could not fetch a vendor artifact: unchanged, they are not retried
    (verb ``unavailable``).
    """
    unavailable = unavailable or {}
    present = set(existing)
    built: set[Action] = set()
    decisions = []
    for action in plan.order:
        fresh = [dep for dep in plan.depends_on[action] if dep in built and dep.kind == "guest"]
        if action.kind == "guest":
            guest = plan.guests[int(action.key)]
            if guest.vmid not in present:
                verb, reason = "create", "not there"
            elif guest_specs.get(guest.vmid) != guest.spec_hash():
                verb, reason = "recreate", "its recorded settings changed"
            else:
                verb, reason = "skip", "up to date"
        else:
            step = plan.steps[action.key]
            stored = step_hashes.get(step.urn)
            if step.deferred:
                verb, reason = "unavailable", DEFERRED
            elif fresh:
                names = ", ".join(plan.guests[int(dep.key)].name for dep in sorted(fresh))
                verb, reason = "run", f"{names} built in this run"
            elif stored is None and unavailable.get(step.urn) == step.hash:
                verb, reason = "unavailable", "a vendor artifact was missing; unchanged since"
            elif stored is None:
                verb, reason = "run", "never succeeded"
            elif stored != step.hash:
                verb, reason = "run", "command, stdin or triggers changed"
            else:
                verb, reason = "skip", "unchanged"
        if verb in ("create", "recreate"):
            built.add(action)
        decisions.append(Decision(action, verb, reason))
    return decisions


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret value (of 4 characters or more) masked."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, SECRET_MASK)
    return text
