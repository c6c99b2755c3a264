#!/usr/bin/env python3
"""Set up the locked environment on a fresh machine and run a project task.

Needs only Python 3.11+: it installs uv (pinned) into ``.tools/``, lets uv build
``.venv`` from ``uv.lock``, then runs the task there.

    python3 tasks.py preview [ARGS...]   offline preview of both stacks, with policies
    python3 tasks.py test [PYTEST ARGS]  lint, type check and the test suite
    python3 tasks.py bench               the preview benchmark
    python3 tasks.py lab up|check|server|down   the local LXC lab (root; docs/lab.md)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
UV_VERSION = "0.13.8"


def _uv() -> Path:
    bindir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    uv = bindir / "uv"
    if not uv.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        subprocess.run(
            [bindir / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"],
            check=True,
        )
    return uv


#: Debian packages the tests run for real: the services' own checkers (promtool, nginx -t,
#: redis-server, visudo, nft -c for the lab's firewall) and the servers the release
#: stand-ins are tested against.
TEST_PACKAGES = (
    "curl",
    "nodejs",
    "mariadb-server",
    "redis-server",
    "prometheus",
    "nginx-light",
    "sudo",
    "nftables",
)


def _debian_packages(packages: tuple[str, ...]) -> int:
    """Install the missing ones with apt-get (as root); say which are missing otherwise."""
    try:
        missing = [
            name
            for name in packages
            if subprocess.run(
                ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True
            ).stdout
            != "install ok installed"
        ]
    except FileNotFoundError:
        print("tasks.py: the tests need a Debian machine (dpkg and apt-get)", file=sys.stderr)
        return 2
    if not missing:
        return 0
    if os.geteuid() != 0:
        print(
            f"tasks.py: install these Debian packages first: {' '.join(missing)}", file=sys.stderr
        )
        return 2
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
    ):
        if code := subprocess.run(step, env=env).returncode:
            return code
    return 0


def _run(*command: str | Path) -> int:
    return subprocess.run([str(part) for part in command], cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task", choices=["preview", "test", "bench", "sync", "lab"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the task")
    options = parser.parse_args(argv)
    if options.task == "lab" and hasattr(os, "geteuid") and os.geteuid() != 0:
        print(
            "tasks.py lab: the lab needs root (it makes LXC containers, a network namespace "
            "and nft rules); run it as root, e.g. sudo python3 tasks.py lab up",
            file=sys.stderr,
        )
        return 2

    uv = _uv()
    if code := _run(uv, "sync", "--frozen", "--quiet"):
        return code
    run = (uv, "run", "--frozen", "--no-sync")
    if options.task == "sync":
        return 0
    if options.task == "preview":
        return _run(*run, "python", "-m", "zlh_infra", "preview", *options.args)
    if options.task == "lab":
        return _run(*run, "python", "-m", "zlh_infra", "lab", *options.args)
    if options.task == "bench":
        return _run(*run, "python", "-m", "benchmarks.preview", *options.args)
    if code := _debian_packages(TEST_PACKAGES):
        return code
    for check in (
        (*run, "ruff", "check", "."),
        (*run, "ruff", "format", "--check", "."),
        (*run, "mypy"),
    ):
        if code := _run(*check):
            return code
    return _run(*run, "pytest", *options.args)


if __name__ == "__main__":
    sys.exit(main())
