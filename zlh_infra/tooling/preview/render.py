"""Text, JSON and Markdown views of stack recordings. None of them shows a secret.

Recordings keep secrets as the RPC secret sentinel; every view goes through
``mask_secrets`` or ``display`` first, which put ``[secret]`` in their place.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi.runtime import rpc

from zlh_infra.platform.topology import TAG_PREFIX_LAYER, TAG_PREFIX_ROLE, tag_value
from zlh_infra.platform.type_tokens import CONTAINER as CONTAINER_TYPE
from zlh_infra.platform.type_tokens import STACK as STACK_TYPE
from zlh_infra.platform.type_tokens import VM as VM_TYPE
from zlh_infra.tooling.preview.recording import Diagnostic, RecordedResource, StackRecording
from zlh_infra.tooling.wire_values import SECRET_MASK, UNKNOWN_MASK, mask_secrets

FORMATS = ("text", "json", "markdown")

GUEST_KINDS = {CONTAINER_TYPE: "container", VM_TYPE: "vm"}


def _for_people(value: Any) -> Any:
    """Wire numbers are all floats: show the integral ones as ints; name unknowns."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value == rpc.UNKNOWN:
        return UNKNOWN_MASK
    if isinstance(value, dict):
        return {key: _for_people(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_for_people(item) for item in value]
    return value


def display(value: Any) -> str:
    """One wire-form value for people: secrets masked, integral floats as ints."""
    value = _for_people(mask_secrets(value))
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _get(value: Any, *path: str | int) -> Any:
    """Walk a wire-form value; a secret on the way masks everything below it."""
    for key in path:
        if rpc.is_rpc_secret(value):
            return value
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and key < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


# --- guests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Guest:
    """A container or VM as the preview tables show it (display strings)."""

    urn: str
    kind: str
    name: str
    vmid: str
    node: str
    layer: str
    role: str
    addresses: tuple[str, ...]


def _addresses(inputs: dict[str, Any]) -> tuple[str, ...]:
    configs = _get(inputs, "initialization", "ipConfigs")
    if rpc.is_rpc_secret(configs):
        return (SECRET_MASK,)
    result = []
    for config in configs if isinstance(configs, list) else []:
        address = _get(config, "ipv4", "address")
        if address is not None:
            result.append(display(address))
    return tuple(result)


def guest_of(resource: RecordedResource) -> Guest | None:
    kind = GUEST_KINDS.get(resource.type)
    if kind is None:
        return None
    inputs = resource.inputs
    if resource.type == VM_TYPE:
        name = _get(inputs, "name")
    else:
        name = _get(inputs, "initialization", "hostname")
    tags = _get(inputs, "tags")
    tag_list = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    masked_tags = SECRET_MASK if rpc.is_rpc_secret(tags) else None
    return Guest(
        urn=resource.urn,
        kind=kind,
        name=display(name) if name is not None else resource.name,
        vmid=display(_get(inputs, "vmId")),
        node=display(_get(inputs, "nodeName")),
        layer=masked_tags or tag_value(tag_list, TAG_PREFIX_LAYER) or "",
        role=masked_tags or tag_value(tag_list, TAG_PREFIX_ROLE) or "",
        addresses=_addresses(inputs),
    )


def _vmid_key(guest: Guest) -> tuple[int, int, str]:
    return (0, int(guest.vmid), guest.name) if guest.vmid.isdigit() else (1, 0, guest.name)


def guests(recording: StackRecording) -> list[Guest]:
    """The stack's guests, by VMID."""
    found = (guest_of(resource) for resource in recording.resources)
    return sorted((g for g in found if g is not None), key=_vmid_key)


def _count(diagnostics: Iterable[Diagnostic], severity: str) -> int:
    return sum(1 for d in diagnostics if d.severity == severity)


def _summary(recording: StackRecording) -> str:
    resources = [r for r in recording.resources if r.type != STACK_TYPE]
    counts = {
        "resource": len(resources),
        "guest": len(guests(recording)),
        "read": len(recording.reads),
        "output": len(recording.outputs),
        "error": _count(recording.diagnostics, "error"),
        "warning": _count(recording.diagnostics, "warning"),
    }
    return ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for word, n in counts.items())


def _diagnostic_origin(diagnostic: Diagnostic) -> str:
    origin = diagnostic.source
    if diagnostic.policy_name:
        pack = f"{diagnostic.policy_pack}/" if diagnostic.policy_pack else ""
        origin += f" {pack}{diagnostic.policy_name}"
    if diagnostic.enforcement_level:
        origin += f", {diagnostic.enforcement_level}"
    return origin


# --- text ----------------------------------------------------------------------------------


def _node_label(resource: RecordedResource) -> str:
    guest = guest_of(resource)
    if guest is not None:
        details = [f"VMID {guest.vmid or '?'}", f"node {guest.node or '?'}"]
        if guest.addresses:
            details.append(", ".join(guest.addresses))
        return f"{guest.kind} {resource.name}  [{'  '.join(details)}]"
    label = f"{resource.type} {resource.name}"
    if resource.type.startswith("pulumi:providers:"):
        endpoint = _get(resource.inputs, "endpoint")
        if endpoint is not None:
            label += f"  [endpoint {display(endpoint)}]"
    return label


def _tree_lines(recording: StackRecording) -> list[str]:
    urns = {resource.urn for resource in recording.resources}
    children: dict[str | None, list[RecordedResource]] = {}
    for resource in recording.resources:
        parent = resource.parent if resource.parent in urns else None
        children.setdefault(parent, []).append(resource)
    lines: list[str] = []

    def walk(resource: RecordedResource, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(f"{prefix}{branch}{_node_label(resource)}")
        below = prefix if top else prefix + ("    " if last else "│   ")
        kids = children.get(resource.urn, [])
        for index, child in enumerate(kids):
            walk(child, below, index == len(kids) - 1, False)

    for root in children.get(None, []):
        walk(root, "  ", True, True)
    return lines


def render_text(recordings: Sequence[StackRecording]) -> str:
    blocks = []
    for recording in recordings:
        lines = [f"Stack {recording.stack} (project {recording.project}): {_summary(recording)}"]
        lines.extend(_tree_lines(recording))
        if recording.reads:
            lines.append("Reads:")
            lines.extend(f"  {read.type} {read.name} -> {read.id}" for read in recording.reads)
        if recording.outputs:
            lines.append("Outputs:")
            lines.extend(
                f"  {name} = {display(value)}" for name, value in sorted(recording.outputs.items())
            )
        if recording.diagnostics:
            lines.append("Diagnostics:")
            for diagnostic in recording.diagnostics:
                where = f" at {diagnostic.urn}" if diagnostic.urn else ""
                message = diagnostic.message.replace("\n", "\n      ")
                lines.append(
                    f"  {diagnostic.severity} ({_diagnostic_origin(diagnostic)}){where}: {message}"
                )
                if diagnostic.detail:
                    lines.extend(f"      {line}" for line in diagnostic.detail.splitlines())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


# --- JSON ----------------------------------------------------------------------------------


def _resource_json(resource: RecordedResource) -> dict[str, Any]:
    return {
        "urn": resource.urn,
        "type": resource.type,
        "name": resource.name,
        "parent": resource.parent,
        "dependencies": list(resource.dependencies),
        "propertyDependencies": {k: list(v) for k, v in resource.property_dependencies.items()},
        "provider": resource.provider,
        "inputs": mask_secrets(resource.inputs),
        "options": mask_secrets(resource.options),
    }


def _diagnostic_json(diagnostic: Diagnostic) -> dict[str, Any]:
    return {
        "severity": diagnostic.severity,
        "message": diagnostic.message,
        "source": diagnostic.source,
        "urn": diagnostic.urn,
        "policyPack": diagnostic.policy_pack,
        "policyName": diagnostic.policy_name,
        "enforcementLevel": diagnostic.enforcement_level,
        "detail": diagnostic.detail,
    }


def to_json_data(recordings: Sequence[StackRecording]) -> dict[str, Any]:
    """The JSON document as Python data, secrets already masked."""
    return {
        "stacks": [
            {
                "stack": recording.stack,
                "resources": [_resource_json(resource) for resource in recording.resources],
                "reads": [
                    {
                        "urn": read.urn,
                        "type": read.type,
                        "name": read.name,
                        "id": read.id,
                        "inputs": mask_secrets(read.inputs),
                    }
                    for read in recording.reads
                ],
                "outputs": mask_secrets(recording.outputs),
                "diagnostics": [_diagnostic_json(d) for d in recording.diagnostics],
            }
            for recording in recordings
        ]
    }


def render_json(recordings: Sequence[StackRecording]) -> str:
    return json.dumps(to_json_data(recordings), indent=2) + "\n"


# --- Markdown ------------------------------------------------------------------------------

# GitHub emoji shortcodes: plain ASCII here, icons in a job summary or PR comment.
_SEVERITY_ICON = {"error": ":x:", "warning": ":warning:", "info": ":information_source:"}


def _cell(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", "<br>") or " "


def render_markdown(recordings: Sequence[StackRecording]) -> str:
    """Per stack a table of guests and the diagnostics: a job summary or a PR comment."""
    lines = ["# Offline preview", ""]
    for recording in recordings:
        lines += [f"## Stack `{recording.stack}`", "", _summary(recording), ""]
        rows = guests(recording)
        if rows:
            lines += [
                "| VMID | Name | Kind | Node | Layer | Role | Addresses |",
                "|---:|---|---|---|---|---|---|",
            ]
            lines += [
                "| "
                + " | ".join(
                    _cell(text)
                    for text in (
                        g.vmid,
                        g.name,
                        g.kind,
                        g.node,
                        g.layer,
                        g.role,
                        ", ".join(g.addresses),
                    )
                )
                + " |"
                for g in rows
            ]
        else:
            lines.append("_No guests._")
        lines.append("")
        if recording.diagnostics:
            lines += ["### Diagnostics", ""]
            for d in recording.diagnostics:
                icon = _SEVERITY_ICON.get(d.severity, "")
                where = f" (`{d.urn}`)" if d.urn else ""
                first, _, rest = d.message.partition("\n")
                origin = _cell(_diagnostic_origin(d))
                lines.append(f"- {icon} **{d.severity}** ({origin}){where}: {_cell(first)}")
                more = "\n".join(part for part in (rest.strip(), d.detail or "") if part)
                if more:
                    lines += [
                        "  <details><summary>details</summary>",
                        "",
                        f"  <pre>{html.escape(more)}</pre>",
                        "  </details>",
                    ]
            lines.append("")
        else:
            lines += ["No diagnostics.", ""]
    return "\n".join(lines).rstrip() + "\n"


def render(recordings: Sequence[StackRecording], fmt: str) -> str:
    if fmt == "json":
        return render_json(recordings)
    if fmt == "markdown":
        return render_markdown(recordings)
    if fmt == "text":
        return render_text(recordings)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
