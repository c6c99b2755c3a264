"""Layer 2, the edge on a runtime host: routes game and dev traffic into the runtime."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
from pydantic import SecretStr

from zlh_infra.config import Acme, ServiceGuest
from zlh_infra.layers.guest import LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import converge_service, read_from_guest, write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.layers.vendor import read_value, traefik_answers, traefik_plan
from zlh_infra.platform.catalogue import EDGE_SERVICES, GuestKind, Network
from zlh_infra.platform.proxy_config import GameServer, HttpRoute
from zlh_infra.services import node_exporter, routes, ssh, traefik, velocity
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import ServicePlan
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
    #: The domain dev IDEs are routed under (``NAME.<dev_domain>``).
    dev_domain: str
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
    #: zpack-api's route key (the contract's ``routeKey``; unknown until the core deployed).
    route_key: pulumi.Output[str] | None


class Edge(pulumi.ComponentResource):
    """zlh-zpack-router (OPNsense), zlh-zpack-proxy (Traefik) and zlh-velocity."""

    guests: dict[str, LxcGuest | VmGuest]
    vmids: list[int]
    #: Per edge guest zpack-api registers routes with, its ed25519 host key (read from it;
    #: None in the routers stage), for the core stack's ``runtimeHosts.*.routeHostKeys``.
    route_host_keys: dict[str, pulumi.Output[str]] | None

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
        self.route_host_keys = None
        if site.converge:
            self._platform(name, args)
        self.register_outputs({"vmids": self.vmids, "routeHostKeys": self.route_host_keys})

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

        route_steps = self._routes(name, args, steps)
        # Traefik from zlh-artifacts, after the guest's Debian step, its routes and the mirror.
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
                    tenant_routes=True,
                )
            ).apply(lambda plan: [plan]),
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-zpack-proxy"],
            depends_on=[
                steps["zlh-zpack-proxy"],
                route_steps["zlh-zpack-proxy"],
                args.vendor_store,
            ],
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
                        tenant_routes=True,
                    )
                ]
            ),
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-velocity"],
            depends_on=[steps["zlh-velocity"], route_steps["zlh-velocity"], args.vendor_store],
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

    def _routes(
        self, name: str, args: EdgeArgs, debian: Mapping[str, pulumi.Resource]
    ) -> dict[str, pulumi.Resource]:
        """zpack-api's route account on both proxies, and their host keys for it to pin.

        After each guest's Debian step and before its proxy, whose directory it makes.
        """
        site, guests = args.site, args.guests
        assert args.route_key is not None
        declared = {
            routes.RouteKind.HTTP: [
                route.host.removesuffix(f".{args.dev_domain}") for route in args.routes
            ],
            routes.RouteKind.GAME: [server.name for server in args.game_servers],
        }
        api_address = site.addresses[("core:zpack-api", Network.MANAGEMENT)]
        self.route_host_keys = {}
        found: dict[str, pulumi.Resource] = {}
        for kind, service in routes.ROUTE_GUESTS.items():
            settings = routes.RouteSettings(
                kind=kind,
                directory=routes.ROUTE_DIRECTORIES[kind],
                network=site.lan.cidr,
                domain=args.dev_domain if kind is routes.RouteKind.HTTP else "",
                reserved=tuple(declared[kind]),
            )
            step = converge_service(
                f"{service}-routes",
                shell=site.shell,
                vmid=guests[service].vmid,
                plans=args.route_key.apply(
                    functools.partial(
                        _route_plans,
                        guest=service,
                        settings=settings,
                        listen=site.addresses[(service, Network.MANAGEMENT)],
                        api_address=api_address,
                        games_domain=args.games_domain,
                    )
                ),
                gateway=site.gateway,
                parent=self,
                guest=self.guests[service],
                depends_on=[debian[service]],
                secret=False,  # an Output for the public key only
            )
            found[service] = step
            read = read_from_guest(
                f"{name}-{service}-host-key",
                shell=site.shell,
                vmid=guests[service].vmid,
                command_line=ssh.print_host_key(),
                parent=self,
                after=step,
            )
            self.route_host_keys[service] = read_value(
                read, functools.partial(routes.host_key, service)
            )
        return found


def _route_plans(
    api_key: str,
    *,
    guest: str,
    settings: routes.RouteSettings,
    listen: IPv4Address,
    api_address: IPv4Address,
    games_domain: str,
) -> list[ServicePlan]:
    return [
        routes.edge_plan(
            guest=guest,
            settings=settings,
            listen=listen,
            api_address=api_address,
            api_key=api_key,
            games_domain=games_domain,
        )
    ]


def _listening(service: str, guest: str, port: int, seconds: int = 120) -> str:
    """Shell waiting (bounded) until something listens on ``port``; else failing, named."""
    message = f"zlh: {service} on {guest} does not listen on port {port} after {seconds} s"
    return (
        f"zlh_try=0 && until ss -ltnH 'sport = :{port}' | grep -q .; do"
        f' zlh_try=$((zlh_try + 1)); if [ "$zlh_try" -ge {seconds} ]; then'
        f" echo '{message}' >&2; exit 1; fi; sleep 1; done"
    )
