"""The zlh-platform policy pack: ``pulumi preview -s <stack> --policy-pack policy``.

This file only assembles the pack: ``PolicyPack(...)`` starts the analyzer's gRPC
server and blocks. The policies and their checks live in ``zlh_infra.policies``.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from zlh_infra.policies.pack import PACK_DESCRIPTION, PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    description=PACK_DESCRIPTION,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
