"""The servers zpack-api makes, and its Proxmox identity, on a live runtime host.

A container no stack file declares is zpack-api's: held to every rule a declared one is
(firewall, protection, backup), and to its own: a VMID of zpack-api's part, pool
``zlh-runtime``, the platform's tags (``zlh-api-servers``). The fake runtime host holds
zpack-api's roles, user and ACL entries as the runtime stack grants them
(``api_identity.acl_entries``); the audit judges them with the pack's validator
(``zlh-api-identity``) and reports the grants Proxmox removed as information.
"""

from __future__ import annotations

from typing import Any

from tests.tooling.audit.conftest import Platform, errors, findings, only
from tests.tooling.audit.fakehosts import Guest, fleet_guest
from zlh_infra.platform.api_identity import USER_ID
from zlh_infra.platform.vmids import VmidRole

SERVERS = "zlh-api-servers"
IDENTITY = "zlh-api-identity"
REFRESH = "`pulumi up --refresh -s runtime`"
IDENTITY_FIX = (
    f"Remove what it names (Datacenter > Permissions, or pveum); {REFRESH} then sets exactly "
    "the roles and ACL entries the runtime stack declares."
)


def api_made(platform: Platform, vmid: int, name: str, role: VmidRole = VmidRole.GAME) -> Guest:
    """A container as zpack-api makes it (``FleetSpec``), in the host's backup job."""
    guest = fleet_guest(vmid, name, role)
    platform.runtime.guests.append(guest)
    platform.runtime.backup_jobs[0]["vmid"] += f",{vmid}"
    return guest


def acl(
    path: str, role: str, *, kind: str = "user", ugid: str = USER_ID, propagate: int = 0
) -> dict[str, Any]:
    return {"path": path, "type": kind, "ugid": ugid, "roleid": role, "propagate": propagate}


def identity_findings(platform: Platform) -> list[tuple[str, str, str]]:
    result = platform.audit("--format", "json")
    assert result.code in (0, 1), result.err
    return [
        (f["severity"], f["problem"], f["fix"])
        for f in findings(result)
        if f["rule"] == IDENTITY
        and (f["stack"], f["node"], f["guest"]) == ("runtime", "zlh-runtime", None)
    ]


# --- the servers -----------------------------------------------------------------------


def test_a_server_zpack_api_made_as_it_should(platform: Platform) -> None:
    api_made(platform, 1030, "mc-api")
    result = platform.audit("--format", "json")
    assert result.code == 0
    assert [(f["severity"], f["guest"], f["rule"]) for f in findings(result)] == [
        ("info", "mc-api", "unmanaged")
    ]


def test_a_server_in_the_declared_part(platform: Platform) -> None:
    api_made(platform, 1005, "mc-early")
    result = platform.audit("--format", "json")
    assert errors(result) == [("mc-early", SERVERS)]
    finding = only(result, "mc-early", SERVERS)
    assert (finding["vmid"], finding["problem"], finding["fix"]) == (
        1005,
        "VMID 1005 is in the part 1000-1019 of the game range that only the runtime stack's "
        "config declares: zpack-api takes VMIDs of 1020-1099",
        "If zpack-api made it, back it up and restore it under a free VMID of 1020-1099, and "
        "find out why it took this one; if it is one of the platform's own servers, declare it "
        "in Pulumi.runtime.yaml.",
    )


def test_a_server_outside_the_fleets_pool(platform: Platform) -> None:
    api_made(platform, 1030, "mc-api").pool = None
    api_made(platform, 1031, "mc-edge", VmidRole.GAME).pool = "zlh-edge"
    result = platform.audit("--format", "json")
    assert errors(result) == [("mc-api", SERVERS), ("mc-edge", SERVERS)]
    assert [(f["problem"], f["fix"]) for f in findings(result) if f["rule"] == SERVERS] == [
        (
            f"not declared in Pulumi.runtime.yaml, so it is zpack-api's (or made by hand), but in "
            f"{where}; zpack-api's servers join pool zlh-runtime, the pool the host's backup job "
            "selects",
            f"Add it to the pool: pveum pool modify zlh-runtime --vms {vmid}.",
        )
        for where, vmid in (("no pool", 1030), ("pool zlh-edge", 1031))
    ]


def test_a_server_outside_the_pool_a_pool_job_backs_up(platform: Platform) -> None:
    api_made(platform, 1030, "mc-api").pool = None
    platform.runtime.backup_jobs = [
        {
            "id": "zlh-pbs",
            "enabled": 1,
            "schedule": "03:30",
            "storage": "pbs",
            "pool": "zlh-runtime",
        },
        {"id": "zlh-pbs-edge", "enabled": 1, "schedule": "03:30", "storage": "pbs", "vmid": "311"},
    ]
    result = platform.audit("--format", "json")
    # Out of the pool is out of the job: its data is not backed up.
    assert errors(result) == [("mc-api", "zlh-stateful-protected"), ("mc-api", SERVERS)]


def test_a_server_without_the_platforms_tags(platform: Platform) -> None:
    api_made(platform, 1130, "dev-api", VmidRole.DEV).tags = ["role-dev", "zlh"]
    result = platform.audit("--format", "json")
    assert errors(result) == [("dev-api", SERVERS)]
    finding = only(result, "dev-api", SERVERS)
    assert (finding["problem"], finding["fix"]) == (
        "not declared in Pulumi.runtime.yaml, so it is zpack-api's (or made by hand), but it "
        "lacks the tag(s) layer-runtime, stack-runtime, svc-dev; a server zpack-api makes carries "
        "a declared dev server's tags (layer-runtime, role-dev, stack-runtime, svc-dev, zlh)",
        "Set them: pct set 1130 --tags 'layer-runtime;role-dev;stack-runtime;svc-dev;zlh'.",
    )


def test_a_server_is_held_to_every_other_rule(platform: Platform) -> None:
    guest = api_made(platform, 1131, "dev-open", VmidRole.DEV)
    guest.protection = False
    guest.options = {"enable": 1, "policy_in": "DROP", "ipfilter": 1}  # macfilter unset: on
    guest.rules = guest.rules[:2]  # the fleet's groups only: fine
    platform.runtime.backup_jobs[0]["vmid"] = platform.runtime.backup_jobs[0]["vmid"].replace(
        ",1131", ""
    )
    result = platform.audit("--format", "json")
    assert errors(result) == [("dev-open", "zlh-stateful-protected")] * 2


def test_declared_servers_are_not_zpack_apis(platform: Platform) -> None:
    # A declared server in no pool, without tags but zlh: the stack's to fix, not this rule's.
    survival = platform.runtime.guest(1000)
    survival.pool = None
    result = platform.audit("--format", "json")
    assert [f for f in findings(result) if f["rule"] == SERVERS] == []


# --- the identity -----------------------------------------------------------------------


def test_the_identity_as_the_runtime_stack_grants_it(platform: Platform) -> None:
    assert identity_findings(platform) == []


def test_a_role_with_a_privilege_more(platform: Platform) -> None:
    platform.runtime.identity.roles["ZpackApiFleet"].append("Sys.Modify")
    assert identity_findings(platform) == [
        (
            "error",
            "role ZpackApiFleet holds Sys.Modify, which none of zpack-api's calls needs; remove it",
            IDENTITY_FIX,
        )
    ]


def test_an_acl_entry_on_a_core_vmid(platform: Platform) -> None:
    platform.runtime.identity.acls.append(acl("/vms/100", "ZpackApiFleet"))
    assert identity_findings(platform) == [
        (
            "error",
            "ACL on /vms/100 gives zpack-api@pve role ZpackApiFleet on VMID 100, a VMID of the "
            "core host (contract coreVmids): zpack-api must never touch a platform guest",
            IDENTITY_FIX,
        )
    ]


def test_an_acl_entry_through_a_group(platform: Platform) -> None:
    platform.runtime.identity.users[USER_ID]["groups"] = ["ops"]
    platform.runtime.identity.acls.append(
        acl("/vms", "PVEVMUser", kind="group", ugid="ops", propagate=1)
    )
    platform.runtime.identity.roles["PVEVMUser"] = ["VM.Audit", "VM.PowerMgmt"]
    assert identity_findings(platform) == [
        (
            "error",
            "ACL on /vms gives group ops role PVEVMUser on /vms, and so on every guest of the "
            "host, the platform's own included; grant it per VMID of zpack-api's parts (game "
            "1020-1099, dev 1120-1199)",
            IDENTITY_FIX,
        )
    ]


def test_a_group_the_user_is_not_in_does_not_count(platform: Platform) -> None:
    platform.runtime.identity.acls.append(
        acl("/vms", "PVEVMUser", kind="group", ugid="ops", propagate=1)
    )
    platform.runtime.identity.roles["PVEVMUser"] = ["VM.Audit", "VM.PowerMgmt"]
    assert identity_findings(platform) == []


def test_an_acl_entry_of_a_token_of_the_user(platform: Platform) -> None:
    platform.runtime.identity.users[USER_ID]["tokens"] = {"x": {"privsep": 1}}
    platform.runtime.identity.acls.append(
        acl("/storage", "ZpackApiStorage", kind="token", ugid=f"{USER_ID}!x", propagate=1)
    )
    assert identity_findings(platform) == [
        (
            "error",
            "ACL on /storage gives token zpack-api@pve!x role ZpackApiStorage on /storage without "
            "a storage id, and so on every storage; grant it on the fleet's storages (local-lvm, "
            "zlh-pbs)",
            IDENTITY_FIX,
        ),
        (
            "error",
            "zpack-api@pve has an API token x; zpack-api logs in with the password the core stack "
            "hands over, and a token made on the runtime host is a second credential",
            "Remove it: pveum user token remove zpack-api@pve x.",
        ),
    ]


def test_an_acl_entry_naming_a_role_the_host_does_not_have(platform: Platform) -> None:
    platform.runtime.identity.acls.append(acl("/vms/1030", "Ghost"))
    assert identity_findings(platform) == [
        (
            "error",
            "ACL on /vms/1030 gives zpack-api@pve role Ghost, whose privileges are not known "
            "here, so what it grants cannot be checked; use the identity's own roles "
            "(ZpackApiFleet, ZpackApiTemplate, ZpackApiStorage, ZpackApiNetwork)",
            IDENTITY_FIX,
        )
    ]


def test_destroyed_servers_spent_grants_are_information(platform: Platform) -> None:
    gone = {"/vms/1020", "/vms/1021", "/vms/1022", "/vms/1150"}
    acls = platform.runtime.identity.acls
    acls[:] = [entry for entry in acls if entry["path"] not in gone]
    result = platform.audit("--format", "json")
    assert result.code == 0
    assert [(f["severity"], f["problem"], f["fix"]) for f in findings(result)] == [
        (
            "info",
            "zpack-api@pve holds no ZpackApiFleet entry on VMID(s) 1020-1022, 1150 (4 of its 166 "
            "ACL entries): Proxmox removes a VMID's entries when it destroys the guest, so these "
            "are destroyed servers' spent grants, and zpack-api cannot take those VMIDs again "
            "until they are granted again",
            f"Once the old servers' backups are pruned or kept on purpose, run {REFRESH}, which "
            "grants them again.",
        )
    ]


def test_a_template_grant_gone_is_information(platform: Platform) -> None:
    acls = platform.runtime.identity.acls
    acls[:] = [entry for entry in acls if entry["path"] not in ("/vms/210", "/storage/zlh-pbs")]
    assert identity_findings(platform) == [
        (
            "info",
            "zpack-api@pve lacks its ACL entries on /vms/210 (a template, ZpackApiTemplate), "
            "/storage/zlh-pbs (a fleet storage, ZpackApiStorage), so zpack-api cannot make "
            "servers that need them",
            f"Run {REFRESH}, which grants them again.",
        )
    ]


def test_no_user_is_information(platform: Platform) -> None:
    del platform.runtime.identity.users[USER_ID]
    result = platform.audit("--format", "json")
    assert result.code == 0
    assert [(f["severity"], f["rule"], f["problem"], f["fix"]) for f in findings(result)] == [
        (
            "info",
            IDENTITY,
            "the host has no user zpack-api@pve, so zpack-api cannot make servers on it",
            f"Run {REFRESH}: the runtime stack creates the user, its roles and its ACL entries.",
        )
    ]
    # Its own answer was not asked for: Proxmox fails it for a user that does not exist.
    paths = {path for _, path, _ in platform.hosts["runtime"].pve.requests}
    assert "/api2/json/access/users/zpack-api@pve" not in paths


def test_an_acl_entry_that_cannot_be_read_is_a_finding(platform: Platform) -> None:
    platform.runtime.identity.acls.append(
        {"path": "/", "type": "role", "ugid": USER_ID, "roleid": "PVEAuditor"}
    )
    index = len(platform.runtime.identity.acls) - 1
    assert identity_findings(platform) == [
        (
            "error",
            f"zpack-api's identity cannot be judged: ACL entry {index}.type: Input should be "
            "'user', 'group' or 'token'",
            "Correct it, so what zpack-api may do can be told.",
        )
    ]


def test_groups_that_cannot_be_read_are_a_finding(platform: Platform) -> None:
    platform.runtime.identity.users[USER_ID]["groups"] = [{"id": "ops"}]
    assert identity_findings(platform) == [
        (
            "error",
            "zpack-api's identity cannot be judged: user zpack-api@pve: groups [{'id': 'ops'}] "
            "is not a list of group ids",
            "Correct it, so what zpack-api may do can be told.",
        )
    ]


def core_identity_findings(platform: Platform) -> list[tuple[str, str, str]]:
    result = platform.audit("--format", "json")
    assert result.code in (0, 1), result.err
    return [
        (f["severity"], f["problem"], f["fix"])
        for f in findings(result)
        if f["rule"] == IDENTITY and f["stack"] == "core"
    ]


def test_the_core_host_without_zpack_apis_identity_passes(platform: Platform) -> None:
    assert core_identity_findings(platform) == []
    core_paths = {path for _, path, _ in platform.hosts["core"].pve.requests}
    assert "/api2/json/access/acl" in core_paths
    assert "/api2/json/access/users/zpack-api@pve" not in core_paths


def test_zpack_apis_user_or_acl_entries_on_the_core_host_are_findings(platform: Platform) -> None:
    platform.core.identity.users[USER_ID] = {"userid": USER_ID, "enable": 1}
    platform.core.identity.acls += [
        acl("/vms/100", "PVEVMAdmin"),
        acl("/", "PVEAuditor", kind="token", ugid=f"{USER_ID}!ops"),
        acl("/vms/101", "PVEVMAdmin", ugid="someone@pve"),
    ]
    assert core_identity_findings(platform) == [
        (
            "error",
            f"the core host has ACL entries for {USER_ID} or its tokens on /, /vms/100; "
            "zpack-api holds nothing on the core host",
            f"Remove them: pveum acl delete <path> --users {USER_ID} (or --tokens).",
        ),
        (
            "error",
            f"the core host has a user {USER_ID}; zpack-api makes servers on runtime hosts only, "
            "and a login here would reach the control plane's own guests",
            f"Remove it: pveum user delete {USER_ID} (its ACL entries and tokens go with it).",
        ),
    ]


def test_tokens_that_cannot_be_read_are_a_finding(platform: Platform) -> None:
    platform.runtime.identity.users[USER_ID]["tokens"] = ["ops"]
    assert identity_findings(platform) == [
        (
            "error",
            "zpack-api's identity cannot be judged: user zpack-api@pve: tokens ['ops'] is not a "
            "map of token ids",
            "Correct it, so what zpack-api may do can be told.",
        )
    ]
