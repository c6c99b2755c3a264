"""The real pack process, driven over the analyzer protocol like ``pulumi preview --policy-pack``.

First over stacks built by hand (exact diagnostics), then over the program's own
stacks as the shipped stack files configure them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.policies.policy_fixtures import (
    CORE_ENDPOINT,
    core_stack,
    find,
    props,
    runtime_stack,
)
from zlh_infra.policies import pack
from zlh_infra.policies.resources import FIREWALL_RULES, PROXMOX_PROVIDER, Resource
from zlh_infra.tooling.preview.policy_engine import (
    PolicyConfigError,
    PolicyReport,
    has_mandatory_violation,
    run_policy_pack,
)
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording

ROOT = Path(__file__).resolve().parents[2]
PACK_DIR = ROOT / "policy"
SIG = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN_NUMBER = "3eeb2bf0-c639-47a8-9e75-3b44932eb421"
DESCRIPTION = {policy.name: policy.description for policy in pack.POLICIES}

Diag = tuple[str | None, str | None, str, str | None]


def recorded(resource: Resource) -> RecordedResource:
    custom = not resource.type.startswith(("zlh:", "pulumi:pulumi:"))
    return RecordedResource(
        urn=resource.urn,
        type=resource.type,
        name=resource.name,
        custom=custom,
        parent=resource.parent,
        dependencies=list(resource.dependencies),
        property_dependencies={k: list(v) for k, v in resource.property_dependencies.items()},
        provider=resource.provider.urn if resource.provider else None,
        inputs=dict(resource.props),
        options={"protect": resource.protect},
        outputs=dict(resource.props),
    )


def recording(stack: str, resources: list[Resource]) -> StackRecording:
    return StackRecording(
        stack=stack, project="zlh-infra", resources=[recorded(r) for r in resources]
    )


def run(
    rec: StackRecording, tmp_path: Path | None = None, config: dict[str, Any] | None = None
) -> PolicyReport:
    config_file = None
    if config is not None:
        assert tmp_path is not None
        config_file = tmp_path / "policy-config.json"
        config_file.write_text(json.dumps(config))
    return run_policy_pack(PACK_DIR, rec, policy_config_file=config_file, timeout=60)


def diags(report: PolicyReport) -> list[Diag]:
    return [
        (d.policy_name, d.enforcement_level, d.message, d.urn)
        for d in report.diagnostics
        if d.source == "policy"
    ]


def violation(policy: str, message: str, urn: str | None) -> Diag:
    return (policy, "mandatory", f"{DESCRIPTION[policy]}\n{message}", urn)


# --- hand-built stacks ------------------------------------------------------------


def test_the_pack_declares_its_policies_and_defaults() -> None:
    report = run(recording("core", core_stack()))
    assert report.pack_name == "zlh-platform"
    assert report.pack_version == "0.1.0"
    assert report.policies == {
        policy.name: "remediate" if policy.name == "zlh-secret-inputs" else "mandatory"
        for policy in pack.POLICIES
    }
    assert report.config["zlh-agent-port"].properties == {
        "agentPort": 18888,
        "apiAddress": "10.99.0.10",
        "managementBridge": "vmbr2",
        "metricsPort": 9100,
        "monitorAddress": "10.99.0.20",
        "fleetRoles": ["game", "dev"],
        "requireClusterFirewall": True,
    }
    assert report.config["zlh-vmid-range"].properties["ranges"]["game"] == {
        "first": 1000,
        "last": 1099,
    }
    assert diags(report) == []


def test_a_compliant_runtime_stack_passes() -> None:
    report = run(recording("runtime", runtime_stack(fleet_group=True)))
    assert report.diagnostics == []


def test_violations_reach_the_engine_with_their_resource(tmp_path: Path) -> None:
    resources = runtime_stack()
    dev = find(resources, "dev-alice")
    props(dev)["vmId"] = 1000.0
    game = find(resources, "mc-survival")
    props(game)["nodeName"] = "zlh-core"
    rules = find(resources, "mc-survival-rules", FIREWALL_RULES)
    props(rules)["rules"][0]["source"] = "10.99.0.0/22"
    # The agent rules sit on each container here (zlh-tenant-egress wants them in the group).
    report = run(recording("runtime", resources), tmp_path, {"zlh-tenant-egress": "disabled"})
    assert diags(report) == [
        violation(
            "zlh-guest-placement",
            "mc-survival (VMID 1000) is on node zlh-core, but stack runtime deploys to node "
            "zlh-runtime (policy config stackNodes); set its node to zlh-runtime, or declare "
            "it in stack core.",
            game.urn,
        ),
        violation(
            "zlh-runtime-isolation",
            "mc-survival (VMID 1000) is on the core node zlh-core; a runtime stack must never "
            "place anything on the core host: set its node to this runtime host's node.",
            game.urn,
        ),
        violation(
            "zlh-vmid-range",
            "dev-alice (VMID 1000): VMID 1000 is in the game range 1000-1099, but the guest is "
            "tagged role-dev; give it a free VMID in the dev range 1100-1199, or correct its "
            "tag to role-game.",
            dev.urn,
        ),
        violation(
            "zlh-vmid-unique",
            "dev-alice (VMID 1000): VMID 1000 is already used by mc-survival; a host refuses a "
            "second guest with one VMID and Proxmox Backup Server mixes up the backups of "
            "guests sharing one. Give it a free VMID in its role's range.",
            dev.urn,
        ),
        violation(
            "zlh-agent-port",
            "firewall rules mc-survival-rules of container 1000: rule 0 (zlh-agent from "
            "zpack-api) accepts TCP 18888 from source 10.99.0.0/22; only zpack-api's "
            "management address 10.99.0.10 may reach zlh-agent: set its source to "
            "10.99.0.10/32, or narrow its proto and dport so they do not cover 18888.",
            rules.urn,
        ),
        violation(
            "zlh-host-firewall",
            "node zlh-core has no node firewall resource, so its firewall may be off: register "
            "proxmoxve.node.FirewallLegacy with enabled: true.",
            game.urn,
        ),
        violation(
            "zlh-stateful-protected",
            "mc-survival (VMID 1000) holds data but no enabled backup job of stack runtime "
            "includes it (runtime-backup-job runs on node zlh-runtime only): correct that job, "
            "or add its VMID to the host's backup job to Proxmox Backup Server.",
            game.urn,
        ),
    ]
    assert has_mandatory_violation(report.diagnostics)


def test_a_stack_wide_violation_lands_on_the_root_stack() -> None:
    resources = [r for r in core_stack() if "zlh-proxy" not in r.name]
    report = run(recording("core", resources))
    assert diags(report) == [
        violation(
            "zlh-traefik-per-domain",
            "stack core has no zlh-proxy guest (tag svc-zlh-proxy); its portal, API, "
            "monitoring and Headscale traffic needs exactly one Traefik instance: declare "
            "zlh-proxy.",
            resources[0].urn,
        )
    ]


def test_unknown_values_make_advisories_not_failures() -> None:
    resources = runtime_stack(fleet_group=True)
    game = find(resources, "mc-survival")
    props(game)["vmId"] = UNKNOWN_NUMBER
    report = run(recording("runtime", resources))
    root = resources[0].urn

    def cannot(policy: str) -> str:
        return (
            f"can't run policy '{policy}' from policy pack 'zlh-platform@v0.0.1' during "
            "preview: number value at .vmId can't be known during preview"
        )

    assert diags(report) == [
        ("zlh-vmid-range", "advisory", cannot("zlh-vmid-range"), game.urn),
        ("zlh-vmid-unique", "advisory", cannot("zlh-vmid-unique"), root),
        ("zlh-agent-port", "advisory", cannot("zlh-agent-port"), root),
        ("zlh-host-firewall", "advisory", cannot("zlh-host-firewall"), root),
        ("zlh-tenant-egress", "advisory", cannot("zlh-tenant-egress"), root),
        ("zlh-stateful-protected", "advisory", cannot("zlh-stateful-protected"), root),
        ("zlh-runtime-self-sufficient", "advisory", cannot("zlh-runtime-self-sufficient"), root),
        ("zlh-api-identity", "advisory", cannot("zlh-api-identity"), root),
    ]
    assert not has_mandatory_violation(report.diagnostics)


def test_secret_properties_are_checked_as_plain_values() -> None:
    resources = runtime_stack(fleet_group=True)
    provider = find(resources, "runtime-proxmox", PROXMOX_PROVIDER)
    props(provider)["endpoint"] = {SIG: SECRET_SIG, "value": CORE_ENDPOINT}
    report = run(recording("runtime", resources))
    assert diags(report) == [
        violation(
            "zlh-runtime-isolation",
            "provider runtime-proxmox points at the core host (policy config "
            "coreEndpointHosts: zlh-core); a runtime stack must never manage the core host: "
            "point it at this runtime host's API.",
            provider.urn,
        )
    ]
    assert "zerolaghub" not in diags(report)[0][2]


def test_policy_config_file_overrides_defaults(tmp_path: Path) -> None:
    config = {
        "zlh-agent-port": {"apiAddress": "10.99.0.11"},
        "zlh-vmid-unique": {"reservedVmids": [1100]},
        "zlh-traefik-per-domain": "disabled",
    }
    config["zlh-tenant-egress"] = "disabled"  # the agent rules sit on each container here
    resources = [r for r in runtime_stack() if "zlh-zpack-proxy" not in r.name]
    report = run(recording("runtime", resources), tmp_path, config)
    assert [(d[0], d[3]) for d in diags(report)] == [
        ("zlh-vmid-unique", find(resources, "dev-alice").urn),
        ("zlh-agent-port", find(resources, "mc-survival-rules", FIREWALL_RULES).urn),
        ("zlh-agent-port", find(resources, "dev-alice-rules", FIREWALL_RULES).urn),
    ]
    assert report.policies["zlh-traefik-per-domain"] == "disabled"
    assert "only zpack-api's management address 10.99.0.11 may reach" in diags(report)[1][2]


def test_enforcement_can_be_lowered_per_policy(tmp_path: Path) -> None:
    resources = runtime_stack(fleet_group=True)
    props(find(resources, "dev-alice"))["vmId"] = 1000.0
    config = {"all": "advisory", "zlh-vmid-unique": {"enforcementLevel": "mandatory"}}
    report = run(recording("runtime", resources), tmp_path, config)
    assert [(d[0], d[1]) for d in diags(report)] == [
        ("zlh-vmid-range", "advisory"),
        ("zlh-vmid-unique", "mandatory"),
    ]


def test_overlapping_ranges_from_config_are_reported(tmp_path: Path) -> None:
    config = {"zlh-vmid-range": {"ranges": {"game": {"first": 1000, "last": 1150}}}}
    resources = core_stack()
    report = run(recording("core", resources), tmp_path, config)
    message = (
        "the configuration of policy zlh-vmid-range is unusable: ranges: ranges game "
        "(1000-1150) and dev (1100-1199) overlap. Fix it in the --policy-pack-config file."
    )
    guests = [r for r in resources if r.type.startswith("proxmoxve:index/")]
    assert diags(report) == [violation("zlh-vmid-range", message, g.urn) for g in guests]


def test_config_the_schema_refuses_never_reaches_the_pack(tmp_path: Path) -> None:
    config = {"zlh-vmid-range": {"ranges": {"games": {"first": 1000, "last": 1099}}}}
    with pytest.raises(PolicyConfigError, match="zlh-vmid-range: property 'ranges'"):
        run(recording("core", core_stack()), tmp_path, config)


# --- the program's own stacks -----------------------------------------------------


@pytest.fixture(scope="module")
def platform() -> Iterator[dict[str, StackRecording]]:
    from zlh_infra.tooling.preview.runner import run_platform

    files = {"core": ROOT / "Pulumi.core.yaml", "runtime": ROOT / "Pulumi.runtime.yaml"}
    recordings = run_platform(files, ["core", "runtime"], project_file=ROOT / "Pulumi.yaml")
    yield {rec.stack: rec for rec in recordings}


def known_at_deploy(report: PolicyReport) -> list[Diag]:
    """The pack's diagnostics but the advisory that a value is known only at deploy time.

    The runtime stack's preview holds values read from guests while they deploy (the PBS
    fingerprint and Headscale key the core stack reads, zlh-build's publishing key): the
    self-sufficiency check skips the resources holding them, checks the rest, and the
    engine reports it could not run in full.
    """
    return [
        d
        for d in diags(report)
        if not (
            d[:2] == ("zlh-runtime-self-sufficient", "advisory")
            and "can't be known during preview" in d[2]
        )
    ]


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_the_shipped_stacks_pass(platform: dict[str, StackRecording], stack: str) -> None:
    rec = platform[stack]
    assert [d.message for d in rec.diagnostics if d.severity == "error"] == []
    report = run(rec)
    assert (known_at_deploy(report) if stack == "runtime" else diags(report)) == []
    assert not has_mandatory_violation(report.diagnostics)


def _recorded_guest(rec: StackRecording, name: str) -> RecordedResource:
    return next(
        r
        for r in rec.resources
        if r.name == name and r.type == "proxmoxve:index/containerLegacy:ContainerLegacy"
    )


def test_a_shipped_stack_with_a_config_override(
    platform: dict[str, StackRecording], tmp_path: Path
) -> None:
    config = {"zlh-vmid-unique": {"reservedVmids": [1000]}}
    report = run(platform["runtime"], tmp_path, config)
    game = _recorded_guest(platform["runtime"], "mc-survival")
    assert known_at_deploy(report) == [
        violation(
            "zlh-vmid-unique",
            "mc-survival (VMID 1000): VMID 1000 belongs to a guest outside this stack (policy "
            "config reservedVmids); give it a free VMID in its role's range.",
            game.urn,
        )
    ]


def test_a_shipped_stack_with_a_guest_moved_to_the_core_host(
    platform: dict[str, StackRecording],
) -> None:
    rec = platform["runtime"]
    moved = StackRecording(stack=rec.stack, project=rec.project, resources=[])
    for resource in rec.resources:
        copy = RecordedResource(**{f: getattr(resource, f) for f in resource.__slots__})
        if resource.name == "dev-alice" and resource.type.endswith("ContainerLegacy"):
            copy.inputs = {**resource.inputs, "nodeName": "zlh-core"}
            copy.outputs = {**resource.outputs, "nodeName": "zlh-core"}
        moved.resources.append(copy)
    report = run(moved)
    # Moved off the node its backup job runs on, it is no longer backed up either.
    assert [(d[0], d[1]) for d in known_at_deploy(report)] == [
        ("zlh-guest-placement", "mandatory"),
        ("zlh-runtime-isolation", "mandatory"),
        ("zlh-host-firewall", "mandatory"),
        ("zlh-stateful-protected", "mandatory"),
    ]
    assert {d[3] for d in known_at_deploy(report)} == {_recorded_guest(rec, "dev-alice").urn}


def test_a_misspelt_key_is_reported_by_the_pack(tmp_path: Path) -> None:
    # The policies' schemas do not forbid extra keys, so the pack refuses them itself.
    config = {"zlh-traefik-per-domain": {"coreProxy": "zlh-proxy"}}
    resources = core_stack()
    report = run(recording("core", resources), tmp_path, config)
    assert diags(report) == [
        violation(
            "zlh-traefik-per-domain",
            "the configuration of policy zlh-traefik-per-domain is unusable: unknown key(s) "
            "coreProxy; its keys are coreProxyService, runtimeProxyService. Fix it in the "
            "--policy-pack-config file.",
            resources[0].urn,
        )
    ]
