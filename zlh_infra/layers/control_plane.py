"""Layer 1, the control plane on the core host: must never depend on the runtime."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_random as random

from zlh_infra.config import Backup, CoreDomains, Pbs, ServiceGuest
from zlh_infra.layers.backups import backup_to_pbs
from zlh_infra.layers.guest import LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.platform.catalogue import CONTROL_PLANE_SERVICES, Network
from zlh_infra.platform.proxy_config import HttpRoute, traefik_dynamic_config

#: PBS user the core host itself backs up with (runtime hosts get their own).
CORE_BACKUP_USER = "zlh-core@pbs"
PBS_PORT = 8007


@dataclass(frozen=True, slots=True)
class ControlPlaneArgs:
    site: Site
    guests: Mapping[str, ServiceGuest]
    domains: CoreDomains
    pbs: Pbs
    backup: Backup


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

        self.guests = {
            service: service_guest(self, site, spec, guests[service], pool_id=layer_pool.pool_id)
            for service, spec in CONTROL_PLANE_SERVICES.items()
        }

        def lan(service: str, port: int) -> str:
            return f"http://{guests[service].lan_address}:{port}"

        routes = [
            HttpRoute("portal", args.domains.portal, lan("zpack-portal", 3000)),
            HttpRoute("api", args.domains.api, lan("zpack-api", 8080)),
            HttpRoute("grafana", args.domains.grafana, lan("zlh-monitor", 3000)),
            HttpRoute("headscale", args.domains.headscale, lan("zlh-ctl", 8080)),
        ]
        proxy = self.guests["zlh-proxy"]
        write_guest_file(
            f"{name}-proxy-routes",
            shell=site.shell,
            vmid=guests["zlh-proxy"].vmid,
            path="/etc/traefik/dynamic/zlh.yml",
            content=traefik_dynamic_config(routes),
            parent=self,
            depends_on=[proxy],
        )

        back = guests["zlh-back"]
        runtime_password = random.RandomPassword(
            f"{name}-pbs-runtime-password",
            length=40,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
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
            depends_on=[self.guests["zlh-back"]],
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
            server=str(back.lan_address),
            datastore=args.pbs.datastore,
            username=CORE_BACKUP_USER,
            password=core_password.result,
            fingerprint=args.pbs.fingerprint,
            vmids=stateful,
            policy=args.backup,
            depends_on=[pbs_users],
        )

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


def _pbs_setup_script(datastore: str) -> str:
    """Create the datastore and the backup users written to the users file, idempotently."""
    store = shlex.quote(datastore)
    return (
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
