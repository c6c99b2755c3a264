"""Core -> runtime: the runtime reads the core run's real exports; never the other way."""

from __future__ import annotations

import ast
import copy
import re
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from pulumi.runtime import rpc

from tests.program.conftest import by_vmid, of_type
from tests.stack_configs import (
    ROOT,
    core_with_second_runtime_host,
    engine_config,
    second_runtime_stack,
    shipped,
)
from zlh_infra.contract import CONTRACT_VERSION
from zlh_infra.tooling.preview.recording import StackRecording
from zlh_infra.tooling.preview.runner import load_program, run_stack, secret_exports


def run_runtime(
    core: StackRecording,
    config: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    stack: str = "runtime",
) -> StackRecording:
    core_outputs = core.outputs if outputs is None else outputs
    return run_stack(
        stack,
        engine_config(config or shipped("runtime")),
        [],
        load_program(),
        stack_outputs={"core": core_outputs},
        secret_output_names={"core": secret_exports(core_outputs)},
    )


def config_errors(recording: StackRecording) -> list[str]:
    return [d.message for d in recording.diagnostics if d.source == "config"]


def test_runtime_reads_only_the_core_stack_through_a_stack_reference(
    runtime: StackRecording,
) -> None:
    assert [(r.type, r.name) for r in runtime.reads] == [("pulumi:pulumi:StackReference", "core")]


def test_core_reads_nothing_and_previews_without_any_runtime_stack(core: StackRecording) -> None:
    assert core.reads == []
    alone = run_stack("core", engine_config(shipped("core")), [], load_program())
    assert [d for d in alone.diagnostics if d.severity == "error"] == []
    assert len(alone.resources) == len(core.resources)


def test_core_resources_name_no_runtime_node_or_address(core: StackRecording) -> None:
    runtime_config = shipped("runtime")
    runtime_node = runtime_config["proxmox"]["node"]
    runtime_lan = IPv4Network(runtime_config["network"]["lan"]["cidr"])
    for res in core.resources:
        nodes = {res.inputs.get("nodeName"), res.inputs.get("node"), *res.inputs.get("nodes", [])}
        assert runtime_node not in nodes, res.urn
        assert runtime_node not in str(res.inputs.get("endpoint", "")), res.urn
    text = repr([(r.inputs, r.outputs) for r in core.resources]) + repr(core.outputs)
    addresses = {IPv4Address(a) for a in re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", text)}
    assert [a for a in addresses if a in runtime_lan] == []


def test_only_runtime_stacks_create_stack_references() -> None:
    """StackReference appears once in the program: where a runtime stack reads the core."""
    hits = [
        (path.relative_to(ROOT), node.lineno)
        for path in sorted((ROOT / "zlh_infra").rglob("*.py"))
        if "preview" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "StackReference"
    ]
    assert [str(path) for path, _ in hits] == ["zlh_infra/program.py"]
    source = (ROOT / "zlh_infra/program.py").read_text()
    function = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef) and node.name == "read_core_contract"
    )
    assert function.lineno <= hits[0][1] <= (function.end_lineno or 0)


def agent_sources(recording: StackRecording) -> set[str]:
    """What the fleet's agent rule admits: its group's source, through the host's IP sets."""
    (group,) = [
        g
        for g in of_type(recording, "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy")
        if any(rule.get("dport") == "18888" for rule in g.inputs["rules"])
    ]
    ipsets = {
        r.inputs["name"]: {c["name"] for c in r.inputs["cidrs"]}
        for r in of_type(recording, "proxmoxve:firewall/ipsetLegacy:IpsetLegacy")
    }
    (source,) = {r["source"] for r in group.inputs["rules"] if r.get("dport") == "18888"}
    return ipsets[source.removeprefix("+")]


def test_runtime_uses_the_core_runs_actual_exports(
    core: StackRecording, runtime: StackRecording
) -> None:
    assert agent_sources(runtime) == {f"{core.outputs['apiManagementAddress']}/32"}
    storage = of_type(runtime, "proxmoxve:storage/pbs:Pbs")[0]
    assert storage.inputs["server"] == core.outputs["pbsServer"]
    assert storage.inputs["datastore"] == core.outputs["pbsDatastore"]

    moved = copy.deepcopy(core.outputs)
    moved["apiManagementAddress"] = "10.99.0.77"
    assert agent_sources(run_runtime(core, outputs=moved)) == {"10.99.0.77/32"}


def test_runtime_backs_up_its_fleet_by_pool_so_api_made_servers_are_in_it(
    runtime: StackRecording,
) -> None:
    jobs = {j.inputs["resourceId"]: j.inputs for j in of_type(runtime, "proxmoxve:backup/job:Job")}
    fleet_job = jobs["zlh-pbs-fleet"]
    assert fleet_job["pool"] == "zlh-runtime" and not fleet_job.get("vmids")
    fleet = [g for g in by_vmid(runtime).values() if 1000 <= int(g.inputs["vmId"]) <= 1199]
    assert fleet and all(g.inputs["poolId"] == "zlh-runtime" for g in fleet)
    # The edge's stateful guests sit in another pool: their own job names them.
    assert jobs["zlh-pbs-edge"]["vmids"] == ["311"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda o: o.pop("apiManagementAddress"),
            "core stack 'core' does not export apiManagementAddress: run `pulumi up` on the "
            "core stack first, with this version of the program",
        ),
        (
            lambda o: o.update(contractVersion=1),
            f"core stack 'core' exports contractVersion 1, this program needs {CONTRACT_VERSION}: "
            "deploy the "
            "same program version to core and runtime",
        ),
    ],
    ids=["missing-output", "other-version"],
)
def test_a_contract_that_does_not_fit_stops_the_runtime_before_any_resource(
    core: StackRecording, change: Any, expected: str
) -> None:
    outputs = copy.deepcopy(core.outputs)
    change(outputs)
    recording = run_runtime(core, outputs=outputs)
    assert config_errors(recording) == [f"stack 'runtime': invalid configuration:\n  - {expected}"]
    assert [r.type for r in recording.resources if r.custom] == []


def test_runtime_refuses_a_vmid_the_core_stack_uses(core: StackRecording) -> None:
    config = shipped("runtime")
    config["games"][0]["vmid"] = 1000
    outputs = copy.deepcopy(core.outputs)
    outputs["coreVmids"] = [*outputs["coreVmids"], 1000]
    recording = run_runtime(core, config=config, outputs=outputs)
    assert config_errors(recording) == [
        "stack 'runtime': invalid configuration:\n  - zlh-infra:games[0].vmid: VMID 1000 is "
        "used by the core stack; VMIDs are unique across hosts because Proxmox Backup Server keys "
        "backups by VMID"
    ]


@pytest.mark.parametrize(
    ("offset", "vmid", "address", "holder"),
    [
        (10, 1000, "10.99.0.10", "zpack-api"),
        (20, 1000, "10.99.0.20", "zlh-monitor"),
        (20, 1001, "10.99.0.21", "zlh-back"),
    ],
)
def test_runtime_refuses_a_fleet_address_a_core_guest_holds(
    core: StackRecording, offset: int, vmid: int, address: str, holder: str
) -> None:
    config = shipped("runtime")
    config["network"]["fleetOffset"] = offset
    config["games"] = [{"name": "mc-one", "vmid": vmid, "template": "minecraft-paper"}]
    config["devs"] = []
    # Keep the LAN side free of the runtime's own guests, to see the cross-stack rule alone.
    config["network"]["lan"]["cidr"] = "10.20.0.0/22"
    config["guests"]["zlh-artifacts"]["lanAddress"] = "10.20.0.110"
    config["guests"]["zlh-build"]["lanAddress"] = "10.20.0.111"
    # The core looks for the fleet where the runtime puts it, to see this rule alone.
    outputs = copy.deepcopy(core.outputs)
    outputs["fleetBlocks"] = {"zlh-runtime": f"10.99.0.{offset}"}
    recording = run_runtime(core, config=config, outputs=outputs)
    assert config_errors(recording) == [
        "stack 'runtime': invalid configuration:\n  - zlh-infra:games[0] (management address): "
        f"{address} is {holder}'s management address in the core stack; change "
        "network.fleetOffset or the VMID"
    ]


def test_a_legitimate_fleet_offset_change_stays_green(core: StackRecording) -> None:
    """Moved in both stacks: the runtime's fleetOffset and the core's monitoring.fleets."""
    config = shipped("runtime")
    config["network"]["fleetOffset"] = 512
    outputs = copy.deepcopy(core.outputs)
    outputs["fleetBlocks"] = {"zlh-runtime": "10.99.2.0"}
    recording = run_runtime(core, config=config, outputs=outputs)
    assert config_errors(recording) == []
    assert [d for d in recording.diagnostics if d.severity == "error"] == []


def test_a_fleet_moved_on_one_side_only_is_refused(core: StackRecording) -> None:
    """zlh-monitor would look for the host's guests where they are not."""
    config = shipped("runtime")
    config["network"]["fleetOffset"] = 512
    recording = run_runtime(core, config=config)
    assert config_errors(recording) == [
        "stack 'runtime': invalid configuration:\n  - zlh-infra:network.fleetOffset: puts VMID "
        "1000 at 10.99.2.0, but the core stack's monitoring.fleets.zlh-runtime is 10.99.1.0, "
        "where zlh-monitor looks: make the two agree"
    ]


def test_runtime_refuses_the_core_node(core: StackRecording) -> None:
    config = shipped("runtime")
    config["proxmox"]["node"] = "zlh-core"
    recording = run_runtime(core, config=config)
    assert config_errors(recording) == [
        "stack 'runtime': invalid configuration:\n  - zlh-infra:proxmox.node: zlh-core is the "
        "core host's node; runtime guests must never run on the core host"
    ]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "endpoint",
            "https://zlh-core.zerolaghub.net:8006/",
            "zlh-infra:proxmox.endpoint: zlh-core.zerolaghub.net is how the core stack reaches "
            "the core host; a runtime stack's API calls and in-guest steps must never reach it\n"
            "  - zlh-infra:proxmox.endpoint: https://zlh-core.zerolaghub.net:8006/ is not the "
            "endpoint the core stack gives zpack-api for stack runtime "
            "(runtimeHosts.runtime.endpoint: https://zlh-runtime.zerolaghub.net:8006/); make "
            "the two agree",
        ),
        (
            "sshAddress",
            "ZLH-CORE.zerolaghub.net",
            "zlh-infra:proxmox.sshAddress: ZLH-CORE.zerolaghub.net is how the core stack reaches "
            "the core host; a runtime stack's API calls and in-guest steps must never reach it",
        ),
        (
            "sshHostKey",
            shipped("core")["proxmox"]["sshHostKey"],
            "zlh-infra:proxmox.sshHostKey: is the core host's SSH host key; pin the runtime "
            "node's own key (its /etc/ssh/ssh_host_ed25519_key.pub)",
        ),
    ],
)
def test_runtime_steps_can_never_be_pointed_at_the_core_host(
    core: StackRecording, field: str, value: str, expected: str
) -> None:
    config = shipped("runtime")
    config["proxmox"][field] = value
    recording = run_runtime(core, config=config)
    assert config_errors(recording) == [f"stack 'runtime': invalid configuration:\n  - {expected}"]
    assert [r.type for r in recording.resources if r.custom] == []


def run_core(config: dict[str, Any]) -> StackRecording:
    recording = run_stack("core", engine_config(config), [], load_program())
    assert [d.message for d in recording.diagnostics if d.severity == "error"] == []
    return recording


def second_runtime_host() -> dict[str, Any]:
    config = second_runtime_stack()
    config["games"] = [{"name": "mc-hub-2", "vmid": 1010, "template": "minecraft-paper"}]
    config["devs"] = []
    return config


def test_a_runtime_stack_the_core_has_no_pbs_user_for_is_refused(core: StackRecording) -> None:
    recording = run_runtime(core, second_runtime_host(), stack="runtime-2")
    assert config_errors(recording) == [
        "stack 'runtime-2': invalid configuration:\n  - zlh-infra:proxmox.node: the core "
        "stack's monitoring.fleets has no block for zlh-runtime-2, so zlh-monitor would not "
        "find its guests: add zlh-infra:monitoring.fleets.zlh-runtime-2: 10.99.2.0 to the core "
        "stack and run `pulumi up` on it first\n  - core stack 'core' knows no runtime host "
        "for stack 'runtime-2' (it knows: runtime): add zlh-infra:runtimeHosts.runtime-2 to "
        "the core stack and run `pulumi up` on it first"
    ]
    assert [r.type for r in recording.resources if r.custom] == []


def test_a_runtime_stack_file_copied_to_a_second_stack_is_refused() -> None:
    """runtime-2 with runtime's file: same node, VMIDs and addresses as the first stack."""
    core = run_core(core_with_second_runtime_host())
    recording = run_runtime(core, shipped("runtime"), stack="runtime-2")
    assert config_errors(recording) == [
        "stack 'runtime-2': invalid configuration:\n  - zlh-infra:proxmox.node: the core stack "
        "assigns stack runtime-2 to node zlh-runtime-2 (runtimeHosts.runtime-2.node), not "
        "zlh-runtime: two stacks on one node would manage the same VMIDs and addresses; make "
        "the two agree\n  - zlh-infra:proxmox.endpoint: https://zlh-runtime.zerolaghub.net:8006/ "
        "is not the endpoint the core stack gives zpack-api for stack runtime-2 "
        "(runtimeHosts.runtime-2.endpoint: https://zlh-runtime-2.zerolaghub.net:8006/); make "
        "the two agree"
    ]
    assert [r.type for r in recording.resources if r.custom] == []


def test_a_second_runtime_host_is_one_more_stack() -> None:
    core = run_core(core_with_second_runtime_host())
    recording = run_runtime(core, second_runtime_host(), stack="runtime-2")
    assert [d for d in recording.diagnostics if d.severity == "error"] == []
    nodes = {
        g.inputs["nodeName"]
        for g in recording.resources
        if "vmId" in g.inputs and "nodeName" in g.inputs
    }
    assert nodes == {"zlh-runtime-2"}
    (storage,) = of_type(recording, "proxmoxve:storage/pbs:Pbs")
    assert (storage.inputs["username"], storage.inputs["namespace"]) == (
        "zlh-runtime-2@pbs",
        "runtime-2",
    )
    hosts = rpc.unwrap_rpc_secret(core.outputs["pbsHosts"])
    assert rpc.unwrap_rpc_secret(storage.inputs["password"]) == hosts["runtime-2"]["password"]
    assert hosts["runtime-2"]["password"] != hosts["runtime"]["password"]


def test_a_deploy_needs_the_values_the_core_reads_from_its_guests(core: StackRecording) -> None:
    """A preview shows them as still to come; `pulumi up` of the runtime refuses without them."""
    outputs = copy.deepcopy(core.outputs)
    del outputs["pbsFingerprint"]
    previewed = run_runtime(core, outputs=outputs)
    assert config_errors(previewed) == []
    (storage,) = of_type(previewed, "proxmoxve:storage/pbs:Pbs")
    assert storage.inputs["fingerprint"] == rpc.UNKNOWN
    deployed = run_stack(
        "runtime",
        engine_config(shipped("runtime")),
        [],
        load_program(),
        stack_outputs={"core": outputs},
        secret_output_names={"core": secret_exports(outputs)},
        preview=False,
    )
    assert config_errors(deployed) == [
        "stack 'runtime': invalid configuration:\n  - core stack 'core' does not export "
        "pbsFingerprint, headscalePreauthKey, routeKey: run `pulumi up` on the core stack "
        "first, with this version of the program"
    ]
