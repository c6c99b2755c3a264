"""The benchmark compares like with like: its baseline and its hollow pack mirror the real ones."""

from __future__ import annotations

from typing import Any

from benchmarks.preview import HOLLOW_PACK, baseline_program
from tests.stack_configs import ROOT, engine_config, shipped
from zlh_infra.tooling.preview.policy_engine import run_policy_pack
from zlh_infra.tooling.preview.recording import RecordedResource
from zlh_infra.tooling.preview.runner import load_program, run_stack


def test_baseline_registers_the_programs_resources() -> None:
    recording = run_stack("core", engine_config(shipped("core")), [], load_program())
    baseline = run_stack("core", recording.config, [], baseline_program(recording))

    # Registration order varies between runs: compare resource by resource.
    def shape(resources: list[RecordedResource]) -> dict[str, Any]:
        return {r.urn: (r.parent, r.provider, r.custom, r.inputs) for r in resources}

    assert shape(baseline.resources) == shape(recording.resources)


def test_hollow_pack_declares_the_real_policies_and_checks_nothing() -> None:
    recording = run_stack("core", engine_config(shipped("core")), [], load_program())
    # A VMID outside every range: the real pack objects, the hollow one must not.
    for resource in recording.resources:
        if resource.name == "zpack-api" and "vmId" in resource.inputs:
            resource.inputs["vmId"] = 5000
            resource.outputs["vmId"] = 5000
    real = run_policy_pack(ROOT / "policy", recording, stack_config=recording.config)
    hollow = run_policy_pack(HOLLOW_PACK, recording, stack_config=recording.config)
    assert hollow.pack_name == real.pack_name
    assert hollow.policies == real.policies
    assert hollow.config == real.config
    assert any(d.severity == "error" for d in real.diagnostics)
    assert [d for d in hollow.diagnostics if d.source == "policy"] == []
