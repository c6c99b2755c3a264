"""zlh-api-identity: zpack-api's Proxmox identity on a runtime host does what the fleet
needs, and no more.

The identity's user, roles and ACLs are resources of the runtime stack
(``zlh_infra.platform.api_identity`` computes them). This check reads them as the stack
declares them and hands them to the same validator the live audit runs on what the
host holds: a privilege outside the identity's list, an ACL on ``/``, on ``/vms``
without a VMID, on a core or declared VMID, through a pool, on another storage or
bridge, or propagating where that widens it, fails the stack. The fleet's templates
are the stack's guests in the template range; its storages and bridges come from the
policy config. The core stack holds no such identity at all: zpack-api makes guests
on runtime hosts only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Self

from pydantic import Field, model_validator

from zlh_infra.platform.api_identity import (
    BACKUP_STORAGE,
    DEFAULT_DATASTORE,
    FLEET_POOL,
    USER_ID,
    AclEntry,
    AclKind,
    ApiIdentityError,
    FindingKind,
    IdentityInputs,
    check_identity,
)
from zlh_infra.platform.topology import StackRole
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole
from zlh_infra.policies.config import (
    DEFAULT_MANAGEMENT_BRIDGE,
    ConfigRuleError,
    ConfigSpec,
    PolicyModel,
    Text,
)
from zlh_infra.policies.placement import describe, role_of_stack
from zlh_infra.policies.resources import Findings, Resource, Violation, is_guest, vmid_of

ROLE = "proxmoxve:index/roleLegacy:RoleLegacy"
ACL_LEGACY = "proxmoxve:index/aclLegacy:AclLegacy"
ACL = "proxmoxve:index/acl:Acl"
USER = "proxmoxve:index/userLegacy:UserLegacy"
TOKEN = "proxmoxve:user/tokenLegacy:TokenLegacy"
TOKEN_FRAMEWORK = "proxmoxve:user/token:Token"
ACL_TYPES = frozenset({ACL_LEGACY, ACL})
TOKEN_TYPES = frozenset({TOKEN, TOKEN_FRAMEWORK})
DEFAULT_LAN_BRIDGE = "vmbr1"


class ApiIdentityConfig(PolicyModel):
    user_id: Text = Field(
        default=USER_ID, description="zpack-api's Proxmox user on each runtime host"
    )
    # minItems for the engine; IdentityInputs says why an empty list is refused.
    storages: tuple[Text, ...] = Field(
        default=(DEFAULT_DATASTORE, BACKUP_STORAGE),
        json_schema_extra={"minItems": 1},
        description="the storages zpack-api may use on a runtime host: the fleet's disks and "
        "the backup storage",
    )
    bridges: tuple[Text, ...] = Field(
        default=(DEFAULT_LAN_BRIDGE, DEFAULT_MANAGEMENT_BRIDGE),
        json_schema_extra={"minItems": 1},
        description="the bridges zpack-api may attach fleet NICs to: the LAN and the "
        "management network",
    )
    pool: Text = Field(
        default=FLEET_POOL,
        description="the pool zpack-api's containers join (it needs no ACL on it)",
    )

    @model_validator(mode="after")
    def _usable(self) -> Self:
        problems = []
        if "@" not in self.user_id:
            problems.append(f"userId must be a Proxmox user id (name@realm), not {self.user_id!r}")
        try:
            _inputs(self, ())
        except ApiIdentityError as error:
            problems.append(str(error))
        if problems:
            raise ConfigRuleError(*problems)
        return self


API_IDENTITY = ConfigSpec(ApiIdentityConfig)


def _inputs(config: ApiIdentityConfig, templates: Sequence[int]) -> IdentityInputs:
    return IdentityInputs(
        template_vmids=tuple(templates),
        storages=config.storages,
        bridges=config.bridges,
        pool=config.pool,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _propagate(value: object) -> bool | None:
    """Proxmox propagates an entry that does not say otherwise; None when unreadable."""
    if value is None:
        return True
    return value if isinstance(value, bool) else None


def _acl_of(resource: Resource, user_id: str) -> tuple[AclEntry | None, Violation | None]:
    """The identity's entry a resource declares (None when it is another principal's),
    or why it cannot be read."""
    props = resource.props
    who: tuple[AclKind, str] | None = None
    if _text(props.get("userId")) == user_id:
        who = ("user", user_id)
    token = _text(props.get("tokenId"))
    if token is not None and token.startswith(f"{user_id}!"):
        who = ("token", token)
    if who is None:
        return None, None
    path, role, propagate = (
        _text(props.get("path")),
        _text(props.get("roleId")),
        _propagate(props.get("propagate")),
    )
    if path is None or role is None or propagate is None:
        problem = (
            f"{describe(resource)} grants {user_id} something, but its path, roleId or "
            "propagate cannot be read, so what it grants cannot be checked"
        )
        return None, Violation(problem, "give each a plain value", resource.urn)
    return AclEntry(path, role, propagate, who[1], who[0], resource.urn), None


def _user_problems(resource: Resource, user_id: str, acls: list[AclEntry]) -> list[Violation]:
    """The user's groups, and its inline ACL blocks as entries."""
    what, urn = describe(resource), resource.urn
    problems = []
    groups = resource.props.get("groups")
    if groups:
        names = (
            ", ".join(str(g) for g in groups)
            if isinstance(groups, Sequence) and not isinstance(groups, str)
            else repr(groups)
        )
        problem = (
            f"{user_id} is a member of group(s) {names}; a group's ACLs would reach it unchecked"
        )
        problems.append(Violation(problem, "give it no groups", urn, what, ": "))
    inline = resource.props.get("acls")
    if inline is None:
        return problems
    if not isinstance(inline, Sequence) or isinstance(inline, str):
        problem = f"its acls cannot be read ({type(inline).__name__})"
        fix = "give acls as a list of blocks with a path, roleId and propagate each"
        return [*problems, Violation(problem, fix, urn, what)]
    for index, block in enumerate(inline):
        entry = block if isinstance(block, Mapping) else {}
        path, role = _text(entry.get("path")), _text(entry.get("roleId"))
        propagate = _propagate(entry.get("propagate"))
        if path is None or role is None or propagate is None:
            problem = f"acls[{index}] cannot be read, so what it grants cannot be checked"
            fix = "give its path, roleId and propagate plain values"
            problems.append(Violation(problem, fix, urn, what))
            continue
        acls.append(AclEntry(path, role, propagate, user_id, "user", resource.urn))
    return problems


def check_api_identity(
    resources: Sequence[Resource], config: ApiIdentityConfig, stack: str
) -> Findings:
    """zpack-api's user, roles and ACLs in a runtime stack grant no more than the fleet needs."""
    findings = Findings()
    user_id = config.user_id
    stack_role = role_of_stack(stack)
    acls: list[AclEntry] = []
    roles: dict[str, tuple[str, ...]] = {}
    role_urns: dict[str, str] = {}
    templates: list[int] = []
    template_range = DEFAULT_SCHEME.range_of(VmidRole.BASE_TEMPLATE)
    identity: list[Resource] = []
    for resource in resources:
        with findings.reading():
            if is_guest(resource):
                vmid = vmid_of(resource)
                if vmid is not None and vmid in template_range:
                    templates.append(vmid)
            elif resource.type == ROLE:
                _read_role(resource, roles, role_urns)
            elif resource.type in ACL_TYPES:
                acl, problem = _acl_of(resource, user_id)
                if problem is not None:
                    findings.violations.append(problem)
                if acl is not None or problem is not None:
                    identity.append(resource)
                if acl is not None:
                    acls.append(acl)
            elif resource.type == USER and _text(resource.props.get("userId")) == user_id:
                identity.append(resource)
                findings.violations += _user_problems(resource, user_id, acls)
            elif resource.type in TOKEN_TYPES and _text(resource.props.get("userId")) == user_id:
                identity.append(resource)
                findings.add(
                    f"an API token of {user_id}; zpack-api logs in with the password the core "
                    "stack hands over, and a token, made on the runtime host, would be a second "
                    "credential",
                    "remove it",
                    resource.urn,
                    subject=describe(resource),
                    joint=": ",
                )
    if stack_role is not StackRole.RUNTIME:
        for resource in identity:
            findings.add(
                f"{describe(resource)} is part of zpack-api's Proxmox identity ({user_id}), "
                "but this is not a runtime stack; zpack-api makes guests on runtime hosts only",
                "declare its user, roles and ACLs in each runtime stack",
                resource.urn,
                joint=": ",
            )
        return findings
    inputs = _inputs(config, sorted(set(templates)))
    for finding in check_identity(roles, acls, inputs, role_origins=role_urns):
        fix = _ROLE_FIX if finding.kind in _ROLE_KINDS else _ACL_FIX
        findings.add(finding.message, fix, finding.origin or None)
    return findings


# The validator's sentence says what the identity can do and why that is too much, at
# times with a hint; the fix names the declaration to change.
_ROLE_KINDS = frozenset({FindingKind.UNKNOWN_PRIVILEGE, FindingKind.EXTRA_PRIVILEGE})
_ROLE_FIX = "declare the role with the privileges zlh_infra.platform.api_identity gives it"
_ACL_FIX = "declare the identity's ACL entries as zlh_infra.platform.api_identity computes them"


def _read_role(resource: Resource, roles: dict[str, tuple[str, ...]], urns: dict[str, str]) -> None:
    """A role whose privileges cannot be read stays unknown: an ACL naming it is reported."""
    role_id = _text(resource.props.get("roleId"))
    privileges = resource.props.get("privileges")
    if (
        role_id is not None
        and isinstance(privileges, Sequence)
        and not isinstance(privileges, str)
        and all(isinstance(p, str) for p in privileges)
    ):
        roles[role_id] = tuple(privileges)
        urns[role_id] = resource.urn
