"""Read one host through its Proxmox VE API: only GET requests, and errors that name the host.

The audit needs a complete picture or none: a guest it could not read might be the
one that breaks a rule. So any failure (host unreachable, TLS, token refused, a
privilege missing, an unexpected answer) stops the read of that host with a
:class:`HostReadError`, and the caller reports no findings at all.

Listing endpoints (``/cluster/resources``, ``/pools``, ``/access/acl``,
``/access/users``) silently leave out what the token may not see, so the token's
privileges are checked before anything is read.
"""

from __future__ import annotations

import re
import ssl
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import requests

from zlh_infra.platform.api_identity import USER_ID
from zlh_infra.platform.wire_numbers import whole_number
from zlh_infra.tooling.audit.targets import HostTarget

#: What the audit reads, as (ACL path, privilege): PVEAuditor on / grants all of them.
REQUIRED_PRIVILEGES: tuple[tuple[str, str], ...] = (
    ("/", "Sys.Audit"),  # datacenter firewall, security groups, backup jobs
    ("/vms", "VM.Audit"),  # every guest, its config and its firewall
    ("/pool", "Pool.Audit"),  # pools and their members (backup jobs may select by pool)
    ("/storage", "Datastore.Audit"),  # the storages backup jobs write to
)
#: For zpack-api's identity (a runtime host's to judge, the core's to lack): without
#: Sys.Audit there, ``/access/acl`` and ``/access/users`` answer with less than it holds.
IDENTITY_PRIVILEGES: tuple[tuple[str, str], ...] = (
    ("/access", "Sys.Audit"),  # every ACL entry
    ("/access/groups", "Sys.Audit"),  # every user, and zpack-api's groups and tokens
)
GuestKind = Literal["lxc", "qemu"]


def required_privileges(target: HostTarget) -> tuple[tuple[str, str], ...]:
    """Every (ACL path, privilege) the audit of ``target`` reads with."""
    return (
        *REQUIRED_PRIVILEGES,
        (f"/nodes/{target.node}", "Sys.Audit"),  # the node's firewall
        *IDENTITY_PRIVILEGES,
    )


class HostReadError(Exception):
    """A host could not be read completely; the message names the host and the cause."""


class Api(Protocol):
    """The one call the audit makes: a GET of an API path (``nodes/pve/lxc``)."""

    def get(self, path: str, /, **params: Any) -> Any: ...


@dataclass(slots=True)
class GuestRecord:
    """One guest as the API shows it."""

    kind: GuestKind
    vmid: int
    node: str
    name: str
    template: bool
    pool: str | None
    config: dict[str, Any]
    firewall_options: dict[str, Any]
    firewall_rules: list[dict[str, Any]]
    aliases: list[dict[str, Any]]
    ipsets: dict[str, list[dict[str, Any]]]


@dataclass(slots=True)
class IdentityRecord:
    """zpack-api's identity as a host holds it: every role and ACL entry of the host, and
    the user (None when the host has no such user)."""

    roles: list[dict[str, Any]]
    acls: list[dict[str, Any]]
    user: dict[str, Any] | None


@dataclass(slots=True)
class HostSnapshot:
    """Everything the rules need from one host, read in one go."""

    target: HostTarget
    version: str
    nodes: list[str]
    guests: list[GuestRecord] = field(default_factory=list)
    firewall_options: dict[str, Any] = field(default_factory=dict)
    aliases: list[dict[str, Any]] = field(default_factory=list)
    ipsets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    security_groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Pool id -> the VMIDs of its guests.
    pools: dict[str, set[int]] = field(default_factory=dict)
    backup_jobs: list[dict[str, Any]] = field(default_factory=list)
    #: storage.cfg's entries (``storage``, ``type``, ...): where a job's backups go.
    storages: list[dict[str, Any]] = field(default_factory=list)
    #: The datacenter's own rules (cluster.fw), which apply to every node's traffic.
    cluster_rules: list[dict[str, Any]] = field(default_factory=list)
    #: The node's firewall options and rules (host.fw).
    node_firewall_options: dict[str, Any] = field(default_factory=dict)
    node_rules: list[dict[str, Any]] = field(default_factory=list)
    #: zpack-api's identity (on the core host: what must not be there).
    identity: IdentityRecord | None = None


def connect(target: HostTarget, timeout: float) -> Api:
    """A proxmoxer client for the host, authenticated by its API token."""
    from proxmoxer import ProxmoxAPI  # type: ignore[import-untyped]

    try:
        api = ProxmoxAPI(
            target.host,
            backend="https",
            service="PVE",
            user=target.token.user,
            token_name=target.token.name,
            token_value=target.token.secret,
            verify_ssl=target.verify,
            timeout=timeout,
        )
    except Exception as error:  # a client that cannot even be set up: still one clear line
        raise HostReadError(f"{target.label}: cannot set up the API client: {error}") from error
    return _ProxmoxerApi(api, quiet=target.verify is False)


class _ProxmoxerApi:
    """Adapts proxmoxer's attribute-chaining client to :class:`Api`; offers nothing but GET."""

    def __init__(self, api: Any, *, quiet: bool) -> None:
        self._api = api
        self._quiet = quiet

    def get(self, path: str, /, **params: Any) -> Any:
        if not self._quiet:
            return self._api.get(path, **params)
        # Unverified TLS was asked for and warned about once; not again for every request.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
            return self._api.get(path, **params)


def read_host(target: HostTarget, api: Api) -> HostSnapshot:
    """Read the host's guests, firewall, pools and backup jobs; HostReadError on any failure."""
    reader = _Reader(target, api)
    return reader.read()


class _Reader:
    def __init__(self, target: HostTarget, api: Api) -> None:
        self.target = target
        self.api = api

    def read(self) -> HostSnapshot:
        version = self._dict("version")
        self._check_privileges()
        nodes = self._nodes()
        snapshot = HostSnapshot(
            target=self.target, version=str(version.get("version") or "?"), nodes=nodes
        )
        for item in self._list("cluster/resources", type="vm"):
            if item.get("type") in ("lxc", "qemu"):
                snapshot.guests.append(self._guest(item))
        snapshot.guests.sort(key=lambda guest: guest.vmid)
        snapshot.firewall_options = self._dict("cluster/firewall/options")
        snapshot.aliases = self._list("cluster/firewall/aliases")
        snapshot.ipsets = self._ipsets("cluster/firewall")
        for group in self._list("cluster/firewall/groups"):
            name = str(group.get("group") or "")
            if name:
                snapshot.security_groups[name] = self._list(f"cluster/firewall/groups/{name}")
        for pool in self._list("pools"):
            poolid = str(pool.get("poolid") or "")
            if poolid:
                members = self._dict(f"pools/{poolid}").get("members") or []
                snapshot.pools[poolid] = {
                    vmid
                    for member in members
                    if isinstance(member, Mapping)
                    and (vmid := whole_number(member.get("vmid"))) is not None
                }
        snapshot.backup_jobs = self._list("cluster/backup")
        snapshot.storages = self._list("storage")
        snapshot.cluster_rules = self._list("cluster/firewall/rules")
        node = self.target.node
        snapshot.node_firewall_options = self._dict(f"nodes/{node}/firewall/options")
        snapshot.node_rules = self._list(f"nodes/{node}/firewall/rules")
        snapshot.identity = self._identity()
        return snapshot

    def _identity(self) -> IdentityRecord:
        roles = self._list("access/roles")
        acls = self._list("access/acl")
        # The user's own answer fails for a user that does not exist: look it up first.
        users = self._list("access/users")
        present = any(str(user.get("userid") or "") == USER_ID for user in users)
        user = self._dict(f"access/users/{USER_ID}") if present else None
        return IdentityRecord(roles=roles, acls=acls, user=user)

    def _nodes(self) -> list[str]:
        nodes = {str(n.get("node")): str(n.get("status") or "") for n in self._list("nodes")}
        node = self.target.node
        if node not in nodes:
            raise HostReadError(
                f"{self.target.label}: the host has no node {node!r} (its nodes: "
                f"{', '.join(sorted(nodes)) or 'none'}); check the endpoint and the node in "
                "zlh-infra:proxmox (or --host / --node)"
            )
        if nodes[node] not in ("online", ""):
            raise HostReadError(f"{self.target.label}: node {node} is {nodes[node]}")
        return sorted(nodes)

    def _check_privileges(self) -> None:
        # Asked path by path: Proxmox then answers what the token holds there, with
        # propagation and NoAccess below a grant already applied.
        held: dict[str, Mapping[str, Any]] = {}
        for path, _ in required_privileges(self.target):
            if path not in held:
                held[path] = self._dict("access/permissions", path=path)
        missing = [
            f"{privilege} on {path}"
            for path, privilege in required_privileges(self.target)
            if not holds(held[path], path, privilege)
        ]
        if missing:
            token = self.target.token.token_id
            raise HostReadError(
                f"{self.target.label}: API token {token} lacks {', '.join(missing)}, so the "
                "host's guests, firewall, backup jobs and zpack-api's identity cannot all be "
                "read; grant it the "
                f"read-only role PVEAuditor on /: pveum acl modify / --tokens '{token}' "
                "--roles PVEAuditor"
            )

    def _guest(self, item: Mapping[str, Any]) -> GuestRecord:
        kind: GuestKind = "lxc" if item.get("type") == "lxc" else "qemu"
        vmid = whole_number(item.get("vmid"))
        node = str(item.get("node") or "")
        if vmid is None or not node:
            raise HostReadError(f"{self.target.label}: /cluster/resources lists a guest {item!r}")
        base = f"nodes/{node}/{kind}/{vmid}"
        config = self._dict(f"{base}/config")
        return GuestRecord(
            kind=kind,
            vmid=vmid,
            node=node,
            name=str(item.get("name") or config.get("hostname") or config.get("name") or vmid),
            template=flag(item.get("template")) or flag(config.get("template")),
            pool=str(item["pool"]) if item.get("pool") else None,
            config=config,
            firewall_options=self._dict(f"{base}/firewall/options"),
            firewall_rules=self._list(f"{base}/firewall/rules"),
            aliases=self._list(f"{base}/firewall/aliases"),
            ipsets=self._ipsets(f"{base}/firewall"),
        )

    def _ipsets(self, base: str) -> dict[str, list[dict[str, Any]]]:
        sets: dict[str, list[dict[str, Any]]] = {}
        for entry in self._list(f"{base}/ipset"):
            name = str(entry.get("name") or "")
            if name:
                sets[name] = self._list(f"{base}/ipset/{name}")
        return sets

    def _dict(self, path: str, /, **params: Any) -> dict[str, Any]:
        data = self._get(path, **params)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self._unexpected(path, data)
        return data

    def _list(self, path: str, /, **params: Any) -> list[dict[str, Any]]:
        data = self._get(path, **params)
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise self._unexpected(path, data)
        return data

    def _unexpected(self, path: str, data: object) -> HostReadError:
        shown = repr(data)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        return HostReadError(
            f"{self.target.label}: unexpected answer to GET /{path}: {shown} (is the endpoint "
            "a Proxmox VE API, not a proxy page?)"
        )

    def _get(self, path: str, /, **params: Any) -> Any:
        try:
            return self.api.get(path, **params)
        except Exception as error:  # turned into one message naming the host, never a traceback
            raise HostReadError(describe_failure(self.target, path, error)) from error


def describe_failure(target: HostTarget, path: str, error: BaseException) -> str:
    """One line for a failed GET: who, what, why, and what to do."""
    where = target.label
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        detail = _api_message(error)
        if status == 401:
            return (
                f"{where}: API token {target.token.token_id} was refused (401 {detail}); check "
                "the token and its secret, and that it has not expired or been removed"
            )
        if status == 403:
            return (
                f"{where}: API token {target.token.token_id} may not read /{path} (403 "
                f"{detail}); grant it the read-only role PVEAuditor on /"
            )
        if status in (595, 596):
            return f"{where}: the API could not reach a node for /{path} ({status} {detail})"
        return f"{where}: GET /{path} failed: {status} {detail}"
    for kind, check, advice in _TRANSPORT_FAILURES:
        if check(error):
            reason = _reason(error)
            if check is _is_tls and ("mismatch" in reason or "match" in reason):
                advice = (
                    "the certificate does not name the endpoint's host: use a host name it names "
                    "in the endpoint (zlh-infra:proxmox.endpoint or --host)"
                )
            return f"{where}: {kind}: {reason}; {advice}"
    return f"{where}: GET /{path} failed: {type(error).__name__}: {_reason(error)}"


def _api_message(error: BaseException) -> str:
    content = str(getattr(error, "content", "") or "").strip()
    message = str(getattr(error, "status_message", "") or "").strip()
    return content or message or "no message"


def _chain(error: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_tls(error: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError | requests.exceptions.SSLError) for e in _chain(error))


def _is_timeout(error: BaseException) -> bool:
    return any(isinstance(e, TimeoutError | requests.exceptions.Timeout) for e in _chain(error))


def _is_connection(error: BaseException) -> bool:
    # requests' ConnectionError is an OSError.
    return any(isinstance(e, OSError) for e in _chain(error))


_TRANSPORT_FAILURES: tuple[tuple[str, Callable[[BaseException], bool], str], ...] = (
    (
        "TLS verification failed",
        _is_tls,
        "give the CA that signed the host's certificate with --ca-file (Proxmox's own CA "
        "is /etc/pve/pve-root-ca.pem on the host)",
    ),
    ("no answer in time", _is_timeout, "check that the host is up, or raise --timeout"),
    (
        "cannot connect",
        _is_connection,
        "check the endpoint, that the host is up and that port 8006 is reachable from here",
    ),
)

_REASONS = (
    re.compile(r"certificate verify failed: (.+?)\.? \(_ssl"),
    re.compile(r"certificate verify failed: ([^(')\"]+)"),
    re.compile(r"\[SSL: [A-Z_]+\] ([^(')\"]+)"),
    re.compile(r"\[Errno -?\d+\] ([^(')\"]+)"),
    re.compile(r"(Connection reset by peer|Remote end closed connection without response)"),
    re.compile(r"(Read timed out|Connection timed out|timed out)"),
)


def _reason(error: BaseException) -> str:
    text = str(error)
    for pattern in _REASONS:
        found = pattern.search(text)
        if found:
            return found.group(1).strip().rstrip(".")
    return text if len(text) <= 200 else text[:197] + "..."


def holds(answer: Mapping[str, Any], path: str, privilege: str) -> bool:
    """Whether ``GET /access/permissions?path=<path>`` says the token holds ``privilege``.

    The answer maps the path to its privileges, each to whether it propagates further:
    a privilege listed is held on the path itself, whatever its flag
    (pve-access-control ``RPCEnvironment::permissions``).
    """
    privileges = answer.get(path)
    return isinstance(privileges, Mapping) and privileges.get(privilege) is not None


def flag(value: object) -> bool:
    """Proxmox booleans arrive as 0/1, "0"/"1", or (rarely) true/false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return False
