"""Technitium's plan: API calls checked against Technitium's APIDOCS.md, run against a stand-in.

Every endpoint and parameter the generated calls use must be documented in APIDOCS.md
(tag v15.2.0) under that endpoint, and enumerated values among the documented ones.
The rendered shell then runs for real against a stand-in ``curl`` that answers like the
documented API: first run with the default password, second run idempotent, and the
admin password never in any process's argv.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from tests.scripts import decoded, shellcheck
from zlh_infra.services import technitium
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import Vendored

DOCS = (Path(__file__).parents[1] / "data/reference/technitium/APIDOCS.md").read_text()
PASSWORD = "Tdns8Kq2Vw5Hy9Lp3Rt7Bn4"
DNS = Artifact(
    "technitium-dns",
    "15.2.0",
    "DnsServerPortable.tar.gz",
    "9a" * 32,
    "https://download.technitium.com/dns/archive/15.2.0/DnsServerPortable.tar.gz",
)
RUNTIME = Artifact(
    "aspnetcore-runtime",
    "9.0.3",
    "aspnetcore-runtime-9.0.3-linux-x64.tar.gz",
    "9b" * 32,
    "https://builds.dotnet.microsoft.com/dotnet/aspnetcore/Runtime/9.0.3/aspnetcore-runtime-9.0.3-linux-x64.tar.gz",
)
GUESTS = {"zlh-db": IPv4Address("10.10.0.12"), "zpack-api": IPv4Address("10.10.0.10")}
CORE = technitium.core_zone("core.zlh.internal", GUESTS)
GAMES = technitium.Zone(
    "zerolaghub.internal",
    (
        technitium.Record("@", "TXT", "v=zlh1"),
        technitium.Record("play", "A", "10.20.0.5"),
        technitium.Record("play", "A", "10.20.0.6"),
        technitium.Record("www", "CNAME", "play.zerolaghub.internal"),
    ),
)
FORWARDERS = ["1.1.1.1", "9.9.9.9"]


def a_plan() -> ServicePlan:
    return technitium.plan(
        guest="zlh-dns",
        technitium=Vendored.from_vendor(DNS),
        dotnet=Vendored.from_vendor(RUNTIME),
        admin_password=PASSWORD,
        core_zone_name="core.zlh.internal",
        core_guests=GUESTS,
        zones=[GAMES],
        forwarders=FORWARDERS,
    )


def documented() -> dict[str, dict[str, str]]:
    """Endpoint -> {parameter: its documentation line} from APIDOCS.md.

    Each ``###`` section's example URL names the endpoint (and some parameters); its
    bullets before ``RESPONSE`` document the parameters.
    """
    found: dict[str, dict[str, str]] = {}
    for section in re.split(r"^### ", DOCS, flags=re.MULTILINE)[1:]:
        url = re.search(r"`http://localhost:5380(/api/[A-Za-z/]+)(\?[^`]*)?`", section)
        if url is None:
            continue
        params = found.setdefault(url[1], {})
        for name in re.findall(r"[?&]([A-Za-z]+)=", url[2] or ""):
            params.setdefault(name, "")
        request = section.split("\nRESPONSE", 1)[0]
        for line in request.splitlines():
            bullet = re.match(r"- `([A-Za-z]+)`", line)
            if bullet:
                params[bullet[1]] = line
    return found


DOCUMENTED = documented()
#: Per endpoint, the parameters whose values are one of a list its documentation gives.
ENUMERATED = {
    "/api/zones/create": {"type"},
    "/api/zones/records/add": {"type"},
    "/api/settings/set": {"recursion", "forwarderProtocol"},
}


def every_call() -> list[technitium.ApiCall]:
    calls: list[technitium.ApiCall] = []
    for call in technitium.sync_calls(
        [CORE, GAMES], forwarders=FORWARDERS, server_domain="zlh-dns.core.zlh.internal"
    ):
        if isinstance(call, technitium.Prune):
            calls.append(call.listing())
            calls += [call.deletion(t) for t in technitium.VALUE_FIELDS]
        else:
            calls.append(call)
    return calls + list(technitium.login_calls().values())


# --- the calls against APIDOCS.md ---------------------------------------------------------


def test_the_docs_parse_into_the_endpoints_the_calls_need() -> None:
    assert {"/api/user/login", "/api/zones/create", "/api/settings/set"} <= set(DOCUMENTED)
    assert "overwrite" in DOCUMENTED["/api/zones/records/add"]
    # Response fields are not parameters.
    assert "token" not in DOCUMENTED["/api/user/login"]


def test_every_endpoint_and_parameter_is_documented_under_that_endpoint() -> None:
    for call in every_call():
        assert call.endpoint in DOCUMENTED, call.endpoint
        for name, value in call.params:
            assert name in DOCUMENTED[call.endpoint], f"{call.endpoint}: {name}"
            if name in ENUMERATED.get(call.endpoint, ()):
                assert f"`{value}`" in DOCUMENTED[call.endpoint][name], f"{name}={value}"
    # A delete names its type in the vocabulary records are added with.
    for call in every_call():
        if call.endpoint == "/api/zones/records/delete":
            kind = dict(call.params)["type"]
            assert f"`{kind}`" in DOCUMENTED["/api/zones/records/add"]["type"], kind


def test_an_undocumented_parameter_would_be_caught() -> None:
    assert "password" not in DOCUMENTED["/api/user/login"]
    assert "overwrites" not in DOCUMENTED["/api/zones/records/add"]
    assert "/api/zones/add" not in DOCUMENTED


def test_the_session_token_travels_in_the_documented_header() -> None:
    assert "`Authorization: Bearer <token>`" in DOCS
    script = decoded(configure_script([a_plan()]))
    assert (
        "printf 'Authorization: Bearer %s\\n' \"$zlh_dns_token\" >/run/zlh/technitium.session"
        in (script)
    )
    assert "-H @/run/zlh/technitium.session" in script


def test_records_overwrite_their_set_once_then_append() -> None:
    adds = [
        dict(call.params)
        for call in technitium.sync_calls(
            [GAMES], forwarders=[], server_domain="zlh-dns.core.zlh.internal"
        )
        if isinstance(call, technitium.ApiCall) and call.endpoint == "/api/zones/records/add"
    ]
    assert [(a["domain"], a["type"], a["overwrite"]) for a in adds] == [
        ("zerolaghub.internal", "TXT", "true"),
        ("play.zerolaghub.internal", "A", "true"),
        ("play.zerolaghub.internal", "A", "false"),
        ("www.zerolaghub.internal", "CNAME", "true"),
    ]
    assert adds[1]["ipAddress"] == "10.20.0.5" and adds[3]["cname"] == "play.zerolaghub.internal"


def test_the_core_zone_has_an_a_record_per_core_guest() -> None:
    assert CORE.records == (
        technitium.Record("zlh-db", "A", "10.10.0.12"),
        technitium.Record("zpack-api", "A", "10.10.0.10"),
    )


def test_no_forwarders_clears_them() -> None:
    (settings,) = [
        call
        for call in technitium.sync_calls(
            [CORE], forwarders=[], server_domain="a.core.zlh.internal"
        )
        if isinstance(call, technitium.ApiCall) and call.endpoint == "/api/settings/set"
    ]
    assert dict(settings.params)["forwarders"] == "false"
    assert "`false`" in DOCUMENTED["/api/settings/set"]["forwarders"]


@pytest.mark.parametrize(
    "record",
    [
        technitium.Record("a b", "A", "10.0.0.1"),
        technitium.Record("a", "MX", "10.0.0.1"),
        technitium.Record("a", "A", "not-an-ip"),
        technitium.Record("a", "CNAME", "bad`name.example"),
        technitium.Record("a", "TXT", "line\nbreak"),
    ],
)
def test_bad_records_are_refused(record: technitium.Record) -> None:
    with pytest.raises(ValueError):
        technitium.sync_calls(
            [technitium.Zone("x.internal", (record,))], forwarders=[], server_domain="d.x.internal"
        )


# --- secrets ------------------------------------------------------------------------------


def test_the_password_is_a_0600_file_read_by_curl_never_an_argument() -> None:
    plan = a_plan()
    secret = next(f for f in plan.files if f.path == technitium.PASSWORD_FILE)
    # No trailing newline: curl's name@file sends the file's bytes as they are.
    assert (secret.content, secret.mode, secret.owner) == (PASSWORD, 0o600, "root")
    script = configure_script([plan])
    assert PASSWORD not in script
    assert " pass@/etc/technitium/admin.password" in script
    assert " newPass@/etc/technitium/admin.password" in script


# --- the shell, run against a stand-in Technitium -----------------------------------------

FAKE_CURL = r'''#!/usr/bin/python3
"""Answers like Technitium's HTTP API; state in $FAKE_STATE; argv logged."""
import json, os, sys, urllib.parse
state_dir = os.environ["FAKE_STATE"]
with open(os.path.join(state_dir, "argv.log"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
path = os.path.join(state_dir, "state.json")
state = json.load(open(path)) if os.path.exists(path) else {
    "password": "admin", "zones": [], "records": {}, "settings": {}, "token": None}
args, out, headers, form, url = sys.argv[1:], None, [], {}, None
i = 0
while i < len(args):
    a = args[i]
    if a == "-o": out = args[i + 1]; i += 2; continue
    if a == "-H": headers.append(args[i + 1]); i += 2; continue
    if a == "--data-urlencode":
        item = args[i + 1]
        name, sep, value = item.partition("=")
        if not sep or "@" in name:
            name, _, file = item.partition("@")
            value = open(file).read()
        form[name] = value; i += 2; continue
    if a.startswith("http"): url = a
    i += 1
endpoint = urllib.parse.urlsplit(url).path
token = None
for h in headers:
    if h.startswith("@"):
        token = open(h[1:]).read().split("Bearer ", 1)[1].strip()
def ok(response=None):
    return {"status": "ok", **({"response": response} if response is not None else {})}
if endpoint == "/":
    answer = None
elif endpoint == "/api/user/login":
    if form.get("user") == "admin" and form.get("pass") == state["password"]:
        state["token"] = "tok%d" % len(state["zones"])
        answer = {"status": "ok", "token": state["token"]}
    else:
        answer = {"status": "error", "errorMessage": "Invalid username or password"}
elif token is None or token != state["token"]:
    answer = {"status": "invalid-token"}
elif endpoint == "/api/user/changePassword":
    assert form["pass"] == state["password"]
    state["password"] = form["newPass"]; answer = ok()
elif endpoint == "/api/zones/list":
    answer = ok({"zones": [{"name": z, "type": "Primary"} for z in state["zones"]]})
elif endpoint == "/api/zones/create":
    if form["zone"] in state["zones"]:
        answer = {"status": "error", "errorMessage": "Zone already exists"}
    else:
        state["zones"].append(form["zone"]); answer = ok({"domain": form["zone"]})
        state["records"][form["zone"] + " SOA"] = ["zlh-dns"]
        state["records"][form["zone"] + " NS"] = ["zlh-dns"]
elif endpoint == "/api/zones/records/add":
    key = form["domain"] + " " + form["type"]
    value = form.get("ipAddress") or form.get("cname") or form.get("text")
    kept = [] if form["overwrite"] == "true" else state["records"].get(key, [])
    state["records"][key] = kept + [value]; answer = ok()
elif endpoint == "/api/zones/records/get":
    assert form["listZone"] == "true" and form["domain"] == form["zone"]
    fields = {"A": "ipAddress", "AAAA": "ipAddress", "CNAME": "cname", "TXT": "text",
              "SOA": "primaryNameServer", "NS": "nameServer"}
    records = []
    for key, values in state["records"].items():
        name, kind = key.split(" ")
        if name == form["zone"] or name.endswith("." + form["zone"]):
            records += [{"name": name, "type": kind, "ttl": 3600, "rData": {fields[kind]: v}}
                        for v in values]
    answer = ok({"zone": {"name": form["zone"]}, "records": records})
elif endpoint == "/api/zones/records/delete":
    key = form["domain"] + " " + form["type"]
    values = state["records"].get(key, [])
    if form["type"] == "CNAME":
        state["records"].pop(key)
    else:
        value = form.get("ipAddress") or form.get("text")
        assert value in values, (key, value, values)
        values.remove(value)
        if not values:
            state["records"].pop(key)
    state.setdefault("deleted", []).append(key)
    answer = ok()
elif endpoint == "/api/settings/set":
    state["settings"] = form; answer = ok()
else:
    answer = {"status": "error", "errorMessage": "unknown " + endpoint}
json.dump(state, open(path, "w"))
if out:
    with open(out, "w") as f:
        json.dump(answer or {}, f)
'''


def session_shell(plan: ServicePlan, root: Path) -> str:
    """The plan's API part (login onwards) and its health check, on scratch paths."""
    converge = plan.converge
    api_part = converge[converge.index("install -d -m 0700 /run/zlh") :]
    script = f"set -eu\n{api_part}zlh_healthy() {{\n{plan.health}\n}}\nzlh_healthy >/dev/null\n"
    return script.replace("/run/zlh", str(root / "run")).replace(
        technitium.PASSWORD_FILE, str(root / "admin.password")
    )


def stand_in_technitium(root: Path) -> dict[str, str]:
    """The environment that runs a script against FAKE_CURL, its state and password in ``root``."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(FAKE_CURL.replace("/usr/bin/python3", sys.executable))
    (bin_dir / "curl").chmod(0o755)
    (root / "admin.password").write_text(PASSWORD)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(root)}


def converge(env: dict[str, str], root: Path, plan: ServicePlan) -> dict[str, Any]:
    """Run ``plan``'s API part against the stand-in; its state afterwards."""
    result = subprocess.run(
        ["sh", "-eu"], input=session_shell(plan, root), env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    state: dict[str, Any] = json.loads((root / "state.json").read_text())
    return state


def test_first_run_changes_the_default_password_then_reruns_change_nothing(
    tmp_path: Path,
) -> None:
    env = stand_in_technitium(tmp_path)
    shellcheck(session_shell(a_plan(), tmp_path))
    first = converge(env, tmp_path, a_plan())
    assert first["password"] == PASSWORD
    assert first["zones"] == ["core.zlh.internal", "zerolaghub.internal"]
    assert first["records"]["play.zerolaghub.internal A"] == ["10.20.0.5", "10.20.0.6"]
    assert first["records"]["zlh-db.core.zlh.internal A"] == ["10.10.0.12"]
    assert first["settings"]["forwarders"] == "1.1.1.1,9.9.9.9"
    second = converge(env, tmp_path, a_plan())
    assert {k: v for k, v in second.items() if k != "token"} == {
        k: v for k, v in first.items() if k != "token"
    }
    log = (tmp_path / "argv.log").read_text()
    assert PASSWORD not in log
    assert "tok" not in log  # nor the session token


def test_records_the_config_no_longer_declares_are_deleted_and_nothing_else(
    tmp_path: Path,
) -> None:
    env = stand_in_technitium(tmp_path)
    first = converge(env, tmp_path, a_plan())
    assert "deleted" not in first  # what it just declared stays
    # By hand, in a platform zone: a TXT whose value needs care, and a stray CNAME.
    first["records"]["note.zerolaghub.internal TXT"] = ["a\tb 'c' $(x)"]
    first["records"]["old.zerolaghub.internal CNAME"] = ["play.zerolaghub.internal"]
    (tmp_path / "state.json").write_text(json.dumps(first))
    smaller = technitium.plan(
        guest="zlh-dns",
        technitium=Vendored.from_vendor(DNS),
        dotnet=Vendored.from_vendor(RUNTIME),
        admin_password=PASSWORD,
        core_zone_name="core.zlh.internal",
        core_guests={k: v for k, v in GUESTS.items() if k != "zpack-api"},
        zones=[technitium.Zone(GAMES.name, GAMES.records[:2])],
        forwarders=FORWARDERS,
    )
    second = converge(env, tmp_path, smaller)
    assert sorted(second["deleted"]) == [
        "note.zerolaghub.internal TXT",
        "old.zerolaghub.internal CNAME",
        "www.zerolaghub.internal CNAME",
        "zpack-api.core.zlh.internal A",
    ]
    # The second A of play went with the first add's overwrite, no delete needed.
    assert second["records"]["play.zerolaghub.internal A"] == ["10.20.0.5"]
    # The zones' own SOA and NS records are not the program's to delete.
    assert second["records"]["core.zlh.internal SOA"] == ["zlh-dns"]
    assert second["records"]["zerolaghub.internal NS"] == ["zlh-dns"]
    third = converge(env, tmp_path, smaller)
    assert third["deleted"] == second["deleted"]  # converged: nothing more to delete


def test_neither_password_working_fails_naming_the_guest(tmp_path: Path) -> None:
    env = stand_in_technitium(tmp_path)
    (tmp_path / "state.json").write_text(
        json.dumps({"password": "someone-else", "zones": [], "records": {}, "token": None})
    )
    result = subprocess.run(
        ["sh", "-eu"],
        input=session_shell(a_plan(), tmp_path),
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "zlh: technitium on zlh-dns: neither the configured admin password" in result.stderr


# --- the rest of the plan -----------------------------------------------------------------


def test_dotnet_and_technitium_are_verified_artifacts_run_unprivileged() -> None:
    plan = a_plan()
    assert RUNTIME.url is not None and RUNTIME.url in plan.converge
    assert "/opt/dotnet/.zlh-sha256" in plan.converge
    assert "/opt/technitium/.zlh-sha256" in plan.converge
    unit = next(f.content for f in plan.files if f.path == technitium.UNIT_PATH)
    assert (
        "ExecStart=/opt/dotnet/dotnet /opt/technitium/DnsServerApp.dll /var/lib/technitium\n"
        in (unit)
    )
    assert "User=technitium\n" in unit and "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in unit
    assert "libicu72" in plan.packages
    assert "zlh_dns_login && zlh_dns_api /api/zones/list" in plan.health


def test_the_scripts_pass_shellcheck() -> None:
    plan = a_plan()
    shellcheck(configure_script([plan]))
    shellcheck(install_script([plan], Gateway("10.10.0.1", "zlh-router")))
