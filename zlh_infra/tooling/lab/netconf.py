"""The lab's packet filters (pure): what may leave the lab, and nothing else.

The lab namespace reaches the world only through one veth pair to the host. On the
host, the lab's own table lets out TCP 80/443 to public addresses and DNS to the
host's resolver, and drops everything else, first of all anything addressed to the
platform's networks: traffic to the platform's addresses never leaves the machine.
The lab namespace drops the same before it even reaches the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network

from zlh_infra.tooling.lab.paths import (
    HOST_NFT_TABLE,
    HOST_VETH,
    LAB_VETH,
    NETNS_NFT_TABLE,
    UPLINK,
    WAN,
)

#: The platform's networks (core LAN, runtime LANs, management), dropped by name first.
PLATFORM_NETWORKS = (
    IPv4Network("10.10.0.0/16"),
    IPv4Network("10.20.0.0/16"),
    IPv4Network("10.99.0.0/16"),
)
#: Never a destination for lab traffic leaving the machine (the host's resolver excepted).
NON_PUBLIC_NETWORKS = (
    IPv4Network("0.0.0.0/8"),
    IPv4Network("10.0.0.0/8"),
    IPv4Network("100.64.0.0/10"),
    IPv4Network("127.0.0.0/8"),
    IPv4Network("169.254.0.0/16"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
    IPv4Network("224.0.0.0/4"),
    IPv4Network("240.0.0.0/4"),
)
ALLOWED_TCP_PORTS = (80, 443)


class FilterError(ValueError):
    pass


def _elements(networks: Sequence[IPv4Network]) -> str:
    return ", ".join(str(network) for network in networks)


def check_resolver(resolver: IPv4Address) -> None:
    """The host's resolver must not sit in a platform network (it would be unreachable)."""
    for network in PLATFORM_NETWORKS:
        if resolver in network:
            raise FilterError(
                f"the host's resolver {resolver} is inside the platform network {network}; "
                "the lab drops all traffic to it"
            )


def _address_sets() -> str:
    """The two address sets both tables filter with."""
    return f"""\
  set platform {{
    type ipv4_addr; flags interval;
    elements = {{ {_elements(PLATFORM_NETWORKS)} }}
  }}
  set non_public {{
    type ipv4_addr; flags interval;
    elements = {{ {_elements(NON_PUBLIC_NETWORKS)} }}
  }}
"""


def host_ruleset(resolver: IPv4Address) -> str:
    """The host's ``table ip zlh_lab``: the lab's egress filter and its NAT."""
    check_resolver(resolver)
    ports = ", ".join(str(port) for port in ALLOWED_TCP_PORTS)
    lab = f'iifname "{HOST_VETH}"'
    return f"""\
table ip {HOST_NFT_TABLE} {{
{_address_sets()}  chain forward {{
    type filter hook forward priority -10; policy accept;
    {lab} ip daddr @platform counter drop comment "platform addresses never leave"
    {lab} ip daddr {resolver} udp dport 53 accept
    {lab} ip daddr {resolver} tcp dport 53 accept
    {lab} ip daddr @non_public counter drop
    {lab} tcp dport {{ {ports} }} accept
    {lab} counter drop
    oifname "{HOST_VETH}" ct state established,related accept
    oifname "{HOST_VETH}" counter drop
  }}
  chain input {{
    type filter hook input priority -10; policy accept;
    {lab} ct state established,related accept
    {lab} counter drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr {UPLINK} oifname != "{HOST_VETH}" masquerade
  }}
}}
"""


def netns_ruleset(resolver: IPv4Address) -> str:
    """The lab namespace's ``table inet zlh_lab``: the same filter, and NAT of the lab WAN."""
    check_resolver(resolver)
    ports = ", ".join(str(port) for port in ALLOWED_TCP_PORTS)
    out = f'oifname "{LAB_VETH}"'
    return f"""\
table inet {NETNS_NFT_TABLE} {{
{_address_sets()}  chain forward {{
    type filter hook forward priority 0; policy accept;
    {out} meta nfproto ipv6 drop
    {out} ip daddr @platform counter drop
    {out} ip daddr {resolver} udp dport 53 accept
    {out} ip daddr {resolver} tcp dport 53 accept
    {out} ip daddr @non_public counter drop
    {out} tcp dport {{ {ports} }} accept
    {out} counter drop
  }}
  chain output {{
    type filter hook output priority 0; policy accept;
    {out} ip daddr @platform counter drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr {WAN} {out} masquerade
  }}
}}
"""


def resolver_from(resolv_conf: str) -> IPv4Address | None:
    """The first IPv4 nameserver of a resolv.conf that is not a loopback stub."""
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = IPv4Address(fields[1])
            except ValueError:
                continue
            if not address.is_loopback:
                return address
    return None
