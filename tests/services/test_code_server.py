"""The dev template and dev containers: code-server behind a password, tailscaled joined."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.scripts import decoded, guest_file, shellcheck
from zlh_infra.services import code_server
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import Vendored, install_deb

PASSWORD = "Cs8Hq2Vw5Ky9Lp3Rt7Bn4Xz"
AUTH_KEY = "hskey-auth-Ab12Cd34Ef56-Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34"
STORE = "http://10.20.0.10:8080"
CODE = Artifact("code-server", "4.96.4", "code-server_4.96.4_amd64.deb", "34" * 32)
TAILSCALE = Artifact("tailscale", "1.80.3", "tailscale_1.80.3_amd64.deb", "56" * 32)


def template() -> ServicePlan:
    return code_server.template_plan(guest="zlh-template-code-server")


def fleet() -> tuple[ServicePlan, ServicePlan]:
    return code_server.fleet_plan(
        guest="dev-alice",
        code_server=Vendored.from_store(CODE, STORE),
        tailscale=Vendored.from_store(TAILSCALE, STORE),
        password=PASSWORD,
        login_server="https://vpn.zerolaghub.com",
        auth_key=AUTH_KEY,
    )


# --- the template -------------------------------------------------------------------------


def test_the_template_holds_the_user_and_tools_but_no_vendor_software() -> None:
    plan = template()
    assert "useradd --create-home --shell /bin/bash coder" in plan.converge
    assert {"curl", "jq"} <= set(plan.packages)
    assert plan.units == ()
    # No release in the template: a clone keeps its disk, so it installs its own.
    script = configure_script([plan])
    assert STORE not in script and ".deb" not in script and "tailscale up" not in script


def test_tailscaled_runs_in_userspace_networking_mode() -> None:
    defaults = guest_file(template(), "/etc/default/tailscaled").content
    assert 'FLAGS="--tun=userspace-networking"\n' in defaults


# --- a dev container ----------------------------------------------------------------------


def test_a_dev_container_installs_both_debs_from_zlh_artifacts_before_starting_them() -> None:
    code, vpn = fleet()
    assert f"{STORE}/code-server/4.96.4/code-server_4.96.4_amd64.deb" in code.converge
    assert f"{STORE}/tailscale/1.80.3/tailscale_1.80.3_amd64.deb" in vpn.converge
    assert 'install --no-install-recommends "$zlh_dl"/code-server_4.96.4_amd64.deb' in code.converge
    # The join needs tailscaled, which the .deb brings.
    assert vpn.converge.index("tailscale_1.80.3_amd64.deb") < vpn.converge.index("tailscale up")
    # Both plans update the package lists first (their install step waits for mirrors).
    assert code.packages and vpn.packages


def test_code_server_binds_8443_with_its_own_password_in_a_0600_file() -> None:
    code, _ = fleet()
    config = guest_file(code, code_server.CONFIG)
    assert config.path == "/home/coder/.config/code-server/config.yaml"
    assert (config.mode, config.owner, config.group) == (0o600, "coder", "coder")
    assert yaml.safe_load(config.content) == {
        "bind-addr": "0.0.0.0:8443",
        "auth": "password",
        "password": PASSWORD,
        "cert": False,
    }
    assert [d.owner for d in code.directories] == ["coder", "coder"]
    assert code.units == ("code-server@coder.service",)
    assert code.health == "curl -fsS -o /dev/null http://127.0.0.1:8443/healthz"


def test_the_join_reads_the_auth_key_from_a_0600_file_and_runs_once() -> None:
    _, vpn = fleet()
    key = guest_file(vpn, code_server.AUTH_KEY)
    assert (key.mode, key.owner, key.content) == (0o600, "root", AUTH_KEY)
    join = next(line for line in vpn.converge.splitlines() if "tailscale up" in line)
    assert join.strip() == (
        "tailscale up --login-server=https://vpn.zerolaghub.com"
        " --auth-key=file:/etc/zlh/tailscale-authkey --hostname=dev-alice --accept-dns=false"
    )
    # Only when not already running.
    assert f"if ! {code_server.RUNNING}; then" in vpn.converge
    assert vpn.health == code_server.RUNNING


def test_no_secret_is_in_clear_in_any_script() -> None:
    for plan in (*fleet(), template()):
        script = configure_script([plan])
        assert PASSWORD not in script and AUTH_KEY not in script
    both = decoded(configure_script(list(fleet())))
    assert PASSWORD in both and AUTH_KEY in both


def test_the_running_check_reads_tailscales_backend_state(tmp_path: Path) -> None:
    fake = tmp_path / "tailscale"
    for state, expected in (("Running", 0), ("NeedsLogin", 1)):
        status = json.dumps({"BackendState": state})
        fake.write_text(f"#!/bin/sh\necho '{status}'\n")
        fake.chmod(0o755)
        env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
        result = subprocess.run(["sh", "-c", code_server.RUNNING], env=env, check=False)
        assert result.returncode == expected, state


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("login_server", "http://vpn.zerolaghub.com"),
        ("login_server", "https://vpn.zerolaghub.com/x;reboot"),
        ("auth_key", "short"),
        ("auth_key", "key with spaces and more"),
        ("hostname", "Dev_Alice"),
    ],
)
def test_join_inputs_are_checked(field: str, value: str) -> None:
    args: dict[str, Any] = {
        "guest": "dev-alice",
        "tailscale": Vendored.from_store(TAILSCALE, STORE),
        "login_server": "https://vpn.zerolaghub.com",
        "auth_key": AUTH_KEY,
        "hostname": "dev-alice",
        field: value,
    }
    with pytest.raises(ValueError) as error:
        code_server.tailscale_plan(**args)
    assert value not in str(error.value) or field != "auth_key"


def test_the_scripts_pass_shellcheck() -> None:
    gateway = Gateway("10.20.0.1", "zlh-zpack-router")
    for plan in (template(), *fleet()):
        shellcheck(configure_script([plan]))
        shellcheck(install_script([plan], gateway))


# --- installing a .deb, run for real with a stand-in apt-get -------------------------------


def test_a_deb_is_installed_once_per_release(tmp_path: Path) -> None:
    deb = tmp_path / "code-server_4.96.4_amd64.deb"
    deb.write_bytes(b"!<arch>\nfake deb")
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    source = Vendored(Artifact("code-server", "4.96.4", deb.name, digest), deb.as_uri())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "$@" >>{log}\nfor a; do case "$a" in *.deb) test -r "$a";; esac; done\n'
    )
    (bin_dir / "dpkg-query").write_text(
        f"#!/bin/sh\n[ -s {log} ] && printf 'install ok installed'\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    shell = (
        "ZLH_CHANGED=0\n"
        + install_deb(source, "code-server", markers=str(tmp_path / "markers"))
        + 'echo "$ZLH_CHANGED"\n'
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-eu"], input=shell, env=env, capture_output=True, text=True)

    first = run()
    assert (first.returncode, first.stdout) == (0, "1\n"), first.stderr
    installed = log.read_text()
    assert "install --no-install-recommends /" in installed
    assert "--force-confold" in installed and installed.rstrip().endswith(deb.name)
    assert (tmp_path / "markers/code-server.sha256").read_text() == digest + "\n"
    deb.unlink()
    second = run()
    assert (second.returncode, second.stdout) == (0, "0\n"), second.stderr
    assert log.read_text() == installed
