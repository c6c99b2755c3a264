"""The lab's packet filters and the files it writes for a container."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from zlh_infra.tooling.lab.lxcconf import (
    ContainerPaths,
    host_veth,
    interfaces_file,
    lxc_config,
    mac_address,
    managed_files,
    resolv_conf,
    router_setup_script,
)
from zlh_infra.tooling.lab.netconf import FilterError, host_ruleset, netns_ruleset, resolver_from
from zlh_infra.tooling.lab.plan import LabGuest, LabNic

RESOLVER = IPv4Address("10.255.255.53")


def _lines(ruleset: str) -> list[str]:
    return [line.strip() for line in ruleset.splitlines()]


def test_host_filter_drops_platform_networks_before_any_accept() -> None:
    lines = _lines(host_ruleset(RESOLVER))
    assert "10.10.0.0/16, 10.20.0.0/16, 10.99.0.0/16" in " ".join(lines)
    platform = next(i for i, line in enumerate(lines) if "@platform" in line)
    accepts = [i for i, line in enumerate(lines) if line.endswith("accept") and "iifname" in line]
    assert platform < min(accepts)
    assert any("tcp dport { 80, 443 } accept" in line for line in lines)
    assert any(f"ip daddr {RESOLVER} udp dport 53 accept" in line for line in lines)
    # Everything else from the lab is dropped, and nothing enters it unasked.
    assert any(line == 'iifname "zlhlab-host" counter drop' for line in lines)
    assert any("ct state established,related accept" in line for line in lines)


def test_lab_namespace_filter_drops_the_same_and_masquerades_the_wan() -> None:
    text = netns_ruleset(RESOLVER)
    assert "ip daddr @platform counter drop" in text
    assert "ip saddr 100.72.1.0/24" in text and "masquerade" in text


def test_a_resolver_inside_the_platform_networks_is_refused() -> None:
    with pytest.raises(FilterError):
        host_ruleset(IPv4Address("10.10.0.2"))


def test_resolver_from_skips_loopback_stubs_and_ipv6() -> None:
    text = "# x\nnameserver 127.0.0.53\nnameserver fd00::1\nnameserver 10.255.255.53\n"
    assert resolver_from(text) == RESOLVER
    assert resolver_from("nameserver 127.0.0.53\n") is None


def guest(**changes: object) -> LabGuest:
    values: dict[str, object] = {
        "vmid": 102,
        "hostname": "zlh-db",
        "stack": "core",
        "node": "zlh-core",
        "urn": "urn:x",
        "nics": (
            LabNic(
                "eth0",
                "lc-vmbr1",
                "vmbr1",
                IPv4Interface("10.10.0.12/24"),
                IPv4Address("10.10.0.1"),
            ),
            LabNic("eth1", "l-vmbr2", "vmbr2", IPv4Interface("10.99.0.12/22")),
        ),
        "dns_servers": ("10.10.0.2", "10.10.0.1"),
        "dns_domain": "core.zlh.internal",
        "mount_points": ("/srv/data",),
    }
    values.update(changes)
    return LabGuest(**values)  # type: ignore[arg-type]


def paths(tmp: Path) -> ContainerPaths:
    return ContainerPaths(
        rootfs=tmp / "rootfs",
        mounts=(tmp / "mp0",),
        apt_archives=tmp / "apt",
        console_log=tmp / "console.log",
        attach_hook=tmp / "attach",
    )


def test_lxc_config_is_unprivileged_with_nesting_and_proxmox_style_nics(tmp_path: Path) -> None:
    text = lxc_config(guest(), paths(tmp_path))
    assert "lxc.idmap = u 0 100000 65536" in text and "lxc.idmap = g 0 100000 65536" in text
    assert "lxc.apparmor.allow_nesting = 1" in text
    assert f"lxc.rootfs.path = dir:{tmp_path / 'rootfs'}" in text
    assert "lxc.net.1.veth.pair = veth102i1" in text and host_veth(102, 1) == "veth102i1"
    assert f"lxc.net.0.script.up = {tmp_path / 'attach'} lc-vmbr1" in text
    assert f"lxc.mount.entry = {tmp_path / 'mp0'} srv/data none bind,create=dir 0 0" in text
    assert "var/cache/apt/archives" in text
    assert mac_address(102, 0) != mac_address(102, 1)
    assert mac_address(102, 0) == mac_address(102, 0)


def test_managed_files_are_what_proxmox_writes() -> None:
    files = managed_files(guest())
    assert files["/etc/hostname"] == "zlh-db\n"
    assert "127.0.1.1\tzlh-db.core.zlh.internal zlh-db" in files["/etc/hosts"]
    interfaces = interfaces_file(guest())
    assert "iface eth0 inet static\n\taddress 10.10.0.12/24\n\tgateway 10.10.0.1\n" in interfaces
    assert "iface eth1 inet static\n\taddress 10.99.0.12/22\n" in interfaces
    assert resolv_conf(guest()) == (
        "search core.zlh.internal\nnameserver 10.10.0.2\nnameserver 10.10.0.1\n"
    )


def test_router_setup_masquerades_the_wan_and_forwards_dns_upstream() -> None:
    router = guest(
        vmid=300,
        hostname="zlh-router",
        nics=(
            LabNic(
                "eth0", "l-wan", "vmbr0", IPv4Interface("100.72.1.10/24"), IPv4Address("100.72.1.1")
            ),
            LabNic("eth1", "lc-vmbr1", "vmbr1", IPv4Interface("10.10.0.1/24")),
        ),
        stand_in_for="VM 300 zlh-router",
    )
    script = router_setup_script(router, "10.255.255.53")
    assert 'oifname "eth0" masquerade' in script
    assert "server=10.255.255.53" in script and "listen-address=10.10.0.1" in script
    assert "lxc.sysctl.net.ipv4.ip_forward = 1" in lxc_config(router, paths(Path("/x")))
    with pytest.raises(ValueError):
        router_setup_script(guest(stand_in_for="VM 1 x"), "10.255.255.53")
