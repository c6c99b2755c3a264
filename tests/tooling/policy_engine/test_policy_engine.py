"""The offline policy runner drives a real policy pack process over the analyzer protocol."""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc
from pulumi.runtime.proto import analyzer_pb2

from zlh_infra.tooling.preview.policy_config import (
    PolicyConfig,
    PolicyConfigError,
    PolicySpec,
    parse_policy_config,
    reconcile_policy_config,
)
from zlh_infra.tooling.preview.policy_engine import (
    PolicyPackError,
    PolicyReport,
    PolicySession,
    has_mandatory_violation,
    run_policy_pack,
)
from zlh_infra.tooling.preview.policy_engine.errors import PackFailedError
from zlh_infra.tooling.preview.policy_engine.messages import initial_config_from_info
from zlh_infra.tooling.preview.policy_engine.pack_process import choose_python
from zlh_infra.tooling.preview.policy_engine.protocol import PackCalls
from zlh_infra.tooling.preview.policy_engine.wire import marshal_properties
from zlh_infra.tooling.preview.recording import (
    Diagnostic,
    RecordedRead,
    RecordedResource,
    StackRecording,
)

TOY_PACK = Path(__file__).parent / "toy_pack"
SIG = rpc._special_sig_key
SECRET_SIG = rpc._special_secret_sig
UNKNOWN = rpc.UNKNOWN
STACK = "dev"
PROJECT = "toy"
ROOT_URN = f"urn:pulumi:{STACK}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{STACK}"


def secret(value: Any) -> dict[str, Any]:
    return {SIG: SECRET_SIG, "value": value}


def urn(qualified_type: str, name: str) -> str:
    return f"urn:pulumi:{STACK}::{PROJECT}::{qualified_type}::{name}"


def resource(
    qualified_type: str,
    name: str,
    inputs: dict[str, Any] | None = None,
    *,
    custom: bool = True,
    parent: str | None = None,
    provider: str | None = None,
    dependencies: list[str] | None = None,
) -> RecordedResource:
    inputs = inputs or {}
    return RecordedResource(
        urn=urn(qualified_type, name),
        type=qualified_type.rsplit("$", 1)[-1],
        name=name,
        custom=custom,
        parent=parent,
        dependencies=dependencies or [],
        property_dependencies={},
        provider=provider,
        inputs=inputs,
        options={"protect": False, "deleteBeforeReplace": None, "customTimeouts": None},
        outputs=dict(inputs),
    )


def stack(
    *guests: tuple[str, dict[str, Any]], extra: list[RecordedResource] | None = None
) -> StackRecording:
    """Root stack, an HTTPS provider, one host component and guests under it."""
    root = resource("pulumi:pulumi:Stack", f"{PROJECT}-{STACK}", custom=False)
    provider = resource("pulumi:providers:toy", "pve", {"endpoint": "https://pve:8006"})
    host = resource("toy:index:Host", "host1", custom=False, parent=root.urn)
    resources = [root, provider, host]
    for name, inputs in guests:
        resources.append(
            resource(
                "toy:index:Host$toy:index:Guest",
                name,
                {"description": f"{name} guest", **inputs},
                parent=host.urn,
                provider=provider.urn,
                dependencies=[provider.urn],
            )
        )
    resources.extend(extra or [])
    return StackRecording(stack=STACK, project=PROJECT, resources=resources)


def child_pids() -> set[int]:
    """Live children of this process (Linux /proc)."""
    me = str(os.getpid())
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leftover_process() -> Iterator[None]:
    before = child_pids()
    yield
    assert child_pids() - before == set(), "a policy pack process was left running"


def run(
    recording: StackRecording,
    tmp_path: Path | None = None,
    config: Any = None,
    **kw: Any,
) -> PolicyReport:
    config_file = None
    if config is not None:
        assert tmp_path is not None
        config_file = tmp_path / "policy-config.json"
        config_file.write_text(json.dumps(config))
    return run_policy_pack(TOY_PACK, recording, policy_config_file=config_file, timeout=30, **kw)


def policy_diags(
    report: PolicyReport,
) -> list[tuple[str | None, str | None, str, str, str | None]]:
    return [
        (d.policy_name, d.enforcement_level, d.severity, d.message, d.urn)
        for d in report.diagnostics
        if d.source == "policy" and d.policy_name
    ]


GUEST_A = urn("toy:index:Host$toy:index:Guest", "a")
GUEST_B = urn("toy:index:Host$toy:index:Guest", "b")


# --- whole runs ----------------------------------------------------------------------------


def test_compliant_stack_passes() -> None:
    report = run(stack(("a", {"vmId": 100.0}), ("b", {"vmId": 101.0})))
    assert report.pack_name == "toy-pack"
    assert report.pack_version == "0.3.0"  # PulumiPolicy.yaml wins over the SDK's 0.0.1
    assert report.diagnostics == []
    assert not has_mandatory_violation(report.diagnostics)
    assert report.policies["vmid-range"] == "mandatory"
    assert report.config["vmid-range"].properties == {"minVmId": 100, "maxVmId": 899}


def test_each_violation_has_its_message_and_level() -> None:
    orphan = resource("toy:index:Guest", "orphan", {"vmId": 300.0, "description": "x"})
    recording = stack(
        ("a", {"vmId": 950.0, "description": ""}),
        ("b", {"vmId": 950.0}),
        extra=[orphan],
    )
    recording.resources[1].inputs["endpoint"] = "http://pve:8006"
    report = run(recording)
    assert policy_diags(report) == [
        (
            "vmid-range",
            "mandatory",
            "error",
            "Guests use VM IDs from the configured range.\nVM ID 950 is outside 100-899.",
            GUEST_A,
        ),
        (
            "description-required",
            "advisory",
            "warning",
            "Guests carry a description.\na has no description.",
            GUEST_A,
        ),
        (
            "provider-https",
            "advisory",
            "warning",
            "Providers talk HTTPS.\nprovider pve uses 'http://pve:8006'.",
            GUEST_A,
        ),
        (
            "vmid-range",
            "mandatory",
            "error",
            "Guests use VM IDs from the configured range.\nVM ID 950 is outside 100-899.",
            GUEST_B,
        ),
        (
            "provider-https",
            "advisory",
            "warning",
            "Providers talk HTTPS.\nprovider pve uses 'http://pve:8006'.",
            GUEST_B,
        ),
        (
            "unique-vmids",
            "mandatory",
            "error",
            "VM IDs are unique and guests sit under a host.\nVM ID 950 is used by a and b.",
            GUEST_B,
        ),
        (
            "unique-vmids",
            "mandatory",
            "error",
            "VM IDs are unique and guests sit under a host.\norphan is not parented to a host.",
            ROOT_URN,
        ),
    ]
    assert all(d.policy_pack == "toy-pack" for d in report.diagnostics)
    assert has_mandatory_violation(report.diagnostics)


def test_stack_policies_are_skipped_when_the_program_failed() -> None:
    recording = stack(("a", {"vmId": 950.0}), ("b", {"vmId": 950.0}))
    recording.diagnostics.append(Diagnostic("error", "program crashed", "program"))
    report = run(recording)
    assert [d.policy_name for d in report.diagnostics] == ["vmid-range", "vmid-range"]


def test_advisory_only_does_not_fail() -> None:
    report = run(stack(("a", {"vmId": 100.0, "description": ""})))
    assert [(d.policy_name, d.severity) for d in report.diagnostics] == [
        ("description-required", "warning")
    ]
    assert not has_mandatory_violation(report.diagnostics)


def test_every_registered_resource_is_analyzed_and_output_is_captured(
    tmp_path: Path,
) -> None:
    recording = stack(("a", {"vmId": 100.0}))
    recording.reads.append(
        RecordedRead(
            urn=urn("toy:index:Guest", "read"),
            type="toy:index:Guest",
            name="read",
            id="1",
            inputs={},
        )
    )
    report = run(recording, tmp_path, config={"trace": "advisory"})
    # Several Analyze calls are in flight at once: compare as a set.
    lines = sorted(d.message for d in report.diagnostics if d.severity == "info")
    assert lines == sorted(
        [
            "analyzed pulumi:pulumi:Stack toy-dev",
            "analyzed pulumi:providers:toy pve",
            "analyzed toy:index:Host host1",
            "analyzed toy:index:Guest a",
        ]
    )
    assert all(d.source == "policy" and d.policy_pack == "toy-pack" for d in report.diagnostics)


def test_reads_are_never_sent() -> None:
    recording = stack(("a", {"vmId": 100.0}))
    read_urn = urn("toy:index:Guest", "legacy")
    recording.reads.append(
        RecordedRead(
            urn=read_urn,
            type="toy:index:Guest",
            name="legacy",
            id="7",
            inputs={"vmId": 100.0},
        )
    )
    report = run(recording)
    # A sent read would break the VM ID range, the description rule, the uniqueness
    # of VM ID 100 and the host parenting rule.
    assert report.diagnostics == []


def test_logs_sent_to_the_engine_address_are_captured(tmp_path: Path) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (tmp_path / "__main__.py").write_text(
        "import sys\n"
        "import grpc\n"
        "from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc\n"
        "from pulumi_policy import PolicyPack, ResourceValidationPolicy\n"
        "engine = engine_pb2_grpc.EngineStub(grpc.insecure_channel(sys.argv[1]))\n"
        "engine.Log(engine_pb2.LogRequest(severity=engine_pb2.WARNING, message='from the pack'))\n"
        "PolicyPack('logger', [ResourceValidationPolicy('noop', 'Does nothing.', "
        "lambda args, report: None)])\n"
    )
    report = run_policy_pack(tmp_path, stack(), timeout=30)
    assert [(d.severity, d.message, d.policy_pack) for d in report.diagnostics] == [
        ("warning", "from the pack", "logger")
    ]


def test_the_settings_reach_the_pack_as_the_engine_passes_them(tmp_path: Path) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (tmp_path / "__main__.py").write_text(
        "import json, os\n"
        "from pulumi_policy import PolicyPack, StackValidationPolicy\n"
        "NAMES = ('ORGANIZATION', 'PROJECT', 'STACK', 'DRY_RUN', 'CONFIG')\n"
        "def echo(args, report_violation):\n"
        "    seen = {name: os.environ['PULUMI_' + name] for name in NAMES}\n"
        "    report_violation(json.dumps({**seen, 'tags': dict(args.stack_tags)}))\n"
        "PolicyPack('echo', [StackValidationPolicy('echo', 'Tells what it got.', echo)])\n"
    )
    report = run_policy_pack(
        tmp_path,
        stack(),
        stack_config={"toy:region": "eu", "toy:size": "2"},
        organization="acme",
        dry_run=False,
        stack_tags={"team": "infra"},
        timeout=30,
    )
    [echoed] = [d for d in report.diagnostics if d.policy_name == "echo"]
    assert echoed.urn == ROOT_URN
    description, seen = echoed.message.split("\n", 1)
    assert description == "Tells what it got."
    assert json.loads(seen) == {
        "ORGANIZATION": "acme",
        "PROJECT": PROJECT,
        "STACK": STACK,
        "DRY_RUN": "false",
        "CONFIG": json.dumps({"toy:region": "eu", "toy:size": "2"}),
        "tags": {"team": "infra"},
    }


# --- configuration -------------------------------------------------------------------------


def test_schema_default_applies() -> None:
    report = run(stack(("a", {"vmId": 99.0})))
    assert [d.message for d in report.diagnostics] == [
        "Guests use VM IDs from the configured range.\nVM ID 99 is outside 100-899."
    ]


def test_initial_config_overrides_schema_default() -> None:
    # The schema default for maxVmId is 999; the pack's initial_config says 899.
    report = run(stack(("a", {"vmId": 950.0})))
    assert report.config["vmid-range"].properties["maxVmId"] == 899
    assert [d.policy_name for d in report.diagnostics] == ["vmid-range"]


def test_config_file_overrides_initial_config(tmp_path: Path) -> None:
    report = run(
        stack(("a", {"vmId": 600.0, "description": ""})),
        tmp_path,
        config={"vmid-range": {"maxVmId": 500}, "description-required": "mandatory"},
    )
    assert [
        (d.policy_name, d.enforcement_level, d.severity, d.message) for d in report.diagnostics
    ] == [
        (
            "vmid-range",
            "mandatory",
            "error",
            "Guests use VM IDs from the configured range.\nVM ID 600 is outside 100-500.",
        ),
        (
            "description-required",
            "mandatory",
            "error",
            "Guests carry a description.\na has no description.",
        ),
    ]


def test_all_sets_every_level_before_named_entries(tmp_path: Path) -> None:
    recording = stack(("a", {"vmId": 950.0, "description": ""}))
    report = run(
        recording,
        tmp_path,
        config={"all": "advisory", "description-required": "disabled"},
    )
    assert [(d.policy_name, d.severity) for d in report.diagnostics if d.policy_name] == [
        ("vmid-range", "warning")
    ]
    assert not has_mandatory_violation(report.diagnostics)
    assert report.policies["unique-vmids"] == "advisory"
    # "all" also switches on the trace policy, which is disabled by default.
    assert report.policies["trace"] == "advisory"
    assert len([d for d in report.diagnostics if d.severity == "info"]) == 4


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"vmid-range": {"maxVmId": "lots"}},
            ["vmid-range", "'maxVmId'", "is not of type 'integer'"],
        ),
        (
            {"vmid-range": {"minVmId": 5}},
            ["vmid-range", "'minVmId'", "less than the minimum of 100"],
        ),
        (
            {"vmid-range": "sometimes"},
            ["vmid-range", "'sometimes' is not a valid enforcement level"],
        ),
        ({"vmid-range": 3}, ["vmid-range", "must be a string or object"]),
    ],
)
def test_bad_config_is_rejected(tmp_path: Path, config: Any, expected: list[str]) -> None:
    with pytest.raises(PolicyConfigError) as info:
        run(stack(("a", {"vmId": 100.0})), tmp_path, config=config)
    for fragment in expected:
        assert fragment in str(info.value)


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyConfigError, match="invalid JSON"):
        run_policy_pack(TOY_PACK, stack(), policy_config_file=bad)


# --- secrets and unknowns ------------------------------------------------------------------


def test_policy_sees_secret_value_and_unknown_as_unknown() -> None:
    probe = resource("toy:index:Probe", "p", {"password": secret("hunter2"), "address": UNKNOWN})
    report = run(stack(extra=[probe]))
    assert policy_diags(report) == [
        (
            "probe",
            "advisory",
            "warning",
            "Shows what a policy sees of secrets and unknowns.\npassword='hunter2'",
            probe.urn,
        ),
        (
            "probe",
            "advisory",
            "warning",
            (
                "can't run policy 'probe' from policy pack 'toy-pack@v0.0.1' during preview: "
                "string value at .address can't be known during preview"
            ),
            probe.urn,
        ),
    ]
    assert not has_mandatory_violation(report.diagnostics)


def test_remediation_sees_secrets_wrapped_and_is_reported_not_applied(
    tmp_path: Path,
) -> None:
    probe = resource("toy:index:Probe", "p", {"password": secret("hunter2"), "user": "root"})
    report = run(
        stack(extra=[probe]),
        tmp_path,
        config={"tag-secrets": "remediate", "probe": "disabled"},
    )
    assert policy_diags(report) == [
        (
            "tag-secrets",
            "remediate",
            "info",
            (
                "Lists secret inputs in secretKeys.\n"
                'remediation would set secretKeys=["password"] (not applied offline)'
            ),
            probe.urn,
        )
    ]


def test_properties_are_marshalled_like_the_engine() -> None:
    output_sig = rpc._special_output_value_sig
    resource_sig = rpc._special_resource_sig
    wire = {
        "password": secret({"nested": UNKNOWN, "__hidden": 1.0}),
        "address": UNKNOWN,
        "known": {SIG: output_sig, "value": "x", "dependencies": ["u"]},
        "pending": {SIG: output_sig, "secret": True},
        "ref": {SIG: resource_sig, "urn": "urn:x", "id": "101"},
        "component": {SIG: resource_sig, "urn": "urn:c"},
        "__defaults": ["name"],
        "list": [1.0, {"__meta": "x", "a": True}],
    }
    assert marshal_properties(wire, skip_internal=True) == {
        "password": secret({"nested": UNKNOWN}),
        "address": UNKNOWN,
        "known": "x",
        "pending": secret(UNKNOWN),
        "ref": "101",
        "component": "urn:c",
        "list": [1.0, {"a": True}],
    }
    assert "__defaults" in marshal_properties(wire, skip_internal=False)


# --- failures ------------------------------------------------------------------------------


def test_policy_exception_fails_with_its_error_text() -> None:
    with pytest.raises(PolicyPackError) as info:
        run(stack(("boom", {"vmId": 100.0})))
    text = str(info.value)
    assert "Analyze(urn:pulumi:dev::toy::toy:index:Host$toy:index:Guest::boom)" in text
    # gRPC carries the exception text; the engine shows the same.
    assert "UNKNOWN: Exception calling application: the explode policy blew up on purpose" in text


def test_pack_that_dies_at_start_fails_with_its_error_text(tmp_path: Path) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (tmp_path / "__main__.py").write_text("import zlh_missing_module_for_test\n")
    with pytest.raises(PolicyPackError) as info:
        run_policy_pack(tmp_path, stack(), timeout=30)
    assert "exited with code" in str(info.value)
    assert "No module named 'zlh_missing_module_for_test'" in str(info.value)


def test_hanging_pack_times_out_and_is_killed(tmp_path: Path) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime:\n  name: python\n")
    (tmp_path / "__main__.py").write_text("import time\ntime.sleep(120)\n")
    started = time.monotonic()
    with pytest.raises(PolicyPackError, match="did not report its port in time"):
        run_policy_pack(tmp_path, stack(), timeout=2)
    assert time.monotonic() - started < 10


def test_pack_that_stops_answering_times_out_while_calls_wait_for_room(
    tmp_path: Path,
) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (tmp_path / "__main__.py").write_text(
        "import time\n"
        "from pulumi_policy import PolicyPack, ResourceValidationPolicy\n"
        "PolicyPack(name='stuck', policies=[ResourceValidationPolicy(\n"
        "    name='stuck', description='Never answers.',\n"
        "    validate=lambda args, report: time.sleep(60))])\n"
    )
    with pytest.raises(PolicyPackError, match="timed out"):
        run_policy_pack(tmp_path, stack(("a", {"vmId": 100.0})), timeout=4, max_unanswered=1)


def test_non_python_pack_is_refused(tmp_path: Path) -> None:
    (tmp_path / "PulumiPolicy.yaml").write_text("runtime: nodejs\n")
    with pytest.raises(PolicyPackError, match="not supported"):
        run_policy_pack(tmp_path, stack())


# --- pieces --------------------------------------------------------------------------------


def test_python_comes_from_the_pack_virtualenv_when_it_exists(tmp_path: Path) -> None:
    spec = {"runtime": {"name": "python", "options": {"virtualenv": "venv"}}}
    assert choose_python(tmp_path, spec, None) == (sys.executable, None)
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").symlink_to(sys.executable)
    assert choose_python(tmp_path, spec, None) == (str(bindir / "python"), str(bindir))
    assert choose_python(tmp_path, spec, "/usr/bin/python3") == (
        "/usr/bin/python3",
        None,
    )


def test_an_answer_of_the_wrong_message_type_fails_the_run() -> None:
    answered: concurrent.futures.Future[object] = concurrent.futures.Future()
    answered.set_result(analyzer_pb2.AnalyzerInfo(name="p"))
    calls = PackCalls(time.monotonic() + 30)
    with pytest.raises(PackFailedError) as raised:
        calls.result(answered, "Analyze(urn:x)", analyzer_pb2.AnalyzeResponse)
    assert str(raised.value) == (
        "policy pack answered Analyze(urn:x) with AnalyzerInfo, not AnalyzeResponse"
    )


def test_initial_config_without_level_reads_as_advisory() -> None:
    # pulumi_policy leaves the level unset (0 = ADVISORY); the engine takes it as given.
    info = analyzer_pb2.AnalyzerInfo(name="p")
    info.initialConfig["rule"].properties.update({"limit": 3})
    initial = initial_config_from_info(info)
    assert initial == {"rule": PolicyConfig("advisory", {"limit": 3.0})}
    merged = reconcile_policy_config([PolicySpec("rule", "mandatory", {})], initial, {})
    assert merged["rule"].enforcement_level == "advisory"


def test_reconcile_keeps_all_entry_and_validates_required() -> None:
    specs = [
        PolicySpec("a", "mandatory", {"n": {"type": "integer", "default": 1}}),
        PolicySpec("b", "advisory", {"m": {"type": "string"}}, required=["m"]),
    ]
    given = parse_policy_config({"all": "disabled", "b": {"m": "x"}}, source="test")
    merged = reconcile_policy_config(specs, {}, given)
    assert {k: v.to_json() for k, v in merged.items()} == {
        "a": {"enforcementLevel": "disabled", "n": 1},
        "b": {"enforcementLevel": "disabled", "m": "x"},
        "all": {"enforcementLevel": "disabled"},
    }
    with pytest.raises(PolicyConfigError, match=r"b: property 'm' is a required property"):
        reconcile_policy_config(specs, {}, {}, pack="p", version="1")


def test_reconcile_refuses_a_policy_the_pack_does_not_have() -> None:
    specs = [PolicySpec("b", "advisory"), PolicySpec("a", "mandatory")]
    given = parse_policy_config(
        {"all": "disabled", "a": "advisory", "x": "mandatory", "d": {"n": 1}}, source="test"
    )
    with pytest.raises(PolicyConfigError) as raised:
        reconcile_policy_config(specs, {}, given, pack="p", version="1")
    known = "the pack's policies are a, b (or 'all')"
    assert raised.value.errors == [
        f"validating policy config: p 1  unknown policy 'd'; {known}",
        f"validating policy config: p 1  unknown policy 'x'; {known}",
    ]


def test_more_resources_than_may_await_answers_are_all_analysed(tmp_path: Path) -> None:
    guests = [(f"g{i:03d}", {"vmId": float(100 + i)}) for i in range(300)]
    recording = stack(*guests)
    report = run(
        recording,
        tmp_path,
        config={"trace": "advisory", "tag-secrets": "remediate"},
        max_unanswered=3,
    )
    traced = sorted(d.message for d in report.diagnostics if d.severity == "info")
    assert traced == sorted(f"analyzed {r.type} {r.name}" for r in recording.resources)
    assert not has_mandatory_violation(report.diagnostics)


def test_resources_registered_from_threads_while_the_pack_starts_are_all_analysed(
    tmp_path: Path,
) -> None:
    # Registrations span the pack's start: the early ones wait for it, the later ones
    # are sent by the registering threads themselves.
    recording = stack(*[(f"g{i:03d}", {"vmId": float(100 + i)}) for i in range(150)])
    config_file = tmp_path / "policy-config.json"
    config_file.write_text(json.dumps({"trace": "advisory"}))
    with PolicySession(
        TOY_PACK, stack=STACK, project=PROJECT, policy_config_file=config_file, timeout=30
    ) as session:

        def register(share: list[RecordedResource]) -> None:
            for res in share:
                session.analyze(res)
                time.sleep(0.01)

        shares = [recording.resources[i::3] for i in range(3)]
        threads = [threading.Thread(target=register, args=(share,)) for share in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report = session.finish(recording)
    traced = sorted(d.message for d in report.diagnostics if d.severity == "info")
    assert traced == sorted(f"analyzed {r.type} {r.name}" for r in recording.resources)


def test_a_resource_that_cannot_be_sent_fails_the_run_not_the_program() -> None:
    bad = resource("toy:index:Probe", "p", {"password": "x"})
    bad.options["customTimeouts"] = {"create": "5 minutes"}
    recording = stack(("a", {"vmId": 100.0}), extra=[bad])
    with PolicySession(TOY_PACK, stack=STACK, project=PROJECT, timeout=30) as session:
        for res in recording.resources:
            session.analyze(res)  # never raises into the registering thread
        with pytest.raises(ValueError, match="invalid custom timeout '5 minutes'"):
            session.finish(recording)


def test_remediate_keeps_internal_inputs_that_analyze_never_sees(tmp_path: Path) -> None:
    probe = resource("toy:index:Probe", "p", {"password": secret("x"), "__defaults": ["address"]})
    report = run(
        stack(extra=[probe]),
        tmp_path,
        config={"internal-keys": "remediate", "probe": "disabled"},
    )
    assert [(name, message) for name, _, _, message, _ in policy_diags(report)] == [
        (
            "internal-keys",
            "Shows which internal inputs Analyze and Remediate get.\n"
            'remediation would set internalKeys=["__defaults"] (not applied offline)',
        ),
        (
            "internal-keys",
            "Shows which internal inputs Analyze and Remediate get.\nAnalyze sees internal keys []",
        ),
    ]


@pytest.mark.parametrize(
    ("inputs", "outputs", "duplicated"),
    [
        # AnalyzeStack judges the outputs, whatever Analyze was sent.
        ((100.0, 101.0), (100.0, 100.0), True),
        ((100.0, 100.0), (100.0, 101.0), False),
    ],
)
def test_analyze_stack_sends_outputs_where_they_differ_from_inputs(
    inputs: tuple[float, float], outputs: tuple[float, float], duplicated: bool
) -> None:
    recording = stack(("a", {"vmId": inputs[0]}), ("b", {"vmId": inputs[1]}))
    guests = [r for r in recording.resources if r.type == "toy:index:Guest"]
    for guest, vmid in zip(guests, outputs, strict=True):
        guest.outputs = {**guest.outputs, "vmId": vmid}
    report = run(recording)
    found = [d for d in report.diagnostics if d.policy_name == "unique-vmids"]
    assert [d.message for d in found] == (
        ["VM IDs are unique and guests sit under a host.\nVM ID 100 is used by a and b."]
        if duplicated
        else []
    )
