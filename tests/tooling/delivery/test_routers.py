"""``python -m zlh_infra routers``: the routers' files from the stack files, or a clear error."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.stack_configs import ROOT
from zlh_infra.cli import main


def project_copy(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.core.yaml", "Pulumi.runtime.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_writes_both_routers_files_from_the_stack_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project_copy(tmp_path)
    assert main(["routers", "--root", str(root), "--output", str(tmp_path / "out")]) == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in tmp_path.rglob("*.xml"))
    assert written == ["zlh-router/conf/config.xml", "zlh-zpack-router/conf/config.xml"]
    runtime = ET.parse(tmp_path / "out" / "zlh-zpack-router" / "conf" / "config.xml").getroot()
    assert runtime.findtext("interfaces/lan/ipaddr") == "10.20.0.1"
    assert "wrote" in capsys.readouterr().out


def test_a_bad_stack_file_writes_nothing_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project_copy(tmp_path)
    runtime = root / "Pulumi.runtime.yaml"
    runtime.write_text(
        runtime.read_text().replace("gateway: 10.20.0.1", "gateway: 10.20.0.999"), "utf-8"
    )
    assert main(["routers", "--root", str(root), "--output", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    error = capsys.readouterr().err
    assert error.startswith("error: stack 'runtime': invalid configuration")
    assert "network.lan.gateway" in error
