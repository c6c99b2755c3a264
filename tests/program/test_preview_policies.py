"""The preview runs the policy pack beside the program, and its verdict is the exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stack_configs import ROOT
from zlh_infra.cli import main


def preview(*argv: str) -> int:
    return main(["preview", "--format", "json", *argv], cwd=ROOT)


def test_shipped_stacks_pass_the_pack(capsys: pytest.CaptureFixture[str]) -> None:
    assert preview() == 0
    stacks = json.loads(capsys.readouterr().out)["stacks"]
    assert [s["stack"] for s in stacks] == ["core", "runtime"]
    assert [d for s in stacks for d in s["diagnostics"] if d["severity"] == "error"] == []


def test_a_mandatory_violation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "policy-config.json"
    config.write_text(json.dumps({"zlh-agent-port": {"apiAddress": "10.99.0.11"}}))
    assert preview("--stack", "runtime", "--policy-pack-config", str(config)) == 1
    (stack,) = json.loads(capsys.readouterr().out)["stacks"]
    failing = {d["policyName"] for d in stack["diagnostics"] if d["severity"] == "error"}
    assert failing == {"zlh-agent-port"}


def test_a_crashing_pack_fails_the_preview(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (tmp_path / "__main__.py").write_text("raise RuntimeError('the pack broke on purpose')\n")
    assert preview("--stack", "core", "--policy-pack", str(tmp_path)) == 1
    captured = capsys.readouterr()
    assert "the pack broke on purpose" in captured.out
    assert "Traceback" not in captured.err


def test_no_policy_skips_the_pack(tmp_path: Path) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (tmp_path / "__main__.py").write_text("raise RuntimeError('never started')\n")
    assert preview("--stack", "core", "--policy-pack", str(tmp_path), "--no-policy") == 0
