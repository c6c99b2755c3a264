"""Velocity's plan: velocity.toml as Velocity's own default file has it, servers merged.

The merge script runs for real (``python3``) on scratch files, and its output is checked
against upstream ``default-velocity.toml``: same ``config-version``, and every key and
table generated exists there with the same type.
"""

from __future__ import annotations

import grp
import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.scripts import decoded, guest_file, shellcheck
from zlh_infra.platform.proxy_config import GameServer
from zlh_infra.services import velocity
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import Vendored, install_file

DEFAULT = tomllib.loads(
    (Path(__file__).parents[1] / "data/reference/velocity/default-velocity.toml").read_text()
)
#: Added upstream after the reference copy (PaperMC/Velocity PR #1524).
LATER_ADVANCED_KEYS = {
    "command-rate-limit",
    "forward-commands-if-rate-limited",
    "kick-after-rate-limited-commands",
    "tab-complete-rate-limit",
    "kick-after-rate-limited-tab-completes",
}
SECRET = "Fw7Rk2Lp9Qx4Tz8Vb3Nc6Md1"
SHA = "cd" * 32
JAR = Artifact("velocity", "3.4.0-SNAPSHOT-522", "velocity.jar", SHA)
SERVERS = [
    GameServer("mc-survival", "10.20.1.0:25565"),
    GameServer("mc-creative", "10.20.1.1:25565"),
]


def a_plan(servers: list[GameServer] | None = SERVERS) -> ServicePlan:
    return velocity.plan(
        guest="zlh-velocity",
        velocity=Vendored.from_store(JAR, "http://10.20.0.10:8080"),
        forwarding_secret=SECRET,
        games_domain="play.zerolaghub.com",
        servers=servers,
    )


def group() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def merge(tmp_path: Path, declared: str | None, registered: dict[str, str]) -> Path:
    """Run the merge script on scratch copies of the plan's files; returns the output."""
    script = tmp_path / "zlh-velocity-config"
    script.write_text(velocity.MERGE_SCRIPT)
    (tmp_path / "base.toml").write_text(velocity.base_config())
    if declared is not None:
        (tmp_path / "declared.toml").write_text(declared)
    servers_dir = tmp_path / "servers.d"
    servers_dir.mkdir(exist_ok=True)
    for name, text in registered.items():
        (servers_dir / name).write_text(text)
    output = tmp_path / "velocity.toml"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--base",
            str(tmp_path / "base.toml"),
            "--declared",
            str(tmp_path / "declared.toml"),
            "--servers-dir",
            str(servers_dir),
            "--games-domain",
            "play.zerolaghub.com",
            "--output",
            str(output),
            "--group",
            group(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "last-stdout").write_text(result.stdout)
    (tmp_path / "last-stderr").write_text(result.stderr)
    return output


def same_shape(generated: dict[str, Any], default: dict[str, Any], where: str = "") -> None:
    """Every generated key exists in the default with the same type (recursively).

    ``[servers]`` and ``[forced-hosts]`` map names of one's own: their entries are checked
    against the type of the default's entries instead (and ``try`` against ``try``).
    """
    free_form = where in ("servers.", "forced-hosts.")
    for key, value in generated.items():
        if where == "advanced." and key in LATER_ADVANCED_KEYS:
            continue
        if free_form and key != "try":
            like = next(v for k, v in default.items() if k != "try")
        else:
            assert key in default, f"{where}{key} is not in Velocity's default velocity.toml"
            like = default[key]
        assert type(value) is type(like), f"{where}{key}: {type(value).__name__}"
        if isinstance(value, dict):
            same_shape(value, like, f"{where}{key}.")
        if isinstance(value, list):
            assert all(type(item) is type(like[0]) for item in value), f"{where}{key}"


# --- velocity.toml against Velocity's default ---------------------------------------------


def test_the_merged_configuration_has_velocitys_shape_and_config_version(tmp_path: Path) -> None:
    output = merge(tmp_path, velocity.declared_servers(SERVERS), {})
    generated = tomllib.loads(output.read_text())
    assert generated["config-version"] == DEFAULT["config-version"] == velocity.CONFIG_VERSION
    same_shape(generated, DEFAULT)
    assert set(generated) == set(DEFAULT)


def test_a_misspelled_key_is_caught_by_the_shape_check(tmp_path: Path) -> None:
    generated = tomllib.loads(merge(tmp_path, None, {}).read_text())
    generated["player-info-forwading-mode"] = generated.pop("player-info-forwarding-mode")
    with pytest.raises(AssertionError, match="player-info-forwading-mode"):
        same_shape(generated, DEFAULT)
    generated = tomllib.loads(merge(tmp_path, None, {}).read_text())
    generated["advanced"]["login-ratelimit"] = "3000"
    with pytest.raises(AssertionError, match=r"advanced\.login-ratelimit: str"):
        same_shape(generated, DEFAULT)
    generated = tomllib.loads(merge(tmp_path, velocity.declared_servers(SERVERS), {}).read_text())
    generated["servers"]["mc-survival"] = 25565
    with pytest.raises(AssertionError, match=r"servers\.mc-survival: int"):
        same_shape(generated, DEFAULT)


def test_modern_forwarding_binds_all_addresses_and_reads_the_secret_file(tmp_path: Path) -> None:
    generated = tomllib.loads(merge(tmp_path, None, {}).read_text())
    assert generated["bind"] == "0.0.0.0:25565"
    assert generated["player-info-forwarding-mode"] == "modern"
    assert generated["forwarding-secret-file"] == "forwarding.secret"
    assert generated["online-mode"] is True
    plan = a_plan()
    secret = guest_file(plan, velocity.SECRET)
    assert (secret.content, secret.mode, secret.owner, secret.group) == (
        SECRET,
        0o600,
        "velocity",
        "velocity",
    )
    # velocity.toml's working directory makes the relative name resolve to that file.
    assert "WorkingDirectory=/opt/velocity\n" in guest_file(plan, velocity.UNIT_PATH).content
    assert SECRET not in velocity.base_config()
    assert SECRET not in configure_script([plan])
    assert SECRET in decoded(configure_script([plan]))


def test_declared_servers_get_forced_hosts_and_the_try_list(tmp_path: Path) -> None:
    generated = tomllib.loads(merge(tmp_path, velocity.declared_servers(SERVERS), {}).read_text())
    assert generated["servers"] == {
        "mc-creative": "10.20.1.1:25565",
        "mc-survival": "10.20.1.0:25565",
        "try": ["mc-creative", "mc-survival"],
    }
    assert generated["forced-hosts"] == {
        "mc-creative.play.zerolaghub.com": ["mc-creative"],
        "mc-survival.play.zerolaghub.com": ["mc-survival"],
    }


def test_servers_registered_outside_pulumi_are_merged_in_not_dropped(tmp_path: Path) -> None:
    registered = {
        "mc-api-made.toml": '"mc-api-made" = "10.20.1.7:25565"\n',
        "also.toml": 'mc-other = "10.20.1.8:25570"\n',
        # Pulumi's declaration wins over a registration of the same name.
        "clash.toml": 'mc-survival = "10.20.1.99:25565"\n',
        "broken.toml": "mc-broken = \n",
        "bad-address.toml": 'mc-bad = "example.com:25565"\n',
    }
    output = merge(tmp_path, velocity.declared_servers(SERVERS), registered)
    generated = tomllib.loads(output.read_text())
    assert generated["servers"]["try"] == ["mc-creative", "mc-survival", "mc-api-made", "mc-other"]
    assert generated["servers"]["mc-survival"] == "10.20.1.0:25565"
    assert generated["servers"]["mc-other"] == "10.20.1.8:25570"
    assert generated["forced-hosts"]["mc-api-made.play.zerolaghub.com"] == ["mc-api-made"]
    warnings = (tmp_path / "last-stderr").read_text()
    assert "skipping" in warnings and "broken.toml" in warnings and "bad-address.toml" in warnings
    assert "mc-survival is already known" in warnings


def test_the_merge_writes_only_on_change_and_says_so(tmp_path: Path) -> None:
    output = merge(tmp_path, velocity.declared_servers(SERVERS), {})
    assert (tmp_path / "last-stdout").read_text() == "changed\n"
    assert (output.stat().st_mode & 0o777) == 0o640
    before = output.stat().st_mtime_ns
    merge(tmp_path, velocity.declared_servers(SERVERS), {})
    assert (tmp_path / "last-stdout").read_text() == ""
    assert output.stat().st_mtime_ns == before
    merge(tmp_path, velocity.declared_servers(SERVERS), {"new.toml": 'mc-new = "10.20.1.9:1"\n'})
    assert (tmp_path / "last-stdout").read_text() == "changed\n"


def test_the_configure_step_restarts_velocity_only_when_the_merge_changed_it() -> None:
    plan = a_plan()
    assert (
        "zlh_out=$(/usr/local/sbin/zlh-velocity-config --base /etc/velocity/velocity.base.toml"
        " --declared /opt/velocity/zlh-servers.toml --servers-dir /etc/velocity/servers.d"
        " --games-domain play.zerolaghub.com --output /opt/velocity/velocity.toml)\n"
        in plan.converge
    )
    assert 'if [ "$zlh_out" = changed ]; then ZLH_CHANGED=1; fi' in plan.converge
    unit = guest_file(plan, velocity.UNIT_PATH).content
    assert "ExecStartPre=+/usr/local/sbin/zlh-velocity-config --base" in unit
    assert guest_file(plan, velocity.DECLARED).content == velocity.declared_servers(SERVERS)
    assert velocity.DECLARED not in [f.path for f in a_plan(servers=None).files]
    assert plan.health == "ss -ltnH 'sport = :25565' | grep -q ."
    assert "openjdk-17-jre-headless" in plan.packages


def test_motd_escaping_round_trips_through_toml() -> None:
    motd = 'say "hi" \\ <red>\ttab'
    assert tomllib.loads(f"m = {velocity.toml_string(motd)}")["m"] == motd
    weird = "\x01\x7f\u00e9"
    assert tomllib.loads(f"m = {velocity.toml_string(weird)}")["m"] == weird
    with pytest.raises(ValueError, match="control characters"):
        velocity.base_config(motd="two\nlines")


@pytest.mark.parametrize(
    "server",
    [
        GameServer("MC_Survival", "10.20.1.0:25565"),
        GameServer("mc", "example.com:25565"),
        GameServer("mc", "10.20.1.0:99999"),
        GameServer('mc" = "x', "10.20.1.0:25565"),
    ],
)
def test_declared_servers_are_checked(server: GameServer) -> None:
    with pytest.raises(ValueError, match="game server"):
        velocity.declared_servers([server])


def test_a_secret_that_is_not_generated_is_refused() -> None:
    with pytest.raises(ValueError, match="forwarding secret"):
        velocity.plan(
            guest="zlh-velocity",
            velocity=Vendored.from_store(JAR, "http://10.20.0.10:8080"),
            forwarding_secret="short",
            games_domain="play.zerolaghub.com",
        )


def test_the_scripts_pass_shellcheck() -> None:
    plan = a_plan()
    shellcheck(configure_script([plan]))
    shellcheck(install_script([plan], Gateway("10.20.0.1", "zlh-zpack-router")))


# --- the jar, fetched once ----------------------------------------------------------------


def test_the_jar_is_installed_once_and_verified(tmp_path: Path) -> None:
    jar = tmp_path / "velocity.jar"
    jar.write_bytes(b"PK fake jar")
    digest = hashlib.sha256(jar.read_bytes()).hexdigest()
    source = Vendored(Artifact("velocity", "3.4.0", "velocity.jar", digest), jar.as_uri())
    dest = tmp_path / "opt/velocity/velocity.jar"
    shell = f'ZLH_CHANGED=0\n{install_file(source, str(dest))}echo "$ZLH_CHANGED"\n'
    first = subprocess.run(["sh", "-eu"], input=shell, capture_output=True, text=True)
    assert (first.returncode, first.stdout) == (0, "1\n"), first.stderr
    assert dest.read_bytes() == b"PK fake jar"
    assert (dest.stat().st_mode & 0o777) == 0o644
    jar.unlink()
    second = subprocess.run(["sh", "-eu"], input=shell, capture_output=True, text=True)
    assert (second.returncode, second.stdout) == (0, "0\n"), second.stderr
