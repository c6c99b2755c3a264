"""Address plans: where fleet containers sit on the runtime LAN and management network."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

#: Game and dev containers take consecutive host numbers from here, in VMID order,
#: leaving the low host numbers to routers, services and the hosts themselves.
DEFAULT_FLEET_OFFSET = 256


class AddressPlanError(ValueError):
    pass


def block_address(network: IPv4Network, offset: int, index: int, what: str) -> IPv4Address:
    """Host number ``offset + index`` of ``network``: a place in a runtime host's block."""
    host_number = offset + index
    if host_number < 1 or host_number >= network.num_addresses - 1:
        raise AddressPlanError(
            f"{what} maps to host number {host_number}, outside {network} "
            f"(usable 1-{network.num_addresses - 2}); use a larger network or a smaller offset"
        )
    return network.network_address + host_number


def fleet_address(network: IPv4Network, offset: int, first_vmid: int, vmid: int) -> IPv4Address:
    """The address of fleet container ``vmid``: host number ``offset + vmid - first_vmid``.

    Deriving it from the VMID keeps a container's address stable for its whole life,
    whatever else is added to or removed from the fleet.
    """
    return block_address(network, offset, vmid - first_vmid, f"VMID {vmid}")


def usable(network: IPv4Network, address: IPv4Address) -> str | None:
    """Why ``address`` cannot be a host address on ``network``, or None when it can."""
    if address not in network:
        return f"{address} is outside {network}"
    if network.prefixlen < 31 and address in (network.network_address, network.broadcast_address):
        return f"{address} is the network or broadcast address of {network}"
    return None


def with_prefix(address: IPv4Address, network: IPv4Network) -> str:
    """``10.20.1.5/22`` as Proxmox wants a static address."""
    return f"{address}/{network.prefixlen}"
