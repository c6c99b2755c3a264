"""Stateful guests protected and backed up; runtime hosts that run without the core;
credentials that stay secret."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pulumi_policy import Secret
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from tests.policies.policy_fixtures import (
    core_builder,
    core_stack,
    find,
    props,
    runtime_builder,
    runtime_stack,
    unknown,
)
from tests.policies.test_policy_protocol import SECRET_SIG, SIG, diags, recording, run
from zlh_infra.platform.type_tokens import BACKUP_JOB
from zlh_infra.policies.config import SELF_SUFFICIENT, STATEFUL
from zlh_infra.policies.resilience import check_runtime_self_sufficient, check_stateful_protected
from zlh_infra.policies.resources import Resource, Violation
from zlh_infra.policies.secrets import mark_credentials_secret, plain_credentials

STATEFUL_CONFIG = STATEFUL.parse("zlh-stateful-protected", None)
SELF_CONFIG = SELF_SUFFICIENT.parse("zlh-runtime-self-sufficient", None)


def replace(resources: list[Resource], old: Resource, **changes: Any) -> None:
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


def test_a_game_container_with_its_tags_renamed_still_holds_data() -> None:
    """Its VMID's range says it is a game container, whatever its tags say."""
    resources = runtime_stack()
    game = find(resources, "mc-survival")
    replace(resources, game, protect=False)
    props(game)["protection"] = False
    props(game)["tags"] = ["zlh", "layer-runtime", "role-scratch", "stack-runtime", "svc-scratch"]
    assert check_stateful_protected(resources, STATEFUL_CONFIG, "runtime").messages[:2] == [
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


RUNTIME_STATEFUL = (
    "zlh-zpack-proxy (VMID 311)",
    "zlh-artifacts (VMID 150)",
    "mc-survival (VMID 1000)",
    "dev-alice (VMID 1100)",
)
NOT_BACKED_UP = (
    "{guest} holds data but no enabled backup job of stack runtime includes it ({why}): "
    "correct that job, or add its VMID to the host's backup job to Proxmox Backup Server."
)


def runtime_job(**changes: Any) -> list[Resource]:
    """The runtime stack with its backup job's inputs changed (None removes one)."""
    resources = runtime_stack()
    job = props(find(resources, "runtime-backup-job", BACKUP_JOB))
    for key, value in changes.items():
        if value is None:
            job.pop(key, None)
        else:
            job[key] = value
    return resources


def backup_messages(resources: list[Resource]) -> list[str]:
    return check_stateful_protected(resources, STATEFUL_CONFIG, "runtime").messages


def not_backed_up(why: str, guests: tuple[str, ...] = RUNTIME_STATEFUL) -> list[str]:
    return [NOT_BACKED_UP.format(guest=guest, why=why) for guest in guests]


@pytest.mark.parametrize("key", ["excludes", "exclude"])
def test_a_guest_excluded_from_an_all_guests_job_is_not_backed_up(key: str) -> None:
    resources = runtime_job(all=True, vmids=None, **{key: ["1000", "200"]})
    assert backup_messages(resources) == not_backed_up(
        "runtime-backup-job excludes it", ("mc-survival (VMID 1000)",)
    )


def test_an_all_guests_job_may_exclude_a_guest_without_data() -> None:
    # zlh-base (200) is a template and holds no data.
    assert backup_messages(runtime_job(all=True, vmids=None, excludes=["200"])) == []


@pytest.mark.parametrize("key", ["node", "nodeName"])
def test_a_job_on_another_node_backs_up_nothing_here(key: str) -> None:
    resources = runtime_job(**{"node": None, key: "zlh-core"})
    assert backup_messages(resources) == not_backed_up(
        "runtime-backup-job runs on node zlh-core only"
    )


@pytest.mark.parametrize("selection", [{}, {"all": True, "vmids": None}])
def test_a_job_without_a_node_runs_on_every_node(selection: dict[str, Any]) -> None:
    assert backup_messages(runtime_job(node=None, **selection)) == []


def test_a_job_naming_two_nodes_is_not_read() -> None:
    messages = backup_messages(runtime_job(nodeName="zlh-core"))
    assert messages == [
        "backup job runtime-backup-job: nodeName is 'zlh-core', which the policy cannot read, "
        "so the job counts for no guest: name the one node it runs on, or leave node unset "
        "for all.",
        *not_backed_up("runtime-backup-job could not be read"),
    ]


@pytest.mark.parametrize("storage", ["local", "zlh-core-backup", None])
def test_a_job_writing_elsewhere_than_a_pbs_storage_of_the_stack(storage: str | None) -> None:
    assert backup_messages(runtime_job(storage=storage)) == [
        f"backup job runtime-backup-job writes to storage {storage!r}, which is not a Proxmox "
        "Backup Server storage of stack runtime, so it counts for no guest: point storage at "
        "the resource_id of a proxmoxve.storage.Pbs the stack declares.",
        *not_backed_up("runtime-backup-job does not write to Proxmox Backup Server"),
    ]


def test_a_job_may_write_to_any_pbs_storage_the_stack_declares() -> None:
    builder = runtime_builder()
    builder.pbs_storage("zlh-offsite")
    props(find(builder.resources, "runtime-backup-job", BACKUP_JOB))["storage"] = "zlh-offsite"
    assert backup_messages(builder.resources) == []


@pytest.mark.parametrize("enabled", ["true", "false", "0", 1.0, None])
def test_only_the_boolean_true_enables_a_job(enabled: object) -> None:
    assert backup_messages(runtime_job(enabled=enabled)) == [
        f"backup job runtime-backup-job: enabled is {enabled!r}, not the boolean true, so the "
        "job counts for no guest: set enabled=true.",
        *not_backed_up("runtime-backup-job is not enabled"),
    ]


def test_a_job_disabled_by_the_boolean_false_is_no_finding_of_its_own() -> None:
    assert backup_messages(runtime_job(enabled=False)) == not_backed_up(
        "runtime-backup-job is not enabled"
    )


@pytest.mark.parametrize(
    "selection",
    [
        {"pool": "zlh-runtime", "vmids": ["311"]},
        {"pools": ["zlh-runtime", "zlh-edge"], "vmids": None},
        {"pool": "zlh-edge", "pools": ["zlh-runtime"], "vmids": None},
    ],
)
def test_a_job_backs_up_the_guests_of_the_pools_it_selects(selection: dict[str, Any]) -> None:
    builder = runtime_builder()
    builder.pool("edge")
    builder.pool("runtime")
    job = find(builder.resources, "runtime-backup-job", BACKUP_JOB)
    props(job).update(selection)
    for key in [key for key, value in selection.items() if value is None]:
        del props(job)[key]
    assert backup_messages(builder.resources) == []


def test_a_pool_job_covers_a_container_the_api_adds_to_the_pool() -> None:
    builder = runtime_builder()
    job = find(builder.resources, "runtime-backup-job", BACKUP_JOB)
    props(job).update(pool="zlh-runtime", vmids=["311"])
    builder.guest("mc-new", 1003, layer="runtime", role="game", service="game", stateful=True)
    assert backup_messages(builder.resources) == []


def test_a_guest_outside_the_selected_pool_is_not_backed_up() -> None:
    resources = runtime_job(pool="zlh-edge", vmids=None)
    assert backup_messages(resources) == [
        f"{guest} holds data but no enabled backup job of stack runtime includes it: add its "
        "VMID to the host's backup job to Proxmox Backup Server."
        for guest in RUNTIME_STATEFUL[1:]
    ]


def test_a_pool_job_still_honours_its_node_and_exclusions() -> None:
    resources = runtime_job(pool="zlh-runtime", vmids=["311"], excludes=["1100"])
    assert backup_messages(resources) == not_backed_up(
        "runtime-backup-job excludes it", ("dev-alice (VMID 1100)",)
    )


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("pool", 5.0, "set pool to the id of a pool"),
        ("pools", [""], "set pools to the id of a pool"),
        ("vmids", "150,311,1000,1100", 'give it as a list of VMIDs, e.g. ["1000", "1001"]'),
        ("excludes", ["mc-survival"], 'give it as a list of VMIDs, e.g. ["1000", "1001"]'),
        ("all", "yes", "set all=true, or leave it unset"),
    ],
)
def test_a_selection_the_policy_cannot_read_backs_up_nothing(
    key: str, value: object, fix: str
) -> None:
    assert backup_messages(runtime_job(**{key: value})) == [
        f"backup job runtime-backup-job: {key} is {value!r}, which the policy cannot read, so "
        f"the job counts for no guest: {fix}.",
        *not_backed_up("runtime-backup-job could not be read"),
    ]


def test_a_stack_without_a_backup_job_names_every_guest_holding_data() -> None:
    resources = [r for r in runtime_stack() if r.type != BACKUP_JOB]
    assert backup_messages(resources) == [
        f"{guest} holds data but no enabled backup job of stack runtime includes it: add its "
        "VMID to the host's backup job to Proxmox Backup Server."
        for guest in RUNTIME_STATEFUL
    ]


def test_a_second_job_covers_what_the_first_leaves_out() -> None:
    builder = runtime_builder()
    first = find(builder.resources, "runtime-backup-job", BACKUP_JOB)
    props(first)["excludes"] = ["1000"]
    second = dataclasses.replace(
        first, urn=first.urn + "-games", name="games", props={**first.props, "vmids": ["1000"]}
    )
    props(second).pop("excludes")
    assert backup_messages([*builder.resources, second]) == []


def test_a_job_not_known_yet_leaves_the_backups_undecided() -> None:
    resources = runtime_stack()
    job = find(resources, "runtime-backup-job", BACKUP_JOB)
    resources[resources.index(job)] = unknown(job, storage=UNKNOWN_STRING_VALUE)
    findings = check_stateful_protected(resources, STATEFUL_CONFIG, "runtime")
    assert findings.violations == []
    assert len(findings.unknowns) == 1


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
    findings = check_runtime_self_sufficient(resources, SELF_CONFIG, "runtime")
    assert findings.violations == [
        Violation(
            problem="description names 10.10.0.10 on the core LAN; a runtime host must not need "
            "the core host to run",
            fix="serve it from the runtime side, e.g. zlh-artifacts",
            urn=artifacts.urn,
            subject="zlh-artifacts",
            joint=": ",
        )
    ]
    assert findings.messages == [
        "zlh-artifacts: description names 10.10.0.10 on the core LAN; a runtime host must not "
        "need the core host to run: serve it from the runtime side, e.g. zlh-artifacts."
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
    resources = runtime_stack(fleet_group=True)
    game = find(resources, "mc-survival")
    replace(resources, game, protect=False)
    dev = find(resources, "dev-alice")
    props(dev)["initialization"] = {
        "ipConfigs": [{"ipv4": {"address": "10.20.1.100/22", "gateway": "10.10.0.1"}}],
        "dns": {"servers": ["10.20.0.1"]},
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
