"""Traefik v3 on zlh-proxy (core) and zlh-zpack-proxy (runtime): TLS and routing at the edge.

The binary comes from its release tarball (``traefik_v3.x_linux_amd64.tar.gz``), verified
by its pinned SHA-256 and unpacked to ``/opt/traefik``: zlh-proxy fetches it from the
vendor, zlh-zpack-proxy from zlh-artifacts (``vendor.Vendored``). It runs as the system
account ``traefik`` whose only capability is ``CAP_NET_BIND_SERVICE`` (ports 80 and 443).

The static configuration ``/etc/traefik/traefik.yml`` (``static_config``, JSON, which is
YAML) holds:

- entry point ``web`` (:80), which redirects to ``websecure`` (:443); ``websecure`` is the
  default entry point of every router and takes its certificates from the ACME resolver
  ``letsencrypt``: the HTTP-01 challenge on ``web``, or DNS-01 through a lego provider
  (``DnsChallenge``) whose credentials are environment variables in
  ``/etc/traefik/acme.env`` (0600, read by systemd only);
- the ACME account and certificates in ``/srv/data/traefik/acme.json`` (0600, on the data
  path, created empty once and never rewritten by the configure step);
- the file provider watching ``/etc/traefik/dynamic``, where the routes land
  (``dynamic_config``: the platform's ``traefik_dynamic_config`` after every host name
  and backend is checked), so a route change needs no restart;
- no ``api`` section, so the API and dashboard are off (Traefik enables them only with one);
- ``ping`` on its own entry point, 127.0.0.1:8082 only: the health check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from zlh_infra.platform.proxy_config import HttpRoute, traefik_dynamic_config
from zlh_infra.services.plan import GuestFile, ServicePlan
from zlh_infra.services.values import is_ipv4_port, no_control, systemd_environment
from zlh_infra.services.vendor import Vendored, unpack

HOME = "/opt/traefik"
BINARY = f"{HOME}/traefik"
CONFIG = "/etc/traefik/traefik.yml"
DYNAMIC_DIR = "/etc/traefik/dynamic"
#: The file the layers write the routes to (zlh-proxy and zlh-zpack-proxy alike).
ROUTES = f"{DYNAMIC_DIR}/zlh.yml"
ENVIRONMENT = "/etc/traefik/acme.env"
DATA_DIR = "/srv/data/traefik"
ACME_STORAGE = f"{DATA_DIR}/acme.json"
UNIT = "traefik.service"
RESOLVER = "letsencrypt"
PING = "127.0.0.1:8082"

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ROUTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def domain(what: str, value: str, *, wildcard: bool = False) -> str:
    """A DNS host name: RFC 1123 labels, at least two; ``*.`` first only with ``wildcard``.

    Refuses anything else (backticks, spaces, newlines, a trailing dot, an IP address),
    since the name lands inside a Traefik rule between backticks.
    """
    name = value[2:] if wildcard and value.startswith("*.") else value
    labels = name.split(".")
    if (
        len(value) > 253
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        form = "RFC 1123 labels, optionally after '*.'" if wildcard else "RFC 1123 labels"
        raise ValueError(f"{what}: {value!r} is not a host name ({form})")
    return value


def _backend(what: str, value: str) -> str:
    no_control(what, value)
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or re.search(r"[\s`'\"\\]", value)
    ):
        raise ValueError(f"{what}: {value!r} is not an http(s)://host:port backend")
    return value


def _directory(value: str) -> str:
    """An ACME directory URL (``https://acme-staging-v02.api.letsencrypt.org/directory``)."""
    no_control("ACME CA server", value)
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or re.search(r"[\s`'\"\\]", value):
        raise ValueError(f"ACME CA server: {value!r} is not an https:// directory URL")
    return value


def dynamic_config(routes: Sequence[HttpRoute], *, entrypoint: str = "websecure") -> str:
    """The file-provider routes, each host name and backend checked first.

    Rendered by ``zlh_infra.platform.proxy_config.traefik_dynamic_config``. Its rule is
    ``Host(`name`)``, which in Traefik v3 matches one exact name, so wildcard hosts are
    refused here (a wildcard certificate is ``Acme.domains``' business).
    """
    seen: set[str] = set()
    for route in routes:
        if not _ROUTER.fullmatch(route.name) or route.name in seen:
            raise ValueError(f"route name {route.name!r}: unique letters, digits, '-', '_'")
        seen.add(route.name)
        domain(f"route {route.name}", route.host)
        _backend(f"route {route.name}", route.backend)
    return traefik_dynamic_config(routes, entrypoint=entrypoint)


@dataclass(frozen=True, slots=True)
class DnsChallenge:
    """ACME DNS-01 through a lego provider (``cloudflare``, ``ovh``, ...)."""

    provider: str
    #: The provider's credentials as lego reads them: environment variables (secrets).
    credentials: Mapping[str, str] = field(default_factory=dict)
    #: Resolvers that check propagation (``ip:port``).
    resolvers: tuple[str, ...] = ("1.1.1.1:53", "9.9.9.9:53")


@dataclass(frozen=True, slots=True)
class Acme:
    email: str
    #: None: the HTTP-01 challenge on ``web``.
    challenge: DnsChallenge | None = None
    #: Certificates ``websecure`` requests up front: the first is the main name, the rest
    #: its SANs (a ``*.`` wildcard needs the DNS challenge).
    domains: tuple[str, ...] = ()
    #: Another ACME directory (Let's Encrypt's staging one, say); None for production.
    ca_server: str | None = None


def _resolver(value: str) -> str:
    if not is_ipv4_port(value):
        raise ValueError(f"DNS challenge resolver {value!r} must be ipv4:port")
    return value


def _acme(acme: Acme) -> dict[str, object]:
    if not _EMAIL.fullmatch(acme.email):
        raise ValueError(f"ACME email {acme.email!r} is not an email address")
    resolver: dict[str, object] = {"email": acme.email, "storage": ACME_STORAGE}
    if acme.ca_server is not None:
        resolver["caServer"] = _directory(acme.ca_server)
    if acme.challenge is None:
        resolver["httpChallenge"] = {"entryPoint": "web"}
    else:
        if not _PROVIDER.fullmatch(acme.challenge.provider):
            raise ValueError(f"DNS challenge provider {acme.challenge.provider!r}")
        resolver["dnsChallenge"] = {
            "provider": acme.challenge.provider,
            "resolvers": [_resolver(r) for r in acme.challenge.resolvers],
        }
    return resolver


def static_config(acme: Acme) -> str:
    """traefik.yml as JSON (valid YAML)."""
    for name in acme.domains:
        domain("ACME certificate domain", name, wildcard=True)
        if name.startswith("*.") and acme.challenge is None:
            raise ValueError(f"ACME certificate {name!r}: a wildcard needs the DNS challenge")
    tls: dict[str, object] = {"certResolver": RESOLVER}
    if acme.domains:
        tls["domains"] = [{"main": acme.domains[0], "sans": list(acme.domains[1:])}]
    document = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO"},
        "entryPoints": {
            "web": {
                "address": ":80",
                "http": {
                    "redirections": {
                        "entryPoint": {"to": "websecure", "scheme": "https", "permanent": True}
                    }
                },
            },
            "websecure": {"address": ":443", "asDefault": True, "http": {"tls": tls}},
            "ping": {"address": PING},
        },
        "ping": {"entryPoint": "ping"},
        "certificatesResolvers": {RESOLVER: {"acme": _acme(acme)}},
        "providers": {"file": {"directory": DYNAMIC_DIR, "watch": True}},
    }
    return json.dumps(document, indent=2) + "\n"


SYSTEMD_UNIT = f"""\
# Generated by zlh-infra.
[Unit]
Description=Traefik edge proxy
After=network-online.target
Wants=network-online.target

[Service]
User=traefik
Group=traefik
EnvironmentFile={ENVIRONMENT}
ExecStart={BINARY} --configFile={CONFIG}
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes
LimitNOFILE=1048576
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def plan(
    *,
    guest: str,
    traefik: Vendored,
    acme: Acme,
    routes: Sequence[HttpRoute] | None = None,
    tenant_routes: bool = False,
) -> ServicePlan:
    """Traefik on ``guest``; ``routes`` (when given) are written to ``ROUTES`` too.

    ``acme.challenge.credentials`` are secrets: they land in ``ENVIRONMENT`` (0600).
    ``tenant_routes``: ``DYNAMIC_DIR`` is ``routes.edge_plan``'s, which runs first and lets
    zpack-api add its own files there.
    """
    credentials = acme.challenge.credentials if acme.challenge else {}
    files = [
        GuestFile(CONFIG, static_config(acme)),
        GuestFile(ENVIRONMENT, systemd_environment(credentials), mode=0o600),
        GuestFile(f"/etc/systemd/system/{UNIT}", SYSTEMD_UNIT),
    ]
    if routes is not None:
        files.append(GuestFile(ROUTES, dynamic_config(routes)))
    # acme.json is Traefik's: created empty, 0600 (Traefik refuses any other mode), and
    # never rewritten here.
    converge = unpack(traefik, HOME) + (
        f"[ -e {ACME_STORAGE} ] || install -m 0600 -o traefik -g traefik /dev/null {ACME_STORAGE}\n"
        f"chown traefik:traefik {ACME_STORAGE} && chmod 0600 {ACME_STORAGE}\n"
        f"{BINARY} version >/dev/null\n"
    )
    return ServicePlan(
        service="traefik",
        guest=guest,
        packages=("curl", "ca-certificates"),
        accounts=("traefik",),
        directories=(
            *([] if tenant_routes else [GuestFile(DYNAMIC_DIR, "", mode=0o755)]),
            GuestFile(DATA_DIR, "", mode=0o700, owner="traefik", group="traefik"),
        ),
        files=tuple(files),
        converge=converge,
        units=(UNIT,),
        health=f"curl -fsS -o /dev/null http://{PING}/ping",
    )
