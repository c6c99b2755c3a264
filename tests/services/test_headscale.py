"""Headscale's plan: config.yaml against upstream's config-example.yaml, the dev key kept.

Every key path of the generated configuration must exist in headscale's example
configuration (tag v0.29.2) with the same type, so an unknown or misspelled key fails.
The jq programs that find the dev user and decide whether the stored key is still good
run for real on answers shaped like headscale's ``-o json`` output.
"""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.scripts import shellcheck
from zlh_infra.services import headscale
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import Vendored

EXAMPLE = yaml.safe_load(
    (Path(__file__).parents[1] / "data/reference/headscale/config-example.yaml").read_text()
)
DEB = Artifact(
    "headscale",
    "0.29.2",
    "headscale_0.29.2_linux_amd64.deb",
    "78" * 32,
    "https://github.com/juanfont/headscale/releases/download/v0.29.2/headscale_0.29.2_linux_amd64.deb",
)


def a_plan() -> ServicePlan:
    return headscale.plan(
        guest="zlh-ctl",
        headscale=Vendored.from_vendor(DEB),
        server_domain="vpn.zerolaghub.com",
        listen=IPv4Address("10.10.0.15"),
        base_domain="dev.zlh.internal",
        trusted_proxies=[IPv4Address("10.10.0.5")],
    )


def generated() -> dict[str, Any]:
    document = yaml.safe_load(next(f.content for f in a_plan().files if f.path == headscale.CONFIG))
    assert isinstance(document, dict)
    return document


def mismatches(document: dict[str, Any], example: dict[str, Any], where: str = "") -> list[str]:
    """Key paths of ``document`` missing from ``example`` or of another type there."""
    found = []
    for key, value in document.items():
        path = f"{where}{key}"
        if key not in example:
            found.append(f"{path}: not in config-example.yaml")
        elif type(value) is not type(example[key]):
            found.append(f"{path}: {type(value).__name__}, the example has {type(example[key])}")
        elif isinstance(value, dict):
            found += mismatches(value, example[key], f"{path}.")
    return found


# --- config.yaml against the example ------------------------------------------------------


def test_every_generated_key_exists_in_the_example_with_the_same_type() -> None:
    assert mismatches(generated(), EXAMPLE) == []


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), "listen_address"),
        (("derp", "server"), "stun_listen"),
        (("dns",), "magicdns"),
        (("database", "sqlite"), "wal"),
    ],
)
def test_a_misspelled_key_is_caught(path: tuple[str, ...], bad: str) -> None:
    document = generated()
    node = document
    for part in path:
        node = node[part]
    node[bad] = node.pop(next(iter(node)))
    assert any(
        problem.startswith(".".join((*path, bad))) for problem in mismatches(document, EXAMPLE)
    )


def test_a_value_of_the_wrong_type_is_caught() -> None:
    document = generated()
    document["derp"]["urls"] = "https://controlplane.tailscale.com/derpmap/default"
    assert mismatches(document, EXAMPLE) == ["derp.urls: str, the example has <class 'list'>"]


def test_headscale_sits_behind_zlh_proxy_with_private_metrics_and_grpc() -> None:
    document = generated()
    assert document["server_url"] == "https://vpn.zerolaghub.com"
    assert document["listen_addr"] == "10.10.0.15:8080"
    assert document["metrics_listen_addr"] == "127.0.0.1:9090"
    assert document["grpc_listen_addr"] == "127.0.0.1:50443"
    assert document["trusted_proxies"] == ["10.10.0.5/32"]
    assert "tls_cert_path" not in document and "acme_email" not in document


def test_embedded_derp_with_stun_on_3478_and_the_sqlite_database_in_the_data_path() -> None:
    document = generated()
    server = document["derp"]["server"]
    assert server["enabled"] is True
    assert server["stun_listen_addr"] == "0.0.0.0:3478"
    assert document["derp"]["urls"] == ["https://controlplane.tailscale.com/derpmap/default"]
    assert document["database"] == {
        "type": "sqlite",
        "sqlite": {"path": "/var/lib/headscale/db.sqlite", "write_ahead_log": True},
    }
    assert document["prefixes"]["v4"] == "100.64.0.0/10"
    assert document["prefixes"]["v6"] == "fd7a:115c:a1e0::/48"


def test_magic_dns_uses_the_base_domain_without_overriding_local_resolvers() -> None:
    dns = generated()["dns"]
    assert (dns["magic_dns"], dns["base_domain"]) == (True, "dev.zlh.internal")
    # headscale refuses override_local_dns without global name servers.
    assert dns["override_local_dns"] is False
    assert dns["nameservers"]["global"] == []


def test_the_base_domain_must_not_contain_the_server_name() -> None:
    with pytest.raises(ValueError, match="base domain"):
        headscale.config(
            server_domain="vpn.zerolaghub.com",
            listen=IPv4Address("10.10.0.15"),
            base_domain="zerolaghub.com",
        )


# --- the dev user and its pre-auth key -----------------------------------------------------


def test_the_user_and_key_are_made_only_when_missing_and_by_user_id() -> None:
    converge = a_plan().converge
    assert "headscale users list --name dev -o json" in converge
    assert 'if [ -z "$zlh_uid" ]; then\n  headscale users create dev -o json >/dev/null' in converge
    create = next(line for line in converge.splitlines() if "preauthkeys create" in line)
    assert create.strip().startswith(
        'headscale preauthkeys create --user "$zlh_uid" --reusable --expiration 8760h'
    )
    # Created into a temporary file, moved into place 0600; never printed.
    assert '-o json >"$zlh_new"' in converge
    assert (
        'chmod 0600 "$zlh_new" && mv -f "$zlh_new" /var/lib/zlh/headscale/dev-preauthkey.json'
        in converge
    )
    assert f"cat {headscale.PREAUTH_KEY}" not in converge
    assert "jq -er '.key'" not in converge


def jq(program: str, document: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["jq", *args, program],
        input=json.dumps(document),
        capture_output=True,
        text=True,
        check=False,
    )


def key(id_: int, user: int, expires: int, *, reusable: bool = True) -> dict[str, Any]:
    # As headscale prints a PreAuthKey with -o json (its protobuf struct's JSON tags).
    entry: dict[str, Any] = {
        "user": {"id": user, "name": "dev"},
        "id": id_,
        "key": "hskey-auth-x",
        "expiration": {"seconds": expires},
        "created_at": {"seconds": 1},
    }
    if reusable:
        entry["reusable"] = True
    return entry


@pytest.mark.parametrize(
    ("keys", "valid"),
    [
        ([key(3, 1, 2000)], True),
        ([key(2, 1, 2000), key(3, 1, 900)], False),  # expires too soon
        ([key(3, 2, 2000)], False),  # another user's
        ([key(3, 1, 2000, reusable=False)], False),
        ([key(4, 1, 2000)], False),  # not the stored one
        (None, False),  # headscale prints null for no keys
    ],
)
def test_the_stored_key_is_kept_only_while_it_is_good(keys: Any, valid: bool) -> None:
    args = ("-e", "--argjson", "id", "3", "--argjson", "user", "1", "--argjson", "min", "1000")
    result = jq(headscale.KEY_VALID, keys, *args)
    assert (result.returncode == 0) is valid, result.stderr


def test_the_user_id_is_found_by_name() -> None:
    users = [{"id": 7, "name": "dev", "created_at": {"seconds": 1}}]
    assert jq(headscale.USER_ID, users, "-r", "--arg", "name", "dev").stdout == "7\n"
    assert jq(headscale.USER_ID, None, "-r", "--arg", "name", "dev").stdout == ""


def test_print_preauth_key_prints_the_key_alone(tmp_path: Path) -> None:
    stored = tmp_path / "dev-preauthkey.json"
    stored.write_text(json.dumps(key(3, 1, 2000)))
    command = headscale.print_preauth_key().replace(headscale.PREAUTH_KEY, str(stored))
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "hskey-auth-x\n")
    stored.write_text("{}")
    assert subprocess.run(["sh", "-c", command], capture_output=True).returncode != 0


def test_health_is_the_http_health_endpoint_and_a_stored_key() -> None:
    plan = a_plan()
    assert plan.health.startswith("curl -fsS -o /dev/null http://10.10.0.15:8080/health")
    assert plan.journal_units == ("headscale.service",)
    assert DEB.url is not None and DEB.url in plan.converge


def test_the_scripts_pass_shellcheck() -> None:
    plan = a_plan()
    shellcheck(configure_script([plan]))
    shellcheck(install_script([plan], Gateway("10.10.0.1", "zlh-router")))
    shellcheck(headscale.print_preauth_key() + "\n")
