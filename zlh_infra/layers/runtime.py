"""Layer 3, the runtime on a runtime host: customer workloads, isolated from the core."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_proxmoxve as proxmox

from zlh_infra.config import Agent, Backup, FleetGuest, ServiceGuest, Template
from zlh_infra.contract import CoreContract
from zlh_infra.layers.backups import backup_to_pbs
from zlh_infra.layers.guest import GuestArgs, LxcGuest, VmGuest, pool
from zlh_infra.layers.guest_steps import run_in_base_image, write_guest_file
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.platform.catalogue import (
    AGENT_PORT,
    FLEET_MANAGEMENT_INGRESS,
    RUNTIME_SERVICES,
    Ingress,
    Network,
)
from zlh_infra.platform.topology import Layer, guest_tags
from zlh_infra.platform.vmids import VmidRole

ARTIFACTS_PORT = 8080
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

        self.guests = {
            service: service_guest(
                self, site, spec, args.guests[service], pool_id=layer_pool.pool_id
            )
            for service, spec in RUNTIME_SERVICES.items()
        }
        artifacts_url = f"http://{args.guests['zlh-artifacts'].lan_address}:{ARTIFACTS_PORT}"

        base = LxcGuest(
            "zlh-base",
            self._image_args(site, "zlh-base", args.base_image.vmid, args.base_image, layer_pool),
            child,
        )
        base_ready = run_in_base_image(
            "zlh-base-agent",
            shell=site.shell,
            vmid=args.base_image.vmid,
            script=agent_install_script(artifacts_url, args.agent),
            parent=self,
            depends_on=[base, self.guests["zlh-artifacts"]],
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
                script=template.setup or "true",
                parent=self,
                depends_on=[image],
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
            if member.role is VmidRole.DEV:
                write_guest_file(
                    f"{guest.name}-dev-vpn",
                    shell=site.shell,
                    vmid=guest.vmid,
                    path="/etc/zlh/dev-vpn.env",
                    content=f"HEADSCALE_URL={args.contract.headscale_url}\n",
                    parent=self,
                    depends_on=[self.fleet[guest.name]],
                )

        backed_up = [m.guest.vmid for m in args.fleet] + [
            args.guests[service].vmid for service, spec in RUNTIME_SERVICES.items() if spec.stateful
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


def agent_install_script(artifacts_url: str, agent: Agent) -> str:
    """Install zlh-agent from zlh-artifacts, verified by checksum, as a systemd service."""
    url = shlex.quote(f"{artifacts_url}/zlh-agent/{agent.version}/zlh-agent")
    return f"""\
curl -fsSL --retry 5 -o /usr/local/bin/zlh-agent.new {url}
echo '{agent.sha256}  /usr/local/bin/zlh-agent.new' | sha256sum -c -
install -m 0755 /usr/local/bin/zlh-agent.new /usr/local/bin/zlh-agent
rm -f /usr/local/bin/zlh-agent.new
cat > /etc/systemd/system/zlh-agent.service <<'UNIT'
[Unit]
Description=ZeroLagHub agent (management NIC, port {AGENT_PORT})
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/zlh-agent --interface eth1 --port {AGENT_PORT}
Restart=always

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable zlh-agent.service
"""
