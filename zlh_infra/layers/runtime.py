"""Layer 3, the runtime on a runtime host: customer workloads, isolated from the core."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

import pulumi
import pulumi_proxmoxve as proxmox
import pulumi_random as random

from zlh_infra.config import (
    Agent,
    Backup,
    FleetGuest,
    Paper,
    RuntimeVendor,
    ServiceGuest,
    Template,
)
from zlh_infra.contract import ApiHost, CoreContract, PbsHost
from zlh_infra.layers.api_access import ApiAccess, ApiAccessArgs
from zlh_infra.layers.backups import Selection, backup_to_pbs
from zlh_infra.layers.guest import GuestArgs, LxcGuest, VmGuest, pool, rule_args
from zlh_infra.layers.guest_steps import (
    converge_service,
    node_command,
    read_from_guest,
    run_in_base_image,
)
from zlh_infra.layers.site import Site, service_guest
from zlh_infra.layers.vendor import artifact, read_value
from zlh_infra.platform.api_identity import (
    BACKUP_STORAGE,
    FLEET_POOL,
    FLEET_STARTUP_ORDER,
    IdentityInputs,
)
from zlh_infra.platform.catalogue import (
    RUNTIME_SERVICES,
    Ingress,
    Network,
)
from zlh_infra.platform.fleet_firewall import FLEET_GROUPS, fleet_group_rules
from zlh_infra.platform.topology import Layer, guest_tags
from zlh_infra.platform.vmids import VmidRole
from zlh_infra.services import agent, artifacts, build, code_server, node_exporter, paper, ssh
from zlh_infra.services.plan import (
    ServicePlan,
    configure_script,
    install_script,
    wait_for_mirrors,
)
from zlh_infra.services.vendor import Vendored

#: Fleet containers start after the host's services (Proxmox start order).


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
    vendor: RuntimeVendor
    paper: Paper
    #: This host's PBS login, picked from the contract by the stack's name.
    pbs_host: PbsHost
    #: zpack-api's login on this host, from the contract: the user this stack creates.
    api_login: ApiHost
    #: The host's fleet IP sets, which the fleet's security groups name.
    fleet_sets: Sequence[pulumi.Resource]
    #: Deploy-time contract values (unknown while previewing against a core preview).
    pbs_fingerprint: pulumi.Input[str]
    headscale_preauth_key: pulumi.Input[str]
    #: The edge's stateful guests on this host, backed up by this host's job too.
    edge_backups: Sequence[int] = ()


class Runtime(pulumi.ComponentResource):
    """zlh-artifacts, zlh-build, the base images and the game and dev containers."""

    guests: dict[str, LxcGuest | VmGuest]
    fleet: dict[str, LxcGuest]
    vmids: list[int]
    #: zlh-artifacts' URL (``http://<lan>:8080``), where the host's guests fetch from.
    store_url: str
    #: The vendor artifacts zlh-artifacts mirrors, by name; and the step that mirrors them
    #: (None in the routers stage).
    vendor_artifacts: dict[str, artifacts.Artifact]
    vendor_store: pulumi.Resource | None
    #: Velocity's modern-forwarding secret, shared with every game container's Paper.
    forwarding_secret: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: RuntimeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:runtime:Runtime", name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        layer_pool = pool(self, FLEET_POOL, "ZeroLagHub runtime: customer workloads")

        artifacts_guest = args.guests["zlh-artifacts"]
        assert artifacts_guest.lan_address is not None  # required by the config
        artifacts_url = f"http://{artifacts_guest.lan_address}:{artifacts.PORT}"
        self.store_url = artifacts_url
        self.vendor_artifacts = {
            name: artifact(name, release) for name, release in args.vendor.artifacts().items()
        }
        self.vendor_store, self.forwarding_secret = None, None
        if not site.converge:
            # The routers stage: the edge creates the router; nothing else exists yet.
            self.guests, self.fleet, self.vmids = {}, {}, []
            self.register_outputs({"vmids": self.vmids})
            return
        fleet_groups = _fleet_firewall(
            self, site, artifact_store=artifacts_guest.lan_address, ipsets=args.fleet_sets
        )
        self.guests = {
            service: service_guest(
                self, site, spec, args.guests[service], pool_id=layer_pool.pool_id
            )
            for service, spec in RUNTIME_SERVICES.items()
        }
        agent_artifact = artifacts.Artifact(
            "zlh-agent", args.agent.version, "zlh-agent", args.agent.sha256, args.agent.url
        )
        store = converge_service(
            "zlh-artifacts",
            shell=site.shell,
            vmid=artifacts_guest.vmid,
            plans=[
                node_exporter.plan(
                    guest="zlh-artifacts",
                    listen=site.addresses[("zlh-artifacts", Network.MANAGEMENT)],
                ),
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
        # The vendor software the edge and the fleet need, mirrored in a step of its
        # own: a vendor that cannot be reached holds back only what needs its software.
        self.vendor_store = converge_service(
            "zlh-artifacts-vendor",
            shell=site.shell,
            vmid=artifacts_guest.vmid,
            plans=[
                artifacts.mirror_plan(
                    guest="zlh-artifacts",
                    listen=artifacts_guest.lan_address,
                    artifacts=list(self.vendor_artifacts.values()),
                )
            ],
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-artifacts"],
            depends_on=[store],
        )
        self.forwarding_secret = pulumi.Output.secret(
            random.RandomPassword(
                f"{name}-velocity-forwarding-secret", length=32, special=False, opts=child
            ).result
        )
        self._build_and_publishing(site, args, store)

        base = LxcGuest(
            "zlh-base",
            self._image_args(site, "zlh-base", args.base_image.vmid, args.base_image, layer_pool),
            child,
        )
        # The image holds the exporter and the agent, each starting on the management
        # NIC of whatever clone it runs in: zpack-api's clones need no step of their own.
        image_plans = [
            node_exporter.image_plan(guest="zlh-base", interface=agent.INTERFACE),
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
            hostname = f"zlh-template-{template_name}"
            image = LxcGuest(
                hostname,
                self._image_args(
                    site,
                    hostname,
                    template.vmid,
                    template,
                    layer_pool,
                    clone_vmid=args.base_image.vmid,
                    depends_on=[base_ready],
                ),
                child,
            )
            # What the workload runs on (Debian's Java, code-server's user), then the
            # template's own extra shell. The workload itself is each container's: a
            # clone keeps its disk for life, so a release must reach it there.
            plans = [self._prerequisites(hostname, template)]
            prepared = run_in_base_image(
                f"{hostname}-prerequisites",
                shell=site.shell,
                vmid=template.vmid,
                script=install_script(plans, site.gateway) + configure_script(plans),
                parent=self,
                depends_on=[image],
                replace_with=[image],
            )
            template_ready[template_name] = run_in_base_image(
                f"{hostname}-setup",
                shell=site.shell,
                vmid=template.vmid,
                script="set -eu\n"
                + wait_for_mirrors(hostname, site.gateway)
                + (template.setup or "true")
                + "\n",
                parent=self,
                depends_on=[prepared],
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
                    security_groups=fleet_groups,
                    rules=site.rules(
                        (Network.LAN, Network.MANAGEMENT), _workload_ingress(member.role, template)
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
            managed = converge_service(
                guest.name,
                shell=site.shell,
                vmid=guest.vmid,
                plans=[
                    node_exporter.fleet_plan(
                        guest=guest.name, management_address=member.management_address
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
            # The workload, from zlh-artifacts' vendor files: a step of its own after the
            # agent's, so a container is managed even while those files are missing.
            converge_service(
                f"{guest.name}-{'paper' if member.role is VmidRole.GAME else 'code-server'}",
                shell=site.shell,
                vmid=guest.vmid,
                plans=self._fleet_workload(guest, member.role, template, args),
                gateway=site.gateway,
                parent=self,
                guest=container,
                depends_on=[managed, self.vendor_store],
            )

        # The fleet by its pool, so a container zpack-api makes is backed up from its first
        # night; the edge's stateful guests (another pool) by VMID.
        contract = args.contract
        backup_to_pbs(
            BACKUP_STORAGE,
            parent=self,
            node=site.node,
            server=str(contract.pbs_server),
            datastore=contract.pbs_datastore,
            namespace=args.pbs_host.namespace,
            username=args.pbs_host.username,
            password=pulumi.Output.secret(args.pbs_host.password.get_secret_value()),
            fingerprint=args.pbs_fingerprint,
            selections=[
                Selection("fleet", pool=layer_pool.pool_id),
                Selection("edge", vmids=args.edge_backups),
            ],
            policy=args.backup,
            depends_on=list(self.fleet.values()),
        )
        ApiAccess(
            "zpack-api-access",
            ApiAccessArgs(
                login=args.api_login,
                inputs=IdentityInputs(
                    template_vmids=tuple(sorted(t.vmid for t in args.templates.values())),
                    storages=(site.datastore, BACKUP_STORAGE),
                    bridges=(site.lan.bridge, site.management.bridge),
                    pool=FLEET_POOL,
                    core_vmids=contract.core_vmids,
                ),
            ),
            child,
        )

        self.vmids = sorted(
            [args.base_image.vmid]
            + [t.vmid for t in args.templates.values()]
            + [g.vmid for g in args.guests.values()]
            + [m.guest.vmid for m in args.fleet]
        )
        self.register_outputs({"vmids": self.vmids})

    def _build_and_publishing(self, site: Site, args: RuntimeArgs, store: pulumi.Resource) -> None:
        """zlh-build's toolchains, and its key as the one that may publish to the store.

        The key is made in zlh-build and stays there; its public half is read back and
        installed for zlh-artifacts' ``publish`` account, whose host key zlh-build pins.
        """
        build_guest, artifacts_guest = args.guests["zlh-build"], args.guests["zlh-artifacts"]
        assert build_guest.lan_address is not None and artifacts_guest.lan_address is not None
        toolchains = converge_service(
            "zlh-build",
            shell=site.shell,
            vmid=build_guest.vmid,
            plans=[
                node_exporter.plan(
                    guest="zlh-build", listen=site.addresses[("zlh-build", Network.MANAGEMENT)]
                ),
                build.plan(guest="zlh-build"),
            ],
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-build"],
        )
        key = read_value(
            read_from_guest(
                "zlh-build-publish-key",
                shell=site.shell,
                vmid=build_guest.vmid,
                command_line=build.print_public_key(),
                parent=self,
                after=toolchains,
            ),
            build.public_key,
        )
        publishing = converge_service(
            "zlh-artifacts-publish",
            shell=site.shell,
            vmid=artifacts_guest.vmid,
            plans=key.apply(lambda k: [build.publish_plan(guest="zlh-artifacts", public_key=k)]),
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-artifacts"],
            depends_on=[store],
            secret=False,
        )
        host_key = read_value(
            read_from_guest(
                "zlh-artifacts-host-key",
                shell=site.shell,
                vmid=artifacts_guest.vmid,
                command_line=ssh.print_host_key(),
                parent=self,
                after=publishing,
            ),
            build.host_key,
        )
        address = artifacts_guest.lan_address
        converge_service(
            "zlh-build-publish",
            shell=site.shell,
            vmid=build_guest.vmid,
            plans=host_key.apply(
                lambda k: [
                    build.client_plan(
                        guest="zlh-build", artifacts_address=address, artifacts_host_key=k
                    )
                ]
            ),
            gateway=site.gateway,
            parent=self,
            guest=self.guests["zlh-build"],
            depends_on=[toolchains, publishing],
            secret=False,
        )

    def _source(self, name: str) -> Vendored:
        return Vendored.from_store(self.vendor_artifacts[name], self.store_url)

    def _prerequisites(self, hostname: str, template: Template) -> ServicePlan:
        """What a game template's Paper or a dev template's code-server runs on."""
        if template.kind == "dev":
            return code_server.template_plan(guest=hostname)
        return paper.template_plan(guest=hostname, java=self._java())

    def _java(self) -> Vendored | None:
        return self._source("java") if "java" in self.vendor_artifacts else None

    def _fleet_workload(
        self, guest: FleetGuest, role: VmidRole, template: Template, args: RuntimeArgs
    ) -> pulumi.Output[list[ServicePlan]]:
        """A game container's Paper (with Velocity's secret); a dev container's IDE and VPN."""
        name = guest.name
        if role is VmidRole.GAME:
            assert self.forwarding_secret is not None
            settings = args.paper
            return self.forwarding_secret.apply(
                lambda secret: [
                    paper.fleet_plan(
                        guest=name,
                        paper=self._source("paper"),
                        forwarding_secret=secret,
                        accept_eula=settings.accept_eula,
                        memory_mb=guest.memory_mb,
                        java=self._java(),
                        port=template.ports[0],
                        motd=settings.motd,
                    )
                ]
            )
        # One password per dev container: one developer's cannot open another's IDE.
        password = random.RandomPassword(
            f"{name}-code-server-password",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        login_server = args.contract.headscale_url

        def plans(values: list[str]) -> list[ServicePlan]:
            return list(
                code_server.fleet_plan(
                    guest=name,
                    code_server=self._source("code-server"),
                    tailscale=self._source("tailscale"),
                    password=values[0],
                    login_server=login_server,
                    auth_key=values[1],
                )
            )

        values: pulumi.Output[list[str]] = pulumi.Output.all(
            password.result, args.headscale_preauth_key
        )
        secrets: pulumi.Output[list[str]] = pulumi.Output.secret(values)
        return secrets.apply(plans)

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


def _fleet_firewall(
    parent: pulumi.ComponentResource,
    site: Site,
    *,
    artifact_store: IPv4Address,
    ipsets: Sequence[pulumi.Resource],
) -> list[tuple[proxmox.cluster.firewall.security.GroupLegacy, str]]:
    """The host's fleet security groups, each with the NIC a container attaches it on;
    ``ipsets``: the host's fleet IP sets they name."""
    router = IPv4Address(site.gateway.address)
    rules = fleet_group_rules(router=router, artifact_store=artifact_store)
    return [
        (
            proxmox.cluster.firewall.security.GroupLegacy(
                group,
                name=group,
                comment=f"every game and dev container, on {iface}, declared or made by zpack-api",
                rules=[
                    rule_args(rule, proxmox.cluster.firewall.security.GroupLegacyRuleArgs)
                    for rule in rules[group]
                ],
                opts=pulumi.ResourceOptions(parent=parent, depends_on=list(ipsets)),
            ),
            iface,
        )
        for group, iface in FLEET_GROUPS
    ]


def _workload_ingress(role: VmidRole, template: Template) -> list[Ingress]:
    """Game ports from Velocity, dev IDE ports from zlh-zpack-proxy, on the LAN NIC."""
    source = "zlh-velocity" if role is VmidRole.GAME else "zlh-zpack-proxy"
    return [
        Ingress(port, source, network=Network.LAN, comment=f"{role} traffic from {source}")
        for port in template.ports
    ]
