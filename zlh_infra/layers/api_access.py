"""zpack-api's Proxmox identity on a runtime host: its roles, its user and its ACLs.

What the identity may do, and why each privilege and path, is
``zlh_infra.platform.api_identity``; this component only registers it. The password is
the core stack's (pulumi-random), handed over in the contract: a runtime stack hands
nothing back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmox

from zlh_infra.contract import ApiHost
from zlh_infra.platform.api_identity import IdentityInputs, acl_entries, role_privileges


@dataclass(frozen=True, slots=True)
class ApiAccessArgs:
    login: ApiHost
    inputs: IdentityInputs


class ApiAccess(pulumi.ComponentResource):
    """The roles, then the user holding exactly the identity's ACLs, none propagating."""

    user_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: ApiAccessArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("zlh:runtime:ApiAccess", name, None, opts)
        roles = [
            proxmox.RoleLegacy(
                f"{name}-{role_id}",
                role_id=role_id,
                privileges=list(privileges),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for role_id, privileges in role_privileges().items()
        ]
        user = proxmox.UserLegacy(
            f"{name}-user",
            user_id=args.login.username,
            comment="zpack-api: makes the fleet's containers (zlh_infra.platform.api_identity)",
            enabled=True,
            password=pulumi.Output.secret(args.login.password.get_secret_value()),
            acls=[
                proxmox.UserLegacyAclArgs(path=acl.path, role_id=acl.role_id, propagate=False)
                for acl in acl_entries(args.inputs, user_id=args.login.username)
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=roles),
        )
        self.user_id = user.user_id
        self.register_outputs({"userId": self.user_id})
