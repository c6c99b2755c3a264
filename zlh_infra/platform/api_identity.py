"""zpack-api's Proxmox identity on a runtime host: its roles, its ACLs, and their check.

zpack-api (a core guest) creates, configures, starts, stops, backs up and destroys the
game and dev containers customers order, through each runtime host's Proxmox API, as
the user ``zpack-api@pve``. The core stack generates the user's password (one per
runtime stack, pulumi-random) and hands it over in the contract; the runtime stack
creates the user, the roles below and the ACLs ``acl_entries`` computes. The user logs
in with that password (``POST /access/ticket``): an API token would be made on the
runtime host, and nothing flows from a runtime stack to the core.

Which ACL confines which call, read from Proxmox VE 8's sources (copies, with their
commits, in ``tests/data/reference/pve/``, where the tests check each statement):

- **VMID allocation: only the per-VMID ACLs.** pve-container ``PVE/API2/LXC.pm``
  ``clone_vm`` requires ``VM.Clone`` on ``/vms/{vmid}`` (the source) and either
  ``VM.Allocate`` on ``/vms/{newid}`` *or* ``VM.Allocate`` on ``/pool/{pool}`` when the
  request names a pool; ``create_vm`` tests ``/vms/$vmid``, then ``/pool/$pool``.
  pve-access-control ``PVE/RPCEnvironment.pm`` ``check_vm_perm`` likewise tries
  ``/pool/{pool}`` first. The pool alternative is judged on the pool's path alone, with
  no VMID in it: ``VM.Allocate`` on ``/pool/P`` lets a create or clone that names pool P
  take *any* free VMID (a core VMID, a declared server's). Pool roles reach a guest's
  own path only for the pool's members (``$compile_acl_path`` in the same file maps
  ``/pool/P``'s roles onto ``/vms/{vmid}`` for each VMID in the pool, never
  propagated), and a VMID being allocated is no member yet. So zpack-api holds
  ``VM.Allocate`` on ``/vms/{vmid}`` for each VMID of its part of the game and dev
  ranges (``vmids.fleet_split``) and no ACL on any pool.
- **Pools: not confinable.** ``create_vm`` and ``clone_vm`` check only that the named
  pool exists (``check_pool_exist``), then ``add_vm_to_pool``: joining a pool at
  creation takes no privilege, so which pool a container joins is the audit's to check.
  A pool ACL would not help either: the fleet's pool ``zlh-runtime`` also holds
  zlh-artifacts, zlh-build and the templates, which its roles would reach.
- **Destroying spends the VMID's grant.** ``destroy_vm`` requires ``VM.Allocate`` on
  ``/vms/{vmid}``, then calls pve-access-control ``PVE/AccessControl.pm``
  ``remove_vm_access``, which deletes every ACL on ``/vms/{vmid}``, this identity's
  included: the VMID comes back to zpack-api when the runtime stack grants it again
  (``pulumi up --refresh``), after its old backups were dealt with.
- **Templates.** ``VM.Clone`` on ``/vms/{template}`` (``clone_vm``); with anything
  more there, zpack-api could change or destroy a template every later clone copies.
- **Storage.** ``Datastore.AllocateSpace`` on ``/storage/{storage}`` for every volume a
  full clone writes (``clone_vm``), a resize grows (``resize_vm``) and a backup writes
  (pve-manager ``PVE/API2/VZDump.pm`` ``vzdump``).
- **Bridges.** ``SDN.Use`` on ``/sdn/zones/localnetwork/{bridge}`` for every NIC a clone
  copies or a config update sets (pve-container ``PVE/LXC.pm`` ``check_bridge_access``,
  pve-guest-common ``PVE/GuestHelpers.pm`` ``check_vnet_access``). A tagged NIC is
  checked on ``/sdn/zones/localnetwork/{bridge}/{tag}``, which an ACL on the bridge
  reaches only when it propagates: the fleet's NICs are untagged, so no ACL propagates.
- **What else VM.Allocate allows.** It lets its holder edit ACLs on that VMID's path,
  handing out no privilege it lacks there (``check_perm_modify`` in
  ``PVE/RPCEnvironment.pm``, ``update_acl`` in ``PVE/API2/ACL.pm``): never another path.
- **Propagation defaults to on** (``update_acl``): every entry here sets it off.

Proxmox ACL paths of guests, storages and bridges name no node: on a standalone host,
every path is that host's, so the entries take no node.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from zlh_infra.platform.addressing import fleet_address, with_prefix
from zlh_infra.platform.catalogue import Ingress, Network
from zlh_infra.platform.firewall import resolve_ingress
from zlh_infra.platform.fleet_firewall import FLEET_GROUPS
from zlh_infra.platform.topology import Layer, guest_tags
from zlh_infra.platform.vmids import (
    DEFAULT_SCHEME,
    FLEET_ROLES,
    VmidOwner,
    VmidRole,
    VmidScheme,
    fleet_part_of,
    fleet_split,
)

#: The identity's user, in Proxmox's own realm (``pve``): no shell account on the node.
USER_ID = "zpack-api@pve"
#: Length of the generated password (Proxmox takes 8 to 64 characters).
PASSWORD_LENGTH = 32
#: The zone Proxmox checks plain Linux bridges in (pve-guest-common ``check_vnet_access``).
SDN_ZONE = "localnetwork"
#: The fleet's pool (the runtime layer's), its default disk storage and its backup
#: storage (the runtime host's Proxmox Backup Server storage).
FLEET_POOL = "zlh-runtime"
DEFAULT_DATASTORE = "local-lvm"
BACKUP_STORAGE = "zlh-pbs"
#: Fleet containers start after the host's services (Proxmox start order).
FLEET_STARTUP_ORDER = 10

#: Every privilege of Proxmox VE 8: pve-access-control 8.2.3, ``PVE/AccessControl.pm``,
#: ``$privgroups`` and ``$valid_privs``.
PVE8_PRIVILEGES: frozenset[str] = frozenset(
    {
        *("VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Console", "VM.Migrate"),
        *("VM.Monitor", "VM.PowerMgmt", "VM.Snapshot", "VM.Snapshot.Rollback"),
        *("VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit", "VM.Config.Disk"),
        *("VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options"),
        *("Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify"),
        *("Sys.PowerMgmt", "Sys.Syslog"),
        *("Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate"),
        "Datastore.Audit",
        *("SDN.Allocate", "SDN.Audit", "SDN.Use"),
        *("Group.Allocate", "Realm.Allocate", "Realm.AllocateUser", "User.Modify"),
        *("Pool.Allocate", "Pool.Audit"),
        *("Mapping.Audit", "Mapping.Modify", "Mapping.Use"),
        "Permissions.Modify",
    }
)


class ApiIdentityError(ValueError):
    """Inputs or Proxmox data the identity cannot be computed or checked from."""


# --- what each privilege is for ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where Proxmox checks a privilege: an API method (``name => '...'``) or a sub."""

    repo: str
    path: str
    function: str
    kind: Literal["method", "sub"] = "method"

    @property
    def marker(self) -> str:
        """The text that opens the function in the file."""
        return f"name => '{self.function}'" if self.kind == "method" else f"sub {self.function} {{"


_LXC_API = ("proxmox/pve-container", "src/PVE/API2/LXC.pm")
_LXC_STATUS = ("proxmox/pve-container", "src/PVE/API2/LXC/Status.pm")
_LXC = ("proxmox/pve-container", "src/PVE/LXC.pm")
_FIREWALL_VM = ("proxmox/pve-firewall", "src/PVE/API2/Firewall/VM.pm")
_FIREWALL = ("proxmox/pve-firewall", "src/PVE/Firewall.pm")
_GUEST_HELPERS = ("proxmox/pve-guest-common", "src/PVE/GuestHelpers.pm")
_VZDUMP = ("proxmox/pve-manager", "PVE/API2/VZDump.pm")
_CONFIG_PERM = Upstream(*_LXC, "check_ct_modify_config_perm", "sub")


@dataclass(frozen=True, slots=True)
class Need:
    """One privilege, and the API calls of zpack-api it is checked for."""

    privilege: str
    reason: str
    calls: tuple[str, ...]
    sources: tuple[Upstream, ...]


class Scope(StrEnum):
    """The kinds of path the identity holds a role on."""

    FLEET = "fleet"  # /vms/{vmid}, each VMID of zpack-api's part of the fleet ranges
    TEMPLATE = "template"  # /vms/{vmid}, each template the fleet is cloned from
    STORAGE = "storage"  # /storage/{id}, the fleet's disk and backup storages
    BRIDGE = "bridge"  # /sdn/zones/localnetwork/{bridge}, the fleet's LAN and management


@dataclass(frozen=True, slots=True)
class RoleSpec:
    role_id: str
    scope: Scope
    #: What a path of this scope is, in messages.
    what: str
    needs: tuple[Need, ...]

    @property
    def privileges(self) -> tuple[str, ...]:
        return tuple(sorted(need.privilege for need in self.needs))


_CT = "/nodes/{node}/lxc/{vmid}"
FLEET_ROLE = RoleSpec(
    "ZpackApiFleet",
    Scope.FLEET,
    "a server of zpack-api's",
    (
        Need(
            "VM.Allocate",
            "take the VMID of a new server by cloning into it, and destroy the server",
            ("POST /nodes/{node}/lxc/{template}/clone (newid)", f"DELETE {_CT}"),
            (Upstream(*_LXC_API, "clone_vm"), Upstream(*_LXC_API, "destroy_vm")),
        ),
        Need(
            "VM.Audit",
            "read the server's config and state, and see it in the node's container list",
            (f"GET {_CT}/config", f"GET {_CT}/status/current", "GET /nodes/{node}/lxc"),
            (Upstream(*_LXC_STATUS, "vm_status"), Upstream(*_LXC_API, "vmlist")),
        ),
        Need(
            "VM.Backup",
            "back the server up to the host's Proxmox Backup Server storage",
            ("POST /nodes/{node}/vzdump (vmid)",),
            (Upstream(*_VZDUMP, "vzdump"),),
        ),
        Need(
            "VM.Config.CPU",
            "set the cores of the customer's plan",
            (f"PUT {_CT}/config (cores)",),
            (_CONFIG_PERM,),
        ),
        Need(
            "VM.Config.Disk",
            "grow the cloned root disk to the plan's size",
            (f"PUT {_CT}/resize (disk=rootfs)",),
            (Upstream(*_LXC_API, "resize_vm"),),
        ),
        Need(
            "VM.Config.Memory",
            "set the memory of the customer's plan, and no swap",
            (f"PUT {_CT}/config (memory, swap)",),
            (_CONFIG_PERM,),
        ),
        Need(
            "VM.Config.Network",
            "give the server its LAN and management NICs and its firewall options and rules",
            (
                f"PUT {_CT}/config (net0, net1, hostname)",
                f"PUT {_CT}/firewall/options",
                f"POST {_CT}/firewall/rules",
            ),
            (
                _CONFIG_PERM,
                Upstream(*_FIREWALL_VM, "set_options"),
                Upstream(*_FIREWALL, "rules_modify_permissions", "sub"),
            ),
        ),
        Need(
            "VM.Config.Options",
            "set the server's tags, protection and start at boot, and lift protection to destroy",
            (f"PUT {_CT}/config (tags, protection, onboot, startup, description, delete)",),
            (_CONFIG_PERM, Upstream(*_GUEST_HELPERS, "assert_tag_permissions", "sub")),
        ),
        Need(
            "VM.PowerMgmt",
            "start, shut down, stop and reboot the server",
            (
                f"POST {_CT}/status/start",
                f"POST {_CT}/status/shutdown",
                f"POST {_CT}/status/stop",
                f"POST {_CT}/status/reboot",
            ),
            (Upstream(*_LXC_STATUS, "vm_start"), Upstream(*_LXC_STATUS, "vm_shutdown")),
        ),
    ),
)
TEMPLATE_ROLE = RoleSpec(
    "ZpackApiTemplate",
    Scope.TEMPLATE,
    "a template",
    (
        Need(
            "VM.Audit",
            "find the host's templates and read the NICs and ports a clone inherits",
            ("GET /nodes/{node}/lxc", "GET /nodes/{node}/lxc/{template}/config"),
            (Upstream(*_LXC_API, "vmlist"),),
        ),
        Need(
            "VM.Clone",
            "clone a new server from the template",
            ("POST /nodes/{node}/lxc/{template}/clone",),
            (Upstream(*_LXC_API, "clone_vm"),),
        ),
    ),
)
STORAGE_ROLE = RoleSpec(
    "ZpackApiStorage",
    Scope.STORAGE,
    "a fleet storage",
    (
        Need(
            "Datastore.AllocateSpace",
            "write a clone's disk and grow it on the fleet's storage, and write backups",
            (
                "POST /nodes/{node}/lxc/{template}/clone (storage)",
                f"PUT {_CT}/resize",
                "POST /nodes/{node}/vzdump (storage)",
            ),
            (
                Upstream(*_LXC_API, "clone_vm"),
                Upstream(*_LXC_API, "resize_vm"),
                Upstream(*_VZDUMP, "vzdump"),
            ),
        ),
    ),
)
BRIDGE_ROLE = RoleSpec(
    "ZpackApiNetwork",
    Scope.BRIDGE,
    "a fleet bridge",
    (
        Need(
            "SDN.Use",
            "attach the server's NICs to the LAN and management bridges",
            ("POST /nodes/{node}/lxc/{template}/clone", f"PUT {_CT}/config (net0, net1)"),
            (Upstream(*_GUEST_HELPERS, "check_vnet_access", "sub"),),
        ),
    ),
)
#: The identity's roles, one per kind of path.
ROLES: tuple[RoleSpec, ...] = (FLEET_ROLE, TEMPLATE_ROLE, STORAGE_ROLE, BRIDGE_ROLE)
ROLE_OF_SCOPE: dict[Scope, RoleSpec] = {role.scope: role for role in ROLES}
#: Every privilege any of the identity's calls needs.
NEEDED_PRIVILEGES: frozenset[str] = frozenset(p for role in ROLES for p in role.privileges)


def role_privileges() -> dict[str, tuple[str, ...]]:
    """``{role id: privileges}``: what the runtime stack creates as roles."""
    return {role.role_id: role.privileges for role in ROLES}


# --- the ACLs ------------------------------------------------------------------------

AclKind = Literal["user", "group", "token"]


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One ACL entry as Proxmox keeps it: on ``path``, ``ugid`` holds ``role_id``."""

    path: str
    role_id: str
    propagate: bool
    ugid: str = USER_ID
    kind: AclKind = "user"
    #: Where the entry was read from (a resource URN, a host), for reports only.
    origin: str = field(default="", compare=False)


_STORAGE_ID = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$")  # pve-storage-id
_BRIDGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,14}$")  # a Linux interface name
_POOL_ID = re.compile(r"^[A-Za-z0-9.\-_]+$")  # pve-poolid


@dataclass(frozen=True, slots=True)
class IdentityInputs:
    """What the fleet is: the facts the ACLs are computed from and checked against."""

    #: The templates zpack-api clones from (VMIDs of the template range).
    template_vmids: tuple[int, ...]
    #: The fleet's disk storage and the host's backup storage.
    storages: tuple[str, ...] = (DEFAULT_DATASTORE, BACKUP_STORAGE)
    #: The LAN and management bridges.
    bridges: tuple[str, ...] = ("vmbr1", "vmbr2")
    #: The pool the fleet joins (named in findings; it carries no ACL).
    pool: str = FLEET_POOL
    scheme: VmidScheme = DEFAULT_SCHEME
    #: VMIDs the core host uses (contract ``coreVmids``).
    core_vmids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        problems = []
        template_range = self.scheme.range_of(VmidRole.BASE_TEMPLATE)
        for vmid in self.template_vmids:
            if vmid not in template_range:
                problems.append(
                    f"template_vmids: {vmid} is outside the template range "
                    f"{template_range.describe()}"
                )
        for key, values, pattern in (
            ("storages", self.storages, _STORAGE_ID),
            ("bridges", self.bridges, _BRIDGE),
        ):
            if not values:
                problems.append(f"{key}: must name at least one")
            problems += [
                f"{key}: {value!r} is not a Proxmox {key[:-1]} id"
                for value in values
                if not pattern.match(value)
            ]
        if not _POOL_ID.match(self.pool):
            problems.append(f"pool: {self.pool!r} is not a Proxmox pool id")
        clash = sorted(self.core_vmids & set(self.api_vmids))
        if clash:
            problems.append(
                f"core_vmids: {', '.join(map(str, clash))} lie in zpack-api's part of the "
                "fleet ranges; the core host must not use fleet VMIDs"
            )
        if problems:
            raise ApiIdentityError("; ".join(problems))

    @property
    def api_vmids(self) -> tuple[int, ...]:
        return tuple(
            vmid for role in FLEET_ROLES for vmid in fleet_split(role, self.scheme).api.vmids()
        )

    def describe_api_parts(self) -> str:
        return ", ".join(
            f"{role} {fleet_split(role, self.scheme).api.describe()}" for role in FLEET_ROLES
        )


def bridge_path(bridge: str) -> str:
    return f"/sdn/zones/{SDN_ZONE}/{bridge}"


def acl_entries(inputs: IdentityInputs, user_id: str = USER_ID) -> tuple[AclEntry, ...]:
    """Every ACL entry of the identity, none propagating: templates, fleet VMIDs,
    storages, bridges."""

    def entries(paths: Iterable[str], role: RoleSpec) -> list[AclEntry]:
        return [AclEntry(path, role.role_id, False, user_id) for path in paths]

    return tuple(
        entries((f"/vms/{vmid}" for vmid in sorted(set(inputs.template_vmids))), TEMPLATE_ROLE)
        + entries((f"/vms/{vmid}" for vmid in inputs.api_vmids), FLEET_ROLE)
        + entries((f"/storage/{storage}" for storage in inputs.storages), STORAGE_ROLE)
        + entries((bridge_path(bridge) for bridge in inputs.bridges), BRIDGE_ROLE)
    )


def missing_acls(acls: Collection[AclEntry], inputs: IdentityInputs) -> list[AclEntry]:
    """The identity's entries not among ``acls``: on a fleet VMID, one Proxmox deleted
    when it destroyed the VMID's server (or one not deployed yet)."""
    present = {(acl.path, acl.role_id) for acl in acls}
    return [acl for acl in acl_entries(inputs) if (acl.path, acl.role_id) not in present]


# --- reading what Proxmox holds -----------------------------------------------------


class _ProxmoxAcl(BaseModel):
    """An entry of ``GET /access/acl``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    path: str
    type: Literal["user", "group", "token"]
    ugid: str
    roleid: str
    propagate: Literal[0, 1] = 1


class _ProxmoxRole(BaseModel):
    """An entry of ``GET /access/roles``: privileges joined by commas."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    roleid: str
    privs: str = ""


def _problems(what: str, error: ValidationError) -> str:
    return "; ".join(
        f"{what} {'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
        for issue in error.errors(include_url=False)
    )


def acls_from_proxmox(data: object, *, origin: str = "") -> list[AclEntry]:
    """The entries of ``GET /access/acl``; bad data is refused naming the entry and key."""
    try:
        parsed = TypeAdapter(list[_ProxmoxAcl]).validate_python(data)
    except ValidationError as error:
        raise ApiIdentityError(_problems("ACL entry", error)) from None
    return [
        AclEntry(acl.path, acl.roleid, bool(acl.propagate), acl.ugid, acl.type, origin)
        for acl in parsed
    ]


def roles_from_proxmox(data: object) -> dict[str, frozenset[str]]:
    """``{role id: privileges}`` from ``GET /access/roles``."""
    try:
        parsed = TypeAdapter(list[_ProxmoxRole]).validate_python(data)
    except ValidationError as error:
        raise ApiIdentityError(_problems("role", error)) from None
    return {
        role.roleid: frozenset(p.strip() for p in role.privs.split(",") if p.strip())
        for role in parsed
    }


def identity_acls(
    acls: Iterable[AclEntry], user_id: str = USER_ID, groups: Collection[str] = ()
) -> list[AclEntry]:
    """The entries that reach the identity: its own, its tokens', its groups'."""
    return [
        acl
        for acl in acls
        if (acl.kind == "user" and acl.ugid == user_id)
        or (acl.kind == "token" and acl.ugid.startswith(f"{user_id}!"))
        or (acl.kind == "group" and acl.ugid in groups)
    ]


# --- the check ----------------------------------------------------------------------


class FindingKind(StrEnum):
    UNKNOWN_PRIVILEGE = "unknown-privilege"
    EXTRA_PRIVILEGE = "extra-privilege"
    UNKNOWN_ROLE = "unknown-role"
    ROOT_ACL = "root-acl"
    VMS_ACL = "vms-acl"
    CORE_VMID_ACL = "core-vmid-acl"
    DECLARED_VMID_ACL = "declared-vmid-acl"
    OTHER_VMID_ACL = "other-vmid-acl"
    POOL_ACL = "pool-acl"
    STORAGE_ACL = "storage-acl"
    BRIDGE_ACL = "bridge-acl"
    OTHER_ACL = "other-acl"
    ROLE_EXCEEDS_PATH = "role-exceeds-path"
    PROPAGATE_WIDENS = "propagate-widens"


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the identity can do beyond the fleet's needs."""

    kind: FindingKind
    #: The role id or ACL path it concerns.
    subject: str
    message: str
    origin: str = ""


_VMID_PATH = re.compile(r"^/vms/([1-9][0-9]{2,})$")
_PLATFORM_ROLES = frozenset({VmidRole.CORE_INFRA, VmidRole.NETWORK, VmidRole.MONITORING})


def normalize_path(path: str) -> str | None:
    """An ACL path as Proxmox stores it (pve-access-control ``normalize_path``), or None."""
    if not path:
        return None
    path = re.sub(r"/+", "/", path).rstrip("/") or "/"
    if not path.startswith("/"):
        path = "/" + path
    return path if re.fullmatch(r"[A-Za-z0-9.\-_/]+", path) else None


def check_roles(
    roles: Mapping[str, Collection[str]], role_ids: Iterable[str], *, origins: Mapping[str, str]
) -> list[Finding]:
    """Each privilege of the given roles is a Proxmox VE 8 privilege the identity needs."""
    findings = []
    for role_id in sorted(set(role_ids)):
        for privilege in sorted(roles.get(role_id, ())):
            origin = origins.get(role_id, "")
            if privilege not in PVE8_PRIVILEGES:
                findings.append(
                    Finding(
                        FindingKind.UNKNOWN_PRIVILEGE,
                        role_id,
                        f"role {role_id} holds {privilege!r}, which is not a Proxmox VE 8 "
                        "privilege; remove it",
                        origin,
                    )
                )
            elif privilege not in NEEDED_PRIVILEGES:
                findings.append(
                    Finding(
                        FindingKind.EXTRA_PRIVILEGE,
                        role_id,
                        f"role {role_id} holds {privilege}, which none of zpack-api's calls "
                        "needs; remove it",
                        origin,
                    )
                )
    return findings


def _who(acl: AclEntry) -> str:
    return acl.ugid if acl.kind == "user" else f"{acl.kind} {acl.ugid}"


#: Where an entry's path belongs: a scope of the identity's, or a finding's kind and text.
_Verdict = Scope | tuple[FindingKind, str]


def _verdict(acl: AclEntry, path: str, inputs: IdentityInputs) -> _Verdict:
    parts = inputs.describe_api_parts()
    if path == "/":
        if acl.propagate:
            return FindingKind.ROOT_ACL, (
                "at the root, and so on everything of the host: its own settings, every "
                "guest, storage and user; grant it on the fleet's own paths only"
            )
        return FindingKind.ROOT_ACL, (
            "at the root: the host's own settings (tags, the datacenter firewall, jobs); "
            "grant it on the fleet's own paths only"
        )
    if path == "/vms":
        if acl.propagate:
            return FindingKind.VMS_ACL, (
                "on /vms, and so on every guest of the host, the platform's own included; "
                f"grant it per VMID of zpack-api's parts ({parts})"
            )
        return FindingKind.VMS_ACL, (
            f"on /vms without a VMID; grant it per VMID of zpack-api's parts ({parts})"
        )
    match = _VMID_PATH.match(path)
    if match:
        return _vmid_verdict(int(match.group(1)), inputs)
    if path == "/pool" or path.startswith("/pool/"):
        return FindingKind.POOL_ACL, (
            "through a pool: Proxmox applies a pool's roles to each member guest and "
            "storage, and VM.Allocate on a pool lets a create or clone take any free VMID; "
            f"zpack-api needs no pool ACL (naming pool {inputs.pool} in a clone takes none)"
        )
    storages = ", ".join(inputs.storages)
    if path == "/storage":
        return FindingKind.STORAGE_ACL, (
            f"on /storage without a storage id{', and so on every storage' * acl.propagate}; "
            f"grant it on the fleet's storages ({storages})"
        )
    if path.startswith("/storage/"):
        storage = path.removeprefix("/storage/")
        if storage in inputs.storages:
            return Scope.STORAGE
        return FindingKind.STORAGE_ACL, (
            f"on storage {storage}, not one of the fleet's storages ({storages})"
        )
    if path == "/sdn" or path.startswith("/sdn/"):
        return _bridge_verdict(path, inputs)
    return FindingKind.OTHER_ACL, (
        "on a path where zpack-api needs nothing (only its VMIDs, the templates, the fleet's "
        "storages and bridges); remove it"
    )


def _vmid_verdict(vmid: int, inputs: IdentityInputs) -> _Verdict:
    scheme = inputs.scheme
    role = scheme.role_of(vmid)
    part = fleet_part_of(vmid, scheme)
    if vmid in inputs.core_vmids:
        return FindingKind.CORE_VMID_ACL, (
            f"on VMID {vmid}, a VMID of the core host (contract coreVmids): zpack-api must "
            "never touch a platform guest"
        )
    if role is not None and role in _PLATFORM_ROLES:
        return FindingKind.CORE_VMID_ACL, (
            f"on VMID {vmid}, in the {role} range {scheme.range_of(role).describe()}: "
            "zpack-api must never touch a platform guest"
        )
    if part is not None:
        if part.owner is VmidOwner.API:
            return Scope.FLEET
        return FindingKind.DECLARED_VMID_ACL, (
            f"on VMID {vmid}, in the part {part.describe()} of the {part.role} range that the "
            "runtime stack's config declares: declared servers are Pulumi's, not zpack-api's"
        )
    if vmid in inputs.template_vmids:
        return Scope.TEMPLATE
    if role is VmidRole.BASE_TEMPLATE:
        known = ", ".join(map(str, sorted(inputs.template_vmids))) or "none"
        return FindingKind.OTHER_VMID_ACL, (
            f"on VMID {vmid}, in the template range but not one of the fleet's templates "
            f"({known}); zpack-api clones only from those"
        )
    return FindingKind.OTHER_VMID_ACL, (
        f"on VMID {vmid}, in no VMID range; zpack-api allocates only VMIDs of its parts "
        f"({inputs.describe_api_parts()})"
    )


def _bridge_verdict(path: str, inputs: IdentityInputs) -> _Verdict:
    bridges = ", ".join(inputs.bridges)
    parts = path.split("/")[1:]  # sdn, zones, <zone>, <bridge>[, <tag>]
    in_zone = len(parts) >= 4 and parts[1] == "zones" and parts[2] == SDN_ZONE
    if in_zone and len(parts) == 4:
        if parts[3] in inputs.bridges:
            return Scope.BRIDGE
        return FindingKind.BRIDGE_ACL, (
            f"on bridge {parts[3]}, not one of the fleet's bridges ({bridges})"
        )
    if in_zone and len(parts) == 5:
        return FindingKind.BRIDGE_ACL, (
            f"on VLAN {parts[4]} of bridge {parts[3]}: the fleet's NICs are untagged, on "
            f"bridges {bridges}"
        )
    return FindingKind.BRIDGE_ACL, (
        f"beyond the fleet's bridges ({bridges}, each granted on its own path "
        f"{bridge_path('<bridge>')})"
    )


def check_acls(
    roles: Mapping[str, Collection[str]], acls: Sequence[AclEntry], inputs: IdentityInputs
) -> list[Finding]:
    """Each entry sits on a path of the fleet's and its role holds no more than that path
    needs; an entry whose role is unknown cannot be judged and is reported."""
    findings = []
    for acl in acls:
        path = normalize_path(acl.path)
        if path is None:
            findings.append(
                Finding(
                    FindingKind.OTHER_ACL,
                    acl.path,
                    f"ACL on {acl.path!r} is not on a Proxmox ACL path, so what it grants "
                    "cannot be checked; remove it",
                    acl.origin,
                )
            )
            continue
        if acl.role_id not in roles:
            own = ", ".join(role.role_id for role in ROLES)
            findings.append(
                Finding(
                    FindingKind.UNKNOWN_ROLE,
                    path,
                    f"ACL on {path} gives {_who(acl)} role {acl.role_id}, whose privileges "
                    f"are not known here, so what it grants cannot be checked; use the "
                    f"identity's own roles ({own})",
                    acl.origin,
                )
            )
            continue
        privileges = frozenset(roles[acl.role_id])
        if not privileges:
            continue  # NoAccess and empty roles grant nothing
        scope = _verdict(acl, path, inputs)
        if isinstance(scope, tuple):
            kind, text = scope
            message = f"ACL on {path} gives {_who(acl)} role {acl.role_id} {text}"
            findings.append(Finding(kind, path, message, acl.origin))
            continue
        expected = ROLE_OF_SCOPE[scope]
        beyond = sorted((privileges & NEEDED_PRIVILEGES) - set(expected.privileges))
        if beyond:
            findings.append(
                Finding(
                    FindingKind.ROLE_EXCEEDS_PATH,
                    path,
                    f"ACL on {path} gives {_who(acl)} role {acl.role_id}, which holds "
                    f"{', '.join(beyond)} beyond what {expected.what} needs "
                    f"({', '.join(expected.privileges)}); use role {expected.role_id} there",
                    acl.origin,
                )
            )
        if acl.propagate and scope is Scope.BRIDGE:
            findings.append(
                Finding(
                    FindingKind.PROPAGATE_WIDENS,
                    path,
                    f"ACL on {path} propagates, so it also grants every VLAN of the bridge "
                    f"({path}/<tag>); set propagate to false",
                    acl.origin,
                )
            )
    return findings


def check_identity(
    roles: Mapping[str, Collection[str]],
    acls: Sequence[AclEntry],
    inputs: IdentityInputs,
    *,
    role_origins: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Everything the identity's ACLs (and the roles they name) allow beyond the fleet's
    needs; empty when it can do exactly what ``acl_entries`` grants, or less.

    ``roles`` and ``acls`` as Proxmox represents them (``roles_from_proxmox``,
    ``acls_from_proxmox``, filtered by ``identity_acls``) or as a stack declares them.
    """
    named = [acl.role_id for acl in acls if acl.role_id in roles]
    return check_roles(roles, named, origins=role_origins or {}) + check_acls(roles, acls, inputs)


# --- what zpack-api sets on a container it makes ------------------------------------

#: Who may reach a server's workload ports on its LAN NIC, per role (as for a declared one).
WORKLOAD_SOURCES: dict[VmidRole, str] = {
    VmidRole.GAME: "zlh-velocity",
    VmidRole.DEV: "zlh-zpack-proxy",
}
#: A fleet container's NICs, in order: ``net0``/``eth0`` the LAN, ``net1``/``eth1`` management.
FLEET_NICS: tuple[Network, ...] = (Network.LAN, Network.MANAGEMENT)


@dataclass(frozen=True, slots=True)
class FleetTemplate:
    """A template the fleet is cloned from: its VMID, the role of its clones, their ports."""

    vmid: int
    role: VmidRole
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FleetSegment:
    bridge: str
    cidr: IPv4Network
    #: The LAN's router; None on the management network (not routed).
    gateway: IPv4Address | None = None


#: The runtime stack's output holding ``FleetSpec.export()``: all zpack-api reads of a host.
FLEET_SPEC_OUTPUT = "fleetSpec"


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """What zpack-api gives a container it makes on one runtime host: what it clones
    from, where the clone goes, its NICs, firewall, tags and options."""

    node: str
    stack: str
    lan: FleetSegment
    management: FleetSegment
    fleet_offset: int
    templates: tuple[FleetTemplate, ...]
    #: ``(service, network) -> address`` as the layers hold them; the workload sources
    #: (``("zlh-velocity", Network.LAN)``, ``("zlh-zpack-proxy", Network.LAN)``) at least.
    addresses: Mapping[tuple[str, Network], IPv4Address]
    pool: str = FLEET_POOL
    storage: str = DEFAULT_DATASTORE
    backup_storage: str = BACKUP_STORAGE
    #: The host's fleet security groups, each with the NIC the container attaches it on.
    security_groups: tuple[tuple[str, str], ...] = FLEET_GROUPS
    scheme: VmidScheme = DEFAULT_SCHEME

    def role_of(self, vmid: int) -> VmidRole:
        """The role of a VMID zpack-api may allocate; refused for any other VMID."""
        part = fleet_part_of(vmid, self.scheme)
        if part is None or part.owner is not VmidOwner.API:
            parts = ", ".join(
                f"{role} {fleet_split(role, self.scheme).api.describe()}" for role in FLEET_ROLES
            )
            raise ApiIdentityError(f"vmid: {vmid} is not one of zpack-api's VMIDs ({parts})")
        return part.role

    def template(self, vmid: int, template: int) -> FleetTemplate:
        """The template a server of ``vmid`` is cloned from; refused for another role's."""
        role = self.role_of(vmid)
        sources = [t for t in self.templates if t.role is role]
        for candidate in sources:
            if candidate.vmid == template:
                return candidate
        raise ApiIdentityError(
            f"template: {template} is not a {role} template of this host "
            f"({', '.join(str(t.vmid) for t in sources) or 'none'})"
        )

    def tags(self, role: VmidRole) -> list[str]:
        """The same tags as a declared server of the role."""
        return guest_tags(layer=Layer.RUNTIME, role=role, stack=self.stack, service=role)

    def _segments(self) -> tuple[tuple[Network, FleetSegment], ...]:
        return ((Network.LAN, self.lan), (Network.MANAGEMENT, self.management))

    def server_addresses(self, vmid: int) -> dict[Network, IPv4Address]:
        """A server's addresses follow from its VMID, as a declared server's do."""
        first = self.scheme.range_of(VmidRole.GAME).first
        return {
            network: fleet_address(segment.cidr, self.fleet_offset, first, vmid)
            for network, segment in self._segments()
        }

    def nics(self, vmid: int) -> dict[str, str]:
        """``net0``/``net1`` as Proxmox takes them in ``PUT .../config``."""
        self.role_of(vmid)
        addresses = self.server_addresses(vmid)
        found = {}
        for index, (network, segment) in enumerate(self._segments()):
            value = (
                f"name=eth{index},bridge={segment.bridge},firewall=1,"
                f"ip={with_prefix(addresses[network], segment.cidr)}"
            )
            if segment.gateway is not None:
                value += f",gw={segment.gateway}"
            found[f"net{index}"] = value
        return found

    def config(self, vmid: int, *, cores: int, memory_mb: int) -> dict[str, str | int]:
        """The ``PUT /nodes/{node}/lxc/{vmid}/config`` a new server gets after its clone."""
        role = self.role_of(vmid)
        return {
            **self.nics(vmid),
            "cores": cores,
            "memory": memory_mb,
            "swap": 0,
            "tags": ";".join(self.tags(role)),
            "protection": 1,
            "onboot": 1,
            "startup": f"order={FLEET_STARTUP_ORDER},up=5",
        }

    def clone(self, template: int, vmid: int, hostname: str) -> dict[str, str | int]:
        """The ``POST /nodes/{node}/lxc/{template}/clone``: a full copy onto the fleet's
        storage, into the fleet's pool, from a template of the VMID's role."""
        self.template(vmid, template)
        return {
            "newid": vmid,
            "hostname": hostname,
            "pool": self.pool,
            "full": 1,
            "storage": self.storage,
        }

    @staticmethod
    def firewall_options() -> dict[str, str | int]:
        """``PUT .../firewall/options``: as the program sets a declared server's."""
        return {
            "enable": 1,
            "policy_in": "DROP",
            "policy_out": "ACCEPT",
            "dhcp": 0,
            "macfilter": 1,
            # Only the addresses in the container's config may send: no tenant takes
            # zpack-api's or zlh-monitor's address.
            "ipfilter": 1,
        }

    def firewall_rules(self, vmid: int, template: int) -> list[dict[str, str | int]]:
        """The server's rules, first match first: the fleet's security group (the agent
        path, the monitor's scrape, the tenant's egress), then its workload's ports on
        the LAN NIC from Velocity (games) or zlh-zpack-proxy (dev IDEs).

        ``POST .../firewall/rules`` puts each new rule at the top (pve-firewall
        ``create_rule``): post them last to first.
        """
        role = self.role_of(vmid)
        ports = self.template(vmid, template).ports
        source = WORKLOAD_SOURCES[role]
        workload = resolve_ingress(
            [Ingress(port, source, Network.LAN, comment=f"{role} traffic from {source}")
             for port in ports],
            nics=FLEET_NICS,
            networks={network: segment.cidr for network, segment in self._segments()},
            addresses=self.addresses,
        )  # fmt: skip
        rules: list[dict[str, str | int]] = [
            {"type": "group", "action": group, "iface": iface, "enable": 1}
            for group, iface in self.security_groups
        ]
        for rule in workload:
            rules.append(
                {
                    "type": rule.direction,
                    "action": rule.action,
                    "proto": str(rule.proto),
                    "dport": str(rule.dport),
                    "source": str(rule.source),
                    "iface": rule.iface,
                    "comment": rule.comment,
                    "enable": 1,
                }
            )
        return rules

    def export(self) -> dict[str, Any]:
        """The whole spec as JSON-ready data, for a stack output zpack-api reads."""
        return {
            "node": self.node,
            "userId": USER_ID,
            "pool": self.pool,
            "storage": self.storage,
            "backupStorage": self.backup_storage,
            "vmids": {
                str(role): {
                    "first": fleet_split(role, self.scheme).api.first,
                    "last": fleet_split(role, self.scheme).api.last,
                }
                for role in FLEET_ROLES
            },
            "templates": [
                {
                    "vmid": t.vmid,
                    "role": str(t.role),
                    "ports": list(t.ports),
                    "workloadSource": WORKLOAD_SOURCES[t.role],
                    "workloadSourceAddress": str(
                        self.addresses[(WORKLOAD_SOURCES[t.role], Network.LAN)]
                    ),
                }
                for t in self.templates
            ],
            # A NIC's address: host number fleetOffset + VMID - firstVmid of its network.
            "addressing": {
                "fleetOffset": self.fleet_offset,
                "firstVmid": self.scheme.range_of(VmidRole.GAME).first,
            },
            "nics": [
                {
                    "key": f"net{index}",
                    "name": f"eth{index}",
                    "network": str(network),
                    "bridge": segment.bridge,
                    "cidr": str(segment.cidr),
                    "gateway": None if segment.gateway is None else str(segment.gateway),
                    "firewall": 1,
                }
                for index, (network, segment) in enumerate(self._segments())
            ],
            "firewallOptions": self.firewall_options(),
            "securityGroups": [
                {"group": group, "iface": iface} for group, iface in self.security_groups
            ],
            "tags": {str(role): self.tags(role) for role in FLEET_ROLES},
            "options": {
                "protection": 1,
                "onboot": 1,
                "startup": f"order={FLEET_STARTUP_ORDER},up=5",
                "swap": 0,
            },
        }
