"""``python -m zlh_infra audit``: hold the live Proxmox hosts to the platform's rules.

Exit codes:
  0  every audited guest complies (information findings may remain)
  1  at least one rule fails
  2  a usage problem, or a host that could not be read completely (no report then)
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path

from zlh_infra.tooling.audit.targets import (
    TOKEN_ENV,
    AuditOptions,
    AuditUsageError,
    check_endpoint,
    check_stack_name,
)
from zlh_infra.tooling.exit_codes import ExitCode

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _pair(
    flag: str, what: str, check: Callable[[str], object] | None = None
) -> Callable[[str], tuple[str, str]]:
    def parse(value: str) -> tuple[str, str]:
        stack, sep, rest = value.partition("=")
        if not sep or not rest:
            raise argparse.ArgumentTypeError(f"invalid {flag} {value!r}: expected STACK={what}")
        try:
            check_stack_name(stack)
            if check is not None:
                check(rest)
        except (AuditUsageError, ValueError) as error:
            raise argparse.ArgumentTypeError(f"invalid {flag} {value!r}: {error}") from None
        return stack, rest

    return parse


def _env_name(value: str) -> None:
    if not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")


def _stack(value: str) -> str:
    try:
        return check_stack_name(value)
    except AuditUsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _ca_file(value: str) -> tuple[str | None, Path]:
    """``PATH`` for every host, or ``STACK=PATH`` for one."""
    stack, sep, rest = value.partition("=")
    if sep and rest:
        try:
            return check_stack_name(stack), Path(rest)
        except AuditUsageError:
            pass
    return None, Path(value)


def _address(value: str) -> IPv4Address:
    try:
        return IPv4Address(value.strip().removesuffix("/32"))
    except AddressValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from None


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 600:
        raise argparse.ArgumentTypeError(f"{value!r}: give seconds, more than 0 and at most 600")
    return seconds


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from zlh_infra.tooling.audit.report import FORMATS

    parser = commands.add_parser(
        "audit",
        help="read the live Proxmox hosts and check them against the platform's rules",
        description=textwrap.fill(
            "Read each host's Proxmox VE API (GET requests only) and check every guest "
            "against the policy pack's rules: VMID ranges and uniqueness across hosts, "
            "placement, the zlh-agent firewall, the nodes' own firewall and the tenants' "
            "egress (evaluated on the real firewall state), protection and backup jobs of "
            "stateful guests, the servers zpack-api made and its Proxmox identity. Hosts, "
            "nodes and the guests Pulumi manages come from the stack files; the API token "
            f"from ${TOKEN_ENV} (or --token-env).",
            88,
        ),
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--stack",
        type=_stack,
        action="append",
        default=[],
        metavar="STACK",
        help="audit this stack's host (repeatable; default: every stack file and --host)",
    )
    parser.add_argument(
        "--stack-file",
        type=_pair("--stack-file", "PATH"),
        action="append",
        default=[],
        metavar="STACK=PATH",
        help="stack file for STACK instead of Pulumi.<STACK>.yaml (repeatable)",
    )
    parser.add_argument(
        "--host",
        type=_pair("--host", "URL", lambda url: check_endpoint(url, "--host")),
        action="append",
        default=[],
        metavar="STACK=URL",
        help="API endpoint of STACK's host, e.g. https://zlh-runtime:8006/ (overrides the "
        "stack file)",
    )
    parser.add_argument(
        "--node",
        type=_pair("--node", "NODE"),
        action="append",
        default=[],
        metavar="STACK=NODE",
        help="Proxmox node name of STACK's host (overrides the stack file)",
    )
    parser.add_argument(
        "--token-env",
        type=_pair("--token-env", "VAR", _env_name),
        action="append",
        default=[],
        metavar="STACK=VAR",
        help=f"read STACK's API token (user@realm!id=secret) from $VAR (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--ca-file",
        type=_ca_file,
        action="append",
        default=[],
        metavar="[STACK=]PATH",
        help="CA bundle to verify the hosts' (or STACK's) TLS certificate (default: the system's)",
    )
    parser.add_argument(
        "--api-address",
        type=_address,
        metavar="IP",
        help="zpack-api's management address (default: from Pulumi.core.yaml)",
    )
    parser.add_argument(
        "--monitor-address",
        type=_address,
        metavar="IP",
        help="zlh-monitor's management address (default: from Pulumi.core.yaml)",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=15.0,
        metavar="SECONDS",
        help="per request (default: 15)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the report to FILE")
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="project directory with Pulumi.yaml and the stack files (default: the current one)",
    )
    parser.set_defaults(handler=run)


def options_of(args: argparse.Namespace) -> AuditOptions:
    ca_file = None
    ca_files: dict[str, Path] = {}
    for stack, path in args.ca_file:
        if stack is None:
            ca_file = path
        else:
            ca_files[stack] = path
    return AuditOptions(
        stacks=tuple(args.stack),
        stack_files={stack: Path(path) for stack, path in args.stack_file},
        hosts=dict(args.host),
        nodes=dict(args.node),
        token_envs=dict(args.token_env),
        ca_file=ca_file,
        ca_files=ca_files,
        api_address=args.api_address,
        monitor_address=args.monitor_address,
        timeout=args.timeout,
    )


def run(args: argparse.Namespace) -> int:
    """The ``audit`` subcommand."""
    from zlh_infra.tooling.audit.client import HostReadError, HostSnapshot, connect, read_host
    from zlh_infra.tooling.audit.report import (
        HostError,
        HostSummary,
        errors_of,
        render,
        render_failure,
    )
    from zlh_infra.tooling.audit.rules import audit
    from zlh_infra.tooling.audit.targets import resolve
    from zlh_infra.tooling.project import project_root

    root = args.root or project_root()
    try:
        plan = resolve(options_of(args), root=root)
    except AuditUsageError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    snapshots: list[HostSnapshot] = []
    failures: list[HostError] = []
    for target in plan.targets:
        try:
            snapshots.append(read_host(target, connect(target, plan.timeout)))
        except HostReadError as error:
            failures.append(HostError(target.stack, target.endpoint, str(error)))
    if failures:
        for failure in failures:
            print(f"error: {failure.message}", file=sys.stderr)
        print(
            "error: the audit is incomplete, so it reports no findings; fix the above and run it "
            "again",
            file=sys.stderr,
        )
        return _write(args, render_failure(failures, args.format)) or ExitCode.USAGE

    findings = audit(snapshots, plan)
    output = render([HostSummary.of(s) for s in snapshots], findings, args.format)
    if code := _write(args, output):
        return code
    return ExitCode.FAILED if errors_of(findings) else ExitCode.OK


def _write(args: argparse.Namespace, output: str) -> int:
    """Write the report; 0, or the usage exit code when the file cannot be written."""
    if not output:
        return 0
    if args.output is None:
        sys.stdout.write(output)
        return 0
    try:
        args.output.write_text(output, encoding="utf-8")
    except OSError as error:
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return ExitCode.USAGE
    return 0
