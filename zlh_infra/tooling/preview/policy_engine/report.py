"""The outcome of a policy run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..policy_config import PolicyConfig
from ..recording import Diagnostic


@dataclass(slots=True)
class PolicyReport:
    """The outcome of one policy pack run over one stack."""

    pack_name: str
    pack_version: str
    diagnostics: list[Diagnostic]
    #: Merged configuration actually sent to the pack, per policy (and "all" if given).
    config: dict[str, PolicyConfig]
    #: Enforcement level of each policy the pack declares, after configuration.
    policies: dict[str, str] = field(default_factory=dict)
    #: Seconds spent analysing (Analyze and AnalyzeStack calls), without the pack's start.
    analysis_seconds: float = 0.0


def has_mandatory_violation(diagnostics: Iterable[Diagnostic]) -> bool:
    """True when a policy reported a mandatory violation (preview must fail)."""
    return any(d.source == "policy" and d.enforcement_level == "mandatory" for d in diagnostics)
