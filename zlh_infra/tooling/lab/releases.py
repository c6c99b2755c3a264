"""Building the lab's stand-in releases (``build_release`` in ``tests/tooling/lab/releases``).

The stand-ins' sources and their builder live with the tests; the lab loads the builder
from the project and puts each artifact where its release server serves it:
``<state>/releases/<name>/<version>/<artifact>``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from zlh_infra.tooling.lab.overlay import BuiltRelease
from zlh_infra.tooling.lab.system import LabError

#: The stand-ins' package, relative to the project root.
SOURCES = Path("tests/tooling/lab/releases/__init__.py")


def _builder(root: Path) -> ModuleType | None:
    path = root / SOURCES
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("zlh_lab_release_sources", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_releases(root: Path, served: Path) -> dict[str, BuiltRelease]:
    """Every stand-in release, built under ``served``; none when there are no sources."""
    builder = _builder(root)
    if builder is None:
        return {}
    built = {}
    for name, version in sorted(builder.RELEASES.items()):
        out = served / name / version
        try:
            artifact, sha256 = builder.build_release(name, out)
        except (OSError, ValueError) as error:
            raise LabError(f"cannot build the {name} stand-in release: {error}") from None
        built[name] = BuiltRelease(
            name=name,
            version=str(version),
            path=Path(artifact).relative_to(served).as_posix(),
            sha256=str(sha256),
        )
    return built
