"""Stateful guests protected and backed up; runtime hosts that run without the core;
credentials that stay secret."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import Secret

from tests.policies.policy_fixtures import core_builder, core_stack, find, props, runtime_stack
from tests.policies.test_policy_protocol import SECRET_SIG, SIG, diags, recording, run
from zlh_infra.policies.config import SELF_SUFFICIENT, STATEFUL
from zlh_infra.policies.resilience import check_runtime_self_sufficient, check_stateful_protected
from zlh_infra.policies.resources import Resource
from zlh_infra.policies.secrets import mark_credentials_secret, plain_credentials

STATEFUL_CONFIG = STATEFUL.parse("zlh-stateful-protected", None)
SELF_CONFIG = SELF_SUFFICIENT.parse("zlh-runtime-self-sufficient", None)


def replace(resources: list[Resource], old: Resource, **changes: Any) -> None:
    import dataclasses

    resources[resources.index(old)] = dataclasses.replace(old, **changes)


@pytest.mark.parametrize(("stack", "build"), [("core", core_stack), ("runtime", runtime_stack)])
def test_platform_stacks_keep_their_data(stack: str, build: Any) -> None:
    assert check_stateful_protected(build(), STATEFUL_CONFIG, stack).violations == []


def test_an_unprotected_game_container() -> None:
    resources = runtime_stack()
    game = find(resources, "mc-survival")
    replace(resources, game, protect=False)
    props(game)["protection"] = False
    assert check_stateful_protected(resources, STATEFUL_CONFIG, "runtime").messages == [
        "mc-survival (VMID 1000) holds data but is not protected in Pulumi, so a config edit "
        "or `pulumi destroy` could delete it: set the resource option protect=True.",
        "mc-survival (VMID 1000) holds data but Proxmox protection is off, so it can be "
        "removed from the Proxmox UI or API: set protection=true on the guest.",
    ]


def test_a_database_outside_every_backup_job() -> None:
    resources = core_stack()
    job = find(resources, "core-backup-job", "proxmoxve:backup/job:Job")
    props(job)["vmids"] = ["301", "2000"]
    assert check_stateful_protected(resources, STATEFUL_CONFIG, "core").messages == [
        "zlh-db (VMID 102) holds data but no enabled backup job of stack core includes it: "
        "add its VMID to the host's backup job to Proxmox Backup Server."
    ]


def test_a_disabled_backup_job_backs_up_nothing() -> None:
    resources = runtime_stack()
    props(find(resources, "runtime-backup-job", "proxmoxve:backup/job:Job"))["enabled"] = False
    # zlh-zpack-proxy, zlh-artifacts and the two fleet containers.
    assert len(check_stateful_protected(resources, STATEFUL_CONFIG, "runtime").violations) == 4


def test_runtime_guests_resolve_and_route_on_the_runtime_side() -> None:
    resources = runtime_stack()
    game = find(resources, "mc-survival")
    props(game)["initialization"] = {
        "ipConfigs": [{"ipv4": {"address": "10.20.1.0/22", "gateway": "10.20.0.1"}}],
        "dns": {"servers": ["10.10.0.2"]},
    }
    messages = check_runtime_self_sufficient(resources, SELF_CONFIG, "runtime").messages
    assert messages == [
        "mc-survival (VMID 1000): its DNS resolver 10.10.0.2 is on the core side (core LAN or "
        "management network), so the guest would lose its network when the core host is down; "
        "use zlh-zpack-router's LAN address."
    ]


def test_a_download_from_the_core_lan_is_refused() -> None:
    resources = runtime_stack()
    artifacts = find(resources, "zlh-artifacts")
    props(artifacts)["description"] = "mirror of http://10.10.0.10:8080/zlh-agent"
    assert check_runtime_self_sufficient(resources, SELF_CONFIG, "runtime").messages == [
        "zlh-artifacts: description names 10.10.0.10 on the core LAN; a runtime host must not "
        "need the core host to run (serve it from the runtime side, e.g. zlh-artifacts)."
    ]


def test_core_stacks_are_not_judged_as_runtime_hosts() -> None:
    assert check_runtime_self_sufficient(core_stack(), SELF_CONFIG, "core").violations == []


def test_plain_credentials_are_found_wherever_they_are() -> None:
    def is_secret(value: object) -> bool:
        return isinstance(value, dict) and value.get(SIG) == SECRET_SIG

    wire = {
        "initialization": {"userAccount": {"password": "hunter2hunter2"}},
        "apiToken": {SIG: SECRET_SIG, "value": "root@pam!t=1"},
        "nodes": [{"password": ""}],
    }
    assert plain_credentials(wire, is_secret) == ["initialization.userAccount.password"]


def test_marking_wraps_only_plain_credentials() -> None:
    kept = Secret("already")
    marked, changed = mark_credentials_secret(
        {"password": "plain", "apiToken": kept, "name": "x"},
        lambda value: isinstance(value, Secret),
        Secret,
    )
    assert changed
    assert isinstance(marked["password"], Secret) and marked["password"].value == "plain"
    assert marked["apiToken"] is kept and marked["name"] == "x"


def test_the_pack_remediates_a_plain_password_and_leaves_secrets_alone() -> None:
    resources = runtime_stack()
    game = find(resources, "mc-survival")
    props(game)["initialization"] = {"userAccount": {"password": "plain-password-1"}}
    dev = find(resources, "dev-alice")
    props(dev)["initialization"] = {
        "userAccount": {"password": {SIG: SECRET_SIG, "value": "secret-password-2"}}
    }
    report = run(recording("runtime", resources))
    remediated = [d for d in diags(report) if d[0] == "zlh-secret-inputs"]
    assert [(d[1], d[3]) for d in remediated] == [("remediate", game.urn)]
    assert "plain-password-1" not in remediated[0][2]
    assert "secret-password-2" not in str(diags(report))


def test_the_pack_process_reports_each_new_rule() -> None:
    """Through the real pack process, as `pulumi preview --policy-pack` runs it."""
    resources = runtime_stack()
    game = find(resources, "mc-survival")
    replace(resources, game, protect=False)
    dev = find(resources, "dev-alice")
    props(dev)["initialization"] = {
        "ipConfigs": [{"ipv4": {"address": "10.20.1.100/22", "gateway": "10.10.0.1"}}]
    }
    velocity = find(resources, "zlh-velocity")
    props(velocity)["tags"] = [t for t in props(velocity)["tags"] if not t.startswith("layer-")]
    found = [
        (d[0], d[2].split("\n", 1)[1], d[3]) for d in diags(run(recording("runtime", resources)))
    ]
    assert found == [
        (
            "zlh-required-tags",
            "zlh-velocity (VMID 312) has no layer-* tag; add layer-<its layer>.",
            velocity.urn,
        ),
        (
            "zlh-stateful-protected",
            "mc-survival (VMID 1000) holds data but is not protected in Pulumi, so a config "
            "edit or `pulumi destroy` could delete it: set the resource option protect=True.",
            game.urn,
        ),
        (
            "zlh-runtime-self-sufficient",
            "dev-alice (VMID 1100): its gateway of NIC 0 10.10.0.1 is on the core side (core "
            "LAN or management network), so the guest would lose its network when the core "
            "host is down; use zlh-zpack-router's LAN address.",
            dev.urn,
        ),
    ]


def test_the_pack_process_keeps_runtime_services_out_of_the_core() -> None:
    builder = core_builder()
    velocity = builder.guest(
        "zlh-velocity", 312, layer="control-plane", role="network", service="zlh-velocity"
    )
    found = [
        (d[0], d[2].split("\n", 1)[1]) for d in diags(run(recording("core", builder.resources)))
    ]
    assert found[0] == (
        "zlh-control-plane-independent",
        "zlh-velocity (VMID 312) is tagged svc-zlh-velocity, an edge/runtime service (policy "
        "config runtimeServices); declare it in a runtime stack.",
    )
    assert all(policy == "zlh-control-plane-independent" for policy, _ in found)
    assert velocity.urn
