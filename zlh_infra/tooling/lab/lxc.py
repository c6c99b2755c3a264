"""LXC containers standing for Proxmox guests: create, clone, start, stop, enter, destroy.

A container's root is an overlay the lab mounts on the host (``<guest>/rootfs``):
read-only layers (the cached root file system and, for a clone, snapshots of its
source's changes taken when it was cloned) under its own ``upper`` directory. It is
mounted by the host, not by LXC inside the container's user namespace, where overlayfs
cannot rename directories (dpkg does that for every new directory). Before every start
the files Proxmox manages are written into it, as Proxmox's pre-start hook writes them
into the container's disk. All LXC commands run inside the lab namespace: LXC talks to
a running container through an abstract socket, which belongs to the network namespace
it was started in.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from zlh_infra.tooling.lab.lxcconf import (
    ContainerPaths,
    attach_hook_script,
    lxc_config,
    managed_files,
)
from zlh_infra.tooling.lab.paths import (
    CONTAINER_PREFIX,
    ID_MAP_FIRST,
    NODE_PATH,
    LabDirs,
    container_name,
)
from zlh_infra.tooling.lab.plan import LabGuest
from zlh_infra.tooling.lab.system import LabError, in_netns, run

#: The environment of a command entering a guest: a node's SSH session's, less the lab's PATH.
GUEST_ENV = {
    "PATH": NODE_PATH,
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/sh",
    "LANG": "C.UTF-8",
}


def attach_hook(dirs: LabDirs) -> Path:
    return dirs.bin / "lab-attach-nic"


def install_hook(dirs: LabDirs) -> None:
    hook = attach_hook(dirs)
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(attach_hook_script(shutil.which("ip") or "ip"), encoding="utf-8")
    hook.chmod(0o755)


# --- records ----------------------------------------------------------------------------


def _record_path(dirs: LabDirs, vmid: int) -> Path:
    return dirs.guest(vmid) / "guest.json"


def load_guest(dirs: LabDirs, vmid: int) -> tuple[LabGuest, list[Path]]:
    """The guest as the lab made it, and its read-only layers (topmost first)."""
    path = _record_path(dirs, vmid)
    if not path.is_file():
        raise LabError(f"CT {vmid} does not exist")
    data = json.loads(path.read_text(encoding="utf-8"))
    return LabGuest.from_spec(data["spec"], data.get("urn", "")), [Path(p) for p in data["lowers"]]


def exists(dirs: LabDirs, vmid: int) -> bool:
    return (dirs.lxc_dir(vmid) / "config").is_file() and _record_path(dirs, vmid).is_file()


def lab_vmids(dirs: LabDirs) -> list[int]:
    """Every container the lab made that LXC still knows (``lab-<vmid>``)."""
    found = []
    if dirs.lxc.is_dir():
        for path in dirs.lxc.iterdir():
            suffix = path.name.removeprefix(CONTAINER_PREFIX)
            if path.name != suffix and suffix.isdigit():
                found.append(int(suffix))
    return sorted(found)


# --- the root file system ---------------------------------------------------------------


def _mounted(path: Path) -> bool:
    target = str(path)
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) > 1 and fields[1] == target:
            return True
    return False


def mount_rootfs(dirs: LabDirs, vmid: int) -> Path:
    """Mount the container's overlay at ``<guest>/rootfs`` (if it is not mounted yet)."""
    _guest, lowers = load_guest(dirs, vmid)
    home = dirs.guest(vmid)
    merged = home / "rootfs"
    if _mounted(merged):
        return merged
    merged.mkdir(exist_ok=True)
    options = (
        f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={home / 'upper'},"
        f"workdir={home / 'work'},redirect_dir=on"
    )
    run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)])
    return merged


def unmount_rootfs(dirs: LabDirs, vmid: int) -> None:
    merged = dirs.guest(vmid) / "rootfs"
    if _mounted(merged) and run(["umount", str(merged)], check=False).returncode != 0:
        run(["umount", "-l", str(merged)], check=False)


def write_file(root: Path, path: str, content: str, *, mode: int | None = None) -> None:
    """Write ``content`` to ``path`` in a stopped container's mounted root ``root``.

    Owner and mode come from the file it replaces, else root of the container and 0644;
    missing directories are made owned by the container's root.
    """
    target = root / path.lstrip("/")
    missing = []
    parent = target.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir()
        os.chown(directory, ID_MAP_FIRST, ID_MAP_FIRST)
    info = target.stat() if target.is_file() and not target.is_symlink() else None
    if target.exists() or target.is_symlink():
        target.unlink()
    target.write_text(content, encoding="utf-8")
    os.chown(target, info.st_uid if info else ID_MAP_FIRST, info.st_gid if info else ID_MAP_FIRST)
    target.chmod(mode if mode is not None else stat.S_IMODE(info.st_mode) if info else 0o644)


def _password_hash(password: str) -> str:
    result = run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n")
    return result.stdout.strip()


def set_root_password(root: Path, password: str) -> None:
    path = root / "etc/shadow"
    if not path.is_file():
        raise LabError("the root file system has no /etc/shadow")
    shadow = path.read_text(encoding="utf-8")
    hashed = _password_hash(password)
    lines = []
    for line in shadow.splitlines():
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 2:
            fields[1] = hashed
            line = ":".join(fields)
        lines.append(line)
    write_file(root, "/etc/shadow", "\n".join(lines) + "\n")


# --- containers -------------------------------------------------------------------------


def _paths(dirs: LabDirs, guest: LabGuest, lowers: Sequence[Path]) -> ContainerPaths:
    home = dirs.guest(guest.vmid)
    return ContainerPaths(
        rootfs=home / "rootfs",
        mounts=tuple(home / f"mp{index}" for index in range(len(guest.mount_points))),
        apt_archives=dirs.apt_archives,
        console_log=dirs.logs / f"console-{guest.vmid}.log",
        attach_hook=attach_hook(dirs),
    )


def _owned_dir(path: Path, mode: int = 0o755) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, ID_MAP_FIRST, ID_MAP_FIRST)
    path.chmod(mode)


def snapshot(dirs: LabDirs, source: int, counter: int) -> Path:
    """A read-only copy of ``source``'s changes now: the layer a full clone starts from."""
    layer = dirs.layers / f"{counter:04d}-from-{source}"
    if layer.exists():
        shutil.rmtree(layer)
    layer.parent.mkdir(parents=True, exist_ok=True)
    # cp keeps owners, modes, xattrs (overlay's opaque and redirect markers) and
    # whiteout devices.
    run(["cp", "-a", str(dirs.guest(source) / "upper"), str(layer)])
    return layer


def create(dirs: LabDirs, guest: LabGuest, lowers: Sequence[Path]) -> None:
    """Make container ``guest`` on ``lowers`` (stopped; nothing of it may exist yet)."""
    home = dirs.guest(guest.vmid)
    if home.exists():
        shutil.rmtree(home)
    paths = _paths(dirs, guest, lowers)
    home.mkdir(parents=True)
    _owned_dir(home / "upper")
    (home / "work").mkdir()
    for mount in paths.mounts:
        _owned_dir(mount)
    _owned_dir(dirs.apt_archives)
    dirs.logs.mkdir(parents=True, exist_ok=True)
    lxc_dir = dirs.lxc_dir(guest.vmid)
    lxc_dir.mkdir(parents=True, exist_ok=True)
    (lxc_dir / "config").write_text(lxc_config(guest, paths), encoding="utf-8")
    record = {"spec": guest.spec(), "urn": guest.urn, "lowers": [str(p) for p in lowers]}
    _record_path(dirs, guest.vmid).write_text(json.dumps(record, indent=1), encoding="utf-8")
    root = mount_rootfs(dirs, guest.vmid)
    if guest.root_password:
        set_root_password(root, guest.root_password)


def destroy(dirs: LabDirs, vmid: int) -> None:
    if status(vmid) == "running":
        run(in_netns(["lxc-stop", "-n", container_name(vmid), "-k"]), check=False, timeout=60)
    unmount_rootfs(dirs, vmid)
    if _mounted(dirs.guest(vmid) / "rootfs"):
        raise LabError(f"cannot unmount {dirs.guest(vmid) / 'rootfs'}; not removing it")
    shutil.rmtree(dirs.lxc_dir(vmid), ignore_errors=True)
    shutil.rmtree(dirs.guest(vmid), ignore_errors=True)


def status(vmid: int) -> str | None:
    """``running``, ``stopped``, or None when LXC does not know the container."""
    result = run(
        in_netns(["lxc-info", "-n", container_name(vmid), "-s", "-H"]), check=False, timeout=30
    )
    if result.returncode != 0:
        return None
    return "running" if result.stdout.strip() == "RUNNING" else "stopped"


def prepare_start(dirs: LabDirs, vmid: int) -> None:
    """Write the files Proxmox manages into the stopped container, from its settings."""
    guest, _lowers = load_guest(dirs, vmid)
    root = mount_rootfs(dirs, vmid)
    for path, content in managed_files(guest).items():
        write_file(root, path, content)


def start(dirs: LabDirs, vmid: int) -> None:
    prepare_start(dirs, vmid)
    name = container_name(vmid)
    result = run(in_netns(["lxc-start", "-n", name]), check=False, timeout=120)
    if result.returncode != 0:
        raise LabError(f"lxc-start {name} failed: {result.stderr.strip()[-400:]} (see {dirs.logs})")
    if not wait_status(vmid, "running", 30):
        raise LabError(f"{name} did not reach RUNNING")


def wait_status(vmid: int, wanted: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(vmid) == wanted:
            return True
        time.sleep(0.2)
    return status(vmid) == wanted


def shutdown(vmid: int, timeout: int, *, force: bool) -> bool:
    """Clean shutdown; with ``force`` a hard stop after ``timeout``. True when stopped."""
    argv = ["lxc-stop", "-n", container_name(vmid), "-t", str(timeout)]
    if not force:
        argv.append("--nokill")
    run(in_netns(argv), check=False, timeout=timeout + 30)
    return status(vmid) == "stopped"


def stop(vmid: int) -> None:
    run(in_netns(["lxc-stop", "-n", container_name(vmid), "-k"]), check=False, timeout=60)


def attach_argv(vmid: int, argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    settings = dict(GUEST_ENV if env is None else env)
    variables = [
        item for key, value in settings.items() for item in ("--set-var", f"{key}={value}")
    ]
    return in_netns(
        ["lxc-attach", "-n", container_name(vmid), "--clear-env", *variables, "--", *argv]
    )


def attach(
    vmid: int, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the running container; never raises for the command's exit code."""
    try:
        return subprocess.run(
            attach_argv(vmid, argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        return subprocess.CompletedProcess(
            expired.cmd, 124, stdout="", stderr=f"timed out after {timeout:.0f} s"
        )


def wait_booted(vmid: int, timeout: float = 90) -> str:
    """Wait for the container's systemd to finish starting; returns its state.

    ``degraded`` counts as booted: in an unprivileged container some units (the kernel
    debug file system) always fail.
    """
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        left = max(1, int(deadline - time.monotonic()))
        result = attach(
            vmid,
            ["timeout", str(left), "systemctl", "is-system-running", "--wait"],
            timeout=left + 10,
        )
        state = result.stdout.strip() or state
        if state in ("running", "degraded", "maintenance", "stopping"):
            return state
        time.sleep(0.5)
    return state
