"""Plan diff: what changes between two JSON recordings of the offline preview.

``python -m zlh_infra diff BASE.json HEAD.json`` matches resources by URN (or by an alias
of the new one, as the engine does) and lists per stack what would be created, deleted,
updated or replaced, property by property. It stands in for ``pulumi preview`` where that
cannot run (a pull request without access to the backend): it compares what two versions
of the program register, so drift on the hosts does not show.

Secrets: the recordings are masked already; loading masks any wire secret left anyway,
and a change that touches a secret shows as ``[secret] changed``, never with a value.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from zlh_infra.policies.resources import GUEST_TYPES
from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.wire_values import SECRET_MASK, mask_secrets

FORMATS = ("text", "markdown")

#: Inputs the provider cannot change in place: a new value means a new resource. Only
#: what the program's guests use; ``replaceOnChanges`` options are honoured on top.
_GUEST_REPLACE_KEYS = frozenset({"vmId", "nodeName", "clone", "operatingSystem"})
REPLACE_KEYS: dict[str, frozenset[str]] = {guest: _GUEST_REPLACE_KEYS for guest in GUEST_TYPES}

#: Resource options whose change alters what the engine does with the resource.
OPTION_KEYS = ("protect", "retainOnDelete", "deleteBeforeReplace", "ignoreChanges")

#: An added or removed value (a whole object, say) is cut to this many characters.
_MAX_VALUE = 160


class PlanDiffError(ValueError):
    """A recording that cannot be read or is not a preview's JSON."""


class Action(StrEnum):
    CREATE = "create"
    REPLACE = "replace"
    UPDATE = "update"
    DELETE = "delete"
    #: Every change is in ``ignoreChanges``: the engine keeps the old values.
    IGNORE = "ignore"


SYMBOLS = {
    Action.CREATE: "+",
    Action.REPLACE: "+-",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.IGNORE: "=",
}

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Resource:
    urn: str
    type: str
    name: str
    inputs: dict[str, Any]
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    resources: dict[str, Resource]
    outputs: dict[str, Any]
    #: Error messages of the preview: its resource list may be incomplete.
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PropertyChange:
    """One property that differs. ``kind`` is added, removed or changed."""

    path: PathKey
    kind: str
    before: Any = None
    after: Any = None
    replaces: bool = False
    ignored: bool = False


@dataclass(frozen=True, slots=True)
class ResourceChange:
    action: Action
    urn: str
    type: str
    name: str
    changes: tuple[PropertyChange, ...] = ()
    renamed_from: str | None = None


@dataclass(slots=True)
class StackDiff:
    stack: str
    resources: list[ResourceChange] = field(default_factory=list)
    outputs: list[PropertyChange] = field(default_factory=list)
    #: Why the comparison may be incomplete (a missing or failed preview).
    notes: list[str] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for change in self.resources if change.action is action)


# --- loading -------------------------------------------------------------------------------


def parse_recording(data: Any, source: str = "recording") -> dict[str, Stack]:
    """The stacks of a preview's JSON document (``preview --format json``)."""
    stacks = data.get("stacks") if isinstance(data, dict) else None
    if not isinstance(stacks, list):
        raise PlanDiffError(f"{source}: not an offline preview's JSON (no 'stacks' list)")
    result: dict[str, Stack] = {}
    for index, stack in enumerate(stacks):
        try:
            resources = {
                r["urn"]: Resource(
                    urn=str(r["urn"]),
                    type=str(r["type"]),
                    name=str(r["name"]),
                    inputs=mask_secrets(r.get("inputs") or {}, name_unknowns=True),
                    options=mask_secrets(r.get("options") or {}, name_unknowns=True),
                )
                for r in stack["resources"]
            }
            errors = tuple(
                f"{d.get('source', 'program')} error: {str(d.get('message', '')).splitlines()[0]}"
                for d in stack.get("diagnostics", [])
                if d.get("severity") == "error" and d.get("source") != "policy"
            )
            result[str(stack["stack"])] = Stack(
                name=str(stack["stack"]),
                resources=resources,
                outputs=mask_secrets(stack.get("outputs") or {}, name_unknowns=True),
                errors=errors,
            )
        except (KeyError, TypeError, AttributeError, IndexError) as error:
            raise PlanDiffError(f"{source}: stack #{index} is malformed ({error!r})") from None
    return result


def load_recording(path: Path) -> dict[str, Stack]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanDiffError(f"cannot read {path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise PlanDiffError(f"{path}: not JSON ({error})") from None
    return parse_recording(data, str(path))


# --- property paths ------------------------------------------------------------------------

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][\w-]*$")
_PATTERN_TOKEN = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+|\*)\]|([^.\[\]]+)')


def format_path(path: PathKey) -> str:
    """``initialization.ipConfigs[0].ipv4.address``; odd keys as ``["a.b"]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def parse_pattern(pattern: str) -> PathKey:
    """A Pulumi property path (``triggers[*]``, ``a.b[0]``, ``a["b.c"]``) as parts."""
    parts: list[str | int] = []
    for quoted, index, name in _PATTERN_TOKEN.findall(pattern):
        if index:
            parts.append("*" if index == "*" else int(index))
        else:
            parts.append(quoted or name)
    return tuple(parts)


def _covers(pattern: PathKey, path: PathKey) -> bool:
    """Whether ``pattern`` names ``path`` or a property that contains it."""
    if len(pattern) > len(path):
        return False
    return all(want == "*" or want == got for want, got in zip(pattern, path, strict=False))


def _touches(pattern: PathKey, path: PathKey) -> bool:
    """Whether a change at ``path`` changes what ``pattern`` names (either contains the other)."""
    return all(want == "*" or want == got for want, got in zip(pattern, path, strict=False))


# --- comparing -----------------------------------------------------------------------------


def _same(before: Any, after: Any) -> bool:
    # True == 1 in Python; a recording's JSON keeps them apart.
    if isinstance(before, bool) or isinstance(after, bool):
        return type(before) is type(after) and before == after
    if isinstance(before, dict) and isinstance(after, dict):
        return before.keys() == after.keys() and all(_same(before[k], after[k]) for k in before)
    if isinstance(before, list) and isinstance(after, list):
        return len(before) == len(after) and all(map(_same, before, after))
    return bool(before == after) and isinstance(before, str) == isinstance(after, str)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def diff_values(before: Any, after: Any, path: PathKey = ()) -> Iterator[PropertyChange]:
    """Every property that differs, as deep as both sides are objects or lists."""
    if _same(before, after):
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys()):
            if key not in after:
                yield PropertyChange((*path, key), "removed", before=before[key])
            elif key not in before:
                yield PropertyChange((*path, key), "added", after=after[key])
            else:
                yield from diff_values(before[key], after[key], (*path, key))
    elif isinstance(before, list) and isinstance(after, list):
        yield from _diff_lists(before, after, path)
    else:
        yield PropertyChange(path, "changed", before=before, after=after)


def _diff_lists(before: list[Any], after: list[Any], path: PathKey) -> Iterator[PropertyChange]:
    """Align the items first, so one inserted rule is one added item, not every index."""
    matcher = difflib.SequenceMatcher(
        a=[_canonical(v) for v in before], b=[_canonical(v) for v in after], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        paired = min(i2 - i1, j2 - j1)
        for offset in range(paired):
            yield from diff_values(before[i1 + offset], after[j1 + offset], (*path, j1 + offset))
        for index in range(i1 + paired, i2):
            yield PropertyChange((*path, index), "removed", before=before[index])
        for index in range(j1 + paired, j2):
            yield PropertyChange((*path, index), "added", after=after[index])


def _patterns(options: Mapping[str, Any], key: str) -> list[PathKey]:
    values = options.get(key)
    return (
        [parse_pattern(v) for v in values if isinstance(v, str)] if isinstance(values, list) else []
    )


def _classify(
    change: PropertyChange, resource: Resource, ignore: list[PathKey], replace_on: list[PathKey]
) -> PropertyChange:
    replace_keys = REPLACE_KEYS.get(resource.type, frozenset())
    ignored = any(_covers(pattern, change.path) for pattern in ignore)
    replaces = not ignored and (
        (bool(change.path) and change.path[0] in replace_keys)
        or any(_touches(pattern, change.path) for pattern in replace_on)
    )
    return PropertyChange(
        change.path, change.kind, change.before, change.after, replaces=replaces, ignored=ignored
    )


def diff_resource(base: Resource, head: Resource) -> ResourceChange | None:
    """The change from ``base`` to ``head`` (the same resource), or None if there is none."""
    ignore = _patterns(head.options, "ignoreChanges")
    replace_on = _patterns(head.options, "replaceOnChanges")
    changes = [
        _classify(change, head, ignore, replace_on)
        for change in diff_values(base.inputs, head.inputs)
    ]
    option_changes = diff_values(
        {key: base.options.get(key) for key in OPTION_KEYS},
        {key: head.options.get(key) for key in OPTION_KEYS},
        ("options",),
    )
    changes += option_changes
    renamed = base.urn if base.urn != head.urn else None
    if not changes and renamed is None:
        return None
    if any(c.replaces for c in changes):
        action = Action.REPLACE
    elif renamed is not None or any(not c.ignored for c in changes):
        action = Action.UPDATE
    else:
        action = Action.IGNORE
    return ResourceChange(action, head.urn, head.type, head.name, tuple(changes), renamed)


def _pair_by_alias(base: Mapping[str, Resource], head: Mapping[str, Resource]) -> dict[str, str]:
    """Head URN -> base URN for resources renamed with an alias (the engine's rule)."""
    pairs: dict[str, str] = {}
    taken: set[str] = set()
    for urn, resource in head.items():
        if urn in base:
            continue
        aliases = resource.options.get("aliases")
        for alias in aliases if isinstance(aliases, list) else []:
            if (
                isinstance(alias, str)
                and alias in base
                and alias not in head
                and alias not in taken
            ):
                pairs[urn] = alias
                taken.add(alias)
                break
    return pairs


_ORDER = list(Action)


def diff_stack(name: str, base: Stack | None, head: Stack | None) -> StackDiff:
    result = StackDiff(name)
    base_resources = base.resources if base else {}
    head_resources = head.resources if head else {}
    if base is None:
        result.notes.append("not in the base recording: every resource is new")
    if head is None:
        result.notes.append("not in the head recording: every resource would go")
    for label, stack in (("base", base), ("head", head)):
        for error in stack.errors if stack else ():
            result.notes.append(
                f"the {label} preview failed, its resources may be missing: {error}"
            )

    renamed = _pair_by_alias(base_resources, head_resources)
    matched = set(renamed.values())
    changes: list[ResourceChange] = []
    for urn, resource in head_resources.items():
        before = base_resources.get(renamed.get(urn, urn))
        if before is None:
            changes.append(ResourceChange(Action.CREATE, urn, resource.type, resource.name))
            continue
        change = diff_resource(before, resource)
        if change is not None:
            changes.append(change)
    for urn, resource in base_resources.items():
        if urn not in head_resources and urn not in matched:
            changes.append(ResourceChange(Action.DELETE, urn, resource.type, resource.name))
    # Grouped by action, each group in the recordings' (dependency) order.
    result.resources = sorted(changes, key=lambda change: _ORDER.index(change.action))
    result.outputs = list(diff_values(base.outputs if base else {}, head.outputs if head else {}))
    return result


def diff_recordings(base: Mapping[str, Stack], head: Mapping[str, Stack]) -> list[StackDiff]:
    """Per stack (head's order, then stacks only the base has), what would change."""
    names = [*head, *(name for name in base if name not in head)]
    return [diff_stack(name, base.get(name), head.get(name)) for name in names]


# --- rendering -----------------------------------------------------------------------------


def _contains_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_contains_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_secret(item) for item in value)
    return bool(value == SECRET_MASK)


def _show(value: Any, limit: int | None = None) -> str:
    """One value on one line: plain strings bare, numbers as people write them."""
    if isinstance(value, str) and value and value.strip() == value and "\n" not in value:
        text = value
    else:
        text = json.dumps(_integral(value), sort_keys=True, separators=(",", ":"))
    return text if limit is None or len(text) <= limit else f"{text[: limit - 3]}..."


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def change_lines(change: PropertyChange) -> list[str]:
    """A property change for people; the first line names the property."""
    path = format_path(change.path) or "(value)"
    if change.replaces:
        note = "  (forces replacement)"
    elif change.ignored:
        note = "  (ignored: ignoreChanges)"
    else:
        note = ""
    # Neither side of a change that touches a secret is shown: the other side of
    # ``"[secret]" -> "abc"`` would be the value that was (or becomes) secret.
    if _contains_secret(change.before) or _contains_secret(change.after):
        return [f"{path}: {SECRET_MASK} {change.kind}{note}"]
    if change.kind == "added":
        return [f"{path}: added {_show(change.after, _MAX_VALUE)}{note}"]
    if change.kind == "removed":
        return [f"{path}: removed {_show(change.before, _MAX_VALUE)}{note}"]
    before, after = change.before, change.after
    if isinstance(before, str) and isinstance(after, str) and "\n" in before + after:
        diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1)
        return [f"{path}: changed{note}", *(f"    {line}" for line in list(diff)[2:])]
    return [f"{path}: {_show(before)} -> {_show(after)}{note}"]


def _summary(diff: StackDiff) -> str:
    words = {
        Action.CREATE: "to create",
        Action.REPLACE: "to replace",
        Action.UPDATE: "to update",
        Action.DELETE: "to delete",
        Action.IGNORE: "with ignored changes only",
    }
    parts = [f"{diff.count(a)} {words[a]}" for a in Action if diff.count(a)]
    if diff.outputs:
        parts.append(f"{len(diff.outputs)} output change{'' if len(diff.outputs) == 1 else 's'}")
    return ", ".join(parts) or "no changes"


def _headline(change: ResourceChange) -> str:
    text = f"{change.type} {change.name}"
    if change.action is Action.REPLACE:
        forced = sorted({format_path(c.path[:1]) for c in change.changes if c.replaces})
        text += f"  (replace: {', '.join(forced)})"
    return text


def _detail_lines(change: ResourceChange) -> list[str]:
    lines = [f"renamed from {change.renamed_from}"] if change.renamed_from else []
    for prop in change.changes:
        lines += change_lines(prop)
    return lines


def render_text(diffs: Sequence[StackDiff]) -> str:
    blocks = []
    for diff in diffs:
        lines = [f"Stack {diff.stack}: {_summary(diff)}"]
        lines += [f"  ! {note}" for note in diff.notes]
        for change in diff.resources:
            symbol = SYMBOLS[change.action]
            lines.append(f"  {symbol:<2} {change.action:<7} {_headline(change)}")
            lines += [f"        {line}" for line in _detail_lines(change)]
        if diff.outputs:
            lines.append("  Outputs:")
            for prop in diff.outputs:
                lines += [f"        {line}" for line in change_lines(prop)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _code(text: str) -> str:
    """Inline code that survives backticks inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fenced(lines: Sequence[str], indent: str = "") -> list[str]:
    longest = max((len(run) for line in lines for run in re.findall(r"`{3,}", line)), default=2)
    fence = "`" * (longest + 1)
    return [f"{indent}{fence}", *(f"{indent}{line}" for line in lines), f"{indent}{fence}"]


def render_markdown(diffs: Sequence[StackDiff]) -> str:
    lines = [
        "# Plan diff",
        "",
        "What changes from the base recording of the offline preview to the head one, per "
        "stack (resources matched by URN). It compares what the program registers, so drift "
        "on the hosts does not show. Secrets show as `[secret]`.",
        "",
    ]
    for diff in diffs:
        lines += [f"## Stack {_code(diff.stack)}: {_summary(diff)}", ""]
        lines += [f"> :warning: {note}" for note in diff.notes]
        if diff.notes:
            lines.append("")
        for change in diff.resources:
            headline = (
                f"- {_code(SYMBOLS[change.action])} **{change.action}** {_code(change.name)} "
                f"({_code(change.type)})"
            )
            if change.action is Action.REPLACE:
                forced = sorted({format_path(c.path[:1]) for c in change.changes if c.replaces})
                headline += ", forced by " + ", ".join(_code(key) for key in forced)
            lines.append(headline)
            details = _detail_lines(change)
            if details:
                lines += ["", *_fenced(details, "  "), ""]
        if diff.outputs:
            outputs = [line for prop in diff.outputs for line in change_lines(prop)]
            lines += ["", "Outputs:", "", *_fenced(outputs), ""]
        lines.append("")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def render(diffs: Sequence[StackDiff], fmt: str) -> str:
    if fmt == "markdown":
        return render_markdown(diffs)
    if fmt == "text":
        return render_text(diffs)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --- command line --------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "diff",
        help="compare two JSON recordings of the offline preview (a plan diff)",
        description="Compare two `preview --format json` recordings, e.g. of the main branch "
        "and of a pull request, and show per stack what would be created, deleted, updated "
        "or replaced, property by property. Secrets stay masked. Exits 0 whatever the "
        "changes, 2 on a usage error or an unreadable recording.",
    )
    parser.add_argument("base", type=Path, metavar="BASE.json", help="the recording compared from")
    parser.add_argument("head", type=Path, metavar="HEAD.json", help="the recording compared to")
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the output to FILE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        diffs = diff_recordings(load_recording(args.base), load_recording(args.head))
    except PlanDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    output = render(diffs, args.format)
    if args.output is None:
        sys.stdout.write(output)
        return ExitCode.OK
    try:
        args.output.write_text(output, encoding="utf-8")
    except OSError as error:
        print(f"error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return ExitCode.USAGE
    return ExitCode.OK
