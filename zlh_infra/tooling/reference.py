"""Generated reference for the stack configuration: JSON schemas and a Markdown table.

Both come from the pydantic models, so the editor schema, the docs and the checks
the program runs cannot drift apart; a test compares the committed files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from zlh_infra.config import NAMESPACE, CoreStackConfig, RuntimeStackConfig

MODELS: dict[str, type[BaseModel]] = {"core": CoreStackConfig, "runtime": RuntimeStackConfig}
SCHEMA_DIR = Path("schema")
CONFIG_DOC = Path("docs/reference/configuration.md")

_SECURE = {
    "type": "object",
    "description": "An encrypted value: `pulumi config set --secret ...` writes it.",
    "properties": {"secure": {"type": "string"}},
    "required": ["secure"],
    "additionalProperties": False,
}


def _secret_to_secure(node: Any) -> Any:
    """Pydantic shows a SecretStr as a write-only string; in a stack file it is ``secure:``."""
    if isinstance(node, dict):
        if node.get("format") == "password":
            return {**_SECURE, "description": node.get("description", _SECURE["description"])}
        return {key: _secret_to_secure(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_secret_to_secure(value) for value in node]
    return node


def stack_file_schema(stack_kind: str) -> dict[str, Any]:
    """A JSON schema for ``Pulumi.<stack>.yaml`` of ``stack_kind`` (core or runtime)."""
    model = MODELS[stack_kind]
    schema = _secret_to_secure(model.model_json_schema(by_alias=True))
    config_properties = {
        f"{NAMESPACE}:{name}": value for name, value in schema.get("properties", {}).items()
    }
    config_properties["pulumi:disable-default-providers"] = {
        "type": "array",
        "items": {"type": "string"},
        "description": 'Keep ["*"]: every resource uses the stack\'s explicit providers.',
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Pulumi.{stack_kind}.yaml ({NAMESPACE})",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": config_properties,
                "required": [f"{NAMESPACE}:{name}" for name in schema.get("required", [])],
                "additionalProperties": False,
            },
            "encryptionsalt": {"type": "string"},
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
        },
        "$defs": schema.get("$defs", {}),
    }


def configuration_markdown() -> str:
    """One table per stack kind: key, type, required, default, description."""
    lines = [
        "# Stack configuration reference",
        "",
        "Generated from the program's configuration models by "
        "`python -m zlh_infra reference --write`; do not edit by hand.",
        "Every key is in the `zlh-infra` namespace (`pulumi config set zlh-infra:<key> ...`,",
        "or structured values in `Pulumi.<stack>.yaml`). Nested objects are described under",
        "their type below each table.",
        "",
    ]
    for stack_kind, model in MODELS.items():
        lines += [f"## `{stack_kind}` stacks", ""]
        lines += _model_table(model)
        for nested in _nested_models(model):
            lines += ["", f"### `{nested.__name__}`", ""]
            lines += _model_table(nested)
        lines.append("")
    return "\n".join(lines)


def _model_table(model: type[BaseModel]) -> list[str]:
    rows = ["| key | type | required | default | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        alias = field.alias or name
        annotation = _type_name(field.annotation)
        default = "" if field.is_required() else f"`{_default(field.default)}`"
        description = field.description or ""
        rows.append(
            f"| `{alias}` | {annotation} | {'yes' if field.is_required() else 'no'} "
            f"| {default} | {description} |"
        )
    return rows


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json", by_alias=True))
    return json.dumps(value, default=str)


def _type_name(annotation: Any) -> str:
    return f"`{_describe_type(annotation)}`"


def _describe_type(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _describe_type(args[0])
    if origin in (Union, UnionType):
        return " or ".join(_describe_type(arg) for arg in args if arg is not type(None))
    if origin is Literal:
        return " / ".join(json.dumps(arg) for arg in args)
    if origin in (dict, Mapping):
        return f"map of {_describe_type(args[1])}"
    if origin in (list, tuple, frozenset, set):
        return f"list of {_describe_type(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for argument in getattr(annotation, "__args__", ()):
            visit(argument)

    for field in model.model_fields.values():
        visit(field.annotation)
    return found


def generated_files() -> dict[Path, str]:
    files = {
        SCHEMA_DIR / f"{kind}.schema.json": json.dumps(stack_file_schema(kind), indent=2) + "\n"
        for kind in MODELS
    }
    files[CONFIG_DOC] = configuration_markdown()
    return files


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "reference",
        help="check or rewrite the generated config schemas and reference page",
        description="Compare schema/*.schema.json and docs/reference/configuration.md with "
        "what the configuration models generate; --write rewrites them.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the generated files")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    stale = []
    for path, content in generated_files().items():
        target = args.root / path
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == content:
            continue
        if args.write:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
        else:
            stale.append(str(path))
    if stale:
        print("stale: " + ", ".join(stale) + " (run with --write)", file=sys.stderr)
        return 1
    return 0
