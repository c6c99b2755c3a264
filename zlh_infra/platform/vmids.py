"""The VMID allocation scheme: a guest's role, and a fleet guest's owner, from its VMID.

This module is the only definition of the ranges. The Pulumi program, the policy
pack's defaults, the audit and the tests all read it.

Each fleet range (game, dev) is split in two: its first ``DECLARED_FLEET_VMIDS`` VMIDs
are the runtime stack's config's, the rest zpack-api's. The two never race for a VMID,
and a VMID alone says who should own a guest: the runtime stack's config accepts only
the declared part, zpack-api holds ``VM.Allocate`` on the API part only (see
``zlh_infra.platform.api_identity``), and the audit checks both.
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


# --- the fleet ranges' two owners --------------------------------------------------


class VmidOwner(StrEnum):
    """Who takes a fleet VMID: the runtime stack's config (Pulumi), or zpack-api."""

    DECLARED = "declared"
    API = "api"


#: The roles whose ranges hold customers' servers, each split between the two owners.
FLEET_ROLES: tuple[VmidRole, ...] = (VmidRole.GAME, VmidRole.DEV)

#: How many VMIDs at the start of each fleet range the runtime stack's config may
#: declare (1000-1019 game, 1100-1119 dev); zpack-api takes the rest (1020-1099,
#: 1120-1199). Declared servers are the few the platform runs itself; customers'
#: servers come from the portal.
DECLARED_FLEET_VMIDS = 20


@dataclass(frozen=True, slots=True)
class FleetPart:
    """The closed interval of a fleet range that one owner allocates from."""

    role: VmidRole
    owner: VmidOwner
    first: int
    last: int

    def __contains__(self, vmid: object) -> bool:
        return isinstance(vmid, int) and self.first <= vmid <= self.last

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def vmids(self) -> range:
        return range(self.first, self.last + 1)

    def describe(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class FleetSplit:
    """A fleet range's declared part (first) and zpack-api's part (the rest)."""

    declared: FleetPart
    api: FleetPart

    def part(self, owner: VmidOwner) -> FleetPart:
        return self.declared if owner is VmidOwner.DECLARED else self.api


def fleet_split(
    role: VmidRole,
    scheme: VmidScheme = DEFAULT_SCHEME,
    declared_vmids: int = DECLARED_FLEET_VMIDS,
) -> FleetSplit:
    """How ``role``'s range is shared; refused for a role that is not a fleet role, or a
    range too small to leave both owners at least one VMID."""
    if role not in FLEET_ROLES:
        fleet = ", ".join(str(r) for r in FLEET_ROLES)
        raise VmidSchemeError(f"role {role} is not a fleet role ({fleet}): its range is not split")
    vmid_range = scheme.range_of(role)
    if not 1 <= declared_vmids < vmid_range.size:
        raise VmidSchemeError(
            f"the {role} range {vmid_range.describe()} has {vmid_range.size} VMIDs: it cannot "
            f"hold {declared_vmids} declared ones and at least one for zpack-api"
        )
    middle = vmid_range.first + declared_vmids
    return FleetSplit(
        declared=FleetPart(role, VmidOwner.DECLARED, vmid_range.first, middle - 1),
        api=FleetPart(role, VmidOwner.API, middle, vmid_range.last),
    )


def fleet_part_of(vmid: int, scheme: VmidScheme = DEFAULT_SCHEME) -> FleetPart | None:
    """The fleet part holding ``vmid``, or None for a VMID of no fleet range."""
    role = scheme.role_of(vmid)
    if role not in FLEET_ROLES:
        return None
    split = fleet_split(role, scheme)
    return split.declared if vmid in split.declared else split.api


def api_vmids(scheme: VmidScheme = DEFAULT_SCHEME) -> tuple[int, ...]:
    """Every VMID zpack-api may allocate, in order: its part of each fleet range."""
    return tuple(vmid for role in FLEET_ROLES for vmid in fleet_split(role, scheme).api.vmids())


def next_api_vmid(
    role: VmidRole,
    *,
    in_use: Iterable[int],
    allocatable: Iterable[int],
    scheme: VmidScheme = DEFAULT_SCHEME,
) -> int:
    """The VMID zpack-api takes for a new ``role`` server.

    The lowest VMID of its part of the range that no guest of the host uses (``in_use``)
    and on which it still holds ``VM.Allocate`` (``allocatable``, from
    ``GET /access/permissions``): Proxmox deletes a VMID's ACLs when it destroys the
    guest, so a VMID the API destroyed comes back only when the runtime stack grants it
    again. Two API workers racing for one VMID cannot both win: Proxmox creates the
    guest's config under a cluster lock, and the loser retries with the next VMID.
    """
    part = fleet_split(role, scheme).api
    taken = {vmid for vmid in in_use if vmid in part}
    granted = {vmid for vmid in allocatable if vmid in part}
    for vmid in part.vmids():
        if vmid in granted and vmid not in taken:
            return vmid
    raise VmidRangeExhaustedError(
        f"no VMID left in zpack-api's part {part.describe()} of the {role} range: each is in "
        "use, or was destroyed and is not granted again yet (the runtime stack grants it "
        "again on its next `pulumi up --refresh`)"
    )


def fleet_owner_problem(
    vmid: int, *, declared: bool, scheme: VmidScheme = DEFAULT_SCHEME
) -> str | None:
    """Why a fleet guest's VMID is in the other owner's part, or None when it is not.

    ``declared``: the runtime stack's config declares the guest (else zpack-api made it,
    or an operator by hand). A VMID of no fleet range is for the range checks, not this.
    """
    part = fleet_part_of(vmid, scheme)
    if part is None:
        return None
    split = fleet_split(part.role, scheme)
    if declared and part.owner is VmidOwner.API:
        return (
            f"VMID {vmid} is in zpack-api's part {split.api.describe()} of the {part.role} "
            f"range; a declared {part.role} server takes a VMID of "
            f"{split.declared.describe()}"
        )
    if not declared and part.owner is VmidOwner.DECLARED:
        return (
            f"VMID {vmid} is in the part {split.declared.describe()} of the {part.role} range "
            f"that only the runtime stack's config declares; zpack-api takes VMIDs of "
            f"{split.api.describe()}"
        )
    return None
