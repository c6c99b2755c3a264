"""policy/README.md shows each policy's config keys as the pack's models define them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.stack_configs import ROOT
from zlh_infra import cli
from zlh_infra.policies.pack import POLICIES
from zlh_infra.tooling.policy_reference import (
    CONFIGS,
    POLICY_README,
    ReadmeLayoutError,
    rewrite,
    table,
)


def test_the_committed_readme_is_current() -> None:
    committed = (ROOT / POLICY_README).read_text(encoding="utf-8")
    assert committed == rewrite(committed), (
        f"{POLICY_README} is stale: run `python -m zlh_infra policy-reference --write`"
    )


def test_every_configurable_policy_has_its_table() -> None:
    configurable = {p.name: p.config_schema for p in POLICIES if p.config_schema is not None}
    assert set(CONFIGS) == set(configurable)
    for name, schema in configurable.items():
        assert CONFIGS[name].properties == schema.properties, name


@pytest.mark.parametrize("name", CONFIGS)
def test_a_table_lists_every_key_with_its_default_and_meaning(name: str) -> None:
    spec = CONFIGS[name]
    rows = table(spec).splitlines()[2:]
    keys = [re.match(r"\| `([^`]+)` \|", row)[1] for row in rows]  # type: ignore[index]
    assert keys == list(spec.properties)
    for row, prop in zip(rows, spec.properties.values(), strict=True):
        assert row.count(" | ") == 2 and prop["description"] in row


def test_stale_tables_are_reported_and_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / POLICY_README
    readme.parent.mkdir()
    shutil.copy(ROOT / POLICY_README, readme)
    current = readme.read_text(encoding="utf-8")
    readme.write_text(current.replace("| `agentPort` | `18888` |", "| `agentPort` | `1` |"))
    assert cli.main(["policy-reference", "--root", str(tmp_path)]) == 1
    assert "stale: policy/README.md" in capsys.readouterr().err
    assert cli.main(["policy-reference", "--root", str(tmp_path), "--write"]) == 0
    assert readme.read_text(encoding="utf-8") == current
    assert cli.main(["policy-reference", "--root", str(tmp_path)]) == 0


def test_a_policy_without_its_block_is_refused() -> None:
    committed = (ROOT / POLICY_README).read_text(encoding="utf-8")
    start = committed.index("<!-- config of zlh-tenant-egress,")
    end = committed.index("<!-- end of generated table -->", start)
    without = committed[:start] + committed[end + len("<!-- end of generated table -->") :]
    with pytest.raises(ReadmeLayoutError, match="no generated block for zlh-tenant-egress"):
        rewrite(without)
    doubled = committed + "\n" + committed[start:end] + "<!-- end of generated table -->\n"
    with pytest.raises(ReadmeLayoutError, match="zlh-tenant-egress has more than one block"):
        rewrite(doubled)
