"""Stack and project files -> the engine's flat config map."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from zlh_infra.tooling.preview.stack_files import (
    PLACEHOLDER_SECRET,
    ProjectFile,
    StackFileError,
    load_project,
    load_stack_file,
    stack_files_in,
    stack_name_of,
)

REPO = Path(__file__).resolve().parents[3]

STACK_FILE = """\
secretsprovider: passphrase
encryptionsalt: v1:salt
config:
  zlh-infra:proxmoxApiToken:
    secure: v1:AAAA:BBBB
  zlh-infra:pbs:
    datastore: zlh
    password:
      secure: v1:CCCC:DDDD
    users: [{name: a, token: {secure: v1:EEEE}}]
  zlh-infra:node: zlh-core
  zlh-infra:vmid: 0100
  zlh-infra:enabled: yes
  zlh-infra:ratio: 1.50
  zlh-infra:quoted: "true"
  zlh-infra:empty:
  plainKey: plain
  proxmoxve:insecure: true
  zlh-infra:flags:
    on: yes
    time: 10:30
    count: 3
    big: 0x10
"""

PROJECT_FILE = """\
name: zlh-infra
runtime: python
config:
  zlh-infra:coreStack:
    type: string
    default: core
  zlh-infra:node:
    default: from-project
  retries:
    type: integer
    default: 3
  zlh-infra:secretDefault:
    default: shh
    secret: true
  zlh-infra:noDefault:
    type: string
  proxmoxve:minTls: "1.2"
  zlh-infra:list:
    type: array
    default: [b, a]
"""


@pytest.fixture
def project(tmp_path: Path) -> ProjectFile:
    path = tmp_path / "Pulumi.yaml"
    path.write_text(PROJECT_FILE)
    return load_project(path)


@pytest.fixture
def stack_path(tmp_path: Path) -> Path:
    path = tmp_path / "Pulumi.core.yaml"
    path.write_text(STACK_FILE)
    return path


def test_secure_values_become_placeholders_and_mark_their_key_secret(
    stack_path: Path, project: ProjectFile
) -> None:
    stack = load_stack_file(stack_path, project=project)
    assert stack.stack == "core"
    assert stack.config["zlh-infra:proxmoxApiToken"] == PLACEHOLDER_SECRET
    pbs = json.loads(stack.config["zlh-infra:pbs"])
    assert pbs == {
        "datastore": "zlh",
        "password": PLACEHOLDER_SECRET,
        "users": [{"name": "a", "token": PLACEHOLDER_SECRET}],
    }
    assert stack.placeholder_keys == {"zlh-infra:proxmoxApiToken", "zlh-infra:pbs"}
    assert stack.secret_keys == {
        "zlh-infra:proxmoxApiToken",
        "zlh-infra:pbs",
        "zlh-infra:secretDefault",
    }
    assert "v1:" not in json.dumps(stack.config)


def test_values_are_strings_as_the_engine_gives_them(
    stack_path: Path, project: ProjectFile
) -> None:
    config = load_stack_file(stack_path, project=project).config
    # Top-level scalars keep their YAML text.
    assert config["zlh-infra:node"] == "zlh-core"
    assert config["zlh-infra:vmid"] == "0100"
    assert config["zlh-infra:enabled"] == "yes"
    assert config["zlh-infra:ratio"] == "1.50"
    assert config["zlh-infra:quoted"] == "true"
    assert config["zlh-infra:empty"] == ""
    assert config["proxmoxve:insecure"] == "true"
    # A key without a namespace belongs to the project.
    assert config["zlh-infra:plainKey"] == "plain"
    # Objects are compact JSON with sorted keys, typed by YAML 1.2 rules.
    assert config["zlh-infra:flags"] == '{"big":16,"count":3,"on":"yes","time":"10:30"}'
    assert all(isinstance(value, str) for value in config.values())


def test_project_defaults_fill_only_unset_keys(stack_path: Path, project: ProjectFile) -> None:
    config = load_stack_file(stack_path, project=project).config
    assert config["zlh-infra:coreStack"] == "core"
    assert config["zlh-infra:node"] == "zlh-core"  # the stack file wins
    assert config["zlh-infra:retries"] == "3"
    assert config["zlh-infra:secretDefault"] == "shh"
    assert config["proxmoxve:minTls"] == "1.2"
    assert config["zlh-infra:list"] == '["b","a"]'
    assert "zlh-infra:noDefault" not in config


def test_other_settings_are_returned(stack_path: Path, project: ProjectFile) -> None:
    settings = load_stack_file(stack_path, project=project).settings
    assert settings == {"secretsprovider": "passphrase", "encryptionsalt": "v1:salt"}


def test_project_name_comes_from_pulumi_yaml(project: ProjectFile) -> None:
    assert project.name == "zlh-infra"


def test_the_repository_stack_files_load() -> None:
    project = load_project(REPO / "Pulumi.yaml")
    runtime = load_stack_file(REPO / "Pulumi.runtime.yaml", project=project)
    assert runtime.config["zlh-infra:coreStack"] == "core"
    assert json.loads(runtime.config["pulumi:disable-default-providers"]) == ["*"]
    games = json.loads(runtime.config["zlh-infra:games"])
    assert games[0]["vmid"] == 1000
    core = load_stack_file(REPO / "Pulumi.core.yaml", project=project)
    assert json.loads(core.config["zlh-infra:guests"])["zpack-api"]["vmid"] == 100


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("config: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("config: 3\n", "'config' must be a mapping"),
    ],
)
def test_malformed_stack_files_raise_stack_file_error(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "Pulumi.core.yaml"
    path.write_text(text)
    with pytest.raises(StackFileError, match=match):
        load_stack_file(path, project="zlh-infra")


def test_missing_files_raise_stack_file_error(tmp_path: Path) -> None:
    with pytest.raises(StackFileError, match="file not found"):
        load_stack_file(tmp_path / "Pulumi.core.yaml", project="zlh-infra")
    with pytest.raises(StackFileError, match="file not found"):
        load_project(tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.yaml").write_text("runtime: python\n")
    with pytest.raises(StackFileError, match="no project 'name'"):
        load_project(tmp_path / "Pulumi.yaml")


def test_empty_stack_file_has_only_project_values(tmp_path: Path, project: ProjectFile) -> None:
    path = tmp_path / "Pulumi.runtime-b.yaml"
    path.write_text("")
    stack = load_stack_file(path, project=project)
    assert stack.stack == "runtime-b"
    assert stack.config["zlh-infra:coreStack"] == "core"
    assert stack.placeholder_keys == frozenset()


def test_stack_name_of() -> None:
    assert stack_name_of(Path("x/Pulumi.runtime-b.yaml")) == "runtime-b"
    with pytest.raises(StackFileError):
        stack_name_of(Path("stack.yaml"))


def test_stack_files_in_finds_the_known_stacks_and_prefers_yaml(tmp_path: Path) -> None:
    names = [
        "Pulumi.yaml",
        "Pulumi.core.yaml",
        "Pulumi.core.yml",
        "Pulumi.runtime-eu.yml",
        "Pulumi.staging.yaml",
        "Pulumi.runtime.dev.yaml",
        "Pulumi.runtime.yaml.bak",
        "Pulumi.runtime.json",
        "Pulumi..yaml",
    ]
    for name in names:
        (tmp_path / name).write_text("config: {}\n")
    (tmp_path / "Pulumi.edge.yaml").mkdir()  # a directory is no stack file
    assert stack_files_in(tmp_path) == {
        "core": tmp_path / "Pulumi.core.yaml",
        "runtime-eu": tmp_path / "Pulumi.runtime-eu.yml",
    }


def test_stack_files_in_lets_overrides_replace_and_add(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.core.yaml").write_text("")
    other, extra = tmp_path / "elsewhere.yaml", tmp_path / "b.yaml"
    found = stack_files_in(tmp_path, [("core", other), ("runtime-b", extra)])
    assert found == {"core": other, "runtime-b": extra}
    assert stack_files_in(tmp_path / "missing") == {}


def refusal(path: Path) -> str:
    with pytest.raises(StackFileError) as raised:
        load_stack_file(path, project="zlh-infra")
    return str(raised.value)


def test_a_stack_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.core.yaml"
    path.write_bytes(b"config:\n  zlh-infra:node: caf\xe9\n")
    assert refusal(path) == (
        f"{path}: line 2: not UTF-8 text (invalid continuation byte at byte 29)"
    )
    path.write_bytes(b"config:\n  zlh-infra:node: \xa9 2026\n")
    assert refusal(path) == f"{path}: line 2: not UTF-8 text (invalid start byte at byte 26)"


def test_a_project_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.yaml"
    path.write_bytes(b"\xff\xfename: zlh-infra\n")
    with pytest.raises(StackFileError) as raised:
        load_project(path)
    assert str(raised.value) == f"{path}: line 1: not UTF-8 text (invalid start byte at byte 0)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("config:\n  zlh-infra:a: &x [1, 2]\n", "line 2: anchor &x is not allowed"),
        ("base: &x {a: 1}\nconfig:\n  zlh-infra:b: 1\n", "line 1: anchor &x is not allowed"),
        ("config:\n  zlh-infra:a: *x\n", "line 2: alias *x is not allowed"),
    ],
)
def test_anchors_and_aliases_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "Pulumi.core.yaml"
    path.write_text(text)
    assert refusal(path) == f"{path}: {problem}"


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    # Nine times nine times ...: 4.8 million strings once expanded.
    lines = ["config:", "  zlh-infra:l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, 7):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"  zlh-infra:l{level}: &l{level} [{aliases}]")
    path = tmp_path / "Pulumi.core.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    assert refusal(path) == f"{path}: line 2: anchor &l0 is not allowed"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "config:\n  zlh-infra:node: a\n  zlh-infra:node: b\n",
            "line 3: duplicate key 'zlh-infra:node' (first at line 2)",
        ),
        (
            "config:\n  zlh-infra:guests:\n    db:\n      cores: 1\n      cores: 2\n",
            "line 5: duplicate key 'cores' (first at line 4)",
        ),
        (
            "config:\n  zlh-infra:size: {cores: 1, 'cores': 2}\n",
            "line 2: duplicate key 'cores' (first at line 2)",
        ),
        (
            "config:\n  zlh-infra:a: 1\nconfig:\n  zlh-infra:b: 2\n",
            "line 3: duplicate key 'config' (first at line 1)",
        ),
    ],
)
def test_duplicate_keys_are_refused_naming_key_and_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "Pulumi.core.yaml"
    path.write_text(text)
    assert refusal(path) == f"{path}: {problem}"


def test_nesting_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.core.yaml"
    # The document and config mappings are two levels; 62 lists make 64, the most allowed.
    path.write_text("config:\n  zlh-infra:deep: " + "[" * 62 + "]" * 62 + "\n")
    assert load_stack_file(path, project="zlh-infra").config["zlh-infra:deep"] == (
        "[" * 62 + "]" * 62
    )
    path.write_text("config:\n  zlh-infra:deep: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert refusal(path) == f"{path}: line 2: nested more than 64 levels deep"
