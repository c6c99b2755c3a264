"""What a Proxmox node itself accepts: its API and SSH from the operators, its exporter.

Proxmox applies the datacenter's input policy to the node's own traffic and, with the
firewall on, adds built-in rules after the node's own: members of the ``management``
IP set and of the ``local_network`` alias (the network Proxmox detects the node on, unless
the datacenter defines the alias) reach the API (8006), SSH (22), SPICE (3128), VNC
(5900-5999) and migration (60000-60050) (pve-firewall(8), "Standard IP Set management"
and "Standard IP Alias local_network"). The program names the set from
``proxmox.adminSources``, pins ``local_network`` to the loopback address (a standalone
node has no cluster network to admit), and writes the same accepts as rules of its own,
so that the pack, the audit and the lab read them like any other rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network

from zlh_infra.platform.catalogue import METRICS_PORT
from zlh_infra.platform.firewall import FirewallRule
from zlh_infra.platform.reachability import (
    AddressSet,
    GuestFirewall,
    HostFirewall,
    Rule,
    reachable_from,
    read_rule,
)

#: Proxmox's own names: its built-in management rules admit these.
ADMIN_IPSET = "management"
LOCAL_NETWORK_ALIAS = "local_network"
#: What the program pins ``local_network`` to: the node itself, no network.
LOCAL_NETWORK = IPv4Network("127.0.0.1/32")
API_PORT = 8006
SSH_PORT = 22
#: The ports Proxmox's built-in management rules open (API, SSH, SPICE, VNC, migration).
MANAGEMENT_PORTS: tuple[tuple[int, int], ...] = (
    (API_PORT, API_PORT),
    (SSH_PORT, SSH_PORT),
    (3128, 3128),
    (5900, 5999),
    (60000, 60050),
)
#: The evaluator's name for "any interface of the node".
_ANY_IFACE = "node"


def host_rules(
    monitor: IPv4Address, *, api_ipset: str | None = None, management_bridge: str = ""
) -> list[FirewallRule]:
    """The node's inbound ACCEPTs, in order; the datacenter's DROP decides the rest.

    ``api_ipset``: on a runtime node, the IP set holding zpack-api's address, which makes
    the fleet's containers through the node's API, over ``management_bridge`` only.
    """
    admins = f"+{ADMIN_IPSET}"
    rules = [
        FirewallRule("ACCEPT", "tcp", API_PORT, "", admins, "Proxmox API from the operators"),
        FirewallRule("ACCEPT", "tcp", SSH_PORT, "", admins, "SSH from the operators"),
        FirewallRule(
            "ACCEPT", "tcp", METRICS_PORT, "", f"{monitor}/32", "node exporter from zlh-monitor"
        ),
    ]
    if api_ipset is not None:
        rules.insert(
            1,
            FirewallRule(
                "ACCEPT",
                "tcp",
                API_PORT,
                management_bridge,
                f"+{api_ipset}",
                "Proxmox API for zpack-api",
            ),
        )
    return rules


def node_reachable_from(
    host: HostFirewall,
    *,
    node_enabled: bool,
    input_policy: str,
    rules: Sequence[Rule],
    proto: str,
    port: int,
) -> AddressSet:
    """Every source address from which ``proto`` ``port`` on the node itself is reachable.

    A rule bound to one of the node's interfaces (``iface``) is read as applying to all
    of them when it accepts, and is not relied on when it drops: the evaluator does not
    know which interface a sender arrives on.
    """
    builtin = [
        Rule(action="ACCEPT", proto="tcp", dport=f"{low}:{high}", source=source)
        for source in (f"+{ADMIN_IPSET}", LOCAL_NETWORK_ALIAS)
        for low, high in MANAGEMENT_PORTS
        if source != LOCAL_NETWORK_ALIAS or LOCAL_NETWORK_ALIAS in host.aliases
    ]
    if LOCAL_NETWORK_ALIAS not in host.aliases:
        # Proxmox detects the node's network; unknown here, so it may be any network.
        builtin.append(Rule(action="ACCEPT", proto="tcp", dport="22"))
        builtin += [
            Rule(action="ACCEPT", proto="tcp", dport=f"{low}:{high}")
            for low, high in MANAGEMENT_PORTS
        ]
    if f"{ADMIN_IPSET}" not in host.ipsets:
        builtin = [r for r in builtin if r.source != f"+{ADMIN_IPSET}"]
    own = []
    for rule in rules:
        if rule.iface:
            if read_rule(rule).action != "ACCEPT":
                continue
            rule = dataclasses.replace(rule, iface=None)
        own.append(rule)
    # pve-firewall's host chain: the node's own rules, then the built-in management ones.
    node = GuestFirewall(
        enabled=node_enabled,
        input_policy=input_policy,
        nic_firewall={_ANY_IFACE: True},
        rules=[*own, *builtin],
    )
    return reachable_from(host, node, iface=_ANY_IFACE, proto=proto, port=port)
