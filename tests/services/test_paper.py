"""Paper's plans: the template holds a verified jar and files but runs nothing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.scripts import decoded, shellcheck
from zlh_infra.services import paper
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import Vendored

SECRET = "Fw7Rk2Lp9Qx4Tz8Vb3Nc6Md1"
STORE = "http://10.20.0.10:8080"
JAR = Artifact("paper", "1.21.4-232", "paper-1.21.4-232.jar", "ef" * 32)
JRE = Artifact("temurin-jre", "21.0.6+7", "OpenJDK21U-jre_x64_linux.tar.gz", "12" * 32)


def template(java: Artifact | None = None, **extra: Any) -> ServicePlan:
    return paper.template_plan(
        guest="zlh-template-minecraft-paper",
        paper=Vendored.from_store(JAR, STORE),
        forwarding_secret=SECRET,
        accept_eula=True,
        java=Vendored.from_store(java, STORE) if java else None,
        **extra,
    )


def file_of(plan: ServicePlan, path: str) -> Any:
    return next(f for f in plan.files if f.path == path)


def test_the_template_enables_the_server_but_never_starts_it() -> None:
    plan = template()
    assert plan.units == ()
    assert "systemctl enable --quiet minecraft.service" in plan.converge
    assert "systemctl start" not in plan.converge and "restart" not in plan.converge
    # Its health is the verified jar, the EULA and the enabled unit: nothing listens.
    assert plan.health.startswith(f"printf '%s  %s\\n' {JAR.sha256} \"/opt/minecraft/paper.jar\"")
    assert "systemctl is-enabled --quiet minecraft.service" in plan.health
    assert "ss -ltnH" not in plan.health


def test_world_data_lives_on_the_data_disk_owned_by_minecraft() -> None:
    plan = template()
    assert plan.accounts == ("minecraft",)
    unit = file_of(plan, paper.UNIT_PATH).content
    assert "WorkingDirectory=/srv/data/world\n" in unit
    assert "User=minecraft\n" in unit
    assert "-jar /opt/minecraft/paper.jar --nogui\n" in unit
    data = next(d for d in plan.directories if d.path == "/srv/data/world")
    assert (data.mode, data.owner, data.group) == (0o750, "minecraft", "minecraft")
    for path in (paper.EULA, paper.PROPERTIES, paper.PAPER_GLOBAL):
        assert path.startswith("/srv/data/world/")
        assert file_of(plan, path).owner == "minecraft"


def test_the_server_sits_behind_velocity_with_its_forwarding_secret() -> None:
    plan = template(port=25570)
    properties = dict(
        line.split("=", 1)
        for line in file_of(plan, paper.PROPERTIES).content.splitlines()
        if not line.startswith("#")
    )
    assert properties["online-mode"] == "false"
    assert properties["server-port"] == "25570"
    assert file_of(plan, paper.EULA).content == "eula=true\n"
    settings = file_of(plan, paper.PAPER_GLOBAL)
    assert settings.mode == 0o600
    assert yaml.safe_load(settings.content) == {
        "proxies": {"velocity": {"enabled": True, "online-mode": True, "secret": SECRET}}
    }
    assert SECRET not in configure_script([plan])
    assert SECRET in decoded(configure_script([plan]))


def test_the_eula_must_be_accepted_explicitly() -> None:
    with pytest.raises(ValueError, match="EULA"):
        paper.template_plan(
            guest="t",
            paper=Vendored.from_store(JAR, STORE),
            forwarding_secret=SECRET,
            accept_eula=False,
        )


def test_java_is_debians_17_or_a_pinned_jre_from_zlh_artifacts() -> None:
    debian = template()
    assert "openjdk-17-jre-headless" in debian.packages
    assert "ExecStart=/usr/bin/java " in file_of(debian, paper.UNIT_PATH).content
    temurin = template(java=JRE)
    assert "openjdk-17-jre-headless" not in temurin.packages
    assert "ExecStart=/opt/java/bin/java " in file_of(temurin, paper.UNIT_PATH).content
    assert f"{STORE}/temurin-jre/21.0.6+7/OpenJDK21U-jre_x64_linux.tar.gz" in temurin.converge
    assert "--strip-components=1" in temurin.converge


def test_the_jar_comes_from_zlh_artifacts_verified() -> None:
    converge = template().converge
    assert f"{STORE}/paper/1.21.4-232/paper-1.21.4-232.jar" in converge
    assert converge.index("sha256sum -c") < converge.index("install -D -m 0644")


def test_a_game_container_runs_the_server_and_listens_on_its_port() -> None:
    plan = paper.fleet_plan(guest="mc-survival", port=25570)
    assert plan.units == ("minecraft.service",)
    assert plan.health == "ss -ltnH 'sport = :25570' | grep -q ."
    assert plan.files == ()


def test_property_values_are_escaped() -> None:
    text = paper.server_properties(port=25565, motd="A \\ b \u00e9")
    assert "motd=A \\\\ b \\u00e9\n" in text
    with pytest.raises(ValueError):
        paper.server_properties(port=25565, motd="a\nenable-rcon=true")
    with pytest.raises(ValueError):
        paper.server_properties(port=80, motd="x")


@pytest.mark.parametrize("java", [None, JRE], ids=["debian", "temurin"])
def test_the_scripts_pass_shellcheck(java: Artifact | None) -> None:
    plans = [template(java=java), paper.fleet_plan(guest="mc-survival")]
    for plan in plans:
        shellcheck(configure_script([plan]))
        shellcheck(install_script([plan], Gateway("10.20.0.1", "zlh-zpack-router")))


def test_a_game_containers_heap_follows_its_memory() -> None:
    plan = paper.fleet_plan(guest="mc-survival", memory_mb=4096)
    (drop_in,) = plan.files
    assert drop_in.path == "/etc/systemd/system/minecraft.service.d/zlh-heap.conf"
    assert drop_in.content.splitlines()[1:4] == [
        "[Service]",
        "ExecStart=",
        "ExecStart=/usr/bin/java -Xms3584M -Xmx3584M -XX:+UseG1GC \\",
    ]
    # The template's unit and the drop-in start the same server the same way.
    unit = file_of(template(), paper.UNIT_PATH).content
    assert drop_in.content.split("-Xmx3584M", 1)[1] in unit
    temurin = paper.fleet_plan(
        guest="mc-survival", memory_mb=4096, java=Vendored.from_store(JRE, STORE)
    )
    assert "ExecStart=/opt/java/bin/java -Xms3584M" in temurin.files[0].content
    assert paper.heap_mb(1024) == 512
    with pytest.raises(ValueError, match="a game container of 1000 MiB cannot run Paper"):
        paper.heap_mb(1000)
