"""The VMID scheme: roles from ranges, next free VMID, scheme validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zlh_infra.platform.vmids import (
    DECLARED_FLEET_VMIDS,
    DEFAULT_RANGES,
    DEFAULT_SCHEME,
    FLEET_ROLES,
    PROXMOX_MAX_VMID,
    VmidOwner,
    VmidRange,
    VmidRangeExhaustedError,
    VmidRole,
    VmidScheme,
    VmidSchemeError,
    api_vmids,
    fleet_owner_problem,
    fleet_part_of,
    fleet_split,
    next_api_vmid,
    scheme_problems,
)

roles = st.sampled_from(list(VmidRole))
vmids = st.integers(min_value=1, max_value=PROXMOX_MAX_VMID)


def test_seed_table() -> None:
    bounds = DEFAULT_SCHEME.to_bounds()
    assert bounds == {
        "core-infra": (100, 199),
        "template": (200, 299),
        "network": (300, 399),
        "game": (1000, 1099),
        "dev": (1100, 1199),
        "monitoring": (2000, PROXMOX_MAX_VMID),
    }


@pytest.mark.parametrize(
    ("vmid", "role"),
    [
        (100, VmidRole.CORE_INFRA),
        (199, VmidRole.CORE_INFRA),
        (200, VmidRole.BASE_TEMPLATE),
        (310, VmidRole.NETWORK),
        (1000, VmidRole.GAME),
        (1099, VmidRole.GAME),
        (1100, VmidRole.DEV),
        (1199, VmidRole.DEV),
        (2001, VmidRole.MONITORING),
        (400, None),
        (999, None),
        (1200, None),
        (1999, None),
    ],
)
def test_role_of_edges(vmid: int, role: VmidRole | None) -> None:
    assert DEFAULT_SCHEME.role_of(vmid) is role


@given(vmids)
def test_role_of_agrees_with_exactly_one_range(vmid: int) -> None:
    holders = [r for r in DEFAULT_RANGES if vmid in r]
    assert len(holders) <= 1
    assert DEFAULT_SCHEME.role_of(vmid) == (holders[0].role if holders else None)


@given(roles)
def test_range_of_is_the_inverse_of_role_of(role: VmidRole) -> None:
    vmid_range = DEFAULT_SCHEME.range_of(role)
    assert DEFAULT_SCHEME.role_of(vmid_range.first) is role
    assert DEFAULT_SCHEME.role_of(vmid_range.last) is role


@given(roles, st.sets(st.integers(min_value=90, max_value=2300), max_size=150))
def test_next_free_is_the_lowest_unused_vmid_of_the_role(role: VmidRole, in_use: set[int]) -> None:
    vmid_range = DEFAULT_SCHEME.range_of(role)
    try:
        vmid = DEFAULT_SCHEME.next_free(role, in_use)
    except VmidRangeExhaustedError:
        assert all(v in in_use for v in range(vmid_range.first, vmid_range.last + 1))
        return
    assert vmid in vmid_range
    assert vmid not in in_use
    assert all(v in in_use for v in range(vmid_range.first, vmid))


def test_next_free_reports_an_exhausted_range() -> None:
    with pytest.raises(
        VmidRangeExhaustedError, match="no free VMID left in the game range 1000-1099"
    ):
        DEFAULT_SCHEME.next_free(VmidRole.GAME, range(1000, 1100))


@given(st.lists(st.tuples(st.integers(100, 5000), st.integers(0, 500)), min_size=6, max_size=6))
def test_scheme_accepts_exactly_the_non_overlapping_ranges(spans: list[tuple[int, int]]) -> None:
    ranges = [
        VmidRange(role, first, first + length, "test")
        for role, (first, length) in zip(VmidRole, spans, strict=True)
    ]
    overlapping = any(a.overlaps(b) for i, a in enumerate(ranges) for b in ranges[i + 1 :])
    if overlapping:
        with pytest.raises(VmidSchemeError, match="overlap"):
            VmidScheme(tuple(ranges))
    else:
        scheme = VmidScheme(tuple(ranges))
        for vmid_range in ranges:
            assert scheme.role_of(vmid_range.first) is vmid_range.role


def test_scheme_problems_name_each_rule() -> None:
    ranges = [
        VmidRange(VmidRole.CORE_INFRA, 100, 250, "x"),
        VmidRange(VmidRole.BASE_TEMPLATE, 200, 299, "x"),
        VmidRange(VmidRole.NETWORK, 50, 60, "x"),
        VmidRange(VmidRole.GAME, 1100, 1000, "x"),
    ]
    problems = scheme_problems(ranges)
    assert "ranges core-infra (100-250) and template (200-299) overlap" in problems
    assert "range network 50-60 leaves Proxmox's VMID space 100-999999999" in problems
    assert "range game starts at 1100, after its end 1000" in problems
    assert "no range for role(s) dev, monitoring" in problems


def test_from_bounds_round_trips() -> None:
    assert VmidScheme.from_bounds(DEFAULT_SCHEME.to_bounds()) == DEFAULT_SCHEME


# --- the fleet ranges' two owners ---------------------------------------------------

fleet_roles = st.sampled_from(list(FLEET_ROLES))


def test_each_fleet_range_starts_with_the_declared_part() -> None:
    game, dev = fleet_split(VmidRole.GAME), fleet_split(VmidRole.DEV)
    assert (game.declared.describe(), game.api.describe()) == ("1000-1019", "1020-1099")
    assert (dev.declared.describe(), dev.api.describe()) == ("1100-1119", "1120-1199")
    assert game.declared.size == DECLARED_FLEET_VMIDS and game.api.size == 80
    assert game.part(VmidOwner.API) is game.api
    assert api_vmids() == (*range(1020, 1100), *range(1120, 1200))


@given(fleet_roles, st.integers(min_value=90, max_value=1300))
def test_a_fleet_vmid_lies_in_exactly_one_part(role: VmidRole, vmid: int) -> None:
    split = fleet_split(role)
    holders = [part for part in (split.declared, split.api) if vmid in part]
    assert len(holders) == (1 if vmid in DEFAULT_SCHEME.range_of(role) else 0)
    part = fleet_part_of(vmid)
    if vmid in DEFAULT_SCHEME.range_of(role):
        assert part == holders[0]
        assert (vmid in api_vmids()) is (part.owner is VmidOwner.API)


@given(st.integers(min_value=2, max_value=60), st.integers(min_value=1, max_value=59))
def test_a_split_follows_the_configured_range(size: int, declared: int) -> None:
    scheme = VmidScheme.from_bounds({**DEFAULT_SCHEME.to_bounds(), "game": (1200, 1200 + size - 1)})
    if declared >= size:
        with pytest.raises(VmidSchemeError, match="cannot hold"):
            fleet_split(VmidRole.GAME, scheme, declared)
        return
    split = fleet_split(VmidRole.GAME, scheme, declared)
    assert split.declared.first == 1200 and split.api.last == 1200 + size - 1
    assert split.declared.last + 1 == split.api.first
    assert split.declared.size == declared


def test_splits_are_refused_for_other_roles_and_small_ranges() -> None:
    with pytest.raises(VmidSchemeError, match=r"^role template is not a fleet role \(game, dev\)"):
        fleet_split(VmidRole.BASE_TEMPLATE)
    small = VmidScheme.from_bounds({**DEFAULT_SCHEME.to_bounds(), "dev": (1100, 1110)})
    with pytest.raises(VmidSchemeError) as error:
        fleet_split(VmidRole.DEV, small)
    assert str(error.value) == (
        "the dev range 1100-1110 has 11 VMIDs: it cannot hold 20 declared ones and at least "
        "one for zpack-api"
    )


@given(
    fleet_roles,
    st.sets(st.integers(1000, 1199), max_size=120),
    st.sets(st.integers(1000, 1199), max_size=200),
)
def test_the_api_takes_the_lowest_free_granted_vmid_of_its_part(
    role: VmidRole, in_use: set[int], granted: set[int]
) -> None:
    part = fleet_split(role).api
    usable = sorted(v for v in part.vmids() if v in granted and v not in in_use)
    if not usable:
        with pytest.raises(VmidRangeExhaustedError, match="no VMID left in zpack-api's part"):
            next_api_vmid(role, in_use=in_use, allocatable=granted)
        return
    assert next_api_vmid(role, in_use=in_use, allocatable=granted) == usable[0]


def test_a_destroyed_vmid_is_skipped_until_granted_again() -> None:
    granted = set(range(1020, 1100)) - {1020}
    assert next_api_vmid(VmidRole.GAME, in_use={1021}, allocatable=granted) == 1022
    # 1100 is granted but in the declared part; 1199 is free and granted.
    assert next_api_vmid(VmidRole.DEV, in_use=range(1120, 1199), allocatable={1199, 1100}) == 1199
    with pytest.raises(VmidRangeExhaustedError) as exhausted:
        next_api_vmid(VmidRole.DEV, in_use=range(1120, 1200), allocatable=range(1000, 1200))
    assert str(exhausted.value) == (
        "no VMID left in zpack-api's part 1120-1199 of the dev range: each is in use, or was "
        "destroyed and is not granted again yet (the runtime stack grants it again on its "
        "next `pulumi up --refresh`)"
    )


@pytest.mark.parametrize(
    ("vmid", "declared", "problem"),
    [
        (1000, True, None),
        (1019, True, None),
        (1020, False, None),
        (1199, False, None),
        (150, True, None),
        (1500, False, None),
        (
            1020,
            True,
            "VMID 1020 is in zpack-api's part 1020-1099 of the game range; a declared game "
            "server takes a VMID of 1000-1019",
        ),
        (
            1119,
            False,
            "VMID 1119 is in the part 1100-1119 of the dev range that only the runtime "
            "stack's config declares; zpack-api takes VMIDs of 1120-1199",
        ),
    ],
)
def test_a_fleet_guest_in_the_other_owners_part_is_named(
    vmid: int, declared: bool, problem: str | None
) -> None:
    assert fleet_owner_problem(vmid, declared=declared) == problem
