"""Each policy's configuration: JSON schema with defaults, and a typed, validated view.

Defaults come from the platform's own definitions (VMID scheme, topology, service
catalogue) and the platform inventory, so an operator changes a value with
``--policy-pack-config`` rather than by editing the pack. The engine fills in schema
defaults and checks types before it configures the pack; the parsers below apply
the defaults again (a driver may send no config at all) and check what a JSON schema
cannot, such as overlapping VMID ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any, Generic, TypeVar

from zlh_infra.platform.catalogue import (
    AGENT_PORT,
    CONTROL_PLANE_SERVICES,
    EDGE_SERVICES,
    METRICS_PORT,
    RUNTIME_SERVICES,
)
from zlh_infra.platform.vmids import (
    DEFAULT_SCHEME,
    PROXMOX_MAX_VMID,
    PROXMOX_MIN_VMID,
    VmidRange,
    VmidRole,
    VmidScheme,
    scheme_problems,
)
from zlh_infra.policies.resources import whole_number

#: The hosts' Proxmox node names (platform inventory, "Hosts and stacks").
CORE_NODE = "zlh-core"
RUNTIME_NODE = "zlh-runtime"
DEFAULT_STACK_NODES: dict[str, str] = {"core": CORE_NODE, "runtime": RUNTIME_NODE}
#: A bare name also matches FQDNs that start with it (``zlh-core.example.net``).
DEFAULT_CORE_ENDPOINT_HOSTS: tuple[str, ...] = (CORE_NODE,)
#: zpack-api's address on the management network, the only agent source.
DEFAULT_API_ADDRESS = "10.99.0.10"
#: zlh-monitor's address on the management network, the only metrics scraper.
DEFAULT_MONITOR_ADDRESS = "10.99.0.20"
#: The management network's bridge on both hosts (vmbr0 WAN, vmbr1 LAN, vmbr2 management).
DEFAULT_MANAGEMENT_BRIDGE = "vmbr2"
#: Service tags of the guests the runtime stacks build from templates.
TEMPLATE_SERVICE, GAME_SERVICE, DEV_SERVICE = "template", "game", "dev"
CORE_PROXY_SERVICE = "zlh-proxy"
RUNTIME_PROXY_SERVICE = "zlh-zpack-proxy"
PLATFORM_TAG_DEFAULT = "zlh"

DEFAULT_CONTROL_PLANE_SERVICES: tuple[str, ...] = tuple(CONTROL_PLANE_SERVICES)
DEFAULT_RUNTIME_SERVICES: tuple[str, ...] = (
    *EDGE_SERVICES,
    *RUNTIME_SERVICES,
    TEMPLATE_SERVICE,
    GAME_SERVICE,
    DEV_SERVICE,
)
DEFAULT_FLEET_ROLES: tuple[str, ...] = (VmidRole.GAME.value, VmidRole.DEV.value)

C = TypeVar("C")


class PolicyConfigError(ValueError):
    """A policy's configuration cannot be used; the message names each bad key."""

    def __init__(self, policy: str, problems: list[str]) -> None:
        self.policy = policy
        self.problems = problems
        super().__init__(
            f"the configuration of policy {policy} is unusable: {'; '.join(problems)}. "
            "Fix it in the --policy-pack-config file."
        )


class _Reader:
    """Typed reads of one policy's config; collects every problem before failing."""

    def __init__(self, policy: str, raw: Mapping[str, Any] | None, defaults: Mapping[str, Any]):
        self.policy = policy
        self.defaults = defaults
        self.values = {**defaults, **(raw or {})}
        self.problems: list[str] = []
        # A misspelt key would otherwise leave its default silently in force.
        unknown = sorted(set(raw or {}) - set(defaults) - {"enforcementLevel"})
        if unknown:
            self.problems.append(
                f"unknown key(s) {', '.join(unknown)}; its keys are {', '.join(defaults)}"
            )

    def bad(self, key: str, expected: str) -> None:
        self.problems.append(f"{key} must be {expected}, not {self.values[key]!r}")

    def string(self, key: str) -> str:
        value = self.values[key]
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.bad(key, "a non-empty string")
        return str(self.defaults[key])

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values[key]
        if isinstance(value, list | tuple) and all(isinstance(v, str) and v.strip() for v in value):
            return tuple(v.strip() for v in value)
        self.bad(key, "a list of non-empty strings")
        return tuple(self.defaults[key])

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.values[key]
        number = None if isinstance(value, str) else whole_number(value)
        if number is not None and low <= number <= high:
            return number
        self.bad(key, f"a whole number from {low} to {high}")
        return int(self.defaults[key])

    def integers(self, key: str, low: int, high: int) -> tuple[int, ...]:
        value = self.values[key]
        if isinstance(value, list | tuple):
            numbers = [None if isinstance(v, str) else whole_number(v) for v in value]
            if all(n is not None and low <= n <= high for n in numbers):
                return tuple(n for n in numbers if n is not None)
        self.bad(key, f"a list of whole numbers from {low} to {high}")
        return tuple(self.defaults[key])

    def boolean(self, key: str) -> bool:
        value = self.values[key]
        if isinstance(value, bool):
            return value
        self.bad(key, "true or false")
        return bool(self.defaults[key])

    def string_map(self, key: str) -> dict[str, str]:
        value = self.values[key]
        if isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items()
        ):
            return {k: v.strip() for k, v in value.items()}
        self.bad(key, "an object mapping names to non-empty strings")
        return dict(self.defaults[key])

    def done(self) -> None:
        if self.problems:
            raise PolicyConfigError(self.policy, self.problems)


@dataclass(frozen=True, slots=True)
class ConfigSpec(Generic[C]):
    """One policy's config: the schema properties the pack advertises, and its parser."""

    properties: dict[str, dict[str, Any]]
    parse_values: Callable[[_Reader], C]

    @property
    def defaults(self) -> dict[str, Any]:
        return {key: prop["default"] for key, prop in self.properties.items()}

    def parse(self, policy: str, raw: Mapping[str, Any] | None) -> C:
        reader = _Reader(policy, raw, self.defaults)
        value = self.parse_values(reader)
        reader.done()
        return value


def _string_list_schema(description: str, default: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "description": description,
        "default": list(default),
    }


# --- zlh-vmid-range ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmidRangeConfig:
    scheme: VmidScheme


def _range_schema(vmid_range: VmidRange) -> dict[str, Any]:
    bound = {"type": "integer", "minimum": PROXMOX_MIN_VMID, "maximum": PROXMOX_MAX_VMID}
    return {
        "type": "object",
        "description": f"{vmid_range.purpose}, first and last VMID inclusive",
        "properties": {"first": bound, "last": bound},
        "required": ["first", "last"],
        "additionalProperties": False,
    }


def _parse_vmid_range(reader: _Reader) -> VmidRangeConfig:
    value = reader.values["ranges"]
    if not isinstance(value, Mapping):
        reader.bad("ranges", "an object of {first, last} per role")
        return VmidRangeConfig(DEFAULT_SCHEME)
    # The engine replaces the whole object when the config file sets it, so roles
    # the file leaves out keep the platform default.
    bounds: dict[VmidRole, tuple[int, int]] = {
        r.role: (r.first, r.last) for r in DEFAULT_SCHEME.ranges
    }
    for role_name, entry in value.items():
        try:
            role = VmidRole(role_name)
        except ValueError:
            reader.problems.append(
                f"ranges has unknown role {role_name!r}; roles are "
                + ", ".join(r.value for r in VmidRole)
            )
            continue
        first = whole_number(entry.get("first")) if isinstance(entry, Mapping) else None
        last = whole_number(entry.get("last")) if isinstance(entry, Mapping) else None
        if first is None or last is None:
            reader.problems.append(f"ranges.{role_name} must be {{first, last}} whole numbers")
            continue
        bounds[role] = (first, last)
    ranges = sorted(
        (
            VmidRange(role, first, last, DEFAULT_SCHEME.range_of(role).purpose)
            for role, (first, last) in bounds.items()
        ),
        key=lambda vmid_range: vmid_range.first,
    )
    problems = scheme_problems(ranges)
    if problems:
        reader.problems.extend(f"ranges: {problem}" for problem in problems)
        return VmidRangeConfig(DEFAULT_SCHEME)
    return VmidRangeConfig(VmidScheme(tuple(ranges)))


VMID_RANGE = ConfigSpec(
    properties={
        "ranges": {
            "type": "object",
            "description": (
                "VMID range of each role; a role left out keeps its default. "
                "Ranges must not overlap."
            ),
            "properties": {str(r.role): _range_schema(r) for r in DEFAULT_SCHEME.ranges},
            "additionalProperties": False,
            "default": {
                str(r.role): {"first": r.first, "last": r.last} for r in DEFAULT_SCHEME.ranges
            },
        },
    },
    parse_values=_parse_vmid_range,
)


# --- zlh-vmid-unique --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmidUniqueConfig:
    reserved: frozenset[int]


VMID_UNIQUE = ConfigSpec(
    properties={
        "reservedVmids": {
            "type": "array",
            "items": {
                "type": "integer",
                "minimum": PROXMOX_MIN_VMID,
                "maximum": PROXMOX_MAX_VMID,
            },
            "description": (
                "VMIDs taken by guests outside this stack (made by hand, or another "
                "stack's), which no guest of the stack may use"
            ),
            "default": [],
        },
    },
    parse_values=lambda r: VmidUniqueConfig(
        frozenset(r.integers("reservedVmids", PROXMOX_MIN_VMID, PROXMOX_MAX_VMID))
    ),
)


# --- zlh-guest-placement ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    stack_nodes: dict[str, str]

    @property
    def core_node(self) -> str:
        return self.stack_nodes.get("core", CORE_NODE)


PLACEMENT = ConfigSpec(
    properties={
        "stackNodes": {
            "type": "object",
            "additionalProperties": {"type": "string", "minLength": 1},
            "description": (
                "Proxmox node of each stack (stack name without organisation and project); "
                "the node of 'core' is the core node"
            ),
            "default": dict(DEFAULT_STACK_NODES),
        },
    },
    parse_values=lambda r: PlacementConfig(r.string_map("stackNodes")),
)


# --- zlh-control-plane-independent / zlh-runtime-isolation ------------------------

#: The core LAN and the management network of the platform inventory.
DEFAULT_CORE_NETWORKS: tuple[str, ...] = ("10.10.0.0/24",)
DEFAULT_MANAGEMENT_NETWORK = "10.99.0.0/22"


_CORE_NODE_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "description": "Proxmox node name of the core host",
    "default": CORE_NODE,
}
_CORE_HOSTS_SCHEMA = _string_list_schema(
    "host names or addresses of the core host's API endpoint; a bare name also "
    "matches every FQDN starting with it",
    DEFAULT_CORE_ENDPOINT_HOSTS,
)


@dataclass(frozen=True, slots=True)
class IndependenceConfig:
    core_node: str
    core_endpoint_hosts: tuple[str, ...]
    runtime_services: frozenset[str]
    core_networks: tuple[IPv4Network, ...]


INDEPENDENCE = ConfigSpec(
    properties={
        "coreNode": _CORE_NODE_SCHEMA,
        "coreEndpointHosts": _CORE_HOSTS_SCHEMA,
        "runtimeServices": _string_list_schema(
            "service tags (svc-<name>) of edge and runtime guests, none of which the "
            "core stack may hold",
            DEFAULT_RUNTIME_SERVICES,
        ),
        "coreNetworks": _string_list_schema(
            "the core host's own networks: every core guest's gateway and DNS resolver is in "
            "one of them",
            DEFAULT_CORE_NETWORKS,
        ),
    },
    parse_values=lambda r: IndependenceConfig(
        r.string("coreNode"),
        r.strings("coreEndpointHosts"),
        frozenset(r.strings("runtimeServices")),
        _networks(r, "coreNetworks"),
    ),
)


@dataclass(frozen=True, slots=True)
class IsolationConfig:
    core_node: str
    core_endpoint_hosts: tuple[str, ...]
    control_plane_services: frozenset[str]


ISOLATION = ConfigSpec(
    properties={
        "coreNode": _CORE_NODE_SCHEMA,
        "coreEndpointHosts": _CORE_HOSTS_SCHEMA,
        "controlPlaneServices": _string_list_schema(
            "service tags (svc-<name>) of control-plane guests, none of which a runtime "
            "stack may hold",
            DEFAULT_CONTROL_PLANE_SERVICES,
        ),
    },
    parse_values=lambda r: IsolationConfig(
        r.string("coreNode"),
        r.strings("coreEndpointHosts"),
        frozenset(r.strings("controlPlaneServices")),
    ),
)


# --- zlh-agent-port ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentPortConfig:
    agent_port: int
    api_address: IPv4Address
    management_bridge: str
    fleet_roles: frozenset[str]
    require_cluster_firewall: bool
    metrics_port: int
    monitor_address: IPv4Address


def _ipv4_network(text: str) -> IPv4Network | None:
    try:
        network = ip_network(text)
    except ValueError:
        return None
    return network if isinstance(network, IPv4Network) else None


def _one_address(r: _Reader, key: str, default: str) -> IPv4Address:
    text = r.string(key)
    network = _ipv4_network(text)
    if network is None or network.num_addresses != 1:
        r.problems.append(f"{key} must be one IPv4 address, not {text!r}")
        return IPv4Address(default)
    return IPv4Address(network.network_address)


def _parse_agent_port(r: _Reader) -> AgentPortConfig:
    roles = r.strings("fleetRoles")
    unknown = sorted(set(roles) - {role.value for role in VmidRole})
    if unknown:
        r.problems.append(f"fleetRoles has unknown role(s) {', '.join(unknown)}")
    return AgentPortConfig(
        agent_port=r.integer("agentPort", 1, 65535),
        api_address=_one_address(r, "apiAddress", DEFAULT_API_ADDRESS),
        management_bridge=r.string("managementBridge"),
        fleet_roles=frozenset(roles),
        require_cluster_firewall=r.boolean("requireClusterFirewall"),
        metrics_port=r.integer("metricsPort", 1, 65535),
        monitor_address=_one_address(r, "monitorAddress", DEFAULT_MONITOR_ADDRESS),
    )


AGENT = ConfigSpec(
    properties={
        "agentPort": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "description": "TCP port zlh-agent listens on in every game and dev container",
            "default": AGENT_PORT,
        },
        "apiAddress": {
            "type": "string",
            "description": "zpack-api's management address, the only allowed agent source",
            "default": DEFAULT_API_ADDRESS,
        },
        "managementBridge": {
            "type": "string",
            "minLength": 1,
            "description": "bridge of the management network, where the agent listens",
            "default": DEFAULT_MANAGEMENT_BRIDGE,
        },
        "metricsPort": {
            "type": "integer",
            "minimum": 1,
            "maximum": 65535,
            "description": "TCP port zlh-monitor scrapes on the management NIC",
            "default": METRICS_PORT,
        },
        "monitorAddress": {
            "type": "string",
            "description": "zlh-monitor's management address, the only allowed metrics source",
            "default": DEFAULT_MONITOR_ADDRESS,
        },
        "fleetRoles": _string_list_schema(
            "VMID roles of the containers that run zlh-agent", DEFAULT_FLEET_ROLES
        ),
        "requireClusterFirewall": {
            "type": "boolean",
            "description": (
                "require an enabled datacenter firewall in a stack with game or dev "
                "containers (Proxmox applies guest rules only then)"
            ),
            "default": True,
        },
    },
    parse_values=_parse_agent_port,
)


# --- zlh-traefik-per-domain -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraefikConfig:
    core_proxy_service: str
    runtime_proxy_service: str


TRAEFIK = ConfigSpec(
    properties={
        "coreProxyService": {
            "type": "string",
            "minLength": 1,
            "description": "service tag name of the core Traefik (portal, API, Grafana, Headscale)",
            "default": CORE_PROXY_SERVICE,
        },
        "runtimeProxyService": {
            "type": "string",
            "minLength": 1,
            "description": "service tag name of a runtime host's Traefik (game servers, dev IDE)",
            "default": RUNTIME_PROXY_SERVICE,
        },
    },
    parse_values=lambda r: TraefikConfig(
        r.string("coreProxyService"), r.string("runtimeProxyService")
    ),
)


# --- zlh-required-tags ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagsConfig:
    platform_tag: str
    require_service_tag: bool


TAGS = ConfigSpec(
    properties={
        "platformTag": {
            "type": "string",
            "minLength": 1,
            "description": "tag that marks a guest as the platform's",
            "default": PLATFORM_TAG_DEFAULT,
        },
        "requireServiceTag": {
            "type": "boolean",
            "description": "also require one svc-<service> tag (the Traefik check counts them)",
            "default": True,
        },
    },
    parse_values=lambda r: TagsConfig(r.string("platformTag"), r.boolean("requireServiceTag")),
)


# --- zlh-stateful-protected -------------------------------------------------------

DEFAULT_STATEFUL_SERVICES: tuple[str, ...] = tuple(
    spec.name
    for group in (CONTROL_PLANE_SERVICES, EDGE_SERVICES, RUNTIME_SERVICES)
    for spec in group.values()
    if spec.stateful
)
#: Proxmox Backup Server does not back up into itself; sync its datastore off-site.
DEFAULT_BACKUP_EXEMPT: tuple[str, ...] = ("zlh-back",)


@dataclass(frozen=True, slots=True)
class StatefulConfig:
    stateful_services: frozenset[str]
    stateful_roles: frozenset[str]
    backup_exempt: frozenset[str]


STATEFUL = ConfigSpec(
    properties={
        "statefulServices": _string_list_schema(
            "service tags of guests that hold data", DEFAULT_STATEFUL_SERVICES
        ),
        "statefulRoles": _string_list_schema(
            "VMID roles whose guests all hold data (customers' worlds and work)",
            DEFAULT_FLEET_ROLES,
        ),
        "backupExempt": _string_list_schema(
            "stateful services that need no backup job of their own host", DEFAULT_BACKUP_EXEMPT
        ),
    },
    parse_values=lambda r: StatefulConfig(
        frozenset(r.strings("statefulServices")),
        frozenset(r.strings("statefulRoles")),
        frozenset(r.strings("backupExempt")),
    ),
)


# --- zlh-runtime-self-sufficient --------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelfSufficientConfig:
    core_networks: tuple[IPv4Network, ...]
    management_network: IPv4Network


def _networks(r: _Reader, key: str) -> tuple[IPv4Network, ...]:
    found = []
    for text in r.strings(key):
        network = _ipv4_network(text)
        if network is not None:
            found.append(network)
        else:
            r.problems.append(f"{key} must list IPv4 networks, not {text!r}")
    return tuple(found)


def _parse_self_sufficient(r: _Reader) -> SelfSufficientConfig:
    management = _networks_of_one(r, "managementNetwork")
    return SelfSufficientConfig(_networks(r, "coreNetworks"), management)


def _networks_of_one(r: _Reader, key: str) -> IPv4Network:
    text = r.string(key)
    network = _ipv4_network(text)
    if network is None:
        r.problems.append(f"{key} must be an IPv4 network, not {text!r}")
        return IPv4Network(str(r.defaults[key]))
    return network


SELF_SUFFICIENT = ConfigSpec(
    properties={
        "coreNetworks": _string_list_schema(
            "networks on the core host that runtime guests must never need",
            DEFAULT_CORE_NETWORKS,
        ),
        "managementNetwork": {
            "type": "string",
            "description": "the management network: no runtime guest's gateway or resolver",
            "default": DEFAULT_MANAGEMENT_NETWORK,
        },
    },
    parse_values=_parse_self_sufficient,
)


# --- zlh-host-firewall ---------------------------------------------------------------

#: Every network of the platform inventory a guest has an address on.
DEFAULT_GUEST_NETWORKS: tuple[str, ...] = ("10.10.0.0/24", "10.20.0.0/22", "10.99.0.0/22")


@dataclass(frozen=True, slots=True)
class HostFirewallConfig:
    guest_networks: tuple[IPv4Network, ...]
    management_bridge: str


HOST_FIREWALL = ConfigSpec(
    properties={
        "guestNetworks": _string_list_schema(
            "networks guests (tenants included) have addresses on: none may reach a node's "
            "API, SSH or consoles but zpack-api's (the IP set zlh-api) on the API",
            DEFAULT_GUEST_NETWORKS,
        ),
        "managementBridge": {
            "type": "string",
            "minLength": 1,
            "description": "the management network's bridge, where zpack-api reaches a node",
            "default": DEFAULT_MANAGEMENT_BRIDGE,
        },
    },
    parse_values=lambda r: HostFirewallConfig(
        _networks(r, "guestNetworks"), r.string("managementBridge")
    ),
)


# --- zlh-tenant-egress ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EgressConfig:
    management_bridge: str


EGRESS = ConfigSpec(
    properties={
        "managementBridge": {
            "type": "string",
            "minLength": 1,
            "description": "the management network's bridge: a tenant calls out to nothing there",
            "default": DEFAULT_MANAGEMENT_BRIDGE,
        },
    },
    parse_values=lambda r: EgressConfig(r.string("managementBridge")),
)
