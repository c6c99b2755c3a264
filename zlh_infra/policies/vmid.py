"""VMID checks: a guest's VMID lies in its role's range; no two guests share one."""

from __future__ import annotations

from collections.abc import Sequence

from zlh_infra.platform.vmids import PROXMOX_MAX_VMID, PROXMOX_MIN_VMID, VmidRole, VmidScheme
from zlh_infra.policies.config import VmidRangeConfig, VmidUniqueConfig
from zlh_infra.policies.resources import (
    Findings,
    Resource,
    Violation,
    is_guest,
    label,
    raw_vmid,
    role_tags,
    vmid_of,
    whole_number,
)


def describe_scheme(scheme: VmidScheme) -> str:
    return ", ".join(f"{r.role} {r.describe()}" for r in scheme.ranges)


def tagged_role(resource: Resource) -> VmidRole | None:
    """The role the guest's first valid ``role-*`` tag names (the tags check judges the rest)."""
    for value in role_tags(resource):
        try:
            return VmidRole(value)
        except ValueError:
            continue
    return None


def check_vmid_range(resource: Resource, config: VmidRangeConfig) -> list[Violation]:
    """A guest's VMID is in a configured range, the range of the role its tag names."""
    if not is_guest(resource):
        return []
    scheme = config.scheme
    name = label(resource)
    tagged = tagged_role(resource)
    wanted = (
        f"the {tagged} range {scheme.range_of(tagged).describe()}"
        if tagged is not None
        else "the range of its role"
    )
    fix = f"give it a free VMID in {wanted}"
    raw = raw_vmid(resource)
    if raw is None:
        problem = f"{name} sets no VMID, so Proxmox would take the next free one whatever its role"
        return [Violation(problem, fix, resource.urn)]
    vmid = whole_number(raw)
    if vmid is None or not PROXMOX_MIN_VMID <= vmid <= PROXMOX_MAX_VMID:
        problem = (
            f"{raw!r} is not a VMID (a whole number from {PROXMOX_MIN_VMID} to {PROXMOX_MAX_VMID})"
        )
        return [Violation(problem, fix, resource.urn, name)]
    role = scheme.role_of(vmid)
    if role is None:
        problem = f"VMID {vmid} is in no VMID range ({describe_scheme(scheme)})"
        return [Violation(problem, fix, resource.urn, name)]
    if tagged is not None and tagged is not role:
        problem = (
            f"VMID {vmid} is in the {role} range {scheme.range_of(role).describe()}, "
            f"but the guest is tagged role-{tagged}"
        )
        return [Violation(problem, f"{fix}, or correct its tag to role-{role}", resource.urn, name)]
    return []


def check_vmid_unique(resources: Sequence[Resource], config: VmidUniqueConfig) -> Findings:
    """No two guests of the stack share a VMID, and none takes a reserved VMID."""
    findings = Findings()
    owners: dict[int, Resource] = {}
    fix = "give it a free VMID in its role's range"
    for resource in resources:
        if not is_guest(resource):
            continue
        with findings.reading():
            vmid = vmid_of(resource)
            if vmid is None:
                continue
            name = label(resource)
            if vmid in config.reserved:
                findings.add(
                    f"VMID {vmid} belongs to a guest outside this stack (policy config "
                    "reservedVmids)",
                    fix,
                    resource.urn,
                    subject=name,
                )
            owner = owners.setdefault(vmid, resource)
            if owner is not resource:
                findings.add(
                    f"VMID {vmid} is already used by {owner.name}; a host refuses a second "
                    "guest with one VMID and Proxmox Backup Server mixes up the backups of "
                    "guests sharing one",
                    fix,
                    resource.urn,
                    subject=name,
                    joint=". ",
                )
    return findings
