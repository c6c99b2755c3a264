"""zpack-api's Proxmox identity: its roles and ACLs, their check, and the container spec.

The Proxmox behaviour the design rests on is checked against the upstream sources
copied in ``tests/data/reference/pve/`` (provenance in its README).
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.stack_configs import engine_config, shipped
from zlh_infra.config import RuntimeStackConfig, parse_stack_config
from zlh_infra.platform.api_identity import (
    BRIDGE_ROLE,
    FLEET_ROLE,
    NEEDED_PRIVILEGES,
    PVE8_PRIVILEGES,
    ROLES,
    STORAGE_ROLE,
    TEMPLATE_ROLE,
    AclEntry,
    ApiIdentityError,
    FindingKind,
    FleetSegment,
    FleetSpec,
    FleetTemplate,
    IdentityInputs,
    Upstream,
    acl_entries,
    acls_from_proxmox,
    check_identity,
    identity_acls,
    missing_acls,
    normalize_path,
    role_privileges,
    roles_from_proxmox,
)
from zlh_infra.platform.catalogue import Network
from zlh_infra.platform.vmids import VmidRole, api_vmids

REFERENCE = Path(__file__).parents[1] / "data" / "reference" / "pve"
INPUTS = IdentityInputs(template_vmids=(210, 220))
ROLES_MAP = role_privileges()
FLEET, TEMPLATE = FLEET_ROLE.role_id, TEMPLATE_ROLE.role_id
STORAGE, BRIDGE = STORAGE_ROLE.role_id, BRIDGE_ROLE.role_id


def upstream_text(repo: str, path: str) -> str:
    return (REFERENCE / repo.split("/")[1] / path).read_text()


def section(repo: str, path: str, marker: str, *, method: bool = False) -> str:
    """The text of one function of an upstream file: from its marker to the next one."""
    text = upstream_text(repo, path)
    start = text.index(marker)
    boundaries = ["\n__PACKAGE__->register_method(", "\nsub ", "\nmy $", "\nmy sub "]
    if method:
        boundaries.append("name => '")
    ends = [text.find(b, start + len(marker)) for b in boundaries]
    return text[start : min([end for end in ends if end != -1], default=len(text))]


def block(source: Upstream) -> str:
    return section(source.repo, source.path, source.marker, method=source.kind == "method")


ACCESS = ("proxmox/pve-access-control", "src/PVE/AccessControl.pm")
RPCENV = ("proxmox/pve-access-control", "src/PVE/RPCEnvironment.pm")
ACL_API = ("proxmox/pve-access-control", "src/PVE/API2/ACL.pm")
LXC_API = ("proxmox/pve-container", "src/PVE/API2/LXC.pm")


def messages(acls: list[AclEntry], roles: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    return [f.message for f in check_identity(roles or ROLES_MAP, acls, INPUTS)]


# --- Proxmox's own definitions ------------------------------------------------------


def test_the_privilege_list_is_proxmox_ve_8s() -> None:
    text = upstream_text(*ACCESS)
    groups = section(*ACCESS, "my $privgroups = {")
    valid = section(*ACCESS, "my $valid_privs = {")
    parsed = set(re.findall(r"'([A-Za-z]+(?:\.[A-Za-z]+)+)'", groups + valid))
    assert "create_roles();" in text
    assert parsed == PVE8_PRIVILEGES


def test_every_role_holds_only_proxmox_privileges_each_with_a_reason() -> None:
    assert NEEDED_PRIVILEGES <= PVE8_PRIVILEGES
    for role in ROLES:
        assert not role.role_id.upper().startswith("PVE")  # Proxmox reserves that prefix
        assert len(role.privileges) == len(set(role.privileges))
        for need in role.needs:
            assert need.reason and "\n" not in need.reason
            assert need.calls and need.sources


@pytest.mark.parametrize(
    ("privilege", "source"),
    [(need.privilege, source) for role in ROLES for need in role.needs for source in need.sources],
    ids=lambda value: value if isinstance(value, str) else f"{value.path}:{value.function}",
)
def test_each_privilege_is_checked_where_its_reason_says(privilege: str, source: Upstream) -> None:
    assert f"'{privilege}'" in block(source)


def test_a_pool_acl_would_let_create_and_clone_take_any_vmid() -> None:
    clone = section(*LXC_API, "name => 'clone_vm'", method=True)
    assert "['perm', '/vms/{newid}', ['VM.Allocate']]" in clone
    assert "['perm', '/pool/{pool}', ['VM.Allocate'], require_param => 'pool']" in clone
    create = section(*LXC_API, "name => 'create_vm'", method=True)
    assert "\"/vms/$vmid\", ['VM.Allocate'], 1)" in create
    assert "\"/pool/$pool\", ['VM.Allocate'], 1)" in create
    check_vm_perm = section(*RPCENV, "sub check_vm_perm {")
    assert check_vm_perm.index('"/pool/$pool"') < check_vm_perm.index('"/vms/$vmid"')


def test_pool_roles_reach_only_the_pools_members_and_never_propagate() -> None:
    compile_acl = section(*RPCENV, "my $compile_acl_path = sub {")
    assert "foreach my $vmid (keys %{ $d->{vms} })" in compile_acl
    assert '$data->{poolroles}->{"/vms/$vmid"}->{$role} = 1;' in compile_acl
    assert "never set propagation for pool-derived ACLs" in compile_acl


def test_joining_a_pool_at_creation_takes_no_privilege() -> None:
    for method in ("create_vm", "clone_vm"):
        code = section(*LXC_API, f"name => '{method}'", method=True)
        assert "check_pool_exist($pool)" in code
        assert "add_vm_to_pool(" in code
        assert "Pool.Allocate" not in code and "Pool.Audit" not in code
    add = section(*ACCESS, "sub add_vm_to_pool {")
    assert "check" not in add


def test_config_updates_are_judged_on_the_containers_own_path_not_a_pool() -> None:
    update = section(
        "proxmox/pve-container", "src/PVE/API2/LXC/Config.pm", "name => 'update_vm'", method=True
    )
    assert "$rpcenv, $authuser, $vmid, undef, $conf, $param, [], $unprivileged," in update
    perm = section("proxmox/pve-container", "src/PVE/LXC.pm", "sub check_ct_modify_config_perm {")
    assert "check_vm_perm($authuser, $vmid, $pool, ['VM.Config.Network'])" in perm
    assert "check_bridge_access($rpcenv, $authuser, $newconf->{$opt})" in perm


def test_destroying_a_container_deletes_the_acls_on_its_vmid() -> None:
    destroy = section(*LXC_API, "name => 'destroy_vm'", method=True)
    assert "['perm', '/vms/{vmid}', ['VM.Allocate']]" in destroy
    assert "PVE::AccessControl::remove_vm_access($vmid);" in destroy
    remove = section(*ACCESS, "sub remove_vm_access {")
    assert "delete $usercfg->{acl_root}->{children}->{vms}->{children}->{$vmid};" in remove


def test_acls_propagate_unless_told_not_to_and_vm_allocate_lets_acls_be_edited() -> None:
    update = section(*ACL_API, "name => 'update_acl'", method=True)
    assert "my $propagate = 1;" in update
    assert "['perm-modify', '{path}']" in update
    perm_modify = section(*RPCENV, "sub check_perm_modify {")
    assert "push @$testperms, 'VM.Allocate';" in perm_modify


def test_plain_bridges_are_checked_in_the_localnetwork_zone() -> None:
    vnet = section("proxmox/pve-guest-common", "src/PVE/GuestHelpers.pm", "sub check_vnet_access {")
    assert "my $zone = 'localnetwork';" in vnet
    assert '"/sdn/zones/$zone/$vnet/$tag"' in vnet
    assert "\"/sdn/zones/$zone/$vnet\", ['SDN.Use']" in vnet


def test_acl_paths_are_ones_proxmox_accepts() -> None:
    check_path = section(*ACCESS, "sub check_path {")
    assert "|/vms/[1-9][0-9]{2,}" in check_path
    assert "|/storage/[[:alnum:]\\.\\-\\_]+" in check_path
    assert "|/sdn/zones/[[:alnum:]\\.\\-\\_]+/[[:alnum:]\\.\\-\\_]+" in check_path
    for acl in acl_entries(INPUTS):
        assert normalize_path(acl.path) == acl.path


# --- the ACLs -----------------------------------------------------------------------


def test_the_identity_gets_one_entry_per_template_vmid_storage_and_bridge() -> None:
    acls = acl_entries(INPUTS)
    by_role: dict[str, list[str]] = {}
    for acl in acls:
        by_role.setdefault(acl.role_id, []).append(acl.path)
        assert acl.ugid == "zpack-api@pve" and acl.kind == "user" and acl.propagate is False
    assert by_role[TEMPLATE] == ["/vms/210", "/vms/220"]
    assert by_role[FLEET] == [f"/vms/{vmid}" for vmid in api_vmids()]
    assert len(by_role[FLEET]) == 160
    assert by_role[FLEET][0] == "/vms/1020" and by_role[FLEET][-1] == "/vms/1199"
    assert "/vms/1119" not in by_role[FLEET] and "/vms/1120" in by_role[FLEET]
    assert by_role[STORAGE] == ["/storage/local-lvm", "/storage/zlh-pbs"]
    assert by_role[BRIDGE] == ["/sdn/zones/localnetwork/vmbr1", "/sdn/zones/localnetwork/vmbr2"]


def test_the_identitys_own_roles_and_acls_pass() -> None:
    assert check_identity(ROLES_MAP, list(acl_entries(INPUTS)), INPUTS) == []


@given(st.sets(st.integers(0, len(acl_entries(INPUTS)) - 1)))
def test_any_subset_of_the_acls_passes_and_the_rest_is_missing(kept: set[int]) -> None:
    every = acl_entries(INPUTS)
    acls = [acl for index, acl in enumerate(every) if index in kept]
    assert check_identity(ROLES_MAP, acls, INPUTS) == []
    missing = missing_acls(acls, INPUTS)
    assert [acl for index, acl in enumerate(every) if index not in kept] == missing


def test_a_role_granting_nothing_passes_anywhere() -> None:
    assert messages([AclEntry("/", "NoAccess", True)], {"NoAccess": ()}) == []


def test_a_privilege_outside_the_list_fails() -> None:
    roles = dict(ROLES_MAP)
    roles[FLEET] = (*roles[FLEET], "Sys.Modify", "VM.Migrate")
    assert messages([AclEntry("/vms/1020", FLEET, False)], roles) == [
        "role ZpackApiFleet holds Sys.Modify, which none of zpack-api's calls needs; remove it",
        "role ZpackApiFleet holds VM.Migrate, which none of zpack-api's calls needs; remove it",
    ]


def test_a_name_that_is_no_proxmox_privilege_fails() -> None:
    roles = {**ROLES_MAP, STORAGE: ("Datastore.AllocateSpace", "Datastore.Everything")}
    assert messages([AclEntry("/storage/local-lvm", STORAGE, False)], roles) == [
        "role ZpackApiStorage holds 'Datastore.Everything', which is not a Proxmox VE 8 "
        "privilege; remove it"
    ]


def test_a_role_no_acl_names_is_not_the_identitys() -> None:
    roles = {**ROLES_MAP, "Operators": ("Sys.Modify",)}
    assert messages(list(acl_entries(INPUTS)), roles) == []


@pytest.mark.parametrize(
    ("acl", "message"),
    [
        (
            AclEntry("/", FLEET, True),
            "ACL on / gives zpack-api@pve role ZpackApiFleet at the root, and so on everything "
            "of the host: its own settings, every guest, storage and user; grant it on the "
            "fleet's own paths only",
        ),
        (
            AclEntry("/", STORAGE, False),
            "ACL on / gives zpack-api@pve role ZpackApiStorage at the root: the host's own "
            "settings (tags, the datacenter firewall, jobs); grant it on the fleet's own paths "
            "only",
        ),
        (
            AclEntry("/vms", FLEET, True),
            "ACL on /vms gives zpack-api@pve role ZpackApiFleet on /vms, and so on every guest "
            "of the host, the platform's own included; grant it per VMID of zpack-api's parts "
            "(game 1020-1099, dev 1120-1199)",
        ),
        (
            AclEntry("/vms/", FLEET, False),
            "ACL on /vms gives zpack-api@pve role ZpackApiFleet on /vms without a VMID; grant "
            "it per VMID of zpack-api's parts (game 1020-1099, dev 1120-1199)",
        ),
        (
            AclEntry("/vms/150", FLEET, False),
            "ACL on /vms/150 gives zpack-api@pve role ZpackApiFleet on VMID 150, in the "
            "core-infra range 100-199: zpack-api must never touch a platform guest",
        ),
        (
            AclEntry("/vms/311", FLEET, False),
            "ACL on /vms/311 gives zpack-api@pve role ZpackApiFleet on VMID 311, in the "
            "network range 300-399: zpack-api must never touch a platform guest",
        ),
        (
            AclEntry("/vms/1002", FLEET, False),
            "ACL on /vms/1002 gives zpack-api@pve role ZpackApiFleet on VMID 1002, in the part "
            "1000-1019 of the game range that the runtime stack's config declares: declared "
            "servers are Pulumi's, not zpack-api's",
        ),
        (
            AclEntry("/vms/200", TEMPLATE, False),
            "ACL on /vms/200 gives zpack-api@pve role ZpackApiTemplate on VMID 200, in the "
            "template range but not one of the fleet's templates (210, 220); zpack-api clones "
            "only from those",
        ),
        (
            AclEntry("/vms/500", FLEET, False),
            "ACL on /vms/500 gives zpack-api@pve role ZpackApiFleet on VMID 500, in no VMID "
            "range; zpack-api allocates only VMIDs of its parts (game 1020-1099, dev "
            "1120-1199)",
        ),
        (
            AclEntry("/pool/zlh-runtime", FLEET, False),
            "ACL on /pool/zlh-runtime gives zpack-api@pve role ZpackApiFleet through a pool: "
            "Proxmox applies a pool's roles to each member guest and storage, and VM.Allocate "
            "on a pool lets a create or clone take any free VMID; zpack-api needs no pool ACL "
            "(naming pool zlh-runtime in a clone takes none)",
        ),
        (
            AclEntry("/storage", STORAGE, True),
            "ACL on /storage gives zpack-api@pve role ZpackApiStorage on /storage without a "
            "storage id, and so on every storage; grant it on the fleet's storages (local-lvm, "
            "zlh-pbs)",
        ),
        (
            AclEntry("/storage/local", STORAGE, False),
            "ACL on /storage/local gives zpack-api@pve role ZpackApiStorage on storage local, "
            "not one of the fleet's storages (local-lvm, zlh-pbs)",
        ),
        (
            AclEntry("/sdn/zones/localnetwork/vmbr0", BRIDGE, False),
            "ACL on /sdn/zones/localnetwork/vmbr0 gives zpack-api@pve role ZpackApiNetwork on "
            "bridge vmbr0, not one of the fleet's bridges (vmbr1, vmbr2)",
        ),
        (
            AclEntry("/sdn/zones/localnetwork/vmbr1/20", BRIDGE, False),
            "ACL on /sdn/zones/localnetwork/vmbr1/20 gives zpack-api@pve role ZpackApiNetwork "
            "on VLAN 20 of bridge vmbr1: the fleet's NICs are untagged, on bridges vmbr1, vmbr2",
        ),
        (
            AclEntry("/sdn/zones/localnetwork", BRIDGE, False),
            "ACL on /sdn/zones/localnetwork gives zpack-api@pve role ZpackApiNetwork beyond "
            "the fleet's bridges (vmbr1, vmbr2, each granted on its own path "
            "/sdn/zones/localnetwork/<bridge>)",
        ),
        (
            AclEntry("/nodes/zlh-runtime", FLEET, False),
            "ACL on /nodes/zlh-runtime gives zpack-api@pve role ZpackApiFleet on a path where "
            "zpack-api needs nothing (only its VMIDs, the templates, the fleet's storages and "
            "bridges); remove it",
        ),
        (
            AclEntry("/vms/210", FLEET, False),
            "ACL on /vms/210 gives zpack-api@pve role ZpackApiFleet, which holds VM.Allocate, "
            "VM.Backup, VM.Config.CPU, VM.Config.Disk, VM.Config.Memory, VM.Config.Network, "
            "VM.Config.Options, VM.PowerMgmt beyond what a template needs (VM.Audit, "
            "VM.Clone); use role ZpackApiTemplate there",
        ),
        (
            AclEntry("/vms/1020", TEMPLATE, False),
            "ACL on /vms/1020 gives zpack-api@pve role ZpackApiTemplate, which holds VM.Clone "
            "beyond what a server of zpack-api's needs (VM.Allocate, VM.Audit, VM.Backup, "
            "VM.Config.CPU, VM.Config.Disk, VM.Config.Memory, VM.Config.Network, "
            "VM.Config.Options, VM.PowerMgmt); use role ZpackApiFleet there",
        ),
        (
            AclEntry("/sdn/zones/localnetwork/vmbr2", BRIDGE, True),
            "ACL on /sdn/zones/localnetwork/vmbr2 propagates, so it also grants every VLAN of "
            "the bridge (/sdn/zones/localnetwork/vmbr2/<tag>); set propagate to false",
        ),
        (
            AclEntry("/vms/1020", "PVEVMAdmin", False),
            "ACL on /vms/1020 gives zpack-api@pve role PVEVMAdmin, whose privileges are not "
            "known here, so what it grants cannot be checked; use the identity's own roles "
            "(ZpackApiFleet, ZpackApiTemplate, ZpackApiStorage, ZpackApiNetwork)",
        ),
        (
            AclEntry("/vms/1020 ", FLEET, False),
            "ACL on '/vms/1020 ' is not on a Proxmox ACL path, so what it grants cannot be "
            "checked; remove it",
        ),
        (
            AclEntry("/", FLEET, True, "zpack-api@pve!x", "token"),
            "ACL on / gives token zpack-api@pve!x role ZpackApiFleet at the root, and so on "
            "everything of the host: its own settings, every guest, storage and user; grant it "
            "on the fleet's own paths only",
        ),
    ],
)
def test_an_acl_beyond_the_fleets_needs_fails(acl: AclEntry, message: str) -> None:
    assert messages([acl]) == [message]


def test_an_acl_on_a_core_hosts_vmid_fails() -> None:
    inputs = IdentityInputs(template_vmids=(210,), core_vmids=frozenset({230}))
    findings = check_identity(ROLES_MAP, [AclEntry("/vms/230", TEMPLATE, False)], inputs)
    assert [(f.kind, f.message) for f in findings] == [
        (
            FindingKind.CORE_VMID_ACL,
            "ACL on /vms/230 gives zpack-api@pve role ZpackApiTemplate on VMID 230, a VMID of "
            "the core host (contract coreVmids): zpack-api must never touch a platform guest",
        )
    ]


def test_findings_keep_where_the_entry_came_from() -> None:
    acl = AclEntry("/", FLEET, False, origin="urn:x")
    (finding,) = check_identity(ROLES_MAP, [acl], INPUTS)
    assert (finding.kind, finding.subject, finding.origin) == (FindingKind.ROOT_ACL, "/", "urn:x")


# --- what Proxmox holds -------------------------------------------------------------


def test_the_hosts_acls_and_roles_are_read_as_proxmox_returns_them() -> None:
    acl_list = [
        {"path": "/vms/1020", "type": "user", "ugid": "zpack-api@pve", "roleid": FLEET,
         "propagate": 0},
        {"path": "/", "type": "token", "ugid": "zpack-api@pve!ci", "roleid": "PVEAdmin",
         "propagate": 1},
        {"path": "/", "type": "group", "ugid": "admins", "roleid": "Administrator",
         "propagate": 1},
        {"path": "/", "type": "user", "ugid": "audit@pve", "roleid": "PVEAuditor",
         "propagate": 1},
    ]  # fmt: skip
    roles = roles_from_proxmox(
        [
            {"roleid": FLEET, "privs": ",".join(ROLES_MAP[FLEET]), "special": 0},
            {"roleid": "PVEAdmin", "privs": "Sys.Audit,Sys.Modify,VM.Allocate", "special": 1},
            {"roleid": "NoAccess", "privs": "", "special": 1},
        ]
    )
    assert roles[FLEET] == frozenset(ROLES_MAP[FLEET]) and roles["NoAccess"] == frozenset()
    acls = acls_from_proxmox(acl_list, origin="zlh-runtime")
    assert acls[0] == AclEntry("/vms/1020", FLEET, False)
    mine = identity_acls(acls)
    assert [acl.ugid for acl in mine] == ["zpack-api@pve", "zpack-api@pve!ci"]
    assert [a.ugid for a in identity_acls(acls, groups=["admins"])][-1] == "admins"
    assert [f.kind for f in check_identity(roles, mine, INPUTS)] == [
        FindingKind.EXTRA_PRIVILEGE,
        FindingKind.EXTRA_PRIVILEGE,
        FindingKind.ROOT_ACL,
    ]


def test_bad_proxmox_data_is_refused_naming_the_entry_and_key() -> None:
    with pytest.raises(ApiIdentityError, match=r"^ACL entry 0\.type: Input should be 'user'"):
        acls_from_proxmox([{"path": "/", "type": "pool", "ugid": "x", "roleid": "y"}])
    with pytest.raises(ApiIdentityError, match=r"^ACL entry 1\.propagate: Input should be 0 or 1$"):
        acls_from_proxmox(
            [
                {"path": "/", "type": "user", "ugid": "x", "roleid": "y", "propagate": 0},
                {"path": "/", "type": "user", "ugid": "x", "roleid": "y", "propagate": 7},
            ]
        )
    with pytest.raises(ApiIdentityError, match=r"^role 0\.roleid: Field required"):
        roles_from_proxmox([{"privs": "VM.Audit"}])


def test_a_missing_propagate_counts_as_proxmoxs_default() -> None:
    (acl,) = acls_from_proxmox([{"path": "/vms", "type": "user", "ugid": "u@pve", "roleid": "r"}])
    assert acl.propagate is True


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/vms/1020/", "/vms/1020"),
        ("//vms//1020", "/vms/1020"),
        ("vms", "/vms"),
        ("/", "/"),
        ("", None),
        ("/vms/10 20", None),
    ],
)
def test_paths_are_normalised_as_proxmox_does(path: str, normal: str | None) -> None:
    assert normalize_path(path) == normal


def test_bad_inputs_are_refused_naming_each_key() -> None:
    with pytest.raises(ApiIdentityError) as error:
        IdentityInputs(
            template_vmids=(210, 1020),
            storages=("Local LVM",),
            bridges=(),
            pool="zlh runtime",
            core_vmids=frozenset({1050}),
        )
    assert str(error.value) == (
        "template_vmids: 1020 is outside the template range 200-299; storages: 'Local LVM' "
        "is not a Proxmox storage id; bridges: must name at least one; pool: 'zlh runtime' "
        "is not a Proxmox pool id; core_vmids: 1050 lie in zpack-api's part of the fleet "
        "ranges; the core host must not use fleet VMIDs"
    )


# --- what zpack-api sets on a container ---------------------------------------------

NETWORKS = {
    Network.LAN: IPv4Network("10.20.0.0/22"),
    Network.MANAGEMENT: IPv4Network("10.99.0.0/22"),
}
ADDRESSES = {
    ("core:zpack-api", Network.MANAGEMENT): IPv4Address("10.99.0.10"),
    ("zlh-velocity", Network.LAN): IPv4Address("10.20.0.6"),
    ("zlh-zpack-proxy", Network.LAN): IPv4Address("10.20.0.5"),
}
TEMPLATES = (
    FleetTemplate(210, VmidRole.GAME, (25565,)),
    FleetTemplate(220, VmidRole.DEV, (8443, 8444)),
)


def spec() -> FleetSpec:
    return FleetSpec(
        node="zlh-runtime",
        stack="runtime",
        lan=FleetSegment("vmbr1", NETWORKS[Network.LAN], IPv4Address("10.20.0.1")),
        management=FleetSegment("vmbr2", NETWORKS[Network.MANAGEMENT]),
        fleet_offset=256,
        templates=TEMPLATES,
        addresses=ADDRESSES,
    )


def test_a_new_server_is_cloned_in_full_onto_the_fleets_storage_and_pool() -> None:
    assert spec().clone(210, 1020, "mc-alice") == {
        "newid": 1020,
        "hostname": "mc-alice",
        "pool": "zlh-runtime",
        "full": 1,
        "storage": "local-lvm",
    }


def test_a_clone_is_refused_outside_zpack_apis_vmids_or_from_another_roles_template() -> None:
    with pytest.raises(ApiIdentityError) as error:
        spec().clone(210, 1001, "mc-x")
    assert str(error.value) == (
        "vmid: 1001 is not one of zpack-api's VMIDs (game 1020-1099, dev 1120-1199)"
    )
    with pytest.raises(
        ApiIdentityError, match=r"^template: 220 is not a game template of this host \(210\)$"
    ):
        spec().clone(220, 1020, "mc-x")


def test_a_server_gets_its_nics_tags_and_options() -> None:
    assert spec().config(1120, cores=2, memory_mb=4096) == {
        "net0": "name=eth0,bridge=vmbr1,firewall=1,ip=10.20.1.120/22,gw=10.20.0.1",
        "net1": "name=eth1,bridge=vmbr2,firewall=1,ip=10.99.1.120/22",
        "cores": 2,
        "memory": 4096,
        "swap": 0,
        "tags": "layer-runtime;role-dev;stack-runtime;svc-dev;zlh",
        "protection": 1,
        "onboot": 1,
        "startup": "order=10,up=5",
    }


def test_a_servers_addresses_are_those_a_declared_server_of_its_vmid_would_have() -> None:
    config = parse_stack_config(
        RuntimeStackConfig, engine_config(shipped("runtime")), stack="runtime"
    )
    lan, management = config.network.lan, config.network.management
    made = FleetSpec(
        node=config.proxmox.node,
        stack="runtime",
        lan=FleetSegment(lan.bridge, lan.cidr, lan.gateway),
        management=FleetSegment(management.bridge, management.cidr),
        fleet_offset=config.network.fleet_offset,
        templates=TEMPLATES,
        addresses=ADDRESSES,
    )
    for vmid in (1020, 1099, 1120, 1199):
        assert made.server_addresses(vmid) == {
            network: config.fleet_addresses(network, vmid)
            for network in (Network.LAN, Network.MANAGEMENT)
        }


def test_the_firewall_is_on_and_filters_what_the_container_may_send() -> None:
    assert spec().firewall_options() == {
        "enable": 1,
        "policy_in": "DROP",
        "policy_out": "ACCEPT",
        "dhcp": 0,
        "macfilter": 1,
        "ipfilter": 1,
    }


def test_a_server_attaches_the_fleet_group_then_admits_its_workload_from_its_proxy() -> None:
    made = spec()
    assert made.firewall_rules(1020, 210) == [
        {"type": "group", "action": "zlh-fleet-mgmt", "iface": "net1", "enable": 1},
        {"type": "group", "action": "zlh-fleet-lan", "iface": "net0", "enable": 1},
        {
            "type": "in",
            "action": "ACCEPT",
            "proto": "tcp",
            "dport": "25565",
            "source": "10.20.0.6/32",
            "iface": "net0",
            "comment": "game traffic from zlh-velocity",
            "enable": 1,
        },
    ]
    dev = made.firewall_rules(1199, 220)
    assert [(r["dport"], r["source"]) for r in dev[2:]] == [
        ("8443", "10.20.0.5/32"),
        ("8444", "10.20.0.5/32"),
    ]
    with pytest.raises(ApiIdentityError, match=r"^template: 210 is not a dev template"):
        made.firewall_rules(1199, 210)


def test_new_rules_go_on_top_so_they_are_posted_last_to_first() -> None:
    create = section(
        "proxmox/pve-firewall", "src/PVE/API2/Firewall/Rules.pm", "name => 'create_rule'",
        method=True,
    )  # fmt: skip
    assert "unshift @$rules, $rule;" in create


def test_the_fleet_group_name_fits_pve_firewall() -> None:
    text = upstream_text("proxmox/pve-firewall", "src/PVE/Firewall.pm")
    pattern = re.search(r"my \$security_group_name_pattern = '([^']+)';", text)
    length = re.search(r"my \$max_group_name_length = (\d+);", text)
    assert pattern is not None and length is not None
    for name, _iface in spec().security_groups:
        assert re.fullmatch(pattern.group(1), name) and len(name) <= int(length.group(1))


def test_the_spec_exports_as_json() -> None:
    exported = json.loads(json.dumps(spec().export()))
    assert exported["vmids"] == {
        "game": {"first": 1020, "last": 1099},
        "dev": {"first": 1120, "last": 1199},
    }
    assert exported["addressing"] == {"fleetOffset": 256, "firstVmid": 1000}
    assert [nic["bridge"] for nic in exported["nics"]] == ["vmbr1", "vmbr2"]
    assert exported["nics"][0]["gateway"] == "10.20.0.1"
    assert exported["nics"][1]["gateway"] is None
    assert exported["templates"][1] == {
        "vmid": 220,
        "role": "dev",
        "ports": [8443, 8444],
        "workloadSource": "zlh-zpack-proxy",
        "workloadSourceAddress": "10.20.0.5",
    }
    assert exported["securityGroups"] == [
        {"group": "zlh-fleet-mgmt", "iface": "net1"},
        {"group": "zlh-fleet-lan", "iface": "net0"},
    ]
    assert exported["firewallOptions"]["ipfilter"] == 1
    assert exported["tags"]["game"] == [
        "layer-runtime",
        "role-game",
        "stack-runtime",
        "svc-game",
        "zlh",
    ]
    assert exported["userId"] == "zpack-api@pve"
