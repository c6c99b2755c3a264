"""The fleet's rules, as Proxmox security groups per runtime host, with their IP sets.

Every game and dev container, declared or made by zpack-api, attaches the host's two
fleet groups, each on one NIC (Proxmox refuses an interface on a rule inside a group; the
reference to the group carries it), and adds only its workload's ports:

- ``zlh-fleet-mgmt`` on ``net1``: the agent path (zpack-api, by the IP set ``zlh-api``),
  the monitor's scrape (``zlh-monitor``), and no connection out: a tenant answers there,
  it never calls;
- ``zlh-fleet-lan`` on ``net0``: the router's resolver and zlh-artifacts' store, then
  nothing private (``zlh-private``: the LANs, the management network, the nodes); the
  internet through the router stays open.

Proxmox accepts packets of established connections before a guest's rules, so answers
pass both ways.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network

from zlh_infra.platform.catalogue import ARTIFACTS_PORT, FLEET_MANAGEMENT_INGRESS
from zlh_infra.platform.firewall import FirewallRule

MANAGEMENT_GROUP = "zlh-fleet-mgmt"
LAN_GROUP = "zlh-fleet-lan"
API_IPSET = "zlh-api"
MONITOR_IPSET = "zlh-monitor"
PRIVATE_IPSET = "zlh-private"
#: The catalogue's fleet sources, as the host's IP sets that hold their addresses.
SOURCE_IPSETS = {"core:zpack-api": API_IPSET, "core:zlh-monitor": MONITOR_IPSET}
#: The fleet's NICs, in the order every fleet container (and every one zpack-api makes) has.
LAN_IFACE = "net0"
MANAGEMENT_IFACE = "net1"
#: Each group and the NIC its reference names, in the order a container's rules start with.
FLEET_GROUPS: tuple[tuple[str, str], ...] = ((MANAGEMENT_GROUP, MANAGEMENT_IFACE),
                                             (LAN_GROUP, LAN_IFACE))  # fmt: skip
#: Every address a tenant may not open a connection to: RFC 1918, shared (CGNAT) and
#: link-local space, and IPv6's unique-local and link-local ones (a container has a
#: link-local address on every NIC). The platform's LANs, management network and nodes
#: are all in it.
PRIVATE_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = tuple(
    ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
              "169.254.0.0/16", "fc00::/7", "fe80::/10")
)  # fmt: skip


def fleet_ipsets(
    api: IPv4Address, monitor: IPv4Address
) -> dict[str, list[IPv4Network | IPv6Network]]:
    """The host's IP sets the group names, by name."""
    return {
        API_IPSET: [IPv4Network(f"{api}/32")],
        MONITOR_IPSET: [IPv4Network(f"{monitor}/32")],
        PRIVATE_IPSET: list(PRIVATE_NETWORKS),
    }


def fleet_group_rules(
    *, router: IPv4Address, artifact_store: IPv4Address
) -> dict[str, list[FirewallRule]]:
    """Each group's rules, in order (first match wins); none names an interface."""
    resolver = f"{router}/32"
    management = [
        FirewallRule(
            "ACCEPT", entry.proto, entry.port, "", f"+{SOURCE_IPSETS[entry.source]}", entry.comment
        )
        for entry in FLEET_MANAGEMENT_INGRESS
    ]
    management.append(
        FirewallRule(
            "DROP",
            None,
            None,
            "",
            None,
            "no connection out on the management network",
            direction="out",
        )
    )
    lan = [
        FirewallRule(
            "ACCEPT", "udp", 53, "", None, "DNS from the router", direction="out", dest=resolver
        ),
        FirewallRule(
            "ACCEPT", "tcp", 53, "", None, "DNS from the router", direction="out", dest=resolver
        ),
        FirewallRule(
            "ACCEPT",
            "tcp",
            ARTIFACTS_PORT,
            "",
            None,
            "software from zlh-artifacts",
            direction="out",
            dest=f"{artifact_store}/32",
        ),
        FirewallRule(
            "DROP",
            None,
            None,
            "",
            None,
            "nothing private: the LAN, the hosts, the other networks",
            direction="out",
            dest=f"+{PRIVATE_IPSET}",
        ),
    ]
    return {MANAGEMENT_GROUP: management, LAN_GROUP: lan}  # fmt: skip
