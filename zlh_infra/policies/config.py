"""Each policy's configuration: a pydantic model, the JSON schema the engine gets from it,
and the typed view the checks read.

Defaults come from the platform's own definitions (VMID scheme, topology, service
catalogue) and the platform inventory, so an operator changes a value with
``--policy-pack-config`` rather than by editing the pack. The engine fills in schema
defaults and checks types before it configures the pack; the models apply the defaults
again (a driver may send no config at all) and check what a JSON schema cannot, such as
overlapping VMID ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Annotated, Any, Generic, Self, TypeVar, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

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
#: The core LAN and the management network of the platform inventory.
DEFAULT_CORE_NETWORKS: tuple[str, ...] = ("10.10.0.0/24",)
DEFAULT_MANAGEMENT_NETWORK = "10.99.0.0/22"
#: Every network of the platform inventory a guest has an address on.
DEFAULT_GUEST_NETWORKS: tuple[str, ...] = ("10.10.0.0/24", "10.20.0.0/22", "10.99.0.0/22")
DEFAULT_STATEFUL_SERVICES: tuple[str, ...] = tuple(
    spec.name
    for group in (CONTROL_PLANE_SERVICES, EDGE_SERVICES, RUNTIME_SERVICES)
    for spec in group.values()
    if spec.stateful
)
#: Proxmox Backup Server does not back up into itself; sync its datastore off-site.
DEFAULT_BACKUP_EXEMPT: tuple[str, ...] = ("zlh-back",)

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


class ConfigRuleError(ValueError):
    """Rules a valid-looking value breaks, each worded in full by the model that checks it."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- value types ------------------------------------------------------------------------
# A type that does not match raises a plain ValueError: the message is then written from
# the JSON schema ("must be a whole number from 1 to 65535, not 70000").


def _whole(value: object) -> object:
    # The engine sends every number as a float; a string of digits stays refused.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _ipv4_network(value: object) -> IPv4Network:
    network = ip_network(value.strip()) if isinstance(value, str) else None
    if not isinstance(network, IPv4Network):
        raise ValueError("not an IPv4 network")
    return network


def _one_address(value: object) -> IPv4Address:
    network = _ipv4_network(value)  # an address, or the same written as a /32
    if network.num_addresses != 1:
        raise ValueError("not one IPv4 address")
    return network.network_address


Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]
Flag = Annotated[bool, Field(strict=True)]
Port = Annotated[int, Field(strict=True, ge=1, le=65535), BeforeValidator(_whole)]
Vmid = Annotated[
    int, Field(strict=True, ge=PROXMOX_MIN_VMID, le=PROXMOX_MAX_VMID), BeforeValidator(_whole)
]
Address = Annotated[IPv4Address, BeforeValidator(_one_address)]
Network = Annotated[IPv4Network, BeforeValidator(_ipv4_network)]


class PolicyModel(BaseModel):
    """A policy's config: frozen, keyed in camelCase as the config file is, no unknown keys."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, validate_default=True
    )


def key(default: object, description: str, **options: Any) -> Any:
    """A config key, its default written as the config file would (validated like one)."""
    return Field(default=default, description=description, **options)


class ConfigSpec(Generic[C]):
    """One policy's config model, the schema properties the pack advertises, and its parser."""

    def __init__(self, model: type[C]) -> None:
        if not issubclass(model, PolicyModel):
            raise TypeError(f"{model.__name__} is not a PolicyModel")
        self.model: type[PolicyModel] = model
        #: The model's JSON schema, self-contained (no ``$ref``), as messages describe it.
        self.schema: dict[str, Any] = _self_contained(model.model_json_schema(by_alias=True))
        #: What the engine gets: it fills in each ``default`` and checks types.
        self.properties: dict[str, dict[str, Any]] = _for_engine(self.schema)["properties"]

    @property
    def defaults(self) -> dict[str, Any]:
        return {key: prop["default"] for key, prop in self.properties.items()}

    def parse(self, policy: str, raw: Mapping[str, Any] | None) -> C:
        values = {k: v for k, v in (raw or {}).items() if k != "enforcementLevel"}
        try:
            # ConfigSpec[C] is only ever made from the model C itself.
            return cast(C, self.model.model_validate(values))
        except ValidationError as error:
            raise PolicyConfigError(policy, _problems(self.schema, values, error)) from None


def _self_contained(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$defs``: the engine nests each property into a schema of its own."""
    defs = schema.get("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref", "")
        target = defs[ref.removeprefix("#/$defs/")] if ref else {}
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        # Pydantic titles only repeat the key or the model's name.
        return {k: inline(v) for k, v in merged.items() if k not in ("$defs", "title")}

    return cast(dict[str, Any], inline(schema))


def _for_engine(node: Any) -> Any:
    """Drop what the engine would check differently from the pack: its ``ipv4`` format
    refuses an address written as a /32, and ``uniqueItems`` a repeated list entry."""
    if isinstance(node, list):
        return [_for_engine(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {k: _for_engine(v) for k, v in node.items() if k not in ("format", "uniqueItems")}


def _problems(
    schema: dict[str, Any], given: Mapping[str, Any], error: ValidationError
) -> list[str]:
    """One line per bad key: what it must be and what it is, or the rule it breaks."""
    unknown: dict[tuple[str, ...], list[str]] = {}
    problems: dict[str, str] = {}
    for detail in error.errors():
        loc = tuple(str(step) for step in detail["loc"])
        if detail["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(loc[-1])
            continue
        broken = detail.get("ctx", {}).get("error")
        if isinstance(broken, ConfigRuleError):
            path = ".".join(loc)
            for problem in broken.problems:
                text = f"{path} {problem}" if path else problem
                problems.setdefault(text, text)
            continue
        path, node, value = _locate(schema, given, loc[:-1] if detail["type"] == "missing" else loc)
        problems.setdefault(path, f"{path} must be {_expected(node)[0]}, not {value!r}")
    lines = []
    for parent, names in unknown.items():
        keys = ", ".join(_locate(schema, given, parent)[1].get("properties", {}))
        where = f"{'.'.join(parent)} has unknown" if parent else "unknown"
        lines.append(f"{where} key(s) {', '.join(names)}; its keys are {keys}")
    return [*lines, *problems.values()]


def _locate(
    schema: dict[str, Any], given: Any, loc: tuple[str, ...]
) -> tuple[str, dict[str, Any], Any]:
    """The key path, schema and given value an error is reported at: the deepest object
    property of ``loc`` (a list or map is reported whole)."""
    path: list[str] = []
    for step in loc:
        properties = schema.get("properties", {})
        if step not in properties:
            break
        schema, path = properties[step], [*path, step]
        given = given.get(step) if isinstance(given, Mapping) else None
    return ".".join(path), schema, given


def _expected(schema: Mapping[str, Any]) -> tuple[str, str]:
    """What a value of ``schema`` is, in words: one of them, and several."""
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        span = f" from {low} to {high}" if low is not None and high is not None else ""
        return f"a whole number{span}", f"whole numbers{span}"
    if kind == "boolean":
        return "true or false", "true or false values"
    if kind == "string":
        formats = {
            "ipv4": ("one IPv4 address", "IPv4 addresses"),
            "ipv4network": ("an IPv4 network", "IPv4 networks"),
        }
        if schema.get("format") in formats:
            return formats[schema["format"]]
        if schema.get("minLength"):
            return "a non-empty string", "non-empty strings"
        return "a string", "strings"
    if kind == "array":
        items = _expected(schema.get("items", {}))[1]
        return f"a list of {items}", f"lists of {items}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        values = _expected(schema["additionalProperties"])[1]
        return f"an object mapping names to {values}", f"objects mapping names to {values}"
    if kind == "object":
        properties = schema.get("properties", {})
        keys = "{" + ", ".join(properties) + "}"
        shapes = {_expected(p)[1] for p in properties.values()}
        first: Mapping[str, Any] = next(iter(properties.values()), {})
        if len(shapes) == 1 and first.get("type") not in ("object", "array"):
            common = f"{keys} {shapes.pop()}"
            return common, common
        return f"an object of {keys}", f"objects of {keys}"
    return "a JSON value", "JSON values"


# --- zlh-vmid-range ---------------------------------------------------------------


def _role_range(role: VmidRole) -> Any:
    vmid_range = DEFAULT_SCHEME.range_of(role)
    return key(
        {"first": vmid_range.first, "last": vmid_range.last},
        f"{vmid_range.purpose}, first and last VMID inclusive",
        alias=role.value,
    )


class VmidBounds(PolicyModel):
    first: Vmid
    last: Vmid


class VmidRanges(PolicyModel):
    """One range per role (a test holds the fields to ``VmidRole``)."""

    core_infra: VmidBounds = _role_range(VmidRole.CORE_INFRA)
    template: VmidBounds = _role_range(VmidRole.BASE_TEMPLATE)
    network: VmidBounds = _role_range(VmidRole.NETWORK)
    game: VmidBounds = _role_range(VmidRole.GAME)
    dev: VmidBounds = _role_range(VmidRole.DEV)
    monitoring: VmidBounds = _role_range(VmidRole.MONITORING)


class VmidRangeConfig(PolicyModel):
    # The engine replaces the whole object when the config file sets it, so roles the
    # file leaves out keep the platform default.
    ranges: VmidRanges = key(
        {str(r.role): {"first": r.first, "last": r.last} for r in DEFAULT_SCHEME.ranges},
        description="VMID range of each role, `{role: {first, last}}` inclusive; a role left "
        "out keeps its default (`zlh_infra/platform/vmids.py`). Ranges must not overlap.",
    )
    _scheme: VmidScheme = PrivateAttr(default=DEFAULT_SCHEME)

    @property
    def scheme(self) -> VmidScheme:
        return self._scheme

    @model_validator(mode="after")
    def _one_scheme(self) -> Self:
        bounds = self.ranges.model_dump(by_alias=True)
        ranges = sorted(
            (
                VmidRange(role, b["first"], b["last"], DEFAULT_SCHEME.range_of(role).purpose)
                for role, b in ((VmidRole(name), b) for name, b in bounds.items())
            ),
            key=lambda vmid_range: vmid_range.first,
        )
        problems = scheme_problems(ranges)
        if problems:
            raise ConfigRuleError(*(f"ranges: {problem}" for problem in problems))
        self._scheme = VmidScheme(tuple(ranges))
        return self


VMID_RANGE = ConfigSpec(VmidRangeConfig)


# --- zlh-vmid-unique --------------------------------------------------------------


class VmidUniqueConfig(PolicyModel):
    reserved: frozenset[Vmid] = key(
        (),
        alias="reservedVmids",
        description="VMIDs taken by guests outside this stack (made by hand, or another "
        "stack's), which no guest of the stack may use",
    )


VMID_UNIQUE = ConfigSpec(VmidUniqueConfig)


# --- zlh-guest-placement ----------------------------------------------------------


class PlacementConfig(PolicyModel):
    stack_nodes: dict[str, Text] = key(
        DEFAULT_STACK_NODES,
        description="Proxmox node of each stack (stack name without organisation and "
        "project); the node of `core` is the core node",
    )

    @property
    def core_node(self) -> str:
        return self.stack_nodes.get("core", CORE_NODE)


PLACEMENT = ConfigSpec(PlacementConfig)


# --- zlh-control-plane-independent / zlh-runtime-isolation ------------------------


class _CoreHostConfig(PolicyModel):
    core_node: Text = key(CORE_NODE, description="Proxmox node name of the core host")
    core_endpoint_hosts: tuple[Text, ...] = key(
        DEFAULT_CORE_ENDPOINT_HOSTS,
        description="host names or addresses of the core host's API endpoint; a bare name "
        "also matches every FQDN starting with it (`zlh-core.zerolaghub.net`)",
    )


class IndependenceConfig(_CoreHostConfig):
    runtime_services: frozenset[Text] = key(
        DEFAULT_RUNTIME_SERVICES,
        description="service tags (`svc-<name>`) of edge and runtime guests, none of which "
        "the core stack may hold: the catalogue's edge and runtime services, `template`, "
        "`game` and `dev`",
    )
    core_networks: tuple[Network, ...] = key(
        DEFAULT_CORE_NETWORKS,
        description="the core host's own networks: every core guest's gateway and DNS "
        "resolver is in one of them",
    )


class IsolationConfig(_CoreHostConfig):
    control_plane_services: frozenset[Text] = key(
        DEFAULT_CONTROL_PLANE_SERVICES,
        description="service tags (`svc-<name>`) of control-plane guests (the catalogue's), "
        "none of which a runtime stack may hold",
    )


INDEPENDENCE = ConfigSpec(IndependenceConfig)
ISOLATION = ConfigSpec(IsolationConfig)


# --- zlh-agent-port ---------------------------------------------------------------


def _known_roles(roles: frozenset[str]) -> frozenset[str]:
    unknown = sorted(roles - {role.value for role in VmidRole})
    if unknown:
        raise ConfigRuleError(f"has unknown role(s) {', '.join(unknown)}")
    return roles


class AgentPortConfig(PolicyModel):
    agent_port: Port = key(
        AGENT_PORT,
        description="TCP port zlh-agent listens on in every game and dev container "
        "(`AGENT_PORT` of the catalogue)",
    )
    api_address: Address = key(
        DEFAULT_API_ADDRESS,
        description="zpack-api's management address, the only allowed agent source",
    )
    management_bridge: Text = key(
        DEFAULT_MANAGEMENT_BRIDGE,
        description="bridge of the management network, where the agent listens",
    )
    metrics_port: Port = key(
        METRICS_PORT,
        description="TCP port zlh-monitor scrapes on the management NIC (`METRICS_PORT` of "
        "the catalogue)",
    )
    monitor_address: Address = key(
        DEFAULT_MONITOR_ADDRESS,
        description="zlh-monitor's management address, the only allowed metrics source",
    )
    fleet_roles: Annotated[frozenset[Text], AfterValidator(_known_roles)] = key(
        DEFAULT_FLEET_ROLES, description="VMID roles of the containers that run zlh-agent"
    )
    require_cluster_firewall: Flag = key(
        True,
        description="require an enabled datacenter firewall in a stack with game or dev "
        "containers (Proxmox applies guest rules only then); `false` where it is managed "
        "outside the stack",
    )


AGENT = ConfigSpec(AgentPortConfig)


# --- zlh-traefik-per-domain -------------------------------------------------------


class TraefikConfig(PolicyModel):
    core_proxy_service: Text = key(
        CORE_PROXY_SERVICE,
        description="service tag name of the core Traefik (portal, API, Grafana, Headscale)",
    )
    runtime_proxy_service: Text = key(
        RUNTIME_PROXY_SERVICE,
        description="service tag name of a runtime host's Traefik (game servers, dev IDE)",
    )


TRAEFIK = ConfigSpec(TraefikConfig)


# --- zlh-required-tags ------------------------------------------------------------


class TagsConfig(PolicyModel):
    platform_tag: Text = key(
        PLATFORM_TAG_DEFAULT, description="tag that marks a guest as the platform's"
    )
    require_service_tag: Flag = key(
        True,
        description="also require one `svc-<service>` tag (the Traefik check counts them)",
    )


TAGS = ConfigSpec(TagsConfig)


# --- zlh-stateful-protected -------------------------------------------------------


class StatefulConfig(PolicyModel):
    stateful_services: frozenset[Text] = key(
        DEFAULT_STATEFUL_SERVICES,
        description="service tags of guests that hold data (the catalogue's stateful services)",
    )
    stateful_roles: frozenset[Text] = key(
        DEFAULT_FLEET_ROLES,
        description="VMID roles whose guests all hold data (customers' worlds and work)",
    )
    backup_exempt: frozenset[Text] = key(
        DEFAULT_BACKUP_EXEMPT,
        description="stateful services that need no backup job of their own host (Proxmox "
        "Backup Server does not back up into itself)",
    )


STATEFUL = ConfigSpec(StatefulConfig)


# --- zlh-runtime-self-sufficient --------------------------------------------------


class SelfSufficientConfig(PolicyModel):
    core_networks: tuple[Network, ...] = key(
        DEFAULT_CORE_NETWORKS,
        description="networks on the core host that runtime guests must never need",
    )
    management_network: Network = key(
        DEFAULT_MANAGEMENT_NETWORK,
        description="the management network (API and backups only): no runtime guest's "
        "gateway or resolver",
    )


SELF_SUFFICIENT = ConfigSpec(SelfSufficientConfig)


# --- zlh-host-firewall ---------------------------------------------------------------


class HostFirewallConfig(PolicyModel):
    guest_networks: tuple[Network, ...] = key(
        DEFAULT_GUEST_NETWORKS,
        description="networks guests (tenants included) have addresses on: none may reach a "
        "node's API, SSH or consoles but zpack-api's (the IP set zlh-api) on the API",
    )
    management_bridge: Text = key(
        DEFAULT_MANAGEMENT_BRIDGE,
        description="the management network's bridge, where zpack-api reaches a node",
    )


HOST_FIREWALL = ConfigSpec(HostFirewallConfig)


# --- zlh-tenant-egress ---------------------------------------------------------------


class EgressConfig(PolicyModel):
    management_bridge: Text = key(
        DEFAULT_MANAGEMENT_BRIDGE,
        description="the management network's bridge: a tenant calls out to nothing there",
    )


EGRESS = ConfigSpec(EgressConfig)
