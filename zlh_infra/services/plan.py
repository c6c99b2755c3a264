"""What a service needs on its guest, and the two shell scripts that converge the guest to it.

A service module returns a ``ServicePlan``: the Debian packages to install, the files to
write (content, path, mode, owner), the commands that converge the guest, and a health
check. This module renders a plan into the scripts the program runs inside the guest:

- ``install_script``: waits (bounded) until the package mirrors answer through the
  guest's router, then ``apt-get update`` and ``apt-get install``. Holds no secret.
- ``configure_script``: writes every file only where its content, mode or owner differ,
  runs the converging commands, restarts the units when a file they read changed, and
  ends with the health check; a failing check prints the service's name and the tail of
  its journal and exits non-zero, which fails ``pulumi up``.

Both scripts travel on stdin (``sh -eu`` inside the guest), never on a command line, and
print nothing of what the files hold: file contents are embedded base64-encoded and
decoded by shell builtins into ``base64 -d``'s stdin. Running either script twice leaves
the guest as running it once.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Exit code of a step that could not fetch something only its vendor ships (EX_UNAVAILABLE).
EXIT_UNAVAILABLE = 69

_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_UNIT = re.compile(r"^[A-Za-z0-9@._-]+\.(service|timer|socket|path)$")
_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class PlanError(ValueError):
    """A plan that cannot be rendered safely (a bad path, package, unit or account name)."""


@dataclass(frozen=True, slots=True)
class GuestFile:
    """A file the service needs, owned and moded as given (0600 for anything secret)."""

    path: str
    content: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """One service on one guest, as pure data.

    ``converge`` runs after the files are written, with ``ZLH_CHANGED`` set to 1 when
    any of them changed; it must be idempotent on its own (``IF NOT EXISTS``, checks
    before changes). ``health`` is a shell condition, retried once a second for up to
    ``health_timeout`` seconds.
    """

    service: str
    guest: str
    packages: tuple[str, ...] = ()
    #: System accounts to create (no login, no home) before the files are written.
    accounts: tuple[str, ...] = ()
    directories: tuple[GuestFile, ...] = ()
    files: tuple[GuestFile, ...] = ()
    converge: str = ""
    #: Units enabled and started; restarted when a file of the plan changed.
    units: tuple[str, ...] = ()
    health: str = "true"
    health_timeout: int = 60
    #: Units whose journal tail explains a failed health check (default: ``units``).
    journal_units: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for package in self.packages:
            if not _PACKAGE.match(package):
                raise PlanError(f"{self.service}: {package!r} is not a Debian package name")
        for unit in (*self.units, *self.journal_units):
            if not _UNIT.match(unit):
                raise PlanError(f"{self.service}: {unit!r} is not a systemd unit name")
        for account in self.accounts:
            if not _ACCOUNT.match(account):
                raise PlanError(f"{self.service}: {account!r} is not an account name")
        for item in (*self.directories, *self.files):
            if not _PATH.match(item.path) or "/../" in f"{item.path}/":
                raise PlanError(f"{self.service}: {item.path!r} is not an absolute, plain path")
            for who in (item.owner, item.group):
                if not _ACCOUNT.match(who):
                    raise PlanError(f"{self.service}: {who!r} is not an account name")
            if not 0 <= item.mode <= 0o7777:
                raise PlanError(f"{self.service}: mode {item.mode:o} of {item.path}")


@dataclass(frozen=True, slots=True)
class Gateway:
    """The router a guest reaches its package mirrors through, named in a failure."""

    address: str
    router: str
    #: Where an operator reads how to bring the router up.
    runbook: str = "docs/runbook.md#stage-1-routers"


#: How long a guest waits for its package mirrors: 24 tries, 5 s apart.
MIRROR_TRIES = 24
MIRROR_DELAY = 5


def wait_for_mirrors(guest: str, gateway: Gateway) -> str:
    """Retry ``apt-get update`` (bounded); fail naming the router and the runbook step."""
    seconds = MIRROR_TRIES * MIRROR_DELAY
    message = (
        f"zlh: {guest} cannot reach its package mirrors through {gateway.router} "
        f"({gateway.address}) after {seconds} s; bring the router up first ({gateway.runbook})"
    )
    return f"""\
export DEBIAN_FRONTEND=noninteractive
zlh_try=1
until apt-get update -q >/var/log/zlh-apt-update.log 2>&1; do
  if [ "$zlh_try" -ge {MIRROR_TRIES} ]; then
    echo {shlex.quote(message)} >&2
    tail -n 5 /var/log/zlh-apt-update.log >&2
    exit 1
  fi
  zlh_try=$((zlh_try + 1))
  sleep {MIRROR_DELAY}
done
"""


def install_script(plans: Sequence[ServicePlan], gateway: Gateway) -> str:
    """Install the plans' packages (nothing to do, and no network needed, without any)."""
    packages = sorted({package for plan in plans for package in plan.packages})
    if not packages:
        return "true\n"
    return (
        "set -eu\n"
        + wait_for_mirrors(plans[0].guest, gateway)
        + f"apt-get install -y -q --no-install-recommends {' '.join(packages)} >/dev/null\n"
    )


_PUT = """\
zlh_put() { # path mode owner group base64-content
  mkdir -p "$(dirname "$1")"
  zlh_tmp=$(mktemp "$1.zlh.XXXXXX")
  printf '%s' "$5" | base64 -d >"$zlh_tmp"
  chown "$3:$4" "$zlh_tmp"
  chmod "$2" "$zlh_tmp"
  if [ -f "$1" ] && cmp -s "$zlh_tmp" "$1" \\
      && [ "$(stat -c '%a %U %G' "$1")" = "$(stat -c '%a %U %G' "$zlh_tmp")" ]; then
    rm -f "$zlh_tmp"
  else
    mv -f "$zlh_tmp" "$1"
    ZLH_CHANGED=1
  fi
}
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def sha256_matches(sha256: str, path: str) -> str:
    """A shell condition: the file at ``path`` (expanded in double quotes) has ``sha256``."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise PlanError(f"{sha256!r} is not a SHA-256 hex digest")
    return f"printf '%s  %s\\n' {sha256} \"{path}\" | sha256sum -c --quiet - >/dev/null 2>&1"


def download(url: str, path: str, what: str) -> str:
    """Shell fetching ``url`` to ``path``, exiting ``EXIT_UNAVAILABLE`` (naming ``what``) if not."""
    if re.search(r"[\x00-\x1f\x7f]", url):
        raise PlanError(f"{what}: control characters in its URL")
    message = shlex.quote(f"zlh: {what} could not be fetched from {url}")
    return (
        f'if ! curl -fsSL --retry 3 -o "{path}" {shlex.quote(url)}; then\n'
        f'  echo {message} >&2; rm -f "{path}"; exit {EXIT_UNAVAILABLE}\n'
        "fi\n"
    )


def feed(text: str, command: str) -> str:
    """A shell line giving ``text`` to ``command`` on stdin, never as an argument.

    ``printf`` is a shell builtin, so the encoded text is in no process's argv.
    """
    return f"printf '%s' '{_b64(text)}' | base64 -d | {command}"


def _health(plan: ServicePlan) -> str:
    units = plan.journal_units or plan.units
    journal = "".join(
        f"  journalctl -u {unit} -n 40 --no-pager -o cat >&2 || true\n" for unit in units
    )
    message = f"zlh: {plan.service} on {plan.guest} failed its health check"
    return f"""\
zlh_healthy() {{
{plan.health}
}}
zlh_try=1
until zlh_healthy >/dev/null 2>&1; do
  if [ "$zlh_try" -ge {plan.health_timeout} ]; then
    echo {shlex.quote(f"{message} after {plan.health_timeout} s; journal tail:")} >&2
{journal}    exit 1
  fi
  zlh_try=$((zlh_try + 1))
  sleep 1
done
"""


def _section(plan: ServicePlan) -> str:
    lines = [f"# --- {plan.service}", "ZLH_CHANGED=0"]
    for account in plan.accounts:
        lines.append(
            f"id -u {account} >/dev/null 2>&1 || useradd --system --no-create-home "
            f"--home-dir /nonexistent --shell /usr/sbin/nologin {account}"
        )
    for directory in plan.directories:
        path = shlex.quote(directory.path)
        lines.append(
            f"install -d -m {directory.mode:04o} -o {directory.owner} -g {directory.group} {path}"
        )
    for item in plan.files:
        lines.append(
            f"zlh_put {shlex.quote(item.path)} {item.mode:04o} {item.owner} {item.group} "
            f"{_b64(item.content)}"
        )
    if plan.converge:
        lines.append(plan.converge.rstrip("\n"))
    if plan.units:
        units = " ".join(plan.units)
        lines.append("systemctl daemon-reload")
        lines.append(f"systemctl enable --quiet {units}")
        lines.append(
            f'if [ "$ZLH_CHANGED" = 1 ]; then systemctl restart {units}; '
            f"else systemctl start {units}; fi"
        )
    return "\n".join(lines) + "\n" + _health(plan)


def configure_script(plans: Sequence[ServicePlan]) -> str:
    """Each plan in turn: files, converging commands, (re)started units, its health check.

    ``ZLH_CHANGED`` (exported, so converging commands may read it) is reset per plan.
    """
    return "set -eu\nexport ZLH_CHANGED\n" + _PUT + "".join(_section(plan) for plan in plans)
