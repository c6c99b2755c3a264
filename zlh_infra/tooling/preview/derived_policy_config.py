"""The policy pack's configuration, derived from the stack files: one owner for each value.

The pack sees one stack's resources and nothing of another stack's config, so the
platform's addresses, nodes and networks reach it as policy config. Rather than copies
kept by hand beside the stack files, they are read from the stack files here: the
offline preview applies them to every stack, and ``python -m zlh_infra policy-config``
writes them for ``pulumi preview|up --policy-pack-config``. A config file an operator
gives still wins, key by key.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zlh_infra.config import CoreStackConfig, RuntimeStackConfig, parse_stack_config
from zlh_infra.errors import ConfigError
from zlh_infra.platform.api_identity import BACKUP_STORAGE
from zlh_infra.platform.topology import StackRole, UnknownStackError, stack_role
from zlh_infra.tooling.preview.stack_files import (
    StackFileError,
    load_project,
    load_stack_file,
    stack_files_in,
)

StackConfig = CoreStackConfig | RuntimeStackConfig


def derive(stack: str, configs: Mapping[str, StackConfig]) -> dict[str, dict[str, Any]]:
    """Policy config for ``stack``, from the core stack's config and every runtime one's.

    Without a core stack among ``configs`` nothing is derived: the pack's defaults stay.
    """
    cores = [c for c in configs.values() if isinstance(c, CoreStackConfig)]
    if len(cores) != 1:
        return {}
    core = cores[0]
    runtimes = {name: c for name, c in configs.items() if isinstance(c, RuntimeStackConfig)}
    api = core.guests["zpack-api"].management_address
    monitor = core.guests["zlh-monitor"].management_address
    core_hosts = sorted({core.proxmox.endpoint_host, core.proxmox.shell_address})
    core_lan = str(core.network.lan.cidr)
    management = core.network.management
    found: dict[str, dict[str, Any]] = {
        "zlh-guest-placement": {
            "stackNodes": {name: config.proxmox.node for name, config in sorted(configs.items())}
        },
        "zlh-control-plane-independent": {
            "coreNode": core.proxmox.node,
            "coreEndpointHosts": core_hosts,
            "coreNetworks": [core_lan],
        },
        "zlh-runtime-isolation": {"coreNode": core.proxmox.node, "coreEndpointHosts": core_hosts},
        "zlh-host-firewall": {
            "guestNetworks": sorted(
                {core_lan, str(management.cidr)}
                | {str(r.network.lan.cidr) for r in runtimes.values()}
            ),
            "managementBridge": management.bridge,
        },
        "zlh-tenant-egress": {"managementBridge": management.bridge},
        "zlh-runtime-self-sufficient": {
            "coreNetworks": [core_lan],
            "managementNetwork": str(management.cidr),
        },
    }
    if api is not None and monitor is not None:
        found["zlh-agent-port"] = {
            "apiAddress": str(api),
            "monitorAddress": str(monitor),
            "managementBridge": management.bridge,
        }
    runtime = runtimes.get(stack)
    if runtime is not None:
        found["zlh-api-identity"] = {
            "storages": [runtime.storage.datastore, BACKUP_STORAGE],
            "bridges": [runtime.network.lan.bridge, runtime.network.management.bridge],
        }
    return found


def load_configs(root: Path, stacks: Mapping[str, Path]) -> dict[str, StackConfig]:
    """Each stack file's config, validated; a file that does not validate is left out
    (the preview reports it for that stack)."""
    project = load_project(root / "Pulumi.yaml")
    found: dict[str, StackConfig] = {}
    for name, path in stacks.items():
        try:
            role = stack_role(name)
        except UnknownStackError:
            continue
        try:
            raw = load_stack_file(path, project=project, stack=name).config
            found[name] = (
                parse_stack_config(CoreStackConfig, raw, stack=name)
                if role is StackRole.CORE
                else parse_stack_config(RuntimeStackConfig, raw, stack=name)
            )
        except (StackFileError, ConfigError):
            continue
    return found


def merged(derived: Mapping[str, Mapping[str, Any]], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` (an operator's --policy-pack-config) over ``derived``, key by key."""
    result: dict[str, Any] = {name: dict(values) for name, values in derived.items()}
    for name, value in given.items():
        if isinstance(value, Mapping) and isinstance(result.get(name), dict):
            result[name].update(value)
        else:
            result[name] = value
    return result


# --- command line --------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "policy-config",
        help="the policy pack's config for a stack, derived from the stack files",
        description="Read Pulumi.yaml and every Pulumi.<stack>.yaml, and print (or write) the "
        "policy config of STACK as JSON, for `pulumi preview|up --policy-pack-config`.",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root")
    parser.add_argument("--stack", required=True, help="the stack to configure the pack for")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    root: Path = args.root
    files = stack_files_in(root)
    if args.stack not in files:
        print(f"error: no stack file {root / f'Pulumi.{args.stack}.yaml'}", file=sys.stderr)
        return 2
    try:
        configs = load_configs(root, files)
    except StackFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.stack not in configs:
        print(f"error: stack {args.stack}'s config does not validate: preview it", file=sys.stderr)
        return 2
    text = json.dumps(derive(args.stack, configs), indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
