"""zlh-vmid-range and zlh-vmid-unique, as plain functions."""

from __future__ import annotations

import pytest
from pulumi_policy.proxy import UNKNOWN_NUMBER_VALUE, UnknownValueError

from tests.policies.policy_fixtures import core_stack, find, guests, props, runtime_stack, unknown
from zlh_infra.policies.config import VMID_RANGE, VMID_UNIQUE, PolicyConfigError
from zlh_infra.policies.resources import Violation
from zlh_infra.policies.vmid import check_vmid_range, check_vmid_unique

RANGE = VMID_RANGE.parse("zlh-vmid-range", None)
UNIQUE = VMID_UNIQUE.parse("zlh-vmid-unique", None)


def messages(violations: list[Violation]) -> list[str]:
    return [violation.message for violation in violations]


# --- zlh-vmid-range ---------------------------------------------------------------


@pytest.mark.parametrize("stack", [core_stack, runtime_stack])
def test_every_platform_guest_is_in_its_range(stack: object) -> None:
    resources = stack()  # type: ignore[operator]
    assert [m for r in resources for m in check_vmid_range(r, RANGE)] == []


def test_non_guests_are_not_checked() -> None:
    options = find(
        runtime_stack(), "mc-survival-firewall", "proxmoxve:firewall/optionsLegacy:OptionsLegacy"
    )
    props(options)["containerId"] = 5.0
    assert check_vmid_range(options, RANGE) == []


def test_a_guest_without_vmid() -> None:
    guest = find(runtime_stack(), "mc-survival")
    del props(guest)["vmId"]
    assert check_vmid_range(guest, RANGE) == [
        Violation(
            problem="mc-survival (no VMID) sets no VMID, so Proxmox would take the next free "
            "one whatever its role",
            fix="give it a free VMID in the game range 1000-1099",
            urn=guest.urn,
        )
    ]
    assert messages(check_vmid_range(guest, RANGE)) == [
        "mc-survival (no VMID) sets no VMID, so Proxmox would take the next free one whatever "
        "its role; give it a free VMID in the game range 1000-1099."
    ]


def test_a_vmid_that_is_no_number() -> None:
    guest = find(runtime_stack(), "mc-survival")
    props(guest)["vmId"] = 1000.5
    assert messages(check_vmid_range(guest, RANGE)) == [
        "mc-survival (VMID 1000.5): 1000.5 is not a VMID (a whole number from 100 to "
        "999999999); give it a free VMID in the game range 1000-1099."
    ]


def test_a_vmid_in_no_range() -> None:
    guest = find(runtime_stack(), "mc-survival")
    props(guest)["vmId"] = 950.0
    assert messages(check_vmid_range(guest, RANGE)) == [
        "mc-survival (VMID 950): VMID 950 is in no VMID range (core-infra 100-199, template "
        "200-299, network 300-399, game 1000-1099, dev 1100-1199, monitoring 2000+); give it "
        "a free VMID in the game range 1000-1099."
    ]


def test_a_vmid_in_another_roles_range() -> None:
    guest = find(runtime_stack(), "dev-alice")
    props(guest)["vmId"] = 1050.0
    assert check_vmid_range(guest, RANGE) == [
        Violation(
            problem="VMID 1050 is in the game range 1000-1099, but the guest is tagged role-dev",
            fix="give it a free VMID in the dev range 1100-1199, or correct its tag to role-game",
            urn=guest.urn,
            subject="dev-alice (VMID 1050)",
        )
    ]
    assert messages(check_vmid_range(guest, RANGE)) == [
        "dev-alice (VMID 1050): VMID 1050 is in the game range 1000-1099, but the guest is "
        "tagged role-dev; give it a free VMID in the dev range 1100-1199, or correct its tag "
        "to role-game."
    ]


def test_without_role_tag_only_the_range_counts() -> None:
    guest = find(core_stack(), "zlh-db")
    props(guest)["tags"] = ["zlh"]
    assert check_vmid_range(guest, RANGE) == []
    props(guest)["vmId"] = 1500.0
    assert messages(check_vmid_range(guest, RANGE)) == [
        "zlh-db (VMID 1500): VMID 1500 is in no VMID range (core-infra 100-199, template "
        "200-299, network 300-399, game 1000-1099, dev 1100-1199, monitoring 2000+); give it "
        "a free VMID in the range of its role."
    ]


def test_configured_ranges_replace_the_defaults_role_by_role() -> None:
    config = VMID_RANGE.parse(
        "zlh-vmid-range",
        {"ranges": {"game": {"first": 1200, "last": 1299}}},
    )
    guest = find(runtime_stack(), "mc-survival")
    assert messages(check_vmid_range(guest, config)) == [
        "mc-survival (VMID 1000): VMID 1000 is in no VMID range (core-infra 100-199, template "
        "200-299, network 300-399, dev 1100-1199, game 1200-1299, monitoring 2000+); give it "
        "a free VMID in the game range 1200-1299."
    ]
    assert check_vmid_range(find(runtime_stack(), "dev-alice"), config) == []


def test_overlapping_configured_ranges_are_refused() -> None:
    with pytest.raises(PolicyConfigError) as caught:
        VMID_RANGE.parse("zlh-vmid-range", {"ranges": {"game": {"first": 1000, "last": 1150}}})
    assert str(caught.value) == (
        "the configuration of policy zlh-vmid-range is unusable: ranges: ranges game "
        "(1000-1150) and dev (1100-1199) overlap. Fix it in the --policy-pack-config file."
    )


def test_an_unknown_vmid_is_left_to_the_sdk() -> None:
    guest = unknown(find(runtime_stack(), "mc-survival"), vmId=UNKNOWN_NUMBER_VALUE)
    with pytest.raises(UnknownValueError) as caught:
        check_vmid_range(guest, RANGE)
    assert caught.value.message == "number value at .vmId can't be known during preview"


# --- zlh-vmid-unique --------------------------------------------------------------


@pytest.mark.parametrize("stack", [core_stack, runtime_stack])
def test_platform_vmids_are_unique(stack: object) -> None:
    findings = check_vmid_unique(stack(), UNIQUE)  # type: ignore[operator]
    assert findings.violations == []
    assert findings.unknowns == []


def test_a_second_guest_with_a_used_vmid() -> None:
    resources = runtime_stack()
    dev = find(resources, "dev-alice")
    props(dev)["vmId"] = 1000.0
    findings = check_vmid_unique(resources, UNIQUE)
    assert findings.messages == [
        "dev-alice (VMID 1000): VMID 1000 is already used by mc-survival; a host refuses a "
        "second guest with one VMID and Proxmox Backup Server mixes up the backups of guests "
        "sharing one. Give it a free VMID in its role's range."
    ]
    assert findings.violations == [
        Violation(
            problem="VMID 1000 is already used by mc-survival; a host refuses a second guest "
            "with one VMID and Proxmox Backup Server mixes up the backups of guests sharing one",
            fix="give it a free VMID in its role's range",
            urn=dev.urn,
            subject="dev-alice (VMID 1000)",
            joint=". ",
        )
    ]


def test_a_reserved_vmid() -> None:
    config = VMID_UNIQUE.parse("zlh-vmid-unique", {"reservedVmids": [1100, 1999]})
    resources = runtime_stack()
    findings = check_vmid_unique(resources, config)
    assert findings.messages == [
        "dev-alice (VMID 1100): VMID 1100 belongs to a guest outside this stack (policy "
        "config reservedVmids); give it a free VMID in its role's range."
    ]
    assert findings.violations[0].urn == find(resources, "dev-alice").urn


def test_an_unknown_vmid_skips_only_that_guest() -> None:
    resources = runtime_stack()
    index = resources.index(find(resources, "zlh-velocity"))
    resources[index] = unknown(resources[index], vmId=UNKNOWN_NUMBER_VALUE)
    props(find(resources, "dev-alice"))["vmId"] = 1000.0
    findings = check_vmid_unique(resources, UNIQUE)
    assert len(findings.violations) == 1
    assert [u.message for u in findings.unknowns] == [
        "number value at .vmId can't be known during preview"
    ]


def test_guests_are_counted_across_guest_kinds() -> None:
    resources = core_stack()
    assert len(guests(resources)) == 5
    props(find(resources, "zlh-proxy"))["vmId"] = 300.0  # the router VM's
    assert check_vmid_unique(resources, UNIQUE).messages == [
        "zlh-proxy (VMID 300): VMID 300 is already used by zlh-router; a host refuses a "
        "second guest with one VMID and Proxmox Backup Server mixes up the backups of guests "
        "sharing one. Give it a free VMID in its role's range."
    ]
