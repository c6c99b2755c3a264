"""Layer 1, the control plane on the core host: must never depend on the runtime."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_random as random

from zlh_infra.config import (
    Backup,
    CoreDomains,
    Database,
    Monitoring,
    Pbs,
    Releases,
    ServiceGuest,
)
from zlh_infra.layers.backups import backup_to_pbs
from zlh_infra.layers.guest import LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import converge_service, write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.platform.catalogue import AGENT_PORT, CONTROL_PLANE_SERVICES, GuestKind, Network
from zlh_infra.platform.proxy_config import HttpRoute, traefik_dynamic_config
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole
from zlh_infra.services import mariadb, node_exporter, node_release, prometheus, redis
from zlh_infra.services.plan import EXIT_UNAVAILABLE, ServicePlan

#: PBS user the core host itself backs up with (runtime hosts get their own).
CORE_BACKUP_USER = "zlh-core@pbs"
API_PORT = 8080
PORTAL_PORT = 3000


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


class ControlPlane(pulumi.ComponentResource):
    """zpack-api, portal, MariaDB, Redis, DNS, Headscale, monitor, PBS, core Traefik, router."""

    guests: dict[str, LxcGuest | VmGuest]
    api_management_address: str
    monitor_management_address: str
    pbs_server: str
    pbs_datastore: str
    pbs_fingerprint: str | None
    pbs_username: str
    pbs_password: pulumi.Output[str]
    headscale_url: str
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
        back = guests["zlh-back"]
        runtime_password = random.RandomPassword(
            f"{name}-pbs-runtime-password",
            length=40,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        if site.converge:
            self._platform(name, args, runtime_password)

        self.api_management_address = str(site.addresses[("zpack-api", Network.MANAGEMENT)])
        self.monitor_management_address = str(site.addresses[("zlh-monitor", Network.MANAGEMENT)])
        self.pbs_server = str(back.management_address)
        self.pbs_datastore = args.pbs.datastore
        self.pbs_fingerprint = args.pbs.fingerprint
        self.pbs_username = args.pbs.runtime_user
        self.pbs_password = pulumi.Output.secret(runtime_password.result)
        self.headscale_url = f"https://{args.domains.headscale}"
        self.vmids = sorted(guest.vmid for guest in guests.values())
        self.register_outputs(
            {
                "apiManagementAddress": self.api_management_address,
                "monitorManagementAddress": self.monitor_management_address,
                "pbsServer": self.pbs_server,
                "pbsDatastore": self.pbs_datastore,
                "pbsFingerprint": self.pbs_fingerprint,
                "pbsUsername": self.pbs_username,
                "pbsPassword": self.pbs_password,
                "headscaleUrl": self.headscale_url,
                "vmids": self.vmids,
            }
        )

    def _platform(
        self, name: str, args: ControlPlaneArgs, runtime_password: random.RandomPassword
    ) -> None:
        """Every service in its guest, in dependency order, then the proxy, PBS and backups."""
        site, guests = args.site, args.guests
        steps = self._services(name, args)

        def lan(service: str, port: int) -> str:
            return f"http://{guests[service].lan_address}:{port}"

        routes = [
            HttpRoute("portal", args.domains.portal, lan("zpack-portal", PORTAL_PORT)),
            HttpRoute("api", args.domains.api, lan("zpack-api", API_PORT)),
            HttpRoute("grafana", args.domains.grafana, lan("zlh-monitor", 3000)),
            HttpRoute("headscale", args.domains.headscale, lan("zlh-ctl", 8080)),
        ]
        write_guest_file(
            f"{name}-proxy-routes",
            shell=site.shell,
            vmid=guests["zlh-proxy"].vmid,
            path="/etc/traefik/dynamic/zlh.yml",
            content=traefik_dynamic_config(routes),
            parent=self,
            # The proxies come last: after the portal and the API they route to.
            depends_on=[
                self.guests["zlh-proxy"],
                steps["zlh-proxy"],
                steps["zpack-portal"],
                steps["zpack-api"],
            ],
        )

        back = guests["zlh-back"]
        core_password = random.RandomPassword(
            f"{name}-pbs-core-password",
            length=40,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        pbs_users = write_guest_file(
            f"{name}-pbs-users",
            shell=site.shell,
            vmid=back.vmid,
            path="/root/.zlh/pbs-users",
            content=pulumi.Output.secret(
                pulumi.Output.all(runtime_password.result, core_password.result).apply(
                    lambda passwords: (
                        f"{args.pbs.runtime_user} {passwords[0]}\n"
                        f"{CORE_BACKUP_USER} {passwords[1]}\n"
                    )
                )
            ),
            after=_pbs_setup_script(args.pbs.datastore),
            parent=self,
            depends_on=[steps["zlh-back"]],
        )

        stateful = [
            guests[service].vmid
            for service, spec in CONTROL_PLANE_SERVICES.items()
            if spec.stateful and service != "zlh-back"
        ]
        backup_to_pbs(
            "zlh-core-backup",
            parent=self,
            node=site.node,
            # The node reaches PBS on the management network, where it has an address.
            server=str(back.management_address),
            datastore=args.pbs.datastore,
            username=CORE_BACKUP_USER,
            password=core_password.result,
            fingerprint=args.pbs.fingerprint,
            vmids=stateful,
            policy=args.backup,
            depends_on=[pbs_users],
        )

    def _services(self, name: str, args: ControlPlaneArgs) -> dict[str, pulumi.Resource]:
        """The configure step of every container, by service; each ends healthy."""
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
                },
            )

        portal_release = args.releases.zpack_portal
        fleet = DEFAULT_SCHEME.range_of(VmidRole.GAME)
        fleet_size = DEFAULT_SCHEME.range_of(VmidRole.DEV).last - fleet.first + 1
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
            "zpack-api": pulumi.Output.all(db_password.result, redis_password.result).apply(
                api_plan
            ),
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
                    prometheus.FleetBlock(node, first, fleet.first, fleet_size, node_exporter.PORT)
                    for node, first in args.monitoring.fleets.items()
                ],
            ),
        }
        # DNS first, then the database and cache, then the API, then the portal.
        order = {"zpack-api": ["zlh-db", "zlh-redis"], "zpack-portal": ["zpack-api"]}
        steps: dict[str, pulumi.Resource] = {}
        for service, spec in CONTROL_PLANE_SERVICES.items():
            if spec.kind is not GuestKind.LXC:
                continue
            exporter = node_exporter.plan(guest=service, listen=address(service))
            main = plans.get(service)
            guest_plans: Sequence[ServicePlan] | pulumi.Output[Sequence[ServicePlan]] = (
                [exporter] if main is None else _beside(exporter, main)
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
    first: ServicePlan, plan: ServicePlan | pulumi.Output[ServicePlan]
) -> pulumi.Output[Sequence[ServicePlan]]:
    return pulumi.Output.from_input(plan).apply(lambda main: [first, main])


def _pbs_setup_script(datastore: str) -> str:
    """Create the datastore and the backup users written to the users file, idempotently."""
    store = shlex.quote(datastore)
    return (
        # Until Proxmox Backup Server is installed here, say so (a vendor package).
        "{ command -v proxmox-backup-manager >/dev/null"
        " || { echo 'zlh: Proxmox Backup Server is not installed on zlh-back' >&2;"
        f" rm -f /root/.zlh/pbs-users; exit {EXIT_UNAVAILABLE}; }}; }} && "
        f"(proxmox-backup-manager datastore show {store} >/dev/null 2>&1"
        f" || proxmox-backup-manager datastore create {store} /srv/data/{store})"
        " && while read -r user password; do"
        ' (proxmox-backup-manager user update "$user" --password "$password" 2>/dev/null'
        ' || proxmox-backup-manager user create "$user" --password "$password")'
        f" && proxmox-backup-manager acl update /datastore/{store} DatastoreBackup"
        ' --auth-id "$user";'
        " done < /root/.zlh/pbs-users"
        # The passwords live in Pulumi state (encrypted); keep no copy in the guest.
        " ; status=$?; rm -f /root/.zlh/pbs-users; exit $status"
    )
