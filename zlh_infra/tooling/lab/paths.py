"""Where the lab keeps its state and caches, and the names it gives what it makes.

Everything the lab creates is named from here, so ``lab down`` removes exactly that.
``ZLH_LAB_STATE`` and ``ZLH_LAB_CACHE`` move the two directories (tests, a second lab).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

#: The network namespace holding every lab bridge, guest NIC and router uplink.
NETNS = "zlh-lab"
#: The veth pair joining the lab namespace to the host: the lab's only way out.
HOST_VETH = "zlhlab-host"
LAB_VETH = "zlhlab-up"
#: The host's nftables table (family ip) filtering and NATing the lab's traffic.
HOST_NFT_TABLE = "zlh_lab"
#: The lab namespace's own table (family inet).
NETNS_NFT_TABLE = "zlh_lab"
#: The recorded Proxmox firewall, in the lab namespace: one table of each family
#: (``bridge`` and ``inet``), both of this name.
FIREWALL_TABLE = "zlh_lab_fw"
#: A node stand-in's network namespace is ``zlh-lab-<node>``: the node's own address on
#: the management network, behind a port of the lab bridge (``zlhlab-n<i>``).
NODE_NETNS_PREFIX = "zlh-lab-"
NODE_PORT_PREFIX = "zlhlab-n"
#: Prefix of every LXC container the lab makes (``lab-<vmid>``).
CONTAINER_PREFIX = "lab-"
#: The bridge standing for the hosts' uplinks (``vmbr0``), shared by the router stand-ins.
WAN_BRIDGE = "l-wan"

#: The veth pair's link network: host side .1, lab side .2.
UPLINK = IPv4Network("100.72.0.0/30")
UPLINK_HOST = IPv4Interface("100.72.0.1/30")
UPLINK_LAB = IPv4Interface("100.72.0.2/30")
#: The lab's WAN: the lab namespace is its gateway and serves the stand-in releases.
WAN = IPv4Network("100.72.1.0/24")
WAN_GATEWAY = IPv4Interface("100.72.1.1/24")
#: Router stand-ins take WAN addresses from here on, in VMID order.
WAN_FIRST_ROUTER = 10
#: Everything the lab addresses itself; no host route may overlap it.
LAB_NETWORK = IPv4Network("100.72.0.0/16")
RELEASE_PORT = 8088

#: Proxmox's default ID map for unprivileged containers (``root:100000:65536``).
ID_MAP_FIRST = 100000
ID_MAP_SIZE = 65536

#: What a node's SSH session has on PATH; the lab puts its ``pct`` first.
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def container_name(vmid: int) -> str:
    return f"{CONTAINER_PREFIX}{vmid}"


def node_netns(node: str) -> str:
    """The network namespace standing for Proxmox node ``node``'s own IP stack."""
    return f"{NODE_NETNS_PREFIX}{node}"


def node_port(index: int) -> str:
    """The lab bridge port of the ``index``-th node stand-in."""
    return f"{NODE_PORT_PREFIX}{index}"


def release_base_url() -> str:
    return f"http://{WAN_GATEWAY.ip}:{RELEASE_PORT}"


def wan_address(index: int) -> IPv4Interface:
    """The WAN address of the ``index``-th router stand-in."""
    return IPv4Interface(f"{WAN.network_address + WAN_FIRST_ROUTER + index}/{WAN.prefixlen}")


WAN_GATEWAY_ADDRESS: IPv4Address = WAN_GATEWAY.ip


@dataclass(frozen=True, slots=True)
class LabDirs:
    """The lab's directories: state (removed by ``lab down``) and cache (kept)."""

    state: Path
    cache: Path
    lxc: Path = Path("/var/lib/lxc")

    @classmethod
    def from_env(cls) -> LabDirs:
        return cls(
            state=Path(os.environ.get("ZLH_LAB_STATE", "/var/lib/zlh-lab")),
            cache=Path(os.environ.get("ZLH_LAB_CACHE", "/var/cache/zlh-lab")),
        )

    @property
    def state_file(self) -> Path:
        return self.state / "state.json"

    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.json"

    @property
    def bin(self) -> Path:
        return self.state / "bin"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def guests(self) -> Path:
        return self.state / "guests"

    @property
    def layers(self) -> Path:
        """Immutable snapshots of a source container's changes, taken when it is cloned."""
        return self.state / "layers"

    @property
    def releases(self) -> Path:
        """The stand-in releases the lab serves on its WAN."""
        return self.state / "releases"

    @property
    def apt_archives(self) -> Path:
        return self.cache / "apt-archives"

    def guest(self, vmid: int) -> Path:
        return self.guests / str(vmid)

    def lxc_dir(self, vmid: int) -> Path:
        return self.lxc / container_name(vmid)
