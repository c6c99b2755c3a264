"""Proxmox Backup Server on zlh-back: one datastore, one namespace and user per host.

PBS comes from Proxmox's APT repository (``vendor.AptRepository``: suite ``bookworm``,
component ``pbs-no-subscription``, the release key as given), package
``proxmox-backup-server``.

- The datastore ``<store>`` lives in ``/srv/data/<store>`` (the data disk).
- Each host that backs up (a Proxmox VE node) has its namespace ``<store>/<ns>`` and its
  user ``<name>@pbs`` with the ACL ``DatastorePowerUser`` on ``/datastore/<store>/<ns>``:
  the least of the built-in roles that can both back up and prune, and only backup
  groups the user owns (``Datastore.Backup`` + ``Datastore.Prune``; ``DatastoreBackup``
  cannot prune, which the hosts' backup jobs do after each run). Nothing is granted on
  the datastore itself, so no host sees, restores or prunes another host's backups.
- A prune job (the retention, whole datastore) and the garbage collection schedule keep
  the store bounded even when a host does not prune; a verify job re-verifies snapshots
  older than ``verify_outdated_after`` days.

Passwords never reach an argv: the documented ``user create --password`` takes it as an
argument (the docs leave "how to set password without passing plaintext password as cli
argument" as a to-do), so ``zlh-pbs-users`` sets it through the API on 127.0.0.1:8007
instead, curl reading it from stdin (``--data-urlencode password@-``), fed by the shell
builtin ``printf``. It authenticates with an API token of ``root@pam``
(``user generate-token``, its secret kept in a 0600 file) that exists only while it
runs: deleted first, regenerated, deleted on exit. A user whose password already logs in
(``/access/ticket``) is left alone. The token's ACL (``Admin`` on ``/access/users``,
``DatastoreAdmin`` on the datastore, to create namespaces) stays in ``acl.cfg``, naming a
token that no longer exists between runs.

``fingerprint_command`` prints the certificate; ``fingerprint_from`` reads its SHA-256
fingerprint (``aa:bb:...``), which the hosts' PBS storage pins.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from zlh_infra.services.plan import GuestFile, ServicePlan, feed
from zlh_infra.services.values import generated_secret
from zlh_infra.services.vendor import AptRepository, apt_install

MANAGER = "proxmox-backup-manager"
PACKAGE = "proxmox-backup-server"
DATA_ROOT = "/srv/data"
API = "https://127.0.0.1:8007"
CA = "/etc/proxmox-backup/proxy.pem"
ACL_FILE = "/etc/proxmox-backup/acl.cfg"
USERS_SCRIPT = "/usr/local/sbin/zlh-pbs-users"
HOST_ROLE = "DatastorePowerUser"
#: The short-lived API token of root@pam that sets passwords and creates namespaces.
TOKEN_NAME = "zlh-converge"
UNITS = ("proxmox-backup.service", "proxmox-backup-proxy.service")
#: The secret of ``user generate-token``'s answer (``Result: {...}``), as documented.
TOKEN_VALUE = "sed '1s/^Result: //' | jq -er '.value'"

_STORE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{2,31}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")
_USERID = re.compile(r"[A-Za-z0-9._-]{1,64}@pbs")
_JOB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{2,31}")
_SCHEDULE = re.compile(r"[A-Za-z0-9*:/,.~ -]{1,64}")
_FINGERPRINT = re.compile(r"^Fingerprint \(sha256\): ((?:[0-9a-f]{2}:){31}[0-9a-f]{2})$", re.M)


@dataclass(frozen=True, slots=True)
class BackupUser:
    """A host's PBS user (``zlh-core@pbs``), its namespace and its password (a secret)."""

    userid: str
    namespace: str
    password: str


@dataclass(frozen=True, slots=True)
class Retention:
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 3
    keep_last: int | None = None
    keep_yearly: int | None = None

    def options(self) -> tuple[tuple[str, str], ...]:
        keep = {
            "keep-last": self.keep_last,
            "keep-daily": self.keep_daily,
            "keep-weekly": self.keep_weekly,
            "keep-monthly": self.keep_monthly,
            "keep-yearly": self.keep_yearly,
        }
        found = tuple((name, str(n)) for name, n in keep.items() if n is not None)
        if any(int(n) < 0 for _, n in found) or all(n == "0" for _, n in found):
            raise ValueError("retention: counts must be >= 0, and not all 0")
        return found


@dataclass(frozen=True, slots=True)
class Command:
    """One ``proxmox-backup-manager`` invocation: subcommand and arguments, then options."""

    args: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()

    def render(self) -> str:
        parts = [MANAGER, *map(shlex.quote, self.args)]
        for name, value in self.options:
            parts += [f"--{name}", shlex.quote(value)]
        return " ".join(parts)


def _check(what: str, pattern: re.Pattern[str], value: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{what} {value!r}")
    return value


def acl_path(store: str, namespace: str) -> str:
    return f"/datastore/{store}/{namespace}"


def acl_entries(store: str, users: Sequence[BackupUser]) -> list[str]:
    """The ``acl.cfg`` lines the users' grants leave (propagate, path, auth id, role)."""
    return [f"acl:1:{acl_path(store, u.namespace)}:{u.userid}:{HOST_ROLE}" for u in users]


def datastore_commands(store: str, gc_schedule: str) -> tuple[Command, Command, Command]:
    """Show (does it exist?), create, and update (the GC schedule) the datastore."""
    _check("datastore", _STORE, store)
    _check("GC schedule", _SCHEDULE, gc_schedule)
    return (
        Command(("datastore", "show", store)),
        Command(("datastore", "create", store, f"{DATA_ROOT}/{store}")),
        Command(("datastore", "update", store), (("gc-schedule", gc_schedule),)),
    )


def job_commands(
    *,
    store: str,
    retention: Retention,
    prune_schedule: str,
    verify_schedule: str,
    verify_outdated_after: int,
) -> list[tuple[Command, Command]]:
    """(update, create) of the prune job and the verify job: update, or create if missing."""
    _check("prune schedule", _SCHEDULE, prune_schedule)
    _check("verify schedule", _SCHEDULE, verify_schedule)
    if verify_outdated_after < 1:
        raise ValueError("verify: re-verify after at least 1 day")
    prune = (("store", store), ("schedule", prune_schedule), *retention.options())
    verify = (
        ("store", store),
        ("schedule", verify_schedule),
        ("ignore-verified", "true"),
        ("outdated-after", str(verify_outdated_after)),
    )
    jobs = []
    for kind, options in (("prune-job", prune), ("verify-job", verify)):
        job = _check("job id", _JOB_ID, f"zlh-{store}")
        jobs.append(
            (Command((kind, "update", job), options), Command((kind, "create", job), options))
        )
    return jobs


def user_commands(store: str, token: str = TOKEN_NAME) -> dict[str, Command]:
    """The manager commands ``zlh-pbs-users`` runs (``$user``, ``$ns`` its shell variables)."""
    token_id = f"root@pam!{token}"
    comment = (("comment", "ZeroLagHub host backups"),)
    return {
        "delete-token": Command(("user", "delete-token", "root@pam", token)),
        "generate-token": Command(("user", "generate-token", "root@pam", token)),
        "token-users": Command(
            ("acl", "update", "/access/users", "Admin"), (("auth-id", token_id),)
        ),
        "token-store": Command(
            ("acl", "update", f"/datastore/{store}", "DatastoreAdmin"), (("auth-id", token_id),)
        ),
        "update-user": Command(("user", "update", "$user"), comment),
        "create-user": Command(("user", "create", "$user"), comment),
        "grant": Command(
            ("acl", "update", f"/datastore/{store}/$ns", HOST_ROLE), (("auth-id", "$user"),)
        ),
    }


def _shell(command: Command) -> str:
    """A command of the users script: ``$user`` and ``$ns`` stay shell expansions."""
    text = re.sub(r"'([^'\"]*\$(?:user|ns)[^'\"]*)'", r'"\1"', command.render())
    return text + " </dev/null"


def users_script(store: str) -> str:
    """zlh-pbs-users: each host's namespace, user, password and grant (stdin lines)."""
    _check("datastore", _STORE, store)
    c = {name: _shell(command) for name, command in user_commands(store).items()}
    return f"""\
#!/bin/sh
# zlh-pbs-users <"USERID NAMESPACE PASSWORD" lines (generated by zlh-infra)
# Per line: the namespace {store}/NAMESPACE, the user, its password (through the API, read
# from stdin: never an argument) and {HOST_ROLE} on that namespace only.
set -eu
auth=$(mktemp)
cleanup() {{
  rm -f "$auth"
  {c["delete-token"]} >/dev/null 2>&1 || true
}}
trap cleanup EXIT
{c["delete-token"]} >/dev/null 2>&1 || true
secret=$({c["generate-token"]} | {TOKEN_VALUE})
printf 'Authorization: PBSAPIToken=root@pam!{TOKEN_NAME}:%s\\n' "$secret" >"$auth"
{c["token-users"]} >/dev/null
{c["token-store"]} >/dev/null
api() {{ curl -fsS --cacert {CA} -H @"$auth" "$@"; }}
namespaces=$(api {API}/api2/json/admin/datastore/{store}/namespace </dev/null | jq -r '.data[].ns')
while read -r user ns password; do
  case "$user" in *[!A-Za-z0-9@._-]*|'') echo "zlh-pbs-users: bad user id" >&2; exit 2 ;; esac
  case "$ns" in *[!A-Za-z0-9._-]*|'') echo "zlh-pbs-users: bad namespace" >&2; exit 2 ;; esac
  if ! printf '%s\\n' "$namespaces" | grep -qxF "$ns"; then
    api -o /dev/null -X POST --data-urlencode "name=$ns" \\
      {API}/api2/json/admin/datastore/{store}/namespace </dev/null
  fi
  if ! {c["update-user"]} >/dev/null 2>&1; then
    {c["create-user"]} >/dev/null
  fi
  if ! printf '%s' "$password" | curl -fsS -o /dev/null --cacert {CA} \\
      --data-urlencode "username=$user" --data-urlencode 'password@-' \\
      {API}/api2/json/access/ticket; then
    printf '%s' "$password" | api -o /dev/null -X PUT --data-urlencode 'password@-' \\
      "{API}/api2/json/access/users/$user"
  fi
  {c["grant"]} >/dev/null
done
"""


def fingerprint_command() -> str:
    """Prints the certificate information, whose ``Fingerprint (sha256):`` line the hosts pin."""
    return Command(("cert", "info")).render()


def fingerprint_from(cert_info_output: str) -> str:
    """The SHA-256 fingerprint (``aa:bb:...``, 32 pairs) in ``cert info``'s output."""
    found = _FINGERPRINT.findall(cert_info_output)
    if len(found) != 1:
        raise ValueError("no single 'Fingerprint (sha256): ...' line in the cert info output")
    return str(found[0])


def plan(
    *,
    guest: str,
    repository: AptRepository,
    store: str,
    users: Sequence[BackupUser],
    retention: Retention,
    version: str | None = None,
    gc_schedule: str = "sat 03:30",
    prune_schedule: str = "daily",
    verify_schedule: str = "sun 05:00",
    verify_outdated_after: int = 30,
) -> ServicePlan:
    """PBS on ``guest``; each user's password is a secret (fed on stdin, never written)."""
    lines = []
    seen: set[str] = set()
    for user in users:
        _check("PBS user", _USERID, user.userid)
        _check("namespace", _NAMESPACE, user.namespace)
        if user.userid in seen or user.namespace in {u.namespace for u in users if u != user}:
            raise ValueError(f"PBS user {user.userid}: each user has a namespace of its own")
        seen.add(user.userid)
        password = generated_secret(f"password of {user.userid}", user.password)
        lines.append(f"{user.userid} {user.namespace} {password}\n")
    show, create, update = datastore_commands(store, gc_schedule)
    jobs = job_commands(
        store=store,
        retention=retention,
        prune_schedule=prune_schedule,
        verify_schedule=verify_schedule,
        verify_outdated_after=verify_outdated_after,
    )
    ui = f"curl -fsS -o /dev/null --cacert {CA} {API}/"
    converge = (
        apt_install(repository, {PACKAGE: version})
        + f"systemctl enable --quiet {' '.join(UNITS)}\n"
        + f"systemctl start {' '.join(UNITS)}\n"
        + "zlh_wait=0\n"
        + f"until {ui} 2>/dev/null; do\n"
        + "  zlh_wait=$((zlh_wait + 1))\n"
        + '  if [ "$zlh_wait" -ge 60 ]; then echo '
        + f"'zlh: Proxmox Backup Server does not answer on {API}' >&2; exit 1; fi\n"
        + "  sleep 1\n"
        + "done\n"
        + f"{show.render()} >/dev/null 2>&1 || {create.render()} >/dev/null\n"
        + f"{update.render()}\n"
        + "".join(f"{u.render()} 2>/dev/null || {c.render()}\n" for u, c in jobs)
        + (feed("".join(lines), f"{USERS_SCRIPT} >/dev/null") + "\n" if lines else "")
    )
    granted = "".join(
        f" && grep -qxF {shlex.quote(line)} {ACL_FILE}" for line in acl_entries(store, users)
    )
    return ServicePlan(
        service="proxmox-backup-server",
        guest=guest,
        packages=("curl", "ca-certificates", "jq"),
        files=(*repository.files(), GuestFile(USERS_SCRIPT, users_script(store), mode=0o700)),
        converge=converge,
        health=f"{ui} && {show.render()} >/dev/null{granted}",
        journal_units=UNITS,
    )
