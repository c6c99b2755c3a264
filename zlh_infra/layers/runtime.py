"""Layer 3, the runtime on a runtime host: customer workloads, isolated from the core."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_proxmoxve as proxmox

from zlh_infra.config import Agent, Backup, FleetGuest, ServiceGuest, Template
from zlh_infra.contract import CoreContract
from zlh_infra.layers.backups import backup_to_pbs
from zlh_infra.layers.guest import GuestArgs, LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import (
    converge_service,
    node_command,
    run_in_base_image,
    write_guest_file,
)
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.platform.catalogue import (
    FLEET_MANAGEMENT_INGRESS,
    RUNTIME_SERVICES,
    Ingress,
    Network,
)
from zlh_infra.platform.topology import Layer, guest_tags
from zlh_infra.platform.vmids import VmidRole
from zlh_infra.services import agent, artifacts, node_exporter
from zlh_infra.services.plan import configure_script, install_script, wait_for_mirrors

#: Fleet containers start after the host's services (Proxmox start order).
FLEET_STARTUP_ORDER = 10


@dataclass(frozen=True, slots=True)
class FleetMember:
    """A game or dev container with the addresses the address plan gave it."""

    guest: FleetGuest
    role: VmidRole
    lan_address: IPv4Address
    management_address: IPv4Address


@dataclass(frozen=True, slots=True)
class RuntimeArgs:
    site: Site
    contract: CoreContract
    guests: Mapping[str, ServiceGuest]
    base_image: ServiceGuest
    templates: Mapping[str, Template]
    fleet: Sequence[FleetMember]
    agent: Agent
    backup: Backup
    #: The edge's stateful guests on this host, backed up by this host's job too.
    edge_backups: Sequence[int] = ()


class Runtime(pulumi.ComponentResource):
    """zlh-artifacts, zlh-build, the base images and the game and dev containers."""

    guests: dict[str, LxcGuest | VmGuest]
    fleet: dict[str, LxcGuest]
    vmids: list[int]

    def __init__(
        self, name: str, args: RuntimeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:runtime:Runtime", name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        layer_pool = pool(self, "zlh-runtime", "ZeroLagHub runtime: customer workloads")

        if not site.converge:
            # The routers stage: the edge creates the router; nothing else exists yet.
            self.guests, self.fleet, self.vmids = {}, {}, []
            self.register_outputs({"vmids": self.vmids})
            return
        self.guests = {
            service: service_guest(
                self, site, spec, args.guests[service], pool_id=layer_pool.pool_id
            )
            for service, spec in RUNTIME_SERVICES.items()
        }
        artifacts_guest = args.guests["zlh-artifacts"]
        assert artifacts_guest.lan_address is not None  # required by the config
        artifacts_url = f"http://{artifacts_guest.lan_address}:{artifacts.PORT}"
        agent_artifact = artifacts.Artifact(
            "zlh-agent", args.agent.version, "zlh-agent", args.agent.sha256, args.agent.url
        )
        store = converge_service(
            "zlh-artifacts",
            shell=site.shell,
            vmid=artifacts_guest.vmid,
            plans=[
                node_exporter.plan(guest="zlh-artifacts", listen=artifacts_guest.lan_address),
                artifacts.plan(
                    guest="zlh-artifacts",
                    listen=artifacts_guest.lan_address,
                    # Only what the program fetches itself is checked as served.
                    artifacts=[agent_artifact] if agent_artifact.url else [],
                ),
            ],
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-artifacts"],
        )
        build = args.guests["zlh-build"]
        assert build.lan_address is not None
        converge_service(
            "zlh-build",
            shell=site.shell,
            vmid=build.vmid,
            plans=[node_exporter.plan(guest="zlh-build", listen=build.lan_address)],
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-build"],
        )

        base = LxcGuest(
            "zlh-base",
            self._image_args(site, "zlh-base", args.base_image.vmid, args.base_image, layer_pool),
            child,
        )
        # The image exports metrics on loopback only; each clone moves them to its
        # management address.
        image_plans = [
            node_exporter.plan(guest="zlh-base", listen=IPv4Address("127.0.0.1")),
            agent.image_plan(guest="zlh-base", artifacts_url=artifacts_url, agent=agent_artifact),
        ]
        base_ready = run_in_base_image(
            "zlh-base-agent",
            shell=site.shell,
            vmid=args.base_image.vmid,
            script=install_script(image_plans, site.gateway) + configure_script(image_plans),
            parent=self,
            depends_on=[base, store],
            replace_with=[base],
        )

        template_ready: dict[str, pulumi.Resource] = {}
        for template_name, template in sorted(args.templates.items()):
            image = LxcGuest(
                f"zlh-template-{template_name}",
                self._image_args(
                    site,
                    f"zlh-template-{template_name}",
                    template.vmid,
                    template,
                    layer_pool,
                    clone_vmid=args.base_image.vmid,
                    depends_on=[base_ready],
                ),
                child,
            )
            template_ready[template_name] = run_in_base_image(
                f"zlh-template-{template_name}-setup",
                shell=site.shell,
                vmid=template.vmid,
                script="set -eu\n"
                + wait_for_mirrors(f"zlh-template-{template_name}", site.gateway)
                + (template.setup or "true")
                + "\n",
                parent=self,
                depends_on=[image],
                replace_with=[image],
            )

        self.fleet = {}
        for member in args.fleet:
            guest = member.guest
            template = args.templates[guest.template]
            self.fleet[guest.name] = LxcGuest(
                guest.name,
                GuestArgs(
                    node=site.node,
                    vmid=guest.vmid,
                    hostname=guest.name,
                    description=f"ZeroLagHub {member.role} container from {guest.template}",
                    tags=guest_tags(
                        layer=Layer.RUNTIME, role=member.role, stack=site.stack, service=member.role
                    ),
                    pool_id=layer_pool.pool_id,
                    nics=[
                        site.nic(Network.LAN, member.lan_address),
                        site.nic(Network.MANAGEMENT, member.management_address),
                    ],
                    cores=guest.cores,
                    memory_mb=guest.memory_mb,
                    disk_gb=guest.disk_gb,
                    datastore=site.datastore,
                    startup_order=FLEET_STARTUP_ORDER,
                    rules=site.rules(
                        (Network.LAN, Network.MANAGEMENT),
                        [*FLEET_MANAGEMENT_INGRESS, *_workload_ingress(member.role, template)],
                    ),
                    stateful=True,
                    dns_servers=list(site.dns_servers),
                    dns_domain=site.dns_domain,
                    clone_vmid=template.vmid,
                    depends_on=[template_ready[guest.template]],
                ),
                child,
            )
            container = self.fleet[guest.name]
            # The provider clones the template's disk as it is; grow it to the size asked.
            resized = node_command(
                f"{guest.name}-disk-size",
                shell=site.shell,
                script=f"pct resize {guest.vmid} rootfs {guest.disk_gb}G",
                parent=self,
                depends_on=[container],
                replace_with=[container],
            )
            converge_service(
                guest.name,
                shell=site.shell,
                vmid=guest.vmid,
                plans=[
                    node_exporter.plan(
                        guest=guest.name, listen=member.management_address, install=False
                    ),
                    agent.fleet_plan(
                        guest=guest.name, management_address=member.management_address
                    ),
                ],
                gateway=site.gateway,
                parent=self,
                guest=container,
                depends_on=[resized],
            )
            if member.role is VmidRole.DEV:
                write_guest_file(
                    f"{guest.name}-dev-vpn",
                    shell=site.shell,
                    vmid=guest.vmid,
                    path="/etc/zlh/dev-vpn.env",
                    content=f"HEADSCALE_URL={args.contract.headscale_url}\n",
                    parent=self,
                    depends_on=[container],
                )

        backed_up = [
            *(m.guest.vmid for m in args.fleet),
            *(args.guests[name].vmid for name, spec in RUNTIME_SERVICES.items() if spec.stateful),
            *args.edge_backups,
        ]
        if backed_up:
            contract = args.contract
            backup_to_pbs(
                "zlh-pbs",
                parent=self,
                node=site.node,
                server=str(contract.pbs_server),
                datastore=contract.pbs_datastore,
                username=contract.pbs_username,
                password=pulumi.Output.secret(contract.pbs_password.get_secret_value()),
                fingerprint=contract.pbs_fingerprint,
                vmids=backed_up,
                policy=args.backup,
                depends_on=list(self.fleet.values()),
            )

        self.vmids = sorted(
            [args.base_image.vmid]
            + [t.vmid for t in args.templates.values()]
            + [g.vmid for g in args.guests.values()]
            + [m.guest.vmid for m in args.fleet]
        )
        self.register_outputs({"vmids": self.vmids})

    def _image_args(
        self,
        site: Site,
        hostname: str,
        vmid: int,
        spec: ServiceGuest | Template,
        layer_pool: proxmox.PoolLegacy,
        *,
        clone_vmid: int | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> GuestArgs:
        size = spec if isinstance(spec, ServiceGuest) else ServiceGuest(vmid=vmid)
        return GuestArgs(
            node=site.node,
            vmid=vmid,
            hostname=hostname,
            description="ZeroLagHub base image with zlh-agent; fleet containers are cloned from it",
            tags=guest_tags(
                layer=Layer.RUNTIME,
                role=VmidRole.BASE_TEMPLATE,
                stack=site.stack,
                service="template",
            ),
            pool_id=layer_pool.pool_id,
            nics=[site.nic(Network.LAN, spec.lan_address)],
            cores=size.cores,
            memory_mb=size.memory_mb,
            disk_gb=size.disk_gb,
            datastore=site.datastore,
            startup_order=FLEET_STARTUP_ORDER,
            dns_servers=list(site.dns_servers),
            dns_domain=site.dns_domain,
            os_template_file_id=None if clone_vmid else site.os_template_file_id,
            clone_vmid=clone_vmid,
            clone_source=True,
            depends_on=list(depends_on),
        )


def _workload_ingress(role: VmidRole, template: Template) -> list[Ingress]:
    """Game ports from Velocity, dev IDE ports from zlh-zpack-proxy, on the LAN NIC."""
    source = "zlh-velocity" if role is VmidRole.GAME else "zlh-zpack-proxy"
    return [
        Ingress(port, source, network=Network.LAN, comment=f"{role} traffic from {source}")
        for port in template.ports
    ]
