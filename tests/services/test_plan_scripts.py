"""The rendered scripts, run for real with sh in a scratch directory: idempotent, quiet, safe."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from zlh_infra.services.plan import (
    EXIT_UNAVAILABLE,
    Gateway,
    GuestFile,
    PlanError,
    ServicePlan,
    configure_script,
    download,
    install_script,
)

SECRET = "Sup3rS3cretPassw0rdValue"


def run(script: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-eu"],
        input=script,
        text=True,
        capture_output=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def a_plan(
    root: Path, *, content: str = f"password={SECRET}\n", health: str = "true"
) -> ServicePlan:
    owner = "root"
    return ServicePlan(
        service="demo",
        guest="zlh-demo",
        directories=(GuestFile(str(root / "data"), "", mode=0o750, owner=owner, group=owner),),
        files=(
            GuestFile(str(root / "etc/demo/secret.conf"), content, mode=0o600, owner=owner),
            GuestFile(str(root / "etc/demo/plain.conf"), "plain\n", owner=owner),
        ),
        # Records what the converging commands saw of the file changes.
        converge=f'echo "$ZLH_CHANGED" >>{root}/changes',
        health=health,
        health_timeout=2,
    )


@pytest.fixture
def owner_ok() -> None:
    if os.getuid() != 0:
        pytest.fail("these tests chown files: run them as root (CI does)")


def test_files_are_written_with_their_mode_and_only_when_they_change(
    tmp_path: Path, owner_ok: None
) -> None:
    plan = a_plan(tmp_path)
    first = run(configure_script([plan]))
    assert first.returncode == 0, first.stderr
    secret_file = tmp_path / "etc/demo/secret.conf"
    assert secret_file.read_text() == f"password={SECRET}\n"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "etc/demo/plain.conf").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o750

    second = run(configure_script([plan]))
    assert second.returncode == 0, second.stderr
    changed = run(configure_script([a_plan(tmp_path, content="password=other\n")]))
    assert changed.returncode == 0, changed.stderr
    # Written, unchanged, changed: the converging commands know which.
    assert (tmp_path / "changes").read_text().split() == ["1", "0", "1"]
    # No temporary file is left behind.
    assert sorted(p.name for p in (tmp_path / "etc/demo").iterdir()) == [
        "plain.conf",
        "secret.conf",
    ]


def test_a_mode_change_alone_is_a_change(tmp_path: Path, owner_ok: None) -> None:
    assert run(configure_script([a_plan(tmp_path)])).returncode == 0
    (tmp_path / "etc/demo/secret.conf").chmod(0o644)
    assert run(configure_script([a_plan(tmp_path)])).returncode == 0
    assert stat.S_IMODE((tmp_path / "etc/demo/secret.conf").stat().st_mode) == 0o600
    assert (tmp_path / "changes").read_text().split() == ["1", "1"]


def test_the_scripts_print_nothing_they_write(tmp_path: Path, owner_ok: None) -> None:
    result = run(configure_script([a_plan(tmp_path)]))
    assert SECRET not in result.stdout + result.stderr
    # Nor does the script carry the secret in clear: it decodes it into a pipe.
    assert SECRET not in configure_script([a_plan(tmp_path)])


def test_a_failed_health_check_names_the_service_and_guest(tmp_path: Path, owner_ok: None) -> None:
    result = run(configure_script([a_plan(tmp_path, health="false")]))
    assert result.returncode == 1
    assert "zlh: demo on zlh-demo failed its health check after 2 s" in result.stderr


def test_a_health_check_is_retried_until_it_passes(tmp_path: Path, owner_ok: None) -> None:
    # Fails the first time, passes the second: the check is polled, not run once.
    flag = tmp_path / "seen"
    health = f"if [ -e {flag} ]; then true; else touch {flag}; false; fi"
    result = run(configure_script([a_plan(tmp_path, health=health)]))
    assert result.returncode == 0, result.stderr


def test_install_waits_for_mirrors_and_names_the_router(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # An apt-get whose mirrors never answer, and a sleep that does not wait.
    (fake_bin / "apt-get").write_text("#!/bin/sh\necho 'Could not resolve host' >&2\nexit 100\n")
    (fake_bin / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for tool in fake_bin.iterdir():
        tool.chmod(0o755)
    plan = ServicePlan(service="demo", guest="zlh-demo", packages=("mariadb-server",))
    script = install_script([plan], Gateway("10.10.0.1", "zlh-router"))
    script = script.replace("/var/log/zlh-apt-update.log", str(tmp_path / "apt.log"))
    result = run(script, env={"PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert result.returncode == 1
    assert (
        "zlh: zlh-demo cannot reach its package mirrors through zlh-router (10.10.0.1) after "
        "120 s; bring the router up first (docs/runbook.md#stage-1-routers)"
    ) in result.stderr
    assert "Could not resolve host" in result.stderr


def test_install_updates_then_installs_the_packages(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "calls"
    (fake_bin / "apt-get").write_text(f'#!/bin/sh\necho "$*" >>{calls}\n')
    (fake_bin / "apt-get").chmod(0o755)
    plans = [
        ServicePlan(service="a", guest="g", packages=("redis-server", "curl")),
        ServicePlan(service="b", guest="g", packages=("curl",)),
    ]
    script = install_script(plans, Gateway("10.20.0.1", "zlh-zpack-router"))
    script = script.replace("/var/log/zlh-apt-update.log", str(tmp_path / "apt.log"))
    result = run(script, env={"PATH": f"{fake_bin}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "update -q",
        "install -y -q --no-install-recommends curl redis-server",
    ]


def test_nothing_to_install_needs_no_network() -> None:
    assert install_script([ServicePlan(service="a", guest="g")], Gateway("1", "r")) == "true\n"


def test_an_unreachable_download_exits_unavailable(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl not found: install the Debian package curl")
    script = download("http://127.0.0.1:9/none", str(tmp_path / "f"), "demo 1.0")
    result = run(script.replace("--retry 3", "--retry 0"))
    assert result.returncode == EXIT_UNAVAILABLE
    assert "zlh: demo 1.0 could not be fetched from http://127.0.0.1:9/none" in result.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("packages", ("mariadb-server; rm -rf /",)),
        ("units", ("x.service; reboot",)),
        ("accounts", ("Root User",)),
        ("files", (GuestFile("/etc/../shadow", ""),)),
        ("files", (GuestFile("relative/path", ""),)),
        ("files", (GuestFile("/etc/x", "", owner="root; id"),)),
        ("files", (GuestFile("/etc/$(id)", ""),)),
    ],
)
def test_a_plan_refuses_what_it_cannot_render_safely(field: str, value: object) -> None:
    with pytest.raises(PlanError):
        ServicePlan(service="demo", guest="g", **{field: value})  # type: ignore[arg-type]
