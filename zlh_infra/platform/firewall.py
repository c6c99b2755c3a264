"""Per-guest Proxmox firewall rules derived from the service catalogue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from zlh_infra.platform.catalogue import Ingress, Network, Peer


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """One Proxmox guest firewall rule (``[RULES]`` line) as the program writes it."""

    action: str
    #: None: every protocol.
    proto: str | None
    #: None: every port.
    dport: int | None
    #: ``net<i>``; empty: every interface.
    iface: str
    #: CIDR or ``+ipset``; None for any source.
    source: str | None
    comment: str
    direction: str = "in"
    #: CIDR or ``+ipset``; None for any destination.
    dest: str | None = None


def iface_of(nics: Sequence[Network], network: Network) -> str:
    """The Proxmox firewall interface (``net<i>``) of a guest's NIC on ``network``."""
    return f"net{list(nics).index(network)}"


def resolve_ingress(
    ingress: Sequence[Ingress],
    *,
    nics: Sequence[Network],
    networks: Mapping[Network, IPv4Network],
    addresses: Mapping[tuple[str, Network], IPv4Address],
) -> list[FirewallRule]:
    """Turn catalogue ingress entries into concrete ACCEPT rules.

    ``addresses`` maps (service, network) to that service's address; core services
    named ``core:<name>`` come from the core -> runtime contract, Proxmox nodes are
    ``node:<name>`` (``Peer.NODES`` is one rule per node on the entry's network).
    """
    rules = []
    for entry in ingress:
        if entry.network not in nics:
            raise ValueError(f"ingress on {entry.network} but the guest has no NIC there")
        sources: list[str | None]
        if entry.source == Peer.ANY:
            sources = [None]
        elif entry.source in (Peer.LAN, Peer.MANAGEMENT):
            sources = [str(networks[Network(entry.source)])]
        elif entry.source == Peer.NODES:
            sources = [
                f"{address}/32"
                for (name, network), address in sorted(addresses.items())
                if name.startswith("node:") and network is entry.network
            ]
        else:
            sources = [f"{addresses[(entry.source, entry.network)]}/32"]
        rules += [
            FirewallRule(
                action="ACCEPT",
                proto=entry.proto,
                dport=entry.port,
                iface=iface_of(nics, entry.network),
                source=source,
                comment=entry.comment,
            )
            for source in sources
        ]
    return rules
