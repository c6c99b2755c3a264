"""The pack's config comes from the stack files: a value moved in a stack moves for the pack."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.stack_configs import ROOT
from zlh_infra import cli
from zlh_infra.tooling.policy_reference import CONFIGS
from zlh_infra.tooling.preview.derived_policy_config import derive, load_configs, merged
from zlh_infra.tooling.preview.stack_files import stack_files_in


def project_copy(tmp_path: Path, *, api: str | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("Pulumi.yaml", "Pulumi.core.yaml", "Pulumi.runtime.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    if api is not None:
        core = tmp_path / "Pulumi.core.yaml"
        data = yaml.safe_load(core.read_text())
        data["config"]["zlh-infra:guests"]["zpack-api"]["managementAddress"] = api
        core.write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path


def test_the_shipped_stacks_derive_what_the_pack_defaults_to() -> None:
    configs = load_configs(ROOT, stack_files_in(ROOT))
    derived = derive("runtime", configs)
    assert derived["zlh-agent-port"] == {
        "apiAddress": "10.99.0.10",
        "monitorAddress": "10.99.0.20",
        "managementBridge": "vmbr2",
    }
    assert derived["zlh-guest-placement"] == {
        "stackNodes": {"core": "zlh-core", "runtime": "zlh-runtime"}
    }
    assert derived["zlh-host-firewall"]["guestNetworks"] == [
        "10.10.0.0/24",
        "10.20.0.0/22",
        "10.99.0.0/22",
    ]
    assert "zlh-api-identity" not in derive("core", configs)


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_what_is_derived_is_accepted_by_the_engine_and_the_pack(stack: str) -> None:
    derived = derive(stack, load_configs(ROOT, stack_files_in(ROOT)))
    assert derived
    for name, values in derived.items():
        spec = CONFIGS[name]
        engine = {"type": "object", "properties": spec.properties}
        jsonschema.validate({**spec.defaults, **values}, engine)
        spec.parse(name, values)


def test_an_operators_file_wins_key_by_key() -> None:
    derived = {"zlh-agent-port": {"apiAddress": "10.99.0.10", "monitorAddress": "10.99.0.20"}}
    given = {"zlh-agent-port": {"apiAddress": "10.99.0.11"}, "zlh-vmid-unique": "disabled"}
    assert merged(derived, given) == {
        "zlh-agent-port": {"apiAddress": "10.99.0.11", "monitorAddress": "10.99.0.20"},
        "zlh-vmid-unique": "disabled",
    }


def test_moving_zpack_apis_address_in_the_core_stack_keeps_the_preview_green(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = project_copy(tmp_path / "moved", api="10.99.0.11")
    pack = ["--policy-pack", str(ROOT / "policy"), "--format", "json"]
    assert cli.main(["preview", *pack], cwd=project) == 0
    # The pack judged the moved address: a config that pins the old one fails it.
    pinned = tmp_path / "pinned.json"
    pinned.write_text(json.dumps({"zlh-agent-port": {"apiAddress": "10.99.0.10"}}))
    capsys.readouterr()
    assert cli.main(["preview", *pack, "--policy-pack-config", str(pinned)], cwd=project) == 1
    assert "only zpack-api's management address 10.99.0.10 may reach" in capsys.readouterr().out


def test_policy_config_writes_the_stacks_config_for_the_real_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = project_copy(tmp_path, api="10.99.0.12")
    out = tmp_path / "runtime.json"
    assert cli.main(["policy-config", "--root", str(project), "--stack", "runtime", "--output",
                     str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["zlh-agent-port"]["apiAddress"] == "10.99.0.12"
    assert cli.main(["policy-config", "--root", str(project), "--stack", "nope"]) == 2
    assert "no stack file" in capsys.readouterr().err
