"""The VMID allocation scheme: a guest's role is derivable from its VMID.

This module is the only definition of the ranges. The Pulumi program, the policy
pack's defaults and the tests all read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

#: Proxmox VE accepts VMIDs in this closed interval.
PROXMOX_MIN_VMID = 100
PROXMOX_MAX_VMID = 999_999_999


class VmidRole(StrEnum):
    """What a VMID range is for. The value doubles as the guest's ``role-*`` tag."""

    CORE_INFRA = "core-infra"
    BASE_TEMPLATE = "template"
    NETWORK = "network"
    GAME = "game"
    DEV = "dev"
    MONITORING = "monitoring"


@dataclass(frozen=True, slots=True)
class VmidRange:
    """A closed interval of VMIDs reserved for one role."""

    role: VmidRole
    first: int
    last: int
    purpose: str

    def __contains__(self, vmid: object) -> bool:
        return isinstance(vmid, int) and self.first <= vmid <= self.last

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: VmidRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def describe(self) -> str:
        upper = "+" if self.last == PROXMOX_MAX_VMID else f"-{self.last}"
        return f"{self.first}{upper}"


#: The seed's six blocks. 2000+ runs to the top of Proxmox's VMID space.
DEFAULT_RANGES: tuple[VmidRange, ...] = (
    VmidRange(VmidRole.CORE_INFRA, 100, 199, "Core infrastructure"),
    VmidRange(VmidRole.BASE_TEMPLATE, 200, 299, "Base templates"),
    VmidRange(VmidRole.NETWORK, 300, 399, "Network / proxy services"),
    VmidRange(VmidRole.GAME, 1000, 1099, "Game containers"),
    VmidRange(VmidRole.DEV, 1100, 1199, "Dev containers"),
    VmidRange(VmidRole.MONITORING, 2000, PROXMOX_MAX_VMID, "Monitoring / backup"),
)


class VmidSchemeError(ValueError):
    """A VMID scheme that cannot be used as it stands."""


class VmidRangeExhaustedError(ValueError):
    """No free VMID is left in a role's range."""


@dataclass(frozen=True, slots=True)
class VmidScheme:
    """A validated set of non-overlapping ranges, one per role."""

    ranges: tuple[VmidRange, ...] = DEFAULT_RANGES

    def __post_init__(self) -> None:
        problems = scheme_problems(self.ranges)
        if problems:
            raise VmidSchemeError("; ".join(problems))

    @classmethod
    def from_bounds(cls, bounds: Mapping[VmidRole | str, tuple[int, int]]) -> VmidScheme:
        """Build a scheme from ``{role: (first, last)}``, e.g. from policy config."""
        defaults = {r.role: r for r in DEFAULT_RANGES}
        ranges = []
        for role_name, (first, last) in bounds.items():
            role = VmidRole(role_name)
            ranges.append(VmidRange(role, first, last, defaults[role].purpose))
        return cls(tuple(sorted(ranges, key=lambda r: r.first)))

    def range_of(self, role: VmidRole) -> VmidRange:
        for vmid_range in self.ranges:
            if vmid_range.role is role:
                return vmid_range
        raise KeyError(role)

    def role_of(self, vmid: int) -> VmidRole | None:
        """The role whose range holds ``vmid``, or None for a VMID in no range."""
        for vmid_range in self.ranges:
            if vmid in vmid_range:
                return vmid_range.role
        return None

    def next_free(self, role: VmidRole, in_use: Iterable[int]) -> int:
        """The lowest VMID of ``role``'s range that is not in ``in_use``."""
        vmid_range = self.range_of(role)
        taken = {vmid for vmid in in_use if vmid in vmid_range}
        for vmid in range(vmid_range.first, vmid_range.last + 1):
            if vmid not in taken:
                return vmid
        raise VmidRangeExhaustedError(
            f"no free VMID left in the {role} range {vmid_range.describe()}"
        )

    def to_bounds(self) -> dict[str, tuple[int, int]]:
        return {str(r.role): (r.first, r.last) for r in self.ranges}


def scheme_problems(ranges: Iterable[VmidRange]) -> list[str]:
    """Every reason ``ranges`` is not a usable scheme (empty when it is)."""
    ranges = list(ranges)
    problems: list[str] = []
    seen: dict[VmidRole, VmidRange] = {}
    for vmid_range in ranges:
        if vmid_range.role in seen:
            problems.append(f"role {vmid_range.role} has more than one range")
        seen[vmid_range.role] = vmid_range
        if vmid_range.first > vmid_range.last:
            problems.append(
                f"range {vmid_range.role} starts at {vmid_range.first}, "
                f"after its end {vmid_range.last}"
            )
        if vmid_range.first < PROXMOX_MIN_VMID or vmid_range.last > PROXMOX_MAX_VMID:
            problems.append(
                f"range {vmid_range.role} {vmid_range.first}-{vmid_range.last} leaves Proxmox's "
                f"VMID space {PROXMOX_MIN_VMID}-{PROXMOX_MAX_VMID}"
            )
    for index, left in enumerate(ranges):
        for right in ranges[index + 1 :]:
            if left.overlaps(right):
                problems.append(
                    f"ranges {left.role} ({left.first}-{left.last}) and {right.role} "
                    f"({right.first}-{right.last}) overlap"
                )
    missing = set(VmidRole) - seen.keys()
    if missing:
        problems.append("no range for role(s) " + ", ".join(sorted(missing)))
    return problems


DEFAULT_SCHEME = VmidScheme()
