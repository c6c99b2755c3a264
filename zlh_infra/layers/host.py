"""What one Proxmox node needs before any layer's guests: firewall switch and images."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmox

from zlh_infra.config import Download


@dataclass(frozen=True, slots=True)
class HostArgs:
    node: str
    image_store: str
    os_template: Download
    router_iso: Download


class Host(pulumi.ComponentResource):
    """The node's datacenter firewall and the images its guests are built from."""

    os_template_file_id: pulumi.Output[str]
    router_iso_file_id: pulumi.Output[str]
    firewall: proxmox.cluster.FirewallLegacy

    def __init__(
        self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:host:Host", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Guest rules apply only while the datacenter firewall is on. The host's own
        # input policy stays ACCEPT: who may reach the node's API and SSH is the
        # operator's decision, and a DROP here would lock out a remote `pulumi up`.
        self.firewall = proxmox.cluster.FirewallLegacy(
            f"{name}-datacenter-firewall",
            enabled=True,
            input_policy="ACCEPT",
            output_policy="ACCEPT",
            opts=child,
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
