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
    is_guest,
    label,
    service_tags,
    short_stack,
    tag_values,
    tags_of,
)


def _one_of(
    name: str, values: list[str], prefix: str, allowed: Sequence[str] | None, example: str
) -> list[str]:
    """Problems with a guest's tags of one kind: missing, several, or naming nothing known."""
    if not values:
        return [f"{name} has no {prefix}* tag; add {example}."]
    if len(set(values)) > 1:
        found = ", ".join(prefix + value for value in values)
        return [f"{name} has several {prefix}* tags ({found}); keep exactly one."]
    if allowed is not None and values[0] not in allowed:
        return [
            f"{name} is tagged {prefix}{values[0]}, which names no "
            f"{prefix.rstrip('-')}; use one of {', '.join(prefix + a for a in allowed)}."
        ]
    return []


def check_required_tags(resource: Resource, config: TagsConfig, stack: str) -> list[str]:
    """A guest carries the platform, layer, role, stack (and service) tags, correctly."""
    if not is_guest(resource):
        return []
    name = label(resource)
    tags = tags_of(resource)
    problems: list[str] = []
    if config.platform_tag not in tags:
        problems.append(f"{name} lacks the tag {config.platform_tag}; add it.")

    layers = tag_values(tags, TAG_PREFIX_LAYER)
    layer_problems = _one_of(
        name, layers, TAG_PREFIX_LAYER, [layer.value for layer in Layer], "layer-<its layer>"
    )
    problems += layer_problems
    declared = layers_of(resource)
    if not layer_problems and declared and layers[0] != declared[-1]:
        problems.append(
            f"{name} is declared in the {declared[-1]} layer but tagged layer-{layers[0]}; "
            f"tag it layer-{declared[-1]}."
        )

    problems += _one_of(
        name,
        tag_values(tags, TAG_PREFIX_ROLE),
        TAG_PREFIX_ROLE,
        [role.value for role in VmidRole],
        "role-<the role of its VMID range>",
    )

    expected = short_stack(stack)
    stacks = tag_values(tags, TAG_PREFIX_STACK)
    stack_problems = _one_of(
        name, stacks, TAG_PREFIX_STACK, None, f"stack-{expected or '<stack name>'}"
    )
    problems += stack_problems
    if not stack_problems and expected and stacks[0] != expected:
        problems.append(
            f"{name} is tagged stack-{stacks[0]}, but it belongs to stack {expected}; "
            f"tag it stack-{expected}."
        )

    if config.require_service_tag:
        problems += _one_of(
            name,
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
                    f"traffic domain; stack {short_stack(stack)} routes only {domain} "
                    f"traffic: remove it, or declare it in {elsewhere}.",
                    resource.urn,
                )
    if not holders and not findings.unknowns:
        findings.add(
            f"stack {short_stack(stack)} has no {wanted} guest (tag svc-{wanted}); its {domain} "
            f"traffic needs exactly one Traefik instance: declare {wanted}."
        )
    for extra in holders[1:]:
        findings.add(
            f"{label(extra)} is a second {wanted} (besides {holders[0].name}); each traffic "
            "domain has exactly one Traefik instance: remove it.",
            extra.urn,
        )
    return findings
