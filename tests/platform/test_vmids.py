"""The VMID scheme: roles from ranges, next free VMID, scheme validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zlh_infra.platform.vmids import (
    DEFAULT_RANGES,
    DEFAULT_SCHEME,
    PROXMOX_MAX_VMID,
    VmidRange,
    VmidRangeExhaustedError,
    VmidRole,
    VmidScheme,
    VmidSchemeError,
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
