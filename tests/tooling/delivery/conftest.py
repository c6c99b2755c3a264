"""The real program, previewed offline once per session from the shipped stack files."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import pytest

from tests.stack_configs import ROOT
from zlh_infra.tooling.preview.recording import StackRecording
from zlh_infra.tooling.preview.render import to_json_data
from zlh_infra.tooling.preview.runner import run_platform


@pytest.fixture(scope="session")
def recordings() -> list[StackRecording]:
    with contextlib.redirect_stdout(sys.stderr):
        return run_platform(
            {"core": ROOT / "Pulumi.core.yaml", "runtime": ROOT / "Pulumi.runtime.yaml"},
            ["core", "runtime"],
            project_file=ROOT / "Pulumi.yaml",
        )


@pytest.fixture(scope="session")
def recorded_json(recordings: list[StackRecording]) -> dict[str, Any]:
    """The recordings as ``preview --format json`` writes them (secrets masked)."""
    return to_json_data(recordings)
