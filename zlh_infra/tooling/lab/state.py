"""What the lab made and what it changed, kept in ``<state>/state.json`` between runs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlh_infra.tooling.lab.api_servers import ApiServer
from zlh_infra.tooling.lab.system import LabError

#: 2: each server of ``lab server create`` remembers its route host's kind.
STATE_VERSION = 2


@dataclass(slots=True)
class GuestState:
    spec_hash: str
    #: Read-only layers under the container's changes, topmost first.
    lowers: list[str]


@dataclass(slots=True)
class LabState:
    path: Path
    netns: bool = False
    #: ``net.ipv4.ip_forward`` before the lab set it (restored by ``lab down``).
    ip_forward_before: str | None = None
    #: Kernel settings (``/proc/sys`` paths) the lab raised, with their values before.
    sysctl_before: dict[str, str] = field(default_factory=dict)
    #: The subordinate ID files the lab added root's range to.
    added_subids: list[str] = field(default_factory=list)
    guests: dict[int, GuestState] = field(default_factory=dict)
    #: Step URN -> hash of the (create, stdin, triggers) that last succeeded.
    steps: dict[str, str] = field(default_factory=dict)
    #: Step URN -> hash of a run that exited 69: a vendor artifact could not be fetched.
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Why each unavailable step could not run (its own message, secrets masked).
    unavailable_reasons: dict[str, str] = field(default_factory=dict)
    #: Step URN -> the ``hash`` it last succeeded with and the ``stdout`` it printed then
    #: (kept like the engine's state: later runs of the program read it; this file is 0600).
    printed: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Runtime stack -> its exported ``routeHostKeys``, copied into the core's config.
    route_host_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The servers ``lab server`` made as zpack-api makes them, by VMID.
    api_servers: dict[int, ApiServer] = field(default_factory=dict)
    #: Steps the last ``up`` held back, and what each waits for.
    waiting: dict[str, str] = field(default_factory=dict)
    release_server_pid: int | None = None
    #: The node stand-ins' network namespaces the lab made (``zlh-lab-<node>``).
    node_netns: list[str] = field(default_factory=list)
    #: SHA-256 of the Proxmox firewall ruleset ``lab up`` loaded.
    firewall_hash: str | None = None
    #: How many clone snapshots the lab has taken (names their layer directories).
    layer_counter: int = 0

    @classmethod
    def load(cls, path: Path, *, any_version: bool = False) -> LabState:
        """The state at ``path``; ``any_version`` reads what ``lab down`` needs of a
        state another version of the lab wrote (everything else refuses it)."""
        if not path.is_file():
            return cls(path=path)
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            if not any_version:
                raise LabError(f"{path}: state of another lab version; run `lab down` first")
            data.pop("apiServers", None)
        return cls(
            path=path,
            netns=bool(data.get("netns")),
            ip_forward_before=data.get("ipForwardBefore"),
            sysctl_before=dict(data.get("sysctlBefore", {})),
            added_subids=list(data.get("addedSubids", [])),
            guests={
                int(vmid): GuestState(spec_hash=g["specHash"], lowers=list(g["lowers"]))
                for vmid, g in data.get("guests", {}).items()
            },
            steps=dict(data.get("steps", {})),
            unavailable=dict(data.get("unavailable", {})),
            unavailable_reasons=dict(data.get("unavailableReasons", {})),
            printed={
                urn: {"hash": str(entry["hash"]), "stdout": str(entry["stdout"])}
                for urn, entry in data.get("printed", {}).items()
            },
            route_host_keys={
                str(stack): dict(keys) for stack, keys in data.get("routeHostKeys", {}).items()
            },
            api_servers={
                int(vmid): ApiServer.from_json(server)
                for vmid, server in data.get("apiServers", {}).items()
            },
            waiting=dict(data.get("waiting", {})),
            release_server_pid=data.get("releaseServerPid"),
            node_netns=list(data.get("nodeNetns", [])),
            firewall_hash=data.get("firewallHash"),
            layer_counter=int(data.get("layerCounter", 0)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "netns": self.netns,
            "ipForwardBefore": self.ip_forward_before,
            "sysctlBefore": self.sysctl_before,
            "addedSubids": self.added_subids,
            "guests": {
                str(vmid): {"specHash": g.spec_hash, "lowers": g.lowers}
                for vmid, g in sorted(self.guests.items())
            },
            "steps": dict(sorted(self.steps.items())),
            "unavailable": dict(sorted(self.unavailable.items())),
            "unavailableReasons": dict(sorted(self.unavailable_reasons.items())),
            "printed": dict(sorted(self.printed.items())),
            "routeHostKeys": dict(sorted(self.route_host_keys.items())),
            "apiServers": {
                str(vmid): server.to_json() for vmid, server in sorted(self.api_servers.items())
            },
            "waiting": dict(sorted(self.waiting.items())),
            "releaseServerPid": self.release_server_pid,
            "nodeNetns": self.node_netns,
            "firewallHash": self.firewall_hash,
            "layerCounter": self.layer_counter,
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, indent=1)
            handle.write("\n")
        os.replace(temporary, self.path)
