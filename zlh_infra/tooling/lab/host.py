"""The lab's footprint on the host: its network namespaces, bridges, uplink, nft tables, IDs.

Everything here is named from ``paths`` and recorded in the lab state, so ``lab down``
removes exactly what ``lab up`` made and restores what it changed (``ip_forward``,
the ``root`` lines it added to ``/etc/subuid`` and ``/etc/subgid``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from zlh_infra.tooling.lab.firewall import LabFirewall, NodeStandIn
from zlh_infra.tooling.lab.netconf import host_ruleset, netns_ruleset, resolver_from
from zlh_infra.tooling.lab.paths import (
    FIREWALL_TABLE,
    HOST_NFT_TABLE,
    HOST_VETH,
    ID_MAP_FIRST,
    ID_MAP_SIZE,
    LAB_NETWORK,
    LAB_VETH,
    NETNS,
    NETNS_NFT_TABLE,
    NODE_NETNS_PREFIX,
    RELEASE_PORT,
    UPLINK_HOST,
    UPLINK_LAB,
    WAN_BRIDGE,
    WAN_GATEWAY,
)
from zlh_infra.tooling.lab.state import LabState
from zlh_infra.tooling.lab.system import LabError, in_netns, netns_path, run

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
SUBID_FILES = (Path("/etc/subuid"), Path("/etc/subgid"))
SUBID_LINE = f"root:{ID_MAP_FIRST}:{ID_MAP_SIZE}"


# --- the host's resolver ----------------------------------------------------------------


def host_resolver() -> IPv4Address:
    """The resolver the lab forwards DNS to: the host's first non-loopback IPv4 nameserver."""
    for path in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        if path.is_file():
            found = resolver_from(path.read_text(encoding="utf-8"))
            if found is not None:
                return found
    raise LabError("no IPv4 nameserver (other than a loopback stub) in /etc/resolv.conf")


# --- kernel limits --------------------------------------------------------------------------

#: Every container's root is the same host user (100000), and each systemd inside takes
#: several inotify instances: the default 128 per user stops the tenth container's boot.
SYSCTL_MINIMUMS = {
    "fs/inotify/max_user_instances": 1024,
    "fs/inotify/max_user_watches": 524288,
}


def ensure_sysctls(state: LabState) -> None:
    for key, minimum in SYSCTL_MINIMUMS.items():
        path = Path("/proc/sys") / key
        current = int(path.read_text(encoding="utf-8").split()[0])
        if current < minimum:
            state.sysctl_before.setdefault(key, str(current))
            state.save()
            path.write_text(f"{minimum}\n", encoding="utf-8")


def restore_sysctls(state: LabState) -> list[str]:
    done = []
    for key, value in sorted(state.sysctl_before.items()):
        (Path("/proc/sys") / key).write_text(f"{value}\n", encoding="utf-8")
        done.append(f"{key.replace('/', '.')} back to {value}")
    state.sysctl_before.clear()
    state.save()
    return done


# --- subordinate IDs --------------------------------------------------------------------


def ensure_subids(state: LabState) -> None:
    """Root may map Proxmox's unprivileged range (LXC insists when shadow's tools exist)."""
    for path in SUBID_FILES:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if SUBID_LINE in lines:
            continue
        with path.open("a", encoding="utf-8") as handle:
            if lines and not path.read_text(encoding="utf-8").endswith("\n"):
                handle.write("\n")
            handle.write(SUBID_LINE + "\n")
        state.added_subids.append(str(path))
        state.save()


def restore_subids(state: LabState) -> None:
    for name in list(state.added_subids):
        path = Path(name)
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            if SUBID_LINE in lines:
                lines.remove(SUBID_LINE)
                path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        state.added_subids.remove(name)
    state.save()


# --- network ----------------------------------------------------------------------------


def _links(netns: bool = False) -> set[str]:
    argv = ["ip", "-j", "link", "show"]
    result = run(in_netns(argv) if netns else argv)
    return {link["ifname"] for link in json.loads(result.stdout or "[]")}


def _netns_exists() -> bool:
    return netns_path().exists()


def _sysctl_in_netns(key: str, value: str, *, required: bool = True) -> None:
    result = run(in_netns(["sysctl", "-q", "-w", f"{key}={value}"]), check=False)
    if required and result.returncode != 0:
        raise LabError(f"sysctl {key}={value} in the lab namespace failed: {result.stderr.strip()}")


def _check_no_overlap() -> None:
    routes = json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    for route in routes:
        destination = route.get("dst", "")
        if destination in ("", "default") or route.get("dev") == HOST_VETH:
            continue
        network = IPv4Network(destination if "/" in destination else f"{destination}/32")
        if network.overlaps(LAB_NETWORK):
            raise LabError(
                f"the host has a route to {network} ({route.get('dev')}), which overlaps the "
                f"lab's own {LAB_NETWORK}"
            )


def ensure_network(
    state: LabState,
    bridges: Iterable[str],
    resolver: IPv4Address,
    firewall: LabFirewall,
) -> None:
    """The lab namespace, its bridges, the uplink to the host, the nft tables, the
    recorded Proxmox firewall on the bridges, and the node stand-ins."""
    if not _netns_exists():
        _check_no_overlap()
        run(["ip", "netns", "add", NETNS])
        state.netns = True
        state.save()
    run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
    _sysctl_in_netns("net.ipv6.conf.all.disable_ipv6", "1")
    _sysctl_in_netns("net.ipv6.conf.default.disable_ipv6", "1")
    _sysctl_in_netns("net.ipv4.ip_forward", "1")
    # Bridged frames reach the namespace's IP hooks only on the lab's own bridges, which
    # turn it on for themselves (for the Proxmox firewall's conntrack).
    _sysctl_in_netns("net.bridge.bridge-nf-call-iptables", "0", required=False)
    _sysctl_in_netns("net.bridge.bridge-nf-call-ip6tables", "0", required=False)

    if HOST_VETH not in _links():
        run(["ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", LAB_VETH])
        run(["ip", "link", "set", LAB_VETH, "netns", NETNS])
        run(["sysctl", "-q", "-w", f"net.ipv6.conf.{HOST_VETH}.disable_ipv6=1"], check=False)
        run(["ip", "addr", "add", str(UPLINK_HOST), "dev", HOST_VETH])
        run(["ip", "link", "set", HOST_VETH, "up"])
        run(["ip", "-n", NETNS, "addr", "add", str(UPLINK_LAB), "dev", LAB_VETH])
        run(["ip", "-n", NETNS, "link", "set", LAB_VETH, "up"])
        run(["ip", "-n", NETNS, "route", "replace", "default", "via", str(UPLINK_HOST.ip)])

    present = _links(netns=True)
    for bridge in sorted(set(bridges) | {WAN_BRIDGE}):
        if bridge not in present:
            run(["ip", "-n", NETNS, "link", "add", bridge, "type", "bridge", "stp_state", "0"])
        run(["ip", "-n", NETNS, "link", "set", bridge, "up"])
    wan_addresses = run(["ip", "-n", NETNS, "-j", "addr", "show", "dev", WAN_BRIDGE]).stdout
    if str(WAN_GATEWAY.ip) not in wan_addresses:
        run(["ip", "-n", NETNS, "addr", "add", str(WAN_GATEWAY), "dev", WAN_BRIDGE])

    # The host forwards for the lab only while it is up; the old value comes back on down.
    if state.ip_forward_before is None:
        state.ip_forward_before = IP_FORWARD.read_text(encoding="utf-8").strip()
        state.save()
    if IP_FORWARD.read_text(encoding="utf-8").strip() != "1":
        IP_FORWARD.write_text("1\n", encoding="utf-8")

    _load_host_table(resolver)
    _load_netns_table(resolver)
    _load_firewall(state, firewall)
    for bridge in sorted(set(bridges) | {WAN_BRIDGE}):
        run(
            [
                *("ip", "-n", NETNS, "link", "set", bridge, "type", "bridge"),
                *("nf_call_iptables", "1", "nf_call_ip6tables", "1"),
            ]
        )
    wanted = {stand_in.netns for stand_in in firewall.nodes}
    for stale in sorted(set(_node_namespaces(state)) - wanted):
        run(["ip", "netns", "delete", stale], check=False)
        if stale in state.node_netns:
            state.node_netns.remove(stale)
    for stand_in in firewall.nodes:
        _ensure_node(state, stand_in)
    state.save()


def _load_firewall(state: LabState, firewall: LabFirewall) -> None:
    """Both tables replaced in one ``nft`` transaction: nothing is ever half loaded."""
    run(in_netns(["nft", "-f", "-"]), input=firewall.ruleset())
    state.firewall_hash = firewall.digest()
    state.save()


def _node_namespaces(state: LabState) -> list[str]:
    """The node stand-ins' namespaces: those recorded, and any of the lab's name."""
    found = set(state.node_netns)
    runs = Path("/run/netns")
    if runs.is_dir():
        found |= {path.name for path in runs.glob(f"{NODE_NETNS_PREFIX}*")}
    return sorted(found)


def _ensure_node(state: LabState, stand_in: NodeStandIn) -> None:
    """A node's own IP stack: its namespace, behind a veth on the lab bridge."""
    if not (Path("/run/netns") / stand_in.netns).exists():
        run(["ip", "netns", "add", stand_in.netns])
    if stand_in.netns not in state.node_netns:
        state.node_netns.append(stand_in.netns)
        state.save()
    inner = run(["ip", "-n", stand_in.netns, "link", "show", stand_in.inner], check=False)
    if stand_in.port in _links(netns=True) and inner.returncode != 0:
        run(["ip", "-n", NETNS, "link", "delete", stand_in.port])
    if stand_in.port not in _links(netns=True):
        run(
            [
                *("ip", "-n", NETNS, "link", "add", stand_in.port, "type", "veth"),
                *("peer", "name", stand_in.inner, "netns", stand_in.netns),
            ]
        )
    run(["ip", "-n", NETNS, "link", "set", stand_in.port, "master", stand_in.bridge, "up"])
    node = ["nsenter", f"--net=/run/netns/{stand_in.netns}", "--"]
    run([*node, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
    inside = ["ip", "-n", stand_in.netns]
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "link", "set", stand_in.inner, "address", stand_in.mac])
    run([*inside, "addr", "replace", str(stand_in.address), "dev", stand_in.inner])
    run([*inside, "link", "set", stand_in.inner, "up"])


def firewall_present() -> bool:
    """Both of the recorded firewall's tables are loaded in the lab namespace."""
    return all(
        run(in_netns(["nft", "list", "table", family, FIREWALL_TABLE]), check=False).returncode == 0
        for family in ("bridge", "inet")
    )


def _load_host_table(resolver: IPv4Address) -> None:
    run(["nft", "delete", "table", "ip", HOST_NFT_TABLE], check=False)
    run(["nft", "-f", "-"], input=host_ruleset(resolver))


def _load_netns_table(resolver: IPv4Address) -> None:
    run(in_netns(["nft", "delete", "table", "inet", NETNS_NFT_TABLE]), check=False)
    run(in_netns(["nft", "-f", "-"]), input=netns_ruleset(resolver))


def host_table_present() -> bool:
    return run(["nft", "list", "table", "ip", HOST_NFT_TABLE], check=False).returncode == 0


def remove_network(state: LabState) -> list[str]:
    """Undo ``ensure_network``; safe when parts (or all) are already gone."""
    done = []
    # Without nft on the machine there is no table of ours to remove.
    if (
        shutil.which("nft")
        and run(["nft", "delete", "table", "ip", HOST_NFT_TABLE], check=False).returncode == 0
    ):
        done.append(f"nft table ip {HOST_NFT_TABLE}")
    if HOST_VETH in _links():
        run(["ip", "link", "delete", HOST_VETH], check=False)
        done.append(f"veth {HOST_VETH}")
    if _netns_exists():
        # Deleting the namespace removes its bridges, veths and nft tables with it.
        run(["ip", "netns", "delete", NETNS], check=False)
        done.append(f"network namespace {NETNS}, its bridges and firewall tables")
    for name in _node_namespaces(state):
        if run(["ip", "netns", "delete", name], check=False).returncode == 0:
            done.append(f"node stand-in namespace {name}")
    state.node_netns.clear()
    state.firewall_hash = None
    state.netns = False
    if state.ip_forward_before is not None:
        IP_FORWARD.write_text(state.ip_forward_before + "\n", encoding="utf-8")
        done.append(f"net.ipv4.ip_forward back to {state.ip_forward_before}")
        state.ip_forward_before = None
    state.save()
    return done


# --- the release server -----------------------------------------------------------------


_SERVER_MARKER = "zlh-lab-releases"


def ensure_release_server(state: LabState, releases: Path, log: Path) -> bool:
    """Serve ``releases`` at the lab WAN gateway, from inside the lab namespace."""
    if not releases.is_dir():
        return False
    if state.release_server_pid and _alive(state.release_server_pid):
        return True
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            in_netns(
                [
                    sys.executable,
                    "-m",
                    "http.server",
                    str(RELEASE_PORT),
                    "--bind",
                    str(WAN_GATEWAY.ip),
                    "--directory",
                    str(releases),
                ]
            ),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
            env={**os.environ, "ZLH_LAB_ROLE": _SERVER_MARKER},
        )
    state.release_server_pid = process.pid
    state.save()
    time.sleep(0.3)
    return process.poll() is None


def stop_release_server(state: LabState) -> bool:
    pid = state.release_server_pid
    stopped = False
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        stopped = True
    state.release_server_pid = None
    state.save()
    return stopped


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still the release server the lab started (not a reused pid)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"ZLH_LAB_ROLE={_SERVER_MARKER}".encode() in environ.split(b"\0")
