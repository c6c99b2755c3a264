"""The servers zpack-api makes reach the runtime host's proxies: its key, their accounts, pinned.

zpack-api's route key crosses the contract; the edge guests' host keys come back to the
core's config by hand (``routeHostKeys``), never by the core reading a runtime stack.
"""

from __future__ import annotations

import json

from tests.program.conftest import HOST_KEY, ROUTE_KEY, clear, commands, of_type, script
from tests.stack_configs import engine_config, set_path, shipped
from zlh_infra.config import RuntimeStackConfig, parse_stack_config
from zlh_infra.services import routes
from zlh_infra.tooling.preview.recording import StackRecording
from zlh_infra.tooling.preview.runner import load_program, run_stack


def test_the_core_exports_the_route_key_it_read_from_zpack_apis_guest(
    deployed: dict[str, StackRecording],
) -> None:
    core = deployed["core"]
    read = commands(core)["control-plane-zpack-api-route-key"]
    assert clear(read.inputs["create"]).endswith(f"'ssh-keygen -y -f {routes.KEY}'")
    assert core.outputs["routeKey"] == ROUTE_KEY
    api = script(commands(core)["zpack-api-configure"])
    assert "# --- zpack-api-routes\n" in api
    assert f"ssh-keygen -q -t ed25519 -N '' -C 'zpack-api routes' -f {routes.KEY}" in api


def test_each_proxy_admits_that_key_for_the_forced_command_from_zpack_api_only(
    deployed: dict[str, StackRecording],
) -> None:
    steps = commands(deployed["runtime"])
    api_address = deployed["core"].outputs["apiManagementAddress"]
    line = f'restrict,from="{api_address}",command="{routes.COMMAND}" {ROUTE_KEY} zpack-api'
    for guest, proxy in [("zlh-zpack-proxy", "traefik"), ("zlh-velocity", "velocity")]:
        configure = steps[f"{guest}-routes-configure"]
        body = script(configure)
        assert f"zlh_put {routes.AUTHORIZED_KEYS} 0644 root root {line}\n" in body
        # After the guest's Debian step, and before the proxy, whose directory it makes.
        assert steps[f"{guest}-configure"].urn in configure.dependencies
        assert configure.urn in steps[f"{guest}-{proxy}-configure"].dependencies
        assert f"install -d -m 1775 -o root -g {routes.ACCOUNT} " in body


def test_the_runtime_exports_the_proxies_host_keys_for_the_core_to_pin(
    deployed: dict[str, StackRecording],
) -> None:
    assert deployed["runtime"].outputs["routeHostKeys"] == {
        "zlh-zpack-proxy": HOST_KEY,
        "zlh-velocity": HOST_KEY,
    }


def test_ssh_reaches_the_proxies_only_from_zpack_api_on_the_management_nic(
    runtime: StackRecording,
) -> None:
    for guest in ("zlh-zpack-proxy", "zlh-velocity"):
        rules = next(
            r
            for r in of_type(runtime, "proxmoxve:firewall/rulesLegacy:RulesLegacy")
            if r.name == f"{guest}-rules"
        )
        ssh = [rule for rule in rules.inputs["rules"] if rule.get("dport") == "22"]
        assert [(r["action"], r["source"], r["iface"]) for r in ssh] == [
            ("ACCEPT", "10.99.0.10/32", "net1")
        ]


def test_zpack_api_finds_each_proxy_where_the_runtime_stack_puts_it_and_pins_its_key() -> None:
    """The core derives the proxies' addresses from its own config; they must be the runtime's."""
    config = shipped("core")
    set_path(
        config,
        "runtimeHosts.runtime.routeHostKeys",
        {"zlh-zpack-proxy": f"{HOST_KEY} root@proxy", "zlh-velocity": HOST_KEY},
    )
    core = run_stack("core", engine_config(config), [], load_program())
    assert [d.message for d in core.diagnostics if d.severity == "error"] == []
    api = script(commands(core)["zpack-api-configure"])
    runtime = parse_stack_config(
        RuntimeStackConfig, engine_config(shipped("runtime")), stack="runtime"
    )
    where = runtime.service_management_addresses()
    for kind, guest in routes.ROUTE_GUESTS.items():
        alias = f"route-runtime-{kind}"
        assert f"Host {alias}\n    HostName {where[guest]}\n" in api
        assert f"{alias} {HOST_KEY}\n" in api
    environment = next(line for line in api.splitlines() if line.startswith("ROUTE_HOSTS="))
    hosts = json.loads(json.loads(environment.removeprefix("ROUTE_HOSTS=")))
    assert [(h["stack"], h["kind"]) for h in hosts] == [("runtime", "http"), ("runtime", "game")]


def test_without_host_keys_zpack_api_registers_no_routes_yet(core: StackRecording) -> None:
    api = script(commands(core)["zpack-api-configure"])
    assert 'ROUTE_HOSTS="[]"\n' in api
    assert "Host route-" not in api
