"""Servers zpack-api makes, made in the lab the way zpack-api makes them.

zpack-api reads the runtime stack's ``fleetSpec`` output and makes a server with the
Proxmox API calls of ``docs/fleet.md``: a clone of a template, its config, its firewall
options and rules. The lab computes those calls from the export alone, as zpack-api
does, and keeps what a Proxmox host would hold after them: the guest as
``GET .../config``, ``.../firewall/options`` and ``.../firewall/rules`` return it. The
audit's converter turns that into the provider's shape, so the lab builds, filters and
checks such a server like any recorded guest, while Pulumi's recording never holds it.

Pure: no subprocess, no file system.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from zlh_infra.platform.addressing import fleet_address
from zlh_infra.platform.type_tokens import CONTAINER
from zlh_infra.platform.type_tokens import FIREWALL_OPTIONS as OPTIONS
from zlh_infra.platform.type_tokens import FIREWALL_RULES as RULES
from zlh_infra.platform.wire_numbers import whole_number
from zlh_infra.services import routes
from zlh_infra.tooling.audit.client import GuestRecord
from zlh_infra.tooling.audit.convert import guest_options_props, guest_props, rule_props
from zlh_infra.tooling.lab.plan import unwrap
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording

#: The name a server gets: a DNS label, as ``zlh-route`` requires of a route's name.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: The guest whose service account registers routes, and that account.
API_GUEST = API_ACCOUNT = "zpack-api"
#: What the lab's servers are given where the export leaves it to the order.
CORES, MEMORY_MB = 1, 1024


class ApiServerError(ValueError):
    """The export does not allow the server asked for (no free VMID, no template)."""


@dataclass(frozen=True, slots=True)
class ApiCalls:
    """The writes zpack-api makes for one server, in order, with their parameters."""

    node: str
    template: int
    vmid: int
    #: ``POST /nodes/{node}/lxc/{template}/clone``
    clone: dict[str, Any]
    #: ``PUT /nodes/{node}/lxc/{vmid}/config``
    config: dict[str, Any]
    #: ``PUT /nodes/{node}/lxc/{vmid}/firewall/options``
    firewall_options: dict[str, Any]
    #: The rules in their final order; ``POST .../firewall/rules`` takes them last to first.
    firewall_rules: tuple[dict[str, Any], ...]
    #: Where the server's workload is reached (its LAN address and the template's port).
    workload: str

    def describe(self) -> list[str]:
        """The calls as an operator reads them in the task log."""
        base = f"/nodes/{self.node}/lxc"
        lines = [
            f"POST {base}/{self.template}/clone {_params(self.clone)}",
            f"PUT {base}/{self.vmid}/config {_params(self.config)}",
            f"PUT {base}/{self.vmid}/firewall/options {_params(self.firewall_options)}",
        ]
        lines += [
            f"POST {base}/{self.vmid}/firewall/rules {_params(rule)}"
            for rule in reversed(self.firewall_rules)
        ]
        lines.append(f"POST {base}/{self.vmid}/status/start")
        return lines


def route_kind(spec: Mapping[str, Any], template: int) -> routes.RouteKind:
    """The kind of route a template's servers get: the one whose proxy is its source."""
    for entry in spec.get("templates") or ():
        if whole_number(entry.get("vmid"), digits=False) == template:
            for kind, guest in routes.ROUTE_GUESTS.items():
                if guest == entry.get("workloadSource"):
                    return kind
    raise ApiServerError(f"template {template}: no route host serves its workload")


def _params(values: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in values.items())


def route_argv(server: ApiServer, *words: str) -> list[str]:
    """``zlh-route`` ``words`` for ``server``'s route host, run as zpack-api runs it."""
    command = routes.client_command(server.stack, server.route, *words)
    return ["runuser", "-u", API_ACCOUNT, "--", *command]


def _whole(value: Any, what: str) -> int:
    number = whole_number(value, digits=False)
    if number is None:
        raise ApiServerError(f"fleetSpec {what}: {value!r} is not a whole number")
    return number


def plan_calls(spec: Mapping[str, Any], role: str, name: str, taken: Collection[int]) -> ApiCalls:
    """The calls for a new ``role`` server called ``name``, from the export ``spec``.

    The VMID is the lowest of zpack-api's part of the role's range that ``taken`` (every
    VMID of the host) does not hold, as zpack-api picks it.
    """
    if not _NAME.fullmatch(name):
        raise ApiServerError(f"name: {name!r} is not a DNS label (a-z, 0-9, '-')")
    spec = unwrap(dict(spec))
    part = (spec.get("vmids") or {}).get(role)
    if not isinstance(part, Mapping):
        raise ApiServerError(f"role: fleetSpec has no VMIDs for {role!r}")
    first, last = (
        _whole(part.get("first"), f"vmids.{role}.first"),
        _whole(part.get("last"), f"vmids.{role}.last"),
    )
    vmid = next((v for v in range(first, last + 1) if v not in taken), None)
    if vmid is None:
        raise ApiServerError(f"role: every VMID of {role} {first}-{last} is taken")
    templates = [t for t in spec.get("templates") or () if t.get("role") == role]
    if not templates:
        raise ApiServerError(f"role: fleetSpec has no {role} template")
    template = templates[0]
    template_vmid = _whole(template.get("vmid"), "templates[].vmid")

    addressing = spec.get("addressing") or {}
    offset = _whole(addressing.get("fleetOffset"), "addressing.fleetOffset")
    first_vmid = _whole(addressing.get("firstVmid"), "addressing.firstVmid")
    config: dict[str, Any] = {}
    lan_address = lan_iface = None
    for nic in spec.get("nics") or ():
        network = IPv4Network(str(nic["cidr"]))
        address = fleet_address(network, offset, first_vmid, vmid)
        value = (
            f"name={nic['name']},bridge={nic['bridge']},"
            f"firewall={_whole(nic.get('firewall'), 'nics[].firewall')},"
            f"ip={address}/{network.prefixlen}"
        )
        if nic.get("gateway"):
            value += f",gw={nic['gateway']}"
        config[str(nic["key"])] = value
        if nic.get("network") == "lan":
            lan_address, lan_iface = address, str(nic["key"])
    if lan_address is None:
        raise ApiServerError("nics: fleetSpec has no LAN NIC")
    config |= {
        "cores": CORES,
        "memory": MEMORY_MB,
        "tags": ";".join(spec["tags"][role]),
        **{key: _option(value) for key, value in (spec.get("options") or {}).items()},
    }
    rules: list[dict[str, Any]] = [
        {"type": "group", "action": group["group"], "iface": group["iface"], "enable": 1}
        for group in spec.get("securityGroups") or ()
    ]
    ports = [_whole(port, "templates[].ports") for port in template.get("ports") or ()]
    for port in ports:
        rules.append(
            {
                "type": "in",
                "action": "ACCEPT",
                "proto": "tcp",
                "dport": str(port),
                "source": f"{template['workloadSourceAddress']}/32",
                "iface": lan_iface,
                "comment": f"{role} traffic from {template['workloadSource']}",
                "enable": 1,
            }
        )
    return ApiCalls(
        node=str(spec["node"]),
        template=template_vmid,
        vmid=vmid,
        clone={
            "newid": vmid,
            "hostname": name,
            "pool": spec["pool"],
            "full": 1,
            "storage": spec["storage"],
        },
        config=config,
        firewall_options={key: _option(v) for key, v in spec["firewallOptions"].items()},
        firewall_rules=tuple(rules),
        workload=f"{lan_address}:{ports[0]}" if ports else str(lan_address),
    )


def _option(value: Any) -> Any:
    """The export's numbers come as JSON numbers; Proxmox's options take integers."""
    number = whole_number(value, digits=False)
    return value if number is None else number


def host_record(calls: ApiCalls, template_config: Mapping[str, Any]) -> GuestRecord:
    """The server as the host holds it once the calls are made: the template's config
    (its resolver, search domain, features), the clone's and the config call's values."""
    config = {
        **{k: v for k, v in template_config.items() if not re.fullmatch(r"net\d+", k)},
        "hostname": calls.clone["hostname"],
        **calls.config,
    }
    return GuestRecord(
        kind="lxc",
        vmid=calls.vmid,
        node=calls.node,
        name=str(calls.clone["hostname"]),
        template=False,
        pool=str(calls.clone["pool"]),
        config=config,
        firewall_options=dict(calls.firewall_options),
        firewall_rules=[{**rule, "pos": index} for index, rule in enumerate(calls.firewall_rules)],
        aliases=[],
        ipsets={},
    )


def template_config(template: RecordedResource) -> dict[str, Any]:
    """The Proxmox config keys a clone copies from ``template`` that the lab reads."""
    dns = (unwrap(template.inputs).get("initialization") or {}).get("dns") or {}
    config: dict[str, Any] = {}
    if dns.get("servers"):
        config["nameserver"] = " ".join(str(s) for s in dns["servers"])
    if dns.get("domain"):
        config["searchdomain"] = str(dns["domain"])
    return config


def server_urn(stack: str, record: GuestRecord) -> str:
    """Not a Pulumi URN (no ``::``): Pulumi never made the server."""
    return f"pve:{stack}/{record.node}/lxc/{record.vmid}"


def as_resources(stack: str, record: GuestRecord, template: int) -> list[RecordedResource]:
    """The server and its firewall in the provider's shape, as the lab reads a recording."""
    owner = {"containerId": record.vmid, "nodeName": record.node}
    urn = server_urn(stack, record)
    container = {
        **guest_props(record),
        "clone": {"vmId": template, "full": True},
        "started": True,
    }
    options = {**guest_options_props(record.firewall_options), **owner}
    rules = {**owner, "rules": [rule_props(rule) for rule in record.firewall_rules]}
    return [
        _resource(urn, CONTAINER, record.name, container),
        _resource(f"{urn}/firewall/options", OPTIONS, f"lxc/{record.vmid}", options),
        _resource(f"{urn}/firewall/rules", RULES, record.name, rules),
    ]


def _resource(urn: str, type_: str, name: str, inputs: dict[str, Any]) -> RecordedResource:
    return RecordedResource(
        urn=urn,
        type=type_,
        name=name,
        custom=True,
        parent=None,
        dependencies=[],
        property_dependencies={},
        provider=None,
        inputs=inputs,
        options={},
    )


@dataclass(frozen=True, slots=True)
class ApiServer:
    """A server the lab made as zpack-api does, as the lab keeps it between runs."""

    stack: str
    role: str
    template: int
    #: ``<LAN address>:<port>``: what its route points at.
    workload: str
    record: GuestRecord
    #: The kind of route host it is registered with, remembered as zpack-api remembers
    #: it: deleting the route must not depend on the template still being exported.
    route: routes.RouteKind

    @property
    def vmid(self) -> int:
        return self.record.vmid

    @property
    def name(self) -> str:
        return self.record.name

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "stack": self.stack,
            "role": self.role,
            "template": self.template,
            "workload": self.workload,
            "route": str(self.route),
            "vmid": record.vmid,
            "node": record.node,
            "name": record.name,
            "pool": record.pool,
            "config": record.config,
            "firewallOptions": record.firewall_options,
            "firewallRules": record.firewall_rules,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiServer:
        record = GuestRecord(
            kind="lxc",
            vmid=int(data["vmid"]),
            node=str(data["node"]),
            name=str(data["name"]),
            template=False,
            pool=data.get("pool"),
            config=dict(data["config"]),
            firewall_options=dict(data["firewallOptions"]),
            firewall_rules=[dict(rule) for rule in data["firewallRules"]],
            aliases=[],
            ipsets={},
        )
        return cls(
            stack=str(data["stack"]),
            role=str(data["role"]),
            template=int(data["template"]),
            workload=str(data["workload"]),
            record=record,
            route=routes.RouteKind(data["route"]),
        )


def _recorded_vmids(resources: Sequence[RecordedResource]) -> dict[int, str]:
    """Each VMID the recorded guests hold, with its guest's type."""
    found = {}
    for resource in resources:
        vmid = whole_number(unwrap(resource.inputs).get("vmId"), digits=False)
        if vmid is not None:
            found[vmid] = resource.type
    return found


def conflict(server: ApiServer, recording: StackRecording | None) -> str | None:
    """Why ``server`` can no longer stand beside ``recording`` (its stack's), or None."""
    if recording is None:
        return f"its stack {server.stack} is not recorded"
    guests = _recorded_vmids(recording.resources)
    if server.vmid in guests:
        return f"the stack now declares VMID {server.vmid} itself"
    if guests.get(server.template) != CONTAINER:
        return f"its template {server.template} is no longer recorded"
    return None


def taken_vmids(resources: Sequence[RecordedResource], servers: Collection[int]) -> set[int]:
    """Every VMID the host holds: the recorded guests' and zpack-api's servers'."""
    return set(servers) | set(_recorded_vmids(resources))
