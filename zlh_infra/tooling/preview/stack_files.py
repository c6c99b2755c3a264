"""Read ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml`` into the config map the engine hands a program.

The engine gives a program a flat map ``namespace:key -> string``: scalars as their
YAML text, objects and lists as JSON. ``secure:`` values are encrypted with the
stack's secrets provider, which is not reachable offline, so they become a visible
placeholder and their top-level key is marked secret like the engine marks it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zlh_infra.platform.topology import is_stack_name

#: What a ``secure:`` value reads as offline. Recognisable on purpose: never a real secret.
PLACEHOLDER_SECRET = "offline-placeholder-secret"

PROJECT_FILE_NAMES = ("Pulumi.yaml", "Pulumi.yml")

#: Keys of a ``Pulumi.yaml`` config entry that make it a declaration rather than a value.
_DECLARATION_KEYS = frozenset({"type", "description", "default", "value", "secret", "items"})


class StackFileError(Exception):
    """A project or stack file is missing or malformed: a configuration error."""


#: Far deeper than any stack file goes, far shallower than Python's recursion limit.
_MAX_DEPTH = 64


class _Refused(yaml.YAMLError):  # type: ignore[misc]
    """YAML that parses but that a stack file must not contain."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1
        self.message = message


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML 1.2 core-schema scalars, as the engine's YAML library reads them.

    PyYAML follows YAML 1.1, where ``yes``/``on`` are booleans and ``10:30`` is a
    base-60 integer; inside an object value that would change the JSON the program sees.

    Duplicate keys are refused, as the engine refuses them. So are anchors and aliases:
    stack files have no use for them, and refusing them outright (rather than bounding
    their expansion) is what keeps nested aliases from expanding into a huge document.
    Nesting is bounded too, so that reading a value cannot exhaust Python's stack.
    """

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, f"alias *{event.anchor} is not allowed")
        if getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, f"anchor &{event.anchor} is not allowed")
        if self.depth >= _MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {_MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            if key in first_line:
                raise _Refused(
                    key_node.start_mark,
                    f"duplicate key {key!r} (first at line {first_line[key]})",
                )
            first_line[key] = key_node.start_mark.line + 1
        return node


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))
    # base 0 reads the 0o / 0x prefixes but refuses a plain decimal with a leading zero.
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


@dataclass(frozen=True, slots=True)
class ProjectFile:
    """What the preview needs from ``Pulumi.yaml``."""

    name: str
    path: Path | None
    #: Project-level values and declared defaults, already in engine form.
    config: dict[str, str] = field(default_factory=dict)
    #: Keys among ``config`` declared ``secret: true``.
    secret_keys: frozenset[str] = frozenset()

    @classmethod
    def default(cls, name: str = "zlh-infra") -> ProjectFile:
        return cls(name=name, path=None)


@dataclass(frozen=True, slots=True)
class StackFile:
    """A stack's config as the engine would give it to the program."""

    stack: str
    path: Path
    config: dict[str, str]
    secret_keys: frozenset[str]
    #: Keys whose value (or part of it) is ``PLACEHOLDER_SECRET`` instead of the real secret.
    placeholder_keys: frozenset[str]
    #: The stack file's other top-level settings (secretsprovider, environment, ...).
    settings: dict[str, Any]


def find_project_file(directory: Path) -> Path | None:
    for name in PROJECT_FILE_NAMES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _read_yaml(path: Path) -> yaml.MappingNode | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StackFileError(f"{path}: file not found") from None
    except OSError as error:
        raise StackFileError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise StackFileError(
            f"{path}: line {line}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except _Refused as error:
        raise StackFileError(f"{path}: line {error.line}: {error.message}") from None
    except yaml.YAMLError as error:
        raise StackFileError(f"{path}: not valid YAML: {error}") from None
    if node is None:
        return None
    if not isinstance(node, yaml.MappingNode):
        raise StackFileError(f"{path}: expected a mapping at the top level")
    return node


def _construct(node: yaml.Node) -> Any:
    loader = _Loader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _entries(path: Path, node: yaml.MappingNode | None, where: str) -> list[tuple[str, yaml.Node]]:
    if node is None:
        return []
    result = []
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise StackFileError(f"{path}: {where}: keys must be plain strings")
        result.append((str(key_node.value), value_node))
    return result


def _section(path: Path, root: yaml.MappingNode | None, name: str) -> yaml.MappingNode | None:
    for key, value in _entries(path, root, "top level"):
        if key == name:
            if isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null":
                return None
            if not isinstance(value, yaml.MappingNode):
                raise StackFileError(f"{path}: {name!r} must be a mapping")
            return value
    return None


def _full_key(key: str, project: str) -> str:
    """A key without a namespace belongs to the project, as in ``pulumi config``."""
    return key if ":" in key else f"{project}:{key}"


def _is_secure(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("secure"), str)


def _replace_secure(value: Any) -> tuple[Any, bool]:
    """Swap every ``{secure: ...}`` for the placeholder; report whether there was one."""
    if _is_secure(value):
        return PLACEHOLDER_SECRET, True
    if isinstance(value, dict):
        found = False
        result = {}
        for key, item in value.items():
            result[str(key)], secret = _replace_secure(item)
            found |= secret
        return result, found
    if isinstance(value, list):
        items = [_replace_secure(item) for item in value]
        return [item for item, _ in items], any(secret for _, secret in items)
    return value, False


def _scalar_text(node: yaml.ScalarNode) -> str:
    """A top-level scalar is its text, as the engine reads it into a string."""
    return "" if node.tag == "tag:yaml.org,2002:null" else str(node.value)


def _to_json(value: Any) -> str:
    # Go's encoding/json: sorted keys, no spaces.
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def _engine_value(node: yaml.Node) -> tuple[str, bool]:
    """A config value node -> (engine string form, contains a secure value)."""
    if isinstance(node, yaml.ScalarNode):
        return _scalar_text(node), False
    value, secret = _replace_secure(_construct(node))
    if isinstance(value, str):  # the whole value was {secure: ...}
        return value, secret
    return _to_json(value), secret


def _plain_engine_value(value: Any) -> str:
    """A constructed ``Pulumi.yaml`` default -> engine string form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _to_json(value)
    return str(value)


def load_project(path: Path) -> ProjectFile:
    """Read the project name and its config values / declared defaults from ``Pulumi.yaml``."""
    root = _read_yaml(path)
    name_value = next((v for k, v in _entries(path, root, "top level") if k == "name"), None)
    if not isinstance(name_value, yaml.ScalarNode) or not _scalar_text(name_value):
        raise StackFileError(f"{path}: no project 'name'")
    name = _scalar_text(name_value)

    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key, node in _entries(path, _section(path, root, "config"), "config"):
        full_key = _full_key(key, name)
        value = _construct(node)
        if isinstance(value, dict) and value and set(value) <= _DECLARATION_KEYS:
            if "value" in value:
                chosen = value["value"]
            elif "default" in value:
                chosen = value["default"]
            else:
                continue
            config[full_key] = _plain_engine_value(chosen)
            if value.get("secret") is True:
                secret_keys.add(full_key)
        elif isinstance(node, yaml.ScalarNode):
            config[full_key] = _scalar_text(node)
        else:
            config[full_key] = _plain_engine_value(value)
    return ProjectFile(name=name, path=path, config=config, secret_keys=frozenset(secret_keys))


def stack_name_of(path: Path) -> str:
    """``Pulumi.<stack>.yaml`` -> ``<stack>``."""
    name = path.name
    for suffix in (".yaml", ".yml"):
        if name.startswith("Pulumi.") and name.endswith(suffix) and len(name) > 7 + len(suffix):
            return name[len("Pulumi.") : -len(suffix)]
    raise StackFileError(f"{path}: not named Pulumi.<stack>.yaml; name the stack explicitly")


def load_stack_file(
    path: Path, *, project: ProjectFile | str, stack: str | None = None
) -> StackFile:
    """Load a stack file, with the project's values for keys the stack does not set."""
    project_file = ProjectFile.default(project) if isinstance(project, str) else project
    root = _read_yaml(path)
    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    placeholders: set[str] = set()
    for key, node in _entries(path, _section(path, root, "config"), "config"):
        full_key = _full_key(key, project_file.name)
        value, secret = _engine_value(node)
        config[full_key] = value
        if secret:
            secret_keys.add(full_key)
            placeholders.add(full_key)
    for key, value in project_file.config.items():
        if key not in config:
            config[key] = value
            if key in project_file.secret_keys:
                secret_keys.add(key)
    settings = {
        key: _construct(node) for key, node in _entries(path, root, "top level") if key != "config"
    }
    return StackFile(
        stack=stack or stack_name_of(path),
        path=path,
        config=config,
        secret_keys=frozenset(secret_keys),
        placeholder_keys=frozenset(placeholders),
        settings=settings,
    )


def stack_files_in(root: Path, overrides: Sequence[tuple[str, Path]] = ()) -> dict[str, Path]:
    """Every ``Pulumi.<stack>.yaml`` in the project root, then the overrides."""
    files: dict[str, Path] = {}
    for path in sorted(root.glob("Pulumi.*.y*ml")):
        stack = path.name.split(".", 1)[1].rsplit(".", 1)[0]
        if path.suffix in (".yaml", ".yml") and is_stack_name(stack) and path.is_file():
            files.setdefault(stack, path)
    files.update(dict(overrides))
    return files
