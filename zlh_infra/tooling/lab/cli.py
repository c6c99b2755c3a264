"""``python -m zlh_infra lab up|check|server|down``: the lab's command line (root only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.lab.system import LabError


def register(commands: Any) -> None:
    """Add ``lab`` to the project's command line (``zlh_infra.cli``)."""
    lab = commands.add_parser(
        "lab",
        help="run the program's in-guest steps against local LXC containers (root)",
        description=(
            "A local lab standing for both Proxmox hosts: one LXC container per recorded "
            "container, a small router stand-in per router VM, and every recorded "
            "in-guest step run as the program records it. See docs/lab.md."
        ),
    )
    actions = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="build the lab and run the steps that changed")
    up.add_argument(
        "--keep-going",
        action="store_true",
        help="after a failed step, run everything that does not depend on it (exit 1 at the end)",
    )
    up.add_argument(
        "--artifacts",
        type=Path,
        metavar="DIR",
        help=(
            "an operator's mirror of vendor artifacts: a download of the stack files whose "
            "file name is in DIR is served from there (its SHA-256 still checked)"
        ),
    )
    check = actions.add_parser("check", help="check the lab's guests and services")
    check.add_argument("--format", choices=("table", "json"), default="table")
    server = actions.add_parser(
        "server",
        help="make, list or delete a server the way zpack-api makes one (docs/fleet.md)",
    )
    servers = server.add_subparsers(dest="server_command", required=True, metavar="ACTION")
    create = servers.add_parser(
        "create", help="clone a template with the exported settings and register its route"
    )
    create.add_argument("--role", choices=("game", "dev"), required=True)
    create.add_argument("--name", required=True, help="its name: a DNS label (its route's name)")
    delete = servers.add_parser("delete", help="remove its route, then the server")
    delete.add_argument("--name", required=True, help="the name it was created with")
    servers.add_parser("list", help="the servers made so, one per line")
    down = actions.add_parser("down", help="remove everything the lab made")
    down.add_argument(
        "--purge", action="store_true", help="also remove the cached root file system and apt cache"
    )
    lab.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from zlh_infra.tooling.lab import commands, server
    from zlh_infra.tooling.lab.api_servers import ApiServerError

    try:
        if args.lab_command == "server":
            if args.server_command == "create":
                return server.create(role=args.role, name=args.name)
            if args.server_command == "delete":
                return server.delete(name=args.name)
            return server.list_servers()
        if args.lab_command == "up":
            return commands.up(keep_going=args.keep_going, artifacts=args.artifacts)
        if args.lab_command == "check":
            return commands.check(output_format=args.format)
        return commands.down(purge_cache=args.purge)
    except (LabError, ApiServerError) as error:
        print(f"lab: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
