"""Files the edge proxies read: Traefik dynamic routes and Velocity's server list.

Pure text rendering, deterministic, so a route change (and only a route change)
changes the hash that reruns the step writing the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HttpRoute:
    name: str
    host: str
    backend: str  # http://10.10.0.10:8080


def traefik_dynamic_config(routes: Sequence[HttpRoute], *, entrypoint: str = "websecure") -> str:
    """Traefik file-provider config (JSON, which Traefik's YAML parser reads as is)."""
    routers = {}
    services = {}
    for route in sorted(routes, key=lambda r: r.name):
        routers[route.name] = {
            "rule": f"Host(`{route.host}`)",
            "entryPoints": [entrypoint],
            "service": route.name,
            "tls": {"certResolver": "letsencrypt"},
        }
        services[route.name] = {"loadBalancer": {"servers": [{"url": route.backend}]}}
    return json.dumps({"http": {"routers": routers, "services": services}}, indent=2) + "\n"


@dataclass(frozen=True, slots=True)
class GameServer:
    name: str
    address: str  # 10.20.1.0:25565


def velocity_servers(servers: Sequence[GameServer]) -> str:
    """The ``[servers]`` table of velocity.toml, with ``try`` listing every server."""
    ordered = sorted(servers, key=lambda s: s.name)
    lines = ["[servers]"]
    lines += [f"{json.dumps(server.name)} = {json.dumps(server.address)}" for server in ordered]
    lines.append(f"try = {json.dumps([server.name for server in ordered])}")
    return "\n".join(lines) + "\n"
