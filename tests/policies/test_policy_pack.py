"""The pulumi_policy wrappers, called in-process with the SDK's own argument objects."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_NUMBER_VALUE, UnknownValueError, unknown_checking_proxy

from tests.policies.policy_fixtures import core_stack, find, props, runtime_stack
from zlh_infra.policies import pack
from zlh_infra.policies.config import VMID_RANGE, VMID_UNIQUE
from zlh_infra.policies.resources import Resource, Violation
from zlh_infra.policies.vmid import check_vmid_range, check_vmid_unique

Reported = list[tuple[str, str | None]]


def collector(reported: Reported) -> ReportViolation:
    def report(message: str, urn: str | None = None) -> None:
        reported.append((message, urn))

    return report


def options(resource: Resource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        resource.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], resource.parent
    )


def resource_args(
    resource: Resource, config: dict[str, Any] | None = None
) -> ResourceValidationArgs:
    provider = None
    if resource.provider is not None:
        p = resource.provider
        provider = PolicyProviderResource(
            p.type, unknown_checking_proxy(dict(p.props)), p.urn, p.name
        )
    return ResourceValidationArgs(
        resource.type,
        unknown_checking_proxy(dict(resource.props)),
        resource.urn,
        resource.name,
        options(resource),
        provider,
        config,
    )


def stack_args(
    resources: list[Resource], config: dict[str, Any] | None = None
) -> StackValidationArgs:
    by_urn = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(dict(r.props)),
            r.urn,
            r.name,
            options(r),
            None,
            None,
            [],
            {},
        )
        for r in resources
    }
    for r in resources:
        policy_resource = by_urn[r.urn]
        policy_resource.parent = by_urn.get(r.parent or "")
        policy_resource.dependencies = [by_urn[d] for d in r.dependencies if d in by_urn]
        policy_resource.property_dependencies = {
            key: [by_urn[d] for d in deps if d in by_urn]
            for key, deps in r.property_dependencies.items()
        }
    return StackValidationArgs(list(by_urn.values()), config)


def validate_resources(
    policy: ResourceValidationPolicy,
    resources: list[Resource],
    config: dict[str, Any] | None = None,
) -> Reported:
    reported: Reported = []
    for resource in resources:
        policy.validate(resource_args(resource, config), collector(reported))
    return reported


def validate_stack(
    policy: StackValidationPolicy, resources: list[Resource], config: dict[str, Any] | None = None
) -> Reported:
    reported: Reported = []
    policy.validate(stack_args(resources, config), collector(reported))
    return reported


@pytest.fixture(autouse=True)
def no_stack_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_STACK", raising=False)


def test_the_policies() -> None:
    names = [policy.name for policy in pack.POLICIES]
    assert names == [
        "zlh-vmid-range",
        "zlh-vmid-unique",
        "zlh-guest-placement",
        "zlh-control-plane-independent",
        "zlh-runtime-isolation",
        "zlh-agent-port",
        "zlh-host-firewall",
        "zlh-tenant-egress",
        "zlh-traefik-per-domain",
        "zlh-required-tags",
        "zlh-stateful-protected",
        "zlh-runtime-self-sufficient",
        "zlh-api-identity",
        "zlh-secret-inputs",
    ]
    for policy in pack.POLICIES:
        if policy is pack.secret_inputs:
            # Only a remediation sees whether a value is secret (see its module).
            assert policy.enforcement_level is EnforcementLevel.REMEDIATE
            continue
        assert policy.enforcement_level is EnforcementLevel.MANDATORY
        assert policy.description.endswith(".") and policy.description.count(". ") == 0
        assert policy.config_schema is not None
        assert all("default" in prop for prop in policy.config_schema.properties.values())


@pytest.mark.parametrize(
    ("stack", "resources"),
    [("core", core_stack), ("runtime", lambda: runtime_stack(fleet_group=True))],
    ids=["core", "runtime"],
)
def test_platform_stacks_pass_every_policy(stack: str, resources: Any) -> None:
    built = resources()
    for policy in pack.POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            assert validate_resources(policy, built) == [], policy.name
        else:
            assert isinstance(policy, StackValidationPolicy)
            assert validate_stack(policy, built) == [], policy.name


def test_the_stack_comes_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    guest = find(runtime_stack(), "mc-survival")
    assert validate_resources(pack.required_tags, [guest]) == []
    monkeypatch.setenv("PULUMI_STACK", "runtime-2")
    assert validate_resources(pack.required_tags, [guest]) == [
        (
            "mc-survival (VMID 1000) is tagged stack-runtime, but it belongs to stack "
            "runtime-2; tag it stack-runtime-2.",
            None,
        )
    ]


def test_a_bad_config_is_reported_where_the_policy_applies() -> None:
    config = {"ranges": {"game": {"first": 1000, "last": 1150}}}
    reported = validate_resources(pack.vmid_range, runtime_stack(), config)
    guests = [r for r in runtime_stack() if r.type.endswith(("ContainerLegacy", "VmLegacy"))]
    assert len(reported) == len(guests)
    assert reported[0] == (
        "the configuration of policy zlh-vmid-range is unusable: ranges: ranges game "
        "(1000-1150) and dev (1100-1199) overlap. Fix it in the --policy-pack-config file.",
        None,
    )
    assert validate_stack(pack.agent_port, runtime_stack(), {"agentPort": 0}) == [
        (
            "the configuration of policy zlh-agent-port is unusable: agentPort must be a whole "
            "number from 1 to 65535, not 0. Fix it in the --policy-pack-config file.",
            None,
        )
    ]


def test_isolation_config_is_not_judged_in_the_core_stack() -> None:
    assert validate_resources(pack.runtime_isolation, core_stack(), {"coreNode": ""}) == []


def test_an_unknown_in_a_resource_check_reaches_the_sdk() -> None:
    guest = find(runtime_stack(), "mc-survival")
    props(guest)["vmId"] = UNKNOWN_NUMBER_VALUE
    with pytest.raises(UnknownValueError):
        validate_resources(pack.vmid_range, [guest])


def test_a_stack_check_reports_what_it_can_then_raises_the_unknown() -> None:
    resources = runtime_stack()
    props(find(resources, "zlh-velocity"))["vmId"] = UNKNOWN_NUMBER_VALUE
    props(find(resources, "dev-alice"))["vmId"] = 1000.0
    reported: Reported = []
    with pytest.raises(UnknownValueError):
        pack.vmid_unique.validate(stack_args(resources), collector(reported))
    assert [urn for _, urn in reported] == [find(resources, "dev-alice").urn]


def test_dependencies_reach_the_stack_checks() -> None:
    resources = core_stack()
    options_resource = find(
        resources, "zlh-db-firewall", "proxmoxve:firewall/optionsLegacy:OptionsLegacy"
    )
    db = find(resources, "zlh-db")
    props(db)["tags"] = [*props(db)["tags"], "layer-runtime"]
    reported = validate_stack(pack.control_plane_independent, resources)
    rules = find(resources, "zlh-db-rules", "proxmoxve:firewall/rulesLegacy:RulesLegacy")
    assert reported[-2:] == [
        (
            "zlh-db-firewall (proxmoxve:firewall/optionsLegacy:OptionsLegacy) depends on zlh-db "
            "(VMID 102), which belongs to the edge/runtime side; the control plane must never "
            "depend on the runtime: remove the dependency.",
            options_resource.urn,
        ),
        (
            "zlh-db-rules (proxmoxve:firewall/rulesLegacy:RulesLegacy) depends on zlh-db "
            "(VMID 102), which belongs to the edge/runtime side; the control plane must never "
            "depend on the runtime: remove the dependency.",
            rules.urn,
        ),
    ]


def test_a_violations_message_is_its_problem_then_its_fix() -> None:
    assert Violation("x is off", "turn it on").message == "x is off; turn it on."
    assert Violation("x is off", "turn it on", "urn:x", "g (VMID 1)").message == (
        "g (VMID 1): x is off; turn it on."
    )
    # After a reason the fix follows a colon; after a sentence, a sentence of its own.
    assert Violation("x is off; y needs it", "turn it on", joint=": ").message == (
        "x is off; y needs it: turn it on."
    )
    assert Violation("x is taken", "give it another", joint=". ").message == (
        "x is taken. Give it another."
    )


def test_the_pack_reports_what_a_resource_check_found_as_its_message() -> None:
    guest = find(runtime_stack(), "mc-survival")
    props(guest)["vmId"] = 950.0
    (violation,) = check_vmid_range(guest, VMID_RANGE.parse("zlh-vmid-range", None))
    assert (violation.subject, violation.fix) == (
        "mc-survival (VMID 950)",
        "give it a free VMID in the game range 1000-1099",
    )
    assert validate_resources(pack.vmid_range, [guest]) == [
        (f"{violation.subject}: {violation.problem}; {violation.fix}.", None)
    ]


def test_the_pack_reports_what_a_stack_check_found_where_it_found_it() -> None:
    resources = runtime_stack()
    dev = find(resources, "dev-alice")
    props(dev)["vmId"] = 1000.0
    found = check_vmid_unique(resources, VMID_UNIQUE.parse("zlh-vmid-unique", None))
    (violation,) = found.violations
    assert (violation.urn, violation.fix) == (dev.urn, "give it a free VMID in its role's range")
    assert validate_stack(pack.vmid_unique, resources) == [
        (
            f"{violation.subject}: {violation.problem}. Give it a free VMID in its role's range.",
            dev.urn,
        )
    ]
