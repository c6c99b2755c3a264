"""Tenant egress: game and dev containers call out to the internet, never into the platform.

A tenant is root in its container. Every game and dev container (by role tag or by VMID
range: either makes it one) must attach the host's fleet security groups first, must open
no connection at all on its management NIC (it answers zpack-api and the monitor there),
and on its other NICs may reach private address space only at its resolvers (its gateway
and DNS servers, TCP/UDP 53) and at zlh-artifacts' store. Destinations are computed with
the evaluator over the ordered outbound rules, the security groups and the IP sets
(``zlh_infra/platform/egress.py``); a value the reader does not understand is a violation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface

from zlh_infra.platform.egress import egress
from zlh_infra.platform.firewall_state import GuestView, read_firewall
from zlh_infra.platform.fleet_firewall import FLEET_GROUPS, PRIVATE_NETWORKS
from zlh_infra.platform.reachability import (
    TCP,
    UDP,
    AddressSet,
    FirewallReadError,
    HostFirewall,
)
from zlh_infra.platform.topology import StackRole
from zlh_infra.platform.vmids import VmidRole
from zlh_infra.policies.config import EgressConfig
from zlh_infra.policies.placement import role_of_stack
from zlh_infra.policies.resources import (
    Findings,
    Resource,
    ipv4_configs,
    is_fleet_guest,
    is_guest,
    label,
    nics_of,
    routes_and_resolvers,
    service_tags,
    vmid_of,
)
from zlh_infra.services import artifacts

_FLEET_ROLES = frozenset({VmidRole.GAME.value, VmidRole.DEV.value})
_PRIVATE = AddressSet.of(*PRIVATE_NETWORKS)


def _lan_address(resource: Resource) -> IPv4Address | None:
    """The address of its first NIC (the LAN's, in the catalogue's NIC order)."""
    for ipv4 in ipv4_configs(resource)[:1]:
        with contextlib.suppress(ValueError):
            return IPv4Interface(str(ipv4.get("address"))).ip
    return None


def _resolvers(resource: Resource) -> AddressSet:
    """Its gateways and DNS servers: where it may ask for names (an unreadable one: none)."""
    found = AddressSet()
    for _where, value in routes_and_resolvers(resource):
        with contextlib.suppress(ValueError):
            found |= AddressSet.of(f"{IPv4Address(str(value))}/32")
    return found


def check_tenant_egress(
    resources: Sequence[Resource], config: EgressConfig, stack: str
) -> Findings:
    findings = Findings()
    if role_of_stack(stack) is not StackRole.RUNTIME:
        return findings
    with findings.reading():
        try:
            host, views = read_firewall((r.type, r.name, r.props) for r in resources)
        except FirewallReadError as error:
            findings.add(
                f"the host's firewall objects cannot be read: {error}",
                "correct the value it names, so where the fleet may connect can be told",
            )
            return findings
        store = next(
            (
                address
                for r in resources
                if is_guest(r) and "zlh-artifacts" in service_tags(r)
                if (address := _lan_address(r)) is not None
            ),
            None,
        )
        for resource in resources:
            if not is_fleet_guest(resource, _FLEET_ROLES):
                continue
            vmid = vmid_of(resource)
            view = views.get(vmid) if vmid is not None else None
            if view is None:
                findings.add(
                    f"{label(resource)} has no firewall to read",
                    "give it a VMID in its role's range, so its firewall can be read",
                    resource.urn,
                )
                continue
            _check_tenant(findings, resource, view, host, config, store)
    return findings


def _check_tenant(
    findings: Findings,
    resource: Resource,
    view: GuestView,
    host: HostFirewall,
    config: EgressConfig,
    store: IPv4Address | None,
) -> None:
    what = label(resource)
    attached = [(r.action, r.iface) for r in view.rules[: len(FLEET_GROUPS)] if r.enabled]
    if attached != [(group, iface) for group, iface in FLEET_GROUPS]:
        wanted = " and ".join(f"{group} on {iface}" for group, iface in FLEET_GROUPS)
        findings.add(
            f"its rules do not start with the fleet's security groups ({wanted}), which every "
            "game and dev container attaches first",
            "reference them as its first rules",
            resource.urn,
            subject=what,
            joint=": ",
        )
    options = view.options or {}
    policy = options.get("outputPolicy", "ACCEPT")
    if not isinstance(policy, str) or policy.strip().upper() not in ("ACCEPT", "DROP", "REJECT"):
        findings.add(
            f"output policy {policy!r} is not ACCEPT, DROP or REJECT, so where it may connect "
            "cannot be told",
            "set outputPolicy to ACCEPT, DROP or REJECT",
            resource.urn,
            subject=what,
        )
        return
    resolvers = _resolvers(resource)
    allowed = {
        (TCP, 53): resolvers,
        (UDP, 53): resolvers,
        (TCP, artifacts.PORT): AddressSet.of(f"{store}/32") if store else AddressSet(),
    }
    try:
        firewall = view.firewall()
        for nic in nics_of(resource):
            reached = egress(
                host, firewall, iface=nic.iface, output_policy=policy,
                guest_aliases=view.aliases, guest_ipsets=view.ipsets,
            )  # fmt: skip
            on_management = nic.bridge == config.management_bridge
            for item in reached:
                where = _ports(item.proto, item.first_port, item.last_port)
                if on_management:
                    findings.add(
                        f"{nic.iface} on the management bridge may open {where} connections "
                        f"to {item.sources}; a tenant answers zpack-api and the monitor there "
                        "and calls out to nothing",
                        "drop all outbound on it",
                        resource.urn,
                        subject=what,
                        joint=": ",
                    )
                    continue
                permitted = AddressSet()
                for (proto, port), addresses in allowed.items():
                    # Only a class of exactly that port: the rest of a wider class is not.
                    if item.proto == proto and item.first_port == port == item.last_port:
                        permitted |= addresses
                loose = (item.sources & _PRIVATE) - permitted
                if loose:
                    findings.add(
                        f"{nic.iface} may open {where} connections to {loose}, private "
                        "addresses of the platform (its LAN, the other networks, the nodes)",
                        "allow only the resolver and zlh-artifacts, then drop the private IP set",
                        resource.urn,
                        subject=what,
                    )
    except FirewallReadError as error:
        findings.add(
            str(error),
            "correct it, so where it may connect can be told",
            resource.urn,
            subject=what,
        )


def _ports(proto: str, first: int, last: int) -> str:
    if proto not in (TCP, UDP):
        return "non-TCP/UDP"
    return f"{proto.upper()} {first}" if first == last else f"{proto.upper()} {first}-{last}"
