"""The committed config schemas and reference page match the configuration models."""

from __future__ import annotations

import json

import pytest

from tests.stack_configs import ROOT
from zlh_infra.tooling.reference import generated_files, stack_file_schema


@pytest.mark.parametrize("path", sorted(generated_files()), ids=str)
def test_committed_reference_is_current(path: object) -> None:
    expected = generated_files()[path]  # type: ignore[index]
    committed = (ROOT / str(path)).read_text()
    assert committed == expected, f"{path} is stale: run `python -m zlh_infra reference --write`"


def test_secret_fields_are_secure_objects_in_the_schema() -> None:
    schema = stack_file_schema("core")
    token = schema["properties"]["config"]["properties"]["zlh-infra:proxmoxApiToken"]
    assert json.dumps(token).count('"secure"') >= 1
    assert "password" not in json.dumps(token)


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_shipped_stack_files_follow_the_editor_schema(stack: str) -> None:
    import jsonschema
    import yaml

    schema = stack_file_schema(stack)
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(document)]
    assert errors == []
