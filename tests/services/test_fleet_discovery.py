"""zlh-fleet-sd finds a runtime host's exporters by probing their derived addresses."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from zlh_infra.services import fleet_discovery, prometheus
from zlh_infra.services.plan import configure_script


@pytest.fixture
def exporters() -> Iterator[int]:
    """Listeners on 127.0.0.2, .4 (VMIDs 1001, 1003 of a block at .1) and .8 (a service)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = int(probe.getsockname()[1])
    listeners = []
    for address in ("127.0.0.2", "127.0.0.4", "127.0.0.8"):
        listener = socket.socket()
        listener.bind((address, port))
        listener.listen()
        listeners.append(listener)
    yield port
    for listener in listeners:
        listener.close()


def write_config(path: Path, port: int) -> None:
    block = prometheus.FleetBlock(
        "zlh-runtime",
        IPv4Address("127.0.0.1"),
        1000,
        5,
        port,
        services=(("zlh-artifacts", 7), ("zlh-build", 8)),
    )
    path.write_text(prometheus.discovery_config([block]))


def test_answering_containers_are_written_with_their_vmid_or_service(
    tmp_path: Path, exporters: int
) -> None:
    write_config(tmp_path / "fleet-sd.json", exporters)
    out = tmp_path / "out"
    out.mkdir()
    args = ["--config", str(tmp_path / "fleet-sd.json"), "--output", str(out), "--timeout", "0.2"]
    script = Path(fleet_discovery.__file__)
    first = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "zlh-fleet-sd: zlh-runtime: 3 exporters\n"
    assert json.loads((out / "zlh-runtime.json").read_text()) == [
        {
            "labels": {"instance": "zlh-runtime/1001", "node": "zlh-runtime", "vmid": "1001"},
            "targets": [f"127.0.0.2:{exporters}"],
        },
        {
            "labels": {"instance": "zlh-runtime/1003", "node": "zlh-runtime", "vmid": "1003"},
            "targets": [f"127.0.0.4:{exporters}"],
        },
        {
            "labels": {
                "instance": "zlh-runtime/zlh-artifacts",
                "node": "zlh-runtime",
                "service": "zlh-artifacts",
            },
            "targets": [f"127.0.0.8:{exporters}"],
        },
    ]
    # Nothing changed: the file is left alone (Prometheus reloads it on change only).
    again = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    assert (again.returncode, again.stdout) == (0, "")


def test_a_bad_config_exits_2_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "fleet-sd.json").write_text('{"fleets": [{"node": "x"}]}')
    code = fleet_discovery.main(["--config", str(tmp_path / "fleet-sd.json")])
    assert code == 2


def test_the_block_covers_the_game_and_dev_ranges_then_the_services() -> None:
    block = fleet_discovery.Fleet(
        "zlh-runtime", IPv4Address("10.99.1.0"), 1000, 200, 9100, (("zlh-velocity", 203),)
    )
    found = fleet_discovery.candidates(block)
    assert found[0] == (
        {"instance": "zlh-runtime/1000", "node": "zlh-runtime", "vmid": "1000"},
        IPv4Address("10.99.1.0"),
    )
    assert found[199][1] == IPv4Address("10.99.1.199")
    assert found[200] == (
        {"instance": "zlh-runtime/zlh-velocity", "node": "zlh-runtime", "service": "zlh-velocity"},
        IPv4Address("10.99.1.203"),
    )


def test_prometheus_ships_the_script_and_runs_it_on_a_timer() -> None:
    block = prometheus.FleetBlock("zlh-runtime", IPv4Address("10.99.1.0"), 1000, 200, 9100)
    plan = prometheus.plan(guest="zlh-monitor", targets=[], retention="30d", fleets=[block])
    files = {f.path: f for f in plan.files}
    assert files[prometheus.DISCOVERY].content == Path(fleet_discovery.__file__).read_text()
    assert files[prometheus.DISCOVERY].mode == 0o755
    assert json.loads(files[prometheus.DISCOVERY_CONFIG].content) == {
        "fleets": [
            {
                "node": "zlh-runtime",
                "firstAddress": "10.99.1.0",
                "firstVmid": 1000,
                "count": 200,
                "port": 9100,
                "services": {},
            }
        ]
    }
    assert "zlh-fleet-sd.timer" in plan.units
    assert "OnUnitActiveSec=60s" in files["/etc/systemd/system/zlh-fleet-sd.timer"].content
    assert "systemctl is-active --quiet zlh-fleet-sd.timer" in configure_script([plan])
