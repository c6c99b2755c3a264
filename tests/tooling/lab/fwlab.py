"""A small recorded firewall for the lab's tests: two core guests, two game containers, nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from zlh_infra.platform import firewall_state as fs
from zlh_infra.platform.type_tokens import NODE_FIREWALL
from zlh_infra.tooling.lab.firewall import LabFirewall, build_firewall
from zlh_infra.tooling.lab.plan import Bridge, LabGuest, LabNic, LabPlan

Triple = tuple[str, str, dict[str, Any]]


def nic(name: str, bridge: str, proxmox: str, address: str) -> LabNic:
    return LabNic(name, bridge, proxmox, IPv4Interface(address))


GUESTS = {
    100: LabGuest(
        100,
        "zpack-api",
        "core",
        "zlh-core",
        "u100",
        (
            nic("eth0", "lc-vmbr1", "vmbr1", "10.10.0.10/24"),
            nic("eth1", "l-vmbr2", "vmbr2", "10.99.0.10/22"),
        ),
    ),
    2001: LabGuest(
        2001,
        "zlh-back",
        "core",
        "zlh-core",
        "u2001",
        (
            nic("eth0", "lc-vmbr1", "vmbr1", "10.10.0.21/24"),
            nic("eth1", "l-vmbr2", "vmbr2", "10.99.0.21/22"),
        ),
    ),
    1000: LabGuest(
        1000,
        "mc-survival",
        "runtime",
        "zlh-runtime",
        "u1000",
        (
            nic("eth0", "lr-vmbr1", "vmbr1", "10.20.1.0/22"),
            nic("eth1", "l-vmbr2", "vmbr2", "10.99.1.0/22"),
        ),
    ),
    1001: LabGuest(
        1001,
        "mc-creative",
        "runtime",
        "zlh-runtime",
        "u1001",
        (
            nic("eth0", "lr-vmbr1", "vmbr1", "10.20.1.1/22"),
            nic("eth1", "l-vmbr2", "vmbr2", "10.99.1.1/22"),
        ),
    ),
}
BRIDGES = {
    "l-vmbr2": Bridge("l-vmbr2", (("zlh-core", "vmbr2"), ("zlh-runtime", "vmbr2")), shared=True),
    "lc-vmbr1": Bridge("lc-vmbr1", (("zlh-core", "vmbr1"),)),
    "lr-vmbr1": Bridge("lr-vmbr1", (("zlh-runtime", "vmbr1"),)),
}
PLAN = LabPlan(
    stacks=["core", "runtime"], bridges=BRIDGES, guests=GUESTS, steps={}, order=[], depends_on={}
)
NODES = {"zlh-core": IPv4Address("10.99.0.2"), "zlh-runtime": IPv4Address("10.99.0.3")}


def container(guest: LabGuest) -> Triple:
    return (
        fs.CONTAINER,
        guest.hostname,
        {
            "vmId": guest.vmid,
            "nodeName": guest.node,
            "networkInterfaces": [
                {"name": n.name, "bridge": n.proxmox_bridge, "firewall": True} for n in guest.nics
            ],
            "initialization": {
                "ipConfigs": [{"ipv4": {"address": str(n.address)}} for n in guest.nics]
            },
        },
    )


def options(vmid: int, **changes: Any) -> Triple:
    props = {
        "containerId": vmid,
        "enabled": True,
        "inputPolicy": "DROP",
        "outputPolicy": "ACCEPT",
        "ipfilter": True,
        "macfilter": True,
        "dhcp": False,
        **changes,
    }
    return (fs.OPTIONS, f"{vmid}-firewall", props)


def rules(vmid: int, *entries: Mapping[str, Any]) -> Triple:
    return (fs.RULES, f"{vmid}-rules", {"containerId": vmid, "rules": [dict(e) for e in entries]})


def accept(
    dport: str, source: str | None = None, iface: str = "net1", **more: Any
) -> dict[str, Any]:
    rule = {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": dport, "iface": iface}
    if source is not None:
        rule["source"] = source
    return {**rule, **more}


def host(node: str, *, policy: str = "DROP", enabled: bool = True) -> list[Triple]:
    return [
        (
            fs.DATACENTER,
            "dc",
            {"enabled": enabled, "inputPolicy": policy, "outputPolicy": "ACCEPT"},
        ),
        (NODE_FIREWALL, f"{node}-fw", {"nodeName": node, "enabled": True}),
        (fs.IPSET, "admins", {"name": "management", "cidrs": [{"name": "192.0.2.0/24"}]}),
        (fs.ALIAS, "local", {"name": "local_network", "cidr": "127.0.0.1/32"}),
        (
            fs.RULES,
            "host-rules",
            {
                "nodeName": node,
                "rules": [
                    accept("22", "+management", iface=""),
                    accept("9100", "10.99.0.20/32", iface=""),
                ],
            },
        ),
    ]


def stacks(core: Sequence[Triple] = (), runtime: Sequence[Triple] = ()) -> dict[str, list[Triple]]:
    return {
        "core": [
            *host("zlh-core"),
            container(GUESTS[100]),
            options(100),
            container(GUESTS[2001]),
            options(2001),
            rules(2001, accept("8007", "10.99.0.2/32"), accept("8007", "10.99.0.3/32")),
            *core,
        ],
        "runtime": [
            *host("zlh-runtime"),
            (fs.ALIAS, "api", {"containerId": 1000, "name": "api", "cidr": "10.99.0.10/32"}),
            (
                fs.IPSET,
                "monitors",
                {
                    "containerId": 1000,
                    "name": "monitors",
                    "cidrs": [{"name": "10.99.0.0/24"}, {"name": "10.99.0.10", "nomatch": True}],
                },
            ),
            (
                fs.SECURITY_GROUP,
                "game",
                {
                    "name": "game",
                    "rules": [
                        {
                            "type": "in",
                            "action": "DROP",
                            "proto": "tcp",
                            "dport": "25565",
                            "source": "10.99.1.1",
                        },
                        {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": "25565"},
                    ],
                },
            ),
            container(GUESTS[1000]),
            options(1000),
            rules(
                1000,
                {
                    "type": "in",
                    "action": "DROP",
                    "proto": "tcp",
                    "dport": "18888",
                    "source": "10.99.1.1",
                },
                accept("18888", "api"),
                accept("9100", "+monitors"),
                {"securityGroup": "game", "iface": "net1"},
                {
                    "type": "out",
                    "action": "DROP",
                    "proto": "udp",
                    "dport": "53",
                    "dest": "10.99.0.21",
                },
                accept("2222", "10.99.0.10", enabled=False),
            ),
            container(GUESTS[1001]),
            options(1001),
            rules(1001, accept("18888", "10.99.0.10/32")),
            *runtime,
        ],
    }


def firewall(core: Sequence[Triple] = (), runtime: Sequence[Triple] = ()) -> LabFirewall:
    return build_firewall(PLAN, stacks(core, runtime), NODES)
