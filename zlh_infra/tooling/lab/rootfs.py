"""The containers' root file system: Debian 12 with the package set of ``debian-12-standard``.

Proxmox builds its template with dab: a debootstrap of Debian's ``required`` and
``important`` packages, then every ``standard`` one, plus a few named packages. The lab
does the same once, caches the result under ``<cache>/rootfs-<key>`` (the key is the
package set's hash) and shifts its owners into the unprivileged ID range, as
``pct create`` does when it unpacks a template for an unprivileged container.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zlh_infra.tooling.lab.paths import ID_MAP_FIRST, ID_MAP_SIZE, LabDirs
from zlh_infra.tooling.lab.system import LabError, run


@dataclass(frozen=True, slots=True)
class RootfsSpec:
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    #: debootstrap installs required + important; the standard ones follow with apt.
    priorities: tuple[str, ...] = ("required", "important", "standard")
    #: Named packages on top of the priorities (most are already ``important``; they
    #: are named so the set does not depend on Debian's priority choices).
    extra: tuple[str, ...] = (
        "ifupdown",
        "iproute2",
        "locales",
        "openssh-server",
        "postfix",
        "systemd-sysv",
    )
    #: Packages the template must not have: the program installs them itself.
    absent: tuple[str, ...] = ("curl",)
    locale: str = "en_US.UTF-8"
    #: Bumped when the way the root file system is built changes.
    builder: int = 1

    @property
    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def sources_list(self) -> str:
        return (
            f"deb {self.mirror} {self.suite} main\n"
            f"deb {self.mirror} {self.suite}-updates main\n"
            f"deb {self.security_mirror} {self.suite}-security main\n"
        )


def rootfs_dir(dirs: LabDirs, spec: RootfsSpec) -> Path:
    return dirs.cache / f"rootfs-{spec.key}"


def ensure_rootfs(dirs: LabDirs, spec: RootfsSpec | None = None) -> Path:
    """The cached root file system (``<dir>/rootfs``), built first if it is not there."""
    spec = spec or RootfsSpec()
    target = rootfs_dir(dirs, spec)
    if (target / "manifest.json").is_file():
        return target / "rootfs"
    started = time.monotonic()
    print(f"lab: building the root file system {target.name} (once; cached)", flush=True)
    build = target.with_name(target.name + ".build")
    if build.exists():
        _unmount_under(build)
        shutil.rmtree(build)
    build.mkdir(parents=True)
    tree = build / "tree"
    try:
        _bootstrap(spec, tree)
        built = _manifest(spec, tree)
        _shift(tree, build / "rootfs")
    finally:
        _unmount_under(build)
    shutil.rmtree(tree)
    (build / "manifest.json").write_text(json.dumps(built, indent=1) + "\n", encoding="utf-8")
    os.replace(build, target)
    elapsed = time.monotonic() - started
    print(
        f"lab: root file system ready in {elapsed:.0f} s: {len(built['packages'])} packages, "
        f"python3 {built['python3']} (the lab's probes use it), no {', '.join(spec.absent)}",
        flush=True,
    )
    return target / "rootfs"


def manifest(dirs: LabDirs, spec: RootfsSpec | None = None) -> dict[str, object] | None:
    path = rootfs_dir(dirs, spec or RootfsSpec()) / "manifest.json"
    if not path.is_file():
        return None
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _chroot(tree: Path, *argv: str, timeout: float = 1800) -> None:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    run(["chroot", str(tree), *argv], timeout=timeout, env=env)


def _bootstrap(spec: RootfsSpec, tree: Path) -> None:
    # The default variant installs the required and important packages.
    run(
        ["debootstrap", "--components=main", spec.suite, str(tree), spec.mirror],
        timeout=1800,
    )
    (tree / "etc/apt/sources.list").write_text(spec.sources_list(), encoding="utf-8")
    shutil.copyfile("/etc/resolv.conf", tree / "etc/resolv.conf")
    # No daemon starts inside the build chroot.
    policy = tree / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
    policy.chmod(0o755)
    run(["mount", "-t", "proc", "proc", str(tree / "proc")])
    try:
        _chroot(tree, "apt-get", "update", "-q")
        others = [p for p in spec.priorities if p not in ("required", "important")]
        patterns = [f"?and(?priority({p}),?not(?installed))" for p in others]
        _chroot(
            tree,
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *patterns,
            *spec.extra,
        )
        _chroot(tree, "apt-get", "dist-upgrade", "-y", "-q")
        locale_gen = tree / "etc/locale.gen"
        text = locale_gen.read_text(encoding="utf-8")
        locale_gen.write_text(
            text.replace(f"# {spec.locale} ", f"{spec.locale} "), encoding="utf-8"
        )
        _chroot(tree, "locale-gen")
        _chroot(tree, "apt-get", "clean")
    finally:
        run(["umount", str(tree / "proc")], check=False)
    policy.unlink()
    (tree / "etc/resolv.conf").write_text("", encoding="utf-8")
    (tree / "etc/hostname").write_text("localhost\n", encoding="utf-8")
    # Every container makes its own machine id at first boot, as from Proxmox's template.
    (tree / "etc/machine-id").write_text("", encoding="utf-8")
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)


def _manifest(spec: RootfsSpec, tree: Path) -> dict[str, Any]:
    listed = run(["chroot", str(tree), "dpkg-query", "-W", "-f", "${Package} ${Version}\\n"])
    packages = dict(line.split(" ", 1) for line in listed.stdout.splitlines() if line)
    present = sorted(set(spec.absent) & set(packages))
    if present:
        raise LabError(f"the root file system must not have {', '.join(present)}")
    if "python3" not in packages:
        raise LabError("the root file system has no python3 (the lab's probes need it)")
    version = run(["chroot", str(tree), "python3", "--version"]).stdout.split()[-1]
    return {
        "spec": asdict(spec),
        "key": spec.key,
        "python3": version,
        "packages": packages,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _shift(tree: Path, target: Path) -> None:
    """Copy ``tree`` into ``target`` with owners moved into the unprivileged ID range.

    The copy is unpacked inside a user namespace with Proxmox's ID map, so file
    capabilities are rewritten for it too (as ``pct`` unpacks a template).
    """
    target.mkdir()
    os.chown(target, ID_MAP_FIRST, ID_MAP_FIRST)
    tar = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*"]
    pack = subprocess.Popen(
        [*tar, "-cpf", "-", "-C", str(tree), "--exclude=./dev/*", "--exclude=./proc/*", "."],
        stdout=subprocess.PIPE,
    )
    try:
        unpack = subprocess.run(
            [
                "lxc-usernsexec",
                "-m",
                f"b:0:{ID_MAP_FIRST}:{ID_MAP_SIZE}",
                "--",
                *tar,
                "-xpf",
                "-",
                "-C",
                str(target),
            ],
            stdin=pack.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if pack.stdout is not None:
            pack.stdout.close()
        packed = pack.wait()
    if packed != 0 or unpack.returncode != 0:
        raise LabError(f"shifting the root file system failed: {unpack.stderr.strip()[-500:]}")


def _unmount_under(path: Path) -> None:
    mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    prefix = str(path.resolve()) + "/"
    targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for mount_point in sorted(targets, reverse=True):
        run(["umount", "-l", mount_point], check=False)


def purge(dirs: LabDirs) -> list[Path]:
    """Remove every cached root file system; returns what was removed."""
    removed = []
    if dirs.cache.is_dir():
        for path in sorted(dirs.cache.glob("rootfs-*")):
            _unmount_under(path)
            shutil.rmtree(path)
            removed.append(path)
    return removed
