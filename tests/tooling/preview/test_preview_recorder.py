"""The recording monitor: engine URNs, duplicates, the raw request, secrets, stack references."""

from __future__ import annotations

import pulumi
import pulumi_proxmoxve as pve
import pytest
from pulumi.runtime import rpc

from tests.tooling.preview.preview_programs import (
    API_TOKEN,
    CONTAINER,
    PASSWORD,
    STACK,
    Layer,
    Service,
    container,
    nested_platform,
)
from zlh_infra.platform.urns import provider_urn
from zlh_infra.tooling.preview.recorder import engine_urn
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording
from zlh_infra.tooling.preview.runner import run_stack

CORE_OUTPUTS = {"core": {"pbsPassword": "pbs-pass-9d1e", "coreNode": "zlh-core"}}
CORE_SECRETS = {"core": ["pbsPassword"]}


@pytest.fixture(scope="module")
def platform() -> StackRecording:
    return run_stack(
        "core",
        {"zlh-infra:greeting": "hello"},
        [],
        nested_platform,
        stack_outputs=CORE_OUTPUTS,
        secret_output_names=CORE_SECRETS,
    )


def by_name(recording: StackRecording, name: str, type_: str | None = None) -> RecordedResource:
    matches = [
        r for r in recording.resources if r.name == name and (type_ is None or r.type == type_)
    ]
    assert len(matches) == 1, [r.urn for r in recording.resources]
    return matches[0]


def test_engine_urn_keeps_the_whole_parent_chain_and_drops_the_stack(
    platform: StackRecording,
) -> None:
    prefix = "urn:pulumi:core::zlh-infra::"
    assert by_name(platform, "control-plane").urn == prefix + "zlh:platform:Layer::control-plane"
    assert by_name(platform, "api").urn == prefix + "zlh:platform:Layer$zlh:platform:Service::api"
    assert by_name(platform, "zpack-api").urn == (
        prefix + f"zlh:platform:Layer$zlh:platform:Service${CONTAINER}::zpack-api"
    )
    assert by_name(platform, "api-root").urn == (
        prefix + f"zlh:platform:Layer$zlh:platform:Service${PASSWORD}::api-root"
    )
    assert by_name(platform, "zpack-db").urn == prefix + f"{CONTAINER}::zpack-db"
    assert by_name(platform, "core-host").urn == prefix + "pulumi:providers:proxmoxve::core-host"
    assert platform.resources[0].urn == STACK.format(stack="core")


def test_engine_urn_function() -> None:
    stack = STACK.format(stack="s")
    parent = engine_urn("s", "p", stack, "a:b:C", "outer")
    assert parent == "urn:pulumi:s::p::a:b:C::outer"
    child = engine_urn("s", "p", parent, "d:e:F", "in::ner")
    assert child == "urn:pulumi:s::p::a:b:C$d:e:F::in::ner"
    assert engine_urn("s", "p", child, "g:h:I", "x") == "urn:pulumi:s::p::a:b:C$d:e:F$g:h:I::x"
    assert provider_urn("urn:pulumi:s::p::pulumi:providers:proxmoxve::host::host-id") == (
        "urn:pulumi:s::p::pulumi:providers:proxmoxve::host"
    )
    assert provider_urn("") is None


def test_parent_dependencies_property_dependencies_and_provider(platform: StackRecording) -> None:
    api = by_name(platform, "zpack-api")
    service = by_name(platform, "api")
    db = by_name(platform, "zpack-db")
    password = by_name(platform, "api-root")
    provider = by_name(platform, "core-host")

    assert api.parent == service.urn
    assert service.parent == by_name(platform, "control-plane").urn
    assert db.parent == STACK.format(stack="core")
    assert api.provider == provider.urn  # the reference's "::<id>" is stripped
    assert service.provider is None
    assert set(api.dependencies) == {db.urn, password.urn}
    assert api.property_dependencies["initialization"] == [password.urn]
    assert api.property_dependencies["vmId"] == []
    assert api.custom and not service.custom


def test_options_in_the_shape_a_policy_pack_gets(platform: StackRecording) -> None:
    api = by_name(platform, "zpack-api")
    service = by_name(platform, "api")
    assert api.options == {
        "protect": True,
        "ignoreChanges": ["description"],
        "deleteBeforeReplace": True,
        "additionalSecretOutputs": [],
        "aliases": [
            f"urn:pulumi:core::zlh-infra::zlh:platform:Layer$zlh:platform:Service${CONTAINER}::old-api"
        ],
        "customTimeouts": {"create": 300.0, "update": 0.0, "delete": 5400.0},
        "retainOnDelete": True,
        "replaceOnChanges": ["vmId"],
        "parent": service.urn,
    }
    assert by_name(platform, "api-root").options["additionalSecretOutputs"] == [
        "bcryptHash",
        "result",
    ]
    assert by_name(platform, "zpack-db").options["customTimeouts"] is None


def test_inputs_stay_in_wire_form(platform: StackRecording) -> None:
    api = by_name(platform, "zpack-api")
    assert api.inputs["vmId"] == 100.0 and isinstance(api.inputs["vmId"], float)
    assert api.inputs["nodeName"] == "zlh-core"
    assert api.inputs["initialization"]["ipConfigs"][0]["ipv4"]["address"] == "10.10.0.10/24"
    token = by_name(platform, "core-host").inputs["apiToken"]
    assert rpc.is_rpc_secret(token) and rpc.unwrap_rpc_secret(token) == API_TOKEN


def test_random_password_result_stays_secret(platform: StackRecording) -> None:
    password = by_name(platform, "api-root")
    result = password.outputs["result"]
    assert rpc.is_rpc_secret(result)
    clear = rpc.unwrap_rpc_secret(result)
    assert isinstance(clear, str) and len(clear) == 24
    # Secret where it flows into another resource, and in the stack's exports.
    user = by_name(platform, "zpack-api").inputs["initialization"]["userAccount"]
    assert rpc.is_rpc_secret(user["password"]) and user["password"]["value"] == clear
    assert rpc.is_rpc_secret(platform.outputs["apiPassword"])
    assert platform.outputs["apiPassword"]["value"] == clear


def test_stack_reference_is_a_read_answered_from_known_outputs(platform: StackRecording) -> None:
    assert [(r.type, r.name, r.id) for r in platform.reads] == [
        ("pulumi:pulumi:StackReference", "core", "core")
    ]
    assert platform.outputs["coreNode"] == "zlh-core"
    assert rpc.is_rpc_secret(platform.outputs["pbsPassword"])
    assert rpc.unwrap_rpc_secret(platform.outputs["pbsPassword"]) == "pbs-pass-9d1e"
    assert platform.outputs["apiVmid"] == 100.0
    assert platform.outputs["greeting"] == "hello"
    assert not platform.diagnostics


def test_stack_reference_matches_on_the_last_path_segment() -> None:
    recording = run_stack(
        "runtime",
        {"zlh-infra:coreStack": "acme/zlh-infra/core"},
        [],
        nested_platform,
        stack_outputs=CORE_OUTPUTS,
        secret_output_names=CORE_SECRETS,
    )
    assert recording.reads[0].id == "acme/zlh-infra/core"
    assert recording.outputs["coreNode"] == "zlh-core"


def test_unknown_stack_reference_is_answered_empty_with_a_warning() -> None:
    recording = run_stack("core", {}, [], nested_platform)
    assert "coreNode" not in recording.outputs  # a None export is not serialised
    warnings = [d for d in recording.diagnostics if d.severity == "warning"]
    assert len(warnings) == 1 and "'core'" in warnings[0].message


def test_duplicate_urns_are_refused_not_overwritten() -> None:
    def program() -> None:
        container("zlh-dns", 104, "10.10.0.2/24")
        container("zlh-dns", 105, "10.10.0.3/24")
        # The same name under another parent is another URN: allowed.
        container("zlh-dns", 106, "10.10.0.4/24", opts=pulumi.ResourceOptions(parent=Layer("edge")))

    recording = run_stack("core", {}, [], program)
    urn = f"urn:pulumi:core::zlh-infra::{CONTAINER}::zlh-dns"
    top = [r for r in recording.resources if r.urn == urn]
    assert len(top) == 1 and top[0].inputs["vmId"] in (104.0, 105.0)
    errors = [d for d in recording.diagnostics if d.severity == "error"]
    assert len(errors) == 1
    assert errors[0].message.startswith(f"duplicate resource URN {urn}")
    assert errors[0].source == "program" and errors[0].urn == urn
    assert sum(r.name == "zlh-dns" for r in recording.resources) == 2


def test_deprecations_and_log_warnings_become_diagnostics() -> None:
    def program() -> None:
        pulumi.log.warn("guest list is empty")
        pve.ContainerLegacy(
            "old-dns",
            node_name="zlh-core",
            initialization=pve.ContainerLegacyInitializationArgs(
                dns=pve.ContainerLegacyInitializationDnsArgs(server="10.10.0.2")
            ),
        )

    with pytest.warns(DeprecationWarning, match="`server` attribute is deprecated"):
        recording = run_stack("core", {}, [], program)
    messages = [d.message for d in recording.diagnostics if d.severity == "warning"]
    assert "guest list is empty" in messages
    assert any("deprecated" in message for message in messages)


def test_component_children_and_outputs_are_recorded() -> None:
    def program() -> None:
        Service("portal", opts=pulumi.ResourceOptions(parent=Layer("edge")))

    recording = run_stack("runtime", {}, [], program)
    service = by_name(recording, "portal")
    assert service.id is None and service.provider is None
    assert service.urn.endswith("zlh:platform:Layer$zlh:platform:Service::portal")
