"""code-server and the dev VPN client in each dev container, on the dev template's base.

``template_plan`` prepares the code-server template (the clone source of every dev
container): the login user ``coder``, the tools the install needs, and tailscaled's
settings. Nothing vendored: the template is stopped and cloned, a clone keeps its disk
for life, so a release installed there would never reach the containers already made.

``fleet_plan`` is one dev container. From zlh-artifacts it installs both pinned ``.deb``
artifacts with their Debian dependencies (``apt-get install /path/file.deb``), once per
release:

- code-server, run by ``code-server@coder.service`` (the package's unit) as ``coder``,
  with the container's own ``config.yaml``;
- Tailscale, as the client of the platform's Headscale, joined as the container. An
  unprivileged container has no ``/dev/net/tun``, so ``tailscaled`` runs with
  ``--tun=userspace-networking`` (``/etc/default/tailscaled``, which the package's unit
  reads): it proxies the tailnet connections it accepts to local ports, code-server's
  included. Installed in the container, never the template, no two containers share a
  node key.

Authentication: ``auth: password``, with a password per dev container from the program
(pulumi-random), in ``~coder/.config/code-server/config.yaml`` (0600, ``coder``). Not
``auth: none``: zlh-zpack-proxy publishes the IDE under a public host name and has no
authentication of its own, so without a password anyone who learns the name gets a
shell as ``coder``.

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
from zlh_infra.services.vendor import Vendored, install_deb

USER = "coder"
HOME = f"/home/{USER}"
CONFIG_DIR = f"{HOME}/.config/code-server"
CONFIG = f"{CONFIG_DIR}/config.yaml"
PORT = 8443
CODE_SERVER_UNIT = f"code-server@{USER}.service"
TAILSCALED_UNIT = "tailscaled.service"
TAILSCALED_DEFAULTS = "/etc/default/tailscaled"
AUTH_KEY = "/etc/zlh/tailscale-authkey"

#: What the package's unit reads: the port it listens on and its flags.
TAILSCALED_FLAGS = 'PORT="41641"\nFLAGS="--tun=userspace-networking"\n'

_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_AUTH_KEY = re.compile(r"[A-Za-z0-9_-]{16,256}")


def template_plan(*, guest: str) -> ServicePlan:
    """The dev template: ``coder``, ``curl`` and ``jq``, tailscaled's userspace settings."""
    return ServicePlan(
        service="dev-prerequisites",
        guest=guest,
        packages=("curl", "ca-certificates", "jq"),
        files=(GuestFile(TAILSCALED_DEFAULTS, TAILSCALED_FLAGS),),
        converge=(
            f"if ! id -u {USER} >/dev/null 2>&1; then\n"
            f"  useradd --create-home --shell /bin/bash {USER}\n"
            "fi\n"
        ),
        health=f"id -u {USER}",
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


def code_server_plan(*, guest: str, code_server: Vendored, password: str) -> ServicePlan:
    """code-server in a dev container, with its own password (a secret, 0600)."""
    return ServicePlan(
        service="code-server",
        guest=guest,
        packages=("curl", "ca-certificates"),
        converge=install_deb(code_server, "code-server"),
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


def tailscale_plan(
    *, guest: str, tailscale: Vendored, login_server: str, auth_key: str, hostname: str
) -> ServicePlan:
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
    converge = (
        install_deb(tailscale, "tailscale")
        + f"""\
systemctl start {TAILSCALED_UNIT}
zlh_wait=0
until tailscale status --json >/dev/null 2>&1 || [ "$zlh_wait" -ge 30 ]; do
  zlh_wait=$((zlh_wait + 1)); sleep 1
done
if ! {RUNNING}; then
  {join}
fi
"""
    )
    return ServicePlan(
        service="tailscale",
        guest=guest,
        packages=("jq",),
        files=(GuestFile(AUTH_KEY, auth_key, mode=0o600),),
        converge=converge,
        units=(TAILSCALED_UNIT,),
        health=RUNNING,
    )


def fleet_plan(
    *,
    guest: str,
    code_server: Vendored,
    tailscale: Vendored,
    password: str,
    login_server: str,
    auth_key: str,
) -> tuple[ServicePlan, ServicePlan]:
    """One dev container: code-server with its password, joined to the dev VPN as ``guest``."""
    return (
        code_server_plan(guest=guest, code_server=code_server, password=password),
        tailscale_plan(
            guest=guest,
            tailscale=tailscale,
            login_server=login_server,
            auth_key=auth_key,
            hostname=guest,
        ),
    )
