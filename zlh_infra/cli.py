"""``python -m zlh_infra``: the project's command line.

Exit codes (``zlh_infra.tooling.exit_codes``):
  0  the command ran and what it checks holds
  1  it does not hold: a mandatory policy violation, an audit finding, a stale diagram
  2  a configuration or usage error (bad arguments, missing or malformed stack file,
     a ConfigError / ContractError raised by the program)
  3  the program itself failed (an exception, a duplicate URN)
 69  something the command needs is missing on this machine
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.preview import command as preview_command
from zlh_infra.tooling.preview.stack_files import StackFileError

#: Each module has ``register(commands)``, which adds its parser; all but ``preview`` set
#: ``handler(args) -> int`` on it.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "zlh_infra.tooling.preview.command",
    "zlh_infra.tooling.reference",
    "zlh_infra.tooling.policy_reference",
    "zlh_infra.tooling.delivery.plan_diff",
    "zlh_infra.tooling.delivery.diagram",
    "zlh_infra.tooling.delivery.routers",
    "zlh_infra.tooling.preview.derived_policy_config",
    "zlh_infra.tooling.audit.cli",
    "zlh_infra.tooling.lab.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zlh_infra",
        description="ZeroLagHub infrastructure tools.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    program: Callable[[], None] | None = None,
    checks: Sequence[preview_command.Check] | None = None,
    cwd: Path | None = None,
) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit code.

    ``program``, ``checks`` and ``cwd`` replace the preview's real program, default checks
    and current directory (for tests).
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "preview":
            return preview_command.preview(args, program=program, checks=checks, cwd=cwd)
        return int(args.handler(args))
    except StackFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
