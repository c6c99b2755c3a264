"""The platform diagram (Mermaid), generated from what the program registers.

``python -m zlh_infra diagram`` previews the core and runtime stacks offline, as the
``preview`` command does, and draws from the recorded resource graph: a subgraph per
host and per layer with every guest (game and dev containers folded into one node per
kind), the core -> runtime contract, the agent path, the Traefik and Velocity routes and
the backups. Nothing is drawn by hand, so the diagram cannot drift from the program.
``--write`` puts it into docs/architecture.md between the markers; without it the
command checks the committed copy.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import ipaddress
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zlh_infra.platform.catalogue import AGENT_PORT
from zlh_infra.platform.firewall_state import read_firewall
from zlh_infra.platform.reachability import TCP, AddressSet, FirewallReadError, reachable_from
from zlh_infra.platform.topology import Layer, StackRole
from zlh_infra.platform.type_tokens import BACKUP_JOB as BACKUP_JOB_TYPE
from zlh_infra.platform.type_tokens import PBS_STORAGE as PBS_STORAGE_TYPE
from zlh_infra.platform.type_tokens import STACK_REFERENCE as STACK_REFERENCE_TYPE
from zlh_infra.platform.vmids import VmidRole
from zlh_infra.policies.resources import GUEST_TYPES
from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording
from zlh_infra.tooling.preview.render import Guest, display, guest_of

DOC = Path("docs/architecture.md")
BEGIN = "<!-- diagram:begin -->"
END = "<!-- diagram:end -->"
#: The stacks drawn: the one of each role named after it.
STACKS = (StackRole.CORE.value, StackRole.RUNTIME.value)


#: The link between the hosts, drawn as a node of its own (the agent path crosses it).
MANAGEMENT_NODE = "management_network"

COMMAND_TYPE = "command:remote:Command"

#: Guests of these roles are drawn as one node per stack: the fleet grows, the
#: diagram should not.
FOLDED_ROLES = (VmidRole.GAME, VmidRole.DEV)
_LAYER_TITLES = {
    Layer.CONTROL_PLANE: "Layer 1: control plane",
    Layer.EDGE: "Layer 2: edge",
    Layer.RUNTIME: "Layer 3: runtime",
}
_HOST_ROUTE = re.compile(r"Host\(`([^`]+)`\)")
_VELOCITY_SERVER = re.compile(r'^"([^"]+)"\s*=\s*"([^"]+)"$')


class DiagramError(RuntimeError):
    """The stacks could not be previewed, or the doc has no place for the diagram."""

    def __init__(self, message: str, exit_code: int = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    #: Draw order: the contract first, then traffic, then backups.
    rank: int
    source: str
    target: str
    label: str
    arrow: str = "-->"


# --- the graph -----------------------------------------------------------------------------


def _node_id(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", part).strip("_") for part in parts)


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _ip(address: str) -> str:
    return address.split("/", 1)[0]


class _Platform:
    """The recordings indexed for drawing: guests, their nodes and their addresses."""

    def __init__(self, recordings: Sequence[StackRecording]) -> None:
        self.recordings = list(recordings)
        self.guests: dict[str, list[Guest]] = {}
        #: Guest resource URN -> diagram node id.
        self.node_of: dict[str, str] = {}
        #: Guest address (no prefix) -> diagram node id.
        self.by_address: dict[str, str] = {}
        #: Guest component URN -> the guest's diagram node id (for its firewall rules).
        self.by_component: dict[str, str] = {}
        for recording in self.recordings:
            found = []
            for resource in recording.resources:
                guest = guest_of(resource) if resource.type in GUEST_TYPES else None
                if guest is None:
                    continue
                found.append(guest)
                node = self.node_for(recording.stack, guest)
                self.node_of[resource.urn] = node
                if resource.parent:
                    self.by_component[resource.parent] = node
                for address in guest.addresses:
                    self.by_address.setdefault(_ip(address), node)
            self.guests[recording.stack] = found

    @staticmethod
    def node_for(stack: str, guest: Guest) -> str:
        if guest.role in FOLDED_ROLES:
            return _node_id(stack, guest.role)
        return _node_id(stack, guest.name)

    def output(self, name: str) -> Any:
        for recording in self.recordings:
            if name in recording.outputs:
                return recording.outputs[name]
        return None


def _vmid_range(vmids: Iterable[str]) -> str:
    numbers = sorted(int(v) for v in vmids if v.isdigit())
    if not numbers:
        return "?"
    low, high = numbers[0], numbers[-1]
    return str(low) if low == high else f"{low}-{high}"


def _by_vmid(guest: Guest) -> tuple[int, str]:
    return (int(guest.vmid) if guest.vmid.isdigit() else sys.maxsize, guest.name)


def _host_lines(platform: _Platform, recording: StackRecording) -> list[str]:
    stack = recording.stack
    guests = platform.guests.get(stack, [])
    nodes = sorted({g.node for g in guests if g.node})
    host = ", ".join(nodes) or "?"
    lines = [
        f"    subgraph {_node_id(stack, 'host')}[{_label(f'{stack} host')}]",
        # The host itself (its Proxmox node and the stack deploying it): where the
        # contract is read and the backup jobs run.
        f"        {_node_id(stack, 'node')}([{_label(f'Proxmox VE {host}<br/>stack {stack}')}])",
    ]
    for layer in Layer:
        members = sorted((g for g in guests if g.layer == layer), key=_by_vmid)
        if not members:
            continue
        lines.append(f"        subgraph {_node_id(stack, layer)}[{_label(_LAYER_TITLES[layer])}]")
        folded: dict[str, list[Guest]] = {}
        for guest in members:
            if guest.role in FOLDED_ROLES:
                folded.setdefault(guest.role, []).append(guest)
                continue
            kind = " (VM)" if guest.kind == "vm" else ""
            text = f"{guest.name}{kind}<br/>VMID {guest.vmid or '?'}"
            lines.append(f"            {_node_id(stack, guest.name)}[{_label(text)}]")
        for role in FOLDED_ROLES:
            group = folded.get(role)
            if not group:
                continue
            count = f"{len(group)} {role} container{'' if len(group) == 1 else 's'}"
            text = f"{count}<br/>VMID {_vmid_range(g.vmid for g in group)}"
            lines.append(f"            {_node_id(stack, role)}[[{_label(text)}]]")
        lines.append("        end")
    lines.append("    end")
    return lines


def _contract_edges(platform: _Platform) -> list[Edge]:
    stacks = {recording.stack for recording in platform.recordings}
    edges = []
    for recording in platform.recordings:
        for read in recording.reads:
            if read.type != STACK_REFERENCE_TYPE:
                continue
            target = str(read.inputs.get("name", read.name)).rsplit("/", 1)[-1]
            if target not in stacks:
                continue
            core = next(r for r in platform.recordings if r.stack == target)
            version = display(core.outputs.get("contractVersion")) or "?"
            edges.append(
                Edge(
                    0,
                    _node_id(target, "node"),
                    _node_id(recording.stack, "node"),
                    f"contract v{version}<br/>StackReference {read.name}",
                    "==>",
                )
            )
    return edges


def _agent_edges(platform: _Platform) -> list[Edge]:
    """Who may reach zlh-agent, computed with the evaluator over each stack's firewall.

    A source on the management network reaches the agents through it: one hop to the
    network node, one from it to each kind of container, rather than a labelled line
    from the API to every group. A NIC open to every address (a router) draws nothing.
    """
    management = _network(platform.output("managementCidr"))
    label = f"TCP {AGENT_PORT} zlh-agent"
    edges = []
    for recording in platform.recordings:
        guests = platform.guests.get(recording.stack, [])
        nodes = {g.vmid: platform.node_for(recording.stack, g) for g in guests}
        try:
            host, views = read_firewall((r.type, r.name, r.inputs) for r in recording.resources)
        except FirewallReadError:
            continue
        for vmid, view in sorted(views.items()):
            target = nodes.get(str(vmid))
            if target is None:
                continue
            for nic in view.nics:
                try:
                    sources = reachable_from(
                        host, view.firewall(), iface=nic.iface, proto=TCP, port=AGENT_PORT
                    )
                except FirewallReadError:
                    continue
                if sources == AddressSet.everything():
                    continue
                for address, source in sorted(platform.by_address.items()):
                    if not sources & AddressSet.of(address):
                        continue
                    if management is not None and _in_network(address, management):
                        edges += [
                            Edge(1, source, MANAGEMENT_NODE, label),
                            Edge(1, MANAGEMENT_NODE, target, ""),
                        ]
                    else:
                        edges.append(Edge(1, source, target, label))
    return edges


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(str(value)) if value is not None else None
    except ValueError:
        return None


def _in_network(address: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def _dependency_guest(platform: _Platform, resource: RecordedResource) -> str | None:
    for urn in resource.dependencies:
        if urn in platform.node_of:
            return platform.node_of[urn]
    return None


def _wildcard(hosts: Sequence[str]) -> str:
    if len(hosts) == 1:
        return hosts[0]
    domains = {host.split(".", 1)[-1] for host in hosts}
    if len(domains) == 1:
        return f"*.{domains.pop()} ({len(hosts)} routes)"
    return f"{len(hosts)} routes"


def _route_edges(platform: _Platform) -> list[Edge]:
    """Traefik routers and Velocity servers, from the files the edge steps write."""
    folded = {_node_id(r.stack, role) for r in platform.recordings for role in FOLDED_ROLES}
    edges = []
    for recording in platform.recordings:
        for resource in recording.resources:
            stdin = resource.inputs.get("stdin")
            proxy = _dependency_guest(platform, resource)
            if resource.type != COMMAND_TYPE or not isinstance(stdin, str) or proxy is None:
                continue
            targets: dict[str, list[str]] = {}
            for host, backend in _traefik_routes(stdin) + _velocity_servers(stdin):
                target = platform.by_address.get(backend)
                if target is not None:
                    targets.setdefault(target, []).append(host)
            for target, hosts in targets.items():
                hosts = sorted(set(hosts))
                text = _wildcard(hosts) if target in folded else "<br/>".join(hosts)
                edges.append(Edge(2, proxy, target, text))
    return edges


def _traefik_routes(content: str) -> list[tuple[str, str]]:
    """(host name, backend address) of each router in a Traefik dynamic config."""
    try:
        http = json.loads(content).get("http", {})
    except (json.JSONDecodeError, AttributeError):
        return []
    routes = []
    services = http.get("services", {})
    for router in http.get("routers", {}).values():
        host = _HOST_ROUTE.search(str(router.get("rule", "")))
        service = services.get(router.get("service"), {})
        for server in service.get("loadBalancer", {}).get("servers", []):
            backend = urlsplit(str(server.get("url", ""))).hostname
            if host and backend:
                routes.append((host.group(1), backend))
    return routes


def _velocity_servers(content: str) -> list[tuple[str, str]]:
    """Velocity's ``[servers]`` table: every game server behind the Minecraft proxy."""
    if not content.startswith("[servers]"):
        return []
    servers = []
    for line in content.splitlines()[1:]:
        match = _VELOCITY_SERVER.match(line.strip())
        if match:
            address, _, port = match.group(2).rpartition(":")
            servers.append((f"Minecraft TCP {port}", address))
    return servers


def _backup_edges(platform: _Platform) -> list[Edge]:
    """Per host and PBS storage, the guests its jobs take: by VMID, or every pool member."""
    edges = []
    for recording in platform.recordings:
        storages = {
            str(r.inputs.get("resourceId")): r
            for r in recording.resources
            if r.type == PBS_STORAGE_TYPE
        }
        pools: dict[str, set[str]] = {}
        for resource in recording.resources:
            if resource.type in GUEST_TYPES and resource.inputs.get("poolId"):
                vmid = display(resource.inputs.get("vmId"))
                pools.setdefault(str(resource.inputs["poolId"]), set()).add(vmid)
        taken: dict[tuple[str, str], set[str]] = {}
        for job in (r for r in recording.resources if r.type == BACKUP_JOB_TYPE):
            storage_id = str(job.inputs.get("storage"))
            if storage_id not in storages:
                continue
            vmids = job.inputs.get("vmids")
            guests = {str(v) for v in vmids} if isinstance(vmids, list) else set()
            guests |= pools.get(str(job.inputs.get("pool")), set())
            key = (storage_id, display(job.inputs.get("schedule")))
            taken.setdefault(key, set()).update(guests)
        for (storage_id, schedule), guests in sorted(taken.items()):
            storage = storages[storage_id]
            target = platform.by_address.get(_ip(display(storage.inputs.get("server"))))
            if target is None:
                continue
            label = (
                f"backup {schedule}, {len(guests)} guests<br/>"
                f"PBS datastore {display(storage.inputs.get('datastore'))}"
            )
            edges.append(Edge(3, _node_id(recording.stack, "node"), target, label, "-.->"))
    return edges


def mermaid(recordings: Sequence[StackRecording]) -> str:
    """The Mermaid flowchart of the recorded stacks (deterministic for the same input)."""
    platform = _Platform(recordings)
    lines = ["flowchart LR"]
    for recording in platform.recordings:
        lines += _host_lines(platform, recording)
    edges = sorted(
        set(
            _contract_edges(platform)
            + _agent_edges(platform)
            + _route_edges(platform)
            + _backup_edges(platform)
        )
    )
    if any(MANAGEMENT_NODE in (edge.source, edge.target) for edge in edges):
        cidr = display(platform.output("managementCidr"))
        lines.append(f"    {MANAGEMENT_NODE}{{{{{_label(f'management network<br/>{cidr}')}}}}}")
    for edge in edges:
        label = f"|{_label(edge.label)}| " if edge.label else " "
        lines.append(f"    {edge.source} {edge.arrow}{label}{edge.target}")
    return "\n".join(lines) + "\n"


# --- the doc -------------------------------------------------------------------------------


def block(diagram: str) -> str:
    """What goes between the markers."""
    return (
        "\n<!-- Generated from the offline preview of the core and runtime stacks by "
        "`python -m zlh_infra diagram --write`: edit the program, not this block. -->\n"
        f"```mermaid\n{diagram}```\n"
    )


def split_doc(text: str, path: Path = DOC) -> tuple[str, str, str]:
    """(before and with the begin marker, the block, the end marker and after)."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < 0 or end < begin or text.count(BEGIN) != 1 or text.count(END) != 1:
        raise DiagramError(
            f"{path} needs exactly one {BEGIN} line and one {END} line after it, where the "
            "diagram goes"
        )
    start = begin + len(BEGIN)
    return text[:start], text[start:end], text[end:]


def new_doc() -> str:
    return f"# Architecture\n\n{BEGIN}\n{END}\n"


def generate(root: Path) -> str:
    """Preview both stacks of the project at ``root`` in-process and draw them."""
    from zlh_infra.tooling.preview.runner import run_platform

    files = {stack: root / f"Pulumi.{stack}.yaml" for stack in STACKS}
    # The program's prints would otherwise mix with this command's output.
    with contextlib.redirect_stdout(sys.stderr):
        recordings = run_platform(files, list(STACKS), project_file=root / "Pulumi.yaml")
    failures = [
        (recording.stack, d)
        for recording in recordings
        for d in recording.diagnostics
        if d.severity == "error" and d.source != "policy"
    ]
    if failures:
        stack, first = failures[0]
        code = (
            ExitCode.PROGRAM if any(d.source == "program" for _, d in failures) else ExitCode.USAGE
        )
        raise DiagramError(f"stack {stack} fails offline: {first.message.splitlines()[0]}", code)
    return mermaid(recordings)


def check(root: Path, diagram: str) -> list[str]:
    """Problems with the committed diagram (empty when it is current)."""
    path = root / DOC
    if not path.exists():
        return [f"{DOC} does not exist"]
    try:
        _, committed, _ = split_doc(path.read_text(encoding="utf-8"), DOC)
    except DiagramError as error:
        return [str(error)]
    expected = block(diagram)
    if committed == expected:
        return []
    diff = difflib.unified_diff(
        committed.splitlines(), expected.splitlines(), "committed", "generated", lineterm=""
    )
    return [f"{DOC}: the diagram differs from what the program generates", *diff]


def write(root: Path, diagram: str) -> bool:
    """Put the diagram between the markers; True if the file changed."""
    path = root / DOC
    text = path.read_text(encoding="utf-8") if path.exists() else new_doc()
    before, _, after = split_doc(text, DOC)
    updated = before + block(diagram) + after
    if path.exists() and updated == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated, encoding="utf-8")
    return True


# --- command line --------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "diagram",
        help="check or rewrite the platform diagram in docs/architecture.md",
        description="Preview the core and runtime stacks offline and draw the platform as a "
        f"Mermaid flowchart. Without --write, exit 1 if the diagram in {DOC} (between "
        f"{BEGIN} and {END}) differs; --write puts it there, creating {DOC} if needed.",
    )
    parser.add_argument("--write", action="store_true", help=f"write the diagram into {DOC}")
    parser.add_argument("--root", type=Path, default=None, help="project root")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from zlh_infra.tooling.project import project_root

    root: Path = args.root or project_root()
    try:
        diagram = generate(root)
        if args.write:
            if write(root, diagram):
                print(f"wrote {DOC}")
            return ExitCode.OK
    except DiagramError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    problems = check(root, diagram)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"run `python -m zlh_infra diagram --write` to update {DOC}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
