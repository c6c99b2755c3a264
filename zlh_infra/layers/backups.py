"""Scheduled backups of a host's stateful guests to Proxmox Backup Server."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_proxmoxve as proxmox

from zlh_infra.config import Backup


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
    vmids: Sequence[int],
    policy: Backup,
    depends_on: Sequence[pulumi.Resource] = (),
) -> proxmox.backup.Job:
    """A PBS storage on ``node`` and a job backing up ``vmids`` to it on a schedule.

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
    return proxmox.backup.Job(
        f"{name}-job",
        resource_id=name,
        node=node,
        storage=storage.resource_id,
        vmids=[str(vmid) for vmid in sorted(vmids)],
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
