"""The lab plan: a recording turned into containers, bridges, router stand-ins and an order."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc

from zlh_infra.platform.type_tokens import CONTAINER, VM
from zlh_infra.tooling.lab import plan as lab_plan
from zlh_infra.tooling.lab.plan import (
    DEFERRED,
    Action,
    LabPlan,
    PlanError,
    build_plan,
    decide,
    printed_outputs,
    redact,
    step_hash,
    unwrap,
)
from zlh_infra.tooling.lab.secrets_store import SecretStore
from zlh_infra.tooling.lab.state import LabState
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording

ROOT = Path(__file__).resolve().parents[3]


def secret(value: Any) -> dict[str, Any]:
    return {rpc._special_sig_key: rpc._special_secret_sig, "value": value}


def resource(
    urn: str, type_: str, inputs: dict[str, Any], deps: list[str] | None = None
) -> RecordedResource:
    return RecordedResource(
        urn=urn,
        type=type_,
        name=urn.rsplit("::", 1)[-1],
        custom=True,
        parent=None,
        dependencies=deps or [],
        property_dependencies={},
        provider=None,
        inputs=inputs,
        options={},
    )


def container(
    stack: str,
    name: str,
    vmid: int,
    nics: list[tuple[str, str, str | None]],
    *,
    node: str = "n1",
    deps: list[str] | None = None,
    clone: int | None = None,
    started: bool = True,
) -> RecordedResource:
    inputs: dict[str, Any] = {
        "nodeName": node,
        "vmId": float(vmid),
        "started": started,
        "networkInterfaces": [
            {"name": f"eth{i}", "bridge": bridge} for i, (bridge, _, _) in enumerate(nics)
        ],
        "initialization": {
            "hostname": name,
            "ipConfigs": [
                {"ipv4": {"address": address, **({"gateway": gw} if gw else {})}}
                for _, address, gw in nics
            ],
            "dns": {"domain": f"{stack}.lab", "servers": ["10.1.0.1"]},
            "userAccount": {"password": secret(f"pw-of-{name}")},
        },
        "mountPoints": [{"path": "/srv/data", "volume": "local-lvm", "size": "8G"}],
    }
    if clone is not None:
        inputs["clone"] = {"vmId": float(clone), "full": True}
    return resource(f"urn:{stack}::{CONTAINER}::{name}", CONTAINER, inputs, deps)


def router(stack: str, name: str, vmid: int, node: str = "n1") -> RecordedResource:
    inputs = {
        "nodeName": node,
        "vmId": float(vmid),
        "name": name,
        "started": True,
        "networkDevices": [{"bridge": "vmbr0"}, {"bridge": "vmbr1"}],
    }
    return resource(f"urn:{stack}::{VM}::{name}", VM, inputs)


def step(
    stack: str, name: str, create: str, deps: list[str], stdin: Any = None
) -> RecordedResource:
    inputs: dict[str, Any] = {"create": create, "triggers": ["t1"]}
    if stdin is not None:
        inputs["stdin"] = stdin
    return resource(f"urn:{stack}::{lab_plan.COMMAND}::{name}", lab_plan.COMMAND, inputs, deps)


def small_platform() -> list[StackRecording]:
    core_db = container(
        "core", "db", 102, [("vmbr1", "10.1.0.12/24", "10.1.0.1"), ("vmbr2", "10.9.0.12/22", None)]
    )
    core = StackRecording(
        stack="core",
        project="p",
        resources=[
            # Recorded after the container: the lab still builds the router first.
            core_db,
            step(
                "core",
                "db-setup",
                "pct exec 102 -- sh -eu",
                [core_db.urn],
                stdin=secret("echo secret-pass"),
            ),
            router("core", "core-router", 300),
        ],
    )
    base = container(
        "runtime", "base", 200, [("vmbr1", "10.2.0.200/22", "10.2.0.1")], node="n2", started=False
    )
    base_step = step("runtime", "base-agent", "sh -c 'pct start 200'", [base.urn])
    game = container(
        "runtime",
        "game",
        1000,
        [("vmbr1", "10.2.1.0/22", "10.2.0.1"), ("vmbr2", "10.9.1.0/22", None)],
        node="n2",
        clone=200,
        deps=[base_step.urn],
    )
    runtime = StackRecording(
        stack="runtime",
        project="p",
        resources=[
            game,
            base_step,
            base,
            router("runtime", "rt-router", 310, node="n2"),
            step("runtime", "game-vpn", "pct exec 1000 -- true", [game.urn]),
        ],
    )
    return [core, runtime]


def test_unwrap_replaces_every_secret_by_what_it_holds() -> None:
    nested = secret({"password": secret("x")})
    assert unwrap({"a": [secret("x"), 1.0], "b": nested}) == {
        "a": ["x", 1.0],
        "b": {"password": "x"},
    }


def test_bridges_map_per_node_lans_one_shared_management_and_the_uplink() -> None:
    plan = build_plan(small_platform(), upstream_dns="192.0.2.53")
    assert set(plan.bridges) == {"lc-vmbr1", "lr-vmbr1", "l-vmbr2", "l-wan"}
    assert plan.bridges["l-vmbr2"].shared and not plan.bridges["lc-vmbr1"].shared
    assert plan.bridges["l-wan"].uplink
    db = plan.guests[102]
    assert [(n.name, n.bridge, str(n.address)) for n in db.nics] == [
        ("eth0", "lc-vmbr1", "10.1.0.12/24"),
        ("eth1", "l-vmbr2", "10.9.0.12/22"),
    ]
    assert db.nics[0].gateway == IPv4Address("10.1.0.1") and db.nics[1].gateway is None
    assert db.mount_points == ("/srv/data",)
    assert db.root_password == "pw-of-db"
    assert "pw-of-db" not in repr(db) and "pw-of-db" not in str(db.spec())


def test_router_stand_in_takes_the_lan_gateway_and_a_wan_address() -> None:
    plan = build_plan(small_platform(), upstream_dns="192.0.2.53")
    core_router, runtime_router = plan.guests[300], plan.guests[310]
    assert core_router.is_stand_in and core_router.stand_in_for == "VM 300 core-router"
    assert core_router.nics[1].address == IPv4Interface("10.1.0.1/24")
    assert core_router.nics[1].bridge == "lc-vmbr1"
    assert runtime_router.nics[1].address == IPv4Interface("10.2.0.1/22")
    assert core_router.nics[0].bridge == runtime_router.nics[0].bridge == "l-wan"
    assert core_router.nics[0].address != runtime_router.nics[0].address
    assert core_router.dns_servers == ("192.0.2.53",)


def test_order_routers_first_clones_after_their_source_steps_core_before_runtime() -> None:
    plan = build_plan(small_platform(), upstream_dns="192.0.2.53")
    described = [plan.describe(action) for action in plan.order]
    assert described[0].startswith("lab-300")
    keys = [a.key for a in plan.order]
    urn = "urn:runtime::command:remote:Command::"
    assert keys.index("310") < keys.index("200") < keys.index(f"{urn}base-agent")
    assert keys.index(f"{urn}base-agent") < keys.index("1000") < keys.index(f"{urn}game-vpn")
    core = ("300", "102", "urn:core::command:remote:Command::db-setup")
    core_last = max(keys.index(k) for k in core)
    assert core_last < keys.index("310")
    assert Action.guest(200) in plan.depends_on[Action.guest(1000)]


def test_secrets_are_collected_for_redaction() -> None:
    plan = build_plan(small_platform(), upstream_dns="192.0.2.53")
    assert {"pw-of-db", "echo secret-pass"} <= plan.secrets
    assert redact("login pw-of-db failed", plan.secrets) == "login [secret] failed"
    assert plan.steps["urn:core::command:remote:Command::db-setup"].stdin == "echo secret-pass"


def test_a_missing_clone_source_is_refused() -> None:
    recordings = small_platform()
    recordings[1].resources[0].inputs["clone"] = {"vmId": 999.0}
    with pytest.raises(PlanError, match="not recorded"):
        build_plan(recordings, upstream_dns="192.0.2.53")


@pytest.mark.parametrize("source", [200.5, True, "200"])
def test_a_clone_source_that_is_no_whole_vmid_is_refused(source: Any) -> None:
    recordings = small_platform()
    recordings[1].resources[0].inputs["clone"] = {"vmId": source}
    with pytest.raises(PlanError, match=r"clone\.vmId .* is not a whole number"):
        build_plan(recordings, upstream_dns="192.0.2.53")


@pytest.mark.parametrize("vmid", [None, 300.5, True, "300", secret(300.5)])
def test_a_guest_without_a_whole_vmid_is_refused(vmid: Any) -> None:
    recordings = small_platform()
    recordings[0].resources[0].inputs["vmId"] = vmid
    with pytest.raises(PlanError, match="no vmId"):
        build_plan(recordings, upstream_dns="192.0.2.53")


def test_a_secret_vmid_is_read_through() -> None:
    recordings = small_platform()
    guest = recordings[0].resources[0]
    vmid = guest.inputs["vmId"]
    guest.inputs["vmId"] = secret(vmid)
    assert int(vmid) in build_plan(recordings, upstream_dns="192.0.2.53").guests


def test_a_step_with_inputs_known_only_at_deploy_time_is_deferred_not_run() -> None:
    recordings = small_platform()
    step = recordings[0].resources[1]
    step.inputs["stdin"] = rpc.UNKNOWN
    plan = build_plan(recordings, upstream_dns="192.0.2.53")
    assert plan.steps[step.urn].deferred
    [decision] = [d for d in decide(plan, **_empty_state()) if d.action.key == step.urn]
    assert (decision.verb, decision.reason) == ("unavailable", DEFERRED)


def test_what_a_step_printed_is_its_output_while_its_inputs_are_unchanged() -> None:
    [core, _] = small_platform()
    db_setup = core.resources[1]
    digest = build_plan(small_platform(), upstream_dns="192.0.2.53").steps[db_setup.urn].hash
    assert step_hash(db_setup.inputs) == digest
    answer = printed_outputs({db_setup.urn: {"hash": digest, "stdout": "key\n"}})
    assert answer(db_setup.urn, lab_plan.COMMAND, db_setup.inputs) == {
        "stdout": "key\n",
        "stderr": "",
    }
    # Changed inputs: like the engine, no output until the step runs again.
    changed = {**db_setup.inputs, "triggers": ["t2"]}
    assert answer(db_setup.urn, lab_plan.COMMAND, changed) is None
    assert answer(db_setup.urn, CONTAINER, db_setup.inputs) is None
    assert step_hash({**db_setup.inputs, "stdin": rpc.UNKNOWN}) is None


def _empty_state() -> dict[str, Any]:
    return {"guest_specs": {}, "existing": [], "step_hashes": {}}


def _state_after_a_full_run(plan: LabPlan) -> dict[str, Any]:
    return {
        "guest_specs": {vmid: g.spec_hash() for vmid, g in plan.guests.items()},
        "existing": list(plan.guests),
        "step_hashes": {urn: s.hash for urn, s in plan.steps.items()},
    }


def test_first_run_does_everything_and_a_second_run_nothing() -> None:
    plan = build_plan(small_platform(), upstream_dns="192.0.2.53")
    first = decide(plan, guest_specs={}, existing=[], step_hashes={})
    assert {d.verb for d in first} == {"create", "run"}
    second = decide(plan, **_state_after_a_full_run(plan))
    assert {d.verb for d in second} == {"skip"}


def test_a_changed_step_reruns_alone_and_a_rebuilt_guest_reruns_its_steps() -> None:
    recordings = small_platform()
    plan = build_plan(recordings, upstream_dns="192.0.2.53")
    state = _state_after_a_full_run(plan)
    recordings[1].resources[4].inputs["triggers"] = ["t2"]
    changed = build_plan(recordings, upstream_dns="192.0.2.53")
    verbs = {d.action.key: d.verb for d in decide(changed, **state)}
    assert [k for k, v in verbs.items() if v != "skip"] == [
        "urn:runtime::command:remote:Command::game-vpn"
    ]
    state["existing"] = [v for v in state["existing"] if v != 1000]
    verbs = {d.action.key: d.verb for d in decide(changed, **state)}
    assert verbs["1000"] == "create"
    assert verbs["urn:runtime::command:remote:Command::game-vpn"] == "run"
    assert verbs["urn:runtime::command:remote:Command::base-agent"] == "skip"


def test_unavailable_steps_are_not_retried_while_unchanged() -> None:
    plan = build_plan(small_platform(), upstream_dns="192.0.2.53")
    state = _state_after_a_full_run(plan)
    urn = "urn:core::command:remote:Command::db-setup"
    del state["step_hashes"][urn]
    verbs = {
        d.action.key: d.verb for d in decide(plan, **state, unavailable={urn: plan.steps[urn].hash})
    }
    assert verbs[urn] == "unavailable"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> LabPlan:
    """The lab plan of the shipped stacks (the real program, offline)."""
    from zlh_infra.tooling.lab.commands import record
    from zlh_infra.tooling.lab.paths import LabDirs

    tmp = tmp_path_factory.mktemp("lab")
    dirs = LabDirs(state=tmp / "state", cache=tmp / "cache")
    return record(
        ROOT, dirs, SecretStore(tmp / "secrets.json"), "192.0.2.53", LabState(tmp / "st")
    ).plan


def test_shipped_stacks_every_container_and_router_becomes_a_guest(shipped: LabPlan) -> None:
    assert {300, 310} <= set(shipped.guests)
    assert shipped.guests[300].nics[1].address == IPv4Interface("10.10.0.1/24")
    assert shipped.guests[310].nics[1].address == IPv4Interface("10.20.0.1/22")
    assert {"lc-vmbr1", "lr-vmbr1", "l-vmbr2", "l-wan"} == set(shipped.bridges)
    assert shipped.guests[200].started is False
    assert shipped.guests[1000].clone_of == 210 and shipped.guests[210].clone_of == 200


def test_shipped_stacks_clones_follow_the_steps_they_depend_on(shipped: LabPlan) -> None:
    order = shipped.order
    names = {a: shipped.steps[a.key].name for a in order if a.kind == "step"}
    base_agent = next(a for a, n in names.items() if n == "zlh-base-agent")
    assert order.index(base_agent) < order.index(Action.guest(210))
    assert order.index(Action.guest(210)) < order.index(Action.guest(1000))
    assert order[0] == Action.guest(300)


def test_shipped_stacks_rerun_identically_with_the_same_secrets(tmp_path: Path) -> None:
    from zlh_infra.tooling.lab.commands import record
    from zlh_infra.tooling.lab.paths import LabDirs

    dirs = LabDirs(state=tmp_path / "state", cache=tmp_path / "cache")
    first = record(
        ROOT, dirs, SecretStore(tmp_path / "s.json"), "192.0.2.53", LabState(tmp_path / "st")
    ).plan
    second = record(
        ROOT, dirs, SecretStore(tmp_path / "s.json"), "192.0.2.53", LabState(tmp_path / "st")
    ).plan
    assert {u: s.hash for u, s in first.steps.items()} == {
        u: s.hash for u, s in second.steps.items()
    }
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600


def _ed25519(seed: int) -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([seed]) * 32
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


def test_shipped_stacks_a_printed_route_key_lets_the_runtime_route_steps_run(
    shipped: LabPlan, tmp_path: Path
) -> None:
    from zlh_infra.tooling.lab.commands import record
    from zlh_infra.tooling.lab.paths import LabDirs

    [printer] = [s for s in shipped.steps.values() if s.name.endswith("zpack-api-route-key")]
    waiting = {u for u, s in shipped.steps.items() if s.deferred and s.stack == "runtime"}
    assert any("route" in shipped.steps[u].name for u in waiting)

    dirs = LabDirs(state=tmp_path / "state", cache=tmp_path / "cache")
    state = LabState(tmp_path / "st")
    state.printed = {printer.urn: {"hash": printer.hash, "stdout": _ed25519(7) + " zpack-api\n"}}
    again = record(ROOT, dirs, SecretStore(tmp_path / "s.json"), "192.0.2.53", state).plan
    runs_now = {u for u in waiting if not again.steps[u].deferred}
    assert {again.steps[u].name for u in runs_now} >= {
        n for n in (again.steps[u].name for u in waiting) if "route" in n
    }
    assert any(_ed25519(7).split()[1] in (again.steps[u].stdin or "") for u in runs_now)
