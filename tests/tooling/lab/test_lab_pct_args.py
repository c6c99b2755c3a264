"""The lab's ``pct``: Proxmox's command lines it understands, and the ones it refuses."""

from __future__ import annotations

import pytest

from zlh_infra.tooling.lab.pct_args import (
    PctExec,
    PctResize,
    PctShutdown,
    PctStart,
    PctStatus,
    PctStop,
    PctUsageError,
    parse_pct,
)


def test_exec_keeps_the_command_after_the_double_dash() -> None:
    assert parse_pct(["exec", "102", "--", "sh", "-c", "cat > /x"]) == PctExec(
        102, ("sh", "-c", "cat > /x")
    )
    parsed = parse_pct(["exec", "200", "--", "timeout", "120", "sh", "-eu"])
    assert isinstance(parsed, PctExec)
    assert parsed.command == ("timeout", "120", "sh", "-eu")


def test_exec_options_of_the_command_are_not_pct_options() -> None:
    parsed = parse_pct(["exec", "1000", "--", "ss", "-ltnH", "--timeout", "3"])
    assert isinstance(parsed, PctExec) and parsed.command[-2:] == ("--timeout", "3")


def test_lifecycle_subcommands() -> None:
    assert parse_pct(["start", "200"]) == PctStart(200)
    assert parse_pct(["shutdown", "200", "--timeout", "60"]) == PctShutdown(200, 60, False)
    assert parse_pct(["shutdown", "200", "--forceStop", "1"]) == PctShutdown(200, 60, True)
    assert parse_pct(["stop", "200"]) == PctStop(200)
    assert parse_pct(["status", "210"]) == PctStatus(210)
    assert parse_pct(["resize", "1000", "rootfs", "32G"]) == PctResize(1000, "rootfs", "32G")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["push", "100", "/a", "/b"],
        ["set", "100", "--memory", "512"],
        ["exec", "100"],
        ["exec", "100", "--"],
        ["start", "abc"],
        ["start", "99"],
        ["shutdown", "100", "--timeout", "-1"],
        ["status"],
    ],
)
def test_anything_else_is_refused_loudly(argv: list[str]) -> None:
    with pytest.raises(PctUsageError):
        parse_pct(argv)


def test_an_unknown_subcommand_names_what_the_stand_in_knows() -> None:
    with pytest.raises(PctUsageError, match="exec, start, shutdown, stop, status, resize"):
        parse_pct(["snapshot", "100", "s1"])
