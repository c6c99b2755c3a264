"""``lab check``'s reachability matrix and spoofing: the probe scripts, and the judging."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest

from tests.tooling.lab.fwlab import PLAN, firewall
from zlh_infra.platform.catalogue import AGENT_PORT, METRICS_PORT
from zlh_infra.platform.reachability import TCP
from zlh_infra.tooling.lab import matrix
from zlh_infra.tooling.lab.checks import CheckContext, CheckResult, ExecResult
from zlh_infra.tooling.lab.firewall import LabFirewall
from zlh_infra.tooling.lab.matrix import (
    LISTENER,
    LISTENER_MARK,
    PROBE,
    SPOOF,
    firewall_checks,
    listening,
    matrix_cells,
    platform_ports,
    serves,
)

# --- the scripts, for real, on the loopback -----------------------------------------------


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(probes: list[list[object]], timeout: float = 1.0) -> dict[str, str]:
    spec = json.dumps({"timeout": timeout, "window": 64, "probes": probes})
    done = subprocess.run(
        [sys.executable, "-c", PROBE], input=spec, capture_output=True, text=True, check=True
    )
    answer: dict[str, str] = json.loads(done.stdout)
    return answer


def test_listener_and_probe_tell_open_from_refused_for_tcp_and_udp() -> None:
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    closed_tcp, closed_udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    spec = {
        "listen": [
            ["tcp", "127.0.0.1", tcp],
            ["udp", "127.0.0.1", udp],
            ["tcp", "192.0.2.55", tcp],
        ],
        "seconds": 30,
    }
    started = subprocess.run(
        [sys.executable, "-c", LISTENER, json.dumps(spec), LISTENER_MARK],
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(started.stdout)
    try:
        assert answer["listening"] == 2
        # An address the machine does not have is reported, not silently skipped.
        assert [f[:3] for f in answer["failed"]] == [["tcp", "192.0.2.55", tcp]]
        found = _probe(
            [
                ["tcp-open", "tcp", "127.0.0.1", "127.0.0.1", tcp],
                ["udp-open", "udp", "127.0.0.1", "127.0.0.1", udp],
                ["tcp-closed", "tcp", "", "127.0.0.1", closed_tcp],
                ["udp-closed", "udp", "", "127.0.0.1", closed_udp],
                ["no-such-source", "tcp", "192.0.2.55", "127.0.0.1", tcp],
            ]
        )
        assert found == {
            "tcp-open": "open",
            "udp-open": "open",
            "tcp-closed": "ECONNREFUSED",
            "udp-closed": "ECONNREFUSED",
            "no-such-source": "EADDRNOTAVAIL",
        }
    finally:
        os.kill(int(answer["pid"]), signal.SIGTERM)


def test_a_probe_nothing_answers_times_out() -> None:
    # A UDP socket that never answers: the datagram arrives, no reply comes.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        assert _probe([["x", "udp", "", "127.0.0.1", port]], timeout=0.5) == {"x": "timeout"}


def test_sockets_from_ss_and_which_of_them_answer_an_address() -> None:
    tcp = listening(
        "LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n"
        "LISTEN 0 128 [::]:22 [::]:*\n"
        "LISTEN 0 4096 10.99.1.0:18888 0.0.0.0:*\n"
        "LISTEN 0 4096 *:9100 *:*\n"
        "LISTEN 0 4096 [::]:3000 [::]:*\n"
        "UNCONN 0 0 10.20.0.1%eth1:53 0.0.0.0:*\n"
    )
    assert serves(tcp, "10.20.1.0", 22) and serves(tcp, "10.99.1.0", 9100)
    assert serves(tcp, "10.99.1.0", 18888) and not serves(tcp, "10.20.1.0", 18888)
    # [::] alone is an IPv6 socket: IPv4 to that port needs a listener of its own.
    assert not serves(tcp, "10.20.1.0", 3000)
    assert serves(tcp, "10.20.0.1", 53)


@pytest.mark.parametrize("mac", ["", "02:00:00:00:00:0b"])
def test_spoofing_gives_the_nic_back_its_mac_and_addresses(mac: str) -> None:
    ran: list[list[str]] = []
    script = "\n".join(
        [
            'ip() { echo "ip $*" >> "$LOG"; }',
            'python3() { echo "probe" >> "$LOG"; exit 7; }',
            SPOOF,
        ]
    )
    log = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"zlh-spoof-{os.getpid()}-{len(mac)}.log")
    try:
        done = subprocess.run(
            ["sh", "-c", script, "sh", "eth1", "02:00:00:00:00:0a", "10.99.0.10/22", mac, "x"],
            env={**os.environ, "LOG": log},
            capture_output=True,
            text=True,
            check=False,
        )
        with open(log, encoding="utf-8") as handle:
            ran = [line.split() for line in handle.read().splitlines()]
    finally:
        if os.path.exists(log):
            os.remove(log)
    # The probe's own failure is passed back, and the NIC is restored anyway.
    assert done.returncode == 7
    expected = [["ip", "addr", "add", "10.99.0.10/22", "dev", "eth1"], ["probe"]]
    restore = [["ip", "addr", "del", "10.99.0.10/22", "dev", "eth1"]]
    if mac:
        expected.insert(0, ["ip", "link", "set", "dev", "eth1", "address", mac])
        restore.append(["ip", "link", "set", "dev", "eth1", "address", "02:00:00:00:00:0a"])
    assert ran == expected + restore


# --- the matrix against a fake lab ------------------------------------------------------


class FakeLab:
    """Containers and node stand-ins whose network behaves as ``truth`` says."""

    def __init__(self, fw: LabFirewall, truth: Callable[[str], bool]) -> None:
        self.fw = fw
        self.truth = truth
        self.served: dict[str, str] = {"guest:1000": "LISTEN 0 128 10.99.1.0:18888 0.0.0.0:*\n"}
        self.listeners: dict[str, list[list[object]]] = {}
        self.stopped: list[str] = []
        self.spoofs: list[tuple[str, ...]] = []
        self.pid = 4000

    def status(self, vmid: int) -> str | None:
        return "running"

    def run(
        self, vmid: int, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60
    ) -> ExecResult:
        return self._answer(f"guest:{vmid}", argv, stdin)

    def run_node(
        self, node: str, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60
    ) -> ExecResult:
        return self._answer(f"node:{node}", argv, stdin)

    def _answer(self, owner: str, argv: Sequence[str], stdin: str | None) -> ExecResult:
        if argv[0] == "true":
            return ExecResult(0, "", "")
        if argv[:2] == ["ss", "-lntH"]:
            return ExecResult(0, self.served.get(owner, ""), "")
        if argv[:2] == ["ss", "-lnuH"]:
            return ExecResult(0, "", "")
        if argv[:3] == ["python3", "-c", LISTENER]:
            self.pid += 1
            self.listeners[owner] = json.loads(argv[3])["listen"]
            return ExecResult(0, json.dumps({"pid": self.pid, "listening": 1, "failed": []}), "")
        if argv[:3] == ["python3", "-c", PROBE]:
            probes = json.loads(stdin or "{}")["probes"]
            outcomes = {p[0]: "open" if self.truth(p[0]) else "timeout" for p in probes}
            return ExecResult(0, json.dumps(outcomes), "")
        if argv[:3] == ["sh", "-c", SPOOF]:
            self.spoofs.append(tuple(argv[3:8]))
            probes = json.loads(stdin or "{}")["probes"]
            return ExecResult(0, json.dumps({p[0]: "timeout" for p in probes}), "")
        if argv[:2] == ["ip", "-j"]:
            link = {"address": "02:aa", "addr_info": [{"local": "10.99.1.0", "prefixlen": 22}]}
            return ExecResult(0, json.dumps([link]), "")
        if argv[:2] == ["sh", "-c"] and LISTENER_MARK in argv[2]:
            self.stopped.append(owner)
            return ExecResult(0, "", "")
        return ExecResult(127, "", f"{argv[0]}: not found")


def _as_predicted(fw: LabFirewall, flip: str = "") -> Callable[[str], bool]:
    cells = {c.key: c for c in matrix_cells(fw, {p.owner for p in fw.ports}, PORTS)}

    def truth(key: str) -> bool:
        return cells[key].expected.reachable != (key == flip)

    return truth


PORTS = [22, AGENT_PORT, METRICS_PORT, 8007]


def _run(fw: LabFirewall, lab: FakeLab) -> list[CheckResult]:
    ctx = CheckContext(executor=lab, plan=PLAN)
    return firewall_checks(ctx, fw, ports=PORTS, clock=iter(range(100)).__next__)


def test_a_matrix_that_matches_the_prediction_passes_and_listens_only_where_needed() -> None:
    fw = firewall()
    lab = FakeLab(fw, _as_predicted(fw))
    results = _run(fw, lab)
    summary = results[0]
    assert summary.check == "reachability matrix" and summary.ok is True, summary.detail
    assert not [r for r in results if r.ok is not True], [r for r in results if r.ok is not True]
    # The agent serves its own port: no throwaway listener there; one on every other.
    assert ["tcp", "10.99.1.0", AGENT_PORT] not in lab.listeners["guest:1000"]
    assert ["udp", "10.99.1.0", AGENT_PORT] in lab.listeners["guest:1000"]
    assert ["tcp", "10.99.0.2", 22] in lab.listeners["node:zlh-core"]
    assert sorted(lab.stopped) == sorted(lab.listeners)
    # Every forged identity was tried, and each passed: nothing answered, the real one did.
    spoofing = [r for r in results if r.check.startswith("spoofing: ")]
    assert [r.check for r in spoofing] == [
        "spoofing: takes zpack-api's address",
        "spoofing: takes zpack-api's MAC",
        "spoofing: takes zpack-api's address and MAC",
        "spoofing: takes node zlh-core's address",
    ]
    assert all(r.ok for r in spoofing)
    game, api = fw.port("veth1000i1"), fw.port("veth100i1")
    assert lab.spoofs[:2] == [
        ("sh", "eth1", game.mac, "10.99.0.10/22", ""),
        ("sh", "eth1", game.mac, "", api.mac),
    ]
    isolation = [r for r in results if r.check == "reaches no other agent, no PBS, no node"]
    assert [(r.guest, r.ok) for r in isolation] == [("mc-survival", True), ("mc-creative", True)]


def test_every_disagreement_is_a_failed_check_naming_sender_receiver_protocol_and_port() -> None:
    fw = firewall()
    key = "veth1001i1>veth1000i1/tcp/18888"
    results = _run(fw, FakeLab(fw, _as_predicted(fw, flip=key)))
    failed = [r for r in results if r.ok is False]
    summary = results[0]
    assert summary.ok is False and "1 do not" in summary.detail
    disagreement = next(r for r in failed if r.check.startswith("reachability mc-creative"))
    assert disagreement.check == (
        "reachability mc-creative net1 10.99.1.1 -> mc-survival net1 10.99.1.0 TCP 18888"
    )
    assert disagreement.detail.startswith("measured open, the evaluator predicts blocked")
    # A game container reaching another's agent breaks its isolation too.
    isolation = next(r for r in failed if r.check == "reaches no other agent, no PBS, no node")
    assert isolation.guest == "mc-creative" and "18888" in isolation.detail


def test_a_game_container_reaching_a_node_fails_its_isolation() -> None:
    fw = firewall()
    key = "veth1000i1>zlhlab-n1/tcp/22"
    results = _run(fw, FakeLab(fw, _as_predicted(fw, flip=key)))
    isolation = next(r for r in results if r.check == "reaches no other agent, no PBS, no node")
    assert isolation.guest == "mc-survival" and isolation.ok is False
    assert "zlh-runtime vmbr2 10.99.0.3 TCP 22" in isolation.detail


def test_a_spoof_that_gets_an_answer_fails() -> None:
    fw = firewall()
    lab = FakeLab(fw, _as_predicted(fw))
    answered = lab._answer

    def leaky(owner: str, argv: Sequence[str], stdin: str | None) -> ExecResult:
        # ``sh -c SPOOF sh <dev> <own MAC> <address> <MAC> <probe>``: an address, no MAC.
        if argv[:3] == ["sh", "-c", SPOOF] and argv[6] and not argv[7]:
            probes = json.loads(stdin or "{}")["probes"]
            return ExecResult(0, json.dumps({p[0]: "open" for p in probes}), "")
        return answered(owner, argv, stdin)

    lab._answer = leaky  # type: ignore[method-assign]
    results = _run(fw, lab)
    spoofing = {r.check: r for r in results if r.check.startswith("spoofing: ")}
    assert spoofing["spoofing: takes zpack-api's address"].ok is False
    assert "answered from 10.99.0.10" in spoofing["spoofing: takes zpack-api's address"].detail
    assert spoofing["spoofing: takes zpack-api's MAC"].ok is True


def test_a_spoof_no_genuine_sender_gets_through_either_proves_nothing() -> None:
    fw = firewall()
    # Nothing answers anyone: the spoofing attempts could not have failed.
    results = _run(fw, FakeLab(fw, lambda key: False))
    spoofing = [r for r in results if r.check.startswith("spoofing: ")]
    assert spoofing and all(r.ok is False for r in spoofing)
    assert "nothing shows the attempt could have worked" in spoofing[0].detail


def test_a_nic_left_changed_after_spoofing_fails() -> None:
    fw = firewall()
    lab = FakeLab(fw, _as_predicted(fw))
    answered = lab._answer
    calls = {"n": 0}

    def drifting(owner: str, argv: Sequence[str], stdin: str | None) -> ExecResult:
        if argv[:2] == ["ip", "-j"]:
            calls["n"] += 1
            mac = "02:aa" if calls["n"] == 1 else "02:bb"
            link = {"address": mac, "addr_info": []}
            return ExecResult(0, json.dumps([link]), "")
        return answered(owner, argv, stdin)

    lab._answer = drifting  # type: ignore[method-assign]
    results = _run(fw, lab)
    first = next(r for r in results if r.check.startswith("spoofing: "))
    assert first.ok is False and "not restored" in first.detail


def test_a_receiver_without_its_listener_is_not_measured_and_fails() -> None:
    fw = firewall()
    lab = FakeLab(fw, _as_predicted(fw))
    answered = lab._answer

    def no_listener(owner: str, argv: Sequence[str], stdin: str | None) -> ExecResult:
        if owner == "node:zlh-core" and argv[:3] == ["python3", "-c", LISTENER]:
            return ExecResult(1, "", "Traceback: boom")
        return answered(owner, argv, stdin)

    lab._answer = no_listener  # type: ignore[method-assign]
    results = _run(fw, lab)
    assert results[0].ok is False
    assert any(
        r.ok is False and "-> zlh-core vmbr2" in r.check and r.detail.startswith("not measured")
        for r in results
    )


def test_a_port_the_listener_could_not_bind_is_not_measured_whatever_the_prediction() -> None:
    fw = firewall()
    lab = FakeLab(fw, _as_predicted(fw))
    answered = lab._answer

    def busy(owner: str, argv: Sequence[str], stdin: str | None) -> ExecResult:
        if owner == "guest:1001" and argv[:3] == ["python3", "-c", LISTENER]:
            failed = [["tcp", "10.99.1.1", 22, "Address already in use"]]
            return ExecResult(0, json.dumps({"pid": 9, "listening": 1, "failed": failed}), "")
        return answered(owner, argv, stdin)

    lab._answer = busy  # type: ignore[method-assign]
    results = _run(fw, lab)
    unmeasured = [r for r in results if r.detail.startswith("not measured")]
    # Every sender's TCP 22 to mc-creative, predicted blocked or not.
    assert unmeasured and all(r.check.endswith("10.99.1.1 TCP 22") for r in unmeasured)
    assert any("mc-survival" in r.check for r in unmeasured)
    assert results[0].ok is False


def test_the_ports_are_the_platforms_and_the_sample() -> None:
    ports = platform_ports(firewall())
    assert {AGENT_PORT, METRICS_PORT, 8007, 3306, 25565, 53}.issubset(ports)
    assert set(matrix.PORT_SAMPLE).issubset(ports)
    assert TCP in matrix.PROTOCOLS
