"""Failure isolation and data that survives: checks a careful operator would insist on.

Stateful guests (databases, backups, monitoring, artifacts, every customer's game and
dev container) must be hard to delete by accident and must be backed up. A runtime
host must keep its games running while the core host is down, so nothing a runtime
guest needs to boot or run may live on the core host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any

from zlh_infra.platform import type_tokens
from zlh_infra.platform.topology import StackRole
from zlh_infra.policies.config import SelfSufficientConfig, StatefulConfig
from zlh_infra.policies.placement import role_of_stack
from zlh_infra.policies.resources import (
    Findings,
    Resource,
    is_guest,
    label,
    role_tags,
    service_tags,
    short_stack,
    vmid_of,
    whole_number,
)

BACKUP_JOB = type_tokens.BACKUP_JOB
_ADDRESS = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def is_stateful(resource: Resource, config: StatefulConfig) -> bool:
    if not is_guest(resource):
        return False
    return bool(
        set(service_tags(resource)) & config.stateful_services
        or set(role_tags(resource)) & config.stateful_roles
    )


def _backed_up(jobs: Sequence[Resource]) -> tuple[set[int], set[str]]:
    """VMIDs named by enabled jobs, and nodes whose enabled jobs take every guest."""
    vmids: set[int] = set()
    whole_nodes: set[str] = set()
    for job in jobs:
        if job.props.get("enabled") is False:
            continue
        if job.props.get("all") is True:
            whole_nodes.add(str(job.props.get("node") or "*"))
        for value in job.props.get("vmids") or ():
            number = whole_number(value)
            if number is not None:
                vmids.add(number)
    return vmids, whole_nodes


def check_stateful_protected(
    resources: Sequence[Resource], config: StatefulConfig, stack: str
) -> Findings:
    """Every stateful guest: Pulumi protect, Proxmox protection, and a backup job."""
    findings = Findings()
    jobs = [r for r in resources if r.type == BACKUP_JOB]
    with findings.reading():
        backed_up, whole_nodes = _backed_up(jobs)
    for guest in resources:
        with findings.reading():
            if not is_stateful(guest, config):
                continue
            name = label(guest)
            if not guest.protect:
                findings.add(
                    f"{name} holds data but is not protected in Pulumi, so a config edit or "
                    "`pulumi destroy` could delete it: set the resource option protect=True.",
                    guest.urn,
                )
            if guest.props.get("protection") is not True:
                findings.add(
                    f"{name} holds data but Proxmox protection is off, so it can be removed "
                    "from the Proxmox UI or API: set protection=true on the guest.",
                    guest.urn,
                )
            if set(service_tags(guest)) & config.backup_exempt:
                continue
            node = guest.props.get("nodeName")
            if vmid_of(guest) not in backed_up and not ({"*", node} & whole_nodes):
                findings.add(
                    f"{name} holds data but no enabled backup job of stack "
                    f"{short_stack(stack)} includes it: add its VMID to the host's backup "
                    "job to Proxmox Backup Server.",
                    guest.urn,
                )
    return findings


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, Sequence):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _ip_configs(guest: Resource) -> Iterator[tuple[str, str]]:
    init = guest.props.get("initialization") or {}
    for index, config in enumerate(init.get("ipConfigs") or ()):
        gateway = (config.get("ipv4") or {}).get("gateway")
        if gateway:
            yield f"gateway of NIC {index}", str(gateway)
    for server in (init.get("dns") or {}).get("servers") or ():
        yield "DNS resolver", str(server)


def check_runtime_self_sufficient(
    resources: Sequence[Resource], config: SelfSufficientConfig, stack: str
) -> Findings:
    """A runtime stack's guests boot and run with the core host down."""
    findings = Findings()
    if role_of_stack(stack) is not StackRole.RUNTIME:
        return findings
    off_host = (*config.core_networks, config.management_network)
    for resource in resources:
        with findings.reading():
            reported: set[IPv4Address] = set()
            if is_guest(resource):
                for what, text in _ip_configs(resource):
                    address = _address(text)
                    if address is not None and any(address in net for net in off_host):
                        reported.add(address)
                        findings.add(
                            f"{label(resource)}: its {what} {address} is on the core side "
                            "(core LAN or management network), so the guest would lose its "
                            "network when the core host is down; use zlh-zpack-router's "
                            "LAN address.",
                            resource.urn,
                        )
            for path, text in _strings(resource.props, ""):
                for match in _ADDRESS.finditer(text):
                    address = _address(match.group(1))
                    if address in reported:
                        continue
                    if address is not None and any(address in net for net in config.core_networks):
                        findings.add(
                            f"{resource.name}: {path} names {address} on the core LAN; a "
                            "runtime host must not need the core host to run (serve it from "
                            "the runtime side, e.g. zlh-artifacts).",
                            resource.urn,
                        )
    return findings


def _address(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text.split("/", 1)[0])
    except ValueError:
        return None
