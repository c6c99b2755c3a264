"""``lab up``, ``lab check`` and ``lab down``: the lab's commands, end to end."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zlh_infra.platform.topology import StackRole
from zlh_infra.services import routes
from zlh_infra.tooling.exit_codes import ExitCode
from zlh_infra.tooling.lab import host, lxc
from zlh_infra.tooling.lab.api_server_checks import api_server_checks
from zlh_infra.tooling.lab.api_servers import as_resources, conflict
from zlh_infra.tooling.lab.checks import (
    SERVICE_HEALTH,
    CheckContext,
    CheckResult,
    ExecResult,
    exit_code,
    health_checks,
    health_from_steps,
    held_back,
    not_run,
    render_json,
    render_table,
    run_all,
    unavailable_results,
)
from zlh_infra.tooling.lab.firewall import (
    LabFirewall,
    LabFirewallError,
    build_firewall,
    firewall_resources,
    node_addresses,
)
from zlh_infra.tooling.lab.lxcconf import router_setup_script
from zlh_infra.tooling.lab.matrix import firewall_checks
from zlh_infra.tooling.lab.overlay import (
    LAB_OVERLAY,
    MIRROR,
    apply_overlay,
    mirror_overlay,
    referenced_releases,
    with_route_host_keys,
)
from zlh_infra.tooling.lab.paths import (
    FIREWALL_TABLE,
    HOST_NFT_TABLE,
    LabDirs,
    node_netns,
    release_base_url,
)
from zlh_infra.tooling.lab.plan import (
    DEFERRED,
    UNKNOWN,
    Action,
    LabGuest,
    LabPlan,
    PlanError,
    build_plan,
    decide,
    printed_outputs,
    redact,
    unwrap,
)
from zlh_infra.tooling.lab.releases import build_releases
from zlh_infra.tooling.lab.rootfs import ensure_rootfs, purge
from zlh_infra.tooling.lab.secrets_store import SecretStore
from zlh_infra.tooling.lab.state import GuestState, LabState
from zlh_infra.tooling.lab.steps import install_pct, run_step
from zlh_infra.tooling.lab.system import LabError, ensure_host_packages, netns_path, require_root
from zlh_infra.tooling.preview.recording import StackRecording


def project_root() -> Path:
    from zlh_infra.tooling.project import project_root as root

    return root()


def _say(message: str) -> None:
    print(f"lab: {message}", flush=True)


# --- the recording ----------------------------------------------------------------------


@dataclass(slots=True)
class Recorded:
    plan: LabPlan
    recordings: list[StackRecording]
    #: The recorded Proxmox firewall on the lab's bridges; None when it cannot be read.
    firewall: LabFirewall | None = None
    #: Why the firewall cannot be read (the reader's or the lab's refusal).
    firewall_error: str | None = None
    #: Releases the overlay wanted but the lab has no file for.
    missing: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def record(
    root: Path, dirs: LabDirs, store: SecretStore, resolver: str, state: LabState
) -> Recorded:
    """Run both stacks' programs in-process, as ``pulumi up`` would, with real secrets.

    The stand-in releases are built into the lab's release directory first; the lab
    overlay points the stacks' release settings at them. From ``state``: what the lab's
    steps printed when they last succeeded, which the programs see as the engine shows a
    Command's outputs once it ran; the runtime hosts' route host keys, copied into the
    core's config as the operator does; and the servers made as zpack-api makes them,
    which the host holds beside what the recording holds.
    """
    from zlh_infra.tooling.preview.runner import run_platform
    from zlh_infra.tooling.preview.stack_files import find_project_file, stack_files_in

    files = stack_files_in(root)
    stacks = sorted(files, key=lambda s: (s != StackRole.CORE, s))
    releases = build_releases(root, dirs.releases)
    missing = referenced_releases(LAB_OVERLAY) - set(releases)
    notes: list[str] = []

    mirror = dirs.releases / MIRROR
    mirrored = sorted(p.name for p in mirror.iterdir()) if mirror.is_dir() else []

    def overlay(stack: str, config: Mapping[str, str]) -> Mapping[str, str]:
        result = apply_overlay(config, LAB_OVERLAY.get(stack, {}), releases)
        missing.update(result.missing)
        notes.extend(
            f"{stack}: lab overlay skips {key} (not in the stack file)" for key in result.skipped
        )
        mirrored_config, changed = mirror_overlay(result.config, mirrored, release_base_url())
        notes.extend(f"{stack}: {path} from the local mirror" for path in changed)
        if stack == StackRole.CORE:
            mirrored_config, copied = with_route_host_keys(mirrored_config, state.route_host_keys)
            notes.extend(f"{stack}: {path} from the runtime stack's output" for path in copied)
        return mirrored_config

    with contextlib.redirect_stdout(sys.stderr):
        recordings = run_platform(
            files,
            stacks,
            project_file=find_project_file(root),
            # As the engine previews: a value only a step prints (a fingerprint, a key)
            # is unknown until that step has run, and the steps needing it are deferred.
            preview=True,
            secret_values=store.for_stack,
            config_overlay=overlay,
            state_outputs=lambda _stack: printed_outputs(state.printed),
        )
    store.save()
    problems = [
        f"{r.stack}: {d.message.splitlines()[0]}"
        for r in recordings
        for d in r.diagnostics
        if d.severity == "error"
    ]
    if problems:
        raise LabError("the program failed offline:\n  " + "\n  ".join(problems))
    by_stack = {recording.stack: recording for recording in recordings}
    for server in state.api_servers.values():
        recording = by_stack.get(server.stack)
        if (problem := conflict(server, recording)) is not None or recording is None:
            raise LabError(
                f"server {server.name} (VMID {server.vmid}) made by `lab server create`: "
                f"{problem}; `lab server delete --name {server.name}` removes it"
            )
        recording.resources += as_resources(server.stack, server.record, server.template)
    try:
        plan = build_plan(recordings, upstream_dns=resolver)
    except PlanError as error:
        raise LabError(f"the recording cannot be built as a lab: {error}") from None
    plan.secrets = plan.secrets | frozenset(store.values())
    firewall, firewall_error = None, None
    try:
        firewall = build_firewall(
            plan,
            {recording.stack: firewall_resources(recording) for recording in recordings},
            node_addresses(recordings),
        )
        notes += [f"no lab network holds node {node}: no stand-in" for node in firewall.unplaced]
    except LabFirewallError as error:
        firewall_error = redact(str(error), plan.secrets)
    return Recorded(
        plan=plan,
        recordings=recordings,
        firewall=firewall,
        firewall_error=firewall_error,
        missing=missing,
        notes=notes,
    )


def exported_route_host_keys(recordings: Sequence[StackRecording]) -> dict[str, dict[str, str]]:
    """Each runtime stack's ``routeHostKeys`` output, once every key in it is known."""
    found = {}
    for recording in recordings:
        keys = unwrap(recording.outputs.get(routes.HOST_KEYS_OUTPUT))
        if (
            isinstance(keys, dict)
            and keys
            and all(isinstance(v, str) and v != UNKNOWN for v in keys.values())
        ):
            found[recording.stack] = dict(keys)
    return found


# --- up ---------------------------------------------------------------------------------


def _create_guest(
    dirs: LabDirs, state: LabState, plan: LabPlan, guest: LabGuest, rootfs: Path
) -> str:
    """Make, start and (for a router stand-in) set up ``guest``; recorded only once done."""
    if guest.clone_of is not None:
        source = state.guests.get(guest.clone_of)
        if source is None or not lxc.exists(dirs, guest.clone_of):
            raise LabError(f"{guest.name}: clone source {guest.clone_of} does not exist")
        state.layer_counter += 1
        state.save()
        layer = lxc.snapshot(dirs, guest.clone_of, state.layer_counter)
        lowers = [layer, *(Path(p) for p in source.lowers)]
    else:
        lowers = [rootfs]
    try:
        outcome = _build(dirs, plan, guest, lowers)
    except BaseException:
        lxc.destroy(dirs, guest.vmid)
        raise
    state.guests[guest.vmid] = GuestState(
        spec_hash=guest.spec_hash(), lowers=[str(p) for p in lowers]
    )
    state.save()
    return outcome


def _build(dirs: LabDirs, plan: LabPlan, guest: LabGuest, lowers: list[Path]) -> str:
    lxc.create(dirs, guest, lowers)
    if not guest.started:
        return "stopped (started: false)"
    lxc.start(dirs, guest.vmid)
    booted = lxc.wait_booted(guest.vmid)
    if not guest.is_stand_in:
        return f"running (systemd {booted})"
    setup = lxc.attach(
        guest.vmid,
        ["sh", "-s"],
        stdin=router_setup_script(guest, guest.dns_servers[0]),
        timeout=300,
    )
    if setup.returncode != 0:
        raise LabError(
            f"{guest.name}: router stand-in setup failed (exit {setup.returncode}): "
            + redact(setup.stderr.strip()[-600:], plan.secrets)
        )
    return f"running (systemd {booted}), NAT and dnsmasq up"


def link_mirror(dirs: LabDirs, artifacts: Path | None) -> None:
    """Serve the files of ``artifacts`` (an operator's mirror) in the lab, or none."""
    mirror = dirs.releases / MIRROR
    shutil.rmtree(mirror, ignore_errors=True)
    if artifacts is None:
        return
    if not artifacts.is_dir():
        raise LabError(f"--artifacts {artifacts}: not a directory")
    mirror.mkdir(parents=True)
    for item in sorted(artifacts.iterdir()):
        if item.is_file():
            (mirror / item.name).symlink_to(item.resolve())


#: At most this many rounds of recording and running: each round runs what the values
#: printed in the round before made known (a dependency chain of printed values).
MAX_ROUNDS = 8


@dataclass(slots=True)
class Round:
    """What one pass over the plan did."""

    code: int = ExitCode.OK
    created: int = 0
    ran: int = 0
    failed: set[Action] = field(default_factory=set)
    #: Steps that could not fetch a vendor artifact (exit 69), now or unchanged since.
    unavailable: set[Action] = field(default_factory=set)
    blocked: set[Action] = field(default_factory=set)


def up(*, keep_going: bool = False, artifacts: Path | None = None) -> int:
    started = time.monotonic()
    require_root()
    ensure_host_packages()
    dirs = LabDirs.from_env()
    dirs.state.mkdir(parents=True, exist_ok=True)
    link_mirror(dirs, artifacts)
    # Containers (in their user namespace) must pass through to their layers; the secrets
    # file itself is 0600.
    os.chmod(dirs.state, 0o711)
    state = LabState.load(dirs.state_file)
    root = project_root()
    resolver = host.host_resolver()
    store = SecretStore(dirs.secrets_file)
    recorded = record(root, dirs, store, str(resolver), state)
    if recorded.firewall is None:
        # Without the recorded firewall the lab is not the platform: nothing is built.
        raise LabError(
            f"the recorded Proxmox firewall cannot be applied: {recorded.firewall_error}"
        )
    for note in recorded.notes:
        _say(note)
    if recorded.missing:
        names = ", ".join(sorted(recorded.missing))
        _say(f"releases missing (their checks are not checked): {names}")

    host.ensure_subids(state)
    host.ensure_sysctls(state)
    rootfs = ensure_rootfs(dirs)
    host.ensure_network(state, recorded.plan.bridges, resolver, recorded.firewall)
    _say(
        f"Proxmox firewall on the lab bridges: {len(recorded.firewall.ports)} ports, "
        f"{len(recorded.firewall.nodes)} node stand-ins"
    )
    install_pct(dirs, root)
    lxc.install_hook(dirs)
    if host.ensure_release_server(state, dirs.releases, dirs.logs / "releases.log"):
        _say(f"serving the stand-in releases at {release_base_url()}")

    done = Round()
    said: set[str] = set()
    unsettled = False
    for number in range(1, MAX_ROUNDS + 1):
        # What failed in an earlier round is not retried in this `up` (--keep-going).
        outcome = converge(
            dirs,
            state,
            recorded.plan,
            rootfs,
            keep_going=keep_going,
            said=said,
            failed_before=frozenset(done.failed),
        )
        done.created += outcome.created
        done.ran += outcome.ran
        done.failed |= outcome.failed
        done.unavailable, done.blocked = outcome.unavailable, outcome.blocked
        if outcome.code != ExitCode.OK and not keep_going:
            _say(f"stopped after {time.monotonic() - started:.0f} s (--keep-going runs on)")
            return outcome.code
        # A key that is unknown for a round (its step's inputs changed) keeps its last value.
        keys = {**state.route_host_keys, **exported_route_host_keys(recorded.recordings)}
        copied = keys != state.route_host_keys
        if copied:
            state.route_host_keys = keys
            state.save()
        if not (outcome.ran or copied):
            break
        if number == MAX_ROUNDS:
            unsettled = True
            break
        # What the steps just printed is known now, as it is to `pulumi up` once they ran
        # (and the runtime's route host keys are in the core's config, as the operator
        # copies them): the programs run again, and what that changes runs.
        _say("recording again with what this round's steps printed")
        recorded = record(root, dirs, store, str(resolver), state)
        firewall = recorded.firewall
        if firewall is None:
            raise LabError(
                f"the recorded Proxmox firewall cannot be applied: {recorded.firewall_error}"
            )
        if state.firewall_hash != firewall.digest():
            host.ensure_network(state, recorded.plan.bridges, resolver, firewall)

    # Guests the recording starts are running (after a host reboot, say).
    for vmid, guest in sorted(recorded.plan.guests.items()):
        if guest.started and lxc.exists(dirs, vmid) and lxc.status(vmid) == "stopped":
            _say(f"starting {guest.name}")
            lxc.start(dirs, vmid)

    elapsed = time.monotonic() - started
    summary = f"{done.created} containers made, {done.ran} steps run"
    if done.unavailable or done.blocked:
        summary += (
            f", {len(done.unavailable)} unavailable (a vendor artifact the lab cannot have, "
            f"or a value only such a step prints), {len(done.blocked)} waiting on them"
        )
    if done.failed:
        _say(f"{summary}, {len(done.failed)} FAILED, in {elapsed:.0f} s")
        return ExitCode.FAILED
    if unsettled:
        _say(
            f"{summary}, in {elapsed:.0f} s; NOT SETTLED: round {MAX_ROUNDS} still ran steps, "
            "so what they printed has not been given to the programs: run `lab up` again"
        )
        return ExitCode.FAILED
    _say(f"up: {summary}, in {elapsed:.0f} s")
    return ExitCode.OK


def converge(
    dirs: LabDirs,
    state: LabState,
    plan: LabPlan,
    rootfs: Path,
    *,
    keep_going: bool,
    said: set[str] | None = None,
    report_waiting: bool = True,
    failed_before: frozenset[Action] = frozenset(),
) -> Round:
    """One pass: remove what the recording dropped, make what is missing, run what changed.

    ``said`` holds what earlier passes reported as unavailable or blocked; this pass
    says only what is new of that (nothing of it without ``report_waiting``). What is in
    ``failed_before`` counts as failed again without being retried.
    """
    said = set() if said is None else said

    def say_once(prefix: str, what: str, why: str) -> None:
        # Once per action and state: a later pass says "unchanged since" of the same wait.
        if report_waiting and what not in said:
            said.add(what)
            _say(f"{prefix} {what}: {why}")

    # Containers of an earlier run the recording no longer has go, as Pulumi deletes them.
    for vmid in sorted(set(lxc.lab_vmids(dirs)) | set(state.guests)):
        if vmid not in plan.guests:
            _say(f"removing lab-{vmid}: no longer in the recording")
            lxc.destroy(dirs, vmid)
            state.guests.pop(vmid, None)
            state.save()

    # What a step the recording no longer has printed goes with it (it may be a secret).
    for urn in set(state.printed) - set(plan.steps):
        del state.printed[urn]

    decisions = decide(
        plan,
        guest_specs={vmid: g.spec_hash for vmid, g in state.guests.items()},
        existing=[vmid for vmid in state.guests if lxc.exists(dirs, vmid)],
        step_hashes=state.steps,
        unavailable=state.unavailable,
    )
    total = len(decisions)
    result = Round()
    state.waiting = {}
    for number, decision in enumerate(decisions, 1):
        action = decision.action
        prefix = f"[{number}/{total}]"
        if decision.verb == "unavailable":
            result.unavailable.add(action)
            say_once(prefix, f"unavailable {plan.describe(action)}", decision.reason)
            continue
        if decision.verb == "skip":
            continue
        if action in failed_before:
            result.failed.add(action)
            continue
        stuck = [
            dep
            for dep in plan.depends_on[action]
            if dep in result.failed | result.blocked | result.unavailable
        ]
        if stuck:
            result.blocked.add(action)
            waits = ", ".join(plan.describe(dep) for dep in sorted(stuck)[:3])
            say_once(prefix, f"blocked {plan.describe(action)}", f"waits for {waits}")
            key = plan.steps[action.key].urn if action.kind == "step" else f"guest:{action.key}"
            state.waiting[key] = f"waits for {waits}"
            state.save()
            continue
        began = time.monotonic()
        if action.kind == "guest":
            guest = plan.guests[int(action.key)]
            if decision.verb == "recreate":
                lxc.destroy(dirs, guest.vmid)
                state.guests.pop(guest.vmid, None)
                state.save()
            try:
                outcome = _create_guest(dirs, state, plan, guest, rootfs)
            except LabError as error:
                _say(f"{prefix} {decision.verb} {plan.describe(action)} FAILED: {error}")
                result.failed.add(action)
                if not keep_going:
                    result.code = ExitCode.FAILED
                    return result
                continue
            result.created += 1
            _say(
                f"{prefix} {decision.verb} {plan.describe(action)}: {outcome} "
                f"({time.monotonic() - began:.1f} s)"
            )
            continue
        step = plan.steps[action.key]
        state.steps.pop(step.urn, None)
        state.printed.pop(step.urn, None)
        state.unavailable.pop(step.urn, None)
        state.unavailable_reasons.pop(step.urn, None)
        state.save()
        ran = run_step(dirs, step, set(plan.secrets))
        result.ran += 1
        if ran.returncode == ExitCode.UNAVAILABLE:
            result.unavailable.add(action)
            reason = redact(_tail(ran.stderr), plan.secrets) or "a vendor artifact is missing"
            state.unavailable[step.urn] = step.hash
            state.unavailable_reasons[step.urn] = reason
            state.save()
            _say(f"{prefix} unavailable step {step.name} (exit 69: {reason}); its dependents wait")
            said.add(f"unavailable {plan.describe(action)}")
            continue
        if ran.returncode != 0:
            result.failed.add(action)
            _report_failure(prefix, step.name, step.urn, ran.returncode, ran.stderr, ran.log)
            if not keep_going:
                result.code = ExitCode.FAILED
                return result
            continue
        state.steps[step.urn] = step.hash
        state.printed[step.urn] = {"hash": step.hash, "stdout": ran.stdout}
        state.save()
        _say(f"{prefix} ran step {step.name} ({decision.reason}; {ran.seconds:.1f} s)")
    if result.failed:
        result.code = ExitCode.FAILED
    return result


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _report_failure(prefix: str, name: str, urn: str, code: int, stderr: str, log: Path) -> None:
    tail = stderr.strip().splitlines()[-25:]
    print(f"lab: {prefix} step {name} FAILED with exit code {code}", file=sys.stderr, flush=True)
    print(f"lab:   {urn}", file=sys.stderr)
    if tail:
        print("lab:   stderr (last lines):", file=sys.stderr)
        for line in tail:
            print(f"lab:   | {line}", file=sys.stderr)
    else:
        print("lab:   (no stderr)", file=sys.stderr)
    print(f"lab:   full log: {log}", file=sys.stderr, flush=True)


# --- check ------------------------------------------------------------------------------


class LxcExecutor:
    def status(self, vmid: int) -> str | None:
        return lxc.status(vmid)

    def run(
        self, vmid: int, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60
    ) -> ExecResult:
        done = lxc.attach(vmid, argv, stdin=stdin, timeout=timeout)
        return ExecResult(done.returncode, done.stdout, done.stderr)

    def run_node(
        self, node: str, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60
    ) -> ExecResult:
        path = netns_path().parent / node_netns(node)
        if not path.exists():
            return ExecResult(255, "", f"no stand-in namespace for node {node}")
        try:
            done = subprocess.run(
                ["nsenter", f"--net={path}", "--", *argv],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ExecResult(124, "", f"timed out after {timeout:.0f} s")
        return ExecResult(done.returncode, done.stdout, done.stderr)


def check(*, output_format: str = "table") -> int:
    require_root()
    dirs = LabDirs.from_env()
    if not dirs.state_file.is_file():
        print("lab: the lab is not up (run `lab up` first)", file=sys.stderr)
        return ExitCode.USAGE
    root = project_root()
    store = SecretStore(dirs.secrets_file)
    state = LabState.load(dirs.state_file)
    recorded = record(root, dirs, store, str(host.host_resolver()), state)
    plan = recorded.plan
    held = frozenset(int(key[6:]) for key in state.waiting if key.startswith("guest:"))
    ctx = CheckContext(executor=LxcExecutor(), plan=plan, missing=recorded.missing, held=held)
    health = health_from_steps(plan, releases=referenced_releases(LAB_OVERLAY))
    have = {(check.vmid, check.name) for check in health}
    health += [c for c in health_checks(SERVICE_HEALTH, plan) if (c.vmid, c.name) not in have]
    reasons = {
        **{s.urn: DEFERRED for s in plan.steps.values() if s.deferred},
        **{
            urn: state.unavailable_reasons.get(urn, "a vendor artifact is missing")
            for urn, digest in state.unavailable.items()
            if urn in plan.steps and plan.steps[urn].hash == digest
        },
        **state.waiting,
    }
    health, skipped = not_run(health, reasons, plan)
    results = held_back(run_all(ctx, health), state.waiting) + skipped
    results += unavailable_results(
        plan, state.unavailable, {**state.unavailable_reasons, **state.waiting}, state.waiting
    )
    results += api_server_checks(ctx, list(state.api_servers.values()), recorded.recordings)
    # Last, alone: its throwaway listeners would show in the other checks' `ss`.
    firewall = recorded.firewall
    if firewall is None:
        detail = f"cannot be read: {recorded.firewall_error}"
        results.append(CheckResult("lab", None, "reachability matrix", False, detail))
    elif state.firewall_hash != firewall.digest():
        detail = "not run: the recording's firewall is not the one `lab up` loaded (run `lab up`)"
        results.append(CheckResult("lab", None, "reachability matrix", False, detail))
    else:
        results += firewall_checks(ctx, firewall)
    results.insert(0, _firewall_check(firewall, state))
    results.insert(0, _uplink_check())
    sys.stdout.write(render_json(results) if output_format == "json" else render_table(results))
    return exit_code(results)


def _firewall_check(firewall: LabFirewall | None, state: LabState) -> CheckResult:
    present = host.firewall_present()
    nodes = ", ".join(n.node for n in firewall.nodes) if firewall else ""
    current = firewall is not None and state.firewall_hash == firewall.digest()
    if not present:
        detail = f"nft table bridge or inet {FIREWALL_TABLE} missing (run `lab up`)"
    elif not current:
        detail = "the recording's firewall changed since `lab up` loaded it (run `lab up`)"
    else:
        detail = (
            f"nft tables bridge and inet {FIREWALL_TABLE} in the lab namespace, as recorded; "
            f"node stand-ins: {nodes or 'none'}"
        )
    return CheckResult("lab", None, "proxmox firewall applied", present and current, detail)


def _uplink_check() -> CheckResult:
    present = host.host_table_present()
    detail = (
        f"nft table ip {HOST_NFT_TABLE}: out TCP 80/443 and DNS to the host resolver only; "
        "platform networks dropped"
        if present
        else f"nft table ip {HOST_NFT_TABLE} missing"
    )
    return CheckResult("lab", None, "uplink filter", present, detail)


# --- down -------------------------------------------------------------------------------


def down(*, purge_cache: bool = False) -> int:
    require_root()
    dirs = LabDirs.from_env()
    had_state = dirs.state.exists()
    state = LabState.load(dirs.state_file, any_version=True)
    if host.stop_release_server(state):
        _say("stopped the release server")
    for vmid in sorted(set(lxc.lab_vmids(dirs)) | set(state.guests)):
        lxc.destroy(dirs, vmid)
        _say(f"removed lab-{vmid}")
    for item in host.remove_network(state):
        _say(f"removed {item}")
    host.restore_subids(state)
    for item in host.restore_sysctls(state):
        _say(f"restored {item}")
    if dirs.state.exists():
        shutil.rmtree(dirs.state)
        if had_state:
            _say(f"removed {dirs.state}")
    if purge_cache:
        for path in purge(dirs):
            _say(f"removed {path}")
        if dirs.apt_archives.exists():
            shutil.rmtree(dirs.apt_archives)
            _say(f"removed {dirs.apt_archives}")
    _say("down")
    return ExitCode.OK
