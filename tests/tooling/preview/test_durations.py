"""Go durations, read as ``time.ParseDuration`` reads them."""

from __future__ import annotations

import pytest

from zlh_infra.tooling.preview.durations import duration_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("250ms", 0.25),
        ("40us", 40e-6),
        ("40\u00b5s", 40e-6),
        ("40\u03bcs", 40e-6),
        ("7ns", 7e-9),
        ("1m1ms1us1ns", 60.001001001),
        ("0", 0.0),
        ("-0", 0.0),
        ("+0", 0.0),
        ("0s", 0.0),
        ("-2m", -120.0),
        ("+2m", 120.0),
        ("-1.5h", -5400.0),
        ("2562047h47m16.854775807s", 9223372036.854775807),
        ("-2562047h47m16.854775808s", -9223372036.854775808),
    ],
)
def test_reads_what_go_reads(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


def test_a_fraction_finer_than_a_nanosecond_is_dropped() -> None:
    assert duration_seconds("1.9ns") == pytest.approx(1e-9)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "invalid duration"),
        ("-", "invalid duration"),
        ("5", "missing unit"),
        ("1h5", "missing unit"),
        ("5.", "missing unit"),
        (".s", "invalid duration"),
        ("-.s", "invalid duration"),
        ("m5", "invalid duration"),
        ("1x", "unknown unit 'x'"),
        ("1d", "unknown unit 'd'"),
        ("1e3s", "unknown unit 'e'"),
        ("5 m", "unknown unit ' m'"),
        (" 5m", "invalid duration"),
        ("5m ", "unknown unit 'm '"),
        ("--5m", "invalid duration"),
        ("+-5m", "invalid duration"),
        ("1h-5m", "unknown unit 'h-'"),
        ("2562047h47m16.854775808s", "out of range"),
        ("-2562047h47m16.854775809s", "out of range"),
        ("99999999999999999999ns", "out of range"),
    ],
)
def test_refuses_what_go_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        duration_seconds(text)
