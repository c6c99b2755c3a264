"""Property: whatever stack configurations pass the checks share no address, VMID or backup.

Generated core and runtime configurations (zpack-api's address, each host's node, fleet
block and offset, the fleet's VMIDs, a second runtime host copied from the first) go
through the same checks as ``pulumi up``: the core config's own, then each runtime stack's
own and its refusals against the core's contract. Every combination the checks accept
must keep the platform's management addresses, VMIDs and backup groups apart.
"""

from __future__ import annotations

import copy
from collections import Counter
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulumi.runtime import rpc

from tests.stack_configs import (
    core_with_second_runtime_host,
    engine_config,
    second_runtime_stack,
    shipped,
)
from zlh_infra.config import CoreStackConfig, RuntimeStackConfig, parse_stack_config
from zlh_infra.contract import (
    CONTRACT_VERSION,
    DEPLOY_TIME_OUTPUTS,
    CoreContract,
    parse_contract,
)
from zlh_infra.errors import ConfigError
from zlh_infra.platform.catalogue import Network
from zlh_infra.tooling.preview.recording import StackRecording

#: Offsets on the /22 management network near the shipped ones, so that blocks meet.
OFFSETS = st.sampled_from([0, 8, 16, 200, 256, 300, 460, 512, 700, 768, 820])
MANAGEMENT = st.sampled_from(
    [f"10.99.0.{n}" for n in (2, 3, 4, 10, 20, 21, 40)]
    + ["10.99.1.5", "10.99.1.201", "10.99.2.0", "10.99.2.9", "10.99.3.1"]
)
NODES = st.sampled_from(["zlh-runtime", "zlh-runtime-2", "zlh-core"])
#: What a careless or hostile edit may change, and what it may change it to.
TAMPERING: dict[str, st.SearchStrategy[Any]] = {
    "api address": MANAGEMENT,
    "runtime block": OFFSETS,
    "runtime node address": MANAGEMENT,
    "runtime offset": OFFSETS,
    "game vmid": st.sampled_from([100, 104, 150, 1000, 1001, 1019, 1050, 1099]),
    "second host copied": st.just(True),
    "second offset": OFFSETS,
    "second block": OFFSETS,
    "second node in core": NODES,
    "second node": NODES,
    "second namespace": st.sampled_from(["runtime", "core"]),
    "second node address": MANAGEMENT,
}


def contract_of(core: CoreStackConfig) -> CoreContract:
    """What the core stack exports, from its config (the program's exports, minus deploy time)."""
    guests = core.guests
    return CoreContract.model_validate(
        {
            "contractVersion": CONTRACT_VERSION,
            "coreNode": core.proxmox.node,
            "coreHosts": sorted({core.proxmox.endpoint_host, core.proxmox.shell_address}),
            "coreHostKey": core.proxmox.ssh_host_key,
            "managementCidr": str(core.network.management.cidr),
            "apiManagementAddress": str(guests["zpack-api"].management_address),
            "monitorManagementAddress": str(guests["zlh-monitor"].management_address),
            "pbsServer": str(guests["zlh-back"].management_address),
            "pbsDatastore": core.pbs.datastore,
            "runtimeHosts": {
                stack: {"node": host.node, "endpoint": host.endpoint}
                for stack, host in core.runtime_hosts.items()
            },
            "pbsHosts": {
                stack: {
                    "username": host.pbs.user,
                    "password": "generated",
                    "namespace": host.pbs.namespace,
                }
                for stack, host in core.runtime_hosts.items()
            },
            "apiHosts": {
                stack: {"username": "zpack-api@pve", "password": "generated"}
                for stack in core.runtime_hosts
            },
            "headscaleUrl": f"https://{core.domains.headscale}",
            "coreVmids": sorted(vmid for _key, vmid in core.all_vmids()),
            "fleetBlocks": {node: str(first) for node, first in core.monitoring.fleets.items()},
        }
    )


def accepted_core(raw: dict[str, Any]) -> CoreStackConfig | None:
    try:
        return parse_stack_config(CoreStackConfig, engine_config(raw), stack="core")
    except ConfigError:
        return None


def accepted_runtime(
    raw: dict[str, Any], stack: str, contract: CoreContract
) -> RuntimeStackConfig | None:
    try:
        config = parse_stack_config(RuntimeStackConfig, engine_config(raw), stack=stack)
    except ConfigError:
        return None
    if config.refuse_contract(contract, stack=stack, core_stack="core"):
        return None
    return config


@st.composite
def platforms(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The compliant three-stack platform with up to three values changed."""
    changed = draw(st.sets(st.sampled_from(sorted(TAMPERING)), max_size=3))
    value = {name: draw(TAMPERING[name]) for name in sorted(changed)}
    core, stacks = compliant_platform()
    runtime, second = stacks["runtime"], stacks["runtime-2"]
    if "api address" in value:
        core["guests"]["zpack-api"]["managementAddress"] = value["api address"]
    if "runtime block" in value:
        core["monitoring"]["fleets"]["zlh-runtime"] = _address(value["runtime block"])
    if "runtime node address" in value:
        core["monitoring"]["proxmoxNodes"]["zlh-runtime"] = value["runtime node address"]
    if "runtime offset" in value:
        runtime["network"]["fleetOffset"] = value["runtime offset"]
    if "game vmid" in value:
        runtime["games"][0]["vmid"] = value["game vmid"]
    if "second host copied" in value:
        stacks["runtime-2"] = second = copy.deepcopy(runtime)
    if "second offset" in value:
        second["network"]["fleetOffset"] = value["second offset"]
    if "second block" in value:
        core["monitoring"]["fleets"]["zlh-runtime-2"] = _address(value["second block"])
    if "second node in core" in value:
        core["runtimeHosts"]["runtime-2"]["node"] = value["second node in core"]
    if "second node" in value:
        second["proxmox"]["node"] = value["second node"]
    if "second namespace" in value:
        core["runtimeHosts"]["runtime-2"]["pbs"]["namespace"] = value["second namespace"]
    if "second node address" in value:
        core["monitoring"]["proxmoxNodes"]["zlh-runtime-2"] = value["second node address"]
    return core, stacks


def compliant_platform() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The shipped core and runtime stacks, and a second runtime host added by the runbook."""
    return core_with_second_runtime_host(), {
        "runtime": shipped("runtime"),
        "runtime-2": second_runtime_stack(),
    }


def _address(offset: int) -> str:
    return str(IPv4Address("10.99.0.0") + offset)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(platforms())
def test_accepted_stacks_share_no_address_vmid_or_backup(
    platform: tuple[dict[str, Any], dict[str, dict[str, Any]]],
) -> None:
    raw_core, raw_runtimes = platform
    core = accepted_core(raw_core)
    if core is None:
        return
    contract = contract_of(core)
    runtimes = {
        stack: config
        for stack, raw in raw_runtimes.items()
        if (config := accepted_runtime(raw, stack, contract)) is not None
    }

    # Every management address belongs to one holder: core guests, nodes, runtime guests.
    holders: list[tuple[IPv4Address, str]] = [
        (address, f"core {key}")
        for key, network, address in core.all_addresses()
        if network is Network.MANAGEMENT
    ]
    holders += [(a, f"node {n}") for n, a in core.monitoring.proxmox_nodes.items()]
    for stack, runtime in runtimes.items():
        holders += [
            (address, f"{stack} {key}")
            for key, network, address in runtime.all_addresses()
            if network is Network.MANAGEMENT
        ]
    shared = {a: n for a, n in Counter(a for a, _ in holders).items() if n > 1}
    assert shared == {}, [h for h in holders if h[0] in shared]

    # No runtime guest takes a core VMID; each stack's backups are a group of their own.
    core_vmids = {vmid for _key, vmid in core.all_vmids()}
    groups = [(core.pbs.core_user.namespace, vmid) for vmid in core_vmids]
    for stack, runtime in runtimes.items():
        vmids = {vmid for _key, vmid in runtime.all_vmids()}
        assert not vmids & core_vmids
        groups += [(contract.pbs_hosts[stack].namespace, vmid) for vmid in vmids]
    assert len(groups) == len(set(groups))

    # One node per stack: two stacks never manage one host.
    nodes = [runtime.proxmox.node for runtime in runtimes.values()]
    assert len(nodes) == len(set(nodes)) and core.proxmox.node not in nodes


def test_the_compliant_platform_is_accepted_and_a_copied_stack_is_not() -> None:
    """The property is not vacuous: the platform it starts from passes every check."""
    raw_core, stacks = compliant_platform()
    core = accepted_core(raw_core)
    assert core is not None
    contract = contract_of(core)
    for stack, raw in stacks.items():
        assert accepted_runtime(raw, stack, contract) is not None, stack
    assert accepted_runtime(stacks["runtime"], "runtime-2", contract) is None


def test_the_contract_derived_here_is_what_the_core_stack_exports(core: StackRecording) -> None:
    """``contract_of`` stands for the program's exports; held to the recorded ones."""
    exported = parse_contract(
        {
            name: rpc.unwrap_rpc_secret(value)
            for name, value in core.outputs.items()
            if name not in DEPLOY_TIME_OUTPUTS  # unknown in a preview
        },
        core_stack="core",
        pending=DEPLOY_TIME_OUTPUTS,
    )
    derived = contract_of(accepted_core(shipped("core")) or pytest.fail("shipped core refused"))
    besides = {"pbs_hosts", "api_hosts", "pbs_fingerprint", "headscale_preauth_key"}
    assert derived.model_dump(exclude=besides) == exported.model_dump(exclude=besides)
    assert {s: h.model_dump(exclude={"password"}) for s, h in derived.pbs_hosts.items()} == {
        s: h.model_dump(exclude={"password"}) for s, h in exported.pbs_hosts.items()
    }
