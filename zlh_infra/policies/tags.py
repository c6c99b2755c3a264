"""Guest tags, which the other checks and the Proxmox UI read, and the Traefik split."""

from __future__ import annotations

from collections.abc import Sequence

from zlh_infra.platform.topology import (
    TAG_PREFIX_LAYER,
    TAG_PREFIX_ROLE,
    TAG_PREFIX_SERVICE,
    TAG_PREFIX_STACK,
    Layer,
    StackRole,
)
from zlh_infra.platform.vmids import VmidRole
from zlh_infra.policies.config import TagsConfig, TraefikConfig
from zlh_infra.policies.placement import layers_of, role_of_stack
from zlh_infra.policies.resources import (
    Findings,
    Resource,
    Violation,
    is_guest,
    label,
    service_tags,
    short_stack,
    tag_values,
    tags_of,
)


def _one_of(
    resource: Resource,
    values: list[str],
    prefix: str,
    allowed: Sequence[str] | None,
    example: str,
) -> list[Violation]:
    """Problems with a guest's tags of one kind: missing, several, or naming nothing known."""
    name = label(resource)
    if not values:
        return [Violation(f"{name} has no {prefix}* tag", f"add {example}", resource.urn)]
    if len(set(values)) > 1:
        found = ", ".join(prefix + value for value in values)
        return [
            Violation(
                f"{name} has several {prefix}* tags ({found})", "keep exactly one", resource.urn
            )
        ]
    if allowed is not None and values[0] not in allowed:
        return [
            Violation(
                f"{name} is tagged {prefix}{values[0]}, which names no {prefix.rstrip('-')}",
                f"use one of {', '.join(prefix + a for a in allowed)}",
                resource.urn,
            )
        ]
    return []


def check_required_tags(resource: Resource, config: TagsConfig, stack: str) -> list[Violation]:
    """A guest carries the platform, layer, role, stack (and service) tags, correctly."""
    if not is_guest(resource):
        return []
    name = label(resource)
    tags = tags_of(resource)
    problems: list[Violation] = []
    if config.platform_tag not in tags:
        problems.append(
            Violation(f"{name} lacks the tag {config.platform_tag}", "add it", resource.urn)
        )

    layers = tag_values(tags, TAG_PREFIX_LAYER)
    layer_problems = _one_of(
        resource, layers, TAG_PREFIX_LAYER, [layer.value for layer in Layer], "layer-<its layer>"
    )
    problems += layer_problems
    declared = layers_of(resource)
    if not layer_problems and declared and layers[0] != declared[-1]:
        problems.append(
            Violation(
                f"{name} is declared in the {declared[-1]} layer but tagged layer-{layers[0]}",
                f"tag it layer-{declared[-1]}",
                resource.urn,
            )
        )

    problems += _one_of(
        resource,
        tag_values(tags, TAG_PREFIX_ROLE),
        TAG_PREFIX_ROLE,
        [role.value for role in VmidRole],
        "role-<the role of its VMID range>",
    )

    expected = short_stack(stack)
    stacks = tag_values(tags, TAG_PREFIX_STACK)
    stack_problems = _one_of(
        resource, stacks, TAG_PREFIX_STACK, None, f"stack-{expected or '<stack name>'}"
    )
    problems += stack_problems
    if not stack_problems and expected and stacks[0] != expected:
        problems.append(
            Violation(
                f"{name} is tagged stack-{stacks[0]}, but it belongs to stack {expected}",
                f"tag it stack-{expected}",
                resource.urn,
            )
        )

    if config.require_service_tag:
        problems += _one_of(
            resource,
            tag_values(tags, TAG_PREFIX_SERVICE),
            TAG_PREFIX_SERVICE,
            None,
            "svc-<its service>",
        )
    return problems


def check_traefik_per_domain(
    resources: Sequence[Resource], config: TraefikConfig, stack: str
) -> Findings:
    """Exactly one Traefik of the stack's own traffic domain, none of the other."""
    findings = Findings()
    role = role_of_stack(stack)
    if role is None:
        return findings
    core, runtime = config.core_proxy_service, config.runtime_proxy_service
    if role is StackRole.CORE:
        wanted, unwanted = core, runtime
        domain, elsewhere = "portal, API, monitoring and Headscale", "a runtime stack"
    else:
        wanted, unwanted = runtime, core
        domain, elsewhere = "game server and dev IDE", "the core stack"
    holders: list[Resource] = []
    for resource in resources:
        if not is_guest(resource):
            continue
        with findings.reading():
            services = service_tags(resource)
            if wanted in services:
                holders.append(resource)
            if unwanted in services:
                findings.add(
                    f"{label(resource)} is tagged svc-{unwanted}, the Traefik of the other "
                    f"traffic domain; stack {short_stack(stack)} routes only {domain} traffic",
                    f"remove it, or declare it in {elsewhere}",
                    resource.urn,
                    joint=": ",
                )
    if not holders and not findings.unknowns:
        findings.add(
            f"stack {short_stack(stack)} has no {wanted} guest (tag svc-{wanted}); its {domain} "
            "traffic needs exactly one Traefik instance",
            f"declare {wanted}",
            joint=": ",
        )
    for extra in holders[1:]:
        findings.add(
            f"{label(extra)} is a second {wanted} (besides {holders[0].name}); each traffic "
            "domain has exactly one Traefik instance",
            "remove it",
            extra.urn,
            joint=": ",
        )
    return findings
