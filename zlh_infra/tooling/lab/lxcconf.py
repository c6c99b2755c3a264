"""What the lab writes for a container (pure): its LXC config and the files Proxmox manages.

Proxmox writes a container's hostname, ``/etc/hosts``, ``/etc/network/interfaces`` and
``/etc/resolv.conf`` before every start, from the container's settings; the lab does
the same from the recorded settings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from zlh_infra.tooling.lab.paths import ID_MAP_FIRST, ID_MAP_SIZE, WAN_BRIDGE
from zlh_infra.tooling.lab.plan import LabGuest


@dataclass(frozen=True, slots=True)
class ContainerPaths:
    """Where a container's pieces live on the host."""

    #: The container's root: its overlay, mounted by the lab.
    rootfs: Path
    #: One host directory per recorded mount point, in the recording's order.
    mounts: tuple[Path, ...]
    apt_archives: Path
    console_log: Path
    #: The hook attaching a NIC's host side to its lab bridge.
    attach_hook: Path


def mac_address(vmid: int, nic: int) -> str:
    """A stable, locally administered MAC per (VMID, NIC), like Proxmox's ``BC:24:11`` ones."""
    digest = hashlib.sha256(f"{vmid}:{nic}".encode()).digest()
    return "02:" + ":".join(f"{byte:02x}" for byte in digest[:5])


def host_veth(vmid: int, nic: int) -> str:
    """The host side of a NIC's veth, named as Proxmox names it (``veth<vmid>i<n>``)."""
    return f"veth{vmid}i{nic}"


def lxc_config(guest: LabGuest, paths: ContainerPaths) -> str:
    """The container's ``/var/lib/lxc/<name>/config``."""
    lines = [
        f"# {guest.name}: {guest.hostname} (VMID {guest.vmid}, stack {guest.stack}, "
        f"node {guest.node}), made by the ZeroLagHub lab",
        "lxc.include = /usr/share/lxc/config/debian.common.conf",
        "lxc.include = /usr/share/lxc/config/debian.userns.conf",
        "lxc.arch = amd64",
        f"lxc.uts.name = {guest.hostname}",
        f"lxc.idmap = u 0 {ID_MAP_FIRST} {ID_MAP_SIZE}",
        f"lxc.idmap = g 0 {ID_MAP_FIRST} {ID_MAP_SIZE}",
        f"lxc.rootfs.path = dir:{paths.rootfs}",
        # features: nesting=1, as Proxmox sets it.
        "lxc.apparmor.profile = generated",
        "lxc.apparmor.allow_nesting = 1",
        "lxc.mount.entry = proc dev/.lxc/proc proc create=dir,optional 0 0",
        "lxc.tty.max = 2",
        f"lxc.console.logfile = {paths.console_log}",
        "lxc.start.auto = 0",
    ]
    if guest.is_stand_in:
        lines.append("lxc.sysctl.net.ipv4.ip_forward = 1")
    for index, nic in enumerate(guest.nics):
        lines += [
            f"lxc.net.{index}.type = veth",
            f"lxc.net.{index}.name = {nic.name}",
            f"lxc.net.{index}.hwaddr = {mac_address(guest.vmid, index)}",
            f"lxc.net.{index}.veth.pair = {host_veth(guest.vmid, index)}",
            f"lxc.net.{index}.flags = up",
            # Attached by name from inside the lab namespace: LXC's own bridge lookup
            # reads /sys, which shows the host's interfaces, not the namespace's.
            f"lxc.net.{index}.script.up = {paths.attach_hook} {nic.bridge}",
        ]
    for source, target in zip(paths.mounts, guest.mount_points, strict=True):
        lines.append(f"lxc.mount.entry = {source} {target.lstrip('/')} none bind,create=dir 0 0")
    lines.append(
        f"lxc.mount.entry = {paths.apt_archives} var/cache/apt/archives none bind,create=dir 0 0"
    )
    return "\n".join(lines) + "\n"


def interfaces_file(guest: LabGuest) -> str:
    """``/etc/network/interfaces`` as Proxmox writes it for static IPv4 NICs."""
    parts = ["auto lo\niface lo inet loopback\n"]
    for nic in guest.nics:
        if nic.address is None:
            parts.append(f"auto {nic.name}\niface {nic.name} inet manual\n")
            continue
        stanza = f"auto {nic.name}\niface {nic.name} inet static\n\taddress {nic.address}\n"
        if nic.gateway is not None:
            stanza += f"\tgateway {nic.gateway}\n"
        parts.append(stanza)
    return "\n".join(parts)


def resolv_conf(guest: LabGuest) -> str:
    lines = []
    if guest.dns_domain:
        lines.append(f"search {guest.dns_domain}")
    lines += [f"nameserver {server}" for server in guest.dns_servers]
    return "\n".join(lines) + "\n"


def hosts_file(guest: LabGuest) -> str:
    names = guest.hostname
    if guest.dns_domain:
        names = f"{guest.hostname}.{guest.dns_domain} {guest.hostname}"
    return (
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{names}\n"
        "\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
    )


def managed_files(guest: LabGuest) -> dict[str, str]:
    """Path in the guest -> content, rewritten before every start."""
    return {
        "/etc/hostname": f"{guest.hostname}\n",
        "/etc/hosts": hosts_file(guest),
        "/etc/network/interfaces": interfaces_file(guest),
        "/etc/resolv.conf": resolv_conf(guest),
    }


def attach_hook_script(ip_command: str = "ip") -> str:
    """The ``lxc.net.N.script.up`` hook: ``<hook> <bridge> <container> net up veth <dev>``."""
    return (
        "#!/bin/sh\n"
        "# Attaches a lab container's NIC (host side) to its lab bridge; run by lxc-start.\n"
        "set -eu\n"
        f'exec {ip_command} link set dev "$6" master "$1" up\n'
    )


def router_setup_script(guest: LabGuest, upstream_dns: str) -> str:
    """Turn a fresh container into a router stand-in: NAT to the WAN, dnsmasq forwarding."""
    wan = next((nic for nic in guest.nics if nic.bridge == WAN_BRIDGE), None)
    lans = [nic for nic in guest.nics if nic.bridge != WAN_BRIDGE and nic.address is not None]
    if wan is None or not lans:
        raise ValueError(f"{guest.name}: a router stand-in needs a WAN and a LAN NIC")
    lan_names = ", ".join(f'"{nic.name}"' for nic in lans)
    listen = "\n".join(f"listen-address={nic.address.ip}" for nic in lans if nic.address)
    return f"""\
set -eu
export DEBIAN_FRONTEND=noninteractive
if ! command -v dnsmasq >/dev/null; then
  apt-get install -y --no-install-recommends dnsmasq >/dev/null 2>&1 \\
    || {{ apt-get update -q >/dev/null && apt-get install -y --no-install-recommends dnsmasq; }}
fi
cat > /etc/dnsmasq.d/zlh-lab.conf <<'EOF'
# Router stand-in: forward every query to the lab host's resolver.
no-resolv
server={upstream_dns}
{listen}
bind-interfaces
cache-size=1000
EOF
cat > /etc/nftables.conf <<'EOF'
#!/usr/sbin/nft -f
flush ruleset
table inet zlh_router {{
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname {{ {lan_names} }} oifname "{wan.name}" accept
  }}
  chain postrouting {{
    type nat hook postrouting priority 100;
    oifname "{wan.name}" masquerade
  }}
}}
EOF
systemctl enable --now nftables.service >/dev/null 2>&1
systemctl restart nftables.service
systemctl enable dnsmasq.service >/dev/null 2>&1
systemctl restart dnsmasq.service
"""
