"""Whole numbers out of wire values: floats from Pulumi, digit strings from Proxmox."""

from __future__ import annotations

import math

import pytest

from zlh_infra.platform.wire_numbers import whole_number


@pytest.mark.parametrize(
    ("value", "number"),
    [(105, 105), (105.0, 105), (0.0, 0), (-3.0, -3), (-3, -3), (1e16, 10**16), (-0.0, 0)],
)
def test_whole_numbers_are_read(value: object, number: int) -> None:
    assert whole_number(value) == number
    assert whole_number(value, digits=False) == number


@pytest.mark.parametrize(
    "value",
    [True, False, 1.5, -0.5, math.nan, math.inf, -math.inf, None, [105], {"v": 105}, b"105"],
)
def test_anything_else_is_no_number(value: object) -> None:
    assert whole_number(value) is None


@pytest.mark.parametrize(("text", "number"), [("105", 105), (" 105\n", 105), ("007", 7)])
def test_digit_strings_are_read_unless_refused(text: str, number: int) -> None:
    assert whole_number(text) == number
    assert whole_number(text, digits=False) is None


@pytest.mark.parametrize(
    "text", ["", " ", "-3", "+3", "1.0", "1e3", "0x10", "1_000", "1 000", "\u0661\u0660", "\u00b2"]
)
def test_only_plain_ascii_digits_count(text: str) -> None:
    assert whole_number(text) is None
