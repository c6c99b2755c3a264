"""Scheduled backups of a host's stateful guests to Proxmox Backup Server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmox

from zlh_infra.config import Backup


@dataclass(frozen=True, slots=True)
class Selection:
    """What one backup job takes: a pool (every member, made by Pulumi or not) or VMIDs."""

    name: str
    pool: pulumi.Input[str] | None = None
    vmids: Sequence[int] = ()


def backup_to_pbs(
    name: str,
    *,
    parent: pulumi.Resource,
    node: str,
    server: pulumi.Input[str],
    datastore: pulumi.Input[str],
    namespace: pulumi.Input[str],
    username: pulumi.Input[str],
    password: pulumi.Input[str],
    fingerprint: pulumi.Input[str],
    selections: Sequence[Selection],
    policy: Backup,
    depends_on: Sequence[pulumi.Resource] = (),
) -> list[proxmox.backup.Job]:
    """A PBS storage on ``node`` and a job per selection backing it up on a schedule.

    The storage writes into the host's own ``namespace`` of the datastore, as the host's
    own user, and pins the server's certificate by its ``fingerprint``.
    """
    child = pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on))
    storage = proxmox.storage.Pbs(
        f"{name}-pbs",
        resource_id=name,
        nodes=[node],
        server=server,
        datastore=datastore,
        namespace=namespace,
        username=username,
        password=pulumi.Output.secret(password),
        fingerprint=fingerprint,
        contents=["backup"],
        opts=child,
    )
    return [
        proxmox.backup.Job(
            f"{name}-{selection.name}",
            resource_id=f"{name}-{selection.name}",
            node=node,
            storage=storage.resource_id,
            pool=selection.pool,
            vmids=[str(vmid) for vmid in sorted(selection.vmids)] or None,
            schedule=policy.schedule,
            mode="snapshot",
            compress="zstd",
            enabled=True,
            prune_backups={
                "keep-daily": str(policy.keep_daily),
                "keep-weekly": str(policy.keep_weekly),
                "keep-monthly": str(policy.keep_monthly),
            },
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for selection in selections
        if selection.pool is not None or selection.vmids
    ]
