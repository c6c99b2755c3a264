"""Servers the lab makes the way zpack-api does: the calls computed from ``fleetSpec`` alone.

The export is all zpack-api reads, so the calls the lab computes from it must be the
ones ``FleetSpec`` (the program's own definition) prescribes; what the host holds after
them goes through the audit's converter like any live guest.
"""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from tests.tooling.lab.test_lab_checks import FakeLab
from zlh_infra.platform.api_identity import FleetSegment, FleetSpec, FleetTemplate
from zlh_infra.platform.catalogue import Network
from zlh_infra.platform.type_tokens import CONTAINER, FIREWALL_OPTIONS, FIREWALL_RULES
from zlh_infra.platform.vmids import VmidRole
from zlh_infra.services.routes import RouteKind
from zlh_infra.tooling.lab.api_server_checks import BACKUP_CHECK, ROUTE_CHECK, api_server_checks
from zlh_infra.tooling.lab.api_servers import (
    ApiServer,
    ApiServerError,
    as_resources,
    conflict,
    host_record,
    plan_calls,
    route_kind,
    taken_vmids,
)
from zlh_infra.tooling.lab.checks import CheckContext, CheckResult
from zlh_infra.tooling.lab.commands import Recorded, record
from zlh_infra.tooling.lab.overlay import RUNTIME_HOSTS_KEY, with_route_host_keys
from zlh_infra.tooling.lab.paths import LabDirs
from zlh_infra.tooling.lab.plan import unwrap
from zlh_infra.tooling.lab.secrets_store import SecretStore
from zlh_infra.tooling.lab.state import LabState
from zlh_infra.tooling.lab.system import LabError

ROOT = Path(__file__).resolve().parents[3]

SPEC = FleetSpec(
    node="zlh-runtime",
    stack="runtime",
    lan=FleetSegment("vmbr1", IPv4Network("10.20.0.0/22"), IPv4Address("10.20.0.1")),
    management=FleetSegment("vmbr2", IPv4Network("10.99.0.0/22")),
    fleet_offset=256,
    templates=(
        FleetTemplate(210, VmidRole.GAME, (25565,)),
        FleetTemplate(220, VmidRole.DEV, (8443, 8444)),
    ),
    addresses={
        ("zlh-velocity", Network.LAN): IPv4Address("10.20.0.6"),
        ("zlh-zpack-proxy", Network.LAN): IPv4Address("10.20.0.5"),
    },
)


def as_engine_gives_it(value: Any) -> Any:
    """A stack output read back from the engine: every number a float."""
    if isinstance(value, dict):
        return {key: as_engine_gives_it(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_engine_gives_it(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


EXPORT = as_engine_gives_it(SPEC.export())


@pytest.mark.parametrize(("role", "template", "vmid"), [("game", 210, 1020), ("dev", 220, 1120)])
def test_the_calls_from_the_export_are_those_the_fleet_spec_prescribes(
    role: str, template: int, vmid: int
) -> None:
    calls = plan_calls(EXPORT, role, "arena", taken=set())
    assert (calls.node, calls.template, calls.vmid) == ("zlh-runtime", template, vmid)
    assert calls.clone == SPEC.clone(template, vmid, "arena")
    assert calls.config == SPEC.config(vmid, cores=1, memory_mb=1024)
    assert calls.firewall_options == SPEC.firewall_options()
    assert list(calls.firewall_rules) == SPEC.firewall_rules(vmid, template)
    lan = SPEC.server_addresses(vmid)[Network.LAN]
    assert calls.workload == f"{lan}:{8443 if role == 'dev' else 25565}"


def test_the_vmid_is_the_lowest_of_zpack_apis_part_the_host_does_not_hold() -> None:
    assert plan_calls(EXPORT, "game", "a", taken={1000, 1020, 1021, 1023}).vmid == 1022
    # The declared part (1100-1119) is free here, and still never the API's.
    assert plan_calls(EXPORT, "dev", "a", taken={1120, 1121}).vmid == 1122


def test_a_full_part_a_bad_name_or_an_unknown_role_is_refused_by_its_key() -> None:
    with pytest.raises(ApiServerError, match=r"^role: every VMID of game 1020-1099 is taken$"):
        plan_calls(EXPORT, "game", "a", taken=set(range(1020, 1100)))
    for name in ("Arena", "arena_1", "-arena", "a" * 64, "arena\nput x"):
        with pytest.raises(ApiServerError, match=r"^name: .* is not a DNS label"):
            plan_calls(EXPORT, "game", name, taken=set())
    with pytest.raises(ApiServerError, match=r"^role: fleetSpec has no VMIDs for 'edge'$"):
        plan_calls(EXPORT, "edge", "a", taken=set())
    broken = {**EXPORT, "addressing": {**EXPORT["addressing"], "fleetOffset": 2.5}}
    with pytest.raises(ApiServerError, match=r"^fleetSpec addressing.fleetOffset: 2.5 is not"):
        plan_calls(broken, "game", "a", taken=set())


def test_rules_are_posted_last_to_first_and_the_server_started_last() -> None:
    lines = plan_calls(EXPORT, "dev", "ide", taken=set()).describe()
    assert lines[0].startswith("POST /nodes/zlh-runtime/lxc/220/clone newid=1120 hostname=ide ")
    assert lines[1].startswith("PUT /nodes/zlh-runtime/lxc/1120/config net0=name=eth0,")
    rules = [line for line in lines if "/firewall/rules " in line]
    assert [rule.split(" type=")[1].split()[0] for rule in rules] == ["in", "in", "group", "group"]
    assert "dport=8444" in rules[0] and "action=zlh-fleet-mgmt" in rules[-1]
    assert lines[-1] == "POST /nodes/zlh-runtime/lxc/1120/status/start"


def test_each_template_routes_through_the_proxy_its_clones_admit() -> None:
    assert route_kind(EXPORT, 210) is RouteKind.GAME
    assert route_kind(EXPORT, 220) is RouteKind.HTTP
    with pytest.raises(ApiServerError, match=r"^template 200: no route host"):
        route_kind(EXPORT, 200)


def test_the_host_holds_the_templates_resolver_and_the_calls_values() -> None:
    calls = plan_calls(EXPORT, "game", "arena", taken=set())
    template = {
        "nameserver": "10.20.0.2",
        "searchdomain": "runtime.zlh",
        "net0": "name=eth0,bridge=vmbr1,ip=10.20.0.210/22",
    }
    record = host_record(calls, template)
    assert record.config["nameserver"] == "10.20.0.2"
    assert record.config["net0"] == calls.config["net0"]  # not the template's build address
    assert (record.name, record.pool, record.template) == ("arena", "zlh-runtime", False)
    assert [rule["pos"] for rule in record.firewall_rules] == [0, 1, 2]

    server = ApiServer("runtime", "game", 210, calls.workload, record, RouteKind.GAME)
    assert ApiServer.from_json(json.loads(json.dumps(server.to_json()))) == server

    guest, options, rules = as_resources("runtime", record, 210)
    assert (guest.type, options.type, rules.type) == (CONTAINER, FIREWALL_OPTIONS, FIREWALL_RULES)
    assert guest.urn == "pve:runtime/zlh-runtime/lxc/1020" and "::" not in guest.urn
    assert guest.inputs["vmId"] == 1020 and guest.inputs["clone"] == {"vmId": 210, "full": True}
    assert guest.inputs["poolId"] == "zlh-runtime"
    assert options.inputs["ipfilter"] is True and options.inputs["containerId"] == 1020
    assert [r.get("securityGroup") for r in rules.inputs["rules"]][:2] == [
        "zlh-fleet-mgmt",
        "zlh-fleet-lan",
    ]
    assert taken_vmids([guest], {1120}) == {1020, 1120}


def test_a_runtime_stacks_route_keys_reach_only_the_host_the_core_names() -> None:
    config = {
        RUNTIME_HOSTS_KEY: '{"runtime": {"endpoint": "https://10.99.0.2:8006"}}',
        "zlh-infra:other": "x",
    }
    keys = {"runtime": {"zlh-velocity": "ssh-ed25519 AAAA"}, "runtime2": {"x": "y"}}
    changed, said = with_route_host_keys(config, keys)
    assert said == [f"{RUNTIME_HOSTS_KEY}.runtime.routeHostKeys"]
    assert changed["zlh-infra:other"] == "x"
    assert json.loads(changed[RUNTIME_HOSTS_KEY]) == {
        "runtime": {
            "endpoint": "https://10.99.0.2:8006",
            "routeHostKeys": {"zlh-velocity": "ssh-ed25519 AAAA"},
        }
    }
    assert with_route_host_keys({"zlh-infra:other": "x"}, keys) == ({"zlh-infra:other": "x"}, [])


# --- on the shipped stacks, and `lab check` ---------------------------------------------


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """The shipped stacks as the lab records them (the real program, offline)."""
    tmp = tmp_path_factory.mktemp("lab")
    dirs = LabDirs(state=tmp / "state", cache=tmp / "cache")
    return record(ROOT, dirs, SecretStore(tmp / "s.json"), "192.0.2.53", LabState(tmp / "st"))


def shipped_server(recorded: Recorded, role: str, name: str) -> ApiServer:
    [runtime] = [r for r in recorded.recordings if "fleetSpec" in r.outputs]
    calls = plan_calls(
        unwrap(runtime.outputs["fleetSpec"]), role, name, taken_vmids(runtime.resources, ())
    )
    spec = unwrap(runtime.outputs["fleetSpec"])
    return ApiServer(
        runtime.stack,
        role,
        calls.template,
        calls.workload,
        host_record(calls, {}),
        route_kind(spec, calls.template),
    )


def test_the_shipped_export_gives_the_first_free_vmid_and_its_addresses(
    shipped: Recorded,
) -> None:
    game = shipped_server(shipped, "game", "arena")
    assert (game.vmid, game.template, game.workload) == (1020, 210, "10.20.1.20:25565")
    assert game.record.config["net1"] == "name=eth1,bridge=vmbr2,firewall=1,ip=10.99.1.20/22"
    dev = shipped_server(shipped, "dev", "workbench")
    assert (dev.vmid, dev.template, dev.workload) == (1120, 220, "10.20.1.120:8443")


def checked(
    recorded: Recorded, server: ApiServer, listed: str, code: int = 0
) -> dict[str, CheckResult]:
    api = recorded.plan.guest_by_hostname("zpack-api")
    assert api is not None
    lab = FakeLab({})
    lab.on(api.vmid, "runuser", stdout=listed, code=code, stderr="connection refused")
    results = api_server_checks(CheckContext(lab, recorded.plan), [server], recorded.recordings)
    [(_, argv, _)] = lab.ran
    alias = f"route-{server.stack}-{server.route}"
    assert argv == (
        "runuser", "-u", "zpack-api", "--",
        "ssh", "-F", "/etc/zpack-api/route-ssh-config", alias, "list",
    )  # fmt: skip
    return {result.check: result for result in results}


def test_a_server_routed_and_in_the_pool_passes(shipped: Recorded) -> None:
    server = shipped_server(shipped, "game", "arena")
    results = checked(shipped, server, "mc-survival 10.20.1.0:25565\narena 10.20.1.20:25565\n")
    assert [r.ok for r in results.values()] == [True, True]
    assert "zlh-velocity lists arena -> 10.20.1.20:25565" in results[ROUTE_CHECK].detail
    assert "in pool zlh-runtime" in results[BACKUP_CHECK].detail


def test_a_route_not_listed_or_a_proxy_not_answering_fails(shipped: Recorded) -> None:
    server = shipped_server(shipped, "game", "arena")
    unlisted = checked(shipped, server, "arena 10.20.1.21:25565\n")[ROUTE_CHECK]
    assert unlisted.ok is False and "lists 1 routes, not arena" in unlisted.detail
    refused = checked(shipped, server, "", code=255)[ROUTE_CHECK]
    assert refused.ok is False and "exited 255: connection refused" in refused.detail


def test_a_server_outside_the_pool_or_unprotected_is_not_backed_up(shipped: Recorded) -> None:
    server = shipped_server(shipped, "game", "arena")
    outside = dataclasses.replace(server, record=dataclasses.replace(server.record, pool=None))
    result = checked(shipped, outside, "")[BACKUP_CHECK]
    assert (result.ok, result.detail) == (
        False,
        "arena (VMID 1020) holds data but no enabled backup job of stack runtime includes it",
    )
    config = {**server.record.config, "protection": 0}
    loose = dataclasses.replace(server, record=dataclasses.replace(server.record, config=config))
    result = checked(shipped, loose, "")[BACKUP_CHECK]
    assert result.ok is False and "Proxmox protection is off" in result.detail


def test_the_command_line_names_a_server_by_name_and_reports_a_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from zlh_infra.cli import build_parser
    from zlh_infra.tooling.lab import server

    asked: list[dict[str, str]] = []

    def delete(**kw: str) -> int:
        asked.append(kw)
        return 0

    monkeypatch.setattr(server, "delete", delete)

    def refuse(**kw: str) -> int:
        raise ApiServerError("role: every VMID of game 1020-1099 is taken")

    monkeypatch.setattr(server, "create", refuse)
    parser = build_parser()
    args = parser.parse_args(["lab", "server", "delete", "--name", "arena"])
    assert args.handler(args) == 0 and asked == [{"name": "arena"}]
    args = parser.parse_args(["lab", "server", "create", "--role", "game", "--name", "arena"])
    assert args.handler(args) == 2
    assert capsys.readouterr().err == ("lab: error: role: every VMID of game 1020-1099 is taken\n")
    with pytest.raises(SystemExit):
        parser.parse_args(["lab", "server", "create", "--role", "edge", "--name", "a"])


def test_the_lab_keeps_its_servers_between_runs(tmp_path: Path) -> None:
    calls = plan_calls(EXPORT, "game", "arena", taken=set())
    server = ApiServer(
        "runtime", "game", 210, calls.workload, host_record(calls, {}), RouteKind.GAME
    )
    state = LabState(tmp_path / "state.json")
    state.api_servers[server.vmid] = server
    state.save()
    assert LabState.load(tmp_path / "state.json").api_servers == {1020: server}
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600

    # A lab of an earlier version (servers without their route kind) is only taken down.
    older = json.loads((tmp_path / "state.json").read_text())
    older["version"] = 1
    del older["apiServers"]["1020"]["route"]
    (tmp_path / "state.json").write_text(json.dumps(older))
    with pytest.raises(LabError, match="state of another lab version; run `lab down` first"):
        LabState.load(tmp_path / "state.json")
    assert LabState.load(tmp_path / "state.json", any_version=True).api_servers == {}


def test_a_server_the_recording_now_conflicts_with_is_named_with_its_way_out(
    shipped: Recorded, tmp_path: Path
) -> None:
    server = shipped_server(shipped, "game", "arena")
    [runtime] = [r for r in shipped.recordings if r.stack == "runtime"]
    assert conflict(server, runtime) is None
    assert conflict(server, None) == "its stack runtime is not recorded"
    orphan = dataclasses.replace(server, template=299)
    assert conflict(orphan, runtime) == "its template 299 is no longer recorded"
    declared = dataclasses.replace(server, record=dataclasses.replace(server.record, vmid=1000))
    assert conflict(declared, runtime) == "the stack now declares VMID 1000 itself"

    dirs = LabDirs(state=tmp_path / "state", cache=tmp_path / "cache")
    state = LabState(tmp_path / "st")
    state.api_servers[orphan.vmid] = orphan
    with pytest.raises(LabError) as error:
        record(ROOT, dirs, SecretStore(tmp_path / "s.json"), "192.0.2.53", state)
    assert str(error.value) == (
        "server arena (VMID 1020) made by `lab server create`: its template 299 is no longer "
        "recorded; `lab server delete --name arena` removes it"
    )


def test_a_server_whose_stack_is_gone_fails_its_checks_without_stopping_the_rest(
    shipped: Recorded,
) -> None:
    server = dataclasses.replace(shipped_server(shipped, "game", "arena"), stack="runtime-b")
    results = checked(shipped, server, "", code=255)
    assert results[ROUTE_CHECK].ok is False
    assert "`list` on zlh-velocity exited 255" in results[ROUTE_CHECK].detail
    assert (results[BACKUP_CHECK].ok, results[BACKUP_CHECK].detail) == (
        False,
        "stack runtime-b is not recorded",
    )
