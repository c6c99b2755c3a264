"""``lab check``: what is checked, how results are judged, and how they are shown (pure).

Checks run commands in guests through an ``Executor`` (the real one enters containers
with lxc-attach; tests pass a fake), so everything here is free of subprocess. A
result is passed (``ok: true``), failed (``ok: false``), or not checked (``ok: null``)
when a vendor artifact it needs is missing: not checked is never counted as passed.

Service health checks are ``HealthCheck`` (guest VMID, name, shell command), read from
the recorded configure steps (``health_from_steps``); ``SERVICE_HEALTH`` holds any check
the lab adds of its own (none now). See docs/lab.md.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import shlex
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from zlh_infra.platform.catalogue import EDGE_SERVICES, RUNTIME_SERVICES
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole
from zlh_infra.tooling.lab.plan import DEFERRED, LabGuest, LabPlan, redact

AGENT_PORT = 18888
API_PORT = 8080
MARIADB_PORT = 3306
PROMETHEUS_TARGETS = "http://127.0.0.1:9090/api/v1/targets"
API_ENV_FILE = "/etc/zpack-api/env"


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    guest: str
    vmid: int | None
    check: str
    #: True passed, False failed, None not checked (``detail`` says why).
    ok: bool | None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "guest": self.guest,
            "vmid": self.vmid,
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
        }


def verdict(ok: bool | None) -> str:
    return "PASS" if ok is True else "FAIL" if ok is False else "NOT CHECKED"


def counts(results: Sequence[CheckResult]) -> tuple[int, int, int]:
    """(passed, failed, not checked)."""
    passed = sum(1 for r in results if r.ok is True)
    failed = sum(1 for r in results if r.ok is False)
    return passed, failed, len(results) - passed - failed


def summary(results: Sequence[CheckResult]) -> str:
    passed, failed, unchecked = counts(results)
    return f"{len(results)} checks: {passed} passed, {failed} failed, {unchecked} not checked"


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 unless a check failed; a check not run is no failure (and no pass)."""
    return 1 if any(r.ok is False for r in results) else 0


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps({"checks": [r.to_json() for r in results]}, indent=2) + "\n"


def render_table(results: Sequence[CheckResult], *, width: int = 72) -> str:
    rows = [("GUEST", "VMID", "CHECK", "RESULT", "DETAIL")]
    for r in results:
        detail = " ".join(r.detail.split())
        if len(detail) > width:
            detail = detail[: width - 3] + "..."
        rows.append(
            (r.guest, "" if r.vmid is None else str(r.vmid), r.check, verdict(r.ok), detail)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n" + summary(results) + "\n"


# --- running commands in guests ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


class Executor(Protocol):
    def status(self, vmid: int) -> str | None:
        """``running``, ``stopped``, or None when the container does not exist."""

    def run(
        self, vmid: int, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60
    ) -> ExecResult:
        """Run ``argv`` inside the guest."""

    def run_node(
        self, node: str, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60
    ) -> ExecResult:
        """Run ``argv`` in the network namespace of node ``node``'s stand-in."""


@dataclass(slots=True)
class CheckContext:
    executor: Executor
    plan: LabPlan
    #: Releases (vendor artifacts) the lab has no file for.
    missing: set[str] = field(default_factory=set)
    #: Guests ``lab up`` held back (never made: something they need could not run).
    held: frozenset[int] = frozenset()

    def guest(self, hostname: str) -> LabGuest | None:
        return self.plan.guest_by_hostname(hostname)

    def redact(self, text: str) -> str:
        return redact(text, self.plan.secrets)

    def fleet(self, *roles: VmidRole) -> list[LabGuest]:
        """The game and dev containers the lab made (held-back ones are not checked)."""
        return [
            g
            for vmid, g in sorted(self.plan.guests.items())
            if DEFAULT_SCHEME.role_of(vmid) in roles and not g.is_stand_in and vmid not in self.held
        ]


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


# --- the guests themselves --------------------------------------------------------------


def guest_state_checks(ctx: CheckContext) -> list[CheckResult]:
    """Every container in the state the recording leaves it in; stand-ins said to be such."""
    results = []
    for vmid, guest in sorted(ctx.plan.guests.items()):
        state = ctx.executor.status(vmid)
        label = f"{guest.hostname} (stand-in)" if guest.is_stand_in else guest.hostname
        if guest.started:
            check = "running"
            ok = state == "running"
            detail = f"{state or 'missing'}"
            if guest.is_stand_in:
                detail += f"; router stand-in for {guest.stand_in_for}: NAT and dnsmasq"
        else:
            check = "stopped (base image)"
            ok = state == "stopped"
            detail = f"{state or 'missing'}; the recording keeps it stopped (started: false)"
        results.append(CheckResult(label, vmid, check, ok, detail))
    return results


def router_checks(ctx: CheckContext) -> list[CheckResult]:
    """Each router stand-in resolves through its dnsmasq and reaches the mirror over NAT."""
    results = []
    for vmid, guest in sorted(ctx.plan.guests.items()):
        if not guest.is_stand_in:
            continue
        label = f"{guest.hostname} (stand-in)"
        lan = next((n for n in guest.nics if n.address is not None and n.gateway is None), None)
        if ctx.executor.status(vmid) != "running" or lan is None or lan.address is None:
            results.append(CheckResult(label, vmid, "dns forwarding", False, "not running"))
            continue
        dig = ctx.executor.run(
            vmid, ["dig", "+short", "+time=3", "+tries=2", f"@{lan.address.ip}", "deb.debian.org"]
        )
        answers = [line for line in dig.stdout.split() if line and line[0].isdigit()]
        results.append(
            CheckResult(
                label,
                vmid,
                "dns forwarding",
                dig.returncode == 0 and bool(answers),
                f"dnsmasq at {lan.address.ip}: deb.debian.org -> {', '.join(answers) or 'nothing'}",
            )
        )
        egress = ctx.executor.run(vmid, ["python3", "-c", TCP_PROBE, "deb.debian.org", "80"])
        results.append(
            CheckResult(
                label,
                vmid,
                "egress to the mirror",
                egress.returncode == 0,
                egress.stdout.strip() or _tail(egress.stderr),
            )
        )
    return results


TCP_PROBE = """\
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=5) as s:
        print(f"connected to {host}:{port} ({s.getpeername()[0]})")
except OSError as error:
    print(f"cannot connect to {host}:{port}: {error}")
    sys.exit(1)
"""


# --- service health ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One service health check: a shell command run in a guest, passing on exit 0."""

    vmid: int
    name: str
    command: str
    #: Releases it needs; with one missing it is reported not checked.
    needs: tuple[str, ...] = ()
    #: URN of the configure step it ends (empty for the lab's own checks).
    step: str = ""


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """A registry entry: which guest (by hostname) runs which health snippet."""

    guest: str
    name: str
    command: str
    needs: tuple[str, ...] = ()


#: Lab checks of what no service plan checks yet (the plans' own health checks are read
#: from the recording: ``health_from_steps``). An entry names its guest by hostname.
SERVICE_HEALTH: tuple[ServiceHealth, ...] = ()


class ServicePlan(Protocol):
    """What the lab reads of a service plan (``zlh_infra.services.plan.ServicePlan``)."""

    @property
    def service(self) -> str: ...

    @property
    def guest(self) -> str: ...

    @property
    def health(self) -> str: ...


def health_checks_from_plans(
    plans: Iterable[ServicePlan], plan: LabPlan, *, releases: Iterable[str] = ()
) -> list[HealthCheck]:
    """Health checks from service plans (guest by hostname); a plan named like a release
    in ``releases`` needs that release."""
    vendor = set(releases)
    return health_checks(
        [
            ServiceHealth(p.guest, p.service, p.health, (p.service,) if p.service in vendor else ())
            for p in plans
        ],
        plan,
    )


def health_checks(registry: Iterable[ServiceHealth], plan: LabPlan) -> list[HealthCheck]:
    checks = []
    for entry in registry:
        guest = plan.guest_by_hostname(entry.guest)
        if guest is None and entry.guest.isdigit():
            guest = plan.guests.get(int(entry.guest))
        if guest is not None:
            checks.append(HealthCheck(guest.vmid, entry.name, entry.command, entry.needs))
    return checks


_PCT_EXEC = re.compile(r"^pct exec (\d+) -- ")
_SECTION = re.compile(r"^# --- (\S+)$")
_HEALTH_OPEN = "zlh_healthy() {"


def health_from_steps(plan: LabPlan, *, releases: Iterable[str] = ()) -> list[HealthCheck]:
    """The service plans' health checks, as the recorded configure steps run them.

    A configure step (``pct exec <vmid> -- sh -eu`` with the script on stdin) holds, per
    service, a ``# --- <service>`` line and its check as ``zlh_healthy() { ... }``
    (``zlh_infra.services.plan.configure_script``). Reading them from the recording
    gives the checks with the deployed values, secrets included, and nothing to keep
    in step. A service named like a release in ``releases`` needs that release.
    """
    vendor = set(releases)
    found: dict[tuple[int, str], HealthCheck] = {}
    for step in plan.steps.values():
        match = _PCT_EXEC.match(step.create)
        if match is None or not step.stdin or _HEALTH_OPEN not in step.stdin:
            continue
        vmid = int(match.group(1))
        service = step.name
        body: list[str] | None = None
        for line in step.stdin.splitlines():
            if body is not None:
                if line == "}":
                    command = "\n".join(body)
                    needs = (service,) if service in vendor else ()
                    found[(vmid, service)] = HealthCheck(vmid, service, command, needs, step.urn)
                    body = None
                else:
                    body.append(line)
                continue
            section = _SECTION.match(line)
            if section:
                service = section.group(1)
            elif line == _HEALTH_OPEN:
                body = []
    return [found[key] for key in sorted(found)]


def run_health_checks(ctx: CheckContext, checks: Sequence[HealthCheck]) -> list[CheckResult]:
    results = []
    for check in checks:
        guest = ctx.plan.guests.get(check.vmid)
        label = guest.hostname if guest else str(check.vmid)
        missing = sorted(set(check.needs) & ctx.missing)
        if missing:
            results.append(CheckResult(label, check.vmid, check.name, None, _not_checked(missing)))
            continue
        if ctx.executor.status(check.vmid) != "running":
            results.append(CheckResult(label, check.vmid, check.name, False, "guest not running"))
            continue
        done = ctx.executor.run(check.vmid, ["sh", "-c", check.command], timeout=60)
        detail = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        output = _tail(done.stderr or done.stdout)
        if done.returncode != 0 and output:
            detail += f": {output}"
        results.append(
            CheckResult(label, check.vmid, check.name, done.returncode == 0, ctx.redact(detail))
        )
    return results


def _not_checked(missing: Sequence[str]) -> str:
    return f"not checked: vendor artifact {', '.join(missing)} missing from the lab releases"


# --- cross-guest checks -----------------------------------------------------------------


def parse_env(text: str) -> dict[str, str]:
    """An env file (``KEY=value``, optional ``export``, shell quoting) as a mapping."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        try:
            parts = shlex.split(value, comments=True)
        except ValueError:
            parts = [value]
        values[key.strip()] = " ".join(parts)
    return values


@dataclass(frozen=True, slots=True)
class DatabaseLogin:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str = ""


_URL_KEYS = ("DATABASE_URL", "DB_URL", "MARIADB_URL", "MYSQL_URL")
_PREFIXES = ("DB_", "DATABASE_", "MARIADB_", "MYSQL_")


def database_login(env: Mapping[str, str]) -> DatabaseLogin | None:
    """The MariaDB login in zpack-api's env: a ``mysql://`` URL or ``DB_HOST``/``DB_USER``/..."""
    for key in _URL_KEYS:
        if env.get(key):
            url = urllib.parse.urlsplit(env[key])
            if url.hostname and url.username:
                return DatabaseLogin(
                    host=url.hostname,
                    port=url.port or MARIADB_PORT,
                    user=urllib.parse.unquote(url.username),
                    password=urllib.parse.unquote(url.password or ""),
                    database=url.path.lstrip("/"),
                )
    for prefix in _PREFIXES:

        def get(*names: str, prefix: str = prefix) -> str:
            return next((env[prefix + n] for n in names if env.get(prefix + n)), "")

        host, user = get("HOST"), get("USER", "USERNAME")
        if host and user:
            port = get("PORT")
            return DatabaseLogin(
                host=host,
                port=int(port) if port.isdigit() else MARIADB_PORT,
                user=user,
                password=get("PASSWORD", "PASS"),
                database=get("NAME", "DATABASE"),
            )
    return None


_OK_WORDS = frozenset({"ok", "up", "healthy", "pass", "passed", "true"})
_DB_KEYS = ("db", "database", "mariadb", "mysql")
_REDIS_KEYS = ("redis", "cache")


def _healthy(value: Any) -> bool:
    if value is True:
        return True
    if isinstance(value, str):
        return value.lower() in _OK_WORDS
    if isinstance(value, dict):
        return value.get("ok") is True or _healthy(value.get("status"))
    return False


def component_ok(body: Any, keys: Sequence[str]) -> bool | None:
    """Whether a /healthz body reports the component (any of ``keys``) ok; None if absent."""
    if not isinstance(body, dict):
        return None
    places = [body] + [
        body[k] for k in ("checks", "components", "services") if isinstance(body.get(k), dict)
    ]
    for place in places:
        for key in keys:
            if key in place:
                return _healthy(place[key])
    return None


HTTP_GET = """\
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as reply:
        print(reply.status)
        sys.stdout.write(reply.read(65536).decode("utf-8", "replace"))
except urllib.error.HTTPError as error:
    print(error.code)
    sys.stdout.write(error.read(65536).decode("utf-8", "replace"))
except OSError as error:
    print(0)
    print(error)
"""


def api_reaches_db_and_redis(ctx: CheckContext) -> list[CheckResult]:
    """zpack-api's /healthz reports MariaDB and Redis ok (it uses its env file's logins)."""
    api = ctx.guest("zpack-api")
    if api is None:
        return []
    check = "reaches zlh-db and zlh-redis"
    if "zpack-api" in ctx.missing:
        return [CheckResult(api.hostname, api.vmid, check, None, _not_checked(["zpack-api"]))]
    if ctx.executor.status(api.vmid) != "running":
        return [CheckResult(api.hostname, api.vmid, check, False, "zpack-api is not running")]
    env = ctx.executor.run(api.vmid, ["cat", API_ENV_FILE])
    if env.returncode != 0:
        return [CheckResult(api.hostname, api.vmid, check, False, f"no {API_ENV_FILE}")]
    lan = api.nics[0].address.ip if api.nics and api.nics[0].address else "127.0.0.1"
    url = f"http://{lan}:{API_PORT}/healthz"
    reply = ctx.executor.run(api.vmid, ["python3", "-c", HTTP_GET, url], timeout=30)
    status, _, text = reply.stdout.partition("\n")
    if status.strip() == "0" or not status.strip().isdigit():
        detail = f"GET {url}: {text.strip() or _tail(reply.stderr)}"
        return [CheckResult(api.hostname, api.vmid, check, False, ctx.redact(detail))]
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    db, redis = component_ok(body, _DB_KEYS), component_ok(body, _REDIS_KEYS)
    ok = status.strip() == "200" and db is True and redis is True
    detail = f"GET {url}: {status.strip()}, db {_word(db)}, redis {_word(redis)}"
    if not ok:
        detail += f"; body {text.strip()[:200]}"
    return [CheckResult(api.hostname, api.vmid, check, ok, ctx.redact(detail))]


def _word(value: bool | None) -> str:
    return "ok" if value is True else "not ok" if value is False else "not reported"


MYSQL_PROBE = r"""
import hashlib, json, socket, sys
login = json.load(sys.stdin)
def report(result, **fields):
    print(json.dumps(dict(result=result, **fields)))
    sys.exit(0)
def take(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the server closed the connection")
        data += chunk
    return data
def packet(sock):
    head = take(sock, 4)
    return head[3], take(sock, int.from_bytes(head[:3], "little"))
def error(body):
    text = body[3:]
    if text[:1] == b"#":
        text = text[6:]
    return int.from_bytes(body[1:3], "little"), text.decode("utf-8", "replace")
def token(password, salt):
    if not password:
        return b""
    one = hashlib.sha1(password.encode()).digest()
    three = hashlib.sha1(salt + hashlib.sha1(one).digest()).digest()
    return bytes(a ^ b for a, b in zip(one, three))
try:
    sock = socket.create_connection((login["host"], int(login["port"])), timeout=5)
except OSError as exc:
    report("unreachable", detail=str(exc))
try:
    sock.settimeout(10)
    seq, body = packet(sock)
    if body[:1] == b"\xff":
        code, text = error(body)
        report("refused", code=code, detail=text)
    if body[:1] != b"\x0a":
        report("error", detail="not a MariaDB handshake")
    pos = body.index(b"\0", 1) + 1 + 4
    salt = body[pos:pos + 8]
    pos += 8 + 1 + 2 + 1 + 2 + 2
    extra = max(13, body[pos] - 8)
    pos += 1 + 10
    salt = (salt + body[pos:pos + extra]).rstrip(b"\0")[:20]
    flags = 0x1 | 0x200 | 0x8000 | 0x80000
    reply = flags.to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + bytes([33]) + bytes(23)
    secret = token(login["password"], salt)
    reply += login["user"].encode() + b"\0" + bytes([len(secret)]) + secret
    reply += b"mysql_native_password\0"
    sock.sendall(len(reply).to_bytes(3, "little") + bytes([seq + 1]) + reply)
    seq, body = packet(sock)
    if body[:1] == b"\xfe" and len(body) > 1:
        end = body.index(b"\0", 1)
        plugin = body[1:end].decode()
        if plugin != "mysql_native_password":
            report("error", detail="the server asks for auth plugin " + plugin)
        secret = token(login["password"], body[end + 1:].rstrip(b"\0")[:20])
        sock.sendall(len(secret).to_bytes(3, "little") + bytes([seq + 1]) + secret)
        seq, body = packet(sock)
    if body[:1] == b"\x00":
        report("granted", detail="the server opened a session")
    if body[:1] == b"\xff":
        code, text = error(body)
        report("refused", code=code, detail=text)
    report("error", detail="unexpected reply to the login")
except (OSError, EOFError, ValueError, IndexError) as exc:
    report("error", detail=str(exc))
"""


def _listeners(ss_output: str) -> list[tuple[str, int]]:
    """(address, port) of each socket in ``ss -ltnH`` output."""
    found = []
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, port = fields[3].rpartition(":")
        if port.isdigit():
            found.append((address.strip("[]").split("%")[0], int(port)))
    return found


def game_refused_by_db(ctx: CheckContext) -> list[CheckResult]:
    """A game container gets no MariaDB session with zpack-api's login.

    The grant is for zpack-api's address only, so MariaDB must refuse the same user and
    password from anywhere else; a probe in the game container tries a real login.
    """
    games = ctx.fleet(VmidRole.GAME)
    api, db = ctx.guest("zpack-api"), ctx.guest("zlh-db")
    if not games or api is None or db is None:
        return []
    game = games[0]
    check = "no MariaDB session with zpack-api's login"
    if ctx.executor.status(game.vmid) != "running":
        return [CheckResult(game.hostname, game.vmid, check, False, "not running")]
    env = ctx.executor.run(api.vmid, ["cat", API_ENV_FILE])
    login = database_login(parse_env(env.stdout)) if env.returncode == 0 else None
    if login is None:
        detail = f"no MariaDB login in zpack-api's {API_ENV_FILE} to try"
        return [CheckResult(game.hostname, game.vmid, check, False, detail)]
    listening = ctx.executor.run(db.vmid, ["ss", "-ltnH"])
    if not any(port == login.port for _, port in _listeners(listening.stdout)):
        detail = f"MariaDB is not listening on zlh-db:{login.port}: nothing to be refused by"
        return [CheckResult(game.hostname, game.vmid, check, False, detail)]
    payload = json.dumps(
        {"host": login.host, "port": login.port, "user": login.user, "password": login.password}
    )
    probe = ctx.executor.run(game.vmid, ["python3", "-c", MYSQL_PROBE], stdin=payload, timeout=30)
    try:
        answer = json.loads(probe.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        answer = {"result": "error", "detail": _tail(probe.stderr) or "no answer from the probe"}
    result = str(answer.get("result"))
    detail = f"{result}: {answer.get('detail', '')}"
    if answer.get("code"):
        detail = f"{result} (error {answer['code']}): {answer.get('detail', '')}"
    ok = result in ("refused", "unreachable")
    return [CheckResult(game.hostname, game.vmid, check, ok, ctx.redact(detail))]


#: Scrape jobs whose targets are the Proxmox nodes themselves, which the lab has not.
NODE_JOBS = frozenset({"proxmox-nodes"})
#: How long the check waits for discovery and a first scrape (the discovery timer runs
#: every minute, Prometheus scrapes every 30 s).
TARGETS_WAIT = 150.0


@dataclass(frozen=True, slots=True)
class TargetsVerdict:
    """What a Prometheus targets answer says, job by job."""

    ok: bool | None
    detail: str
    #: Some target is not scraped yet: ask again later.
    pending: bool = False


def judge_targets(
    targets: Sequence[Mapping[str, Any]],
    fleet_vmids: Iterable[int],
    runtime_services: Iterable[str] = (),
) -> TargetsVerdict:
    """Every target up but the nodes', every fleet container and runtime service discovered."""
    relevant = [t for t in targets if t.get("labels", {}).get("job") not in NODE_JOBS]
    if not relevant:
        return TargetsVerdict(False, "no active targets")
    discovered = [t["labels"] for t in relevant if t.get("labels", {}).get("job") == "fleet"]
    found = {int(v["vmid"]) for v in discovered if str(v.get("vmid", "")).isdigit()}
    services = {str(v["service"]) for v in discovered if "service" in v}
    undiscovered = [
        *map(str, sorted(set(fleet_vmids) - found)),
        *sorted(set(runtime_services) - services),
    ]
    unknown = [t for t in relevant if t.get("health") == "unknown"]
    down = [t for t in relevant if t.get("health") not in ("up", "unknown")]
    if down:
        listed = "; ".join(
            f"{t.get('scrapeUrl')} {t.get('health')} {t.get('lastError', '')}".strip() for t in down
        )
        return TargetsVerdict(False, f"{len(down)} of {len(relevant)} down: {listed}")
    if undiscovered or unknown:
        missing = ", ".join(undiscovered) or "none"
        detail = f"not discovered: {missing}; {len(unknown)} target(s) not scraped yet"
        return TargetsVerdict(False, detail, pending=True)
    return TargetsVerdict(
        True,
        f"{len(relevant)} targets up; zlh-fleet-sd found a fleet of {len(found)} and "
        f"{len(services)} runtime-host services",
    )


def prometheus_targets_up(ctx: CheckContext) -> list[CheckResult]:
    monitor = ctx.guest("zlh-monitor")
    if monitor is None:
        return []
    check = "prometheus targets up"
    if ctx.executor.status(monitor.vmid) != "running":
        return [CheckResult(monitor.hostname, monitor.vmid, check, False, "not running")]
    fleet = [g.vmid for g in ctx.fleet(VmidRole.GAME, VmidRole.DEV)]
    runtime_services = [
        name
        for specs in (EDGE_SERVICES, RUNTIME_SERVICES)
        for name, spec in specs.items()
        if spec.management_index is not None and ctx.guest(name) is not None
    ]
    deadline = time.monotonic() + TARGETS_WAIT
    while True:
        done = ctx.executor.run(
            monitor.vmid, ["curl", "-fsS", "--max-time", "10", PROMETHEUS_TARGETS], timeout=30
        )
        if done.returncode != 0:
            detail = f"curl {PROMETHEUS_TARGETS}: exit {done.returncode} {_tail(done.stderr)}"
            return [CheckResult(monitor.hostname, monitor.vmid, check, False, detail)]
        try:
            targets = json.loads(done.stdout)["data"]["activeTargets"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return [
                CheckResult(monitor.hostname, monitor.vmid, check, False, "not a targets answer")
            ]
        verdict = judge_targets(targets, fleet, runtime_services)
        if not verdict.pending or time.monotonic() >= deadline:
            break
        time.sleep(5)
    results = [CheckResult(monitor.hostname, monitor.vmid, check, verdict.ok, verdict.detail)]
    nodes = sorted(
        str(t.get("labels", {}).get("instance"))
        for t in targets
        if t.get("labels", {}).get("job") in NODE_JOBS
    )
    if nodes:
        results.append(
            CheckResult(
                monitor.hostname,
                monitor.vmid,
                "prometheus scrapes the Proxmox nodes",
                None,
                f"not checked: the lab's node stand-ins run no exporter ({', '.join(nodes)} "
                "are scraped; on Proxmox theirs run on the hosts)",
            )
        )
    return results


def agent_on_management_only(ctx: CheckContext) -> list[CheckResult]:
    """zlh-agent listens on TCP 18888 in each fleet container, on its management address only."""
    results = []
    shared = {name for name, bridge in ctx.plan.bridges.items() if bridge.shared}
    for guest in ctx.fleet(VmidRole.GAME, VmidRole.DEV):
        check = f"zlh-agent on management NIC only (:{AGENT_PORT})"
        if "zlh-agent" in ctx.missing:
            results.append(
                CheckResult(guest.hostname, guest.vmid, check, None, _not_checked(["zlh-agent"]))
            )
            continue
        nic = next((n for n in guest.nics if n.bridge in shared and n.address), None)
        if nic is None or nic.address is None:
            results.append(
                CheckResult(guest.hostname, guest.vmid, check, False, "no management NIC")
            )
            continue
        if ctx.executor.status(guest.vmid) != "running":
            results.append(CheckResult(guest.hostname, guest.vmid, check, False, "not running"))
            continue
        done = ctx.executor.run(guest.vmid, ["ss", "-ltnH"])
        addresses = sorted({a for a, port in _listeners(done.stdout) if port == AGENT_PORT})
        wanted = str(nic.address.ip)
        ok = addresses == [wanted]
        if not addresses:
            detail = f"nothing listens on :{AGENT_PORT}"
        else:
            detail = f"listens on {', '.join(addresses)}; wanted {wanted} ({nic.name}) only"
        results.append(CheckResult(guest.hostname, guest.vmid, check, ok, detail))
    return results


CrossCheck = Callable[[CheckContext], list[CheckResult]]

CROSS_GUEST_CHECKS: tuple[CrossCheck, ...] = (
    api_reaches_db_and_redis,
    game_refused_by_db,
    prometheus_targets_up,
    agent_on_management_only,
)


def run_all(
    ctx: CheckContext,
    health: Sequence[HealthCheck],
    *,
    cross: Sequence[CrossCheck] = CROSS_GUEST_CHECKS,
    workers: int = 6,
) -> list[CheckResult]:
    """Every check, in a fixed order (the commands run concurrently)."""
    groups: list[Callable[[], list[CheckResult]]] = [
        lambda: guest_state_checks(ctx),
        lambda: router_checks(ctx),
        *[(lambda check=check: run_health_checks(ctx, [check])) for check in health],
        *[(lambda fn=fn: fn(ctx)) for fn in cross],
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(group) for group in groups]
        return [result for future in futures for result in future.result()]


def unavailable_results(
    plan: LabPlan,
    unavailable: Mapping[str, str],
    reasons: Mapping[str, str],
    waiting: Collection[str] = (),
) -> list[CheckResult]:
    """Each step that could not fetch its vendor artifact (exit 69): not checked, and why.

    ``unavailable`` maps a step's URN to the hash it had when it exited 69; a step changed
    since then is not reported (the next ``lab up`` runs it again). Steps deferred (inputs
    known only at deploy time) and ``waiting`` ones (held back behind those) are too.
    """
    results = []
    for step in plan.steps.values():
        if step.deferred:
            where = step.stack
            results.append(CheckResult(where, None, step.name, None, f"not checked: {DEFERRED}"))
            continue
        if unavailable.get(step.urn) != step.hash and step.urn not in waiting:
            continue
        target = re.match(r"pct exec (\d+) ", step.create)
        vmid = int(target.group(1)) if target else None
        guest = plan.guests.get(vmid) if vmid is not None else None
        reason = reasons.get(step.urn, "a vendor artifact is missing")
        where = guest.hostname if guest else step.stack
        results.append(CheckResult(where, vmid, step.name, None, f"not checked: {reason}"))
    return results


def held_back(results: Sequence[CheckResult], waiting: Mapping[str, str]) -> list[CheckResult]:
    """Checks of a guest ``lab up`` held back (``guest:<vmid>`` in ``waiting``): not checked.

    A guest waits when something it needs could not run (a clone whose template's vendor
    step was unavailable): its checks say so instead of failing.
    """
    out = []
    for result in results:
        why = waiting.get(f"guest:{result.vmid}") if result.vmid is not None else None
        if why is not None and result.ok is not True:
            out.append(replace(result, ok=None, detail=f"not checked: {why}"))
        else:
            out.append(result)
    return out


def not_run(
    checks: Sequence[HealthCheck], reasons: Mapping[str, str], plan: LabPlan
) -> tuple[list[HealthCheck], list[CheckResult]]:
    """Health checks to run, and those of steps that did not run (``reasons`` by URN)."""
    run, skipped = [], []
    for check in checks:
        why = reasons.get(check.step) if check.step else None
        if why is None:
            run.append(check)
            continue
        guest = plan.guests.get(check.vmid)
        label = guest.hostname if guest else str(check.vmid)
        skipped.append(CheckResult(label, check.vmid, check.name, None, f"not checked: {why}"))
    return run, skipped
