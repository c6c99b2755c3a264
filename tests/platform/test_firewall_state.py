"""The firewall state reader: datacenter switch, guests of every type, owners, NICs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi_proxmoxve
import pytest

from zlh_infra.platform import firewall_state as fs
from zlh_infra.platform.firewall_state import (
    GUEST_TYPES,
    Nic,
    guest_nics,
    guest_vmid,
    owner_vmid,
    read_firewall,
)
from zlh_infra.platform.reachability import FirewallReadError

PROVIDER = Path(pulumi_proxmoxve.__file__).parent
_TOKEN = re.compile(r'@pulumi\.type_token\("(proxmoxve:[^"]+)"\)')


def provider_tokens() -> set[str]:
    return {token for path in PROVIDER.rglob("*.py") for token in _TOKEN.findall(path.read_text())}


def test_every_guest_resource_of_the_provider_is_a_guest_type() -> None:
    guests = {t for t in provider_tokens() if re.search(r":(Vm\d*|Container)(Legacy)?$", t)}
    assert guests == GUEST_TYPES


def test_the_provider_has_one_datacenter_firewall_resource() -> None:
    found = {t for t in provider_tokens() if t.startswith("proxmoxve:cluster/firewall")}
    assert found == {fs.DATACENTER, fs.SECURITY_GROUP}


@pytest.mark.parametrize(
    ("switches", "enabled"),
    [
        ([], False),
        ([True], True),
        ([False], False),
        ([True, True], True),
        ([True, False], False),
        ([False, True], False),
        ([True, None], False),
        ([True, "true"], False),
    ],
)
def test_the_datacenter_firewall_is_on_only_if_no_resource_turns_it_off(
    switches: list[Any], enabled: bool
) -> None:
    triples = [(fs.DATACENTER, f"dc{i}", {"enabled": on}) for i, on in enumerate(switches)]
    host, _ = read_firewall(triples)
    assert host.enabled is enabled


def guest_props(type_: str, vmid: Any) -> dict[str, Any]:
    if type_ in (fs.CLONED_VM, fs.CLONED_VM_LEGACY):
        return {
            "resourceId": vmid,
            "network": {
                "net1": {"bridge": "vmbr2", "firewall": True},
                "net0": {"bridge": "vmbr1", "firewall": True},
            },
        }
    if type_ in (fs.VM_FRAMEWORK, fs.VM2):
        return {"resourceId": vmid}
    key = "networkDevices" if type_ == fs.VM else "networkInterfaces"
    return {
        "vmId": vmid,
        key: [{"bridge": "vmbr1", "firewall": True}, {"bridge": "vmbr2", "firewall": True}],
    }


@pytest.mark.parametrize("type_", sorted(GUEST_TYPES))
@pytest.mark.parametrize("vmid", [1000, 1000.0, "1000", " 1000 "])
def test_every_guest_type_and_vmid_spelling_is_read(type_: str, vmid: Any) -> None:
    props = guest_props(type_, vmid)
    options = {"containerId": "1000", "enabled": True}
    _, views = read_firewall([(type_, "g", props), (fs.OPTIONS, "o", options)])
    assert guest_vmid(type_, props) == 1000
    assert list(views) == [1000]
    assert views[1000].name == "g"
    assert views[1000].firewall().enabled is True
    nics = [] if type_ in (fs.VM_FRAMEWORK, fs.VM2) else ["net1"]
    assert views[1000].ifaces_on("vmbr2") == nics


def test_a_clones_nics_are_keyed_by_slot() -> None:
    props = {
        "network": {
            "net3": {"bridge": "vmbr2"},
            "net0": {"bridge": "vmbr1", "firewall": True},
            "eth1": {"bridge": "vmbr2", "firewall": True},
            "net1": "not a nic",
        }
    }
    assert guest_nics(fs.CLONED_VM, props) == [Nic(0, "vmbr1", True), Nic(3, "vmbr2", False)]


def test_every_nic_on_a_bridge_is_found() -> None:
    props = {
        "vmId": 1000,
        "networkInterfaces": [{"bridge": "vmbr2"}, {"bridge": "vmbr1"}, {"bridge": "vmbr2"}],
    }
    _, views = read_firewall([(fs.CONTAINER, "g", props)])
    assert views[1000].ifaces_on("vmbr2") == ["net0", "net2"]
    assert views[1000].iface_on("vmbr2") == "net0"


@pytest.mark.parametrize(
    ("props", "vmid"),
    [
        ({}, None),
        ({"containerId": 1000.0}, 1000),
        ({"vmId": "1000"}, 1000),
        ({"containerId": "1000", "vmId": 1000}, 1000),
    ],
)
def test_firewall_owners(props: dict[str, Any], vmid: int | None) -> None:
    assert owner_vmid(props) == vmid


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"containerId": "abc"}, "containerId 'abc' is not a VMID"),
        ({"vmId": 1000.5}, "vmId 1000.5 is not a VMID"),
        ({"vmId": True}, "vmId True is not a VMID"),
        ({"containerId": 1000, "vmId": 1001}, "containerId 1000 and vmId 1001 name two guests"),
    ],
)
def test_firewall_owners_the_reader_refuses(props: dict[str, Any], message: str) -> None:
    with pytest.raises(FirewallReadError) as caught:
        owner_vmid(props)
    assert str(caught.value) == message
    # Nor does it become the datacenter's: it names a guest the reader cannot tell.
    alias = {**props, "name": "api", "cidr": "0.0.0.0/0"}
    host, views = read_firewall([(fs.ALIAS, "api", alias), (fs.RULES, "r", {**props, "rules": []})])
    assert (host.aliases, views) == ({}, {})


def test_string_vmids_join_a_guest_and_its_firewall() -> None:
    _, views = read_firewall(
        [
            (fs.CONTAINER, "g", {"vmId": "1000", "networkInterfaces": [{"bridge": "vmbr2"}]}),
            (
                fs.RULES,
                "r",
                {"containerId": "1000", "rules": [{"action": "ACCEPT", "dport": "22"}]},
            ),
            (fs.ALIAS, "a", {"containerId": 1000.0, "name": "api", "cidr": "10.0.0.1"}),
        ]
    )
    assert [rule.dport for rule in views[1000].rules] == ["22"]
    assert views[1000].aliases == {"api": "10.0.0.1"}


def test_entries_that_are_not_rules_are_left_to_the_checks() -> None:
    host, views = read_firewall(
        [
            (fs.RULES, "r", {"vmId": 1000, "rules": ["ACCEPT", {"action": "DROP"}]}),
            (fs.SECURITY_GROUP, "g", {"name": "g", "rules": "ACCEPT"}),
            (fs.IPSET, "s", {"name": "s", "cidrs": [{"name": "10.0.0.1"}, "10.0.0.2"]}),
        ]
    )
    assert [rule.action for rule in views[1000].rules] == ["DROP"]
    assert host.security_groups == {"g": []}
    assert host.ipsets == {"s": [("10.0.0.1", False)]}
