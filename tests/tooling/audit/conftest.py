"""Fixtures: the test CA, the two platform hosts as plans, and a way to audit them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakepve.certs import make_cert  # type: ignore[import-untyped]

from tests.tooling.audit.fakehosts import HOST, TOKEN, FakeHost, HostPlan, core_plan, runtime_plan
from zlh_infra import cli

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Pki:
    certfile: str
    keyfile: str


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    certfile, keyfile, _ = make_cert(str(tmp_path_factory.mktemp("pki")), hosts=(HOST,))
    return Pki(certfile, keyfile)


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA that did not sign the fakes' certificate."""
    certfile, _, _ = make_cert(str(tmp_path_factory.mktemp("other-pki")), hosts=(HOST,))
    return str(certfile)


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Platform:
    """Both hosts as plans; ``start()`` serves them, ``audit()`` runs the CLI on them."""

    pki: Pki
    capsys: pytest.CaptureFixture[str]
    core: HostPlan = field(default_factory=core_plan)
    runtime: HostPlan = field(default_factory=runtime_plan)
    hosts: dict[str, FakeHost] = field(default_factory=dict)
    #: Loopback address each host listens on.
    addresses: dict[str, str] = field(default_factory=dict)

    def start(self) -> dict[str, FakeHost]:
        for stack, plan in (("core", self.core), ("runtime", self.runtime)):
            address = self.addresses.get(stack, HOST)
            self.hosts[stack] = FakeHost(plan, self.pki.certfile, self.pki.keyfile, address)
        return self.hosts

    def args(self) -> list[str]:
        """The flags that point the audit at the fakes, with the shipped stack files."""
        if not self.hosts:
            self.start()
        argv = ["--root", str(REPO), "--ca-file", self.pki.certfile, "--timeout", "5"]
        for stack, host in self.hosts.items():
            argv += ["--stack", stack, "--host", f"{stack}={host.url}"]
        return argv

    def audit(self, *extra: str) -> Result:
        argv = ["audit", *self.args(), *extra]
        self.capsys.readouterr()
        code = cli.main(argv)
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()


# --- reading a JSON report ----------------------------------------------------------------


def findings(result: Result) -> list[dict[str, Any]]:
    document = json.loads(result.out)
    assert document["complete"] is True
    found: list[dict[str, Any]] = document["findings"]
    return found


def errors(result: Result) -> list[tuple[str | None, str]]:
    return [(f["guest"], f["rule"]) for f in findings(result) if f["severity"] == "error"]


def problems(result: Result, guest: str | None, rule_name: str) -> list[str]:
    return [f["problem"] for f in findings(result) if (f["guest"], f["rule"]) == (guest, rule_name)]


def only(result: Result, guest: str | None, rule_name: str) -> dict[str, Any]:
    matching = [f for f in findings(result) if f["guest"] == guest and f["rule"] == rule_name]
    assert len(matching) == 1, findings(result)
    return matching[0]


@pytest.fixture
def platform(
    pki: Pki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    monkeypatch.setenv("PROXMOX_VE_API_TOKEN", TOKEN)
    fixture = Platform(pki, capsys)
    try:
        yield fixture
        for stack, host in fixture.hosts.items():
            # The audit is read-only: every request it made was a GET.
            assert host.methods() <= {"GET"}, (stack, host.pve.requests)
    finally:
        fixture.stop()
