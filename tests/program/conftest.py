"""The real program, previewed offline once per test session from the shipped stack files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.stack_configs import ROOT
from zlh_infra.platform.type_tokens import CONTAINER as CONTAINER
from zlh_infra.platform.type_tokens import VM as VM
from zlh_infra.preview.recording import RecordedResource, StackRecording
from zlh_infra.preview.runner import run_platform


@pytest.fixture(scope="session")
def platform() -> dict[str, StackRecording]:
    recordings = run_platform(
        {"core": ROOT / "Pulumi.core.yaml", "runtime": ROOT / "Pulumi.runtime.yaml"},
        ["core", "runtime"],
    )
    return {recording.stack: recording for recording in recordings}


@pytest.fixture(scope="session")
def core(platform: dict[str, StackRecording]) -> StackRecording:
    return platform["core"]


@pytest.fixture(scope="session")
def runtime(platform: dict[str, StackRecording]) -> StackRecording:
    return platform["runtime"]


def guests(recording: StackRecording) -> Iterator[RecordedResource]:
    return (r for r in recording.resources if r.type in (CONTAINER, VM))


def by_vmid(recording: StackRecording) -> dict[int, RecordedResource]:
    return {int(r.inputs["vmId"]): r for r in guests(recording)}


def of_type(recording: StackRecording, type_: str) -> list[RecordedResource]:
    return [r for r in recording.resources if r.type == type_]


def resource(recording: StackRecording, urn: str | None) -> RecordedResource:
    return next(r for r in recording.resources if r.urn == urn)


def tag(res: RecordedResource, prefix: str) -> Any:
    return next(
        (t[len(prefix) :] for t in res.inputs.get("tags", []) if t.startswith(prefix)), None
    )
