"""Host commands for the lab: running them, entering the lab namespace, needing root."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from zlh_infra.tooling.lab.paths import NETNS

#: Debian packages the lab needs on the host, by a command each provides.
HOST_PACKAGES = {
    "lxc-start": "lxc",
    "debootstrap": "debootstrap",
    "nft": "nftables",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "newuidmap": "uidmap",
    "openssl": "openssl",
}


class LabError(Exception):
    """Something the lab cannot do; the message says what and, if it can, why."""


def run(
    argv: Sequence[str | Path],
    *,
    input: bytes | str | None = None,
    check: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, capturing its output as text; raise ``LabError`` when it fails."""
    command = [str(part) for part in argv]
    data = input.decode() if isinstance(input, bytes) else input
    try:
        result = subprocess.run(
            command,
            input=data,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=env,
        )
    except FileNotFoundError as error:
        raise LabError(f"{command[0]}: not installed ({error})") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(command[:3])}...: timed out after {timeout} s") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise LabError(
            f"{' '.join(command)} failed (exit {result.returncode}): " + " / ".join(detail)
        )
    return result


def netns_path() -> Path:
    return Path("/run/netns") / NETNS


def in_lab_netns() -> bool:
    """Whether this process already lives in the lab's network namespace."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat(netns_path()).st_ino
    except FileNotFoundError:
        return False


def in_netns(argv: Sequence[str | Path]) -> list[str]:
    """``argv`` run inside the lab namespace (network only: /sys and cgroups stay the host's)."""
    command = [str(part) for part in argv]
    if in_lab_netns():
        return command
    return ["nsenter", f"--net={netns_path()}", "--", *command]


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it makes containers, a network namespace and nft rules")


def missing_host_packages() -> list[str]:
    return sorted({pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None})


def ensure_host_packages() -> None:
    """Install the Debian packages the lab needs, if any is missing (``apt-get``)."""
    missing = missing_host_packages()
    if not missing:
        return
    print(f"lab: installing {' '.join(missing)} (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A failing extra source must not stop the install: apt reports it, we check after.
    run(["apt-get", "update", "-q"], check=False, timeout=600, env=env)
    run(["apt-get", "install", "-y", "-q", *missing], timeout=900, env=env)
    still = missing_host_packages()
    if still:
        raise LabError(f"still missing after apt-get install: {' '.join(still)}")
