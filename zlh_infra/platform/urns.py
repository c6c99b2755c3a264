"""Pulumi URNs: ``urn:pulumi:<stack>::<project>::<qualified type>::<name>``.

The qualified type is the parents' type tokens and the resource's own, ``$``-joined
(outermost first; the root Stack adds nothing). The name is last and may itself
contain ``::``, so a URN splits at most three times.
"""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "urn:pulumi:"


class Urn(NamedTuple):
    stack: str
    project: str
    qualified_type: str
    name: str

    @property
    def type_chain(self) -> list[str]:
        """The parents' type tokens (outermost first) and the resource's own."""
        return self.qualified_type.split("$")

    @property
    def type(self) -> str:
        return self.type_chain[-1]


def parse(urn: str) -> Urn | None:
    """The URN's four parts; None for a string that has fewer."""
    parts = urn.split("::", 3)
    if len(parts) != 4:
        return None
    return Urn(parts[0].removeprefix(PREFIX), parts[1], parts[2], parts[3])


def provider_urn(reference: str) -> str | None:
    """``<provider urn>::<provider id>`` -> the provider's URN; empty -> None."""
    if not reference:
        return None
    return reference.rsplit("::", 1)[0]
