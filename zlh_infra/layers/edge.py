"""Layer 2, the edge on a runtime host: routes game and dev traffic into the runtime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from zlh_infra.config import ServiceGuest
from zlh_infra.layers.guest import LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import converge_service, write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.platform.catalogue import EDGE_SERVICES, GuestKind
from zlh_infra.platform.proxy_config import (
    GameServer,
    HttpRoute,
    traefik_dynamic_config,
    velocity_servers,
)
from zlh_infra.services import node_exporter


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
        # The routers stage creates the router alone (docs/runbook.md, stage 1).
        self.guests = {
            service: service_guest(self, site, spec, guests[service], pool_id=layer_pool.pool_id)
            for service, spec in EDGE_SERVICES.items()
            if site.converge or spec.kind is GuestKind.VM
        }
        self.vmids = sorted(guest.vmid for guest in guests.values())
        if site.converge:
            self._platform(name, args)
        self.register_outputs({"vmids": self.vmids})

    def _platform(self, name: str, args: EdgeArgs) -> None:
        site, guests = args.site, args.guests
        steps = {}
        for service, spec in EDGE_SERVICES.items():
            address = guests[service].lan_address
            if spec.kind is not GuestKind.LXC or address is None:
                continue
            steps[service] = converge_service(
                service,
                shell=site.shell,
                vmid=guests[service].vmid,
                plans=[node_exporter.plan(guest=service, listen=address)],
                gateway=site.gateway,
                parent=self,
                guest=self.guests[service],
            )
        write_guest_file(
            f"{name}-zpack-proxy-routes",
            shell=site.shell,
            vmid=guests["zlh-zpack-proxy"].vmid,
            path="/etc/traefik/dynamic/zlh.yml",
            content=traefik_dynamic_config(args.routes),
            parent=self,
            depends_on=[self.guests["zlh-zpack-proxy"], steps["zlh-zpack-proxy"]],
        )
        write_guest_file(
            f"{name}-velocity-servers",
            shell=site.shell,
            vmid=guests["zlh-velocity"].vmid,
            path="/opt/velocity/zlh-servers.toml",
            content=velocity_servers(args.game_servers),
            # Velocity has no include: its unit merges this table into velocity.toml.
            after=(
                "if systemctl cat velocity.service >/dev/null 2>&1;"
                " then systemctl try-restart velocity.service; fi"
            ),
            parent=self,
            depends_on=[self.guests["zlh-velocity"], steps["zlh-velocity"]],
        )
