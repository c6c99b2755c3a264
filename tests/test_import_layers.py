"""The code's layers, as pyproject.toml's import-linter contracts declare them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "imported", "refusal"),
    [
        (
            "platform/addressing.py",
            "zlh_infra.layers.host",
            "zlh_infra.platform is not allowed to import zlh_infra.layers",
        ),
        (
            "program.py",
            "zlh_infra.tooling.project",
            "zlh_infra.program is not allowed to import zlh_infra.tooling",
        ),
        (
            "tooling/project.py",
            "zlh_infra.cli",
            "zlh_infra.tooling is not allowed to import zlh_infra.cli",
        ),
        (
            "policies/tags.py",
            "zlh_infra.program",
            "zlh_infra.policies is not allowed to import zlh_infra.program",
        ),
        (
            "policies/tags.py",
            "zlh_infra.config",
            "zlh_infra.policies is not allowed to import zlh_infra.config",
        ),
        ("services/redis.py", "pulumi", "zlh_infra.services is not allowed to import pulumi"),
    ],
)
def test_an_import_across_a_layer_is_refused(
    tmp_path: Path, module: str, imported: str, refusal: str
) -> None:
    """The check can fail: each direction the contracts forbid is caught."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "zlh_infra", tmp_path / "zlh_infra", ignore=shutil.ignore_patterns("__pycache__")
    )
    source = tmp_path / "zlh_infra" / module
    source.write_text(source.read_text() + f"\nimport {imported}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert refusal in " ".join(result.stdout.split())
