"""One module per service: what it needs on its guest, as pure data (no Pulumi).

Each module turns the typed config, addresses and secrets it is given into a
``ServicePlan`` (``plan.py``): packages, files, converging commands and a health check.
The layers run those plans inside the guests
(``converge_service`` in ``zlh_infra/layers/guest_steps.py``).

| Module | Service | Guest |
|---|---|---|
| ``mariadb`` | MariaDB | zlh-db |
| ``redis`` | Redis | zlh-redis |
| ``prometheus`` | Prometheus | zlh-monitor |
| ``node_exporter`` | prometheus-node-exporter | every container |
| ``artifacts`` | the artifact store (nginx) and ``zlh-publish`` | zlh-artifacts |
| ``node_release`` | zpack-api and zpack-portal (Node.js releases) | zpack-api, zpack-portal |
| ``agent`` | zlh-agent | the base image, so every game and dev container |
| ``technitium`` | Technitium DNS Server | zlh-dns |
| ``headscale`` | Headscale | zlh-ctl |
| ``grafana`` | Grafana | zlh-monitor |
| ``pbs`` | Proxmox Backup Server | zlh-back |
| ``traefik`` | Traefik | zlh-proxy, zlh-zpack-proxy |
| ``velocity`` | Velocity | zlh-velocity |
| ``paper`` | Paper | the game templates, so every game container |
| ``code_server`` | code-server and Tailscale | the dev templates, so every dev container |
| ``build`` | toolchains, the publishing key; the ``publish`` account | zlh-build; zlh-artifacts |

``vendor`` fetches and verifies what only a vendor ships, for the modules that need it.
"""
