"""The platform's fixed services: which layer, VMID role, networks and ports each has.

The seed and the inventory name these guests; a stack's configuration supplies their
VMIDs, addresses and sizes, and is checked against this catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zlh_infra.platform.topology import Layer
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole

#: zlh-agent's port inside every game and dev container (management NIC only).
AGENT_PORT = 18888
#: The node exporter zlh-monitor scrapes on every container: on the core LAN for core
#: guests, on the management NIC for runtime-host guests (the monitor's only way there).
METRICS_PORT = 9100
#: zlh-artifacts serves the platform's downloads here, to the core LAN and to the fleet.
ARTIFACTS_PORT = 8080
#: A runtime host's block on the management network, from its ``network.fleetOffset``:
#: one address per game and dev VMID, then one per runtime-host service (its slot).
FLEET_BLOCK_SIZE = (
    DEFAULT_SCHEME.range_of(VmidRole.DEV).last - DEFAULT_SCHEME.range_of(VmidRole.GAME).first + 1
)


class GuestKind(StrEnum):
    LXC = "lxc"
    VM = "vm"


class Network(StrEnum):
    """The networks a guest can have a NIC on, in NIC order (net0, net1, ...)."""

    WAN = "wan"
    LAN = "lan"
    MANAGEMENT = "management"


class Peer(StrEnum):
    """Sources an ingress rule may name besides another service."""

    ANY = "any"
    LAN = "lan"
    MANAGEMENT = "management"
    #: Each Proxmox node the stack names (``node:<name>`` addresses): its backup client.
    NODES = "nodes"


@dataclass(frozen=True, slots=True)
class Ingress:
    """One allowed inbound flow: ``proto``/``port`` on ``network`` from ``source``.

    ``source`` is a Peer or the name of another service of the same stack, or, for
    names starting with ``core:``, a core service whose address comes from the
    core -> runtime contract.
    """

    port: int
    source: str
    network: Network = Network.LAN
    proto: str = "tcp"
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    layer: Layer
    role: VmidRole
    description: str
    networks: tuple[Network, ...] = (Network.LAN,)
    kind: GuestKind = GuestKind.LXC
    #: Holds data that must survive: protected from deletion, backed up.
    stateful: bool = False
    #: Proxmox start order (lower starts first; the seed's dependency order).
    startup_order: int = 50
    ingress: tuple[Ingress, ...] = ()
    #: Routers filter for themselves; the Proxmox firewall only logs for them.
    input_policy: str = "DROP"
    #: A runtime-host service's place after the fleet in its host's management block:
    #: its management address, which zlh-monitor derives the same way to scrape it.
    management_slot: int | None = None

    @property
    def management_index(self) -> int | None:
        """Host number of its management address, counted from ``network.fleetOffset``."""
        return None if self.management_slot is None else FLEET_BLOCK_SIZE + self.management_slot

    @property
    def firewall_ingress(self) -> tuple[Ingress, ...]:
        """Its own flows, and zlh-monitor's scrape of its node exporter (every container)."""
        if self.kind is GuestKind.VM:
            return self.ingress
        return (*self.ingress, CORE_SCRAPE if self.layer is Layer.CONTROL_PLANE else RUNTIME_SCRAPE)


#: zpack-api registering the servers it makes with a runtime host's proxies (ssh to the
#: forced command ``zlh-route``, on the management network).
ROUTE_REGISTRATION = Ingress(
    22, "core:zpack-api", network=Network.MANAGEMENT, comment="route registration from zpack-api"
)
#: zlh-monitor's scrape of a core guest's node exporter, on the core LAN.
CORE_SCRAPE = Ingress(METRICS_PORT, "zlh-monitor", comment="metrics scrape from zlh-monitor")
#: zlh-monitor's scrape of a runtime-host guest's node exporter, on its management NIC.
RUNTIME_SCRAPE = Ingress(
    METRICS_PORT,
    "core:zlh-monitor",
    network=Network.MANAGEMENT,
    comment="metrics scrape from zlh-monitor",
)


def _svc(*specs: ServiceSpec) -> dict[str, ServiceSpec]:
    return {spec.name: spec for spec in specs}


CONTROL_PLANE_SERVICES: dict[str, ServiceSpec] = _svc(
    ServiceSpec(
        "zlh-router",
        Layer.CONTROL_PLANE,
        VmidRole.NETWORK,
        "core OPNsense router",
        networks=(Network.WAN, Network.LAN),
        kind=GuestKind.VM,
        startup_order=1,
        input_policy="ACCEPT",
    ),
    ServiceSpec(
        "zlh-dns",
        Layer.CONTROL_PLANE,
        VmidRole.CORE_INFRA,
        "Technitium DNS",
        stateful=True,  # its zones
        startup_order=2,
        ingress=(
            Ingress(53, Peer.LAN, proto="udp", comment="DNS"),
            Ingress(53, Peer.LAN, comment="DNS over TCP"),
        ),
    ),
    ServiceSpec(
        "zlh-db",
        Layer.CONTROL_PLANE,
        VmidRole.CORE_INFRA,
        "MariaDB, the primary database",
        stateful=True,
        startup_order=3,
        ingress=(Ingress(3306, "zpack-api", comment="MariaDB from zpack-api"),),
    ),
    ServiceSpec(
        "zlh-redis",
        Layer.CONTROL_PLANE,
        VmidRole.CORE_INFRA,
        "Redis, cache and agent state",
        stateful=True,
        startup_order=3,
        ingress=(Ingress(6379, "zpack-api", comment="Redis from zpack-api"),),
    ),
    ServiceSpec(
        "zpack-api",
        Layer.CONTROL_PLANE,
        VmidRole.CORE_INFRA,
        "platform API",
        networks=(Network.LAN, Network.MANAGEMENT),
        startup_order=4,
        ingress=(Ingress(8080, "zlh-proxy", comment="API behind zlh-proxy"),),
    ),
    ServiceSpec(
        "zpack-portal",
        Layer.CONTROL_PLANE,
        VmidRole.CORE_INFRA,
        "Next.js portal",
        startup_order=5,
        ingress=(Ingress(3000, "zlh-proxy", comment="portal behind zlh-proxy"),),
    ),
    ServiceSpec(
        "zlh-proxy",
        Layer.CONTROL_PLANE,
        VmidRole.NETWORK,
        "Traefik for portal, API, monitoring and Headscale",
        stateful=True,  # its ACME account and certificates
        startup_order=5,
        ingress=(Ingress(80, Peer.ANY, comment="HTTP"), Ingress(443, Peer.ANY, comment="HTTPS")),
    ),
    ServiceSpec(
        "zlh-ctl",
        Layer.CONTROL_PLANE,
        VmidRole.CORE_INFRA,
        "Headscale, the dev access VPN",
        stateful=True,  # node keys and its database
        startup_order=5,
        ingress=(
            Ingress(8080, "zlh-proxy", comment="Headscale behind zlh-proxy"),
            Ingress(3478, Peer.ANY, proto="udp", comment="STUN"),
        ),
    ),
    ServiceSpec(
        "zlh-monitor",
        Layer.CONTROL_PLANE,
        VmidRole.MONITORING,
        "Prometheus and Grafana",
        networks=(Network.LAN, Network.MANAGEMENT),
        stateful=True,
        startup_order=6,
        ingress=(Ingress(3000, "zlh-proxy", comment="Grafana behind zlh-proxy"),),
    ),
    ServiceSpec(
        "zlh-back",
        Layer.CONTROL_PLANE,
        VmidRole.MONITORING,
        "Proxmox Backup Server",
        networks=(Network.LAN, Network.MANAGEMENT),
        stateful=True,
        startup_order=6,
        ingress=(
            Ingress(
                8007, Peer.NODES, network=Network.MANAGEMENT, comment="PBS from a Proxmox node"
            ),
        ),
    ),
)

EDGE_SERVICES: dict[str, ServiceSpec] = _svc(
    ServiceSpec(
        "zlh-zpack-router",
        Layer.EDGE,
        VmidRole.NETWORK,
        "game/dev OPNsense router",
        networks=(Network.WAN, Network.LAN),
        kind=GuestKind.VM,
        startup_order=1,
        input_policy="ACCEPT",
    ),
    ServiceSpec(
        "zlh-zpack-proxy",
        Layer.EDGE,
        VmidRole.NETWORK,
        "Traefik for game servers and the dev IDE",
        networks=(Network.LAN, Network.MANAGEMENT),
        management_slot=2,
        stateful=True,  # its ACME account and certificates
        startup_order=3,
        ingress=(
            Ingress(80, Peer.ANY, comment="HTTP"),
            Ingress(443, Peer.ANY, comment="HTTPS"),
            ROUTE_REGISTRATION,
        ),
    ),
    ServiceSpec(
        "zlh-velocity",
        Layer.EDGE,
        VmidRole.NETWORK,
        "Minecraft Velocity proxy",
        networks=(Network.LAN, Network.MANAGEMENT),
        management_slot=3,
        startup_order=3,
        ingress=(Ingress(25565, Peer.ANY, comment="Minecraft"), ROUTE_REGISTRATION),
    ),
)

RUNTIME_SERVICES: dict[str, ServiceSpec] = _svc(
    ServiceSpec(
        "zlh-artifacts",
        Layer.RUNTIME,
        VmidRole.CORE_INFRA,
        "runtime binaries and server jars",
        networks=(Network.LAN, Network.MANAGEMENT),
        management_slot=0,
        stateful=True,
        startup_order=2,
        ingress=(
            Ingress(ARTIFACTS_PORT, Peer.LAN, comment="artifact downloads"),
            Ingress(22, "zlh-build", comment="publishing (zlh-publish over SSH) from zlh-build"),
        ),
    ),
    ServiceSpec(
        "zlh-build",
        Layer.RUNTIME,
        VmidRole.CORE_INFRA,
        "build system",
        networks=(Network.LAN, Network.MANAGEMENT),
        management_slot=1,
        startup_order=4,
    ),
)

#: A runtime host's whole block on the management network: its fleet, then its services.
HOST_BLOCK_SIZE = (
    FLEET_BLOCK_SIZE
    + 1
    + max(
        spec.management_slot
        for spec in (*EDGE_SERVICES.values(), *RUNTIME_SERVICES.values())
        if spec.management_slot is not None
    )
)

#: Every game and dev container accepts exactly these on its management NIC.
FLEET_MANAGEMENT_INGRESS: tuple[Ingress, ...] = (
    Ingress(
        AGENT_PORT, "core:zpack-api", network=Network.MANAGEMENT, comment="zlh-agent from zpack-api"
    ),
    RUNTIME_SCRAPE,
)
