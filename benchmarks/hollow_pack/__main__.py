"""The zlh-platform policies, same names, levels and config, checking nothing.

The benchmark runs it beside the real pack: the difference is what the checks cost on
top of ``pulumi_policy``.
"""

from typing import Any

from pulumi_policy import Policy, PolicyPack, ResourceValidationPolicy, StackValidationPolicy

from zlh_infra.policies.pack import PACK_NAME, POLICIES


def nothing(*_args: Any) -> None:
    return None


def hollow(policy: Policy) -> Policy:
    common: dict[str, Any] = {
        "name": policy.name,
        "description": policy.description,
        "enforcement_level": policy.enforcement_level,
        "config_schema": policy.config_schema,
    }
    if isinstance(policy, StackValidationPolicy):
        return StackValidationPolicy(validate=nothing, **common)
    assert isinstance(policy, ResourceValidationPolicy)
    return ResourceValidationPolicy(
        validate=nothing if policy.has_validation() else None,
        remediate=nothing if policy.has_remediation() else None,
        **common,
    )


PolicyPack(name=PACK_NAME, policies=[hollow(policy) for policy in POLICIES])
