"""Go durations (``5m``, ``1h30m``, ``-1.5s``), read as the engine's ``time.ParseDuration``."""

from __future__ import annotations

import re

_NANOSECONDS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# Go's ``[0-9]*(\.[0-9]*)?`` then a unit: everything up to the next digit or dot.
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
# A Duration is an int64 of nanoseconds.
_MAX_NANOSECONDS = 1 << 63


def duration_seconds(text: str) -> float:
    """``text`` in seconds; ``ValueError`` for what ``time.ParseDuration`` refuses.

    An optional sign, then one or more decimal numbers each with its unit (``ns``, ``us``,
    ``µs``, ``ms``, ``s``, ``m``, ``h``); a bare ``0`` is the one number without a unit.
    No spaces, as in Go.
    """
    body = text[1:] if text[:1] in ("+", "-") else text
    negative = text[:1] == "-"
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, position = 0, 0
    while position < len(body):
        match = _PART.match(body, position)
        assert match is not None  # every group may be empty
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text!r}")
        if not unit:
            raise ValueError(f"missing unit in duration {text!r}")
        scale = _NANOSECONDS.get(unit)
        if scale is None:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        total += int(whole or "0") * scale
        if fraction:
            # Go keeps the fraction's nanoseconds and drops what is finer.
            total += int(fraction) * scale // 10 ** len(fraction)
        position = match.end()
    if total > (_MAX_NANOSECONDS if negative else _MAX_NANOSECONDS - 1):
        raise ValueError(f"invalid duration {text!r}: out of range")
    return (-total if negative else total) / 1e9
