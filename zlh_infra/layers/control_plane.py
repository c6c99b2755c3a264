"""Layer 1, the control plane on the core host: must never depend on the runtime."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_random as random
from pydantic import SecretStr

from zlh_infra.config import (
    Acme,
    AptRepositories,
    AptRepository,
    Backup,
    CoreDomains,
    CoreVendor,
    Database,
    Dns,
    Headscale,
    Monitoring,
    Pbs,
    Releases,
    RuntimeHost,
    ServiceGuest,
)
from zlh_infra.layers.backups import Selection, backup_to_pbs
from zlh_infra.layers.guest import LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import converge_service, read_from_guest, write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.layers.vendor import artifact, read_value, traefik_answers, traefik_plan
from zlh_infra.platform import api_identity
from zlh_infra.platform.catalogue import (
    AGENT_PORT,
    CONTROL_PLANE_SERVICES,
    EDGE_SERVICES,
    FLEET_BLOCK_SIZE,
    RUNTIME_SERVICES,
    GuestKind,
    Network,
)
from zlh_infra.platform.proxy_config import HttpRoute
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole
from zlh_infra.services import (
    grafana,
    headscale,
    mariadb,
    node_exporter,
    node_release,
    pbs,
    prometheus,
    redis,
    routes,
    technitium,
    traefik,
    vendor,
)
from zlh_infra.services.plan import GuestFile, ServicePlan

API_PORT = 8080
PORTAL_PORT = 3000
#: A pre-auth key as Headscale prints it (``code_server`` checks it again where it is used).
_PREAUTH_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True, slots=True)
class ControlPlaneArgs:
    site: Site
    guests: Mapping[str, ServiceGuest]
    domains: CoreDomains
    pbs: Pbs
    backup: Backup
    releases: Releases
    database: Database
    monitoring: Monitoring
    vendor: CoreVendor
    apt_repositories: AptRepositories
    acme: Acme
    acme_credentials: Mapping[str, SecretStr] | None
    headscale: Headscale
    dns: Dns
    #: Per runtime stack: its node, API endpoint, CA and PBS user.
    runtime_hosts: Mapping[str, RuntimeHost]


def _ca_file(stack: str) -> str:
    """Where zpack-api finds the CA of runtime stack ``stack``'s node."""
    return f"/etc/zpack-api/proxmox-ca/{stack}.pem"


def _repository(name: str, repository: AptRepository) -> vendor.AptRepository:
    return vendor.AptRepository(
        name, repository.uri, repository.suite, tuple(repository.components), repository.key
    )


def preauth_key(stdout: str) -> str:
    """The key ``headscale.print_preauth_key`` printed (a secret: never echoed)."""
    key = stdout.strip()
    if not 16 <= len(key) <= 256 or not set(key) <= _PREAUTH_KEY_CHARS:
        raise ValueError("zlh-ctl printed no Headscale pre-auth key")
    return key


def fingerprint(pin: str | None) -> Callable[[str], str]:
    """Parse ``cert info``'s output; with a pin, refuse a certificate that differs."""

    def parse(stdout: str) -> str:
        found = pbs.fingerprint_from(stdout)
        if pin is not None and found != pin:
            raise ValueError(
                f"zlh-back's certificate fingerprint is {found}, zlh-infra:pbs.fingerprint "
                f"pins {pin}: update the pin if the certificate was renewed on purpose"
            )
        return found

    return parse


class ControlPlane(pulumi.ComponentResource):
    """zpack-api, portal, MariaDB, Redis, DNS, Headscale, monitor, PBS, core Traefik, router."""

    guests: dict[str, LxcGuest | VmGuest]
    api_management_address: str
    monitor_management_address: str
    pbs_server: str
    pbs_datastore: str
    #: Read from zlh-back once PBS is configured (None in the routers stage).
    pbs_fingerprint: pulumi.Output[str] | None
    #: Per runtime stack: its node and endpoint.
    runtime_hosts: dict[str, dict[str, str]]
    #: Per runtime stack: its PBS username, password and namespace (secret).
    pbs_hosts: pulumi.Output[dict[str, dict[str, str]]]
    #: Per runtime stack: zpack-api's Proxmox username and password there (secret).
    api_hosts: pulumi.Output[dict[str, dict[str, str]]]
    headscale_url: str
    #: The dev containers' reusable pre-auth key, read from zlh-ctl (None in the routers stage).
    headscale_preauth_key: pulumi.Output[str] | None
    #: zpack-api's route key, read from its guest (None in the routers stage).
    route_key: pulumi.Output[str] | None
    vmids: list[int]

    def __init__(
        self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:control-plane:ControlPlane", name, None, opts)
        site, guests = args.site, args.guests
        layer_pool = pool(self, "zlh-control-plane", "ZeroLagHub control plane")

        # The routers stage creates the router alone: it must be installed before any
        # guest can reach a package mirror (docs/runbook.md, stage 1).
        self.guests = {
            service: service_guest(self, site, spec, guests[service], pool_id=layer_pool.pool_id)
            for service, spec in CONTROL_PLANE_SERVICES.items()
            if site.converge or spec.kind is GuestKind.VM
        }
        # One PBS user per host, each with a password of its own, and per runtime host
        # zpack-api's Proxmox password there: the runtime hosts' are exported in the
        # contract (secret), each host picking its own.
        child = pulumi.ResourceOptions(parent=self)
        self._pbs_passwords = {
            host: random.RandomPassword(
                f"{name}-pbs-{host}-password", length=40, special=False, opts=child
            )
            for host in ["core", *sorted(args.runtime_hosts)]
        }
        self._api_passwords = {
            host: random.RandomPassword(
                f"{name}-zpack-api-{host}-password",
                length=api_identity.PASSWORD_LENGTH,
                special=False,
                opts=child,
            )
            for host in sorted(args.runtime_hosts)
        }
        runtime_hosts = sorted(args.runtime_hosts.items())
        self.runtime_hosts = {
            stack: {"node": host.node, "endpoint": host.endpoint} for stack, host in runtime_hosts
        }
        self.pbs_hosts = pulumi.Output.secret(
            pulumi.Output.all(
                *(self._pbs_passwords[stack].result for stack, _ in runtime_hosts)
            ).apply(
                lambda passwords: {
                    stack: {
                        "username": host.pbs.user,
                        "password": password,
                        "namespace": host.pbs.namespace,
                    }
                    for (stack, host), password in zip(runtime_hosts, passwords, strict=True)
                }
            )
        )
        self.api_hosts = pulumi.Output.secret(
            pulumi.Output.all(
                *(self._api_passwords[stack].result for stack, _ in runtime_hosts)
            ).apply(
                lambda passwords: {
                    stack: {"username": api_identity.USER_ID, "password": password}
                    for (stack, _host), password in zip(runtime_hosts, passwords, strict=True)
                }
            )
        )
        self.pbs_fingerprint = None
        self.headscale_preauth_key = None
        self.route_key = None
        if site.converge:
            self._platform(name, args)

        back = guests["zlh-back"]
        self.api_management_address = str(site.addresses[("zpack-api", Network.MANAGEMENT)])
        self.monitor_management_address = str(site.addresses[("zlh-monitor", Network.MANAGEMENT)])
        self.pbs_server = str(back.management_address)
        self.pbs_datastore = args.pbs.datastore
        self.headscale_url = f"https://{args.domains.headscale}"
        self.vmids = sorted(guest.vmid for guest in guests.values())
        self.register_outputs(
            {
                "apiManagementAddress": self.api_management_address,
                "monitorManagementAddress": self.monitor_management_address,
                "pbsServer": self.pbs_server,
                "pbsDatastore": self.pbs_datastore,
                "pbsFingerprint": self.pbs_fingerprint,
                "runtimeHosts": self.runtime_hosts,
                "pbsHosts": self.pbs_hosts,
                "apiHosts": self.api_hosts,
                "headscaleUrl": self.headscale_url,
                "headscalePreauthKey": self.headscale_preauth_key,
                "routeKey": self.route_key,
                "vmids": self.vmids,
            }
        )

    def _platform(self, name: str, args: ControlPlaneArgs) -> None:
        """Every service in its guest, in dependency order, then the proxy, PBS and backups."""
        site, guests = args.site, args.guests
        steps = self._services(name, args)
        vendor_steps = self._vendor_services(name, args, steps)

        def lan(service: str, port: int) -> str:
            return f"http://{guests[service].lan_address}:{port}"

        proxy_routes = [
            HttpRoute("portal", args.domains.portal, lan("zpack-portal", PORTAL_PORT)),
            HttpRoute("api", args.domains.api, lan("zpack-api", API_PORT)),
            HttpRoute("grafana", args.domains.grafana, lan("zlh-monitor", grafana.PORT)),
            HttpRoute("headscale", args.domains.headscale, lan("zlh-ctl", headscale.PORT)),
        ]
        write_guest_file(
            f"{name}-proxy-routes",
            shell=site.shell,
            vmid=guests["zlh-proxy"].vmid,
            path=traefik.ROUTES,
            content=traefik.dynamic_config(proxy_routes),
            # Traefik watches the directory: no restart; it must answer still.
            after=traefik_answers(),
            parent=self,
            # Once Traefik runs, after the portal and the API it routes to. Grafana and
            # Headscale are vendor software: their routes answer 502 until they are up,
            # rather than holding back the platform's own.
            depends_on=[
                self.guests["zlh-proxy"],
                vendor_steps["zlh-proxy"],
                steps["zpack-portal"],
                steps["zpack-api"],
            ],
        )

        route_key = read_from_guest(
            f"{name}-zpack-api-route-key",
            shell=site.shell,
            vmid=guests["zpack-api"].vmid,
            command_line=routes.print_public_key(),
            parent=self,
            after=steps["zpack-api"],
        )
        self.route_key = read_value(route_key, routes.public_key)

        back = guests["zlh-back"]
        core = args.pbs.core_user
        stateful = [
            guests[service].vmid
            for service, spec in CONTROL_PLANE_SERVICES.items()
            if spec.stateful and service != "zlh-back"
        ]
        assert self.pbs_fingerprint is not None
        backup_to_pbs(
            "zlh-core-backup",
            parent=self,
            node=site.node,
            # The node reaches PBS on the management network, where it has an address.
            server=str(back.management_address),
            datastore=args.pbs.datastore,
            namespace=core.namespace,
            username=core.user,
            password=self._pbs_passwords["core"].result,
            fingerprint=self.pbs_fingerprint,
            selections=[Selection("job", vmids=stateful)],
            policy=args.backup,
            depends_on=[vendor_steps["zlh-back"], vendor_steps["zlh-back-fingerprint"]],
        )

    def _vendor_services(
        self, name: str, args: ControlPlaneArgs, steps: Mapping[str, pulumi.Resource]
    ) -> dict[str, pulumi.Resource]:
        """The vendor software, each a step of its own after its guest's Debian step.

        A vendor step exits 69 when it cannot fetch its software: it holds back only what
        needs that software, never a guest's Debian services (they are the earlier step).
        """
        site, guests = args.site, args.guests
        secret = pulumi.ResourceOptions(parent=self)

        def address(service: str) -> IPv4Address:
            found = guests[service].lan_address
            assert found is not None  # the config requires it for every container
            return found

        def step(
            service: str,
            what: str,
            plans: ServicePlan | pulumi.Output[ServicePlan],
        ) -> pulumi.Resource:
            planned: Sequence[ServicePlan] | pulumi.Output[Sequence[ServicePlan]] = (
                [plans] if isinstance(plans, ServicePlan) else plans.apply(lambda p: [p])
            )
            # After the guest's Debian step: one apt at a time in a guest.
            return converge_service(
                f"{service}-{what}",
                shell=site.shell,
                vmid=guests[service].vmid,
                plans=planned,
                gateway=site.gateway,
                parent=self,
                guest=self.guests[service],
                depends_on=[steps[service]],
            )

        found: dict[str, pulumi.Resource] = {}
        core_vendor = args.vendor

        dns_password = random.RandomPassword(
            f"{name}-technitium-admin-password", length=32, special=False, opts=secret
        )
        core_guests = {
            service: guest.lan_address
            for service, guest in guests.items()
            if guest.lan_address is not None
        }
        found["zlh-dns"] = step(
            "zlh-dns",
            "technitium",
            dns_password.result.apply(
                lambda password: technitium.plan(
                    guest="zlh-dns",
                    technitium=vendor.Vendored.from_vendor(
                        artifact("technitium", core_vendor.technitium)
                    ),
                    dotnet=vendor.Vendored.from_vendor(artifact("dotnet", core_vendor.dotnet)),
                    admin_password=password,
                    core_zone_name=site.dns_domain,
                    core_guests=core_guests,
                    forwarders=[str(forwarder) for forwarder in args.dns.forwarders],
                )
            ),
        )

        found["zlh-ctl"] = step(
            "zlh-ctl",
            "headscale",
            headscale.plan(
                guest="zlh-ctl",
                headscale=vendor.Vendored.from_vendor(artifact("headscale", core_vendor.headscale)),
                server_domain=args.domains.headscale,
                listen=address("zlh-ctl"),
                base_domain=args.headscale.base_domain,
                trusted_proxies=[address("zlh-proxy")],
                key_expiration=args.headscale.key_expiration,
            ),
        )
        key = read_from_guest(
            f"{name}-headscale-preauth-key",
            shell=site.shell,
            vmid=guests["zlh-ctl"].vmid,
            command_line=headscale.print_preauth_key(),
            parent=self,
            after=found["zlh-ctl"],
            secret=True,
        )
        self.headscale_preauth_key = read_value(key, preauth_key, secret=True)

        grafana_password = random.RandomPassword(
            f"{name}-grafana-admin-password", length=32, special=False, opts=secret
        )
        found["zlh-monitor"] = step(
            "zlh-monitor",
            "grafana",
            grafana_password.result.apply(
                lambda password: grafana.plan(
                    guest="zlh-monitor",
                    repository=_repository("grafana", args.apt_repositories.grafana),
                    listen=address("zlh-monitor"),
                    admin_password=password,
                    version=args.monitoring.grafana_version,
                    public_domain=args.domains.grafana,
                )
            ),
        )

        pbs_config = args.pbs
        users = [
            ("core", pbs_config.core_user),
            *((stack, host.pbs) for stack, host in sorted(args.runtime_hosts.items())),
        ]
        found["zlh-back"] = step(
            "zlh-back",
            "pbs",
            pulumi.Output.all(*(self._pbs_passwords[host].result for host, _ in users)).apply(
                lambda passwords: pbs.plan(
                    guest="zlh-back",
                    repository=_repository("proxmox-backup", args.apt_repositories.proxmox_backup),
                    store=pbs_config.datastore,
                    users=[
                        pbs.BackupUser(user.user, user.namespace, password)
                        for (_, user), password in zip(users, passwords, strict=True)
                    ],
                    retention=pbs.Retention(
                        keep_daily=pbs_config.retention.keep_daily,
                        keep_weekly=pbs_config.retention.keep_weekly,
                        keep_monthly=pbs_config.retention.keep_monthly,
                        keep_last=pbs_config.retention.keep_last,
                        keep_yearly=pbs_config.retention.keep_yearly,
                    ),
                    version=pbs_config.version,
                    gc_schedule=pbs_config.gc_schedule,
                    prune_schedule=pbs_config.prune_schedule,
                    verify_schedule=pbs_config.verify_schedule,
                    verify_outdated_after=pbs_config.verify_outdated_after,
                )
            ),
        )
        cert = read_from_guest(
            f"{name}-pbs-fingerprint",
            shell=site.shell,
            vmid=guests["zlh-back"].vmid,
            command_line=pbs.fingerprint_command(),
            parent=self,
            after=found["zlh-back"],
        )
        found["zlh-back-fingerprint"] = cert
        self.pbs_fingerprint = read_value(cert, fingerprint(pbs_config.fingerprint))

        found["zlh-proxy"] = step(
            "zlh-proxy",
            "traefik",
            traefik_plan(
                guest="zlh-proxy",
                source=vendor.Vendored.from_vendor(artifact("traefik", core_vendor.traefik)),
                acme=args.acme,
                credentials=args.acme_credentials,
            ),
        )
        return found

    def _services(self, name: str, args: ControlPlaneArgs) -> dict[str, pulumi.Resource]:
        """The Debian step of every container, by service; each ends healthy."""
        site, guests = args.site, args.guests
        secret = pulumi.ResourceOptions(parent=self)
        db_password = random.RandomPassword(
            f"{name}-db-password", length=32, special=False, opts=secret
        )
        redis_password = random.RandomPassword(
            f"{name}-redis-password", length=32, special=False, opts=secret
        )
        database = args.database

        def address(service: str) -> IPv4Address:
            found = guests[service].lan_address
            assert found is not None  # the config requires it for every container
            return found

        def api_plan(secrets: list[str]) -> ServicePlan:
            release = args.releases.zpack_api
            return node_release.plan(
                name="zpack-api",
                guest="zpack-api",
                description="ZeroLagHub platform API",
                release=node_release.Release(release.version, release.url, release.sha256),
                listen=address("zpack-api"),
                port=API_PORT,
                environment={
                    "NODE_ENV": "production",
                    "HOST": str(address("zpack-api")),
                    "PORT": str(API_PORT),
                    "DB_HOST": str(address("zlh-db")),
                    "DB_PORT": str(mariadb.PORT),
                    "DB_NAME": database.name,
                    "DB_USER": database.user,
                    "DB_PASSWORD": secrets[0],
                    "REDIS_HOST": str(address("zlh-redis")),
                    "REDIS_PORT": str(redis.PORT),
                    "REDIS_PASSWORD": secrets[1],
                    "AGENT_PORT": str(AGENT_PORT),
                    "PUBLIC_URL": f"https://{args.domains.api}",
                    "PORTAL_URL": f"https://{args.domains.portal}",
                    # Each runtime host as the core's config names it, never read from
                    # a runtime stack; the fleet's rules are zlh_infra.platform.api_identity's.
                    "PROXMOX_HOSTS": json.dumps(
                        [
                            {
                                "stack": stack,
                                "node": host.node,
                                "endpoint": host.endpoint,
                                "user": api_identity.USER_ID,
                                "password": password,
                                "caFile": _ca_file(stack) if host.ca_certificate else None,
                            }
                            for (stack, host), password in zip(
                                sorted(args.runtime_hosts.items()), secrets[2:], strict=True
                            )
                        ],
                        sort_keys=True,
                    ),
                    **routes.api_environment(route_hosts),
                },
                extra_files=[
                    GuestFile(_ca_file(stack), host.ca_certificate, mode=0o644)
                    for stack, host in sorted(args.runtime_hosts.items())
                    if host.ca_certificate
                ],
            )

        route_hosts = _route_hosts(args)
        portal_release = args.releases.zpack_portal
        first_fleet_vmid = DEFAULT_SCHEME.range_of(VmidRole.GAME).first
        # Where each runtime-host service sits in its host's block (the catalogue's slot).
        runtime_services = tuple(
            (service, spec.management_index)
            for specs in (EDGE_SERVICES, RUNTIME_SERVICES)
            for service, spec in specs.items()
            if spec.management_index is not None
        )
        targets = [
            prometheus.Target("core", address(service), node_exporter.PORT, service)
            for service, spec in CONTROL_PLANE_SERVICES.items()
            if spec.kind is GuestKind.LXC
        ] + [
            prometheus.Target("proxmox-nodes", node_address, node_exporter.PORT, node)
            for node, node_address in args.monitoring.proxmox_nodes.items()
        ]
        plans: dict[str, ServicePlan | pulumi.Output[ServicePlan]] = {
            "zlh-db": db_password.result.apply(
                lambda password: mariadb.plan(
                    guest="zlh-db",
                    listen=address("zlh-db"),
                    database=mariadb.Database(
                        database.name, database.user, password, address("zpack-api")
                    ),
                )
            ),
            "zlh-redis": redis_password.result.apply(
                lambda password: redis.plan(
                    guest="zlh-redis", listen=address("zlh-redis"), password=password
                )
            ),
            "zpack-api": pulumi.Output.all(
                db_password.result,
                redis_password.result,
                *(self._api_passwords[stack].result for stack in sorted(args.runtime_hosts)),
            ).apply(api_plan),
            "zpack-portal": node_release.plan(
                name="zpack-portal",
                guest="zpack-portal",
                description="ZeroLagHub portal",
                release=node_release.Release(
                    portal_release.version, portal_release.url, portal_release.sha256
                ),
                listen=address("zpack-portal"),
                port=PORTAL_PORT,
                environment={
                    "NODE_ENV": "production",
                    "HOSTNAME": str(address("zpack-portal")),
                    "PORT": str(PORTAL_PORT),
                    "API_URL": f"https://{args.domains.api}",
                    "API_INTERNAL_URL": f"http://{address('zpack-api')}:{API_PORT}",
                },
            ),
            "zlh-monitor": prometheus.plan(
                guest="zlh-monitor",
                targets=targets,
                retention=args.monitoring.retention,
                fleets=[
                    prometheus.FleetBlock(
                        node,
                        first,
                        first_fleet_vmid,
                        FLEET_BLOCK_SIZE,
                        node_exporter.PORT,
                        services=runtime_services,
                    )
                    for node, first in args.monitoring.fleets.items()
                ],
            ),
        }
        # The zlh-dns guest's Debian step first, then the database and cache, then the
        # API, then the portal. None of them waits for Technitium: a core guest resolves
        # through zlh-dns, then the router, so the router answers until Technitium does.
        order = {"zpack-api": ["zlh-db", "zlh-redis"], "zpack-portal": ["zpack-api"]}
        # After the API's own plan: its service account exists to own the route key.
        beside = {
            "zpack-api": [
                routes.api_plan(guest="zpack-api", account="zpack-api", hosts=route_hosts)
            ]
        }
        steps: dict[str, pulumi.Resource] = {}
        for service, spec in CONTROL_PLANE_SERVICES.items():
            if spec.kind is not GuestKind.LXC:
                continue
            exporter = node_exporter.plan(guest=service, listen=address(service))
            main = plans.get(service)
            guest_plans: Sequence[ServicePlan] | pulumi.Output[Sequence[ServicePlan]] = (
                [exporter] if main is None else _beside(exporter, main, beside.get(service, []))
            )
            after = [steps[other] for other in order.get(service, ())]
            if service != "zlh-dns" and "zlh-dns" in steps:
                after.append(steps["zlh-dns"])
            steps[service] = converge_service(
                service,
                shell=site.shell,
                vmid=guests[service].vmid,
                plans=guest_plans,
                gateway=site.gateway,
                parent=self,
                guest=self.guests[service],
                depends_on=after,
            )
        return steps


def _beside(
    first: ServicePlan, plan: ServicePlan | pulumi.Output[ServicePlan], after: Sequence[ServicePlan]
) -> pulumi.Output[Sequence[ServicePlan]]:
    return pulumi.Output.from_input(plan).apply(lambda main: [first, main, *after])


def _route_hosts(args: ControlPlaneArgs) -> list[routes.RouteHost]:
    """The proxies zpack-api registers its servers with, from the core's config alone.

    Each is at its catalogue slot after its host's fleet block (``monitoring.fleets``, as
    zlh-monitor finds it), with the host key the operator copied from the runtime stack's
    ``routeHostKeys`` output; a runtime host without them has no route hosts yet.
    """
    found = []
    for stack, host in sorted(args.runtime_hosts.items()):
        first = args.monitoring.fleets.get(host.node)
        for kind, service in routes.ROUTE_GUESTS.items():
            key = host.route_host_keys.get(service)
            index = EDGE_SERVICES[service].management_index
            if first is None or key is None or index is None:
                continue
            found.append(routes.RouteHost(stack, kind, first + index, key))
    return found
