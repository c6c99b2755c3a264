"""Every guest check judges a guest of every type the provider has, however its VMID is spelt."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policies.policy_fixtures import runtime_builder
from zlh_infra.policies import config as cfg
from zlh_infra.policies.placement import check_placement
from zlh_infra.policies.resilience import check_stateful_protected
from zlh_infra.policies.resources import (
    CLONED_VM,
    CLONED_VM_LEGACY,
    GUEST_TYPES,
    VM2,
    VM_FRAMEWORK,
    Resource,
    is_guest,
    label,
    nics_of,
    vmid_of,
)
from zlh_infra.policies.tags import check_required_tags
from zlh_infra.policies.vmid import check_vmid_range, check_vmid_unique

TYPES = sorted(GUEST_TYPES)


def guest(type_: str, vmid: Any, **extra: Any) -> Resource:
    builder = runtime_builder()
    key = "resourceId" if type_ in (VM_FRAMEWORK, VM2, CLONED_VM, CLONED_VM_LEGACY) else "vmId"
    props = {key: vmid, "nodeName": "zlh-runtime", "tags": ["zlh"], **extra}
    return builder.add(f"zlh:runtime:Runtime${type_}", "stray", props)


@pytest.mark.parametrize("type_", TYPES)
@pytest.mark.parametrize("vmid", [1000, 1000.0, "1000"])
def test_every_guest_type_is_a_guest_with_its_vmid(type_: str, vmid: Any) -> None:
    resource = guest(type_, vmid)
    assert is_guest(resource)
    assert vmid_of(resource) == 1000
    assert label(resource) == "stray (VMID 1000)"


@pytest.mark.parametrize("type_", TYPES)
def test_every_guest_type_is_held_to_the_vmid_range(type_: str) -> None:
    range_config = cfg.VMID_RANGE.parse("zlh-vmid-range", None)
    assert [v.message for v in check_vmid_range(guest(type_, "950"), range_config)] == [
        "stray (VMID 950): VMID 950 is in no VMID range (core-infra 100-199, template 200-299, "
        "network 300-399, game 1000-1099, dev 1100-1199, monitoring 2000+); give it a free "
        "VMID in the range of its role."
    ]


@pytest.mark.parametrize("type_", TYPES)
def test_every_guest_type_is_held_to_tags_and_placement(type_: str) -> None:
    resource = guest(type_, "1000", nodeName="zlh-core")
    tags = check_required_tags(resource, cfg.TAGS.parse("zlh-required-tags", None), "runtime")
    assert tags[0].message == "stray (VMID 1000) has no layer-* tag; add layer-<its layer>."
    placement = check_placement(resource, cfg.PLACEMENT.parse("x", None), "runtime")
    assert [v.message for v in placement] == [
        "stray (VMID 1000) is on node zlh-core, but stack runtime deploys to node zlh-runtime "
        "(policy config stackNodes); set its node to zlh-runtime, or declare it in stack core."
    ]


@pytest.mark.parametrize("type_", TYPES)
def test_every_guest_type_holding_data_is_protected(type_: str) -> None:
    resource = guest(type_, "1003", tags=["zlh", "role-game"], protection=True)
    findings = check_stateful_protected(
        [resource], cfg.STATEFUL.parse("zlh-stateful-protected", None), "runtime"
    )
    assert findings.messages == [
        "stray (VMID 1003) holds data but is not protected in Pulumi, so a config edit or "
        "`pulumi destroy` could delete it: set the resource option protect=True.",
        "stray (VMID 1003) holds data but no enabled backup job of stack runtime includes it: "
        "add its VMID to the host's backup job to Proxmox Backup Server.",
    ]


def test_a_string_vmid_is_the_same_guest_as_a_number() -> None:
    builder = runtime_builder()
    builder.add(f"zlh:runtime:Runtime${CLONED_VM}", "mc-clone", {"resourceId": "1000"})
    findings = check_vmid_unique(builder.resources, cfg.VMID_UNIQUE.parse("x", None))
    assert findings.messages == [
        "mc-clone (VMID 1000): VMID 1000 is already used by mc-survival; a host refuses a "
        "second guest with one VMID and Proxmox Backup Server mixes up the backups of guests "
        "sharing one. Give it a free VMID in its role's range."
    ]


@pytest.mark.parametrize("type_", [CLONED_VM, CLONED_VM_LEGACY])
def test_a_clones_nics_are_read(type_: str) -> None:
    network = {"net1": {"bridge": "vmbr2", "firewall": True}, "net0": {"bridge": "vmbr1"}}
    nics = nics_of(guest(type_, "1000", network=network))
    assert [(nic.iface, nic.bridge, nic.firewall) for nic in nics] == [
        ("net0", "vmbr1", False),
        ("net1", "vmbr2", True),
    ]
