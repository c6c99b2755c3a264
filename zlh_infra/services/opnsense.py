"""OPNsense on the two routers: each one's ``config.xml``, generated from its stack config.

The routers are the only VMs of the platform (``zlh-router`` on the core host,
``zlh-zpack-router`` on each runtime host). Pulumi creates them; OPNsense's installer
imports the file this module writes (``docs/runbook.md``, "Router configuration").
The file follows the layout of OPNsense's own ``src/etc/config.xml.sample`` (opnsense/core
25.7.11) and holds, from the stack config:

- ``interfaces``: WAN (the VM's first NIC, on ``vmbr0``) by DHCP unless given a static
  address, with private and bogon sources blocked; LAN (the second NIC, on the host's
  LAN bridge) at ``network.lan.gateway`` on ``network.lan.cidr``;
- ``nat``: outbound NAT in OPNsense's automatic mode (every local IPv4 network, here the
  LAN, leaves NATed through the gateway interface, here the WAN), and one port forward
  (``rule``: target, ``local-port``, an associated filter rule) per public port;
- ``filter``: first the LAN's blocked destinations (on the runtime router: the core
  LAN), then LAN to anywhere, then on WAN exactly the forwarded ports. Every rule is
  ``quick``, so the first that matches decides, and OPNsense's own default deny drops
  everything else arriving on WAN (IPv6 included: the platform is IPv4 only);
- no DHCP server on the LAN (every guest has a static address); Unbound on, the
  resolver of the runtime guests and the core guests' second one.

The public ports are not listed here: a catalogue service's LAN port open to any
source (``Peer.ANY``) is the platform's public face, and its router forwards it, so the
Proxmox firewall and the router are one definition (Traefik's 80/443, Headscale's STUN
on UDP 3478, Velocity's Minecraft port). Addresses come from the stack config like
every guest's: each forward's target is its service's ``lanAddress``.

The only login the file holds is OPNsense's own default ``root`` (its sample's, whose
password the manual documents as ``opnsense``): the installer's "Root Password" step
replaces it before the router is installed, so no password of the platform is ever in
a generated file.
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import TYPE_CHECKING, Literal, TypeAlias

from zlh_infra.platform.addressing import usable
from zlh_infra.platform.catalogue import GuestKind, Network, Peer, ServiceSpec

if TYPE_CHECKING:  # the config models load the Pulumi SDK; this module reads them only
    from zlh_infra.config import ConfigModel, CoreStackConfig, RuntimeStackConfig

#: Where OPNsense keeps its configuration, and where its importer looks on a medium.
CONFIG_PATH = "conf/config.xml"
#: Proxmox gives the routers virtio NICs (``zlh_infra/layers/guest.py``), which FreeBSD
#: names vtnet(4) in NIC order: ``net<i>`` is ``vtnet<i>``.
NIC_DRIVER = "vtnet"
#: OPNsense's interface keys: rules and forwards name these, not the devices.
WAN = "wan"
LAN = "lan"
#: OPNsense's default ``root`` password hash (the password ``opnsense``), as its
#: ``config.xml.sample`` ships it: public, and replaced at the installer's root password step.
DEFAULT_ROOT_PASSWORD_HASH = "$2y$10$YRVoF4SgskIsrXOvOQjGieB9XqHPRra9R7d80B3BZdbY/j21TwBfS"
#: The static WAN's gateway entry (OPNsense's gateway names: letters, digits, ``_-``).
WAN_GATEWAY = "WAN_GW"

Protocol = Literal["tcp", "udp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DEVICE = re.compile(r"^[a-z]{1,12}[0-9]{1,3}$")
# What XML 1.0 can carry, less the control characters (tab and newlines included).
_TEXT = re.compile(r"^[\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+$")


class RouterConfigError(ValueError):
    """A router's settings cannot make a valid OPNsense configuration."""

    def __init__(self, router: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        body = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"OPNsense configuration of {router}: invalid:\n{body}")


@dataclass(frozen=True, slots=True)
class DhcpWan:
    """The WAN takes its address, gateway and resolvers from the uplink's DHCP server."""


@dataclass(frozen=True, slots=True)
class StaticWan:
    """A fixed WAN address (``203.0.113.10/24``) and its upstream gateway."""

    address: IPv4Interface
    gateway: IPv4Address


WanMode: TypeAlias = DhcpWan | StaticWan


@dataclass(frozen=True, slots=True)
class PortForward:
    """WAN ``protocol``/``port`` to ``target`` on the LAN (at ``target_port``, or the same)."""

    protocol: Protocol
    port: int
    target: IPv4Address
    description: str
    target_port: int | None = None

    @property
    def local_port(self) -> int:
        return self.port if self.target_port is None else self.target_port


@dataclass(frozen=True, slots=True)
class BlockedDestination:
    """A network the LAN must never reach through the router."""

    network: IPv4Network
    description: str


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """What one router's ``config.xml`` says."""

    hostname: str
    domain: str
    lan_network: IPv4Network
    lan_address: IPv4Address
    wan_device: str = f"{NIC_DRIVER}0"
    lan_device: str = f"{NIC_DRIVER}1"
    wan: WanMode = DhcpWan()
    #: OPNsense's "Block private networks" and "Block bogon networks" on the WAN.
    block_private_sources: bool = True
    forwards: tuple[PortForward, ...] = ()
    blocked: tuple[BlockedDestination, ...] = ()


# --- validation -------------------------------------------------------------------------


def _address(what: str, value: object, found: list[str]) -> IPv4Address | None:
    if isinstance(value, IPv4Address) and not isinstance(value, IPv4Interface):
        return value
    if isinstance(value, str):
        try:
            return IPv4Address(value)
        except ValueError:
            pass
    found.append(f"{what}: {value!r} is not an IPv4 address")
    return None


def _network(what: str, value: object, found: list[str]) -> IPv4Network | None:
    if isinstance(value, IPv4Network):
        return value
    if isinstance(value, str):
        try:
            return IPv4Network(value)
        except ValueError:
            pass
    found.append(f"{what}: {value!r} is not an IPv4 network with its host bits zero (a.b.c.d/n)")
    return None


def _interface(what: str, value: object, found: list[str]) -> IPv4Interface | None:
    if isinstance(value, IPv4Interface):
        return value
    if isinstance(value, str) and "/" in value:
        try:
            return IPv4Interface(value)
        except ValueError:
            pass
    found.append(f"{what}: {value!r} is not an IPv4 address with its prefix (a.b.c.d/n)")
    return None


def _port(what: str, value: object, found: list[str]) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    found.append(f"{what}: {value!r} is not a port (an integer from 1 to 65535)")
    return None


def _text(what: str, value: object, found: list[str]) -> str | None:
    """A description: printable text, so it cannot break the file or OPNsense's pf comments."""
    if isinstance(value, str) and _TEXT.match(value) and value.strip() == value:
        return value
    found.append(
        f"{what}: {value!r} must be non-empty printable text without control characters "
        "(no newline or tab) or surrounding spaces"
    )
    return None


def _name(what: str, value: object, found: list[str], *, single_label: bool) -> str | None:
    labels = value.split(".") if isinstance(value, str) else []
    if (
        labels
        and len(str(value)) <= 253
        and all(_LABEL.match(label) for label in labels)
        and (len(labels) == 1 or not single_label)
    ):
        return str(value)
    kind = "a host name (one label" if single_label else "a domain name (dot-separated labels"
    found.append(
        f"{what}: {value!r} is not {kind} of letters, digits and '-', "
        "not starting or ending with '-')"
    )
    return None


def checked(router: RouterConfig) -> RouterConfig:
    """``router`` with every value validated (and address strings parsed), or the problems.

    Raises RouterConfigError listing each problem as ``<field>: <rule broken>``.
    """
    found: list[str] = []
    hostname = _name("hostname", router.hostname, found, single_label=True)
    _name("domain", router.domain, found, single_label=False)
    devices = {}
    for key, device in (("wan_device", router.wan_device), ("lan_device", router.lan_device)):
        if isinstance(device, str) and _DEVICE.match(device):
            devices[key] = device
        else:
            found.append(f"{key}: {device!r} is not a FreeBSD network device name (e.g. vtnet0)")
    if len(devices) == 2 and devices["wan_device"] == devices["lan_device"]:
        found.append(f"lan_device: {router.lan_device} is the WAN's device too")
    if not isinstance(router.block_private_sources, bool):
        found.append(f"block_private_sources: {router.block_private_sources!r} is not a boolean")

    lan = _network("lan_network", router.lan_network, found)
    lan_address = _address("lan_address", router.lan_address, found)
    if lan is not None and lan.prefixlen > 30:
        found.append(f"lan_network: {lan} leaves no room for guests (at most /30)")
    elif lan is not None and lan_address is not None:
        why = usable(lan, lan_address)
        if why:
            found.append(f"lan_address: {why}")

    wan = _checked_wan(router.wan, lan, found)
    forwards = tuple(
        _checked_forward(f"forwards[{index}]", forward, lan, lan_address, found)
        for index, forward in enumerate(router.forwards)
    )
    seen: dict[tuple[str, int], int] = {}
    for index, forward in enumerate(forwards):
        public = (forward.protocol, forward.port)
        if public in seen:
            found.append(
                f"forwards[{index}]: {forward.protocol.upper()} {forward.port} is already "
                f"forwarded by forwards[{seen[public]}]"
            )
        else:
            seen[public] = index
    blocked = tuple(
        _checked_blocked(f"blocked[{index}]", item, lan, found)
        for index, item in enumerate(router.blocked)
    )
    networks = [item.network for item in blocked]
    for index, network in enumerate(networks):
        if network in networks[:index]:
            found.append(f"blocked[{index}].network: {network} is blocked already")
    if found or lan is None or lan_address is None or wan is None:
        raise RouterConfigError(hostname or repr(router.hostname), found)
    return replace(
        router,
        lan_network=lan,
        lan_address=lan_address,
        wan=wan,
        forwards=forwards,
        blocked=blocked,
    )


def _checked_wan(wan: object, lan: IPv4Network | None, found: list[str]) -> WanMode | None:
    if isinstance(wan, DhcpWan):
        return wan
    if not isinstance(wan, StaticWan):
        found.append(f"wan: {wan!r} is neither DhcpWan() nor StaticWan(address, gateway)")
        return None
    address = _interface("wan.address", wan.address, found)
    gateway = _address("wan.gateway", wan.gateway, found)
    if address is None or gateway is None:
        return None
    before = len(found)
    why = usable(address.network, address.ip)
    if why:
        found.append(f"wan.address: {why}")
    why = usable(address.network, gateway)
    if why:
        found.append(f"wan.gateway: {why}")
    elif gateway == address.ip:
        found.append(f"wan.gateway: {gateway} is the WAN's own address")
    if lan is not None and address.network.overlaps(lan):
        found.append(f"wan.address: {address.network} overlaps the LAN {lan}")
    return StaticWan(address=address, gateway=gateway) if len(found) == before else None


def _checked_forward(
    what: str,
    forward: object,
    lan: IPv4Network | None,
    lan_address: IPv4Address | None,
    found: list[str],
) -> PortForward:
    if not isinstance(forward, PortForward):
        found.append(f"{what}: {forward!r} is not a PortForward")
        return PortForward("tcp", 1, IPv4Address(0), "-")
    if forward.protocol not in PROTOCOLS:
        found.append(f"{what}.protocol: {forward.protocol!r} must be one of {', '.join(PROTOCOLS)}")
    port = _port(f"{what}.port", forward.port, found)
    if forward.target_port is not None:
        _port(f"{what}.target_port", forward.target_port, found)
    target = _address(f"{what}.target", forward.target, found)
    _text(f"{what}.description", forward.description, found)
    if target is not None and lan is not None:
        why = usable(lan, target)
        if why:
            found.append(f"{what}.target: {why} (the LAN: a forward goes to a LAN guest)")
        elif target == lan_address:
            found.append(f"{what}.target: {target} is the router's own LAN address")
    return replace(forward, port=port or 1, target=target or IPv4Address(0))


def _checked_blocked(
    what: str, item: object, lan: IPv4Network | None, found: list[str]
) -> BlockedDestination:
    if not isinstance(item, BlockedDestination):
        found.append(f"{what}: {item!r} is not a BlockedDestination")
        return BlockedDestination(IPv4Network("0.0.0.0/32"), "-")
    network = _network(f"{what}.network", item.network, found)
    _text(f"{what}.description", item.description, found)
    if network is not None and lan is not None and network.overlaps(lan):
        found.append(
            f"{what}.network: {network} overlaps the LAN {lan}: blocking it would cut the "
            "LAN off from its own router"
        )
    return replace(item, network=network or IPv4Network("0.0.0.0/32"))


# --- config.xml -------------------------------------------------------------------------

#: An element: its tag and its text (None: empty) or its children, in order.
Node: TypeAlias = tuple[str, "str | Sequence[Node] | None"]


def _append(parent: ET.Element, nodes: Sequence[Node]) -> None:
    for tag, content in nodes:
        element = ET.SubElement(parent, tag)
        if isinstance(content, str):
            element.text = content
        elif content is not None:
            _append(element, content)


def config_xml(router: RouterConfig) -> str:
    """The router's ``/conf/config.xml``: validated first (raises RouterConfigError)."""
    router = checked(router)
    root = ET.Element("opnsense")
    sections: list[Node] = [
        ("theme", "opnsense"),
        ("sysctl", None),
        ("system", _system(router)),
        ("interfaces", _interfaces(router)),
    ]
    if isinstance(router.wan, StaticWan):
        sections.append(("gateways", [("gateway_item", _gateway(router.wan))]))
    sections += [
        # dnsmasq serves DHCP on a fresh install's LAN; the guests are static, so it is off.
        ("dnsmasq", [("enable", "0")]),
        ("unbound", [("enable", "1")]),
        ("nat", _nat(router)),
        ("filter", _filter(router)),
        ("rrd", [("enable", None)]),
        ("ntpd", [("prefer", "0.opnsense.pool.ntp.org")]),
    ]
    _append(root, sections)
    ET.indent(root, space="  ")
    buffer = io.BytesIO()
    ET.ElementTree(root).write(buffer, encoding="utf-8", xml_declaration=True)
    return buffer.getvalue().decode("utf-8") + "\n"


def _system(router: RouterConfig) -> list[Node]:
    """The sample's system settings, with the router's names (and no IPv6)."""
    return [
        ("optimization", "normal"),
        ("hostname", router.hostname),
        ("domain", router.domain),
        ("dnsallowoverride", "1"),
        ("dnsallowoverride_exclude", None),
        (
            "group",
            [
                ("name", "admins"),
                ("description", "System Administrators"),
                ("scope", "system"),
                ("gid", "1999"),
                ("member", "0"),
                ("priv", "page-all"),
            ],
        ),
        (
            "user",
            [
                ("name", "root"),
                ("descr", "System Administrator"),
                ("scope", "system"),
                ("groupname", "admins"),
                ("password", DEFAULT_ROOT_PASSWORD_HASH),
                ("uid", "0"),
            ],
        ),
        ("timezone", "Etc/UTC"),
        (
            "timeservers",
            " ".join(f"{n}.opnsense.pool.ntp.org" for n in range(4)),
        ),
        ("webgui", [("protocol", "https")]),
        ("disablenatreflection", "yes"),
        ("usevirtualterminal", "1"),
        ("disableconsolemenu", None),
        # Hardware offloading off, OPNsense's defaults: pf on virtio NICs needs it so.
        ("disablevlanhwfilter", "1"),
        ("disablechecksumoffloading", "1"),
        ("disablesegmentationoffloading", "1"),
        ("disablelargereceiveoffloading", "1"),
        ("powerd_ac_mode", "hadp"),
        ("powerd_battery_mode", "hadp"),
        ("powerd_normal_mode", "hadp"),
        ("bogons", [("interval", "monthly")]),
        ("pf_share_forward", "1"),
        ("lb_use_sticky", "1"),
        ("ssh", [("group", "admins")]),
        ("rrdbackup", "-1"),
        ("netflowbackup", "-1"),
    ]


def _interfaces(router: RouterConfig) -> list[Node]:
    wan: list[Node] = [("enable", "1"), ("if", router.wan_device)]
    if isinstance(router.wan, StaticWan):
        wan += [
            ("ipaddr", str(router.wan.address.ip)),
            ("subnet", str(router.wan.address.network.prefixlen)),
            ("gateway", WAN_GATEWAY),
        ]
    else:
        wan.append(("ipaddr", "dhcp"))
    if router.block_private_sources:  # OPNsense reads these two by their presence
        wan += [("blockpriv", "1"), ("blockbogons", "1")]
    lan: list[Node] = [
        ("enable", "1"),
        ("if", router.lan_device),
        ("ipaddr", str(router.lan_address)),
        ("subnet", str(router.lan_network.prefixlen)),
    ]
    return [(WAN, wan), (LAN, lan)]


def _gateway(wan: StaticWan) -> list[Node]:
    return [
        ("interface", WAN),
        ("gateway", str(wan.gateway)),
        ("name", WAN_GATEWAY),
        ("ipprotocol", "inet"),
        ("defaultgw", "1"),
        ("descr", "WAN upstream gateway"),
    ]


def _rule_id(router: RouterConfig, forward: PortForward) -> str:
    """Links a port forward and its filter rule, stable across runs (the GUI's is random)."""
    seed = f"{router.hostname}/{forward.protocol}/{forward.port}".encode()
    return f"nat_{hashlib.sha256(seed).hexdigest()[:16]}"


def _nat(router: RouterConfig) -> list[Node]:
    nodes: list[Node] = [("outbound", [("mode", "automatic")])]
    for forward in router.forwards:
        nodes.append(
            (
                "rule",
                [
                    ("protocol", forward.protocol),
                    ("interface", WAN),
                    ("ipprotocol", "inet"),
                    ("descr", forward.description),
                    ("associated-rule-id", _rule_id(router, forward)),
                    ("target", str(forward.target)),
                    ("local-port", str(forward.local_port)),
                    ("source", [("any", None)]),
                    ("destination", [("network", f"{WAN}ip"), ("port", str(forward.port))]),
                ],
            )
        )
    return nodes


def _filter(router: RouterConfig) -> list[Node]:
    rules: list[Node] = []
    for item in router.blocked:  # before the LAN's allow rule: the first match decides
        rules.append(
            (
                "rule",
                [
                    ("type", "block"),
                    ("interface", LAN),
                    ("ipprotocol", "inet"),
                    ("quick", "1"),
                    ("log", "1"),
                    ("source", [("network", LAN)]),
                    ("destination", [("address", str(item.network))]),
                    ("descr", item.description),
                ],
            )
        )
    rules.append(
        (
            "rule",
            [
                ("type", "pass"),
                ("interface", LAN),
                ("ipprotocol", "inet"),
                ("quick", "1"),
                ("source", [("network", LAN)]),
                ("destination", [("any", None)]),
                ("descr", "Allow LAN to any (the internet and this router)"),
            ],
        )
    )
    for forward in router.forwards:  # pf filters after the redirect: the target's address
        rules.append(
            (
                "rule",
                [
                    ("type", "pass"),
                    ("interface", WAN),
                    ("ipprotocol", "inet"),
                    ("protocol", forward.protocol),
                    ("quick", "1"),
                    ("statetype", "keep state"),
                    ("source", [("any", None)]),
                    (
                        "destination",
                        [("address", str(forward.target)), ("port", str(forward.local_port))],
                    ),
                    ("descr", forward.description),
                    ("associated-rule-id", _rule_id(router, forward)),
                ],
            )
        )
    return rules


# --- from the stack config --------------------------------------------------------------


def _router_spec(specs: Mapping[str, ServiceSpec]) -> tuple[str, ServiceSpec]:
    routers = [
        (name, spec)
        for name, spec in specs.items()
        if spec.kind is GuestKind.VM and Network.WAN in spec.networks
    ]
    if len(routers) != 1:
        raise RouterConfigError("the stack", [f"one router VM expected, found {len(routers)}"])
    return routers[0]


def public_forwards(config: ConfigModel) -> tuple[PortForward, ...]:
    """Every LAN port the stack's catalogue opens to any source, to its service's address."""
    forwards = []
    problems = []
    for name, spec in config.service_specs().items():
        for ingress in spec.ingress:
            if ingress.network is not Network.LAN or ingress.source != Peer.ANY:
                continue
            guest = config.guests.get(name)
            address = guest.lan_address if guest is not None else None
            if address is None:
                problems.append(
                    f"guests.{name}.lanAddress: required: the router forwards "
                    f"{ingress.proto.upper()} {ingress.port} to it"
                )
                continue
            if ingress.proto not in PROTOCOLS:
                problems.append(f"{name}: {ingress.proto!r} cannot be forwarded (tcp or udp)")
                continue
            forwards.append(
                PortForward(
                    protocol="udp" if ingress.proto == "udp" else "tcp",
                    port=ingress.port,
                    target=address,
                    description=f"{ingress.comment or ingress.proto.upper()} to {name}",
                )
            )
    if problems:
        raise RouterConfigError(_router_spec(config.service_specs())[0], problems)
    return tuple(forwards)


def stack_router(
    config: ConfigModel, *, blocked: Sequence[BlockedDestination] = ()
) -> RouterConfig:
    """The router of ``config``'s host: its LAN, its public ports, ``blocked`` destinations."""
    name, spec = _router_spec(config.service_specs())
    gateway = config.network.lan.gateway
    if gateway is None:
        raise RouterConfigError(name, ["network.lan.gateway: required, the router's LAN address"])
    return RouterConfig(
        hostname=name,
        domain=config.network.dns_domain,
        lan_network=config.network.lan.cidr,
        lan_address=gateway,
        wan_device=f"{NIC_DRIVER}{spec.networks.index(Network.WAN)}",
        lan_device=f"{NIC_DRIVER}{spec.networks.index(Network.LAN)}",
        forwards=public_forwards(config),
        blocked=tuple(blocked),
    )


def core_router(config: CoreStackConfig) -> RouterConfig:
    """zlh-router: the control plane's public ports, the core LAN out."""
    return stack_router(config)


def runtime_router(config: RuntimeStackConfig, *, core_lan: IPv4Network) -> RouterConfig:
    """zlh-zpack-router: the edge's public ports; the runtime LAN never into ``core_lan``."""
    return stack_router(
        config,
        blocked=[
            BlockedDestination(
                network=core_lan,
                description="Block the runtime LAN from the core LAN (tenants never reach it)",
            )
        ],
    )


def render_router_configs(
    core_config: CoreStackConfig, runtime_config: RuntimeStackConfig
) -> dict[str, str]:
    """Each router's ``config.xml``, by path: ``<router>/conf/config.xml``.

    Each ``<router>`` directory is laid out as OPNsense's importer reads a medium: copy
    its contents to the root of a FAT USB stick or an ISO 9660 image.
    """
    routers = [
        core_router(core_config),
        runtime_router(runtime_config, core_lan=core_config.network.lan.cidr),
    ]
    return {f"{router.hostname}/{CONFIG_PATH}": config_xml(router) for router in routers}
