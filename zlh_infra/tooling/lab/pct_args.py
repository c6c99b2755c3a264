"""``pct`` command lines as the lab's stand-in understands them (pure: parsing only).

The program reaches into guests through the node's ``pct``. The lab's stand-in knows
the subcommands the program uses, with Proxmox's syntax; anything else is refused
loudly rather than guessed at.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass


class PctUsageError(Exception):
    """A command line the stand-in refuses (unknown subcommand, bad arguments)."""


@dataclass(frozen=True, slots=True)
class PctExec:
    vmid: int
    command: tuple[str, ...]
    keep_env: bool = True


@dataclass(frozen=True, slots=True)
class PctStart:
    vmid: int


@dataclass(frozen=True, slots=True)
class PctShutdown:
    vmid: int
    timeout: int = 60
    force_stop: bool = False


@dataclass(frozen=True, slots=True)
class PctStop:
    vmid: int


@dataclass(frozen=True, slots=True)
class PctStatus:
    vmid: int


@dataclass(frozen=True, slots=True)
class PctResize:
    vmid: int
    disk: str
    size: str


PctCommand = PctExec | PctStart | PctShutdown | PctStop | PctStatus | PctResize

SUBCOMMANDS = ("exec", "start", "shutdown", "stop", "status", "resize")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise PctUsageError(message)


def _vmid(text: str) -> int:
    if not text.isdigit() or not 100 <= int(text) <= 999_999_999:
        raise argparse.ArgumentTypeError(f"invalid VMID {text!r}")
    return int(text)


def _flag(text: str) -> bool:
    """Proxmox booleans: ``--forceStop 1``, ``--forceStop true``; bare ``--forceStop`` is 1."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def _parser() -> _Parser:
    parser = _Parser(prog="pct", add_help=False)
    commands = parser.add_subparsers(dest="subcommand", parser_class=_Parser)
    execute = commands.add_parser("exec", add_help=False)
    execute.add_argument("vmid", type=_vmid)
    execute.add_argument("--keep-env", type=_flag, nargs="?", const=True, default=True)
    execute.add_argument("command", nargs=argparse.REMAINDER)
    start = commands.add_parser("start", add_help=False)
    start.add_argument("vmid", type=_vmid)
    start.add_argument("--skiplock", type=_flag, nargs="?", const=True, default=False)
    shutdown = commands.add_parser("shutdown", add_help=False)
    shutdown.add_argument("vmid", type=_vmid)
    shutdown.add_argument("--timeout", type=int, default=60)
    shutdown.add_argument("--forceStop", type=_flag, nargs="?", const=True, default=False)
    stop = commands.add_parser("stop", add_help=False)
    stop.add_argument("vmid", type=_vmid)
    stop.add_argument("--skiplock", type=_flag, nargs="?", const=True, default=False)
    status = commands.add_parser("status", add_help=False)
    status.add_argument("vmid", type=_vmid)
    resize = commands.add_parser("resize", add_help=False)
    resize.add_argument("vmid", type=_vmid)
    resize.add_argument("disk")
    resize.add_argument("size")
    return parser


def parse_pct(argv: Sequence[str]) -> PctCommand:
    """``pct`` arguments (without ``pct``) -> the command, or ``PctUsageError``."""
    if not argv:
        raise PctUsageError("no subcommand")
    if argv[0] not in SUBCOMMANDS:
        raise PctUsageError(
            f"subcommand {argv[0]!r} is not one the lab stands in for "
            f"(it knows: {', '.join(SUBCOMMANDS)})"
        )
    args = _parser().parse_args(list(argv))
    if args.subcommand == "exec":
        command = list(args.command)
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            raise PctUsageError("exec: no command given after --")
        return PctExec(args.vmid, tuple(command), keep_env=args.keep_env)
    if args.subcommand == "start":
        return PctStart(args.vmid)
    if args.subcommand == "shutdown":
        if args.timeout < 0:
            raise PctUsageError("shutdown: --timeout must not be negative")
        return PctShutdown(args.vmid, timeout=args.timeout, force_stop=args.forceStop)
    if args.subcommand == "stop":
        return PctStop(args.vmid)
    if args.subcommand == "status":
        return PctStatus(args.vmid)
    return PctResize(args.vmid, args.disk, args.size)
