"""Stand-in releases of the platform's own software, for the local LXC lab.

The lab runs the program's real install steps, which fetch and install three releases:
zpack-api and zpack-portal (tarballs holding ``server.js`` and ``package.json`` at their
top level, run by Debian's ``nodejs``) and zlh-agent (one executable file). The sources of
the stand-ins live next to this file, one directory per release; ``build_release`` turns
one into the artifact the install steps expect, byte for byte reproducibly.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
from pathlib import Path
from typing import Final

SOURCE_DIR: Final = Path(__file__).resolve().parent

RELEASES: Final[dict[str, str]] = {
    "zpack-api": "0.0.0-lab",
    "zpack-portal": "0.0.0-lab",
    "zlh-agent": "0.0.0-lab",
}
"""Release name -> version."""

TARBALL_RELEASES: Final = frozenset({"zpack-api", "zpack-portal"})
"""Releases delivered as a ``.tar.gz`` (the others are one executable file)."""

_FILE_MODE: Final = 0o644
_EXECUTABLE_MODE: Final = 0o755
_DIR_MODE: Final = 0o755


def source_dir(name: str) -> Path:
    """The directory holding a release's stand-in sources."""
    if name not in RELEASES:
        known = ", ".join(sorted(RELEASES))
        raise ValueError(f"unknown release {name!r} (known: {known})")
    return SOURCE_DIR / name


def artifact_name(name: str) -> str:
    """The file name ``build_release`` gives a release's artifact."""
    source_dir(name)
    if name in TARBALL_RELEASES:
        return f"{name}-{RELEASES[name]}.tar.gz"
    return name


def _members(root: Path) -> list[tuple[str, Path]]:
    """(archive name, path) of every file and directory under root, sorted by name."""
    found: list[tuple[str, Path]] = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ValueError(f"release sources may hold only files and directories: {path}")
        found.append((relative.as_posix(), path))
    return sorted(found)


def _tarball(root: Path) -> bytes:
    """A .tar.gz of root's contents at its top level: the same bytes on every build."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for arcname, path in _members(root):
            info = tarfile.TarInfo(arcname)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = _DIR_MODE
                tar.addfile(info)
                continue
            data = path.read_bytes()
            info.size = len(data)
            info.mode = _EXECUTABLE_MODE if path.stat().st_mode & 0o111 else _FILE_MODE
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def build_release(name: str, out_dir: Path) -> tuple[Path, str]:
    """Build a release's artifact into out_dir; return its path and its sha256 (hex).

    zpack-api and zpack-portal become ``<name>-<version>.tar.gz`` (sorted entries, mtime
    0, owner root, fixed modes, gzip header without name or time); zlh-agent is copied as
    the executable ``zlh-agent``. Building twice gives the same bytes.
    """
    root = source_dir(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / artifact_name(name)
    if name in TARBALL_RELEASES:
        target.write_bytes(_tarball(root))
    else:
        shutil.copyfile(root / name, target)
        target.chmod(_EXECUTABLE_MODE)
    return target, hashlib.sha256(target.read_bytes()).hexdigest()


__all__ = ["RELEASES", "SOURCE_DIR", "TARBALL_RELEASES", "artifact_name", "build_release"]
