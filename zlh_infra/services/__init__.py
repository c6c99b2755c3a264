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
"""
