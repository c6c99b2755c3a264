"""Running one recorded step: its ``create`` through ``sh -c`` on the lab host, ``pct`` first.

The host's shell stands for the node's shell the program reaches over SSH. It runs
inside the lab namespace, so whatever a step itself sends over the network stays in
the lab, with the lab's ``pct`` first on PATH and the recorded ``stdin`` on its stdin.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from zlh_infra.tooling.lab.paths import NODE_PATH, LabDirs
from zlh_infra.tooling.lab.pct import wrapper_script
from zlh_infra.tooling.lab.plan import LabStep, redact
from zlh_infra.tooling.lab.system import in_netns
from zlh_infra.tooling.wire_values import SECRET_MASK

#: A step that runs longer than this is stopped and fails.
STEP_TIMEOUT = 30 * 60


@dataclass(frozen=True, slots=True)
class StepResult:
    returncode: int
    seconds: float
    #: The step's stderr (the program's own failure report), redacted.
    stderr: str
    log: Path
    #: What it printed, as printed: the program reads it (a host key, a fingerprint).
    stdout: str = field(default="", repr=False)


def install_pct(dirs: LabDirs, project_root: Path) -> Path:
    """Write ``<state>/bin/pct``, the stand-in every step finds first on PATH."""
    dirs.bin.mkdir(parents=True, exist_ok=True)
    pct = dirs.bin / "pct"
    pct.write_text(wrapper_script(sys.executable, str(project_root), dirs), encoding="utf-8")
    pct.chmod(0o755)
    return pct


def node_env(dirs: LabDirs) -> dict[str, str]:
    """What a root SSH session on a Proxmox node has, with the lab's ``pct`` first."""
    return {
        "PATH": f"{dirs.bin}:{NODE_PATH}",
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
        "ZLH_LAB_STATE": str(dirs.state),
        "ZLH_LAB_CACHE": str(dirs.cache),
    }


def log_path(dirs: LabDirs, step: LabStep) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{step.stack}-{step.name}")
    return dirs.logs / f"step-{safe}.log"


def run_step(dirs: LabDirs, step: LabStep, secrets: set[str]) -> StepResult:
    """Run ``step``; its output goes to its log (secrets masked), stderr comes back too."""
    log = log_path(dirs, step)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            in_netns(["sh", "-c", step.create]),
            input=(step.stdin or "").encode(),
            capture_output=True,
            env=node_env(dirs),
            cwd="/root" if os.path.isdir("/root") else "/",
            timeout=STEP_TIMEOUT,
            check=False,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code = 124
        out = expired.stdout or b""
        err = (expired.stderr or b"") + f"\nlab: step stopped after {STEP_TIMEOUT} s\n".encode()
    seconds = time.monotonic() - started
    printed = out.decode(errors="replace")
    stdout = SECRET_MASK if step.secret_stdout and printed else redact(printed, secrets)
    stderr = redact(err.decode(errors="replace"), secrets)
    if step.secret_stdout and printed:
        stderr = redact(stderr, printed.split())
    log.write_text(
        f"# {step.urn}\n# exit {code} after {seconds:.1f} s\n"
        f"# --- stdout\n{stdout}\n# --- stderr\n{stderr}\n",
        encoding="utf-8",
    )
    return StepResult(code, seconds, stderr, log, stdout=printed)
