"""The three output formats: structure, and no secret in clear text."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime import rpc

from tests.tooling.preview.preview_programs import API_TOKEN, PASSWORD, nested_platform
from zlh_infra.tooling.preview.recording import Diagnostic, StackRecording
from zlh_infra.tooling.preview.render import render, render_markdown, render_text, to_json_data
from zlh_infra.tooling.preview.runner import run_platform, run_stack
from zlh_infra.tooling.wire_values import SECRET_MASK

CORE_PASSWORD = "pbs-pass-9d1e"
CONFIG_SECRET = "cfg-secret-77aa"


def program() -> None:
    nested_platform()
    config = pulumi.Config("zlh-infra")
    pulumi.export("configSecret", config.require_secret("adminPassword"))
    pulumi.export("nested", {"inner": [config.require_secret("adminPassword")], "plain": "visible"})


@pytest.fixture(scope="module")
def recording() -> StackRecording:
    result = run_stack(
        "core",
        {"zlh-infra:adminPassword": CONFIG_SECRET},
        ["zlh-infra:adminPassword"],
        program,
        stack_outputs={"core": {"pbsPassword": CORE_PASSWORD, "coreNode": "zlh-core"}},
        secret_output_names={"core": ["pbsPassword"]},
    )
    result.diagnostics.append(
        Diagnostic("warning", "a | pipe\nsecond line", "policy", policy_name="p")
    )
    return result


def clear_secrets(recording: StackRecording) -> list[str]:
    password = next(r for r in recording.resources if r.name == "api-root")
    generated = rpc.unwrap_rpc_secret(password.outputs["result"])
    return [generated, API_TOKEN, CORE_PASSWORD, CONFIG_SECRET]


def test_the_recording_itself_holds_the_secrets_marked(recording: StackRecording) -> None:
    # Guards the test below: the secrets are there to leak, as sentinels.
    raw = json.dumps([r.inputs for r in recording.resources] + [recording.outputs])
    for secret in clear_secrets(recording):
        assert secret in raw
    assert rpc.is_rpc_secret(recording.outputs["configSecret"])
    assert rpc.is_rpc_secret(recording.outputs["nested"]["inner"][0])


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_no_format_prints_a_secret(recording: StackRecording, fmt: str) -> None:
    output = render([recording], fmt)
    for secret in clear_secrets(recording):
        assert secret not in output, f"{fmt} leaks {secret!r}"
    if fmt != "markdown":  # the Markdown summary shows no secret-bearing values at all
        assert SECRET_MASK in output


def test_json_shape(recording: StackRecording) -> None:
    data = json.loads(render([recording], "json"))
    assert list(data) == ["stacks"]
    (stack,) = data["stacks"]
    assert list(stack) == ["stack", "resources", "reads", "outputs", "diagnostics"]
    assert stack["stack"] == "core"
    for resource in stack["resources"]:
        assert list(resource) == [
            "urn",
            "type",
            "name",
            "parent",
            "dependencies",
            "propertyDependencies",
            "provider",
            "inputs",
            "options",
        ]
    api = next(r for r in stack["resources"] if r["name"] == "zpack-api")
    assert api["inputs"]["initialization"]["userAccount"]["password"] == SECRET_MASK
    assert api["inputs"]["vmId"] == 100.0
    assert api["options"]["protect"] is True
    provider = next(r for r in stack["resources"] if r["name"] == "core-host")
    assert provider["inputs"]["apiToken"] == SECRET_MASK
    assert stack["outputs"]["pbsPassword"] == SECRET_MASK
    assert stack["outputs"]["coreNode"] == "zlh-core"
    assert stack["reads"] == [
        {
            "urn": "urn:pulumi:core::zlh-infra::pulumi:pulumi:StackReference::core",
            "type": "pulumi:pulumi:StackReference",
            "name": "core",
            "id": "core",
            "inputs": {"name": "core"},
        }
    ]
    assert stack["diagnostics"][-1]["policyName"] == "p"
    assert data == to_json_data([recording])


def test_text_shows_the_tree_and_guests(recording: StackRecording) -> None:
    lines = render_text([recording]).splitlines()
    assert lines[0].startswith(
        "Stack core (project zlh-infra): 6 resources, 2 guests, 1 read, 6 outputs"
    )
    tree = "\n".join(lines)
    assert "  pulumi:pulumi:Stack zlh-infra-core" in lines
    layer = next(i for i, line in enumerate(lines) if "zlh:platform:Layer control-plane" in line)
    assert "zlh:platform:Service api" in lines[layer + 1]
    assert lines[layer + 1].index("zlh:platform") > lines[layer].index("zlh:platform")
    assert "container zpack-api  [VMID 100  node zlh-core  10.10.0.10/24]" in tree
    assert "[endpoint https://zlh-core.example.net:8006/]" in tree
    assert "  pbsPassword = [secret]" in lines
    assert '  nested = {"inner":["[secret]"],"plain":"visible"}' in lines
    assert "  warning (policy p): a | pipe" in lines


def test_markdown_table_and_diagnostics(recording: StackRecording) -> None:
    markdown = render_markdown([recording])
    assert "## Stack `core`" in markdown
    assert "| VMID | Name | Kind | Node | Layer | Role | Addresses |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| 1")]
    assert rows == [
        "| 100 | zpack-api | container | zlh-core | control-plane | core-infra | 10.10.0.10/24 |",
        "| 102 | zpack-db | container | zlh-core | control-plane | core-infra | 10.10.0.12/24 |",
    ]
    assert "- :warning: **warning** (policy p): a \\| pipe" in markdown
    assert "<pre>second line</pre>" in markdown


def test_unknown_format_is_refused(recording: StackRecording) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render([recording], "yaml")


# --- the real program on the repository's stack files -----------------------------------------


@pytest.fixture(scope="module")
def repository_preview() -> list[StackRecording]:
    pytest.importorskip("zlh_infra.program")
    root = Path(__file__).resolve().parents[3]
    files = {stack: root / f"Pulumi.{stack}.yaml" for stack in ("core", "runtime")}
    return run_platform(files, ["core", "runtime"], project_file=root / "Pulumi.yaml")


def generated_passwords(recordings: list[StackRecording]) -> list[str]:
    found = []
    for recording in recordings:
        for resource in recording.resources:
            if resource.type == PASSWORD:
                assert rpc.is_rpc_secret(resource.outputs["result"])
                found.append(rpc.unwrap_rpc_secret(resource.outputs["result"]))
    return found


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_repository_stacks_render_without_their_generated_passwords(
    repository_preview: list[StackRecording], fmt: str
) -> None:
    passwords = generated_passwords(repository_preview)
    assert passwords, "the program generates root passwords"
    output = render(repository_preview, fmt)
    assert not [p for p in passwords if p in output]
    errors = [d for r in repository_preview for d in r.diagnostics if d.severity == "error"]
    assert errors == []
