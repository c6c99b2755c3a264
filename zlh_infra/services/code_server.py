"""code-server and the dev VPN client in the dev template, and in each dev container.

``template_plan`` installs into the code-server template (the clone source of every dev
container), from zlh-artifacts, both pinned ``.deb`` artifacts with their Debian
dependencies (``apt-get install /path/file.deb``):

- code-server, run by ``code-server@coder.service`` (the package's unit) as the login
  user ``coder``;
- Tailscale, as the client of the platform's Headscale. An unprivileged container has no
  ``/dev/net/tun``, so ``tailscaled`` runs with ``--tun=userspace-networking``
  (``/etc/default/tailscaled``, which the package's unit reads): it proxies the tailnet
  connections it accepts to local ports, code-server's included.

Both units are enabled, neither runs in the template: a ``tailscaled`` that ran (the
package starts it) leaves its node key in ``/var/lib/tailscale``, and every clone would
then claim the template's identity, so the template's is stopped and that state removed.

``fleet_plan`` is one dev container: code-server's ``config.yaml`` and the VPN join.

Authentication: ``auth: password``, with a password per dev container from the program
(pulumi-random), in ``~coder/.config/code-server/config.yaml`` (0600, ``coder``). Not
``auth: none``: zlh-zpack-proxy publishes the IDE under a public host name and has no
authentication of its own, so without a password anyone who learns the name gets a
shell as ``coder``. The template holds no password: its clones' first start writes a
random one, which ``fleet_plan`` replaces.

The join is ``tailscale up --login-server <headscale> --auth-key=file:<path>``: the
pre-auth key (a secret, from Headscale's ``print_preauth_key``) is read from a 0600 file,
never passed in argv; an already joined container (``BackendState`` Running) is left as
it is.
"""

from __future__ import annotations

import re
import shlex
from urllib.parse import urlsplit

from zlh_infra.services.plan import GuestFile, ServicePlan
from zlh_infra.services.values import generated_secret
from zlh_infra.services.vendor import Vendored, install_deb, installed_debs

USER = "coder"
HOME = f"/home/{USER}"
CONFIG_DIR = f"{HOME}/.config/code-server"
CONFIG = f"{CONFIG_DIR}/config.yaml"
PORT = 8443
CODE_SERVER_UNIT = f"code-server@{USER}.service"
TAILSCALED_UNIT = "tailscaled.service"
TAILSCALED_DEFAULTS = "/etc/default/tailscaled"
TAILSCALE_STATE = "/var/lib/tailscale"
AUTH_KEY = "/etc/zlh/tailscale-authkey"

#: What the package's unit reads: the port it listens on and its flags.
TAILSCALED_FLAGS = 'PORT="41641"\nFLAGS="--tun=userspace-networking"\n'

_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_AUTH_KEY = re.compile(r"[A-Za-z0-9_-]{16,256}")


def template_plan(*, guest: str, code_server: Vendored, tailscale: Vendored) -> ServicePlan:
    """code-server and tailscaled installed and enabled in the template; neither running."""
    converge = (
        f"if ! id -u {USER} >/dev/null 2>&1; then\n"
        f"  useradd --create-home --shell /bin/bash {USER}\n"
        "  ZLH_CHANGED=1\n"
        "fi\n"
        + install_deb(code_server, "code-server")
        + install_deb(tailscale, "tailscale")
        + "systemctl daemon-reload\n"
        f"systemctl enable --quiet {TAILSCALED_UNIT} {CODE_SERVER_UNIT}\n"
        "# The template must hold no node identity: each clone registers as itself.\n"
        f"systemctl stop {TAILSCALED_UNIT} {CODE_SERVER_UNIT}\n"
        f"rm -rf {TAILSCALE_STATE} && install -d -m 0700 {TAILSCALE_STATE}\n"
    )
    return ServicePlan(
        service="dev-template",
        guest=guest,
        packages=("curl", "ca-certificates", "jq"),
        files=(GuestFile(TAILSCALED_DEFAULTS, TAILSCALED_FLAGS),),
        converge=converge,
        health=(
            installed_debs(("code-server", "tailscale"))
            + f" && systemctl is-enabled --quiet {TAILSCALED_UNIT} {CODE_SERVER_UNIT}"
            + f' && [ -z "$(ls -A {TAILSCALE_STATE})" ]'
        ),
        health_timeout=1,
    )


def code_server_config(password: str) -> str:
    """config.yaml (JSON, valid YAML) for ``coder``: every address, port 8443, a password."""
    secret = generated_secret("code-server password", password)
    return (
        "{\n"
        f'  "bind-addr": "0.0.0.0:{PORT}",\n'
        '  "auth": "password",\n'
        f'  "password": "{secret}",\n'
        '  "cert": false\n'
        "}\n"
    )


def _login_server(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or re.search(r"[^A-Za-z0-9.:/-]", value)
    ):
        raise ValueError(f"Headscale URL {value!r} must be https://<host>")
    return value


def code_server_plan(*, guest: str, password: str) -> ServicePlan:
    """code-server in a dev container, with its own password (a secret, 0600)."""
    return ServicePlan(
        service="code-server",
        guest=guest,
        directories=(
            GuestFile(f"{HOME}/.config", "", mode=0o755, owner=USER, group=USER),
            GuestFile(CONFIG_DIR, "", mode=0o700, owner=USER, group=USER),
        ),
        files=(
            GuestFile(CONFIG, code_server_config(password), mode=0o600, owner=USER, group=USER),
        ),
        units=(CODE_SERVER_UNIT,),
        health=f"curl -fsS -o /dev/null http://127.0.0.1:{PORT}/healthz",
    )


#: A condition: tailscaled reports the node logged in and running.
RUNNING = "tailscale status --json 2>/dev/null | jq -e '.BackendState == \"Running\"' >/dev/null"


def tailscale_plan(*, guest: str, login_server: str, auth_key: str, hostname: str) -> ServicePlan:
    """The dev container joins Headscale once; ``auth_key`` is a secret (``AUTH_KEY``, 0600)."""
    server = _login_server(login_server)
    if not _HOSTNAME.fullmatch(hostname):
        raise ValueError(f"tailnet host name {hostname!r}: a DNS label")
    if not _AUTH_KEY.fullmatch(auth_key):
        # Never echo the value: it is a secret.
        raise ValueError("Headscale pre-auth key: 16 to 256 letters, digits, '-' or '_'")
    join = (
        f"tailscale up --login-server={shlex.quote(server)} --auth-key=file:{AUTH_KEY}"
        f" --hostname={hostname} --accept-dns=false"
    )
    converge = f"""\
systemctl start {TAILSCALED_UNIT}
zlh_wait=0
until tailscale status --json >/dev/null 2>&1 || [ "$zlh_wait" -ge 30 ]; do
  zlh_wait=$((zlh_wait + 1)); sleep 1
done
if ! {RUNNING}; then
  {join}
fi
"""
    return ServicePlan(
        service="tailscale",
        guest=guest,
        files=(GuestFile(AUTH_KEY, auth_key, mode=0o600),),
        converge=converge,
        units=(TAILSCALED_UNIT,),
        health=RUNNING,
    )


def fleet_plan(
    *, guest: str, password: str, login_server: str, auth_key: str
) -> tuple[ServicePlan, ServicePlan]:
    """One dev container: code-server with its password, joined to the dev VPN as ``guest``."""
    return (
        code_server_plan(guest=guest, password=password),
        tailscale_plan(guest=guest, login_server=login_server, auth_key=auth_key, hostname=guest),
    )
