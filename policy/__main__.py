"""The zlh-platform policy pack: ``pulumi preview -s <stack> --policy-pack policy``.

This file only assembles the pack: ``PolicyPack(...)`` starts the analyzer's gRPC
server and blocks. The policies and their checks live in ``zlh_infra.policies``.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from zlh_infra.policies.pack import (
    PACK_DESCRIPTION,
    PACK_NAME,
    agent_port,
    control_plane_independent,
    guest_placement,
    required_tags,
    runtime_isolation,
    traefik_per_domain,
    vmid_range,
    vmid_unique,
)

PolicyPack(
    name=PACK_NAME,
    description=PACK_DESCRIPTION,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        vmid_range,
        vmid_unique,
        guest_placement,
        control_plane_independent,
        runtime_isolation,
        agent_port,
        traefik_per_domain,
        required_tags,
    ],
)
