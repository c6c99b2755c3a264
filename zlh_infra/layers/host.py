"""What one Proxmox node needs before any layer's guests: its firewall and images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pulumi
import pulumi_proxmoxve as proxmox

from zlh_infra.config import Download
from zlh_infra.platform.fleet_firewall import API_IPSET
from zlh_infra.platform.host_firewall import (
    ADMIN_IPSET,
    LOCAL_NETWORK,
    LOCAL_NETWORK_ALIAS,
    host_rules,
)


@dataclass(frozen=True, slots=True)
class HostArgs:
    node: str
    image_store: str
    os_template: Download
    router_iso: Download
    #: Who may reach the node's API and SSH (``proxmox.adminSources``).
    admin_sources: Sequence[IPv4Network]
    #: zlh-monitor's management address: it scrapes the node's own exporter.
    monitor_address: pulumi.Input[str]
    #: A runtime node's fleet IP sets (``fleet_firewall.fleet_ipsets``), which its own rules
    #: (zpack-api on the API) and the fleet's security groups name; none on the core node.
    fleet_sets: Mapping[str, Sequence[IPv4Network | IPv6Network]] = field(default_factory=dict)
    #: The management network's bridge, the only way zpack-api reaches a runtime node.
    management_bridge: str = ""


class Host(pulumi.ComponentResource):
    """The node's datacenter firewall and the images its guests are built from."""

    os_template_file_id: pulumi.Output[str]
    router_iso_file_id: pulumi.Output[str]
    firewall: proxmox.cluster.FirewallLegacy
    #: The fleet IP sets (runtime nodes), which the fleet's security groups depend on.
    fleet_sets: list[proxmox.firewall.IpsetLegacy]

    def __init__(
        self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:host:Host", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # The node's own inbound traffic: DROP but for the operators (Proxmox's
        # ``management`` IP set, which its built-in rules allow too) and the monitor's
        # scrape. Guests, tenants included, never reach the node's API or SSH. The set and
        # rules exist before the switch to DROP, so a `pulumi up` does not lock itself out.
        admins = proxmox.firewall.IpsetLegacy(
            f"{name}-admin-sources",
            name=ADMIN_IPSET,
            comment="operators and the deploy runner: the node's API and SSH",
            cidrs=[
                proxmox.firewall.IpsetLegacyCidrArgs(name=str(source))
                for source in args.admin_sources
            ],
            opts=child,
        )
        local_network = proxmox.firewall.AliasLegacy(
            f"{name}-local-network",
            name=LOCAL_NETWORK_ALIAS,
            cidr=str(LOCAL_NETWORK),
            comment="standalone node: no cluster network for the built-in rules to admit",
            opts=child,
        )
        self.fleet_sets = [
            proxmox.firewall.IpsetLegacy(
                f"{set_name}-ipset",
                name=set_name,
                comment="named by the fleet's security groups and the node's rules",
                cidrs=[proxmox.firewall.IpsetLegacyCidrArgs(name=str(n)) for n in networks],
                opts=child,
            )
            for set_name, networks in args.fleet_sets.items()
        ]
        api_ipset = API_IPSET if API_IPSET in args.fleet_sets else None
        node_firewall = proxmox.node.FirewallLegacy(
            f"{name}-node-firewall", node_name=args.node, enabled=True, opts=child
        )
        rules = proxmox.firewall.RulesLegacy(
            f"{name}-host-rules",
            node_name=args.node,
            rules=pulumi.Output.from_input(args.monitor_address).apply(
                lambda monitor: [
                    proxmox.firewall.RulesLegacyRuleArgs(
                        type="in",
                        action="ACCEPT",
                        proto=rule.proto,
                        dport=str(rule.dport),
                        source=rule.source,
                        iface=rule.iface or None,
                        comment=rule.comment,
                    )
                    for rule in host_rules(
                        IPv4Address(monitor),
                        api_ipset=api_ipset,
                        management_bridge=args.management_bridge,
                    )
                ]
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[admins, node_firewall, *self.fleet_sets]
            ),
        )
        # Guest rules apply only while the datacenter firewall is on; its input policy is
        # the nodes' own.
        self.firewall = proxmox.cluster.FirewallLegacy(
            f"{name}-datacenter-firewall",
            enabled=True,
            input_policy="DROP",
            output_policy="ACCEPT",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[admins, local_network, rules]),
        )
        os_template = _download(f"{name}-os-template", args, args.os_template, "vztmpl", child)
        router_iso = _download(f"{name}-router-iso", args, args.router_iso, "iso", child)

        self.os_template_file_id = os_template.id
        self.router_iso_file_id = router_iso.id
        self.register_outputs(
            {
                "osTemplateFileId": self.os_template_file_id,
                "routerIsoFileId": self.router_iso_file_id,
            }
        )


def _download(
    name: str, args: HostArgs, image: Download, content_type: str, opts: pulumi.ResourceOptions
) -> proxmox.download.File:
    return proxmox.download.File(
        name,
        node_name=args.node,
        datastore_id=args.image_store,
        content_type=content_type,
        url=image.url,
        file_name=image.file_name,
        checksum=image.checksum,
        checksum_algorithm=image.checksum_algorithm if image.checksum else None,
        decompression_algorithm=image.decompression_algorithm,
        overwrite=False,
        verify=True,
        opts=opts,
    )
