"""Whole numbers out of wire values: Pulumi sends every number as a float, Proxmox some as text."""

from __future__ import annotations


def whole_number(value: object, *, digits: bool = True) -> int | None:
    """``value`` as an int if it is a whole number (``3``, ``3.0``), else None.

    A bool is no number. ``digits`` also reads a string of ASCII digits (``"105"``, no
    sign), as the Proxmox API and some provider fields give numbers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if digits and isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            return int(text)
    return None
