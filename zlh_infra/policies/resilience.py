"""Failure isolation and data that survives: checks a careful operator would insist on.

Stateful guests (databases, backups, monitoring, artifacts, every customer's game and
dev container) must be hard to delete by accident and must be backed up. A runtime
host must keep its games running while the core host is down, so nothing a runtime
guest needs to boot or run may live on the core host.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from zlh_infra.platform import type_tokens
from zlh_infra.platform.topology import StackRole
from zlh_infra.platform.vmids import DEFAULT_SCHEME
from zlh_infra.policies.config import SelfSufficientConfig, StatefulConfig
from zlh_infra.policies.placement import role_of_stack
from zlh_infra.policies.resources import (
    Findings,
    Resource,
    Violation,
    is_guest,
    label,
    node_of,
    role_tags,
    routes_and_resolvers,
    service_tags,
    short_stack,
    vmid_of,
    whole_number,
)

BACKUP_JOB = type_tokens.BACKUP_JOB
PBS_STORAGE = type_tokens.PBS_STORAGE
_ADDRESS = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def is_stateful(resource: Resource, config: StatefulConfig) -> bool:
    """By its service or role tag, or by its VMID's range: a tag renamed sheds nothing."""
    if not is_guest(resource):
        return False
    vmid = vmid_of(resource)
    by_range = DEFAULT_SCHEME.role_of(vmid) if vmid is not None else None
    return bool(
        set(service_tags(resource)) & config.stateful_services
        or set(role_tags(resource)) & config.stateful_roles
        or (by_range is not None and by_range in config.stateful_roles)
    )


@dataclass(frozen=True, slots=True)
class _Job:
    """What a backup job backs up, as far as the check could read it."""

    name: str
    #: Only the boolean true: Proxmox skips a disabled job, and a value the check
    #: cannot read must not pass for enabled.
    enabled: bool
    to_pbs: bool
    #: None: every node of the host.
    node: str | None
    #: False when a selection input could not be read: the job then selects no guest.
    readable: bool
    every_guest: bool
    vmids: frozenset[int]
    pools: frozenset[str]
    excluded: frozenset[int]


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _shown(value: object) -> str:
    """A wire value as a message quotes it (the SDK's proxies as plain lists and dicts)."""
    if isinstance(value, Mapping):
        return repr({key: value[key] for key in value})
    if isinstance(value, Sequence) and not isinstance(value, str):
        return repr(list(value))
    return repr(value)


def _unreadable(job: Resource, key: str, value: object, fix: str) -> Violation:
    problem = (
        f"{key} is {_shown(value)}, which the policy cannot read, so the job counts for no guest"
    )
    return Violation(problem, fix, job.urn, f"backup job {job.name}", ": ")


def _vmid_set(job: Resource, key: str, problems: list[Violation]) -> frozenset[int]:
    value = job.props.get(key)
    if value is None:
        return frozenset()
    numbers = [whole_number(item) for item in value] if _is_list(value) else [None]
    if None in numbers:
        problems.append(
            _unreadable(job, key, value, 'give it as a list of VMIDs, e.g. ["1000", "1001"]')
        )
        return frozenset()
    return frozenset(number for number in numbers if number is not None)


def _names(job: Resource, key: str, value: object, problems: list[Violation]) -> frozenset[str]:
    if value is None:
        return frozenset()
    items = [value] if isinstance(value, str) else value
    if isinstance(items, Sequence) and all(isinstance(item, str) and item for item in items):
        return frozenset(str(item) for item in items)
    problems.append(_unreadable(job, key, value, f"set {key} to the id of a pool"))
    return frozenset()


def _read_job(job: Resource, pbs_storages: frozenset[str], stack: str, findings: Findings) -> _Job:
    props = job.props
    problems: list[Violation] = []
    every_guest = props.get("all")
    if every_guest is not None and not isinstance(every_guest, bool):
        problems.append(_unreadable(job, "all", every_guest, "set all=true, or leave it unset"))
    node: str | None = None
    for key in ("node", "nodeName"):
        value = props.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value or (node is not None and value != node):
            problems.append(
                _unreadable(
                    job, key, value, "name the one node it runs on, or leave node unset for all"
                )
            )
        node = value if isinstance(value, str) else node
    vmids = _vmid_set(job, "vmids", problems)
    excluded = _vmid_set(job, "excludes", problems) | _vmid_set(job, "exclude", problems)
    pools = _names(job, "pool", props.get("pool"), problems) | _names(
        job, "pools", props.get("pools"), problems
    )
    readable = not problems
    storage = props.get("storage")
    to_pbs = isinstance(storage, str) and storage in pbs_storages
    if not to_pbs:
        problem = (
            f"backup job {job.name} writes to storage {_shown(storage)}, which is not a "
            f"Proxmox Backup Server storage of stack {short_stack(stack)}, so it counts for no "
            "guest"
        )
        fix = "point storage at the resource_id of a proxmoxve.storage.Pbs the stack declares"
        problems.append(Violation(problem, fix, job.urn, joint=": "))
    enabled = props.get("enabled")
    if not isinstance(enabled, bool):
        problem = (
            f"enabled is {_shown(enabled)}, not the boolean true, so the job counts for no guest"
        )
        problems.append(
            Violation(problem, "set enabled=true", job.urn, f"backup job {job.name}", ": ")
        )
    findings.violations += problems
    return _Job(
        name=job.name,
        enabled=enabled is True,
        to_pbs=to_pbs,
        node=node,
        readable=readable,
        every_guest=every_guest is True,
        vmids=vmids,
        pools=pools,
        excluded=excluded,
    )


def _why_not(job: _Job, guest: Resource) -> str | None:
    """Why ``job`` does not back ``guest`` up; "" when it does, None when it does not
    select the guest."""
    if not job.readable:
        return f"{job.name} could not be read"
    vmid = vmid_of(guest)
    selected = job.every_guest or (vmid is not None and vmid in job.vmids)
    if not selected and job.pools:
        pool = guest.props.get("poolId")
        selected = isinstance(pool, str) and pool in job.pools
    if not selected:
        return None
    if job.node is not None and job.node != node_of(guest):
        return f"{job.name} runs on node {job.node} only"
    if vmid in job.excluded or (vmid is None and job.excluded):
        return f"{job.name} excludes it"
    if not job.enabled:
        return f"{job.name} is not enabled"
    if not job.to_pbs:
        return f"{job.name} does not write to Proxmox Backup Server"
    return ""


def _backup_finding(guest: Resource, jobs: Sequence[_Job], stack: str) -> Violation | None:
    """The finding for a guest no enabled job on its node backs up to PBS, else None."""
    reasons: list[str] = []
    for job in jobs:
        reason = _why_not(job, guest)
        if reason == "":
            return None
        if reason is not None:
            reasons.append(reason)
    head = (
        f"{label(guest)} holds data but no enabled backup job of stack {short_stack(stack)} "
        "includes it"
    )
    fix = "add its VMID to the host's backup job to Proxmox Backup Server"
    if reasons:
        jobs_named = "that job" if len(reasons) == 1 else "those jobs"
        head += f" ({', '.join(reasons)})"
        fix = f"correct {jobs_named}, or {fix}"
    return Violation(head, fix, guest.urn, joint=": ")


def check_stateful_protected(
    resources: Sequence[Resource], config: StatefulConfig, stack: str
) -> Findings:
    """Every stateful guest: Pulumi protect, Proxmox protection, and a backup job.

    A job backs a guest up when it is enabled, runs on the guest's node (or every
    node), selects the guest (``all``, its VMID, or its pool) without excluding it,
    and writes to a PBS storage the stack declares.
    """
    findings = Findings()
    pbs_storages: set[str] = set()
    for storage in resources:
        with findings.reading():
            storage_id = storage.props.get("resourceId") if storage.type == PBS_STORAGE else None
            if isinstance(storage_id, str) and storage_id:
                pbs_storages.add(storage_id)
    jobs: list[_Job] = []
    for job in resources:
        with findings.reading():
            if job.type == BACKUP_JOB:
                jobs.append(_read_job(job, frozenset(pbs_storages), stack, findings))
    # A job or storage not known yet (preview) could back up any guest: judge none then.
    decided = not findings.unknowns
    for guest in resources:
        with findings.reading():
            if not is_stateful(guest, config):
                continue
            name = label(guest)
            if not guest.protect:
                findings.add(
                    f"{name} holds data but is not protected in Pulumi, so a config edit or "
                    "`pulumi destroy` could delete it",
                    "set the resource option protect=True",
                    guest.urn,
                    joint=": ",
                )
            if guest.props.get("protection") is not True:
                findings.add(
                    f"{name} holds data but Proxmox protection is off, so it can be removed "
                    "from the Proxmox UI or API",
                    "set protection=true on the guest",
                    guest.urn,
                    joint=": ",
                )
            if not decided or set(service_tags(guest)) & config.backup_exempt:
                continue
            finding = _backup_finding(guest, jobs, stack)
            if finding is not None:
                findings.violations.append(finding)
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
                for what, value in routes_and_resolvers(resource):
                    address = _address(str(value))
                    if address is not None and any(address in net for net in off_host):
                        reported.add(address)
                        findings.add(
                            f"its {what} {address} is on the core side (core LAN or "
                            "management network), so the guest would lose its network when "
                            "the core host is down",
                            "use zlh-zpack-router's LAN address",
                            resource.urn,
                            subject=label(resource),
                        )
            for path, text in _strings(resource.props, ""):
                for match in _ADDRESS.finditer(text):
                    address = _address(match.group(1))
                    if address in reported:
                        continue
                    if address is not None and any(address in net for net in config.core_networks):
                        findings.add(
                            f"{path} names {address} on the core LAN; a runtime host must not "
                            "need the core host to run",
                            "serve it from the runtime side, e.g. zlh-artifacts",
                            resource.urn,
                            subject=resource.name,
                            joint=": ",
                        )
    return findings


def _address(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text.split("/", 1)[0])
    except ValueError:
        return None
