"""Tenant routes: ``zlh-route`` run for real against temporary directories, and its plans.

The forced command's Traefik files are checked against Traefik's own file-provider
schema, and its Velocity files by running Velocity's merge on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from tests.scripts import file_content
from zlh_infra.services import routes, velocity
from zlh_infra.services.plan import ServicePlan
from zlh_infra.services.routes import RouteHost, RouteKind, RouteSettings

API_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDiK14tBothHhVFv/yDmF9U0IysymOJRcCcbx+T5Dv/F"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3YLQUmVzEwvcVTKtRth5M4RojEFaf+it4DRikkJ3z1"
LAN = IPv4Network("10.20.0.0/22")
API = IPv4Address("10.99.0.10")
DYNAMIC_SCHEMA = Path(__file__).parents[1] / "data/reference/traefik"


def settings(kind: RouteKind, directory: Path, reserved: tuple[str, ...] = ()) -> RouteSettings:
    domain = "dev.zerolaghub.net" if kind is RouteKind.HTTP else ""
    return RouteSettings(kind, str(directory), LAN, domain, reserved)


def route(
    tmp_path: Path, kind: RouteKind, command: str, reserved: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``zlh-route`` as sshd runs it: the client's words in SSH_ORIGINAL_COMMAND."""
    directory = tmp_path / "routes"
    directory.mkdir(exist_ok=True)
    script = tmp_path / "zlh-route"
    script.write_text(routes.route_script(settings(kind, directory, reserved)))
    return subprocess.run(
        [sys.executable, str(script)],
        env={"SSH_ORIGINAL_COMMAND": command, "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )


def files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "routes").iterdir())


# --- zlh-route on zlh-zpack-proxy: Traefik's tenant files --------------------------------------


def test_put_writes_one_traefik_router_per_server_valid_against_traefiks_schema(
    tmp_path: Path,
) -> None:
    result = route(tmp_path, RouteKind.HTTP, "put alice-ide 10.20.1.120:8443")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "registered alice-ide\n"
    assert files(tmp_path) == ["tenant-alice-ide.yml"]
    document = json.loads((tmp_path / "routes/tenant-alice-ide.yml").read_text())
    schema = json.loads((DYNAMIC_SCHEMA / "traefik-v3-file-provider.schema.json").read_text())
    Draft7Validator(schema).validate(document)
    router = document["http"]["routers"]["tenant-alice-ide"]
    assert router["rule"] == "Host(`alice-ide.dev.zerolaghub.net`)"
    assert router["entryPoints"] == ["websecure"]
    assert router["tls"] == {"certResolver": "letsencrypt"}
    servers = document["http"]["services"]["tenant-alice-ide"]["loadBalancer"]["servers"]
    assert servers == [{"url": "http://10.20.1.120:8443"}]
    assert (tmp_path / "routes/tenant-alice-ide.yml").stat().st_mode & 0o777 == 0o644


def test_put_again_changes_nothing_and_list_and_delete_round_trip(tmp_path: Path) -> None:
    route(tmp_path, RouteKind.HTTP, "put alice-ide 10.20.1.120:8443")
    written = (tmp_path / "routes/tenant-alice-ide.yml").stat().st_mtime_ns
    again = route(tmp_path, RouteKind.HTTP, "put alice-ide 10.20.1.120:8443")
    assert again.stdout == "unchanged alice-ide\n"
    assert (tmp_path / "routes/tenant-alice-ide.yml").stat().st_mtime_ns == written
    route(tmp_path, RouteKind.HTTP, "put bob 10.20.1.121:8443")
    moved = route(tmp_path, RouteKind.HTTP, "put bob 10.20.1.122:8080")
    assert moved.stdout == "registered bob\n"
    listed = route(tmp_path, RouteKind.HTTP, "list")
    assert listed.stdout == "alice-ide 10.20.1.120:8443\nbob 10.20.1.122:8080\n"
    assert route(tmp_path, RouteKind.HTTP, "delete bob").stdout == "deleted bob\n"
    assert route(tmp_path, RouteKind.HTTP, "delete bob").stdout == "absent bob\n"
    assert files(tmp_path) == ["tenant-alice-ide.yml"]


def test_list_leaves_out_pulumis_file_and_reports_a_file_that_does_not_parse(
    tmp_path: Path,
) -> None:
    route(tmp_path, RouteKind.HTTP, "put alice 10.20.1.120:8443")
    (tmp_path / "routes/zlh.yml").write_text('{"http": {}}\n')
    (tmp_path / "routes/tenant-broken.yml").write_text("not json")
    listed = route(tmp_path, RouteKind.HTTP, "list")
    assert listed.returncode == 0
    assert listed.stdout == "alice 10.20.1.120:8443\n"
    assert "tenant-broken.yml does not parse" in listed.stderr


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        ("", "usage"),
        ("rm -rf /", "usage"),
        ("put alice", "usage"),
        ("put alice 10.20.1.120:8443 extra", "usage"),
        ("list all", "usage"),
        ("put Alice 10.20.1.120:8443", "not a server name"),
        ("put ../zlh 10.20.1.120:8443", "not a server name"),
        ("put -alice 10.20.1.120:8443", "not a server name"),
        ("put a;b 10.20.1.120:8443", "not a server name"),
        (f"put {'a' * 64} 10.20.1.120:8443", "not a server name"),
        ("delete ../../etc/passwd", "not a server name"),
        ("put alice 10.10.0.5:8443", "not a host of the fleet's network"),
        ("put alice 10.99.0.10:18888", "not a host of the fleet's network"),
        ("put alice 10.20.0.0:80", "not a host of the fleet's network"),
        ("put alice 10.20.3.255:80", "not a host of the fleet's network"),
        ("put alice 10.20.1.120:0", "not IP:PORT"),
        ("put alice 10.20.1.120:65536", "not IP:PORT"),
        ("put alice 10.20.1.120:080", "not IP:PORT"),
        ("put alice 10.20.1.120", "not IP:PORT"),
        ("put alice 010.20.1.120:80", "not IP:PORT"),
        ("put alice host.example:80", "not IP:PORT"),
        ("put alice `id`:80", "not IP:PORT"),
        ("put mc-skyblock 10.20.1.120:8443", "a server the stack declares"),
    ],
)
def test_anything_else_is_refused_with_exit_2_and_writes_nothing(
    tmp_path: Path, command: str, complaint: str
) -> None:
    result = route(tmp_path, RouteKind.HTTP, command, reserved=("mc-skyblock",))
    assert result.returncode == routes.USAGE_EXIT
    assert complaint in result.stderr
    assert result.stdout == ""
    assert files(tmp_path) == []


# --- zlh-route on zlh-velocity: Velocity's registered servers ---------------------------------


def test_a_registered_game_server_reaches_velocitys_merged_configuration(
    tmp_path: Path,
) -> None:
    result = route(tmp_path, RouteKind.GAME, "put survival 10.20.1.30:25565")
    assert result.returncode == 0, result.stderr
    assert files(tmp_path) == ["survival.toml"]
    assert tomllib.loads((tmp_path / "routes/survival.toml").read_text()) == {
        "survival": "10.20.1.30:25565"
    }
    assert route(tmp_path, RouteKind.GAME, "list").stdout == "survival 10.20.1.30:25565\n"

    merge = tmp_path / "merge.py"
    merge.write_text(velocity.MERGE_SCRIPT)
    base = tmp_path / "base.toml"
    base.write_text(velocity.base_config())
    declared = tmp_path / "declared.toml"
    declared.write_text(velocity.declared_servers([]))
    output = tmp_path / "velocity.toml"
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout
    arguments = {
        "--base": base,
        "--declared": declared,
        "--servers-dir": tmp_path / "routes",
        "--games-domain": "play.example.net",
        "--output": output,
        "--group": group.strip(),
    }
    merged = subprocess.run(
        [sys.executable, str(merge), *(str(part) for item in arguments.items() for part in item)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert merged.returncode == 0, merged.stderr
    config = tomllib.loads(output.read_text())
    assert config["servers"]["survival"] == "10.20.1.30:25565"
    assert config["forced-hosts"] == {"survival.play.example.net": ["survival"]}


# --- the plans ---------------------------------------------------------------------------------


def edge(kind: RouteKind) -> ServicePlan:
    return routes.edge_plan(
        guest=routes.ROUTE_GUESTS[kind],
        settings=settings(kind, Path("/etc/traefik/dynamic")),
        listen=IPv4Address("10.99.0.227"),
        api_address=API,
        api_key=f"{API_KEY} zpack-api routes\n",
        games_domain="play.example.net",
    )


def test_the_key_may_run_the_forced_command_only_from_zpack_apis_address() -> None:
    plan = edge(RouteKind.HTTP)
    assert file_content(plan, routes.AUTHORIZED_KEYS) == (
        f'restrict,from="10.99.0.10",command="{routes.COMMAND}" {API_KEY} zpack-api\n'
    )
    sshd = file_content(plan, routes.SSHD_CONFIG)
    assert "ListenAddress 10.99.0.227\n" in sshd
    assert f"AllowUsers {routes.ACCOUNT}\n" in sshd
    assert "PasswordAuthentication no\n" in sshd


def test_the_proxy_directory_is_sticky_and_the_accounts_groups() -> None:
    plan = edge(RouteKind.HTTP)
    directory = next(d for d in plan.directories if d.path == "/etc/traefik/dynamic")
    assert (directory.mode, directory.owner, directory.group) == (0o1775, "root", routes.ACCOUNT)
    assert routes.ACCOUNT in plan.accounts


def test_only_velocitys_plan_watches_the_servers_directory() -> None:
    game = edge(RouteKind.GAME)
    assert routes.VELOCITY_PATH_UNIT in game.units
    path_unit = file_content(game, f"/etc/systemd/system/{routes.VELOCITY_PATH_UNIT}")
    assert f"PathChanged={velocity.SERVERS_DIR}\n" in path_unit
    merge_unit = file_content(game, f"/etc/systemd/system/{routes.VELOCITY_MERGE_UNIT}")
    assert f"systemctl try-restart {velocity.UNIT}" in merge_unit
    assert routes.VELOCITY_PATH_UNIT not in edge(RouteKind.HTTP).units


@pytest.mark.parametrize(
    "key", ["", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7", f'command="sh" {API_KEY}']
)
def test_an_api_key_that_is_not_one_ed25519_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="zpack-api's route key"):
        routes.edge_plan(
            guest="zlh-zpack-proxy",
            settings=settings(RouteKind.HTTP, Path("/etc/traefik/dynamic")),
            listen=IPv4Address("10.99.0.227"),
            api_address=API,
            api_key=key,
        )


def test_zpack_api_pins_each_route_hosts_key_and_names_the_aliases_in_its_environment() -> None:
    hosts = [
        RouteHost("runtime", RouteKind.HTTP, IPv4Address("10.99.1.2"), f"{HOST_KEY} root@x"),
        RouteHost("runtime", RouteKind.GAME, IPv4Address("10.99.1.3"), HOST_KEY),
    ]
    plan = routes.api_plan(guest="zpack-api", account="zpack-api", hosts=hosts)
    assert file_content(plan, routes.KNOWN_HOSTS) == (
        f"route-runtime-http {HOST_KEY}\nroute-runtime-game {HOST_KEY}\n"
    )
    config = file_content(plan, routes.SSH_CONFIG)
    assert "Host route-runtime-http\n    HostName 10.99.1.2\n" in config
    assert "    StrictHostKeyChecking yes\n" in config
    assert f"    IdentityFile {routes.KEY}\n" in config
    environment = routes.api_environment(hosts)
    assert json.loads(environment["ROUTE_HOSTS"]) == [
        {"alias": "route-runtime-http", "kind": "http", "stack": "runtime"},
        {"alias": "route-runtime-game", "kind": "game", "stack": "runtime"},
    ]


def test_the_route_key_is_generated_once_and_stays_the_service_accounts(tmp_path: Path) -> None:
    plan = routes.api_plan(guest="zpack-api", account="zpack-api", hosts=[])
    key = tmp_path / "route-key"
    script = plan.converge.replace(routes.KEY, str(key)).replace(
        "chown zpack-api:zpack-api", "true"
    )
    first = subprocess.run(["sh", "-euc", script], capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True
    ).stdout
    assert routes.public_key(public).startswith("ssh-ed25519 ")
    subprocess.run(["sh", "-euc", script], check=True)
    again = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True
    ).stdout
    assert again == public
    assert key.stat().st_mode & 0o777 == 0o600
