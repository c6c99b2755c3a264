"""The code's layers, as pyproject.toml's import-linter contracts declare them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.stack_configs import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_import_follows_the_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_an_import_across_a_layer_is_refused(tmp_path: Path) -> None:
    """The check can fail: platform logic that reached into the program is caught."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "zlh_infra", tmp_path / "zlh_infra", ignore=shutil.ignore_patterns("__pycache__")
    )
    addressing = tmp_path / "zlh_infra" / "platform" / "addressing.py"
    addressing.write_text(addressing.read_text() + "\nimport zlh_infra.layers.host  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "zlh_infra.platform is not allowed to import zlh_infra.layers" in result.stdout
