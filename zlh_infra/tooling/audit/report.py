"""The audit's output: a text table for people, JSON for a scheduler or a dashboard."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from zlh_infra.tooling.audit.client import HostSnapshot
from zlh_infra.tooling.audit.rules import Finding

FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class HostSummary:
    stack: str
    endpoint: str
    node: str
    version: str
    guests: int

    @classmethod
    def of(cls, snapshot: HostSnapshot) -> HostSummary:
        target = snapshot.target
        return cls(
            target.stack, target.endpoint, target.node, snapshot.version, len(snapshot.guests)
        )


@dataclass(frozen=True, slots=True)
class HostError:
    stack: str
    endpoint: str
    message: str


def errors_of(findings: Sequence[Finding]) -> int:
    return sum(1 for finding in findings if finding.severity == "error")


def render(hosts: Sequence[HostSummary], findings: Sequence[Finding], fmt: str) -> str:
    if fmt == "json":
        errors = errors_of(findings)
        document: dict[str, Any] = {
            "complete": True,
            "compliant": errors == 0,
            "hosts": [asdict(host) for host in hosts],
            "summary": {"errors": errors, "info": len(findings) - errors},
            "findings": [asdict(finding) for finding in findings],
        }
        return json.dumps(document, indent=2) + "\n"
    return render_text(hosts, findings)


def render_failure(errors: Sequence[HostError], fmt: str) -> str:
    """What stdout gets when a host could not be read: no findings, never a partial report."""
    if fmt == "json":
        document = {
            "complete": False,
            "compliant": None,
            "errors": [asdict(error) for error in errors],
        }
        return json.dumps(document, indent=2) + "\n"
    return ""


_COLUMNS = ("LEVEL", "GUEST", "VMID", "NODE", "RULE", "PROBLEM", "FIX")


def render_text(hosts: Sequence[HostSummary], findings: Sequence[Finding], width: int = 180) -> str:
    lines = [f"Audited {len(hosts)} host(s):"]
    for host in hosts:
        lines.append(
            f"  {host.stack}: {host.endpoint} node {host.node}, Proxmox VE {host.version}, "
            f"{host.guests} guest(s)"
        )
    lines.append("")
    errors = errors_of(findings)
    if findings:
        lines += _table(findings, width)
        lines.append("")
    verdict = "NOT compliant" if errors else "compliant"
    lines.append(f"{errors} error(s), {len(findings) - errors} info: {verdict}.")
    return "\n".join(lines) + "\n"


def _table(findings: Sequence[Finding], width: int) -> list[str]:
    rows = [
        [
            finding.severity,
            finding.guest or "(host)",
            str(finding.vmid) if finding.vmid is not None else "-",
            finding.node or "-",
            finding.rule,
        ]
        for finding in findings
    ]
    fixed = [max(len(_COLUMNS[i]), *(len(row[i]) for row in rows)) for i in range(5)]
    free = max(60, width - sum(fixed) - 2 * 6)
    text_width = free // 2
    out = [_line([*_COLUMNS[:5], _COLUMNS[5].ljust(text_width), _COLUMNS[6]], fixed, text_width)]
    out.append(_line(["-" * w for w in fixed] + ["-" * text_width] * 2, fixed, text_width))
    for row, finding in zip(rows, findings, strict=True):
        problem = textwrap.wrap(finding.problem, text_width) or [""]
        fix = textwrap.wrap(finding.fix, text_width) or [""]
        for index in range(max(len(problem), len(fix))):
            cells = row if index == 0 else [""] * 5
            out.append(
                _line(
                    [
                        *cells,
                        problem[index] if index < len(problem) else "",
                        fix[index] if index < len(fix) else "",
                    ],
                    fixed,
                    text_width,
                )
            )
    return out


def _line(cells: Sequence[str], fixed: Sequence[int], text_width: int) -> str:
    widths = [*fixed, text_width, 0]
    return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()
