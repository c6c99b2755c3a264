"""zlh-required-tags and zlh-traefik-per-domain."""

from __future__ import annotations

import pytest
from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UnknownValueError

from tests.policies.policy_fixtures import (
    core_builder,
    core_stack,
    find,
    props,
    runtime_builder,
    runtime_stack,
    unknown,
)
from zlh_infra.policies.config import TAGS, TRAEFIK
from zlh_infra.policies.resources import Resource, Violation
from zlh_infra.policies.tags import check_required_tags, check_traefik_per_domain

TAGGED = TAGS.parse("zlh-required-tags", None)
ONE_TRAEFIK = TRAEFIK.parse("zlh-traefik-per-domain", None)


def tag_problems(resources: list[Resource], stack: str) -> list[str]:
    return [v.message for r in resources for v in check_required_tags(r, TAGGED, stack)]


def tag_messages(guest: Resource, stack: str = "core") -> list[str]:
    return [violation.message for violation in check_required_tags(guest, TAGGED, stack)]


def db_with(tags: list[str] | str) -> Resource:
    guest = find(core_stack(), "zlh-db")
    props(guest)["tags"] = tags
    return guest


FULL = ["layer-control-plane", "role-core-infra", "stack-core", "svc-zlh-db", "zlh"]


# --- zlh-required-tags ------------------------------------------------------------


def test_platform_guests_carry_their_tags() -> None:
    assert tag_problems(core_stack(), "core") == []
    assert tag_problems(runtime_stack(), "runtime") == []
    assert (
        tag_problems(runtime_stack("runtime-2", "zlh-runtime-2"), "org/zlh-infra/runtime-2") == []
    )


def test_no_tags_at_all() -> None:
    assert tag_messages(db_with([])) == [
        "zlh-db (VMID 102) lacks the tag zlh; add it.",
        "zlh-db (VMID 102) has no layer-* tag; add layer-<its layer>.",
        "zlh-db (VMID 102) has no role-* tag; add role-<the role of its VMID range>.",
        "zlh-db (VMID 102) has no stack-* tag; add stack-core.",
        "zlh-db (VMID 102) has no svc-* tag; add svc-<its service>.",
    ]


def test_tags_as_proxmox_stores_them() -> None:
    assert check_required_tags(db_with(";".join(FULL)), TAGGED, "core") == []


def test_several_layer_tags() -> None:
    tags = [*FULL, "layer-edge"]
    assert tag_messages(db_with(tags)) == [
        "zlh-db (VMID 102) has several layer-* tags (layer-control-plane, layer-edge); keep "
        "exactly one."
    ]


def test_a_role_tag_naming_no_role() -> None:
    tags = [t for t in FULL if not t.startswith("role-")] + ["role-database"]
    assert tag_messages(db_with(tags)) == [
        "zlh-db (VMID 102) is tagged role-database, which names no role; use one of "
        "role-core-infra, role-template, role-network, role-game, role-dev, role-monitoring."
    ]


def test_a_layer_tag_naming_no_layer() -> None:
    tags = [t for t in FULL if not t.startswith("layer-")] + ["layer-core"]
    assert tag_messages(db_with(tags)) == [
        "zlh-db (VMID 102) is tagged layer-core, which names no layer; use one of "
        "layer-control-plane, layer-edge, layer-runtime."
    ]


def test_a_layer_tag_contradicting_the_layer_component() -> None:
    tags = [t for t in FULL if not t.startswith("layer-")] + ["layer-edge"]
    assert tag_messages(db_with(tags)) == [
        "zlh-db (VMID 102) is declared in the control-plane layer but tagged layer-edge; tag "
        "it layer-control-plane."
    ]


def test_a_stack_tag_of_another_stack() -> None:
    guest = find(runtime_stack(), "mc-survival")
    assert check_required_tags(guest, TAGGED, "runtime-2") == [
        Violation(
            problem="mc-survival (VMID 1000) is tagged stack-runtime, but it belongs to stack "
            "runtime-2",
            fix="tag it stack-runtime-2",
            urn=guest.urn,
        )
    ]
    assert tag_messages(guest, "runtime-2") == [
        "mc-survival (VMID 1000) is tagged stack-runtime, but it belongs to stack runtime-2; "
        "tag it stack-runtime-2."
    ]


def test_the_service_tag_can_be_optional() -> None:
    relaxed = TAGS.parse("zlh-required-tags", {"requireServiceTag": False})
    tags = [t for t in FULL if not t.startswith("svc-")]
    assert check_required_tags(db_with(tags), relaxed, "core") == []


def test_another_platform_tag() -> None:
    config = TAGS.parse("zlh-required-tags", {"platformTag": "zerolaghub"})
    assert [v.message for v in check_required_tags(db_with(FULL), config, "core")] == [
        "zlh-db (VMID 102) lacks the tag zerolaghub; add it."
    ]


def test_unknown_tags_are_left_to_the_sdk() -> None:
    guest = unknown(find(core_stack(), "zlh-db"), tags=UNKNOWN_ARRAY_VALUE)
    with pytest.raises(UnknownValueError):
        check_required_tags(guest, TAGGED, "core")


# --- zlh-traefik-per-domain -------------------------------------------------------


@pytest.mark.parametrize(("stack", "name"), [(core_stack, "core"), (runtime_stack, "runtime")])
def test_one_traefik_per_domain(stack: object, name: str) -> None:
    findings = check_traefik_per_domain(stack(), ONE_TRAEFIK, name)  # type: ignore[operator]
    assert findings.violations == []


def test_a_core_stack_without_its_traefik() -> None:
    resources = [r for r in core_stack() if "zlh-proxy" not in r.name]
    findings = check_traefik_per_domain(resources, ONE_TRAEFIK, "core")
    assert findings.messages == [
        "stack core has no zlh-proxy guest (tag svc-zlh-proxy); its portal, API, monitoring "
        "and Headscale traffic needs exactly one Traefik instance: declare zlh-proxy."
    ]
    assert findings.violations == [
        Violation(
            problem="stack core has no zlh-proxy guest (tag svc-zlh-proxy); its portal, API, "
            "monitoring and Headscale traffic needs exactly one Traefik instance",
            fix="declare zlh-proxy",
            urn=None,
            joint=": ",
        )
    ]


def test_a_second_runtime_traefik() -> None:
    builder = runtime_builder()
    second = builder.guest(
        "zlh-zpack-proxy-2", 313, layer="edge", role="network", service="zlh-zpack-proxy"
    )
    findings = check_traefik_per_domain(builder.resources, ONE_TRAEFIK, "runtime")
    assert findings.messages == [
        "zlh-zpack-proxy-2 (VMID 313) is a second zlh-zpack-proxy (besides zlh-zpack-proxy); "
        "each traffic domain has exactly one Traefik instance: remove it."
    ]
    assert findings.violations[0].urn == second.urn


def test_the_core_traefik_in_a_runtime_stack() -> None:
    builder = runtime_builder()
    core_proxy = builder.guest("zlh-proxy", 301, layer="edge", role="network", service="zlh-proxy")
    findings = check_traefik_per_domain(builder.resources, ONE_TRAEFIK, "runtime")
    assert findings.messages == [
        "zlh-proxy (VMID 301) is tagged svc-zlh-proxy, the Traefik of the other traffic "
        "domain; stack runtime routes only game server and dev IDE traffic: remove it, or "
        "declare it in the core stack."
    ]
    assert findings.violations[0].urn == core_proxy.urn


def test_the_runtime_traefik_in_the_core_stack() -> None:
    builder = core_builder()
    builder.guest(
        "zlh-zpack-proxy", 311, layer="control-plane", role="network", service="zlh-zpack-proxy"
    )
    assert check_traefik_per_domain(builder.resources, ONE_TRAEFIK, "core").messages == [
        "zlh-zpack-proxy (VMID 311) is tagged svc-zlh-zpack-proxy, the Traefik of the other "
        "traffic domain; stack core routes only portal, API, monitoring and Headscale "
        "traffic: remove it, or declare it in a runtime stack."
    ]


def test_an_unknown_stack_kind_is_not_checked() -> None:
    assert check_traefik_per_domain(core_stack(), ONE_TRAEFIK, "staging").violations == []


def test_unknown_tags_do_not_claim_a_missing_traefik() -> None:
    resources = runtime_stack()
    index = resources.index(find(resources, "zlh-zpack-proxy"))
    resources[index] = unknown(resources[index], tags=UNKNOWN_ARRAY_VALUE)
    findings = check_traefik_per_domain(resources, ONE_TRAEFIK, "runtime")
    assert findings.violations == []
    assert len(findings.unknowns) == 1
