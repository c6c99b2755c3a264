"""``lab server create|delete|list``: servers made in the lab the way zpack-api makes them.

``create`` reads the runtime stack's ``fleetSpec`` output, makes the Proxmox calls of
``docs/fleet.md`` (``api_servers.plan_calls``; the lab keeps their result as the host
would), builds the container as a clone of the template, loads the firewall with it,
starts it, and registers its route from zpack-api's guest with zpack-api's own key and
command (``api_servers.route_argv``). ``lab check`` then holds it to the platform's
rules like any fleet container. Pulumi's recording never holds it, and ``lab up``
leaves it alone, as ``pulumi up`` leaves zpack-api's servers alone.
"""

from __future__ import annotations

from typing import Any

from zlh_infra.platform.api_identity import FLEET_SPEC_OUTPUT
from zlh_infra.platform.type_tokens import CONTAINER
from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.lab import host, lxc
from zlh_infra.tooling.lab.api_servers import (
    API_GUEST,
    ApiServer,
    host_record,
    plan_calls,
    route_argv,
    route_kind,
    taken_vmids,
    template_config,
)
from zlh_infra.tooling.lab.commands import Recorded, Round, converge, project_root, record
from zlh_infra.tooling.lab.paths import LabDirs
from zlh_infra.tooling.lab.plan import Action, has_unknown, redact, unwrap
from zlh_infra.tooling.lab.rootfs import ensure_rootfs
from zlh_infra.tooling.lab.secrets_store import SecretStore
from zlh_infra.tooling.lab.state import LabState
from zlh_infra.tooling.lab.system import LabError, require_root


def _say(message: str) -> None:
    print(f"lab: {message}", flush=True)


def _fleet_spec(recorded: Recorded) -> tuple[str, dict[str, Any]]:
    """What zpack-api reads before it makes a server: the one runtime stack's export."""
    found = [r for r in recorded.recordings if FLEET_SPEC_OUTPUT in r.outputs]
    if len(found) != 1:
        raise LabError(
            f"{len(found)} stacks export {FLEET_SPEC_OUTPUT}; the lab makes servers on one"
        )
    spec = unwrap(found[0].outputs[FLEET_SPEC_OUTPUT])
    if has_unknown(spec):
        raise LabError(
            f"stack {found[0].stack}: {FLEET_SPEC_OUTPUT} is not known yet (run `lab up`)"
        )
    return found[0].stack, spec


def _route(recorded: Recorded, server: ApiServer, *words: str) -> tuple[int, str]:
    """Run a ``zlh-route`` command in zpack-api's guest as zpack-api does; exit code and
    what it said."""
    api = recorded.plan.guest_by_hostname(API_GUEST)
    if api is None:
        raise LabError(f"the recording has no {API_GUEST} guest")
    done = lxc.attach(api.vmid, route_argv(server, *words), timeout=60)
    said = (done.stdout + done.stderr).strip()
    return done.returncode, redact(said, recorded.plan.secrets)


def _loaded() -> tuple[LabDirs, LabState, SecretStore]:
    require_root()
    dirs = LabDirs.from_env()
    if not dirs.state_file.is_file():
        raise LabError("the lab is not up (run `lab up` first)")
    return dirs, LabState.load(dirs.state_file), SecretStore(dirs.secrets_file)


def _apply(dirs: LabDirs, state: LabState, store: SecretStore) -> tuple[Recorded, Round]:
    """Record with the servers the state holds now, load that firewall, and converge:
    make what is missing, remove what is gone (what else fails is reported, not fatal)."""
    resolver = host.host_resolver()
    recorded = record(project_root(), dirs, store, str(resolver), state)
    if recorded.firewall is None:
        raise LabError(
            f"the recorded Proxmox firewall cannot be applied: {recorded.firewall_error}"
        )
    host.ensure_network(state, recorded.plan.bridges, resolver, recorded.firewall)
    outcome = converge(
        dirs, state, recorded.plan, ensure_rootfs(dirs), keep_going=True, report_waiting=False
    )
    if outcome.failed - {Action.guest(v) for v in state.api_servers}:
        _say("other actions failed (above); `lab up` runs them again")
    return recorded, outcome


def _forget(dirs: LabDirs, state: LabState, store: SecretStore, server: ApiServer) -> None:
    """Undo a server: out of the state, then the firewall and guests without it."""
    state.api_servers.pop(server.vmid, None)
    state.save()
    try:
        _apply(dirs, state, store)
    finally:
        # Whatever else went wrong, the container goes with the server.
        lxc.destroy(dirs, server.vmid)
        state.guests.pop(server.vmid, None)
        state.save()


def create(*, role: str, name: str) -> int:
    dirs, state, store = _loaded()
    recorded = record(project_root(), dirs, store, str(host.host_resolver()), state)
    stack, spec = _fleet_spec(recorded)
    hostnames = {g.hostname for g in recorded.plan.guests.values()}
    if name in hostnames:
        raise LabError(f"name: {name!r} is taken by a guest of the host")
    resources = [r for rec in recorded.recordings for r in rec.resources]
    calls = plan_calls(spec, role, name, taken_vmids(resources, state.api_servers))
    template = next(
        (
            r
            for r in resources
            if r.type == CONTAINER and unwrap(r.inputs).get("vmId") == calls.template
        ),
        None,
    )
    if template is None:
        raise LabError(f"template {calls.template} is not in the recording")
    _say(f"zpack-api's calls for {name} (VMID {calls.vmid}):")
    for line in calls.describe():
        _say(f"  {line}")
    server = ApiServer(
        stack=stack,
        role=role,
        template=calls.template,
        workload=calls.workload,
        record=host_record(calls, template_config(template)),
        route=route_kind(spec, calls.template),
    )
    state.api_servers[server.vmid] = server
    state.save()
    try:
        recorded, outcome = _apply(dirs, state, store)
        made = Action.guest(server.vmid)
        if made in outcome.failed | outcome.blocked or lxc.status(server.vmid) != "running":
            raise LabError(f"lab-{server.vmid} ({name}) could not be made (see above)")
    except LabError:
        _forget(dirs, state, store, server)
        raise
    code, said = _route(recorded, server, "put", name, server.workload)
    if code != 0:
        _say(f"route for {name} FAILED (exit {code}): {said}")
        _say(f"lab-{server.vmid} stays; `lab server delete --name {name}` removes it")
        return ExitCode.FAILED
    _say(f"route registered: {said or f'{name} {server.workload}'}")
    _say(f"made lab-{server.vmid} ({name}); `lab check` holds it to the platform's rules")
    return ExitCode.OK


def delete(*, name: str) -> int:
    dirs, state, store = _loaded()
    server = next((s for s in state.api_servers.values() if s.name == name), None)
    if server is None:
        raise LabError(f"name: no server {name!r} made by `lab server create`")
    # Recorded without it, so that a server the recording now conflicts with can go.
    state.api_servers.pop(server.vmid)
    try:
        recorded = record(project_root(), dirs, store, str(host.host_resolver()), state)
        code, said = _route(recorded, server, "delete", name)
    finally:
        state.api_servers[server.vmid] = server
    if code != 0:
        # zpack-api deletes the route first; a server it cannot unroute stays.
        _say(f"route delete for {name} FAILED (exit {code}): {said}")
        return ExitCode.FAILED
    _forget(dirs, state, store, server)
    _say(f"removed lab-{server.vmid} ({name}) and its route")
    return ExitCode.OK


def list_servers() -> int:
    _, state, _ = _loaded()
    for server in sorted(state.api_servers.values(), key=lambda s: s.vmid):
        print(f"{server.vmid}\t{server.name}\t{server.role}\t{server.workload}")
    return ExitCode.OK
