"""Headscale on zlh-ctl: the control server of the dev VPN, behind zlh-proxy.

The pinned ``.deb`` artifact (from the vendor's release) brings the binary and the
package's hardened ``headscale.service``. ``/etc/headscale/config.yaml`` is generated
(``config``, JSON, which is YAML) with, beyond the package's defaults:

- ``server_url`` ``https://<domain>``: zlh-proxy terminates TLS and forwards to
  ``listen_addr`` ``<lan>:8080`` (so headscale's own ACME and TLS stay off);
- metrics and gRPC on 127.0.0.1 only; the CLI talks to the local unix socket;
- the embedded DERP relay, served through the same HTTPS URL, with its STUN listener on
  UDP 3478 (the port the platform's firewall opens on zlh-ctl), and Tailscale's public
  DERP map kept as the fallback: dev containers run ``tailscaled`` in userspace mode
  behind two NATs, so a relay of the platform's own keeps them reachable when the public
  ones are not, and a single relay is no single point of failure;
- the Tailscale address ranges (``100.64.0.0/10``, ``fd7a:115c:a1e0::/48``);
- MagicDNS names under the configured base domain, without overriding the nodes' own
  resolvers (developers' laptops keep theirs; no global name servers are pushed);
- the SQLite database ``/var/lib/headscale/db.sqlite`` (WAL), in headscale's data path.

The configure step then makes sure of the user ``dev`` (the dev containers' user) and of
a reusable pre-auth key for it valid for at least ``KEY_RENEW_BEFORE`` more: one is
created only when none stored is still valid (``KEY_VALID``), and kept, with the rest of
``headscale preauthkeys create -o json``'s answer, in ``PREAUTH_KEY`` (0600, root). The
key is a secret; ``print_preauth_key()`` is the shell that prints it alone, for a
program step to read from stdout.

Since headscale v0.26 ``preauthkeys create --user`` takes the user's numeric ID, not
its name: the ID is looked up with ``headscale users list --name dev -o json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network

from zlh_infra.services.plan import GuestFile, ServicePlan
from zlh_infra.services.traefik import domain
from zlh_infra.services.vendor import Vendored, install_deb

CONFIG = "/etc/headscale/config.yaml"
PORT = 8080
STUN_PORT = 3478
DATA_DIR = "/var/lib/headscale"
DATABASE = f"{DATA_DIR}/db.sqlite"
UNIT = "headscale.service"
PREAUTH_KEY_DIR = "/var/lib/zlh/headscale"
PREAUTH_KEY = f"{PREAUTH_KEY_DIR}/dev-preauthkey.json"
#: A stored key is replaced when it expires within this many seconds (30 days).
KEY_RENEW_BEFORE = 30 * 24 * 3600

_USER = re.compile(r"[a-z][a-z0-9-]{0,31}")
_DURATION = re.compile(r"[1-9][0-9]*(h|d|w|y)")

#: jq, over ``headscale preauthkeys list -o json``: the stored key (``$id``) is listed,
#: belongs to the user (``$user``), is reusable and expires after ``$min`` (epoch seconds).
KEY_VALID = (
    "[.[]? | select(.id == $id and .user.id == $user and .reusable == true"
    " and ((.expiration.seconds // 0) > $min))] | length > 0"
)
#: jq, over ``headscale users list --name <user> -o json``: the user's ID, or nothing.
USER_ID = ".[]? | select(.name == $name) | .id // empty"


def config(
    *,
    server_domain: str,
    listen: IPv4Address,
    base_domain: str,
    trusted_proxies: Sequence[IPv4Address] = (),
) -> str:
    """config.yaml as JSON (valid YAML)."""
    domain("Headscale domain", server_domain)
    domain("MagicDNS base domain", base_domain)
    if server_domain == base_domain or server_domain.endswith("." + base_domain):
        raise ValueError(
            f"MagicDNS base domain {base_domain!r} must not contain the server's {server_domain!r}"
        )
    document = {
        "server_url": f"https://{server_domain}",
        "listen_addr": f"{listen}:{PORT}",
        "metrics_listen_addr": "127.0.0.1:9090",
        "grpc_listen_addr": "127.0.0.1:50443",
        "grpc_allow_insecure": False,
        "trusted_proxies": [str(IPv4Network(address)) for address in trusted_proxies],
        "noise": {"private_key_path": f"{DATA_DIR}/noise_private.key"},
        "prefixes": {
            "v4": "100.64.0.0/10",
            "v6": "fd7a:115c:a1e0::/48",
            "allocation": "sequential",
        },
        "derp": {
            "server": {
                "enabled": True,
                "region_id": 999,
                "region_code": "zlh",
                "region_name": "ZeroLagHub",
                "verify_clients": True,
                "stun_listen_addr": f"0.0.0.0:{STUN_PORT}",
                "private_key_path": f"{DATA_DIR}/derp_server_private.key",
                "automatically_add_embedded_derp_region": True,
            },
            "urls": ["https://controlplane.tailscale.com/derpmap/default"],
            "paths": [],
            "auto_update_enabled": True,
            "update_frequency": "3h",
        },
        "disable_check_updates": True,
        "database": {
            "type": "sqlite",
            "sqlite": {"path": DATABASE, "write_ahead_log": True},
        },
        "log": {"level": "info", "format": "text"},
        "policy": {"mode": "file", "path": ""},
        "dns": {
            "magic_dns": True,
            "base_domain": base_domain,
            "override_local_dns": False,
            "nameservers": {"global": [], "split": {}},
            "search_domains": [],
            "extra_records": [],
        },
        "unix_socket": "/var/run/headscale/headscale.sock",
        "unix_socket_permission": "0770",
        "logtail": {"enabled": False},
    }
    return "# Generated by zlh-infra.\n" + json.dumps(document, indent=2) + "\n"


def print_preauth_key() -> str:
    """Shell printing the dev user's pre-auth key alone (a secret: keep its output secret)."""
    return f"jq -er '.key' {PREAUTH_KEY}"


def _ensure_key(user: str, expiration: str) -> str:
    return f"""\
zlh_wait=0
until headscale users list -o json >/dev/null 2>&1; do
  zlh_wait=$((zlh_wait + 1))
  if [ "$zlh_wait" -ge 30 ]; then
    echo 'zlh: headscale does not answer on its unix socket' >&2; exit 1
  fi
  sleep 1
done
zlh_uid=$(headscale users list --name {user} -o json | jq -r --arg name {user} '{USER_ID}')
if [ -z "$zlh_uid" ]; then
  headscale users create {user} -o json >/dev/null
  zlh_uid=$(headscale users list --name {user} -o json | jq -r --arg name {user} '{USER_ID}')
fi
if [ -z "$zlh_uid" ]; then
  echo 'zlh: headscale has no user {user} and could not create it' >&2; exit 1
fi
zlh_kid=$(jq -r '.id // 0' {PREAUTH_KEY} 2>/dev/null || echo 0)
zlh_min=$(($(date +%s) + {KEY_RENEW_BEFORE}))
if ! headscale preauthkeys list -o json | jq -e --argjson id "$zlh_kid" \\
    --argjson user "$zlh_uid" --argjson min "$zlh_min" '{KEY_VALID}' >/dev/null; then
  install -d -m 0700 {PREAUTH_KEY_DIR}
  zlh_new=$(mktemp {PREAUTH_KEY}.XXXXXX)
  headscale preauthkeys create --user "$zlh_uid" --reusable --expiration {expiration} \\
    -o json >"$zlh_new"
  jq -e '.key | length > 0' "$zlh_new" >/dev/null
  chmod 0600 "$zlh_new" && mv -f "$zlh_new" {PREAUTH_KEY}
fi
"""


def plan(
    *,
    guest: str,
    headscale: Vendored,
    server_domain: str,
    listen: IPv4Address,
    base_domain: str,
    trusted_proxies: Sequence[IPv4Address] = (),
    user: str = "dev",
    key_expiration: str = "8760h",
) -> ServicePlan:
    """Headscale on ``guest``, with user ``user`` and its reusable pre-auth key.

    ``trusted_proxies``: zlh-proxy's address, whose forwarded client addresses are logged.
    """
    if not _USER.fullmatch(user):
        raise ValueError(f"Headscale user {user!r}: lower-case letters, digits, '-'")
    if not _DURATION.fullmatch(key_expiration):
        raise ValueError(f"pre-auth key expiration {key_expiration!r}: like 8760h or 365d")
    text = config(
        server_domain=server_domain,
        listen=listen,
        base_domain=base_domain,
        trusted_proxies=trusted_proxies,
    )
    # Started here, not after: the users and keys are made through the running server.
    converge = (
        install_deb(headscale, "headscale")
        + "systemctl daemon-reload\n"
        + f"systemctl enable --quiet {UNIT}\n"
        + f'if [ "$ZLH_CHANGED" = 1 ]; then systemctl restart {UNIT}; '
        + f"else systemctl start {UNIT}; fi\n"
        + _ensure_key(user, key_expiration)
    )
    return ServicePlan(
        service="headscale",
        guest=guest,
        packages=("curl", "ca-certificates", "jq"),
        files=(GuestFile(CONFIG, text),),
        converge=converge,
        health=(
            f"curl -fsS -o /dev/null http://{listen}:{PORT}/health"
            f" && jq -e '.key | length > 0' {PREAUTH_KEY} >/dev/null"
        ),
        journal_units=(UNIT,),
    )
