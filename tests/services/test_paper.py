"""Paper's plans: the template carries Java; each game container its jar, settings and server."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.scripts import decoded, guest_file, shellcheck
from zlh_infra.services import paper
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import Vendored

SECRET = "Fw7Rk2Lp9Qx4Tz8Vb3Nc6Md1"
STORE = "http://10.20.0.10:8080"
JAR = Artifact("paper", "1.21.4-232", "paper-1.21.4-232.jar", "ef" * 32)
JRE = Artifact("temurin-jre", "21.0.6+7", "OpenJDK21U-jre_x64_linux.tar.gz", "12" * 32)


def template(java: Artifact | None = None) -> ServicePlan:
    return paper.template_plan(
        guest="zlh-template-minecraft-paper",
        java=Vendored.from_store(java, STORE) if java else None,
    )


def container(java: Artifact | None = None, **extra: Any) -> ServicePlan:
    args: dict[str, Any] = {
        "guest": "mc-survival",
        "paper": Vendored.from_store(JAR, STORE),
        "forwarding_secret": SECRET,
        "accept_eula": True,
        "memory_mb": 4096,
        "java": Vendored.from_store(java, STORE) if java else None,
        **extra,
    }
    return paper.fleet_plan(**args)


def test_the_template_carries_java_and_the_account_but_nothing_of_paper() -> None:
    plan = template()
    assert "openjdk-17-jre-headless" in plan.packages
    assert plan.accounts == ("minecraft",)
    assert plan.units == () and plan.files == ()
    script = configure_script([plan])
    assert STORE not in script and "paper.jar" not in script and "minecraft.service" not in script
    # A vendored JRE is the container's: the template then installs no Java at all.
    assert "openjdk-17-jre-headless" not in template(java=JRE).packages


def test_a_game_container_runs_the_server_and_listens_on_its_port() -> None:
    plan = container(port=25570)
    assert plan.units == ("minecraft.service",)
    assert plan.health == "ss -ltnH 'sport = :25570' | grep -q ."
    assert plan.health_timeout == 300


def test_world_data_lives_on_the_data_disk_owned_by_minecraft() -> None:
    plan = container()
    unit = guest_file(plan, paper.UNIT_PATH).content
    assert "WorkingDirectory=/srv/data/world\n" in unit
    assert "User=minecraft\n" in unit
    assert "-jar /opt/minecraft/paper.jar --nogui\n" in unit
    data = next(d for d in plan.directories if d.path == "/srv/data/world")
    assert (data.mode, data.owner, data.group) == (0o750, "minecraft", "minecraft")
    for path in (paper.EULA, paper.PROPERTIES, paper.PAPER_GLOBAL):
        assert path.startswith("/srv/data/world/")
        assert guest_file(plan, path).owner == "minecraft"


def test_the_server_sits_behind_velocity_with_its_forwarding_secret() -> None:
    plan = container(port=25570)
    properties = dict(
        line.split("=", 1)
        for line in guest_file(plan, paper.PROPERTIES).content.splitlines()
        if not line.startswith("#")
    )
    assert properties["online-mode"] == "false"
    assert properties["server-port"] == "25570"
    assert guest_file(plan, paper.EULA).content == "eula=true\n"
    settings = guest_file(plan, paper.PAPER_GLOBAL)
    assert settings.mode == 0o600
    assert yaml.safe_load(settings.content) == {
        "proxies": {"velocity": {"enabled": True, "online-mode": True, "secret": SECRET}}
    }
    assert SECRET not in configure_script([plan])
    assert SECRET in decoded(configure_script([plan]))


def test_the_eula_must_be_accepted_explicitly() -> None:
    with pytest.raises(ValueError, match="EULA"):
        container(accept_eula=False)


def test_java_is_debians_17_or_a_pinned_jre_from_zlh_artifacts() -> None:
    debian = container()
    assert "ExecStart=/usr/bin/java " in guest_file(debian, paper.UNIT_PATH).content
    assert "temurin" not in debian.converge
    temurin = container(java=JRE)
    assert "ExecStart=/opt/java/bin/java " in guest_file(temurin, paper.UNIT_PATH).content
    assert f"{STORE}/temurin-jre/21.0.6+7/OpenJDK21U-jre_x64_linux.tar.gz" in temurin.converge
    assert "--strip-components=1" in temurin.converge


def test_the_jar_comes_from_zlh_artifacts_verified() -> None:
    converge = container().converge
    assert f"{STORE}/paper/1.21.4-232/paper-1.21.4-232.jar" in converge
    assert converge.index("sha256sum -c") < converge.index("install -D -m 0644")


def test_a_game_containers_heap_follows_its_memory() -> None:
    unit = guest_file(container(memory_mb=4096), paper.UNIT_PATH).content
    assert "ExecStart=/usr/bin/java -Xms3584M -Xmx3584M -XX:+UseG1GC \\\n" in unit
    assert paper.heap_mb(1024) == 512
    with pytest.raises(ValueError, match="a game container of 1000 MiB cannot run Paper"):
        container(memory_mb=1000)


def test_property_values_are_escaped() -> None:
    text = paper.server_properties(port=25565, motd="A \\ b \u00e9")
    assert "motd=A \\\\ b \\u00e9\n" in text
    with pytest.raises(ValueError):
        paper.server_properties(port=25565, motd="a\nenable-rcon=true")
    with pytest.raises(ValueError):
        paper.server_properties(port=80, motd="x")


@pytest.mark.parametrize("java", [None, JRE], ids=["debian", "temurin"])
def test_the_scripts_pass_shellcheck(java: Artifact | None) -> None:
    for plan in (template(java=java), container(java=java)):
        shellcheck(configure_script([plan]))
        shellcheck(install_script([plan], Gateway("10.20.0.1", "zlh-zpack-router")))
