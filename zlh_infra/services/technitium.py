"""Technitium DNS Server on zlh-dns: the core zone and the platform's other zones.

Debian 12 has no .NET, so both halves are artifacts, verified by their SHA-256: the
ASP.NET Core runtime tarball (``aspnetcore-runtime-<v>-linux-x64.tar.gz``, the major
version the pinned Technitium release requires) unpacked to ``/opt/dotnet``, and
Technitium's portable build (``DnsServerPortable.tar.gz``) unpacked to
``/opt/technitium``. It runs as the system account ``technitium`` with only
``CAP_NET_BIND_SERVICE`` (port 53), keeping its state in ``/var/lib/technitium``.

Zones and settings are synchronised through Technitium's HTTP API on 127.0.0.1:5380
(the web service the firewall keeps off the LAN). The calls are data (``ApiCall``,
``sync_calls`` and ``login_calls``), rendered to curl lines (``render``):

- log in as ``admin`` with the configured password, read by curl from
  ``/etc/technitium/admin.password`` (0600, no trailing newline) with
  ``--data-urlencode pass@<file>``: never in argv. On the first run Technitium still
  has ``admin``/``admin``: when the configured password fails and that one works, the
  password is changed (``/api/user/changePassword``, the new one read from the file).
  The session token goes into a header file (``Authorization: Bearer``) in a
  root-only directory, never on a command line.
- create each zone (``Primary``) unless ``/api/zones/list`` already has it;
- set each record with ``/api/zones/records/add``: the first of a name and type with
  ``overwrite=true`` (which replaces that record set), the others appended;
- delete, with ``/api/zones/records/delete``, every record of a managed type (A, AAAA,
  CNAME, TXT) that ``/api/zones/records/get`` lists in a platform zone and the config
  does not declare: a guest removed from the config loses its name. The program owns
  these zones; keep hand-made records in a zone of their own;
- ``/api/settings/set``: the forwarders (``false`` clears them: Technitium then
  resolves recursively) and recursion for private networks only.

The admin password is set once: to rotate it, change it in Technitium first, or the
next run finds neither the new password nor the default working and fails.

Health: logging in with the configured password works and ``/api/zones/list`` has the
core zone.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from zlh_infra.services.plan import GuestFile, ServicePlan
from zlh_infra.services.traefik import domain
from zlh_infra.services.values import generated_secret, no_control
from zlh_infra.services.vendor import Vendored, unpack

API = "http://127.0.0.1:5380"
DOTNET = "/opt/dotnet"
HOME = "/opt/technitium"
STATE = "/var/lib/technitium"
PASSWORD_FILE = "/etc/technitium/admin.password"
#: Root's only (0700): the session header and the last API answer, which may hold a token.
RUN_DIR = "/run/zlh"
SESSION = f"{RUN_DIR}/technitium.session"
ANSWER = f"{RUN_DIR}/technitium.answer"
#: The stale records of one zone and type, one per line, while they are deleted.
STALE = f"{RUN_DIR}/technitium.stale"
TAB = "\"$(printf '\\t')\""
UNIT = "technitium-dns.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
#: Technitium's documented first-run credentials (not a secret).
DEFAULT_PASSWORD = "admin"
RECORD_TYPES = ("A", "AAAA", "CNAME", "TXT")
#: The .NET runtime's native dependencies on Debian 12.
PACKAGES = (
    "ca-certificates",
    "curl",
    "jq",
    "libc6",
    "libgcc-s1",
    "libgssapi-krb5-2",
    "libicu72",
    "libssl3",
    "libstdc++6",
    "zlib1g",
)

_LABEL = re.compile(r"(\*|@|[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)")
_FORWARDER = re.compile(r"[A-Za-z0-9.:\[\]/()_ -]{1,253}")


@dataclass(frozen=True, slots=True)
class FromFile:
    """A parameter value curl reads from a file (``name@path``): a secret stays off argv."""

    path: str


@dataclass(frozen=True, slots=True)
class FromShell:
    """A parameter value the script holds in a shell variable (a record read back)."""

    variable: str


ParamValue = str | FromFile | FromShell

#: Per managed record type, the parameter naming its value and that value's field in
#: ``rData`` (the same word in Technitium's API).
VALUE_FIELDS = {"A": "ipAddress", "AAAA": "ipAddress", "CNAME": "cname", "TXT": "text"}


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Technitium HTTP API call: its endpoint and its form parameters, in order."""

    endpoint: str
    params: tuple[tuple[str, ParamValue], ...] = ()
    #: Made only if ``/api/zones/list`` does not list this zone.
    unless_zone: str | None = None


@dataclass(frozen=True, slots=True)
class Prune:
    """Delete the records of ``zone`` of a managed type that are not in ``keep``.

    ``keep`` holds (name, type, value) triples as Technitium lists them: lower-case
    names, values as ``rData`` holds them.
    """

    zone: str
    keep: tuple[tuple[str, str, str], ...]

    def listing(self) -> ApiCall:
        return ApiCall(
            "/api/zones/records/get",
            (("domain", self.zone), ("zone", self.zone), ("listZone", "true")),
        )

    def deletion(self, record_type: str) -> ApiCall:
        """The delete call of one stale record of ``record_type``, read into the shell.

        A name has one CNAME, so its delete names no value.
        """
        value: tuple[tuple[str, ParamValue], ...] = (
            ()
            if record_type == "CNAME"
            else ((VALUE_FIELDS[record_type], FromShell("zlh_dns_value")),)
        )
        return ApiCall(
            "/api/zones/records/delete",
            (
                ("zone", self.zone),
                ("domain", FromShell("zlh_dns_name")),
                ("type", record_type),
                *value,
            ),
        )


@dataclass(frozen=True, slots=True)
class Record:
    #: Relative to the zone; ``@`` for the zone's apex.
    name: str
    type: str
    value: str
    ttl: int = 3600


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    records: tuple[Record, ...] = ()


def core_zone(name: str, guests: Mapping[str, IPv4Address]) -> Zone:
    """The core zone: an A record for every core guest."""
    return Zone(
        name, tuple(Record(guest, "A", str(address)) for guest, address in sorted(guests.items()))
    )


def _record_params(zone: str, record: Record, overwrite: bool) -> tuple[tuple[str, str], ...]:
    if not _LABEL.fullmatch(record.name):
        raise ValueError(f"zone {zone}: record name {record.name!r} is not a label (or @, *)")
    if record.type not in RECORD_TYPES:
        raise ValueError(f"zone {zone}: record type {record.type!r} (one of {RECORD_TYPES})")
    if not 0 < record.ttl <= 604800:
        raise ValueError(f"zone {zone}: TTL {record.ttl} of {record.name}")
    fqdn = zone if record.name == "@" else f"{record.name}.{zone}"
    return (
        ("zone", zone),
        ("domain", fqdn),
        ("type", record.type),
        ("ttl", str(record.ttl)),
        ("overwrite", "true" if overwrite else "false"),
        (VALUE_FIELDS[record.type], _value(fqdn, record)),
    )


def _value(fqdn: str, record: Record) -> str:
    if record.type == "A":
        return str(IPv4Address(record.value))
    if record.type == "AAAA":
        return str(IPv6Address(record.value))
    if record.type == "CNAME":
        return domain(f"CNAME of {fqdn}", record.value)
    return no_control(f"TXT of {fqdn}", record.value)


def _kept(zone: Zone) -> tuple[tuple[str, str, str], ...]:
    """The zone's declared records as Technitium lists them (names lower-cased)."""
    found = []
    for record in zone.records:
        fqdn = zone.name if record.name == "@" else f"{record.name}.{zone.name}"
        value = _value(fqdn, record)
        found.append(
            (fqdn.lower(), record.type, value.lower() if record.type == "CNAME" else value)
        )
    return tuple(sorted(set(found)))


def sync_calls(
    zones: Sequence[Zone], *, forwarders: Sequence[str], server_domain: str
) -> list[ApiCall | Prune]:
    """The calls that converge zones, records and settings, in order (logged in)."""
    calls: list[ApiCall | Prune] = [ApiCall("/api/zones/list")]
    names = [domain("zone", zone.name) for zone in zones]
    if len(set(names)) != len(names):
        raise ValueError(f"zones declared twice: {sorted(names)}")
    for zone in zones:
        calls.append(
            ApiCall(
                "/api/zones/create",
                (("zone", zone.name), ("type", "Primary")),
                unless_zone=zone.name,
            )
        )
    for zone in zones:
        seen: set[tuple[str, str]] = set()
        for record in zone.records:
            key = (record.name, record.type)
            calls.append(
                ApiCall(
                    "/api/zones/records/add", _record_params(zone.name, record, key not in seen)
                )
            )
            seen.add(key)
        calls.append(Prune(zone.name, _kept(zone)))
    for forwarder in forwarders:
        if not _FORWARDER.fullmatch(forwarder) or "," in forwarder:
            raise ValueError(f"forwarder {forwarder!r} is not a name server address")
    calls.append(
        ApiCall(
            "/api/settings/set",
            (
                ("dnsServerDomain", domain("DNS server domain", server_domain)),
                ("forwarders", ",".join(forwarders) if forwarders else "false"),
                ("forwarderProtocol", "Udp"),
                ("recursion", "AllowOnlyForPrivateNetworks"),
            ),
        )
    )
    return calls


def login_calls() -> dict[str, ApiCall]:
    """The session calls: log in (configured or default password), change the password."""
    return {
        "login": ApiCall("/api/user/login", (("user", "admin"), ("pass", FromFile(PASSWORD_FILE)))),
        "default-login": ApiCall(
            "/api/user/login", (("user", "admin"), ("pass", DEFAULT_PASSWORD))
        ),
        "change-password": ApiCall(
            "/api/user/changePassword",
            (("pass", DEFAULT_PASSWORD), ("newPass", FromFile(PASSWORD_FILE))),
        ),
    }


def _args(call: ApiCall) -> str:
    parts = []
    for name, value in call.params:
        if not re.fullmatch(r"[A-Za-z]+", name):
            raise ValueError(f"{call.endpoint}: parameter {name!r}")
        if isinstance(value, FromFile):
            parts.append(shlex.quote(f"{name}@{value.path}"))
        elif isinstance(value, FromShell):
            if not re.fullmatch(r"zlh_[a-z_]+", value.variable):
                raise ValueError(f"{call.endpoint} {name}: shell variable {value.variable!r}")
            parts.append(f'"{name}=${value.variable}"')
        else:
            no_control(f"{call.endpoint} {name}", value)
            parts.append(shlex.quote(f"{name}={value}"))
    return " ".join(parts)


def render_prune(prune: Prune) -> str:
    """List the zone, then delete each stale record of a managed type.

    jq writes one line per stale record: its type, its name and its value base64-encoded
    (a TXT value may hold anything), which the loop decodes into the delete call.
    """
    keep = json.dumps([list(item) for item in prune.keep], separators=(",", ":"))
    managed = " or ".join(f'.type == "{record_type}"' for record_type in VALUE_FIELDS)
    value = " ".join(
        f'{"if" if i == 0 else "elif"} .type == "{t}" then .rData.{field}'
        + (" | ascii_downcase" if t == "CNAME" else "")
        for i, (t, field) in enumerate(VALUE_FIELDS.items())
    )
    stale = (
        f".response.records[] | select({managed})"
        f" | [(.name | ascii_downcase), .type, ({value} else null end)]"
        " | select(. as $r | any($keep[]; . == $r) | not)"
        ' | .[1] + "\\t" + .[0] + "\\t" + (.[2] | @base64)'
    )
    cases = "".join(f"    {t}) {render(prune.deletion(t))} ;;\n" for t in VALUE_FIELDS)
    return (
        f"{render(prune.listing())}\n"
        f"jq -r --argjson keep {shlex.quote(keep)} {shlex.quote(stale)} "
        f'"$zlh_dns_out" >{STALE}\n'
        f"while IFS={TAB} read -r zlh_dns_type zlh_dns_name zlh_dns_encoded; do\n"
        "  zlh_dns_value=$(printf '%s' \"$zlh_dns_encoded\" | base64 -d)\n"
        '  case "$zlh_dns_type" in\n'
        f"{cases}"
        "  esac\n"
        f"done <{STALE}"
    )


def render(call: ApiCall) -> str:
    """The call as a shell line: ``zlh_dns_api ENDPOINT name=value|name@file ...``."""
    if not re.fullmatch(r"/api/[A-Za-z/]+", call.endpoint):
        raise ValueError(f"{call.endpoint!r} is not an API endpoint")
    line = f"zlh_dns_api {call.endpoint} {_args(call)}".rstrip()
    if call.unless_zone is not None:
        zone = shlex.quote(call.unless_zone)
        return f"if ! zlh_dns_has_zone {zone}; then\n  {line}\nfi"
    return line


def _functions() -> str:
    calls = login_calls()
    return f"""\
install -d -m 0700 {RUN_DIR}
zlh_dns_out={ANSWER}
zlh_dns_session() {{ # the session token of a login answer ($zlh_dns_out), to the header file
  zlh_dns_token=$(jq -er 'select(.status == "ok") | .token' "$zlh_dns_out") || return 1
  printf 'Authorization: Bearer %s\\n' "$zlh_dns_token" >{SESSION}
}}
zlh_dns_call() {{ # endpoint [name=value|name@file ...]: POST, the answer in $zlh_dns_out
  zlh_dns_endpoint=$1; shift
  zlh_dns_n=$#
  while [ "$zlh_dns_n" -gt 0 ]; do
    set -- "$@" --data-urlencode "$1"; shift; zlh_dns_n=$((zlh_dns_n - 1))
  done
  if [ -s {SESSION} ]; then set -- -H @{SESSION} "$@"; fi
  curl -fsS -o "$zlh_dns_out" "$@" "{API}$zlh_dns_endpoint"
}}
zlh_dns_api() {{ # as zlh_dns_call, failing (with Technitium's message) unless status is ok
  zlh_dns_call "$@" || return 1
  if ! jq -e '.status == "ok"' "$zlh_dns_out" >/dev/null; then
    echo "zlh: technitium $1: $(jq -r '.errorMessage // .status' "$zlh_dns_out")" >&2
    return 1
  fi
}}
zlh_dns_login() {{ # log in with the configured password
  rm -f {SESSION}
  zlh_dns_call {calls["login"].endpoint} {_args(calls["login"])} && zlh_dns_session
}}
zlh_dns_has_zone() {{ # zone: listed by the last /api/zones/list
  printf '%s\\n' "$zlh_dns_zones" | grep -qxF "$1"
}}
"""


def _unit() -> str:
    return f"""\
# Generated by zlh-infra.
[Unit]
Description=Technitium DNS Server
After=network-online.target
Wants=network-online.target

[Service]
User=technitium
Group=technitium
Environment=HOME={STATE} DOTNET_ROOT={DOTNET} DOTNET_CLI_TELEMETRY_OPTOUT=1
WorkingDirectory={HOME}
ExecStart={DOTNET}/dotnet {HOME}/DnsServerApp.dll {STATE}
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=full
PrivateTmp=yes
KillSignal=SIGINT
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


def plan(
    *,
    guest: str,
    technitium: Vendored,
    dotnet: Vendored,
    admin_password: str,
    core_zone_name: str,
    core_guests: Mapping[str, IPv4Address],
    zones: Sequence[Zone] = (),
    forwarders: Sequence[str] = (),
) -> ServicePlan:
    """Technitium on ``guest``; ``admin_password`` is a secret (``PASSWORD_FILE``, 0600).

    The core zone ``core_zone_name`` gets an A record per core guest (``core_guests``,
    name to LAN address); ``zones`` are the others, with their records.
    """
    password = generated_secret("Technitium admin password", admin_password)
    all_zones = [core_zone(core_zone_name, core_guests), *zones]
    calls = sync_calls(all_zones, forwarders=forwarders, server_domain=f"{guest}.{core_zone_name}")
    session = login_calls()
    change = session["change-password"]
    failed = (
        f"zlh: technitium on {guest}: neither the configured admin password"
        " nor the first-run default logs in"
    )
    wait = (
        "zlh_wait=0\n"
        f"until curl -fs -o /dev/null {API}/; do\n"
        "  zlh_wait=$((zlh_wait + 1))\n"
        '  if [ "$zlh_wait" -ge 90 ]; then echo '
        f"'zlh: technitium does not answer on {API}' >&2; exit 1; fi\n"
        "  sleep 1\n"
        "done\n"
    )
    sync = []
    for call in calls:
        if isinstance(call, Prune):
            sync.append(render_prune(call))
            continue
        sync.append(render(call))
        if call.endpoint == "/api/zones/list":
            sync.append("zlh_dns_zones=$(jq -r '.response.zones[].name' \"$zlh_dns_out\")")
    converge = (
        unpack(dotnet, DOTNET)
        + unpack(technitium, HOME)
        + "systemctl daemon-reload\n"
        + f"systemctl enable --quiet {UNIT}\n"
        + f'if [ "$ZLH_CHANGED" = 1 ]; then systemctl restart {UNIT}; '
        + f"else systemctl start {UNIT}; fi\n"
        + wait
        + _functions()
        + "if ! zlh_dns_login; then\n"
        + f"  zlh_dns_call {session['default-login'].endpoint} {_args(session['default-login'])}\n"
        + f"  zlh_dns_session || {{ echo {shlex.quote(failed)} >&2; exit 1; }}\n"
        + f"  {render(change)}\n"
        + "  zlh_dns_login\n"
        + "fi\n"
        + "\n".join(sync)
        + "\n"
    )
    core = shlex.quote(core_zone_name)
    health = (
        "zlh_dns_login && zlh_dns_api /api/zones/list"
        f" && jq -e --arg zone {core} 'any(.response.zones[]; .name == $zone)' \"$zlh_dns_out\""
    )
    return ServicePlan(
        service="technitium",
        guest=guest,
        packages=PACKAGES,
        accounts=("technitium",),
        directories=(
            GuestFile(STATE, "", mode=0o750, owner="technitium", group="technitium"),
            GuestFile("/etc/technitium", "", mode=0o700),
        ),
        files=(
            GuestFile(PASSWORD_FILE, password, mode=0o600),
            GuestFile(UNIT_PATH, _unit()),
        ),
        converge=converge,
        health=health,
        health_timeout=60,
        journal_units=(UNIT,),
    )
