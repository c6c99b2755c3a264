#!/usr/bin/python3
"""zlh-fleet-sd: Prometheus file discovery of the runtime hosts' node exporters.

Installed on zlh-monitor as ``/usr/local/sbin/zlh-fleet-sd`` and run by a timer. On the
management network each runtime host has a block (the platform's address rule): one
address per game and dev VMID, then one per runtime-host service (zlh-artifacts, ...).
So the candidates are known without reading any runtime stack or API: every address of
each block is probed on the exporter's port, and those that answer are written, with
their VMID or service name, to ``<output>/<node>.json`` (atomically, only on change).
Containers zpack-api makes are found the same way as declared ones.

Standalone on purpose: Python's standard library only, no import from this project.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Fleet:
    """One runtime host's fleet block on the management network."""

    node: str
    #: The management address of the fleet's first VMID.
    first_address: ipaddress.IPv4Address
    first_vmid: int
    count: int
    port: int
    #: Runtime-host service name -> its address's distance from ``first_address``.
    services: tuple[tuple[str, int], ...] = ()


def load(path: Path) -> list[Fleet]:
    document = json.loads(path.read_text())
    return [
        Fleet(
            node=str(entry["node"]),
            first_address=ipaddress.IPv4Address(entry["firstAddress"]),
            first_vmid=int(entry["firstVmid"]),
            count=int(entry["count"]),
            port=int(entry["port"]),
            services=tuple(
                (str(name), int(index)) for name, index in sorted(entry["services"].items())
            ),
        )
        for entry in document["fleets"]
    ]


def candidates(fleet: Fleet) -> list[tuple[dict[str, str], ipaddress.IPv4Address]]:
    """(labels, address) of every place in the block: fleet VMIDs, then services."""
    node = fleet.node
    found = [
        (
            {
                "instance": f"{node}/{fleet.first_vmid + i}",
                "node": node,
                "vmid": str(fleet.first_vmid + i),
            },
            fleet.first_address + i,
        )
        for i in range(fleet.count)
    ]
    found += [
        ({"instance": f"{node}/{name}", "node": node, "service": name}, fleet.first_address + index)
        for name, index in fleet.services
    ]
    return found


def answers(address: ipaddress.IPv4Address, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((str(address), port), timeout=timeout):
            return True
    except OSError:
        return False


def targets(
    fleet: Fleet,
    probe: Callable[[ipaddress.IPv4Address, int], bool],
    workers: int = 32,
) -> list[dict[str, object]]:
    """The file-discovery document for ``fleet``: one group per answering container."""
    found = candidates(fleet)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        alive = list(pool.map(lambda item: probe(item[1], fleet.port), found))
    return [
        {"targets": [f"{address}:{fleet.port}"], "labels": labels}
        for (labels, address), up in zip(found, alive, strict=True)
        if up
    ]


def write_if_changed(path: Path, groups: Sequence[dict[str, object]]) -> bool:
    text = json.dumps(list(groups), indent=2, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
    return True


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zlh-fleet-sd", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/zlh/fleet-sd.json"))
    parser.add_argument("--output", type=Path, default=Path("/etc/prometheus/fleet"))
    parser.add_argument("--timeout", type=float, default=0.5, help="seconds per probe")
    options = parser.parse_args(list(argv) if argv is not None else None)
    try:
        fleets = load(options.config)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"zlh-fleet-sd: {options.config}: {error}", file=sys.stderr)
        return 2
    for fleet in fleets:
        groups = targets(fleet, lambda a, p: answers(a, p, options.timeout))
        if write_if_changed(options.output / f"{fleet.node}.json", groups):
            print(f"zlh-fleet-sd: {fleet.node}: {len(groups)} exporters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
