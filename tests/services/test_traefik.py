"""Traefik's plan: static and dynamic configuration against Traefik's v3 JSON schemas.

Also the vendor fetch shell Traefik's tarball goes through, run for real with ``sh``
against ``file://`` URLs: verified, idempotent, refusing a wrong checksum.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from tests.scripts import decoded, file_content, shellcheck
from zlh_infra.platform.proxy_config import HttpRoute
from zlh_infra.services import traefik
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import (
    EXIT_UNAVAILABLE,
    Gateway,
    ServicePlan,
    configure_script,
    install_script,
)
from zlh_infra.services.vendor import Vendored, install_file, unpack

REFERENCE = Path(__file__).parents[1] / "data" / "reference" / "traefik"
SHA = "ab" * 32
TOKEN = "cf-Token_with.Symbols-123"
ARTIFACT = Artifact(
    "traefik",
    "3.3.4",
    "traefik_v3.3.4_linux_amd64.tar.gz",
    SHA,
    "https://github.com/traefik/traefik/releases/download/v3.3.4/traefik_v3.3.4_linux_amd64.tar.gz",
)
ROUTES = [
    HttpRoute("portal", "zerolaghub.com", "http://10.10.0.11:3000"),
    HttpRoute("api", "api.zerolaghub.com", "http://10.10.0.10:8080"),
]


def schema(name: str) -> Draft7Validator:
    document = json.loads((REFERENCE / name).read_text())
    Draft7Validator.check_schema(document)
    return Draft7Validator(document)


STATIC = schema("traefik-v3.schema.json")
DYNAMIC = schema("traefik-v3-file-provider.schema.json")


def errors(validator: Draft7Validator, document: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(document)]


def http_plan(routes: list[HttpRoute] | None = None) -> ServicePlan:
    return traefik.plan(
        guest="zlh-proxy",
        traefik=Vendored.from_vendor(ARTIFACT),
        acme=traefik.Acme(email="ops@zerolaghub.com"),
        routes=routes,
    )


def dns_plan() -> ServicePlan:
    acme = traefik.Acme(
        email="ops@zerolaghub.com",
        challenge=traefik.DnsChallenge("cloudflare", {"CF_DNS_API_TOKEN": TOKEN}),
        domains=("dev.zerolaghub.com", "*.dev.zerolaghub.com"),
    )
    return traefik.plan(
        guest="zlh-zpack-proxy",
        traefik=Vendored.from_store(ARTIFACT, "http://10.20.0.10:8080"),
        acme=acme,
    )


# --- static configuration ------------------------------------------------------------------


@pytest.mark.parametrize("make", [http_plan, dns_plan], ids=["http-01", "dns-01"])
def test_the_static_configuration_is_valid_against_traefiks_schema(make: Any) -> None:
    document = json.loads(file_content(make(), traefik.CONFIG))
    assert errors(STATIC, document) == []


def test_web_redirects_to_websecure_which_uses_the_letsencrypt_resolver() -> None:
    document = json.loads(file_content(http_plan(), traefik.CONFIG))
    web, websecure = document["entryPoints"]["web"], document["entryPoints"]["websecure"]
    assert web["address"] == ":80"
    assert web["http"]["redirections"]["entryPoint"] == {
        "to": "websecure",
        "scheme": "https",
        "permanent": True,
    }
    assert websecure == {
        "address": ":443",
        "asDefault": True,
        "http": {"tls": {"certResolver": "letsencrypt"}},
    }
    acme = document["certificatesResolvers"]["letsencrypt"]["acme"]
    assert acme == {
        "email": "ops@zerolaghub.com",
        "storage": "/srv/data/traefik/acme.json",
        "httpChallenge": {"entryPoint": "web"},
    }
    assert document["providers"] == {"file": {"directory": "/etc/traefik/dynamic", "watch": True}}


def test_the_api_and_dashboard_are_off_and_ping_is_on_loopback_only() -> None:
    document = json.loads(file_content(http_plan(), traefik.CONFIG))
    assert "api" not in document
    assert document["ping"] == {"entryPoint": "ping"}
    assert document["entryPoints"]["ping"] == {"address": "127.0.0.1:8082"}
    assert http_plan().health == "curl -fsS -o /dev/null http://127.0.0.1:8082/ping"


def test_the_dns_challenge_names_its_provider_and_keeps_credentials_in_a_0600_file() -> None:
    plan = dns_plan()
    document = json.loads(file_content(plan, traefik.CONFIG))
    acme = document["certificatesResolvers"]["letsencrypt"]["acme"]
    assert acme["dnsChallenge"] == {
        "provider": "cloudflare",
        "resolvers": ["1.1.1.1:53", "9.9.9.9:53"],
    }
    assert "httpChallenge" not in acme
    assert document["entryPoints"]["websecure"]["http"]["tls"]["domains"] == [
        {"main": "dev.zerolaghub.com", "sans": ["*.dev.zerolaghub.com"]}
    ]
    env = next(f for f in plan.files if f.path == traefik.ENVIRONMENT)
    assert (env.mode, env.owner, env.content) == (0o600, "root", f'CF_DNS_API_TOKEN="{TOKEN}"\n')
    assert TOKEN not in file_content(plan, traefik.CONFIG)
    # In the script only base64-encoded, decoded into the file.
    assert TOKEN not in configure_script([plan])
    assert TOKEN in decoded(configure_script([plan]))
    assert "EnvironmentFile=/etc/traefik/acme.env" in file_content(
        plan, "/etc/systemd/system/traefik.service"
    )


def test_a_wildcard_certificate_needs_the_dns_challenge() -> None:
    with pytest.raises(ValueError, match="needs the DNS challenge"):
        traefik.static_config(traefik.Acme("ops@zerolaghub.com", domains=("*.zerolaghub.com",)))


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (("entryPoints", "web"), "adress"),
        (("certificatesResolvers", "letsencrypt", "acme"), "emial"),
        (("providers", "file"), "directroy"),
        (("ping",), "entrypoint"),
    ],
)
def test_the_schema_refuses_a_misspelled_key(path: tuple[str, ...], key: str) -> None:
    document = json.loads(file_content(http_plan(), traefik.CONFIG))
    node = document
    for part in path:
        node = node[part]
    node[key] = node.pop(next(iter(node)))
    assert any("Additional properties are not allowed" in e for e in errors(STATIC, document))


def test_the_schemas_root_would_not_catch_a_misspelled_top_level_key() -> None:
    # Why the negative cases above misspell nested keys: the static schema's root allows
    # additional properties, its sections do not.
    document = json.loads(file_content(http_plan(), traefik.CONFIG))
    document["entrypoints"] = document.pop("entryPoints")
    assert errors(STATIC, document) == []


def test_the_unit_binds_low_ports_as_traefik_with_one_capability() -> None:
    plan = http_plan()
    unit = file_content(plan, "/etc/systemd/system/traefik.service")
    assert "User=traefik\n" in unit
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in unit
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in unit
    assert "ExecStart=/opt/traefik/traefik --configFile=/etc/traefik/traefik.yml\n" in unit
    assert plan.accounts == ("traefik",)
    data = next(d for d in plan.directories if d.path == traefik.DATA_DIR)
    assert (data.mode, data.owner) == (0o700, "traefik")
    # acme.json is created once (0600) and left to Traefik, never overwritten.
    assert traefik.ACME_STORAGE not in [f.path for f in plan.files]
    assert (
        "[ -e /srv/data/traefik/acme.json ] || install -m 0600 -o traefik -g traefik"
        in plan.converge
    )


def test_core_fetches_from_the_vendor_and_runtime_from_zlh_artifacts() -> None:
    assert ARTIFACT.url is not None
    assert ARTIFACT.url in http_plan().converge
    assert (
        "http://10.20.0.10:8080/traefik/3.3.4/traefik_v3.3.4_linux_amd64.tar.gz"
        in dns_plan().converge
    )
    assert "github.com" not in dns_plan().converge


# --- dynamic configuration -----------------------------------------------------------------


def test_the_dynamic_routes_are_valid_against_the_file_provider_schema() -> None:
    document = json.loads(traefik.dynamic_config(ROUTES))
    assert errors(DYNAMIC, document) == []
    assert document["http"]["routers"]["api"] == {
        "rule": "Host(`api.zerolaghub.com`)",
        "entryPoints": ["websecure"],
        "service": "api",
        "tls": {"certResolver": "letsencrypt"},
    }
    plan = http_plan(ROUTES)
    assert file_content(plan, traefik.ROUTES) == traefik.dynamic_config(ROUTES)


def test_the_dynamic_schema_refuses_misspelled_keys() -> None:
    document = json.loads(traefik.dynamic_config(ROUTES))
    document["htpp"] = document.pop("http")
    assert errors(DYNAMIC, document)
    document = json.loads(traefik.dynamic_config(ROUTES))
    router = document["http"]["routers"]["api"]
    router["entrypoints"] = router.pop("entryPoints")
    assert errors(DYNAMIC, document)
    document = json.loads(traefik.dynamic_config(ROUTES))
    service = document["http"]["services"]["api"]
    service["loadbalancer"] = service.pop("loadBalancer")
    assert errors(DYNAMIC, document)


@pytest.mark.parametrize(
    "host",
    [
        "api.zerolaghub.com`) || Host(`evil.example",
        "api zerolaghub.com",
        "api.zerolaghub.com\nX",
        "*.zerolaghub.com",
        "zerolaghub",
        "-api.zerolaghub.com",
        "api.zerolaghub.com.",
        "10.10.0.10",
        "a" * 64 + ".com",
    ],
)
def test_route_hosts_must_be_plain_host_names(host: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        traefik.dynamic_config([HttpRoute("api", host, "http://10.10.0.10:8080")])


def test_the_domain_validator_takes_a_wildcard_only_when_asked() -> None:
    assert traefik.domain("d", "*.dev.zerolaghub.com", wildcard=True) == "*.dev.zerolaghub.com"
    assert traefik.domain("d", "xn--bcher-kva.example") == "xn--bcher-kva.example"
    for bad in ("*.*.example.com", "a.*.example.com", "*.com"):
        with pytest.raises(ValueError):
            traefik.domain("d", bad, wildcard=True)


@pytest.mark.parametrize(
    "backend", ["ftp://10.0.0.1:21", "http://10.0.0.1:80/path", "http://a`b:80", "10.0.0.1:80"]
)
def test_route_backends_must_be_http_urls(backend: str) -> None:
    with pytest.raises(ValueError, match="backend"):
        traefik.dynamic_config([HttpRoute("api", "api.zerolaghub.com", backend)])


# --- the scripts --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [http_plan, dns_plan], ids=["http-01", "dns-01"])
def test_the_scripts_pass_shellcheck(make: Any) -> None:
    plan = make() if make is dns_plan else http_plan(ROUTES)
    shellcheck(configure_script([plan]))
    shellcheck(install_script([plan], Gateway("10.10.0.1", "zlh-router")))


# --- the vendor fetch, run for real -------------------------------------------------------


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-eu"], input=script, capture_output=True, text=True, check=False, env=os.environ
    )


def tarball(tmp_path: Path) -> tuple[Path, str]:
    archive = tmp_path / "traefik.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"#!/bin/sh\necho 3.3.4\n"
        info = tarfile.TarInfo("traefik")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def counting(shell: str) -> str:
    return f'ZLH_CHANGED=0\n{shell}echo "changed=$ZLH_CHANGED"\n'


def test_unpack_verifies_and_fetches_a_release_once(tmp_path: Path) -> None:
    archive, digest = tarball(tmp_path)
    source = Vendored(Artifact("traefik", "3.3.4", "traefik.tar.gz", digest), archive.as_uri())
    shell = counting(unpack(source, str(tmp_path / "opt/traefik")))
    first = run(shell)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "changed=1\n"
    assert (tmp_path / "opt/traefik/traefik").read_text().endswith("echo 3.3.4\n")
    assert (tmp_path / "opt/traefik/.zlh-sha256").read_text() == digest + "\n"
    archive.unlink()  # a rerun must not fetch
    second = run(shell)
    assert (second.returncode, second.stdout) == (0, "changed=0\n")


def test_a_wrong_checksum_installs_nothing(tmp_path: Path) -> None:
    archive, _ = tarball(tmp_path)
    source = Vendored(Artifact("traefik", "3.3.4", "traefik.tar.gz", SHA), archive.as_uri())
    result = run(counting(install_file(source, str(tmp_path / "bin/traefik"))))
    assert result.returncode == 1
    assert "zlh: traefik 3.3.4: SHA-256 differs from the config's" in result.stderr
    assert not (tmp_path / "bin/traefik").exists()


def test_an_unreachable_source_exits_unavailable_naming_it(tmp_path: Path) -> None:
    url = (tmp_path / "missing.tar.gz").as_uri()
    source = Vendored(Artifact("traefik", "3.3.4", "traefik.tar.gz", SHA), url)
    result = run(counting(unpack(source, str(tmp_path / "opt/traefik"))))
    assert result.returncode == EXIT_UNAVAILABLE
    assert f"zlh: traefik 3.3.4 could not be fetched from {url}" in result.stderr
    assert not (tmp_path / "opt/traefik").exists()


def test_another_acme_directory_is_an_https_url_with_its_path() -> None:
    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    document = json.loads(
        traefik.static_config(traefik.Acme("ops@zerolaghub.com", ca_server=staging))
    )
    assert document["certificatesResolvers"]["letsencrypt"]["acme"]["caServer"] == staging
    for bad in ("http://acme.example/directory", "https://acme.example/dir`ectory"):
        with pytest.raises(ValueError, match="ACME CA server"):
            traefik.static_config(traefik.Acme("ops@zerolaghub.com", ca_server=bad))
