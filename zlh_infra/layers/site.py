"""What every layer on one host shares, and the one way a catalogue service becomes a guest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import pulumi

from zlh_infra.config import Segment, ServiceGuest
from zlh_infra.layers.guest import GuestArgs, LxcGuest, Nic, VmArgs, VmGuest
from zlh_infra.layers.guest_steps import NodeShell
from zlh_infra.platform.addressing import with_prefix
from zlh_infra.platform.catalogue import GuestKind, Ingress, Network, ServiceSpec
from zlh_infra.platform.firewall import FirewallRule, resolve_ingress
from zlh_infra.platform.topology import guest_tags
from zlh_infra.services.plan import Gateway


@dataclass(frozen=True, slots=True)
class Site:
    """One Proxmox node as the layers on it see it."""

    stack: str
    node: str
    datastore: str
    wan_bridge: str
    lan: Segment
    management: Segment
    dns_domain: str
    #: The resolver guests on this host use (a guest on this host: isolation).
    dns_servers: Sequence[str]
    os_template_file_id: pulumi.Input[str]
    router_iso_file_id: pulumi.Input[str]
    shell: NodeShell
    #: The LAN's router (its address is ``lan.gateway``), named when it does not answer.
    router: str
    #: False in the ``routers`` bootstrap stage: guests are created, nothing runs in them.
    converge: bool
    #: (service, network) -> address, for every service a rule may name; core
    #: services appear as ``core:<name>`` on runtime hosts.
    addresses: Mapping[tuple[str, Network], IPv4Address]

    @property
    def gateway(self) -> Gateway:
        return Gateway(address=str(self.lan.gateway), router=self.router)

    def segment(self, network: Network) -> Segment:
        if network is Network.WAN:
            return Segment(bridge=self.wan_bridge, cidr=IPv4Network("0.0.0.0/0"))
        return self.lan if network is Network.LAN else self.management

    def networks(self) -> dict[Network, IPv4Network]:
        return {Network.LAN: self.lan.cidr, Network.MANAGEMENT: self.management.cidr}

    def rules(self, nics: Sequence[Network], ingress: Sequence[Ingress]) -> list[FirewallRule]:
        return resolve_ingress(
            ingress, nics=nics, networks=self.networks(), addresses=self.addresses
        )

    def nic(self, network: Network, address: IPv4Address | None) -> Nic:
        segment = self.segment(network)
        if address is None:
            return Nic(bridge=segment.bridge)
        gateway = str(segment.gateway) if network is Network.LAN and segment.gateway else None
        return Nic(
            bridge=segment.bridge, address=with_prefix(address, segment.cidr), gateway=gateway
        )


def service_guest(
    parent: pulumi.ComponentResource,
    site: Site,
    spec: ServiceSpec,
    guest: ServiceGuest,
    *,
    pool_id: pulumi.Input[str],
    depends_on: Sequence[pulumi.Resource] = (),
) -> LxcGuest | VmGuest:
    """Create the guest for catalogue service ``spec`` as configured by ``guest``."""
    nics = [
        site.nic(
            network, None if spec.kind is GuestKind.VM else site.addresses.get((spec.name, network))
        )
        for network in spec.networks
    ]
    args = GuestArgs(
        node=site.node,
        vmid=guest.vmid,
        hostname=spec.name,
        description=f"{spec.description} (ZeroLagHub {spec.layer}, managed by Pulumi)",
        tags=guest_tags(layer=spec.layer, role=spec.role, stack=site.stack, service=spec.name),
        pool_id=pool_id,
        nics=nics,
        cores=guest.cores,
        memory_mb=guest.memory_mb,
        disk_gb=guest.disk_gb,
        data_disk_gb=guest.data_disk_gb,
        datastore=site.datastore,
        startup_order=spec.startup_order,
        input_policy=spec.input_policy,
        rules=site.rules(spec.networks, spec.firewall_ingress),
        stateful=spec.stateful,
        dns_servers=list(site.dns_servers),
        dns_domain=site.dns_domain,
        os_template_file_id=site.os_template_file_id,
        depends_on=list(depends_on),
    )
    opts = pulumi.ResourceOptions(parent=parent)
    if spec.kind is GuestKind.VM:
        return VmGuest(spec.name, VmArgs(guest=args, iso_file_id=site.router_iso_file_id), opts)
    return LxcGuest(spec.name, args, opts)
