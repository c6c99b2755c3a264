"""Both stacks as the engine would see them: guests, placement, providers, components."""

from __future__ import annotations

import pytest
from pulumi.runtime import rpc

from tests.program.conftest import CONTAINER, VM, by_vmid, guests, of_type, resource, tag
from tests.stack_configs import shipped
from zlh_infra.contract import CONTRACT_OUTPUTS
from zlh_infra.platform.vmids import DEFAULT_SCHEME
from zlh_infra.tooling.preview.recording import StackRecording

#: The inventory: VMID -> (service tag, layer) per stack.
INVENTORY = {
    "core": {
        100: ("zpack-api", "control-plane"),
        101: ("zpack-portal", "control-plane"),
        102: ("zlh-db", "control-plane"),
        103: ("zlh-redis", "control-plane"),
        104: ("zlh-dns", "control-plane"),
        105: ("zlh-ctl", "control-plane"),
        300: ("zlh-router", "control-plane"),
        301: ("zlh-proxy", "control-plane"),
        2000: ("zlh-monitor", "control-plane"),
        2001: ("zlh-back", "control-plane"),
    },
    "runtime": {
        150: ("zlh-artifacts", "runtime"),
        151: ("zlh-build", "runtime"),
        200: ("template", "runtime"),
        210: ("template", "runtime"),
        220: ("template", "runtime"),
        310: ("zlh-zpack-router", "edge"),
        311: ("zlh-zpack-proxy", "edge"),
        312: ("zlh-velocity", "edge"),
        1000: ("game", "runtime"),
        1001: ("game", "runtime"),
        1002: ("game", "runtime"),
        1100: ("dev", "runtime"),
        1101: ("dev", "runtime"),
    },
}
NODES = {"core": "zlh-core", "runtime": "zlh-runtime"}
LAYER_TYPES = {
    "control-plane": "zlh:control-plane:ControlPlane",
    "edge": "zlh:edge:Edge",
    "runtime": "zlh:runtime:Runtime",
}


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_previews_clean(platform: dict[str, StackRecording], stack: str) -> None:
    problems = [d for d in platform[stack].diagnostics if d.severity == "error"]
    assert problems == []


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_every_inventory_guest_on_its_node_with_its_vmid(
    platform: dict[str, StackRecording], stack: str
) -> None:
    recorded = by_vmid(platform[stack])
    assert sorted(recorded) == sorted(INVENTORY[stack])
    for vmid, (service, layer) in INVENTORY[stack].items():
        guest = recorded[vmid]
        assert guest.inputs["nodeName"] == NODES[stack], guest.urn
        assert tag(guest, "svc-") == service, guest.urn
        assert tag(guest, "layer-") == layer, guest.urn
        assert tag(guest, "role-") == DEFAULT_SCHEME.role_of(vmid), guest.urn
        assert tag(guest, "stack-") == stack, guest.urn
        assert LAYER_TYPES[layer] in guest.urn.split("::")[2].split("$"), guest.urn


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_every_custom_resource_uses_the_stacks_explicit_provider(
    platform: dict[str, StackRecording], stack: str
) -> None:
    recording = platform[stack]
    providers = {r.urn: r for r in recording.resources if r.type.startswith("pulumi:providers:")}
    assert sorted(p.type for p in providers.values()) == [
        "pulumi:providers:command",
        "pulumi:providers:proxmoxve",
        "pulumi:providers:random",
    ]
    for res in recording.resources:
        if res.custom and not res.type.startswith("pulumi:providers:"):
            assert res.provider in providers, f"{res.urn} has no explicit provider"
            package = res.type.split(":", 1)[0]
            assert providers[res.provider].type == f"pulumi:providers:{package}", res.urn
    proxmox = next(p for p in providers.values() if p.type == "pulumi:providers:proxmoxve")
    assert proxmox.inputs["endpoint"] == f"https://{NODES[stack]}.zerolaghub.net:8006/"
    # Provider inputs travel as strings, like provider config.
    assert proxmox.inputs.get("insecure") == "false"


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_every_resource_is_parented_below_a_component(
    platform: dict[str, StackRecording], stack: str
) -> None:
    recording = platform[stack]
    stack_urn = next(r.urn for r in recording.resources if r.type == "pulumi:pulumi:Stack")
    for res in recording.resources:
        if res.type == "pulumi:pulumi:Stack":
            continue
        assert res.parent is not None, res.urn
        if res.type.startswith("pulumi:providers:") or res.type in (
            *LAYER_TYPES.values(),
            "zlh:host:Host",
        ):
            assert res.parent == stack_urn, res.urn
        elif res.type in (CONTAINER, VM):
            assert resource(recording, res.parent).type.startswith("zlh:guest:"), res.urn
        else:
            assert resource(recording, res.parent).type.startswith("zlh:"), res.urn


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_layers_of_each_stack(platform: dict[str, StackRecording], stack: str) -> None:
    layers = sorted(r.type for r in platform[stack].resources if r.type in LAYER_TYPES.values())
    expected = {
        "core": ["zlh:control-plane:ControlPlane"],
        "runtime": ["zlh:edge:Edge", "zlh:runtime:Runtime"],
    }
    assert layers == expected[stack]


def test_core_exports_exactly_the_contract(core: StackRecording) -> None:
    assert set(core.outputs) == set(CONTRACT_OUTPUTS)


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_guests_start_on_boot_in_dependency_order(
    platform: dict[str, StackRecording], stack: str
) -> None:
    order = {
        tag(g, "svc-"): g.inputs.get("startup", {}).get("order")
        for g in guests(platform[stack])
        if g.type == CONTAINER and g.inputs.get("startOnBoot")
    }
    if stack == "core":
        assert order["zlh-dns"] < order["zlh-db"] == order["zlh-redis"] < order["zpack-api"]
        assert order["zpack-api"] < order["zpack-portal"] == order["zlh-proxy"]


def test_one_pool_per_layer(platform: dict[str, StackRecording]) -> None:
    pools = {
        stack: sorted(
            r.inputs["poolId"] for r in of_type(recording, "proxmoxve:index/poolLegacy:PoolLegacy")
        )
        for stack, recording in platform.items()
    }
    assert pools == {"core": ["zlh-control-plane"], "runtime": ["zlh-edge", "zlh-runtime"]}


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_every_in_guest_step_connects_only_to_its_own_node_pinned_by_host_key(
    platform: dict[str, StackRecording], stack: str
) -> None:
    proxmox = shipped(stack)["proxmox"]
    steps = of_type(platform[stack], "command:remote:Command")
    assert steps
    for step in steps:
        # The provider's schema marks the whole connection secret.
        connection = rpc.unwrap_rpc_secret(step.inputs["connection"])
        assert connection["host"] == f"{NODES[stack]}.zerolaghub.net", step.name
        assert connection["hostKey"] == proxmox["sshHostKey"], step.name
