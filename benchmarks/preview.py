"""Offline preview of both stacks with a full fleet: program, policy analysis, total.

The fleet is the shipped runtime configuration with 100 game and 100 dev containers.
Program evaluation is compared with a baseline that registers the very same resources
(types, names, parents, providers, inputs) with bare SDK calls under the same mocks, so
the ratio is what the program's own work costs on top of the SDK. Policy analysis is
compared with a hollow pack: the same policies, levels and config schemas, checking
nothing, so the difference is what the checks cost on top of ``pulumi_policy``.

    python3 tasks.py bench [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml

from tests.stack_configs import ROOT, engine_config, shipped
from zlh_infra import cli
from zlh_infra.tooling.preview.policy_engine import run_policy_pack
from zlh_infra.tooling.preview.recording import StackRecording
from zlh_infra.tooling.preview.runner import load_program, run_stack, secret_exports

FLEET = 100

#: The same policies, levels and config schemas as the real pack, checking nothing.
HOLLOW_PACK = Path(__file__).parent / "hollow_pack"


def full_fleet_runtime() -> dict[str, Any]:
    config = shipped("runtime")
    config["games"] = [
        {"name": f"game-{i:03d}", "vmid": 1000 + i, "template": "minecraft-paper"}
        for i in range(FLEET)
    ]
    config["devs"] = [
        {"name": f"dev-{i:03d}", "vmid": 1100 + i, "template": "code-server"} for i in range(FLEET)
    ]
    return config


def baseline_program(recording: StackRecording) -> Callable[[], None]:
    """Re-register ``recording``'s resources with bare SDK calls, in the same order."""

    def program() -> None:
        made: dict[str, pulumi.Resource] = {}
        for res in recording.resources:
            if res.type == "pulumi:pulumi:Stack":
                continue
            opts = pulumi.ResourceOptions(
                parent=made.get(res.parent or ""),
                provider=made.get(res.provider or ""),  # type: ignore[arg-type]
            )
            created: pulumi.Resource
            if res.type.startswith("pulumi:providers:"):
                package = res.type.removeprefix("pulumi:providers:")
                created = pulumi.ProviderResource(package, res.name, dict(res.inputs), opts)
            elif res.custom:
                created = pulumi.CustomResource(res.type, res.name, dict(res.inputs), opts)
            else:
                created = pulumi.ComponentResource(res.type, res.name, None, opts)
            made[res.urn] = created

    return program


@dataclass
class Run:
    program: float
    baseline: float
    #: Both packs, start to finish; ``analysis`` is the part spent analysing.
    policy: float
    analysis: float
    #: Analysis by the hollow pack: what pulumi_policy costs with checks that do nothing.
    hollow_analysis: float
    total: float
    resources: int


def _stack_file(path: Path, config: dict[str, Any]) -> Path:
    document = {"config": {k if ":" in k else f"zlh-infra:{k}": v for k, v in config.items()}}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def one_run(workdir: Path) -> Run:
    program = load_program()
    core_config = engine_config(shipped("core"))
    runtime_config = engine_config(full_fleet_runtime())

    started = time.perf_counter()
    core = run_stack("core", core_config, [], program)
    runtime = run_stack(
        "runtime",
        runtime_config,
        [],
        program,
        stack_outputs={"core": core.outputs},
        secret_output_names={"core": secret_exports(core.outputs)},
    )
    program_seconds = time.perf_counter() - started

    started = time.perf_counter()
    for recording in (core, runtime):
        run_stack(recording.stack, recording.config, [], baseline_program(recording))
    baseline_seconds = time.perf_counter() - started

    started = time.perf_counter()
    analysis_seconds = 0.0
    for recording in (core, runtime):
        report = run_policy_pack(ROOT / "policy", recording, stack_config=recording.config)
        failures = [d for d in report.diagnostics if d.severity == "error"]
        if failures:
            raise SystemExit(f"policy failures in {recording.stack}: {failures[0].message}")
        analysis_seconds += report.analysis_seconds
    policy_seconds = time.perf_counter() - started

    hollow_seconds = sum(
        run_policy_pack(HOLLOW_PACK, recording, stack_config=recording.config).analysis_seconds
        for recording in (core, runtime)
    )

    # The whole preview as an operator runs it: programs, policy pack, JSON output.
    core_file = _stack_file(workdir / "Pulumi.core.yaml", shipped("core"))
    runtime_file = _stack_file(workdir / "Pulumi.runtime.yaml", full_fleet_runtime())
    started = time.perf_counter()
    code = cli.main(
        [
            "preview",
            "--format",
            "json",
            "--output",
            str(workdir / "preview.json"),
            "--stack-file",
            f"core={core_file}",
            "--stack-file",
            f"runtime={runtime_file}",
        ],
        cwd=ROOT,
    )
    total_seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"the preview exited {code}")
    return Run(
        program_seconds,
        baseline_seconds,
        policy_seconds,
        analysis_seconds,
        hollow_seconds,
        total_seconds,
        len(core.resources) + len(runtime.resources),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    options = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        one_run(Path(workdir))  # warm up imports and caches
        runs = [one_run(Path(workdir)) for _ in range(options.runs)]
    median = {
        name: statistics.median(getattr(run, name) for run in runs)
        for name in ("program", "baseline", "policy", "analysis", "hollow_analysis", "total")
    }
    resources = runs[0].resources
    figures = {
        "runs": options.runs,
        "resources": resources,
        "program_s": round(median["program"], 3),
        "baseline_s": round(median["baseline"], 3),
        "program_over_baseline": round(median["program"] / median["baseline"], 2),
        "policy_pack_s": round(median["policy"], 3),
        "pack_startup_s": round(median["policy"] - median["analysis"], 3),
        "analysis_s": round(median["analysis"], 3),
        "analysis_ms_per_resource": round(1000 * median["analysis"] / resources, 3),
        "hollow_pack_ms_per_resource": round(1000 * median["hollow_analysis"] / resources, 3),
        "total_s": round(median["total"], 3),
    }
    width = max(len(key) for key in figures)
    print(f"offline preview, core + runtime with {FLEET} game and {FLEET} dev containers")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
