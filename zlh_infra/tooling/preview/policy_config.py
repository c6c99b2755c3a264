"""Policy pack configuration, merged and validated the way ``pulumi preview`` does it.

The engine, not the pack, owns policy configuration (``pkg/resource/analyzer/config.go``):
every policy starts from its own enforcement level and the ``default`` of each property
in its config schema, then the pack's ``initial_config`` is applied, then the
``--policy-pack-config`` file. ``"all"`` sets the enforcement level of every policy before
per-policy entries apply. The result is validated against each policy's JSON schema, into
which the engine injects an ``enforcementLevel`` property.

Stricter than the engine in one way: a ``--policy-pack-config`` entry naming no policy of
the pack (other than ``"all"``) is refused. The engine keeps it and nothing ever reads
it, so a misspelt name would leave the policy it meant at its defaults unnoticed.

One engine behaviour is kept on purpose because a real preview has it too: the Python
policy SDK sends ``initial_config`` entries without an ``enforcementLevel`` as level 0,
which is ``advisory``, so such an entry turns a mandatory policy advisory. Always give
``enforcementLevel`` in ``initial_config`` entries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

#: Enforcement levels the engine accepts (``apitype.EnforcementLevel.IsValid``).
ENFORCEMENT_LEVELS = ("advisory", "mandatory", "remediate", "disabled")


class PolicyConfigError(ValueError):
    """The policy configuration is unreadable or does not match a policy's schema."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(slots=True)
class PolicyConfig:
    """One policy's configuration: an enforcement level and its properties."""

    enforcement_level: str
    properties: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"enforcementLevel": self.enforcement_level, **self.properties}


@dataclass(slots=True)
class PolicySpec:
    """What the pack says about one policy (from ``GetAnalyzerInfo``)."""

    name: str
    enforcement_level: str
    #: JSON schema per property; None when the pack does not support config.
    schema_properties: dict[str, Any] | None = None
    required: list[str] = field(default_factory=list)


def parse_policy_config(data: Any, *, source: str) -> dict[str, PolicyConfig]:
    """Parse a ``--policy-pack-config`` document (engine: ``parsePolicyPackConfig``).

    Each entry is an enforcement level string or an object holding an optional
    ``enforcementLevel`` and the policy's properties. Empty entries are dropped.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyConfigError([f"{source}: policy config must be a JSON object"])
    result: dict[str, PolicyConfig] = {}
    errors: list[str] = []
    for name, value in data.items():
        if isinstance(value, str):
            if value not in ENFORCEMENT_LEVELS:
                errors.append(
                    f"{source}: parsing enforcement level for {name!r}: "
                    f"{value!r} is not a valid enforcement level"
                )
                continue
            result[name] = PolicyConfig(value)
        elif isinstance(value, dict):
            props = dict(value)
            level = props.pop("enforcementLevel", "")
            if level != "" and level not in ENFORCEMENT_LEVELS:
                errors.append(
                    f"{source}: parsing enforcement level for {name!r}: "
                    f"{level!r} is not a valid enforcement level"
                )
                continue
            if level or props:
                result[name] = PolicyConfig(level, props)
        else:
            errors.append(
                f"{source}: parsing {name!r}: {value!r} is not a valid value; "
                "must be a string or object"
            )
    if errors:
        raise PolicyConfigError(errors)
    return result


def load_policy_config_file(path: Path) -> dict[str, PolicyConfig]:
    """Read a ``--policy-pack-config`` JSON file; an empty file means no config."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyConfigError([f"{path}: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyConfigError(
            [f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyConfigError([f"{path}: invalid JSON: {exc}"]) from exc
    return parse_policy_config(data, source=str(path))


def _apply(result: dict[str, PolicyConfig], given: Mapping[str, PolicyConfig]) -> None:
    # Engine ``applyConfig``: "all" only ever sets the level; it is also kept as an
    # entry of its own, which the engine then sends to the pack like any other.
    everything = given.get("all")
    if everything is not None and everything.enforcement_level in ENFORCEMENT_LEVELS:
        for entry in result.values():
            entry.enforcement_level = everything.enforcement_level
    for name, cfg in given.items():
        current = result.get(name)
        level = current.enforcement_level if current else ""
        props = dict(current.properties) if current else {}
        if cfg.enforcement_level in ENFORCEMENT_LEVELS:
            level = cfg.enforcement_level
        props.update(cfg.properties)
        result[name] = PolicyConfig(level, props)


def reconcile_policy_config(
    policies: list[PolicySpec],
    initial: Mapping[str, PolicyConfig],
    given: Mapping[str, PolicyConfig],
    *,
    pack: str = "",
    version: str = "",
) -> dict[str, PolicyConfig]:
    """Defaults, then ``initial``, then ``given``; raise PolicyConfigError if invalid."""
    known = [policy.name for policy in policies]
    unknown = sorted(set(given) - {*known, "all"})
    if unknown:
        raise PolicyConfigError(
            [
                f"validating policy config: {pack} {version}  unknown policy {name!r}; "
                f"the pack's policies are {', '.join(sorted(known))} (or 'all')"
                for name in unknown
            ]
        )
    result: dict[str, PolicyConfig] = {}
    for policy in policies:
        defaults = {
            key: schema["default"]
            for key, schema in (policy.schema_properties or {}).items()
            if isinstance(schema, dict) and "default" in schema
        }
        result[policy.name] = PolicyConfig(policy.enforcement_level, defaults)
    _apply(result, initial)
    _apply(result, given)

    errors: list[str] = []
    for policy in policies:
        if policy.schema_properties is None:
            continue
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                **policy.schema_properties,
                "enforcementLevel": {
                    "type": "string",
                    "enum": list(ENFORCEMENT_LEVELS),
                },
            },
        }
        if policy.required:
            schema["required"] = list(policy.required)
        validator = jsonschema.Draft7Validator(schema)
        props = result[policy.name].properties
        for err in sorted(validator.iter_errors(props), key=lambda e: list(e.absolute_path)):
            errors.append(
                f"validating policy config: {pack} {version}  {policy.name}: {_describe(err)}"
            )
    if errors:
        raise PolicyConfigError(sorted(errors))
    return result


def _describe(err: jsonschema.ValidationError) -> str:
    path = list(err.absolute_path)
    if path:
        prop = ".".join(str(p) for p in path)
        return f"property {prop!r}: {err.message}"
    if err.validator == "required":
        return f"property {err.message}"
    return str(err.message)
