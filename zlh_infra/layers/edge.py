"""Layer 2, the edge on a runtime host: routes game and dev traffic into the runtime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
from pydantic import SecretStr

from zlh_infra.config import Acme, ServiceGuest
from zlh_infra.layers.guest import LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import converge_service, write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.layers.vendor import traefik_answers, traefik_plan
from zlh_infra.platform.catalogue import EDGE_SERVICES, GuestKind, Network
from zlh_infra.platform.proxy_config import GameServer, HttpRoute
from zlh_infra.services import node_exporter, traefik, velocity
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.vendor import Vendored


@dataclass(frozen=True, slots=True)
class EdgeArgs:
    site: Site
    guests: Mapping[str, ServiceGuest]
    #: zlh-zpack-proxy's routes (dev IDEs) and Velocity's servers (game containers).
    routes: Sequence[HttpRoute]
    game_servers: Sequence[GameServer]
    #: The domain game servers are reached under (Velocity's forced hosts).
    games_domain: str
    acme: Acme
    acme_credentials: Mapping[str, SecretStr] | None
    #: Traefik's and Velocity's artifacts, the store they come from and the step that
    #: mirrors them there (None in the routers stage).
    traefik: Artifact
    velocity: Artifact
    store_url: str
    vendor_store: pulumi.Resource | None
    #: Velocity's modern-forwarding secret, which the game template's Paper holds too.
    forwarding_secret: pulumi.Output[str] | None


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
        assert args.vendor_store is not None and args.forwarding_secret is not None
        steps = {}
        for service, spec in EDGE_SERVICES.items():
            if spec.kind is not GuestKind.LXC:
                continue
            # On the management NIC: zlh-monitor's only way onto a runtime host.
            address = site.addresses[(service, Network.MANAGEMENT)]
            steps[service] = converge_service(
                service,
                shell=site.shell,
                vmid=guests[service].vmid,
                plans=[node_exporter.plan(guest=service, listen=address)],
                gateway=site.gateway,
                parent=self,
                guest=self.guests[service],
            )

        # Traefik from zlh-artifacts, after the guest's Debian step and the mirror.
        proxy = converge_service(
            "zlh-zpack-proxy-traefik",
            shell=site.shell,
            vmid=guests["zlh-zpack-proxy"].vmid,
            plans=pulumi.Output.from_input(
                traefik_plan(
                    guest="zlh-zpack-proxy",
                    source=Vendored.from_store(args.traefik, args.store_url),
                    acme=args.acme,
                    credentials=args.acme_credentials,
                )
            ).apply(lambda plan: [plan]),
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-zpack-proxy"],
            depends_on=[steps["zlh-zpack-proxy"], args.vendor_store],
            secret=bool(args.acme_credentials),
        )
        # Pulumi writes only its own file of Traefik's routes directory: the routes the
        # platform API writes beside it survive every run.
        write_guest_file(
            f"{name}-zpack-proxy-routes",
            shell=site.shell,
            vmid=guests["zlh-zpack-proxy"].vmid,
            path=traefik.ROUTES,
            content=traefik.dynamic_config(args.routes),
            # Traefik watches the directory: no restart; it must answer still.
            after=traefik_answers(),
            parent=self,
            depends_on=[self.guests["zlh-zpack-proxy"], proxy],
        )

        memory = guests["zlh-velocity"].memory_mb
        proxy_server = converge_service(
            "zlh-velocity-velocity",
            shell=site.shell,
            vmid=guests["zlh-velocity"].vmid,
            plans=args.forwarding_secret.apply(
                lambda secret: [
                    velocity.plan(
                        guest="zlh-velocity",
                        velocity=Vendored.from_store(args.velocity, args.store_url),
                        forwarding_secret=secret,
                        games_domain=args.games_domain,
                        # Half the guest for the heap, the rest for the JVM and the system.
                        memory_mb=max(128, min(65536, memory // 2)),
                    )
                ]
            ),
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-velocity"],
            depends_on=[steps["zlh-velocity"], args.vendor_store],
        )
        # velocity.toml has no include: the module's merge folds this table in (with the
        # servers registered outside Pulumi) and Velocity restarts only when it changed.
        write_guest_file(
            f"{name}-velocity-servers",
            shell=site.shell,
            vmid=guests["zlh-velocity"].vmid,
            path=velocity.DECLARED,
            content=velocity.declared_servers(args.game_servers),
            after=(
                f"zlh_out=$({velocity.merge_command(args.games_domain)}) && "
                f'if [ "$zlh_out" = changed ]; then systemctl restart {velocity.UNIT}; fi && '
                + _listening("velocity", "zlh-velocity", velocity.PORT)
            ),
            parent=self,
            depends_on=[self.guests["zlh-velocity"], proxy_server],
        )


def _listening(service: str, guest: str, port: int, seconds: int = 120) -> str:
    """Shell waiting (bounded) until something listens on ``port``; else failing, named."""
    message = f"zlh: {service} on {guest} does not listen on port {port} after {seconds} s"
    return (
        f"zlh_try=0 && until ss -ltnH 'sport = :{port}' | grep -q .; do"
        f' zlh_try=$((zlh_try + 1)); if [ "$zlh_try" -ge {seconds} ]; then'
        f" echo '{message}' >&2; exit 1; fi; sleep 1; done"
    )
