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


# --- what a guest may send from -------------------------------------------------------


def test_the_providers_options_resource_has_the_filter_options() -> None:
    from pulumi_proxmoxve.firewall import OptionsLegacyArgs

    arguments = OptionsLegacyArgs.__init__.__code__.co_varnames
    assert set(fs.FILTER_OPTIONS) <= set(arguments)
    assert fs.OPTIONS == "proxmoxve:firewall/optionsLegacy:OptionsLegacy"


def test_nic_addresses_are_read_by_position() -> None:
    props = {
        "vmId": 1000,
        "networkInterfaces": [{"bridge": "vmbr1"}, {"bridge": "vmbr2", "firewall": True}],
        "initialization": {
            "ipConfigs": [
                {"ipv4": {"address": "10.20.1.0/22", "gateway": "10.20.0.1"}},
                {"ipv4": {"address": "10.99.1.0/22"}, "ipv6": {"address": "fd99::1:0/64"}},
                {"ipv4": {"address": "10.99.1.9/22"}},
            ]
        },
    }
    assert guest_nics(fs.CONTAINER, props) == [
        Nic(0, "vmbr1", False, ("10.20.1.0/22",)),
        Nic(1, "vmbr2", True, ("10.99.1.0/22", "fd99::1:0/64")),
    ]
    # What is not an address stays as written, for the reader to refuse.
    props["initialization"] = {"ipConfigs": ["dhcp", {"ipv4": {"address": 10.0}, "ipv6": None}]}
    assert [nic.addresses for nic in guest_nics(fs.CONTAINER, props)] == [(), ("10.0",)]
    del props["initialization"]
    assert [nic.addresses for nic in guest_nics(fs.CONTAINER, props)] == [(), ()]


@pytest.mark.parametrize(
    ("options", "read"),
    [
        ({}, (False, True, False)),
        ({"ipfilter": True, "macfilter": False, "dhcp": True}, (True, False, True)),
        ({"ipfilter": None}, (False, True, False)),
    ],
)
def test_filter_options_and_their_defaults(
    options: dict[str, Any], read: tuple[bool, bool, bool]
) -> None:
    _, views = read_firewall(
        [(fs.CONTAINER, "g", {"vmId": 1000}), (fs.OPTIONS, "o", {"containerId": 1000, **options})]
    )
    firewall = views[1000].firewall()
    assert (firewall.ipfilter, firewall.macfilter, firewall.dhcp) == read


@pytest.mark.parametrize(
    ("key", "value"), [("ipfilter", "true"), ("macfilter", 1.0), ("dhcp", 0.0)]
)
def test_filter_options_the_reader_refuses(key: str, value: object) -> None:
    _, views = read_firewall([(fs.OPTIONS, "o", {"containerId": 1000, key: value})])
    with pytest.raises(FirewallReadError) as caught:
        views[1000].firewall()
    assert str(caught.value) == f"{key} {value!r} is not true or false"


def test_the_senders_of_a_guest() -> None:
    host, views = read_firewall(
        [
            (fs.DATACENTER, "dc", {"enabled": True}),
            (
                fs.CONTAINER,
                "ct",
                {
                    "vmId": 1000,
                    "networkInterfaces": [{"bridge": "vmbr2", "firewall": True}],
                    "initialization": {"ipConfigs": [{"ipv4": {"address": "10.99.1.0/22"}}]},
                },
            ),
            (fs.OPTIONS, "o", {"containerId": 1000, "enabled": True, "ipfilter": True}),
            (
                fs.VM,
                "vm",
                {"vmId": 300, "networkDevices": [{"bridge": "vmbr2", "firewall": True}]},
            ),
            (fs.OPTIONS, "o", {"vmId": 300, "enabled": True, "ipfilter": True}),
            (fs.CONTAINER, "tpl", {"vmId": 200, "template": True, "networkInterfaces": [{}]}),
        ]
    )
    [container] = views[1000].senders(host)
    assert (container.vmid, container.iface, container.bridge) == (1000, "net0", "vmbr2")
    assert str(container.sources) == "10.99.1.0/32, fe80::/64"
    [vm] = views[300].senders(host)
    assert str(vm.sources) == "fe80::/64"
    assert views[200].senders(host) == []
