"""prometheus-node-exporter on every container, listening only where zlh-monitor reaches it.

Core guests listen on their LAN address (zlh-monitor is on the core LAN); game and dev
containers on their management address (the monitor's only path to the runtime host).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from zlh_infra.services.plan import GuestFile, ServicePlan
from zlh_infra.services.values import systemd_environment

PORT = 9100
PACKAGES = ("prometheus-node-exporter", "curl", "ca-certificates")
DEFAULTS = "/etc/default/prometheus-node-exporter"


def plan(*, guest: str, listen: IPv4Address, install: bool = True) -> ServicePlan:
    """``install=False`` for clones, whose image already has the package."""
    arguments = f"--web.listen-address={listen}:{PORT}"
    return ServicePlan(
        service="node-exporter",
        guest=guest,
        packages=PACKAGES if install else (),
        files=(GuestFile(DEFAULTS, systemd_environment({"ARGS": arguments})),),
        units=("prometheus-node-exporter.service",),
        health=f"curl -fsS -o /dev/null http://{listen}:{PORT}/metrics",
    )
