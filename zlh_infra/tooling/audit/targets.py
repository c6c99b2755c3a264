"""Which hosts the audit reads, and how: endpoint, node, API token, TLS, the stack's facts.

Each host belongs to one stack. Its endpoint and node come from ``Pulumi.<stack>.yaml``
(``zlh-infra:proxmox``), or from ``--host`` / ``--node`` for a host without a stack file.
The stack file also says which VMIDs the stack records (a guest outside them is not
Pulumi's), and what a runtime host's fleet is cloned from and attached to, which
zpack-api's identity is judged against. zpack-api's and zlh-monitor's management
addresses, the only sources the fleet's management NIC may admit, come from the core
stack file or from flags.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from urllib.parse import urlsplit

from zlh_infra.platform.api_identity import DEFAULT_DATASTORE
from zlh_infra.platform.topology import StackRole, UnknownStackError, stack_role
from zlh_infra.policies.config import CORE_NODE, DEFAULT_GUEST_NETWORKS, DEFAULT_MANAGEMENT_BRIDGE
from zlh_infra.tooling.preview.stack_files import (
    ProjectFile,
    StackFileError,
    find_project_file,
    load_project,
    load_stack_file,
    stack_files_in,
)

#: The variable the Proxmox provider reads its token from; the audit's default too.
TOKEN_ENV = "PROXMOX_VE_API_TOKEN"
DEFAULT_PORT = 8006
#: The LAN bridge a runtime host's fleet attaches to when no stack file says.
DEFAULT_LAN_BRIDGE = "vmbr1"
#: The networks guests are on when no stack file says (the pack's default).
DEFAULT_NETWORKS: tuple[IPv4Network, ...] = tuple(IPv4Network(n) for n in DEFAULT_GUEST_NETWORKS)

# user@realm!tokenid=secret, the form Proxmox shows once when it creates a token.
_TOKEN = re.compile(
    r"^(?P<user>[^!=\s]+@[^!=\s]+)!(?P<name>[A-Za-z][A-Za-z0-9._-]*)=(?P<secret>\S+)$"
)


class AuditUsageError(Exception):
    """The audit cannot start: bad flags, a missing or unusable stack file, no token."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class ApiToken:
    user: str
    name: str
    secret: str = field(repr=False)

    @property
    def token_id(self) -> str:
        """``user@realm!tokenid``: safe to show, unlike the secret."""
        return f"{self.user}!{self.name}"

    @classmethod
    def parse(cls, value: str, source: str) -> ApiToken:
        found = _TOKEN.match(value.strip())
        if found is None:
            # Never echo the value: it may be a secret with a typo in it.
            raise AuditUsageError(
                [f"{source} is not an API token of the form user@realm!tokenid=secret"]
            )
        return cls(found["user"], found["name"], found["secret"])


@dataclass(frozen=True, slots=True)
class HostTarget:
    """One host to audit."""

    stack: str
    role: StackRole
    endpoint: str
    node: str
    token: ApiToken
    #: A CA bundle path, or True for the system's trust store; False only when the
    #: stack file says ``insecure: true`` and no CA file was given.
    verify: str | bool
    management_bridge: str = DEFAULT_MANAGEMENT_BRIDGE
    #: VMIDs the stack's configuration declares, with the config key of each.
    recorded: Mapping[int, str] = field(default_factory=dict)
    stack_file: Path | None = None
    #: A runtime host's fleet: the templates zpack-api clones from (None: no stack file
    #: says), the storage its disks go to and its LAN bridge.
    templates: tuple[int, ...] | None = None
    datastore: str = DEFAULT_DATASTORE
    lan_bridge: str = DEFAULT_LAN_BRIDGE

    @property
    def host(self) -> str:
        """``host[:port]`` as proxmoxer takes it (IPv6 in brackets)."""
        parts = urlsplit(self.endpoint)
        name = parts.hostname or ""
        if ":" in name:
            name = f"[{name}]"
        return f"{name}:{parts.port or DEFAULT_PORT}"

    @property
    def label(self) -> str:
        """How errors name the host."""
        return f"stack {self.stack} ({self.endpoint})"


@dataclass(frozen=True, slots=True)
class AuditPlan:
    targets: tuple[HostTarget, ...]
    api_address: IPv4Address
    monitor_address: IPv4Address
    timeout: float
    #: Notes for stderr (insecure TLS, a stack without a stack file).
    warnings: tuple[str, ...] = ()
    #: Networks guests have addresses on (every stack file's LAN and management network):
    #: none may reach a node's API, SSH or consoles.
    guest_networks: tuple[IPv4Network, ...] = DEFAULT_NETWORKS
    #: VMIDs the core stack declares (the contract's ``coreVmids``): zpack-api never
    #: touches them.
    core_vmids: frozenset[int] = frozenset()

    @property
    def core_node(self) -> str:
        for target in self.targets:
            if target.role is StackRole.CORE:
                return target.node
        return CORE_NODE


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """The audit's flags, parsed: per-stack values are ``{stack: value}``."""

    stacks: tuple[str, ...] = ()
    stack_files: Mapping[str, Path] = field(default_factory=dict)
    hosts: Mapping[str, str] = field(default_factory=dict)
    nodes: Mapping[str, str] = field(default_factory=dict)
    token_envs: Mapping[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    ca_files: Mapping[str, Path] = field(default_factory=dict)
    api_address: IPv4Address | None = None
    monitor_address: IPv4Address | None = None
    timeout: float = 15.0


def check_stack_name(stack: str) -> str:
    """The stack's name if the platform knows its role (core, runtime, runtime-<x>)."""
    try:
        stack_role(stack)
    except UnknownStackError as error:
        raise AuditUsageError([str(error)]) from None
    if "/" in stack:
        raise AuditUsageError([f"stack {stack!r}: give the stack name without organisation"])
    return stack


def check_endpoint(value: str, where: str) -> str:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise AuditUsageError([f"{where}: {value!r} has an invalid port"]) from None
    if parts.scheme != "https" or not parts.hostname:
        raise AuditUsageError([f"{where}: {value!r} must be an https:// URL with a host name"])
    return value


@dataclass(frozen=True, slots=True)
class _StackFacts:
    endpoint: str
    node: str
    insecure: bool
    management_bridge: str
    recorded: dict[int, str]
    addresses: dict[str, IPv4Address]
    networks: tuple[IPv4Network, ...]
    templates: tuple[int, ...] | None
    datastore: str
    lan_bridge: str


def _load_stack_file(stack: str, path: Path, root: Path) -> _StackFacts:
    """Validate the stack file with the program's own config model."""
    # Imported here: the config models load the Pulumi SDK, which `--help` does not need.
    from zlh_infra.config import CoreStackConfig, RuntimeStackConfig, parse_stack_config
    from zlh_infra.errors import ConfigError

    try:
        project_path = find_project_file(root)
        project = load_project(project_path) if project_path else ProjectFile.default()
        stack_file = load_stack_file(path, project=project, stack=stack)
    except StackFileError as error:
        raise AuditUsageError([str(error)]) from None
    model = CoreStackConfig if stack_role(stack) is StackRole.CORE else RuntimeStackConfig
    try:
        config = parse_stack_config(model, stack_file.config, stack=stack)
    except ConfigError as error:
        raise AuditUsageError([f"{path}: {error}"]) from None
    addresses = {
        name: guest.management_address
        for name, guest in config.guests.items()
        if guest.management_address is not None
    }
    templates = (
        tuple(sorted(t.vmid for t in config.templates.values()))
        if isinstance(config, RuntimeStackConfig)
        else None
    )
    return _StackFacts(
        endpoint=config.proxmox.endpoint,
        node=config.proxmox.node,
        insecure=config.proxmox.insecure,
        management_bridge=config.network.management.bridge,
        recorded={vmid: key for key, vmid in config.all_vmids()},
        addresses=addresses,
        networks=(config.network.lan.cidr, config.network.management.cidr),
        templates=templates,
        datastore=config.storage.datastore,
        lan_bridge=config.network.lan.bridge,
    )


def _token(stack: str, options: AuditOptions, environ: Mapping[str, str]) -> ApiToken:
    variable = options.token_envs.get(stack, TOKEN_ENV)
    value = environ.get(variable, "")
    if not value.strip():
        how = (
            f"--token-env {stack}={variable} names it"
            if stack in options.token_envs
            else f"set {TOKEN_ENV}, or name another variable with --token-env {stack}=VAR"
        )
        raise AuditUsageError([f"stack {stack}: no API token in ${variable} ({how})"])
    return ApiToken.parse(value, f"${variable} (stack {stack})")


def resolve(
    options: AuditOptions, *, root: Path, environ: Mapping[str, str] | None = None
) -> AuditPlan:
    """Every host to audit, with everything needed to read it and judge what it holds."""
    environ = os.environ if environ is None else environ
    files = {**stack_files_in(root), **options.stack_files}
    if options.stacks:
        stacks = list(dict.fromkeys(options.stacks))
    else:
        stacks = sorted(set(files) | set(options.hosts), key=_stack_order)
    if not stacks:
        raise AuditUsageError(
            [f"no stack to audit: no Pulumi.<stack>.yaml in {root}; use --stack-file or --host"]
        )

    problems: list[str] = []
    warnings: list[str] = []
    facts: dict[str, _StackFacts] = {}
    for stack in sorted(set(stacks) | ({StackRole.CORE.value} & set(files)), key=_stack_order):
        if stack in files:
            try:
                facts[stack] = _load_stack_file(stack, files[stack], root)
            except AuditUsageError as error:
                problems += error.problems

    targets: list[HostTarget] = []
    for stack in stacks:
        known = facts.get(stack)
        if stack in files and known is None:
            continue  # its stack file's problem is already listed
        endpoint = options.hosts.get(stack) or (known.endpoint if known else None)
        node = options.nodes.get(stack) or (known.node if known else None)
        if endpoint is None or node is None:
            missing = " and ".join(
                flag for flag, value in (("--host", endpoint), ("--node", node)) if value is None
            )
            problems.append(
                f"stack {stack}: no stack file Pulumi.{stack}.yaml; give {missing} "
                f"({missing.replace(' and ', ' / ')} {stack}=...), or --stack-file {stack}=PATH"
            )
            continue
        try:
            token = _token(stack, options, environ)
        except AuditUsageError as error:
            problems += error.problems
            continue
        ca_file = options.ca_files.get(stack) or options.ca_file
        verify: str | bool = True
        if ca_file is not None:
            if not ca_file.is_file():
                problems.append(f"stack {stack}: CA file {ca_file} does not exist")
                continue
            verify = str(ca_file)
        elif known is not None and known.insecure:
            verify = False
            warnings.append(
                f"stack {stack}: TLS certificate of {endpoint} is NOT verified "
                "(zlh-infra:proxmox.insecure is true); give its CA with --ca-file instead"
            )
        if known is None:
            warnings.append(
                f"stack {stack}: no stack file, so no guest on it counts as managed by "
                "Pulumi; only the game/dev rules apply to its guests"
                + (
                    ", and zpack-api's identity is judged against the host's template-range "
                    f"guests, storage {DEFAULT_DATASTORE} and bridges {DEFAULT_LAN_BRIDGE} and "
                    f"{DEFAULT_MANAGEMENT_BRIDGE}"
                    if stack_role(stack) is StackRole.RUNTIME
                    else ""
                )
            )
        targets.append(
            HostTarget(
                stack=stack,
                role=stack_role(stack),
                endpoint=endpoint,
                node=node,
                token=token,
                verify=verify,
                management_bridge=known.management_bridge if known else DEFAULT_MANAGEMENT_BRIDGE,
                recorded=known.recorded if known else {},
                stack_file=files.get(stack),
                templates=known.templates if known else None,
                datastore=known.datastore if known else DEFAULT_DATASTORE,
                lan_bridge=known.lan_bridge if known else DEFAULT_LAN_BRIDGE,
            )
        )

    core = facts.get(StackRole.CORE)
    api = options.api_address or (core.addresses.get("zpack-api") if core else None)
    monitor = options.monitor_address or (core.addresses.get("zlh-monitor") if core else None)
    for flag, value, key in (
        ("--api-address", api, "zpack-api"),
        ("--monitor-address", monitor, "zlh-monitor"),
    ):
        if value is None:
            problems.append(
                f"no management address of {key}: give {flag}, or the core stack file "
                f"(zlh-infra:guests.{key}.managementAddress)"
            )
    if problems:
        raise AuditUsageError(problems)
    assert api is not None and monitor is not None
    networks = tuple(dict.fromkeys(n for known in facts.values() for n in known.networks))
    return AuditPlan(
        targets=tuple(targets),
        api_address=api,
        monitor_address=monitor,
        timeout=options.timeout,
        warnings=tuple(warnings),
        guest_networks=networks or DEFAULT_NETWORKS,
        core_vmids=frozenset(core.recorded) if core else frozenset(),
    )


def _stack_order(stack: str) -> tuple[int, str]:
    """core first, then runtime, then runtime-<x> by name."""
    return (0 if stack == StackRole.CORE else 1, stack)
