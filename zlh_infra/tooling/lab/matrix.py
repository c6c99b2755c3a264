"""``lab check``'s firewall checks: a reachability matrix of real packets, and spoofing.

For every sender (a guest NIC, or a node stand-in) and every receiver on the same lab
network, on every port the platform names and a fixed sample of others, a real TCP
connection and a real UDP exchange are tried from inside the sender, and the outcome
is compared with the evaluator's prediction (``LabFirewall.predict``): every
disagreement is a failed check naming sender, receiver, protocol and port. A receiver
must answer when the packet gets through, so each port it does not serve gets a
throwaway listener for the run. Then a game container takes zpack-api's address, its
MAC, both, and a node's address, and tries the agents and the core services: nothing
may answer. Pure: commands run through the check ``Executor``.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zlh_infra.platform.catalogue import (
    AGENT_PORT,
    CONTROL_PLANE_SERVICES,
    EDGE_SERVICES,
    FLEET_MANAGEMENT_INGRESS,
    METRICS_PORT,
    RUNTIME_SERVICES,
    Peer,
)
from zlh_infra.platform.reachability import TCP, UDP, AddressSet
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole
from zlh_infra.tooling.lab.checks import CheckContext, CheckResult, ExecResult
from zlh_infra.tooling.lab.firewall import LabFirewall, Port, Verdict

#: Ports no rule names, probed as well: what a rule forgot must stay closed too.
PORT_SAMPLE = (7, 21, 23, 2049, 3128, 5405, 5900, 6443, 8006, 9090, 11211, 27017, 40000, 60000)
PROTOCOLS = (TCP, UDP)
#: How long a probe waits for a connection or an answer (the lab's networks are local).
PROBE_TIMEOUT = 2.0
#: How many probes one sender has in flight at once.
PROBE_WINDOW = 1024
#: A throwaway listener ends itself after this long, whatever becomes of ``lab check``.
LISTENER_SECONDS = 300
LISTENER_MARK = "zlh-lab-listener"
WORKERS = 8
PBS = "zlh-back"
PBS_PORT = next(
    entry.port for entry in CONTROL_PLANE_SERVICES[PBS].ingress if entry.source == Peer.NODES
)
API = "zpack-api"

Runner = Callable[[str, Sequence[str], str | None, float], ExecResult]
V = TypeVar("V")
R = TypeVar("R")


def platform_ports(firewall: LabFirewall) -> list[int]:
    """Every port the platform names (catalogue and recorded rules), and the sample."""
    found = {AGENT_PORT, METRICS_PORT, *PORT_SAMPLE}
    for specs in (CONTROL_PLANE_SERVICES, EDGE_SERVICES, RUNTIME_SERVICES):
        for spec in specs.values():
            found |= {entry.port for entry in spec.firewall_ingress}
    found |= {entry.port for entry in FLEET_MANAGEMENT_INGRESS}
    for settings in firewall.settings.values():
        for reading in (*settings.inbound, *settings.outbound):
            for low, high in reading.ports or ():
                found |= {low, high}
    return sorted(port for port in found if 0 < port < 65536)


# --- what is probed ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    sender: Port
    receiver: Port
    proto: str
    port: int
    expected: Verdict

    @property
    def key(self) -> str:
        return f"{self.sender.name}>{self.receiver.name}/{self.proto}/{self.port}"

    def describe(self) -> str:
        return (
            f"{self.sender.describe()} -> {self.receiver.describe()} "
            f"{self.proto.upper()} {self.port}"
        )


def matrix_cells(firewall: LabFirewall, owners: Iterable[str], ports: Sequence[int]) -> list[Cell]:
    """Every (sender, receiver, protocol, port) among the ports of ``owners``.

    A sender and a receiver share a lab network; a guest is not probed from its own
    NICs. What crosses from one network to another goes through a router (OPNsense on
    Proxmox), whose own filtering the Proxmox firewall does not decide.
    """
    up = set(owners)
    ports_up = [p for p in firewall.ports if p.owner in up and p.address is not None]
    cells = []
    for sender in ports_up:
        for receiver in ports_up:
            if receiver.owner == sender.owner or receiver.bridge != sender.bridge:
                continue
            for proto in PROTOCOLS:
                for port in ports:
                    verdict = firewall.predict(sender, receiver, proto, port)
                    cells.append(Cell(sender, receiver, proto, port, verdict))
    return cells


# --- the scripts run in guests ------------------------------------------------------------

#: Binds every (proto, address, port) of argv[1], forks a listener holding them for
#: ``seconds`` (a TCP accept is closed at once, a UDP datagram is echoed) and prints
#: ``{"pid", "listening", "failed"}``.
LISTENER = r"""
import json, os, selectors, socket, sys, time
spec = json.loads(sys.argv[1])
sockets, failed = [], []
for proto, address, port in spec["listen"]:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    if proto == "tcp":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
        if proto == "tcp":
            sock.listen(256)
    except OSError as error:
        failed.append([proto, address, port, error.strerror or str(error)])
        sock.close()
        continue
    sock.setblocking(False)
    sockets.append((proto, sock))
child = os.fork()
if child:
    print(json.dumps({"pid": child, "listening": len(sockets), "failed": failed}), flush=True)
    os._exit(0)
os.setsid()
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
selector = selectors.DefaultSelector()
for proto, sock in sockets:
    selector.register(sock, selectors.EVENT_READ, proto)
end = time.monotonic() + float(spec["seconds"])
while time.monotonic() < end:
    for key, _ in selector.select(timeout=1.0):
        try:
            if key.data == "tcp":
                key.fileobj.accept()[0].close()
            else:
                data, peer = key.fileobj.recvfrom(4096)
                key.fileobj.sendto(data, peer)
        except OSError:
            pass
"""

#: Tries every probe of stdin (``{"timeout", "window", "probes": [[key, proto, source,
#: destination, port]]}``) at once and prints ``{key: outcome}``: ``open`` (connected,
#: or answered), ``timeout``, or the errno name (``ECONNREFUSED``...). A UDP probe is a
#: DNS query for ``localhost`` (a STUN binding request on 3478), sent again while it waits.
PROBE = r"""
import errno, json, os, resource, selectors, socket, struct, sys, time
spec = json.load(sys.stdin)
timeout = float(spec["timeout"])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
if soft < want:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    except (ValueError, OSError):
        pass
window = max(8, min(int(spec["window"]), soft - 64))
DNS = b"\x5a\x4c\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x09localhost\x00\x00\x01\x00\x01"
STUN = struct.pack("!HHI", 1, 0, 0x2112A442) + os.urandom(12)
def payload(port):
    return STUN if port == 3478 else DNS
def name(code):
    return errno.errorcode.get(code, str(code))
results, active = {}, {}
pending = list(reversed(spec["probes"]))
selector = selectors.DefaultSelector()
def finish(sock, outcome):
    results[active.pop(sock)[0]] = outcome
    try:
        selector.unregister(sock)
    except (KeyError, ValueError):
        pass
    sock.close()
def start(probe):
    key, proto, source, destination, port = probe
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.setblocking(False)
    try:
        if source:
            sock.bind((source, 0))
        if proto == "tcp":
            code = sock.connect_ex((destination, port))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, os.strerror(code))
            selector.register(sock, selectors.EVENT_WRITE)
        else:
            sock.connect((destination, port))
            sock.send(payload(port))
            selector.register(sock, selectors.EVENT_READ)
    except OSError as error:
        sock.close()
        results[key] = name(error.errno)
        return
    now = time.monotonic()
    active[sock] = (key, proto, port, now, now)
while pending or active:
    while pending and len(active) < window:
        start(pending.pop())
    for event, _ in selector.select(timeout=0.05):
        sock = event.fileobj
        if active[sock][1] == "tcp":
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            finish(sock, "open" if code == 0 else name(code))
        else:
            try:
                sock.recv(4096)
                finish(sock, "open")
            except OSError as error:
                finish(sock, name(error.errno))
    now = time.monotonic()
    for sock, (key, proto, port, started, sent) in list(active.items()):
        if now - started >= timeout:
            finish(sock, "timeout")
        elif proto == "udp" and now - sent >= timeout / 4:
            try:
                sock.send(payload(port))
            except OSError:
                pass
            active[sock] = (key, proto, port, started, now)
print(json.dumps(results))
"""

#: Run in a game container as ``sh -c SPOOF sh <dev> <own MAC> <address/len|""> <MAC|"">
#: <probe script>``: takes the address and/or MAC on ``dev``, runs the probe (stdin), and
#: gives the NIC back its own MAC and addresses whatever happens.
SPOOF = """\
set -u
dev=$1 own=$2 address=$3 mac=$4 probe=$5
restore() {
  [ -z "$address" ] || ip addr del "$address" dev "$dev" 2>/dev/null
  [ -z "$mac" ] || ip link set dev "$dev" address "$own"
}
trap restore EXIT
if [ -n "$mac" ]; then ip link set dev "$dev" address "$mac" || exit 3; fi
if [ -n "$address" ]; then ip addr add "$address" dev "$dev" || exit 3; fi
python3 -c "$probe"
"""


def listening(ss_output: str) -> set[tuple[str, int]]:
    """(address, port) of each socket in ``ss -lntH`` / ``ss -lnuH`` output."""
    found = set()
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, port = fields[3].rpartition(":")
        if port.isdigit():
            found.add((address.strip("[]").split("%")[0], int(port)))
    return found


def serves(sockets: set[tuple[str, int]], address: str, port: int) -> bool:
    """Whether a socket answers IPv4 ``address:port``: bound to it, or to every address
    (``0.0.0.0``, or ``*`` for a dual-stack socket; ``[::]`` alone is IPv6 only)."""
    return any(port == p and a in (address, "0.0.0.0", "*") for a, p in sockets)


def outcome_open(outcome: str) -> bool:
    return outcome == "open"


# --- running it ---------------------------------------------------------------------------


@dataclass(slots=True)
class MatrixRun:
    """What one run of the matrix measured."""

    cells: list[Cell]
    #: Cell key -> outcome (``open``, ``timeout``, an errno name).
    outcomes: dict[str, str] = field(default_factory=dict)
    #: Owner -> the listener's pid there.
    listeners: dict[str, int] = field(default_factory=dict)
    #: (proto, address, port) -> why no listener could be made.
    unlistened: dict[tuple[str, str, int], str] = field(default_factory=dict)
    #: Owner -> why its probes or listener did not run.
    broken: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def outcome(self, cell: Cell) -> str:
        return self.outcomes.get(cell.key, "not probed")


def _runner(ctx: CheckContext) -> Runner:
    def run(owner: str, argv: Sequence[str], stdin: str | None, timeout: float) -> ExecResult:
        kind, _, name = owner.partition(":")
        if kind == "guest":
            return ctx.executor.run(int(name), argv, stdin=stdin, timeout=timeout)
        return ctx.executor.run_node(name, argv, stdin=stdin, timeout=timeout)

    return run


def _parallel(job: Callable[[str, V], R], items: Mapping[str, V]) -> dict[str, R]:
    """``job(key, value)`` for every item, several at once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {key: pool.submit(job, key, value) for key, value in items.items()}
        return {key: future.result() for key, future in futures.items()}


def _last_json(result: ExecResult) -> Any:
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return None


def start_listeners(run: Runner, cells: Sequence[Cell], measured: MatrixRun) -> None:
    """A throwaway listener in each receiver for every port of a cell it does not serve."""
    wanted: dict[str, set[tuple[str, str, int]]] = {}
    owners = {cell.receiver.owner for cell in cells}

    def served(owner: str, _: None) -> tuple[set[tuple[str, int]], set[tuple[str, int]]] | str:
        tcp = run(owner, ["ss", "-lntH"], None, 30)
        udp = run(owner, ["ss", "-lnuH"], None, 30)
        if tcp.returncode != 0 or udp.returncode != 0:
            return f"ss failed: {(tcp.stderr or udp.stderr).strip()[:200]}"
        return listening(tcp.stdout), listening(udp.stdout)

    sockets = _parallel(served, dict.fromkeys(owners))
    for cell in cells:
        owner = cell.receiver.owner
        found = sockets[owner]
        if isinstance(found, str):
            measured.broken[owner] = found
            continue
        address = str(cell.receiver.address.ip) if cell.receiver.address else ""
        if not serves(found[0 if cell.proto == TCP else 1], address, cell.port):
            wanted.setdefault(owner, set()).add((cell.proto, address, cell.port))

    def listen(owner: str, items: set[tuple[str, str, int]]) -> ExecResult:
        spec = json.dumps({"listen": sorted(items), "seconds": LISTENER_SECONDS})
        return run(owner, ["python3", "-c", LISTENER, spec, LISTENER_MARK], None, 60)

    started = _parallel(listen, wanted)
    for owner, result in started.items():
        answer = _last_json(result)
        if result.returncode != 0 or not isinstance(answer, dict) or "pid" not in answer:
            measured.broken[owner] = f"no listener: exit {result.returncode} {result.stderr[-200:]}"
            continue
        measured.listeners[owner] = int(answer["pid"])
        for proto, address, port, why in answer.get("failed", []):
            measured.unlistened[(proto, address, port)] = f"{owner}: {why}"


def stop_listeners(run: Runner, measured: MatrixRun) -> list[str]:
    """Stop every listener the run started; what could not be stopped."""
    command = f'grep -qa {LISTENER_MARK} /proc/"$1"/cmdline 2>/dev/null && kill "$1"'

    def stop(owner: str, pid: int) -> ExecResult:
        return run(owner, ["sh", "-c", command, "sh", str(pid)], None, 30)

    done = _parallel(stop, measured.listeners)
    return [owner for owner, result in done.items() if result.returncode != 0]


def probe_all(
    run: Runner, probes: Mapping[str, list[list[Any]]]
) -> tuple[dict[str, str], dict[str, str]]:
    """Run each sender's probes inside it, all senders at once.

    Returns each probe's outcome by key, and why a sender's probes did not run.
    """

    def probe(owner: str, items: list[list[Any]]) -> ExecResult:
        spec = json.dumps({"timeout": PROBE_TIMEOUT, "window": PROBE_WINDOW, "probes": items})
        rounds = len(items) // PROBE_WINDOW + 1
        return run(owner, ["python3", "-c", PROBE], spec, 30 + rounds * PROBE_TIMEOUT * 2)

    done = _parallel(probe, probes)
    outcomes: dict[str, str] = {}
    broken: dict[str, str] = {}
    for owner, result in done.items():
        answer = _last_json(result)
        if result.returncode != 0 or not isinstance(answer, dict):
            broken[owner] = f"probes failed: exit {result.returncode} {result.stderr[-200:]}"
        else:
            outcomes.update({str(key): str(value) for key, value in answer.items()})
    return outcomes, broken


def measure(run: Runner, cells: Sequence[Cell], clock: Callable[[], float]) -> MatrixRun:
    """Listeners, then every cell's probe; listeners stay up for the spoofing attempts."""
    measured = MatrixRun(cells=list(cells))
    began = clock()
    start_listeners(run, cells, measured)
    probes: dict[str, list[list[Any]]] = {}
    for cell in cells:
        source = str(cell.sender.address.ip) if cell.sender.address else ""
        target = str(cell.receiver.address.ip) if cell.receiver.address else ""
        probes.setdefault(cell.sender.owner, []).append(
            [cell.key, cell.proto, source, target, cell.port]
        )
    outcomes, broken = probe_all(run, probes)
    measured.outcomes.update(outcomes)
    for owner, why in broken.items():
        measured.broken.setdefault(owner, why)
    measured.seconds = clock() - began
    return measured


# --- judging it ---------------------------------------------------------------------------


def _label(port: Port) -> tuple[str, int | None]:
    return port.label, port.vmid


def judge(measured: MatrixRun) -> list[CheckResult]:
    """One failed check per disagreement with the evaluator, and the matrix's summary."""
    results = []
    agree = reachable = 0
    for cell in measured.cells:
        guest, vmid = _label(cell.sender)
        check = f"reachability {cell.describe()}"
        address = str(cell.receiver.address.ip) if cell.receiver.address else ""
        broken = measured.broken.get(cell.sender.owner) or measured.broken.get(cell.receiver.owner)
        unlistened = measured.unlistened.get((cell.proto, address, cell.port))
        # Without its listener a probe proves nothing either way: a hole would only
        # show as a refusal, like a closed port.
        if broken or unlistened:
            why = broken or f"no listener: {unlistened}"
            results.append(CheckResult(guest, vmid, check, False, f"not measured: {why}"))
            continue
        outcome = measured.outcome(cell)
        got = outcome_open(outcome)
        reachable += got
        if got == cell.expected.reachable:
            agree += 1
            continue
        said = "reachable" if cell.expected.reachable else "blocked"
        results.append(
            CheckResult(
                guest,
                vmid,
                check,
                False,
                f"measured {outcome}, the evaluator predicts {said}: {cell.expected.why}",
            )
        )
    senders = len({c.sender.owner for c in measured.cells})
    receivers = len({c.receiver.name for c in measured.cells})
    ports = len({c.port for c in measured.cells})
    total = len(measured.cells)
    detail = (
        f"{total} probes ({senders} senders, {receivers} receiving NICs and node "
        f"addresses, {ports} ports, TCP and UDP): {reachable} reachable, {agree} agree with "
        f"the evaluator, {total - agree} do not; {measured.seconds:.1f} s"
    )
    summary = CheckResult(
        "lab", None, "reachability matrix", bool(total) and agree == total, detail
    )
    return [summary, *results]


def isolation(firewall: LabFirewall, measured: MatrixRun) -> list[CheckResult]:
    """Each game container reaches no other container's agent, no PBS and no node."""
    results = []
    by_sender: dict[str, list[Cell]] = {}
    for cell in measured.cells:
        if cell.sender.vmid is not None:
            by_sender.setdefault(cell.sender.owner, []).append(cell)
    for _owner, cells in sorted(by_sender.items()):
        first = cells[0].sender
        if first.vmid is None or DEFAULT_SCHEME.role_of(first.vmid) is not VmidRole.GAME:
            continue
        reached = []
        tried = 0
        for cell in cells:
            receiver = cell.receiver
            agent = cell.proto == TCP and cell.port == AGENT_PORT and receiver.vmid is not None
            pbs = receiver.label == PBS and cell.proto == TCP and cell.port == PBS_PORT
            if not (agent or pbs or receiver.is_node):
                continue
            tried += 1
            if outcome_open(measured.outcome(cell)):
                reached.append(cell.describe())
        check = "reaches no other agent, no PBS, no node"
        if not tried:
            results.append(CheckResult(first.label, first.vmid, check, False, "nothing probed"))
            continue
        detail = (
            f"{tried} probes, none answered"
            if not reached
            else f"answered: {'; '.join(reached[:8])}" + (" ..." if len(reached) > 8 else "")
        )
        results.append(CheckResult(first.label, first.vmid, check, not reached, detail))
    return results


# --- spoofing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spoof:
    """One forged identity a game container takes on its management NIC."""

    name: str
    #: ``address/len`` added to the NIC, and the MAC set on it (empty: its own).
    address: str
    mac: str
    #: The genuine owner of what is forged, whose probes in the matrix show the
    #: targets answer when the real one asks.
    genuine: Port


def spoofs(firewall: LabFirewall, game: Port) -> list[Spoof]:
    api = next(
        (p for p in firewall.ports if p.label == API and p.bridge == game.bridge and p.address),
        None,
    )
    found = []
    if api is not None and api.address is not None:
        address = f"{api.address.ip}/{api.address.network.prefixlen}"
        found += [
            Spoof("takes zpack-api's address", address, "", api),
            Spoof("takes zpack-api's MAC", "", api.mac, api),
            Spoof("takes zpack-api's address and MAC", address, api.mac, api),
        ]
    node = next((p for p in firewall.ports if p.is_node and p.bridge == game.bridge), None)
    if node is not None and node.address is not None:
        address = f"{node.address.ip}/{node.address.network.prefixlen}"
        found.append(Spoof(f"takes node {node.label}'s address", address, "", node))
    return found


def spoof_targets(
    firewall: LabFirewall, game: Port, owners: set[str], ports: Sequence[int]
) -> list[tuple[Port, str, int]]:
    """Every other fleet container's agent, and every core service on the game's network."""
    targets = []
    for port in firewall.ports:
        if port.owner not in owners or port.bridge != game.bridge or port.address is None:
            continue
        if port.vmid is None or port.owner == game.owner:
            continue
        role = DEFAULT_SCHEME.role_of(port.vmid)
        if role in (VmidRole.GAME, VmidRole.DEV):
            targets.append((port, TCP, AGENT_PORT))
        elif port.label in CONTROL_PLANE_SERVICES and port.label != API:
            targets += [(port, proto, number) for proto in PROTOCOLS for number in ports]
    return targets


def _nic(run: Runner, owner: str, dev: str) -> tuple[str, list[str]] | None:
    shown = run(owner, ["ip", "-j", "addr", "show", "dev", dev], None, 30)
    try:
        link = json.loads(shown.stdout)[0]
    except (json.JSONDecodeError, IndexError, KeyError):
        return None
    addresses = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
    return str(link.get("address", "")), sorted(addresses)


def spoofing(
    ctx: CheckContext,
    firewall: LabFirewall,
    measured: MatrixRun,
    owners: set[str],
    ports: Sequence[int],
) -> list[CheckResult]:
    """From one game container, each forged identity reaches no agent and no core service."""
    run = _runner(ctx)
    games = [
        p
        for p in firewall.ports
        if p.vmid is not None
        and p.owner in owners
        and p.address is not None
        and DEFAULT_SCHEME.role_of(p.vmid) is VmidRole.GAME
        and any(q.label == API and q.bridge == p.bridge for q in firewall.ports)
    ]
    if not games:
        return [CheckResult("lab", None, "spoofing", False, "no running game container to try")]
    game = games[0]
    own = str(game.address.ip) if game.address else ""
    guest = ctx.plan.guests.get(game.vmid or -1)
    dev = guest.nics[int(game.iface.removeprefix("net"))].name if guest else "eth0"
    targets = spoof_targets(firewall, game, owners, ports)
    targeted = set(targets)
    before = _nic(run, game.owner, dev)
    results = []
    for spoof in spoofs(firewall, game):
        check = f"spoofing: {spoof.name}"
        source = spoof.address.split("/")[0] if spoof.address else own
        items = [
            [f"{t.name}/{proto}/{number}", proto, source, str(t.address.ip), number]
            for t, proto, number in targets
            if t.address is not None
        ]
        spec = json.dumps({"timeout": PROBE_TIMEOUT, "window": PROBE_WINDOW, "probes": items})
        argv = ["sh", "-c", SPOOF, "sh", dev, game.mac, spoof.address, spoof.mac, PROBE]
        done = run(game.owner, argv, spec, 120)
        answer = _last_json(done)
        after = _nic(run, game.owner, dev)
        if after != before:
            results.append(
                CheckResult(
                    game.label,
                    game.vmid,
                    check,
                    False,
                    f"{dev} not restored: was {before}, now {after}",
                )
            )
            continue
        if done.returncode != 0 or not isinstance(answer, dict):
            detail = f"could not try: exit {done.returncode} {done.stderr.strip()[-200:]}"
            results.append(CheckResult(game.label, game.vmid, check, False, detail))
            continue
        answered = sorted(key for key, outcome in answer.items() if outcome_open(str(outcome)))
        genuine = [
            cell.describe()
            for cell in measured.cells
            if cell.sender.owner == spoof.genuine.owner
            and (cell.receiver, cell.proto, cell.port) in targeted
            and outcome_open(measured.outcome(cell))
        ]
        model = firewall.settings[game.name].sender
        if spoof.address:
            can = model is None or bool(model.forges(AddressSet.of(source)))
            verb = "can" if can else "cannot"
            said = f"the evaluator's sender model says it {verb} send from {source}"
        else:
            held = model is not None and model.macfilter
            said = "its macfilter holds it to its own MAC" if held else "it has no macfilter"
        if answered:
            detail = f"answered from {source}: {', '.join(answered[:8])}; {said}"
            ok = False
        elif not genuine:
            detail = (
                f"none of {len(items)} targets answered, but none answers the genuine "
                f"{spoof.genuine.label} either: nothing shows the attempt could have worked"
            )
            ok = False
        else:
            detail = (
                f"none of {len(items)} targets answered (agents of the fleet, core services); "
                f"{len(genuine)} answer the genuine {spoof.genuine.label}; {said}; {dev} restored"
            )
            ok = True
        results.append(CheckResult(game.label, game.vmid, check, ok, detail))
    return results


def firewall_checks(
    ctx: CheckContext,
    firewall: LabFirewall,
    *,
    ports: Sequence[int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[CheckResult]:
    """The matrix, its disagreements, each game container's isolation, and spoofing."""
    ports = list(ports) if ports is not None else platform_ports(firewall)
    run = _runner(ctx)
    owners = set()
    for vmid in sorted(ctx.plan.guests):
        if vmid not in ctx.held and ctx.executor.status(vmid) == "running":
            owners.add(f"guest:{vmid}")
    for stand_in in firewall.nodes:
        if run(f"node:{stand_in.node}", ["true"], None, 30).returncode == 0:
            owners.add(f"node:{stand_in.node}")
    cells = matrix_cells(firewall, owners, ports)
    measured = measure(run, cells, clock)
    try:
        results = judge(measured)
        results += isolation(firewall, measured)
        began = clock()
        results += spoofing(ctx, firewall, measured, owners, ports)
        spent = clock() - began
        results[0] = CheckResult(
            results[0].guest,
            results[0].vmid,
            results[0].check,
            results[0].ok,
            f"{results[0].detail}; spoofing attempts {spent:.1f} s",
        )
    finally:
        left = stop_listeners(run, measured)
    if left:
        results.append(
            CheckResult("lab", None, "throwaway listeners stopped", False, ", ".join(left))
        )
    return results
