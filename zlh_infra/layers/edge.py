"""Layer 2, the edge on a runtime host: routes game and dev traffic into the runtime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from zlh_infra.config import ServiceGuest
from zlh_infra.layers.guest import LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.platform.catalogue import EDGE_SERVICES
from zlh_infra.platform.proxy_config import (
    GameServer,
    HttpRoute,
    traefik_dynamic_config,
    velocity_servers,
)


@dataclass(frozen=True, slots=True)
class EdgeArgs:
    site: Site
    guests: Mapping[str, ServiceGuest]
    #: zlh-zpack-proxy's routes (dev IDEs) and Velocity's servers (game containers).
    routes: Sequence[HttpRoute]
    game_servers: Sequence[GameServer]


class Edge(pulumi.ComponentResource):
    """zlh-zpack-router (OPNsense), zlh-zpack-proxy (Traefik) and zlh-velocity."""

    guests: dict[str, LxcGuest | VmGuest]
    vmids: list[int]

    def __init__(
        self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:edge:Edge", name, None, opts)
        site, guests = args.site, args.guests
        layer_pool = pool(self, "zlh-edge", "ZeroLagHub edge / gateway")
        self.guests = {
            service: service_guest(self, site, spec, guests[service], pool_id=layer_pool.pool_id)
            for service, spec in EDGE_SERVICES.items()
        }
        write_guest_file(
            f"{name}-zpack-proxy-routes",
            shell=site.shell,
            vmid=guests["zlh-zpack-proxy"].vmid,
            path="/etc/traefik/dynamic/zlh.yml",
            content=traefik_dynamic_config(args.routes),
            parent=self,
            depends_on=[self.guests["zlh-zpack-proxy"]],
        )
        write_guest_file(
            f"{name}-velocity-servers",
            shell=site.shell,
            vmid=guests["zlh-velocity"].vmid,
            path="/opt/velocity/zlh-servers.toml",
            content=velocity_servers(args.game_servers),
            # Velocity has no include: its unit merges this table into velocity.toml.
            after="systemctl try-restart velocity.service",
            parent=self,
            depends_on=[self.guests["zlh-velocity"]],
        )
        self.vmids = sorted(guest.vmid for guest in guests.values())
        self.register_outputs({"vmids": self.vmids})
