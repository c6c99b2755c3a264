"""``python -m zlh_infra routers``: write each router's OPNsense ``config.xml``.

The files are what OPNsense's importer reads at the router's first boot (the runbook's
"Router configuration"); they are generated from the same stack files ``pulumi up``
reads, so the routers forward and filter what the program's guests serve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar

from zlh_infra.config import CoreStackConfig, RuntimeStackConfig, parse_stack_config
from zlh_infra.errors import ConfigError
from zlh_infra.platform.topology import StackRole
from zlh_infra.services.opnsense import RouterConfigError, render_router_configs
from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.preview.stack_files import StackFileError, load_project, load_stack_file

M = TypeVar("M", CoreStackConfig, RuntimeStackConfig)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "routers",
        help="write both routers' OPNsense config.xml from the stack files",
        description="Read Pulumi.yaml, the core stack file and one runtime stack file, and "
        "write <output>/<router>/conf/config.xml for zlh-router and zlh-zpack-router, laid "
        "out as OPNsense's importer reads a USB stick or CD image.",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root")
    parser.add_argument(
        "--core", default=StackRole.CORE.value, help="the core stack's name (default: %(default)s)"
    )
    parser.add_argument(
        "--runtime",
        default=StackRole.RUNTIME.value,
        help="the runtime stack's name (default: %(default)s)",
    )
    parser.add_argument(
        "--output", type=Path, required=True, help="directory to write the files under"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root: Path = args.root
    try:
        project = load_project(root / "Pulumi.yaml")

        def config_of(model: type[M], stack: str) -> M:
            path = root / f"Pulumi.{stack}.yaml"
            raw = load_stack_file(path, project=project, stack=stack).config
            return parse_stack_config(model, raw, stack=stack)

        files = render_router_configs(
            config_of(CoreStackConfig, args.core), config_of(RuntimeStackConfig, args.runtime)
        )
    except (StackFileError, ConfigError, RouterConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    for name, text in sorted(files.items()):
        target: Path = args.output / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    return ExitCode.OK
