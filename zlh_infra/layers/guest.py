"""One Proxmox guest with its firewall: the building block every layer uses.

A guest component holds the container (or VM), its firewall options and its rules,
so the Proxmox UI, the preview tree and the policy pack all see one unit per guest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pulumi
import pulumi_proxmoxve as proxmox
import pulumi_random as random

from zlh_infra.platform.firewall import FirewallRule

#: Replacing a stateful guest destroys its disks; these inputs force a replacement in
#: the provider, so a stateful guest ignores later edits to them (change them by
#: migrating data to a new guest on purpose).
_REPLACING_INPUTS = ["operatingSystem", "clone", "vmId", "nodeName"]


@dataclass(frozen=True, slots=True)
class Nic:
    """A NIC in order: the i-th NIC is ``eth<i>`` in the guest and ``net<i>`` in Proxmox."""

    bridge: str
    #: ``10.10.0.10/24``; None for a NIC the guest configures itself (routers).
    address: pulumi.Input[str] | None = None
    gateway: pulumi.Input[str] | None = None


@dataclass(frozen=True, slots=True)
class GuestArgs:
    node: str
    vmid: int
    hostname: str
    description: str
    tags: Sequence[str]
    pool_id: pulumi.Input[str]
    nics: Sequence[Nic]
    cores: int
    memory_mb: int
    disk_gb: int
    datastore: str
    startup_order: int
    input_policy: str = "DROP"
    rules: Sequence[FirewallRule] = ()
    #: Security groups its rules start with, in order, each on the NIC named with it.
    security_groups: Sequence[tuple[proxmox.cluster.firewall.security.GroupLegacy, str]] = ()
    #: Stateful guests are protected in Pulumi and in Proxmox.
    stateful: bool = False
    dns_servers: Sequence[pulumi.Input[str]] = ()
    dns_domain: str | None = None
    data_disk_gb: int | None = None
    #: Exactly one of: an OS template file id (a fresh container) or a template VMID.
    os_template_file_id: pulumi.Input[str] | None = None
    clone_vmid: pulumi.Input[int] | None = None
    #: A base image (200-299) that fleet containers are full-cloned from. It stays a
    #: stopped container rather than a Proxmox template: the template flag turns its
    #: volumes into read-only base images, and zlh-agent upgrades must be written in.
    clone_source: bool = False
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


def _guest_options(
    parent: pulumi.Resource, args: GuestArgs, extra_depends_on: Sequence[pulumi.Resource] = ()
) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(
        parent=parent,
        depends_on=[*args.depends_on, *extra_depends_on],
        protect=args.stateful,
        ignore_changes=_REPLACING_INPUTS if args.stateful else None,
    )


RuleArgs = TypeVar(
    "RuleArgs",
    proxmox.firewall.RulesLegacyRuleArgs,
    proxmox.cluster.firewall.security.GroupLegacyRuleArgs,
)


def rule_args(rule: FirewallRule, kind: type[RuleArgs]) -> RuleArgs:
    """One program rule as the provider's rule (of a guest's rules, or of a group's)."""
    return kind(
        type=rule.direction,
        action=rule.action,
        proto=rule.proto,
        dport=None if rule.dport is None else str(rule.dport),
        source=rule.source,
        dest=rule.dest,
        iface=rule.iface or None,
        comment=rule.comment,
        enabled=True,
    )


def _firewall_rules(rules: Sequence[FirewallRule]) -> list[proxmox.firewall.RulesLegacyRuleArgs]:
    return [rule_args(rule, proxmox.firewall.RulesLegacyRuleArgs) for rule in rules]


def _group_reference(group: pulumi.Input[str], iface: str) -> proxmox.firewall.RulesLegacyRuleArgs:
    return proxmox.firewall.RulesLegacyRuleArgs(security_group=group, iface=iface, enabled=True)


class LxcGuest(pulumi.ComponentResource):
    """An LXC container with the Proxmox firewall on, DROP inbound unless a rule allows."""

    container: proxmox.ContainerLegacy
    vmid: pulumi.Output[int]
    root_password: pulumi.Output[str]

    def __init__(
        self, name: str, args: GuestArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:guest:LxcGuest", name, None, opts)
        if (args.os_template_file_id is None) == (args.clone_vmid is None):
            raise ValueError(f"{name}: give exactly one of os_template_file_id and clone_vmid")
        child = pulumi.ResourceOptions(parent=self)

        password = random.RandomPassword(
            f"{name}-root-password", length=32, special=False, opts=child
        )
        ip_configs = [
            proxmox.ContainerLegacyInitializationIpConfigArgs(
                ipv4=proxmox.ContainerLegacyInitializationIpConfigIpv4Args(
                    address=nic.address, gateway=nic.gateway
                )
            )
            for nic in args.nics
            if nic.address is not None
        ]
        self.container = proxmox.ContainerLegacy(
            name,
            node_name=args.node,
            vm_id=args.vmid,
            description=args.description,
            tags=list(args.tags),
            pool_id=args.pool_id,
            unprivileged=True,
            protection=args.stateful,
            start_on_boot=not args.clone_source,
            started=not args.clone_source,
            startup=None
            if args.clone_source
            else proxmox.ContainerLegacyStartupArgs(order=args.startup_order, up_delay=5),
            cpu=proxmox.ContainerLegacyCpuArgs(cores=args.cores),
            memory=proxmox.ContainerLegacyMemoryArgs(dedicated=args.memory_mb, swap=0),
            disk=proxmox.ContainerLegacyDiskArgs(datastore_id=args.datastore, size=args.disk_gb),
            mount_points=[
                proxmox.ContainerLegacyMountPointArgs(
                    path="/srv/data",
                    volume=args.datastore,
                    size=f"{args.data_disk_gb}G",
                    backup=True,
                )
            ]
            if args.data_disk_gb
            else None,
            features=proxmox.ContainerLegacyFeaturesArgs(nesting=True),
            operating_system=proxmox.ContainerLegacyOperatingSystemArgs(
                template_file_id=args.os_template_file_id, type="debian"
            )
            if args.os_template_file_id is not None
            else None,
            clone=proxmox.ContainerLegacyCloneArgs(vm_id=args.clone_vmid, full=True)
            if args.clone_vmid is not None
            else None,
            network_interfaces=[
                proxmox.ContainerLegacyNetworkInterfaceArgs(
                    name=f"eth{index}", bridge=nic.bridge, firewall=True
                )
                for index, nic in enumerate(args.nics)
            ],
            initialization=proxmox.ContainerLegacyInitializationArgs(
                hostname=args.hostname,
                ip_configs=ip_configs,
                dns=proxmox.ContainerLegacyInitializationDnsArgs(
                    domain=args.dns_domain, servers=list(args.dns_servers)
                )
                if args.dns_servers
                else None,
                user_account=proxmox.ContainerLegacyInitializationUserAccountArgs(
                    password=password.result
                ),
            ),
            opts=_guest_options(self, args),
        )
        _guest_firewall(self, name, args, container_id=self.container.vm_id)

        self.vmid = self.container.vm_id.apply(lambda vmid: int(vmid or args.vmid))
        self.root_password = pulumi.Output.secret(password.result)
        self.register_outputs({"vmid": self.vmid, "rootPassword": self.root_password})


@dataclass(frozen=True, slots=True)
class VmArgs:
    guest: GuestArgs
    iso_file_id: pulumi.Input[str]


class VmGuest(pulumi.ComponentResource):
    """A QEMU VM (the OPNsense routers) booting its installer ISO on first start."""

    vm: proxmox.VmLegacy
    vmid: pulumi.Output[int]

    def __init__(self, name: str, args: VmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("zlh:guest:VmGuest", name, None, opts)
        guest = args.guest
        self.vm = proxmox.VmLegacy(
            name,
            name=guest.hostname,
            node_name=guest.node,
            vm_id=guest.vmid,
            description=guest.description,
            tags=list(guest.tags),
            pool_id=guest.pool_id,
            protection=guest.stateful,
            on_boot=True,
            started=True,
            startup=proxmox.VmLegacyStartupArgs(order=guest.startup_order, up_delay=30),
            operating_system=proxmox.VmLegacyOperatingSystemArgs(type="other"),
            cpu=proxmox.VmLegacyCpuArgs(cores=guest.cores, type="host"),
            memory=proxmox.VmLegacyMemoryArgs(dedicated=guest.memory_mb),
            agent=proxmox.VmLegacyAgentArgs(enabled=False),
            scsi_hardware="virtio-scsi-single",
            disks=[
                proxmox.VmLegacyDiskArgs(
                    interface="scsi0",
                    datastore_id=guest.datastore,
                    size=guest.disk_gb,
                    iothread=True,
                    discard="on",
                )
            ],
            cdrom=proxmox.VmLegacyCdromArgs(file_id=args.iso_file_id, interface="ide2"),
            boot_orders=["scsi0", "ide2"],
            network_devices=[
                proxmox.VmLegacyNetworkDeviceArgs(bridge=nic.bridge, model="virtio", firewall=True)
                for nic in guest.nics
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(guest.depends_on),
                # The router is installed and configured inside the guest after the
                # first boot; the ISO may be removed there without a diff.
                ignore_changes=["cdrom", "bootOrders"],
            ),
        )
        _guest_firewall(self, name, guest, vm_id=self.vm.vm_id)
        self.vmid = self.vm.vm_id.apply(lambda vmid: int(vmid or guest.vmid))
        self.register_outputs({"vmid": self.vmid})


def _guest_firewall(
    parent: pulumi.ComponentResource,
    name: str,
    args: GuestArgs,
    *,
    container_id: pulumi.Input[int] | None = None,
    vm_id: pulumi.Input[int] | None = None,
) -> None:
    """Guest firewall options and rules; Proxmox applies them only with the NIC flag set."""
    child = pulumi.ResourceOptions(parent=parent)
    proxmox.firewall.OptionsLegacy(
        f"{name}-firewall",
        node_name=args.node,
        container_id=container_id,
        vm_id=vm_id,
        enabled=True,
        input_policy=args.input_policy,
        output_policy="ACCEPT",
        dhcp=False,
        macfilter=True,
        # Containers send only from the addresses in their config (Proxmox adds them to
        # the implicit ipfilter set), so a tenant cannot take zpack-api's address. The
        # routers forward others' traffic: only their MAC is filtered.
        ipfilter=vm_id is None,
        opts=child,
    )
    if args.rules or args.security_groups:
        proxmox.firewall.RulesLegacy(
            f"{name}-rules",
            node_name=args.node,
            container_id=container_id,
            vm_id=vm_id,
            rules=[
                *(_group_reference(group.name, iface) for group, iface in args.security_groups),
                *_firewall_rules(args.rules),
            ],
            opts=child,
        )


def pool(parent: pulumi.Resource, pool_id: str, comment: str) -> proxmox.PoolLegacy:
    """The layer's pool, so the Proxmox UI groups a layer's guests together."""
    return proxmox.PoolLegacy(
        pool_id, pool_id=pool_id, comment=comment, opts=pulumi.ResourceOptions(parent=parent)
    )
