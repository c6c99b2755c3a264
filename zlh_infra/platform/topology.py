"""Layers, stacks and guest tags: the names the program, the policy pack and the docs share."""

from __future__ import annotations

import re
from enum import StrEnum

from zlh_infra.platform.vmids import VmidRole


class Layer(StrEnum):
    """The seed's three layers; the value is the ``layer-*`` tag and the type-token segment."""

    CONTROL_PLANE = "control-plane"
    EDGE = "edge"
    RUNTIME = "runtime"


class StackRole(StrEnum):
    """What a stack deploys: the core host, or one runtime host."""

    CORE = "core"
    RUNTIME = "runtime"


_RUNTIME_STACK = re.compile(r"^runtime(-[a-z0-9][a-z0-9-]*)?$")


class UnknownStackError(ValueError):
    pass


def short_stack(stack: str) -> str:
    """``acme/zlh-infra/runtime-2`` -> ``runtime-2``: the part that names the host."""
    return stack.rsplit("/", 1)[-1]


def is_stack_name(name: str) -> bool:
    """A bare stack name (no organisation) the platform knows the role of."""
    try:
        stack_role(name)
    except UnknownStackError:
        return False
    return "/" not in name


def stack_role(stack: str) -> StackRole:
    """``core`` -> CORE; ``runtime`` and ``runtime-<x>`` -> RUNTIME; anything else is refused.

    A stack may carry an organisation prefix (``acme/zlh-infra/core``); only its last
    segment counts.
    """
    name = short_stack(stack)
    if name == "core":
        return StackRole.CORE
    if _RUNTIME_STACK.match(name):
        return StackRole.RUNTIME
    raise UnknownStackError(
        f"stack {stack!r} is neither 'core' nor 'runtime' / 'runtime-<name>'; "
        "the stack name decides which host and layers it deploys"
    )


#: Every guest the program creates carries these tags, so the Proxmox UI and the
#: policy pack read a guest's layer, VMID role and owning stack without a lookup.
PLATFORM_TAG = "zlh"
TAG_PREFIX_LAYER = "layer-"
TAG_PREFIX_ROLE = "role-"
TAG_PREFIX_STACK = "stack-"
TAG_PREFIX_SERVICE = "svc-"

# Proxmox tag syntax (pve-tag): lower case is what the UI sorts and shows reliably.
_TAG = re.compile(r"^[a-z0-9_][a-z0-9_+.\-]*$")


def guest_tags(*, layer: Layer, role: VmidRole, stack: str, service: str) -> list[str]:
    """The sorted tag list for one guest (Proxmox stores tags sorted)."""
    stack_name = short_stack(stack)
    tags = {
        PLATFORM_TAG,
        TAG_PREFIX_LAYER + layer,
        TAG_PREFIX_ROLE + role,
        TAG_PREFIX_STACK + stack_name,
        TAG_PREFIX_SERVICE + service,
    }
    bad = sorted(tag for tag in tags if not _TAG.match(tag))
    if bad:
        raise ValueError(f"not valid Proxmox tags: {', '.join(bad)}")
    return sorted(tags)


def tag_value(tags: list[str] | None, prefix: str) -> str | None:
    """The value of the first tag with ``prefix`` (``layer-edge`` -> ``edge``), or None."""
    for tag in tags or ():
        if tag.startswith(prefix):
            return tag[len(prefix) :]
    return None
