"""Grafana's plan: from its APT repository, provisioned with Prometheus and the dashboard.

No upstream reference file exists for Grafana's provisioning format here, so the
files are checked for their structure with PyYAML and json.
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address
from typing import Any

import pytest
import yaml

from tests.scripts import decoded, guest_file, shellcheck
from zlh_infra.services import grafana
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import AptRepository

PASSWORD = "Gr4fAnaAdm1nPassw0rdXyZ"
KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGTnhmkBEADUfake\n"
    "-----END PGP PUBLIC KEY BLOCK-----\n"
)
REPOSITORY = AptRepository("grafana", "https://apt.grafana.com", "stable", ("main",), KEY)


def a_plan(version: str | None = "11.5.2") -> ServicePlan:
    return grafana.plan(
        guest="zlh-monitor",
        repository=REPOSITORY,
        listen=IPv4Address("10.10.0.20"),
        admin_password=PASSWORD,
        version=version,
        public_domain="grafana.zerolaghub.com",
    )


# --- the repository -----------------------------------------------------------------------


def test_the_repository_is_trusted_through_the_given_key_only() -> None:
    plan = a_plan()
    keyring = guest_file(plan, "/etc/apt/keyrings/grafana.asc")
    assert (keyring.content, keyring.mode) == (KEY, 0o644)
    sources = guest_file(plan, "/etc/apt/sources.list.d/grafana.sources").content
    fields = dict(line.split(": ", 1) for line in sources.splitlines() if not line.startswith("#"))
    assert fields == {
        "Types": "deb",
        "URIs": "https://apt.grafana.com",
        "Suites": "stable",
        "Components": "main",
        "Signed-By": "/etc/apt/keyrings/grafana.asc",
    }
    # The key is never fetched.
    assert "gpg.key" not in configure_script([plan])


def test_grafana_is_installed_from_it_pinned_and_only_when_missing() -> None:
    converge = a_plan().converge
    assert (
        "[ \"$(dpkg-query -W -f='${Status} ${Version}' grafana 2>/dev/null || true)\""
        " = 'install ok installed 11.5.2' ]" in converge
    )
    assert "install --no-install-recommends grafana=11.5.2" in converge
    assert "zlh: grafana could not be fetched from https://apt.grafana.com" in converge
    assert "exit 69" in converge
    unpinned = a_plan(version=None).converge
    assert "install --no-install-recommends grafana \\" in unpinned


@pytest.mark.parametrize(
    ("field", "value"),
    [("uri", "ftp://apt.grafana.com"), ("suite", "stable main"), ("key", "not a key")],
)
def test_a_bad_repository_is_refused(field: str, value: str) -> None:
    args: dict[str, Any] = {
        "name": "grafana",
        "uri": "https://apt.grafana.com",
        "suite": "stable",
        "components": ("main",),
        "key": KEY,
        field: value,
    }
    with pytest.raises(ValueError):
        AptRepository(**args)


# --- settings and the admin password ------------------------------------------------------


def env_of(plan: ServicePlan) -> dict[str, str]:
    text = guest_file(plan, grafana.ENVIRONMENT).content
    return {
        key: value.strip('"') for key, value in (line.split("=", 1) for line in text.splitlines())
    }


def test_grafana_listens_on_the_lan_with_the_admin_password_from_the_environment() -> None:
    plan = a_plan()
    env = env_of(plan)
    assert env["GF_SERVER_HTTP_ADDR"] == "10.10.0.20"
    assert env["GF_SERVER_HTTP_PORT"] == "3000"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == PASSWORD
    assert env["GF_SERVER_ROOT_URL"] == "https://grafana.zerolaghub.com/"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    settings = guest_file(plan, grafana.ENVIRONMENT)
    assert (settings.mode, settings.owner, settings.group) == (0o640, "root", "grafana")
    assert guest_file(plan, grafana.DROP_IN).content.endswith(
        "[Service]\nEnvironmentFile=/etc/grafana/zlh.env\n"
    )
    # The account exists before the package, so the group owns the files from the start.
    assert plan.accounts == ("grafana",)
    assert plan.health == "curl -fsS -o /dev/null http://10.10.0.20:3000/api/health"


def test_the_password_is_reset_through_stdin_when_the_settings_change() -> None:
    plan = a_plan()
    script = configure_script([plan])
    assert PASSWORD not in script
    reset = next(line for line in decoded(script).splitlines() if "reset-admin-password" in line)
    assert reset.strip().startswith(f"printf '%s' '{PASSWORD}' | base64 -d |")
    assert reset.strip().endswith("admin reset-admin-password --password-from-stdin >/dev/null")
    assert "runuser -u grafana -- grafana cli" in reset
    converge = plan.converge
    assert converge.index('if [ "$ZLH_CHANGED" = 1 ]') < converge.index("reset-admin-password")


# --- provisioning -------------------------------------------------------------------------


def test_prometheus_is_the_default_data_source_with_uid_prometheus() -> None:
    document = yaml.safe_load(guest_file(a_plan(), grafana.DATASOURCES).content)
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert source == {
        "name": "Prometheus",
        "type": "prometheus",
        "uid": "prometheus",
        "access": "proxy",
        "url": "http://127.0.0.1:9090",
        "isDefault": True,
        "editable": False,
        "jsonData": {"timeInterval": "30s"},
    }


def test_dashboards_are_provisioned_from_var_lib_grafana_dashboards() -> None:
    plan = a_plan()
    document = yaml.safe_load(guest_file(plan, grafana.DASHBOARD_PROVIDERS).content)
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert grafana.DASHBOARD.startswith(provider["options"]["path"] + "/")
    for path in (grafana.DATASOURCES, grafana.DASHBOARD_PROVIDERS):
        provisioned = guest_file(plan, path)
        assert (provisioned.mode, provisioned.group) == (0o640, "grafana")


def test_the_platform_dashboard_queries_the_provisioned_source_by_job() -> None:
    document = json.loads(grafana.dashboard())
    assert document["uid"] == "zlh-platform"
    (variable,) = document["templating"]["list"]
    assert (variable["name"], variable["definition"]) == ("job", "label_values(up, job)")
    assert variable["multi"] and variable["includeAll"]
    titles = {}
    for panel in document["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        (target,) = panel["targets"]
        assert target["datasource"]["uid"] == "prometheus"
        assert 'job=~"$job"' in target["expr"]
        assert target["expr"].count("(") == target["expr"].count(")")
        titles[panel["title"]] = target["expr"]
    assert titles["Targets up"] == 'up{job=~"$job"}'
    assert "node_cpu_seconds_total" in titles["CPU busy"]
    assert "node_memory_MemAvailable_bytes" in titles["Memory used"]
    assert "node_filesystem_avail_bytes" in titles["Disk used"]
    # CPU is averaged per instance (and job); the others are per-instance series already.
    assert "avg by (job, instance)" in titles["CPU busy"]
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    # No two panels overlap on the grid.
    cells = [
        (x, y)
        for panel in document["panels"]
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))
    assert all(re.fullmatch(r"[A-Za-z ]+", title) for title in titles)


def test_the_scripts_pass_shellcheck() -> None:
    for plan in (a_plan(), a_plan(version=None)):
        shellcheck(configure_script([plan]))
        shellcheck(install_script([plan], Gateway("10.10.0.1", "zlh-router")))
