"""Each service's plan: what it installs and writes, checked where possible by the vendor's tool."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.scripts import decoded, file_content
from zlh_infra.services import (
    agent,
    artifacts,
    mariadb,
    node_exporter,
    node_release,
    prometheus,
    redis,
)
from zlh_infra.services.plan import ServicePlan, configure_script
from zlh_infra.services.values import (
    config_string,
    generated_secret,
    sql_string,
    systemd_environment,
)

PASSWORD = "Q7hmWkz2Rr9TbXc4Vp1LsN8e"
SHA = "ab" * 32


def tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.fail(f"{name} not found: install the Debian package {package}")
    return found


# --- MariaDB -----------------------------------------------------------------------------


def mariadb_plan(client: str = "10.10.0.10") -> ServicePlan:
    return mariadb.plan(
        guest="zlh-db",
        listen=IPv4Address("10.10.0.12"),
        database=mariadb.Database("zpack", "zpack_api", PASSWORD, IPv4Address(client)),
    )


def test_mariadb_binds_the_lan_and_keeps_its_data_on_the_data_disk() -> None:
    config = file_content(mariadb_plan(), "/etc/mysql/mariadb.conf.d/90-zlh.cnf")
    assert "bind-address = 10.10.0.12\n" in config
    assert "datadir = /srv/data/mysql\n" in config
    assert "skip-name-resolve\n" in config


def test_mariadb_grants_zpack_api_from_its_address_only_and_idempotently() -> None:
    sql = decoded(configure_script([mariadb_plan()]))
    account = "'zpack_api'@'10.10.0.10'"
    assert f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{PASSWORD}';" in sql
    assert f"ALTER USER {account} IDENTIFIED BY '{PASSWORD}';" in sql
    assert f"GRANT ALL PRIVILEGES ON `zpack`.* TO {account};" in sql
    assert "CREATE DATABASE IF NOT EXISTS `zpack`" in sql
    # Grants for any other host, remote root and anonymous users are dropped.
    assert "(User = 'zpack_api' AND Host <> '10.10.0.10')" in sql
    assert "(User = 'root' AND Host NOT IN ('localhost'))" in sql
    assert "'%'" not in sql


def test_the_database_password_is_never_in_clear_in_the_script() -> None:
    assert PASSWORD not in configure_script([mariadb_plan()])


@pytest.mark.parametrize("bad", ["short", "with space and more chars", "quote'quote'quote'q"])
def test_a_password_that_is_not_generated_is_refused_without_being_echoed(bad: str) -> None:
    with pytest.raises(ValueError) as error:
        generated_secret("database password", bad)
    assert bad not in str(error.value)


# --- Redis -------------------------------------------------------------------------------


def test_redis_binds_the_lan_with_a_password_and_append_only() -> None:
    plan = redis.plan(guest="zlh-redis", listen=IPv4Address("10.10.0.13"), password=PASSWORD)
    config = file_content(plan, redis.INCLUDE)
    assert config.splitlines()[1:] == [
        "bind 10.10.0.13",
        "port 6379",
        "protected-mode yes",
        f'requirepass "{PASSWORD}"',
        "appendonly yes",
        "appendfsync everysec",
    ]
    (included,) = plan.files
    assert (included.mode, included.group) == (0o640, "redis")
    # The include line is added once: a second run finds it.
    assert plan.converge.startswith("grep -qxF 'include /etc/redis/zlh.conf' /etc/redis/redis.conf")


def test_redis_health_passes_the_password_in_the_environment_not_argv() -> None:
    plan = redis.plan(guest="zlh-redis", listen=IPv4Address("10.10.0.13"), password=PASSWORD)
    assert f"REDISCLI_AUTH={PASSWORD} redis-cli" in plan.health
    assert "-a " not in plan.health


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redis_server_runs_the_generated_configuration(tmp_path: Path) -> None:
    server, cli = tool("redis-server", "redis-server"), tool("redis-cli", "redis-tools")
    port = free_port()
    plan = redis.plan(guest="zlh-redis", listen=IPv4Address("127.0.0.1"), password=PASSWORD)
    conf = tmp_path / "redis.conf"
    conf.write_text(
        file_content(plan, redis.INCLUDE).replace("port 6379", f"port {port}") + f"dir {tmp_path}\n"
    )
    process = subprocess.Popen([server, str(conf)], stdout=subprocess.DEVNULL)
    try:

        def ask(*command: str, password: str | None = PASSWORD) -> str:
            env = {"REDISCLI_AUTH": password} if password else {}
            result = subprocess.run(
                [cli, "-p", str(port), *command], env=env, capture_output=True, text=True
            )
            return result.stdout.strip()

        for _ in range(50):
            if ask("ping") == "PONG":
                break
            time.sleep(0.1)
        assert ask("ping") == "PONG"
        assert ask("config", "get", "appendonly").splitlines() == ["appendonly", "yes"]
        assert "NOAUTH" in ask("ping", password=None)
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- systemd environment files -------------------------------------------------------------


def test_environment_values_are_quoted_and_escaped() -> None:
    text = systemd_environment({"A": 'say "hi" \\ there', "B": "plain"})
    assert text == 'A="say \\"hi\\" \\\\ there"\nB="plain"\n'


@pytest.mark.parametrize(
    "value", ["line\nINJECTED=1", "tab\there", "\x00"], ids=["newline", "tab", "nul"]
)
def test_environment_values_with_control_characters_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        systemd_environment({"A": value})


def test_environment_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="environment key"):
        systemd_environment({"a b": "x"})


def test_sql_and_config_strings_escape_their_quotes() -> None:
    assert sql_string("it's \\ here") == "'it''s \\\\ here'"
    assert config_string('a "b" \\') == '"a \\"b\\" \\\\"'


# --- node exporter, Prometheus -----------------------------------------------------------


def test_node_exporter_listens_on_the_given_address_only() -> None:
    plan = node_exporter.plan(guest="zlh-build", listen=IPv4Address("10.99.0.101"))
    assert (
        file_content(plan, node_exporter.DEFAULTS)
        == 'ARGS="--web.listen-address=10.99.0.101:9100"\n'
    )
    assert "prometheus-node-exporter" in plan.packages
    assert "http://10.99.0.101:9100/metrics" in plan.health


def _launch(tmp_path: Path, ip_output: str) -> subprocess.CompletedProcess[str]:
    """Run the image's launcher with a stand-in ``ip`` and exporter that print their argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ip").write_text(f"#!/bin/sh\necho \"$*\" >&2\nprintf '%s' '{ip_output}'\n")
    exporter = bin_dir / "exporter"
    exporter.write_text('#!/bin/sh\necho "exporter $*"\n')
    for tool in (bin_dir / "ip", exporter):
        tool.chmod(0o755)
    script = node_exporter.launcher("eth1").replace(node_exporter.EXPORTER, str(exporter))
    return subprocess.run(
        ["sh", "-c", script, "launcher", "--collector.systemd"],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        check=False,
    )


def test_the_images_exporter_starts_on_the_management_nics_address_only(tmp_path: Path) -> None:
    done = _launch(tmp_path, "3: eth1    inet 10.99.1.20/22 brd 10.99.3.255 scope global eth1\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "exporter --web.listen-address=10.99.1.20:9100 --collector.systemd"
    )
    assert "dev eth1 scope global" in done.stderr
    # No address yet: it fails (the unit retries) rather than listen on every address.
    empty = _launch(tmp_path, "")
    assert empty.returncode == 1 and "eth1 has no IPv4 address" in empty.stderr


def test_the_image_enables_the_exporter_and_each_clone_checks_where_it_listens() -> None:
    image = node_exporter.image_plan(guest="zlh-base", interface="eth1")
    drop_in = file_content(image, node_exporter.DROP_IN)
    assert f"ExecStart=\nExecStart={node_exporter.LAUNCHER} $ARGS" in drop_in
    assert file_content(image, node_exporter.DEFAULTS) == 'ARGS=""\n'
    assert image.units == ()  # the image has no management NIC: never started there
    assert "systemctl stop prometheus-node-exporter.service" in image.converge
    clone = node_exporter.fleet_plan(guest="arena", management_address=IPv4Address("10.99.1.20"))
    assert clone.files == () and clone.packages == ()
    assert clone.units == ("prometheus-node-exporter.service",)
    assert "= 10.99.1.20:9100 ]" in clone.health


def prometheus_plan() -> ServicePlan:
    targets = [
        prometheus.Target("core", IPv4Address("10.10.0.12"), 9100, "zlh-db"),
        prometheus.Target("core", IPv4Address("10.10.0.10"), 9100, "zpack-api"),
        prometheus.Target("proxmox-nodes", IPv4Address("10.99.0.3"), 9100, "zlh-runtime"),
    ]
    return prometheus.plan(guest="zlh-monitor", targets=targets, retention="30d")


def test_prometheus_scrapes_the_inventory_and_discovers_the_fleet_from_files() -> None:
    document = json.loads(file_content(prometheus_plan(), prometheus.CONFIG).split("\n", 1)[1])
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    assert jobs["core"]["static_configs"] == [
        {"targets": ["10.10.0.12:9100"], "labels": {"instance": "zlh-db"}},
        {"targets": ["10.10.0.10:9100"], "labels": {"instance": "zpack-api"}},
    ]
    assert jobs["proxmox-nodes"]["static_configs"][0]["targets"] == ["10.99.0.3:9100"]
    assert jobs["fleet"]["file_sd_configs"] == [{"files": ["/etc/prometheus/fleet/*.json"]}]


def test_promtool_accepts_the_generated_configuration(tmp_path: Path) -> None:
    promtool = tool("promtool", "prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(file_content(prometheus_plan(), prometheus.CONFIG))
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- zlh-artifacts ----------------------------------------------------------------------


def artifacts_plan(
    url: str | None = "https://releases.example/zlh-agent", listen: str = "10.20.0.10"
) -> ServicePlan:
    agent_file = artifacts.Artifact("zlh-agent", "1.4.2", "zlh-agent", SHA, url)
    return artifacts.plan(guest="zlh-artifacts", listen=IPv4Address(listen), artifacts=[agent_file])


def test_nginx_accepts_the_generated_site(tmp_path: Path) -> None:
    nginx = tool("nginx", "nginx-light")
    # nginx -t binds the listen address: loopback stands in for the LAN address.
    site = file_content(
        artifacts_plan(listen="127.0.0.1"), "/etc/nginx/sites-available/zlh-artifacts"
    )
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\naccess_log off;\n{site}}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_store_is_read_only_over_http() -> None:
    site = file_content(artifacts_plan(), "/etc/nginx/sites-available/zlh-artifacts")
    assert "limit_except GET HEAD { deny all; }" in site
    assert "autoindex off;" in site


def test_declared_artifacts_are_mirrored_and_checked_as_served() -> None:
    plan = artifacts_plan()
    assert "https://releases.example/zlh-agent" in plan.converge
    assert f"{artifacts.PUBLISH} zlh-agent 1.4.2 zlh-agent {SHA}" in plan.converge
    assert plan.health == "curl -fsS -o /dev/null http://10.20.0.10:8080/zlh-agent/1.4.2/zlh-agent"
    assert "curl" not in artifacts_plan(url=None).converge


def publish(store: Path, *args: str, content: bytes) -> subprocess.CompletedProcess[bytes]:
    script = artifacts.PUBLISH_SCRIPT.replace(artifacts.STORE, str(store))
    return subprocess.run(
        ["sh", "-c", script, "zlh-publish", *args], input=content, capture_output=True, check=False
    )


def test_zlh_publish_adds_a_verified_file_and_refuses_a_wrong_checksum(tmp_path: Path) -> None:
    import hashlib

    content = b"agent binary\n"
    digest = hashlib.sha256(content).hexdigest()
    assert (
        publish(tmp_path, "zlh-agent", "1.4.2", "zlh-agent", digest, content=content).returncode
        == 0
    )
    assert (tmp_path / "zlh-agent/1.4.2/zlh-agent").read_bytes() == content
    assert (tmp_path / "zlh-agent/1.4.2/zlh-agent.sha256").read_text() == f"{digest}  zlh-agent\n"

    wrong = publish(tmp_path, "zlh-agent", "1.4.3", "zlh-agent", digest, content=b"tampered")
    assert wrong.returncode == 1
    assert b"SHA-256 differs" in wrong.stderr
    assert not (tmp_path / "zlh-agent/1.4.3/zlh-agent").exists()
    assert list((tmp_path / "zlh-agent/1.4.3").iterdir()) == []


@pytest.mark.parametrize("name", ["..", "a/b", "", "x y", ".hidden"])
def test_zlh_publish_refuses_names_that_leave_the_store(tmp_path: Path, name: str) -> None:
    result = publish(tmp_path, name, "1", "f", SHA, content=b"")
    assert result.returncode == 2


# --- zlh-agent, the releases --------------------------------------------------------------


def test_the_agent_comes_from_zlh_artifacts_verified_and_binds_eth1() -> None:
    agent_file = artifacts.Artifact("zlh-agent", "1.4.2", "zlh-agent", SHA)
    plan = agent.image_plan(
        guest="zlh-base", artifacts_url="http://10.20.0.10:8080", agent=agent_file
    )
    assert "http://10.20.0.10:8080/zlh-agent/1.4.2/zlh-agent" in plan.converge
    assert f"printf '%s  %s\\n' {SHA} \"$zlh_dl\" | sha256sum -c" in plan.converge
    assert "ExecStart=/usr/local/bin/zlh-agent --interface eth1 --port 18888" in file_content(
        plan, "/etc/systemd/system/zlh-agent.service"
    )
    fleet = agent.fleet_plan(guest="mc-survival", management_address=IPv4Address("10.99.1.0"))
    assert "= 10.99.1.0:18888 ]" in fleet.health


def test_a_release_runs_as_its_own_user_with_a_0600_environment() -> None:
    plan = node_release.plan(
        name="zpack-api",
        guest="zpack-api",
        description="API",
        release=node_release.Release("2.3.0", "https://r.example/api.tar.gz", SHA),
        listen=IPv4Address("10.10.0.10"),
        port=8080,
        environment={"DB_PASSWORD": PASSWORD},
    )
    env = next(f for f in plan.files if f.path == "/etc/zpack-api/env")
    assert (env.mode, env.owner) == (0o600, "root")
    assert env.content == f'DB_PASSWORD="{PASSWORD}"\n'
    unit = file_content(plan, "/etc/systemd/system/zpack-api.service")
    assert "User=zpack-api\n" in unit
    assert "ExecStart=/usr/bin/node /opt/zpack-api/current/server.js\n" in unit
    assert plan.accounts == ("zpack-api",)
    # Verified before it is unpacked; an unchanged release is not fetched again.
    converge = plan.converge
    assert converge.index("sha256sum -c") < converge.index("tar -xzf")
    assert converge.startswith(
        f'if [ "$(cat /opt/zpack-api/releases/2.3.0/.zlh-sha256 2>/dev/null || true)" != {SHA} ]'
    )


def test_vendor_artifacts_are_mirrored_in_a_plan_of_their_own() -> None:
    jar = artifacts.Artifact(
        "paper", "1.20.4-499", "paper-1.20.4-499.jar", SHA, "https://v.example/p.jar"
    )
    plan = artifacts.mirror_plan(
        guest="zlh-artifacts", listen=IPv4Address("10.20.0.10"), artifacts=[jar]
    )
    assert plan.packages == () and plan.files == () and plan.units == ()
    assert f"{artifacts.PUBLISH} paper 1.20.4-499 paper-1.20.4-499.jar {SHA}" in plan.converge
    assert plan.health == (
        "curl -fsS -o /dev/null http://10.20.0.10:8080/paper/1.20.4-499/paper-1.20.4-499.jar"
    )
    for bad in ([], [artifacts.Artifact("paper", "1", "p.jar", SHA)]):
        with pytest.raises(ValueError, match="each with its URL"):
            artifacts.mirror_plan(
                guest="zlh-artifacts", listen=IPv4Address("10.20.0.10"), artifacts=bad
            )
