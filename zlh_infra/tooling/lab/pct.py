"""The lab's ``pct``: Proxmox's container tool, standing in on the lab host's PATH.

Steps run on the node's shell and enter guests with ``pct``; in the lab that shell
is the host's (inside the lab namespace) and this module answers ``pct`` onto LXC:

    pct exec <vmid> -- <cmd...>     lxc-attach (stdin passed through, exit code passed back)
    pct start <vmid>                lxc-start, after writing the files Proxmox manages
    pct shutdown <vmid> [--timeout N] [--forceStop 1]
    pct stop <vmid>                 lxc-stop --kill
    pct status <vmid>               prints "status: running" or "status: stopped"
    pct resize <vmid> <disk> <size> a no-op in the lab (logged)

Any other subcommand fails loudly (exit 2). Errors Proxmox would report (no such
container, not running, already running) exit 255 with Proxmox's wording. Run as
``python -m zlh_infra.tooling.lab.pct``; ``lab up`` writes ``<state>/bin/pct`` calling it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.lab import lxc
from zlh_infra.tooling.lab.paths import LabDirs
from zlh_infra.tooling.lab.pct_args import (
    PctExec,
    PctResize,
    PctShutdown,
    PctStart,
    PctStatus,
    PctStop,
    PctUsageError,
    parse_pct,
)
from zlh_infra.tooling.lab.system import LabError

#: What Proxmox's CLI exits with when a command dies.
EXIT_FAILED = 255


def _log(dirs: LabDirs, message: str) -> None:
    dirs.logs.mkdir(parents=True, exist_ok=True)
    with (dirs.logs / "pct.log").open("a", encoding="utf-8") as handle:
        handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")


def _die(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    dirs = LabDirs.from_env()
    try:
        command = parse_pct(arguments)
    except PctUsageError as error:
        print(f"pct (lab stand-in): {error}", file=sys.stderr)
        _log(dirs, f"refused: pct {' '.join(arguments)}: {error}")
        return ExitCode.USAGE
    _log(dirs, f"pct {arguments[0]} {command.vmid}")
    if not lxc.exists(dirs, command.vmid):
        return _die(f"Configuration file 'nodes/lab/lxc/{command.vmid}.conf' does not exist")
    state = lxc.status(command.vmid)
    try:
        if isinstance(command, PctExec):
            if state != "running":
                return _die(f"CT {command.vmid} not running")
            argv_ = lxc.attach_argv(command.vmid, command.command)
            sys.stdout.flush()
            os.execvp(argv_[0], argv_)
        if isinstance(command, PctStart):
            if state == "running":
                return _die(f"CT {command.vmid} already running")
            lxc.start(dirs, command.vmid)
            return 0
        if isinstance(command, PctShutdown):
            if state != "running":
                return _die(f"CT {command.vmid} not running")
            if lxc.shutdown(command.vmid, command.timeout, force=command.force_stop):
                return 0
            return _die(f"CT {command.vmid}: shutdown timed out after {command.timeout} s")
        if isinstance(command, PctStop):
            if state != "running":
                return _die(f"CT {command.vmid} not running")
            lxc.stop(command.vmid)
            return 0
        if isinstance(command, PctStatus):
            print(f"status: {state}")
            return 0
        if isinstance(command, PctResize):
            _log(dirs, f"resize {command.vmid} {command.disk} {command.size}: no-op in the lab")
            return 0
    except LabError as error:
        return _die(str(error))
    return _die(f"unhandled command {command!r}")


def wrapper_script(python: str, project_root: str, dirs: LabDirs) -> str:
    """``<state>/bin/pct``: this module with the lab's directories."""
    return (
        "#!/bin/sh\n"
        "# pct for the ZeroLagHub lab: see zlh_infra/tooling/lab/pct.py and docs/lab.md.\n"
        f"export ZLH_LAB_STATE='{dirs.state}' ZLH_LAB_CACHE='{dirs.cache}'\n"
        f"export PYTHONPATH='{project_root}'\n"
        f"exec '{python}' -m zlh_infra.tooling.lab.pct \"$@\"\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
