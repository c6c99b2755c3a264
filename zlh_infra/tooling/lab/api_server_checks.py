"""``lab check`` for the servers ``lab server create`` made the way zpack-api makes them.

What every fleet container gets checked (running, zlh-agent on the management NIC,
Prometheus discovery, the reachability matrix and the spoofing attempts) covers them
already: they are guests of the plan like the declared ones. These checks add what
only such a server has: its route, registered by zpack-api's own command, and its place
in the host's backup job, judged by the platform's own rule (``zlh-stateful-protected``).
"""

from __future__ import annotations

from collections.abc import Sequence

from zlh_infra.policies import config as cfg
from zlh_infra.policies.resilience import (
    BACKUP_JOB,
    PBS_STORAGE,
    check_stateful_protected,
    is_stateful,
)
from zlh_infra.policies.resources import Resource
from zlh_infra.services import routes
from zlh_infra.tooling.lab.api_servers import (
    API_ACCOUNT,
    API_GUEST,
    ApiServer,
    as_resources,
    route_argv,
)
from zlh_infra.tooling.lab.checks import CheckContext, CheckResult
from zlh_infra.tooling.lab.plan import unwrap
from zlh_infra.tooling.preview.recording import StackRecording

ROUTE_CHECK = "route registered by zpack-api"
BACKUP_CHECK = "in the host's backup job"
STATEFUL_RULE = "zlh-stateful-protected"


def api_server_checks(
    ctx: CheckContext,
    servers: Sequence[ApiServer],
    recordings: Sequence[StackRecording],
) -> list[CheckResult]:
    results: list[CheckResult] = []
    for server in servers:
        recording = next((r for r in recordings if r.stack == server.stack), None)
        results.append(_route(ctx, server))
        results.append(_backup(server, recording))
    return results


def _route(ctx: CheckContext, server: ApiServer) -> CheckResult:
    """``zlh-route list`` on the proxy, asked from zpack-api with its key, names the server."""
    api = ctx.guest(API_GUEST)
    if api is None:
        return CheckResult(server.name, server.vmid, ROUTE_CHECK, False, f"no {API_GUEST} guest")
    done = ctx.executor.run(api.vmid, route_argv(server, "list"), timeout=60)
    listed = [line.split() for line in done.stdout.splitlines()]
    wanted = [server.name, server.workload]
    ok = done.returncode == 0 and wanted in listed
    guest = routes.ROUTE_GUESTS[server.route]
    if ok:
        detail = f"{guest} lists {server.name} -> {server.workload} (asked as {API_ACCOUNT})"
    elif done.returncode != 0:
        detail = f"`list` on {guest} exited {done.returncode}: {done.stderr.strip()[-200:]}"
    else:
        detail = f"{guest} lists {len(listed)} routes, not {server.name} -> {server.workload}"
    return CheckResult(server.name, server.vmid, ROUTE_CHECK, ok, ctx.redact(detail))


def _backup(server: ApiServer, recording: StackRecording | None) -> CheckResult:
    """The platform's backup rule, on the server as the host holds it and the recorded jobs."""
    if recording is None:
        detail = f"stack {server.stack} is not recorded"
        return CheckResult(server.name, server.vmid, BACKUP_CHECK, False, detail)
    guest, *_ = as_resources(server.stack, server.record, server.template)
    # Pulumi's protect lives in Pulumi's state; zpack-api's servers have none to hold.
    resources = [
        Resource(guest.urn, guest.type, guest.name, unwrap(guest.inputs), protect=True),
        *(
            Resource(r.urn, r.type, r.name, unwrap(r.inputs))
            for r in recording.resources
            if r.type in (BACKUP_JOB, PBS_STORAGE)
        ),
    ]
    jobs = [r for r in resources if r.type == BACKUP_JOB]
    config = cfg.STATEFUL.parse(STATEFUL_RULE, None)
    if not is_stateful(resources[0], config):
        detail = f"{STATEFUL_RULE} does not hold it to a backup job: its tags say it keeps no data"
        return CheckResult(server.name, server.vmid, BACKUP_CHECK, False, detail)
    findings = check_stateful_protected(resources, config, server.stack)
    mine = [v for v in findings.violations if v.urn == guest.urn]
    if mine:
        detail = "; ".join(v.problem for v in mine)
        return CheckResult(server.name, server.vmid, BACKUP_CHECK, False, detail)
    if findings.unknowns:
        detail = "the recorded backup jobs are not known yet"
        return CheckResult(server.name, server.vmid, BACKUP_CHECK, None, detail)
    covering = [j.name for j in jobs if j.props.get("pool") == server.record.pool]
    detail = (
        f"in pool {server.record.pool}, which {', '.join(covering) or 'a job'} selects; "
        f"protection on ({STATEFUL_RULE} passes)"
    )
    return CheckResult(server.name, server.vmid, BACKUP_CHECK, True, detail)
