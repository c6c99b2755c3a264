"""``python -m zlh_infra diff``: matching, property paths, replacements, secrets, exit codes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc

from zlh_infra import cli
from zlh_infra.tooling.delivery.plan_diff import (
    Action,
    StackDiff,
    diff_recordings,
    parse_recording,
    render_markdown,
    render_text,
)

CONTAINER = "proxmoxve:index/containerLegacy:ContainerLegacy"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
COMMAND = "command:remote:Command"
SECRET_VALUE = "plan-diff-secret-5e1f"


def urn(name: str, type_: str = CONTAINER, stack: str = "runtime") -> str:
    return f"urn:pulumi:{stack}::zlh-infra::{type_}::{name}"


def res(name: str, type_: str = CONTAINER, stack: str = "runtime", **inputs: Any) -> dict[str, Any]:
    options = inputs.pop("options", {})
    return {
        "urn": urn(name, type_, stack),
        "type": type_,
        "name": name,
        "parent": None,
        "dependencies": [],
        "propertyDependencies": {},
        "provider": None,
        "inputs": inputs,
        "options": {"protect": False, "ignoreChanges": [], "replaceOnChanges": [], **options},
    }


def doc(*resources: dict[str, Any], stack: str = "runtime", **outputs: Any) -> dict[str, Any]:
    return {
        "stacks": [
            {
                "stack": stack,
                "resources": list(resources),
                "reads": [],
                "outputs": outputs,
                "diagnostics": [],
            }
        ]
    }


def diff(base: dict[str, Any], head: dict[str, Any]) -> list[StackDiff]:
    return diff_recordings(parse_recording(base), parse_recording(head))


def both(diffs: list[StackDiff]) -> str:
    return render_text(diffs) + render_markdown(diffs)


def find(data: dict[str, Any], stack: str, name: str, type_: str) -> dict[str, Any]:
    recording = next(s for s in data["stacks"] if s["stack"] == stack)
    return next(r for r in recording["resources"] if r["name"] == name and r["type"] == type_)


# --- on the program's own stacks -----------------------------------------------------------


def test_a_recording_against_itself_has_no_changes(recorded_json: dict[str, Any]) -> None:
    diffs = diff(recorded_json, recorded_json)
    assert [d.stack for d in diffs] == ["core", "runtime"]
    assert all(not d.resources and not d.outputs and not d.notes for d in diffs)
    assert render_text(diffs) == "Stack core: no changes\n\nStack runtime: no changes\n"


def test_a_moved_address_shows_as_its_nested_path(recorded_json: dict[str, Any]) -> None:
    head = copy.deepcopy(recorded_json)
    guest = find(head, "runtime", "mc-survival", CONTAINER)
    guest["inputs"]["initialization"]["ipConfigs"][0]["ipv4"]["address"] = "10.20.1.5/22"

    [core, runtime] = diff(recorded_json, head)
    assert not core.resources
    [change] = runtime.resources
    assert (change.action, change.name, change.type) == (Action.UPDATE, "mc-survival", CONTAINER)
    assert "initialization.ipConfigs[0].ipv4.address: 10.20.1.0/22 -> 10.20.1.5/22" in render_text(
        [runtime]
    )


def test_a_new_vmid_replaces_a_vm_but_is_ignored_on_a_protected_guest(
    recorded_json: dict[str, Any],
) -> None:
    head = copy.deepcopy(recorded_json)
    find(head, "runtime", "zlh-zpack-router", VM)["inputs"]["vmId"] = 313.0
    # Stateful guests keep their identity: the program ignores changes that would replace them.
    find(head, "runtime", "mc-survival", CONTAINER)["inputs"]["vmId"] = 1005.0

    runtime = diff(recorded_json, head)[1]
    actions = {change.name: change.action for change in runtime.resources}
    assert actions == {"zlh-zpack-router": Action.REPLACE, "mc-survival": Action.IGNORE}
    text = render_text([runtime])
    assert "vmId: 310 -> 313  (forces replacement)" in text
    assert "(replace: vmId)" in text
    assert "vmId: 1000 -> 1005  (ignored: ignoreChanges)" in text
    assert runtime.count(Action.REPLACE) == 1


@pytest.mark.parametrize("key", ["nodeName", "clone", "operatingSystem"])
def test_every_replacing_guest_property_forces_replacement(key: str) -> None:
    base = doc(res("g", VM, vmId=300.0, **{key: "a"}))
    head = doc(res("g", VM, vmId=300.0, **{key: "b"}))
    [stack] = diff(base, head)
    assert [c.action for c in stack.resources] == [Action.REPLACE]


def test_other_changes_update_in_place() -> None:
    base = doc(res("g", VM, vmId=300.0, memory={"dedicated": 1024.0}))
    head = doc(res("g", VM, vmId=300.0, memory={"dedicated": 2048.0}))
    [stack] = diff(base, head)
    assert [c.action for c in stack.resources] == [Action.UPDATE]
    assert "memory.dedicated: 1024 -> 2048\n" in render_text([stack])


# --- matching ------------------------------------------------------------------------------


def test_resources_are_created_and_deleted_by_urn() -> None:
    kept = res("kept", vmId=1000.0)
    base = doc(kept, res("old", vmId=1001.0))
    head = doc(res("new", vmId=1002.0), kept)
    [stack] = diff(base, head)
    assert [(c.action, c.name) for c in stack.resources] == [
        (Action.CREATE, "new"),
        (Action.DELETE, "old"),
    ]
    text = render_text([stack])
    assert f"+  create  {CONTAINER} new" in text
    assert f"-  delete  {CONTAINER} old" in text
    assert text.startswith("Stack runtime: 1 to create, 1 to delete\n")


def test_a_resource_renamed_with_an_alias_is_updated_not_replaced() -> None:
    old = res("zlh-pbs", "proxmoxve:storage/pbs:Pbs", server="10.99.0.21")
    new = res("zlh-backup", "proxmoxve:storage/pbs:Pbs", server="10.99.0.21")
    new["options"]["aliases"] = [old["urn"]]
    [stack] = diff(doc(old), doc(new))
    [change] = stack.resources
    assert (change.action, change.renamed_from) == (Action.UPDATE, old["urn"])
    assert f"renamed from {old['urn']}" in render_text([stack])


def test_stacks_only_on_one_side_are_created_or_deleted_whole() -> None:
    base = doc(res("a"), stack="runtime")
    head = doc(res("b", stack="runtime-b"), stack="runtime-b")
    diffs = diff(base, head)
    assert [(d.stack, [c.action for c in d.resources]) for d in diffs] == [
        ("runtime-b", [Action.CREATE]),
        ("runtime", [Action.DELETE]),
    ]
    assert "not in the base recording" in diffs[0].notes[0]
    assert "not in the head recording" in diffs[1].notes[0]


def test_a_failed_preview_is_called_out() -> None:
    head = doc(res("a"))
    head["stacks"][0]["diagnostics"] = [
        {"severity": "error", "source": "config", "message": "zlh-infra:guests: bad\nmore"}
    ]
    [stack] = diff(doc(res("a")), head)
    assert stack.notes == [
        "the head preview failed, its resources may be missing: config error: zlh-infra:guests: bad"
    ]
    assert "> :warning: the head preview failed" in render_markdown([stack])


# --- properties ----------------------------------------------------------------------------


def test_an_inserted_list_item_is_one_added_item() -> None:
    rules = [{"dport": "18888"}, {"dport": "9100"}]
    base = doc(res("r", "proxmoxve:firewall/rulesLegacy:RulesLegacy", rules=rules))
    head = doc(
        res(
            "r",
            "proxmoxve:firewall/rulesLegacy:RulesLegacy",
            rules=[rules[0], {"dport": "22"}, rules[1]],
        )
    )
    [stack] = diff(base, head)
    [change] = stack.resources
    assert [(c.path, c.kind) for c in change.changes] == [(("rules", 1), "added")]
    assert 'rules[1]: added {"dport":"22"}' in render_text([stack])


def test_replace_on_changes_option_is_honoured() -> None:
    options = {"replaceOnChanges": ["triggers[*]"]}
    base = doc(res("step", COMMAND, triggers=["aaa"], create="x", options=options))
    head = doc(res("step", COMMAND, triggers=["bbb"], create="x", options=options))
    [stack] = diff(base, head)
    assert [c.action for c in stack.resources] == [Action.REPLACE]
    assert "triggers[0]: aaa -> bbb  (forces replacement)" in render_text([stack])


def test_a_changed_file_shows_as_a_line_diff() -> None:
    before = "[servers]\n" + "".join(f'"mc-{n}" = "10.20.1.{n}:25565"\n' for n in range(6))
    after = before.replace("10.20.1.3", "10.20.1.9")
    [stack] = diff(doc(res("s", COMMAND, stdin=before)), doc(res("s", COMMAND, stdin=after)))
    lines = render_text([stack]).splitlines()
    assert "        stdin: changed" in lines
    assert '            -"mc-3" = "10.20.1.3:25565"' in lines
    assert '            +"mc-3" = "10.20.1.9:25565"' in lines


def test_booleans_and_numbers_are_not_confused() -> None:
    [stack] = diff(doc(res("g", started=1.0)), doc(res("g", started=True)))
    assert "started: 1 -> true" in render_text([stack])


def test_option_changes_are_listed() -> None:
    [stack] = diff(
        doc(res("g", options={"protect": True})), doc(res("g", options={"protect": False}))
    )
    assert [c.action for c in stack.resources] == [Action.UPDATE]
    assert "options.protect: true -> false" in render_text([stack])


def test_output_changes_are_listed() -> None:
    base = doc(fleet={"mc-a": {"vmid": 1000.0}})
    head = doc(fleet={"mc-a": {"vmid": 1000.0}, "mc-b": {"vmid": 1001.0}})
    [stack] = diff(base, head)
    text = render_text([stack])
    assert text.startswith("Stack runtime: 1 output change\n")
    assert 'fleet.mc-b: added {"vmid":1001}' in text


# --- secrets -------------------------------------------------------------------------------


def sentinel(value: Any) -> dict[str, Any]:
    """A secret as the wire carries it, unmasked (a recording written by another tool)."""
    return {rpc._special_sig_key: rpc._special_secret_sig, "value": value}


def test_a_masked_secret_turning_plain_shows_neither_value() -> None:
    base = doc(res("g", initialization={"userAccount": {"password": "[secret]"}}))
    head = doc(res("g", initialization={"userAccount": {"password": SECRET_VALUE}}))
    diffs = diff(base, head)
    assert "initialization.userAccount.password: [secret] changed" in render_text(diffs)
    assert SECRET_VALUE not in both(diffs)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"keep": 1.0}, {"keep": 1.0, "userAccount": {"password": sentinel(SECRET_VALUE)}}),
        ({"password": sentinel("old")}, {"password": {"nested": [sentinel(SECRET_VALUE)]}}),
        ("plain", [sentinel(SECRET_VALUE)]),
        ({"list": [1.0]}, {"list": [1.0, sentinel(SECRET_VALUE)]}),
    ],
    ids=["added-object", "secret-to-object", "type-change", "added-item"],
)
def test_secrets_in_nested_values_are_never_printed(before: Any, after: Any) -> None:
    base = doc(res("g", initialization=before), connection=before)
    head = doc(res("g", initialization=after), connection=after)
    diffs = diff(base, head)
    text = both(diffs)
    assert SECRET_VALUE not in text
    assert "[secret]" in text


def test_a_secret_output_change_shows_neither_value() -> None:
    diffs = diff(doc(pbsUsername="zlh-runtime@pbs"), doc(pbsUsername=sentinel(SECRET_VALUE)))
    assert "pbsUsername: [secret] changed" in render_text(diffs)
    assert "zlh-runtime@pbs" not in both(diffs)
    assert SECRET_VALUE not in both(diffs)


# --- rendering and the command line ----------------------------------------------------------


def test_markdown_groups_changes_per_stack() -> None:
    base = doc(res("g", VM, vmId=300.0), res("gone"))
    head = doc(res("g", VM, vmId=301.0), res("new"))
    markdown = render_markdown(diff(base, head))
    assert markdown.startswith("# Plan diff\n")
    assert "## Stack `runtime`: 1 to create, 1 to replace, 1 to delete" in markdown
    assert f"- `+-` **replace** `g` (`{VM}`), forced by `vmId`" in markdown
    assert "  ```\n  vmId: 300 -> 301  (forces replacement)\n  ```" in markdown
    assert f"- `-` **delete** `gone` (`{CONTAINER}`)" in markdown


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    base, head = tmp_path / "base.json", tmp_path / "head.json"
    base.write_text(json.dumps(doc(res("g", VM, vmId=300.0))))
    head.write_text(json.dumps(doc(res("g", VM, vmId=301.0))))
    return base, head


def test_cli_exits_0_with_changes(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["diff", *map(str, files)]) == 0
    assert "+- replace" in capsys.readouterr().out
    assert cli.main(["diff", *map(str, files), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("# Plan diff\n")


def test_cli_writes_the_output_file(files: tuple[Path, Path], tmp_path: Path) -> None:
    target = tmp_path / "plan-diff.md"
    assert (
        cli.main(["diff", *map(str, files), "--format", "markdown", "--output", str(target)]) == 0
    )
    assert "**replace**" in target.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON"),
        ('{"resources": []}', "no 'stacks' list"),
        ('{"stacks": [{"stack": "core"}]}', "stack #0 is malformed"),
    ],
)
def test_cli_exits_2_on_an_unreadable_recording(
    files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    broken = tmp_path / "broken.json"
    if content is not None:
        broken.write_text(content)
    assert cli.main(["diff", str(files[0]), str(broken)]) == 2
    assert message in capsys.readouterr().err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["diff", "only-one.json"])
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
