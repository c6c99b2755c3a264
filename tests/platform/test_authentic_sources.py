"""The shipped platform: on the management network, only zpack-api and zlh-monitor send
from their addresses, across both hosts (each stack's policy sees only its own)."""

from __future__ import annotations

import pytest

from tests.stack_configs import ROOT
from zlh_infra.platform.firewall_state import GuestView, read_firewall
from zlh_infra.platform.reachability import TCP, UDP, AddressSet, Sender, authentic, spoofers
from zlh_infra.tooling.preview.recording import StackRecording
from zlh_infra.tooling.preview.runner import run_platform

MANAGEMENT_BRIDGE = "vmbr2"


@pytest.fixture(scope="module")
def platform() -> dict[str, StackRecording]:
    recordings = run_platform(
        {"core": ROOT / "Pulumi.core.yaml", "runtime": ROOT / "Pulumi.runtime.yaml"},
        ["core", "runtime"],
    )
    return {recording.stack: recording for recording in recordings}


def management_senders(
    platform: dict[str, StackRecording],
) -> tuple[list[Sender], dict[int, GuestView]]:
    """Every NIC of either host on the management bridge, with the guests behind them."""
    senders: list[Sender] = []
    views: dict[int, GuestView] = {}
    for recording in platform.values():
        host, found = read_firewall((r.type, r.name, r.inputs) for r in recording.resources)
        views |= found
        for view in found.values():
            senders += [s for s in view.senders(host) if s.bridge == MANAGEMENT_BRIDGE]
    return senders, views


def vmid_of(views: dict[int, GuestView], name: str) -> int:
    return next(vmid for vmid, view in views.items() if view.name == name)


def test_only_the_api_and_the_monitor_send_from_their_addresses(
    platform: dict[str, StackRecording],
) -> None:
    core = platform["core"].outputs
    api = AddressSet.of(core["apiManagementAddress"])
    monitor = AddressSet.of(core["monitorManagementAddress"])
    senders, views = management_senders(platform)
    api_vmid, monitor_vmid = vmid_of(views, "zpack-api"), vmid_of(views, "zlh-monitor")
    # Both hosts' guests share the segment, the tenants among them.
    on_it = {s.vmid for s in senders}
    assert {api_vmid, monitor_vmid, vmid_of(views, "mc-survival")} <= on_it
    assert all(s.unfiltered is None for s in senders)
    assert authentic(senders, api, owners={api_vmid}) == api
    assert authentic(senders, monitor, owners={monitor_vmid}) == monitor
    # The owners are what sends from them: without them, nothing is authentic.
    assert [s.vmid for s, _ in spoofers(senders, api)] == [api_vmid]
    assert [s.vmid for s, _ in spoofers(senders, monitor)] == [monitor_vmid]
    # Nor does DHCP open a way around the filter: the program turns it off.
    assert authentic(senders, api, owners={api_vmid}, proto=UDP, port=67) == api
    assert all(s.macfilter for s in senders)


def test_every_tenant_sends_from_its_own_addresses_only(
    platform: dict[str, StackRecording],
) -> None:
    senders, _ = management_senders(platform)
    tenants = [s for s in senders if s.vmid in range(1000, 1200)]
    assert len(tenants) == 5
    for tenant in tenants:
        assert tenant.own, tenant
        # Its address, and its MAC-derived link-local one (somewhere in fe80::/64).
        assert tenant.sources == tenant.own | AddressSet.of("fe80::/64"), tenant
        assert tenant.forges(AddressSet.everything(), proto=TCP) == tenant.sources
