"""The platform diagram: drawn from the recorded stacks, committed, checked, rewritten."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from tests.stack_configs import ROOT
from zlh_infra import cli
from zlh_infra.contract import CONTRACT_VERSION
from zlh_infra.tooling.delivery.diagram import (
    BEGIN,
    DOC,
    END,
    DiagramError,
    block,
    check,
    generate,
    mermaid,
    write,
)
from zlh_infra.tooling.preview.recording import StackRecording

CONTAINER = "proxmoxve:index/containerLegacy:ContainerLegacy"
DRAWING = "flowchart LR\n"


def test_the_committed_diagram_matches_the_program() -> None:
    problems = check(ROOT, generate(ROOT))
    assert problems == [], "\n".join(
        [*problems, "run `python -m zlh_infra diagram --write` and commit docs/architecture.md"]
    )


@pytest.fixture(scope="module")
def diagram(recordings: list[StackRecording]) -> str:
    return mermaid(recordings)


def test_a_subgraph_per_host_and_layer(diagram: str) -> None:
    subgraphs = re.findall(r"^\s*subgraph (\w+)\[\"([^\"]+)\"\]", diagram, re.MULTILINE)
    assert subgraphs == [
        ("core_host", "core host"),
        ("core_control_plane", "Layer 1: control plane"),
        ("runtime_host", "runtime host"),
        ("runtime_edge", "Layer 2: edge"),
        ("runtime_runtime", "Layer 3: runtime"),
    ]
    assert 'core_node(["Proxmox VE zlh-core<br/>stack core"])' in diagram
    assert 'runtime_node(["Proxmox VE zlh-runtime<br/>stack runtime"])' in diagram


def test_guests_are_labelled_with_name_and_vmid(diagram: str) -> None:
    for line in [
        'core_zpack_api["zpack-api<br/>VMID 100"]',
        'core_zlh_router["zlh-router (VM)<br/>VMID 300"]',
        'core_zlh_back["zlh-back<br/>VMID 2001"]',
        'runtime_zlh_zpack_proxy["zlh-zpack-proxy<br/>VMID 311"]',
        'runtime_zlh_base["zlh-base<br/>VMID 200"]',
    ]:
        assert f"\n            {line}\n" in diagram, line


def test_game_and_dev_containers_are_one_node_each(diagram: str) -> None:
    assert 'runtime_game[["3 game containers<br/>VMID 1000-1002"]]' in diagram
    assert 'runtime_dev[["2 dev containers<br/>VMID 1100-1101"]]' in diagram
    assert "mc-survival" not in diagram and "dev-alice" not in diagram


def test_the_contract_agent_path_routes_and_backups(diagram: str) -> None:
    edges = [line.strip() for line in diagram.splitlines() if re.search(r" (-->|==>|-\.->)", line)]
    assert edges == [
        f'core_node ==>|"contract v{CONTRACT_VERSION}<br/>StackReference core"| runtime_node',
        'core_zpack_api -->|"TCP 18888 zlh-agent"| management_network',
        "management_network --> runtime_dev",
        "management_network --> runtime_game",
        'core_zlh_proxy -->|"vpn.zerolaghub.com"| core_zlh_ctl',
        'core_zlh_proxy -->|"grafana.zerolaghub.com"| core_zlh_monitor',
        'core_zlh_proxy -->|"api.zerolaghub.com"| core_zpack_api',
        'core_zlh_proxy -->|"zerolaghub.com"| core_zpack_portal',
        'runtime_zlh_velocity -->|"Minecraft TCP 25565"| runtime_game',
        'runtime_zlh_zpack_proxy -->|"*.ide.zerolaghub.com (2 routes)"| runtime_dev',
        'core_node -.->|"backup *-*-* 02:30, 6 guests<br/>PBS datastore zlh"| core_zlh_back',
        'runtime_node -.->|"backup *-*-* 03:30, 11 guests<br/>PBS datastore zlh"| core_zlh_back',
    ]
    assert 'management_network{{"management network<br/>10.99.0.0/22"}}' in diagram


def test_every_node_is_declared_once(diagram: str) -> None:
    declared = re.findall(r"^\s+(\w+)[\[({]", diagram, re.MULTILINE)
    nodes = [name for name in declared if name != "subgraph"]
    assert len(nodes) == len(set(nodes))


def test_registration_order_does_not_change_the_diagram(
    recordings: list[StackRecording], diagram: str
) -> None:
    shuffled = [
        dataclasses.replace(recording, resources=list(reversed(recording.resources)))
        for recording in reversed(recordings)
    ]
    # Stacks are drawn in the order given; within them nothing depends on order.
    assert mermaid(list(reversed(shuffled))) == diagram


def test_a_bigger_fleet_widens_the_folded_node(recordings: list[StackRecording]) -> None:
    core, runtime = recordings
    template = next(r for r in runtime.resources if r.type == CONTAINER and r.name == "mc-creative")
    extra = dataclasses.replace(
        template,
        urn=template.urn.replace("mc-creative", "mc-extra"),
        name="mc-extra",
        inputs={**template.inputs, "vmId": 1042.0},
    )
    bigger = dataclasses.replace(runtime, resources=[*runtime.resources, extra])
    assert 'runtime_game[["4 game containers<br/>VMID 1000-1042"]]' in mermaid([core, bigger])


# --- the doc -------------------------------------------------------------------------------


def test_write_creates_the_doc_with_a_title_and_the_markers(tmp_path: Path) -> None:
    assert write(tmp_path, DRAWING) is True
    assert (tmp_path / DOC).read_text() == (f"# Architecture\n\n{BEGIN}{block(DRAWING)}{END}\n")


def test_write_touches_only_the_text_between_the_markers(tmp_path: Path) -> None:
    path = tmp_path / DOC
    path.parent.mkdir()
    prose_before = "# Architecture\n\nWhy two hosts.\n\n"
    prose_after = "\n\nHow the contract evolves.\n"
    path.write_text(f"{prose_before}{BEGIN}\nold drawing\n{END}{prose_after}")
    assert write(tmp_path, DRAWING) is True
    assert path.read_text() == f"{prose_before}{BEGIN}{block(DRAWING)}{END}{prose_after}"
    assert write(tmp_path, DRAWING) is False
    assert check(tmp_path, DRAWING) == []


@pytest.mark.parametrize(
    "text",
    ["# Architecture\n", f"{BEGIN}\n{BEGIN}\n{END}\n", f"{END}\n{BEGIN}\n"],
    ids=["no-markers", "two-begins", "reversed"],
)
def test_a_doc_without_one_pair_of_markers_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / DOC
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(DiagramError, match="needs exactly one"):
        write(tmp_path, DRAWING)
    assert path.read_text() == text
    assert "needs exactly one" in check(tmp_path, DRAWING)[0]


def test_check_names_a_missing_or_stale_doc(tmp_path: Path) -> None:
    assert check(tmp_path, DRAWING) == [f"{DOC} does not exist"]
    write(tmp_path, "flowchart LR\n    a --> b\n")
    problems = check(tmp_path, "flowchart LR\n    a --> c\n")
    assert problems[0] == f"{DOC}: the diagram differs from what the program generates"
    assert "-    a --> b" in problems and "+    a --> c" in problems


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.core.yaml", "Pulumi.runtime.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_cli_checks_and_writes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diagram", "--root", str(project)]) == 1
    assert f"{DOC} does not exist" in capsys.readouterr().err

    assert cli.main(["diagram", "--write", "--root", str(project)]) == 0
    assert capsys.readouterr().out == f"wrote {DOC}\n"
    written = (project / DOC).read_text()
    assert written == f"# Architecture\n\n{BEGIN}{block(generate(project))}{END}\n"
    assert cli.main(["diagram", "--root", str(project)]) == 0

    doc = project / DOC
    doc.write_text(doc.read_text().replace("VMID 100", "VMID 999"))
    assert cli.main(["diagram", "--root", str(project)]) == 1
    err = capsys.readouterr().err
    assert f"{DOC}: the diagram differs" in err and "diagram --write" in err


def test_cli_reports_a_stack_that_fails_offline(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "Pulumi.runtime.yaml"
    config.write_text(config.read_text().replace("vmid: 1000", "vmid: 5"))
    assert cli.main(["diagram", "--root", str(project)]) == 2
    assert "error: stack runtime fails offline" in capsys.readouterr().err
