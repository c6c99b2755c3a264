"""zlh-api-identity: zpack-api's Proxmox user, roles and ACLs in a runtime stack."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from tests.policies.policy_fixtures import StackBuilder, core_builder, runtime_builder, unknown
from tests.policies.test_policy_pack import validate_stack
from zlh_infra.platform.api_identity import (
    FLEET_ROLE,
    IdentityInputs,
    acl_entries,
    role_privileges,
)
from zlh_infra.policies import pack
from zlh_infra.policies.api_identity import (
    ACL,
    ACL_LEGACY,
    API_IDENTITY,
    ROLE,
    TOKEN,
    USER,
    check_api_identity,
)
from zlh_infra.policies.config import PolicyConfigError
from zlh_infra.policies.resources import Resource, Violation

CONFIG = API_IDENTITY.parse("zlh-api-identity", None)
#: The validator's sentence is the problem; the fix names the declaration to change.
ACL_FIX = "declare the identity's ACL entries as zlh_infra.platform.api_identity computes them"
ROLE_FIX = "declare the role with the privileges zlh_infra.platform.api_identity gives it"
USER_ID = "zpack-api@pve"
#: The fixture's runtime stack holds one template-range guest, zlh-base (200).
INPUTS = IdentityInputs(template_vmids=(200,))


def with_identity(
    b: StackBuilder, *, roles: dict[str, list[str]] | None = None, acl_type: str = ACL_LEGACY
) -> StackBuilder:
    """The identity as the runtime stack would declare it: roles, user, one ACL per entry."""
    for role_id, privileges in (
        roles or {k: list(v) for k, v in role_privileges().items()}
    ).items():
        b.add(ROLE, f"role-{role_id}", {"roleId": role_id, "privileges": privileges},
              parent=b.root.urn, managed=True)  # fmt: skip
    b.add(USER, "zpack-api", {"userId": USER_ID, "password": "x" * 32, "enabled": True},
          parent=b.root.urn, managed=True)  # fmt: skip
    for acl in acl_entries(INPUTS):
        add_acl(b, acl.path, acl.role_id, acl.propagate, type_=acl_type)
    return b


def add_acl(
    b: StackBuilder, path: str, role: str, propagate: bool | None, *, type_: str = ACL_LEGACY,
    **who: str,
) -> Resource:  # fmt: skip
    props: dict[str, Any] = {"path": path, "roleId": role, **(who or {"userId": USER_ID})}
    if propagate is not None:
        props["propagate"] = propagate
    name = f"acl-{path.strip('/').replace('/', '-') or 'root'}-{role}"
    return b.add(type_, name, props, parent=b.root.urn, managed=True)


def check(b: StackBuilder, stack: str | None = None) -> list[str]:
    findings = check_api_identity(b.resources, CONFIG, stack or b.stack)
    assert findings.unknowns == []
    return findings.messages


def test_the_identity_as_computed_passes() -> None:
    assert check(with_identity(runtime_builder())) == []
    assert check(with_identity(runtime_builder(), acl_type=ACL)) == []
    assert check(with_identity(runtime_builder("runtime-2", "zlh-runtime-2"))) == []


def test_a_stack_without_the_identity_passes() -> None:
    assert check(runtime_builder()) == []
    assert check(core_builder()) == []


def test_fewer_acls_pass() -> None:
    b = runtime_builder()
    with_identity(b)
    b.resources = [r for r in b.resources if r.props.get("path") != "/storage/zlh-pbs"]
    assert check(b) == []


def test_other_principals_acls_are_not_the_identitys() -> None:
    b = with_identity(runtime_builder())
    add_acl(b, "/", "PVEAdmin", True, userId="pulumi@pve")
    add_acl(b, "/", "PVEAuditor", True, tokenId="audit@pve!zlh")
    assert check(b) == []


def test_a_privilege_outside_the_list_fails() -> None:
    roles = {k: list(v) for k, v in role_privileges().items()}
    roles[FLEET_ROLE.role_id].append("Sys.Modify")
    b = with_identity(runtime_builder(), roles=roles)
    role = next(r for r in b.resources if r.props.get("roleId") == FLEET_ROLE.role_id)
    findings = check_api_identity(b.resources, CONFIG, "runtime")
    assert findings.violations == [
        Violation(
            problem="role ZpackApiFleet holds Sys.Modify, which none of zpack-api's calls needs; "
            "remove it",
            fix=ROLE_FIX,
            urn=role.urn,
        )
    ]


def test_an_acl_on_root_fails() -> None:
    b = with_identity(runtime_builder())
    acl = add_acl(b, "/", FLEET_ROLE.role_id, False)
    findings = check_api_identity(b.resources, CONFIG, "runtime")
    assert findings.violations == [
        Violation(
            problem="ACL on / gives zpack-api@pve role ZpackApiFleet at the root: the host's own "
            "settings (tags, the datacenter firewall, jobs); grant it on the fleet's own paths "
            "only",
            fix=ACL_FIX,
            urn=acl.urn,
        )
    ]


def test_an_acl_on_a_core_vmid_fails() -> None:
    b = with_identity(runtime_builder())
    add_acl(b, "/vms/150", FLEET_ROLE.role_id, False)
    assert check(b) == [
        "ACL on /vms/150 gives zpack-api@pve role ZpackApiFleet on VMID 150, in the core-infra "
        "range 100-199: zpack-api must never touch a platform guest; "
        f"{ACL_FIX}."
    ]


def test_an_acl_on_a_declared_servers_vmid_fails() -> None:
    b = with_identity(runtime_builder())
    add_acl(b, "/vms/1000", FLEET_ROLE.role_id, False)
    assert check(b) == [
        "ACL on /vms/1000 gives zpack-api@pve role ZpackApiFleet on VMID 1000, in the part "
        "1000-1019 of the game range that the runtime stack's config declares: declared "
        "servers are Pulumi's, not zpack-api's; "
        f"{ACL_FIX}."
    ]


def test_an_acl_without_propagate_propagates_as_proxmox_defaults() -> None:
    b = with_identity(runtime_builder())
    add_acl(b, "/sdn/zones/localnetwork/vmbr1", "ZpackApiNetwork", None)
    assert check(b) == [
        "ACL on /sdn/zones/localnetwork/vmbr1 propagates, so it also grants every VLAN of the "
        "bridge (/sdn/zones/localnetwork/vmbr1/<tag>); set propagate to false; "
        f"{ACL_FIX}."
    ]


def test_a_tokens_acl_is_the_identitys() -> None:
    b = with_identity(runtime_builder())
    add_acl(b, "/vms", FLEET_ROLE.role_id, True, tokenId=f"{USER_ID}!ci")
    assert check(b) == [
        "ACL on /vms gives token zpack-api@pve!ci role ZpackApiFleet on /vms, and so on every "
        "guest of the host, the platform's own included; grant it per VMID of zpack-api's "
        "parts (game 1020-1099, dev 1120-1199); "
        f"{ACL_FIX}."
    ]


def test_a_builtin_role_cannot_be_judged_and_fails() -> None:
    b = with_identity(runtime_builder())
    add_acl(b, "/vms/1020", "PVEVMAdmin", False)
    assert check(b) == [
        "ACL on /vms/1020 gives zpack-api@pve role PVEVMAdmin, whose privileges are not known "
        "here, so what it grants cannot be checked; use the identity's own roles "
        "(ZpackApiFleet, ZpackApiTemplate, ZpackApiStorage, ZpackApiNetwork); "
        f"{ACL_FIX}."
    ]


def test_a_role_whose_privileges_cannot_be_read_fails_where_an_acl_names_it() -> None:
    b = with_identity(runtime_builder())
    role = next(r for r in b.resources if r.props.get("roleId") == FLEET_ROLE.role_id)
    role.props["privileges"] = "VM.Audit VM.Allocate"  # type: ignore[index]
    messages = check(b)
    assert messages[0] == (
        "ACL on /vms/1020 gives zpack-api@pve role ZpackApiFleet, whose privileges are not "
        "known here, so what it grants cannot be checked; use the identity's own roles "
        "(ZpackApiFleet, ZpackApiTemplate, ZpackApiStorage, ZpackApiNetwork); "
        f"{ACL_FIX}."
    )
    assert len(messages) == 160  # one per fleet VMID's entry, and no other


def test_the_users_groups_and_inline_acls_are_checked() -> None:
    b = with_identity(runtime_builder())
    user = next(r for r in b.resources if r.type == USER)
    user.props["groups"] = ["admins"]  # type: ignore[index]
    user.props["acls"] = [  # type: ignore[index]
        {"path": "/vms/151", "roleId": FLEET_ROLE.role_id, "propagate": False},
        {"path": "/vms/1020", "roleId": 5},
    ]
    assert check(b) == [
        "zpack-api (proxmoxve:index/userLegacy:UserLegacy): zpack-api@pve is a member of "
        "group(s) admins; a group's ACLs would reach it unchecked: give it no groups.",
        "zpack-api (proxmoxve:index/userLegacy:UserLegacy): acls[1] cannot be read, so what "
        "it grants cannot be checked; give its path, roleId and propagate plain values.",
        "ACL on /vms/151 gives zpack-api@pve role ZpackApiFleet on VMID 151, in the "
        "core-infra range 100-199: zpack-api must never touch a platform guest; "
        f"{ACL_FIX}.",
    ]


def test_an_api_token_of_the_identity_fails() -> None:
    b = with_identity(runtime_builder())
    b.add(TOKEN, "zpack-api-ci", {"userId": USER_ID, "tokenName": "ci"}, parent=b.root.urn)
    assert check(b) == [
        "zpack-api-ci (proxmoxve:user/tokenLegacy:TokenLegacy): an API token of zpack-api@pve; "
        "zpack-api logs in with the password the core stack hands over, and a token, made on "
        "the runtime host, would be a second credential: remove it."
    ]


def test_an_acl_that_cannot_be_read_fails() -> None:
    b = with_identity(runtime_builder())
    acl = add_acl(b, "/vms/1020", FLEET_ROLE.role_id, False)
    acl.props["propagate"] = "yes"  # type: ignore[index]
    assert check(b) == [
        f"{acl.name} (proxmoxve:index/aclLegacy:AclLegacy) grants zpack-api@pve something, but "
        "its path, roleId or propagate cannot be read, so what it grants cannot be checked; "
        "give each a plain value."
    ]


def test_the_core_stack_holds_no_identity() -> None:
    b = core_builder()
    b.add(USER, "zpack-api", {"userId": USER_ID}, parent=b.root.urn)
    add_acl(b, "/vms/1020", FLEET_ROLE.role_id, False)
    assert check(b) == [
        "zpack-api (proxmoxve:index/userLegacy:UserLegacy) is part of zpack-api's Proxmox "
        "identity (zpack-api@pve), but this is not a runtime stack; zpack-api makes guests on "
        "runtime hosts only: declare its user, roles and ACLs in each runtime stack.",
        "acl-vms-1020-ZpackApiFleet (proxmoxve:index/aclLegacy:AclLegacy) is part of "
        "zpack-api's Proxmox identity (zpack-api@pve), but this is not a runtime stack; "
        "zpack-api makes guests on runtime hosts only: declare its user, roles and ACLs in "
        "each runtime stack.",
    ]


def test_a_path_unknown_during_preview_is_skipped_and_reported_as_unknown() -> None:
    b = with_identity(runtime_builder())
    acl = add_acl(b, "/", FLEET_ROLE.role_id, False)
    b.resources[b.resources.index(acl)] = unknown(acl, path=UNKNOWN_STRING_VALUE)
    findings = check_api_identity(b.resources, CONFIG, "runtime")
    assert findings.messages == []
    assert len(findings.unknowns) == 1


def test_the_configured_storages_and_bridges_are_the_fleets() -> None:
    config = API_IDENTITY.parse(
        "zlh-api-identity", {"storages": ["tank", "zlh-pbs"], "bridges": ["vmbr1", "vmbr2"]}
    )
    b = with_identity(runtime_builder())
    findings = check_api_identity(b.resources, config, "runtime")
    assert findings.messages == [
        "ACL on /storage/local-lvm gives zpack-api@pve role ZpackApiStorage on storage "
        "local-lvm, not one of the fleet's storages (tank, zlh-pbs); "
        f"{ACL_FIX}."
    ]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"userId": "zpack-api"}, "userId must be a Proxmox user id (name@realm), not 'zpack-api'"),
        ({"storages": ["Local LVM"]}, "storages: 'Local LVM' is not a Proxmox storage id"),
        ({"bridges": []}, "bridges: must name at least one"),
        ({"bridges": [""]}, "bridges must be a list of non-empty strings, not ['']"),
        ({"pools": "x"}, "unknown key(s) pools; its keys are userId, storages, bridges, pool"),
    ],
)
def test_an_unusable_config_names_the_key(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(PolicyConfigError) as error:
        API_IDENTITY.parse("zlh-api-identity", raw)
    assert problem in error.value.problems


# --- through the pack, as it registers the policy ---

POLICY = pack.api_identity


def test_the_policy_reports_through_the_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_STACK", raising=False)
    assert POLICY.description.endswith(".") and POLICY.description.count(". ") == 0
    assert POLICY.config_schema is not None
    assert all("default" in prop for prop in POLICY.config_schema.properties.values())
    assert validate_stack(POLICY, with_identity(runtime_builder()).resources) == []
    b = with_identity(runtime_builder())
    acl = add_acl(b, "/pool/zlh-runtime", FLEET_ROLE.role_id, False)
    assert validate_stack(POLICY, b.resources) == [
        (
            "ACL on /pool/zlh-runtime gives zpack-api@pve role ZpackApiFleet through a pool: "
            "Proxmox applies a pool's roles to each member guest and storage, and VM.Allocate "
            "on a pool lets a create or clone take any free VMID; zpack-api needs no pool ACL "
            "(naming pool zlh-runtime in a clone takes none); "
            f"{ACL_FIX}.",
            acl.urn,
        )
    ]
    assert validate_stack(POLICY, b.resources, {"userId": "nobody"}) == [
        (
            "the configuration of policy zlh-api-identity is unusable: userId must be a "
            "Proxmox user id (name@realm), not 'nobody'. Fix it in the --policy-pack-config "
            "file.",
            None,
        )
    ]
