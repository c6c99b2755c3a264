"""Proxmox VE stand-ins on loopback (fakepve), seeded with the platform's guests.

Each :class:`FakeHost` is one standalone host: a fakepve server on 127.0.0.1 with a
port of its own, serving TLS with a test certificate, one node, and an API token
holding the PVEAuditor privileges on ``/``. Guests are added with fakepve's Python
API; their firewall, the datacenter's and the node's are written through the HTTP API
as root (so fakepve checks each rule as Proxmox does), and the request log is cleared
before the audit runs. A runtime host also holds zpack-api's identity (roles, user,
ACL entries), which fakepve does not store: :class:`PlatformPve` serves it.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Any

from fakepve import FakePve, shapes  # type: ignore[import-untyped]
from fakepve.model import PveError  # type: ignore[import-untyped]
from proxmoxer import ProxmoxAPI  # type: ignore[import-untyped]

from tests.stack_configs import shipped
from zlh_infra.platform.api_identity import (
    USER_ID,
    IdentityInputs,
    acl_entries,
    role_privileges,
)
from zlh_infra.platform.catalogue import (
    AGENT_PORT,
    CONTROL_PLANE_SERVICES,
    EDGE_SERVICES,
    METRICS_PORT,
    RUNTIME_SERVICES,
    GuestKind,
    Network,
    ServiceSpec,
)
from zlh_infra.platform.firewall import FirewallRule
from zlh_infra.platform.fleet_firewall import (
    API_IPSET,
    FLEET_GROUPS,
    fleet_group_rules,
    fleet_ipsets,
)
from zlh_infra.platform.host_firewall import (
    ADMIN_IPSET,
    LOCAL_NETWORK,
    LOCAL_NETWORK_ALIAS,
    host_rules,
)
from zlh_infra.platform.topology import Layer, guest_tags
from zlh_infra.platform.vmids import VmidRole

HOST = "127.0.0.1"
TOKEN_ID = "audit@pve!zlh"
TOKEN_SECRET = "0c8f2d5e-audit-4e1b-9a7c-test00000001"
TOKEN = f"{TOKEN_ID}={TOKEN_SECRET}"
#: The privileges of Proxmox's built-in PVEAuditor role.
AUDITOR = ("Datastore.Audit", "Mapping.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit")
BRIDGES = {Network.WAN: "vmbr0", Network.LAN: "vmbr1", Network.MANAGEMENT: "vmbr2"}
API_ADDRESS = "10.99.0.10"
MONITOR_ADDRESS = "10.99.0.20"
MANAGEMENT_CIDR = "10.99.0.0/22"
RUNTIME_ROUTER = "10.20.0.1"
#: The runtime stack's templates, from which zpack-api's identity is computed.
FLEET_TEMPLATES = tuple(sorted(t["vmid"] for t in shipped("runtime")["templates"].values()))
IDENTITY_INPUTS = IdentityInputs(template_vmids=FLEET_TEMPLATES)


class PlatformPve(FakePve):  # type: ignore[misc]
    """fakepve, plus the vzdump jobs and the access control it does not store.

    fakepve answers ``GET /cluster/backup`` and the ``/access`` lists with made-up
    examples and keeps nothing a client writes there. This serves what a test sets,
    through fakepve's own route table, so the schema's permission checks still apply;
    the ACL and user lists leave out what the caller may not audit, as Proxmox does.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup_jobs: list[dict[str, Any]] = []
        #: Role id -> privileges.
        self.roles: dict[str, list[str]] = {}
        #: ``GET /access/acl`` entries.
        self.acl_entries: list[dict[str, Any]] = []
        #: User id -> its own answer (``groups``, ``tokens``, ...).
        self.users: dict[str, dict[str, Any]] = {}
        #: ACL paths where a NoAccess entry takes every privilege from users but root.
        self.no_access: set[str] = set()

    def allowed(self, user: str, path: str, priv: str) -> bool:
        if user.split("!")[0] != "root@pam" and any(
            path == denied or path.startswith(denied + "/") for denied in self.no_access
        ):
            return False
        return bool(super().allowed(user, path, priv))

    async def _permissions(self, values: dict[str, Any], user: str) -> dict[str, Any]:
        """``GET /access/permissions``; with ``path``, as Proxmox answers it: that path and
        what the caller holds there (fakepve's grants reach every path below them)."""
        path = values.get("path")
        if path is None:
            return dict(await super()._permissions(values, user))
        who = str(values.get("userid") or user)
        held = {priv: 1 for priv in sorted(shapes.PRIVILEGES) if self.allowed(who, path, priv)}
        return {path: held} if held else {}

    def _routes_backup_jobs(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/cluster/backup", self._backup_jobs_get)]

    async def _backup_jobs_get(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [dict(job, type="vzdump") for job in self.backup_jobs]

    def _routes_access_control(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/access/roles", self._roles_get),
            ("GET", "/access/acl", self._acl_get),
            ("GET", "/access/users", self._users_get),
            ("GET", "/access/users/{userid}", self._user_get),
        ]

    async def _roles_get(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [{"roleid": role, "privs": ",".join(privs)} for role, privs in self.roles.items()]

    async def _acl_get(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        # PVE: every entry with Sys.Audit on /access, else those the caller may modify.
        if not self.allowed(user, "/access", "Sys.Audit"):
            return []
        return [dict(entry) for entry in self.acl_entries]

    async def _users_get(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        audit = self.allowed(user, "/access/groups", "Sys.Audit")
        return [
            {"userid": userid, "enable": 1}
            for userid in sorted(self.users)
            if audit or userid == user.split("!")[0]
        ]

    async def _user_get(self, values: dict[str, Any], user: str) -> dict[str, Any]:
        userid = str(values["userid"])
        if userid not in self.users:
            raise PveError(500, f"no such user ('{userid}')")
        return {"enable": 1, **self.users[userid]}


def firewall_options(*, policy_in: str = "DROP", container: bool = True) -> dict[str, Any]:
    """A guest's firewall options as the program writes them (``layers/guest.py``)."""
    options = {"enable": 1, "policy_in": policy_in, "policy_out": "ACCEPT"}
    # Containers send from their own addresses only; routers (VMs) forward others'.
    return options | {"ipfilter": int(container), "macfilter": 1, "dhcp": 0}


@dataclass
class Nic:
    bridge: str
    address: str | None = None
    firewall: bool = True
    gateway: str | None = None


@dataclass
class Guest:
    vmid: int
    name: str
    kind: str = "lxc"
    tags: list[str] = field(default_factory=list)
    nics: dict[int, Nic] = field(default_factory=dict)
    protection: bool = False
    pool: str | None = None
    template: bool = False
    status: str = "running"
    #: Firewall options as the API takes them; None leaves the guest's firewall unset.
    options: dict[str, Any] | None = field(default_factory=lambda: firewall_options())
    #: Rules top to bottom, as the API takes them.
    rules: list[dict[str, Any]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    #: ``nameserver`` of its config (space separated), if any.
    nameserver: str | None = None


@dataclass
class Identity:
    """Access control of a host: roles, users (their own answers) and ACL entries."""

    roles: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    acls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class HostPlan:
    """What one fake host holds: its node, guests, firewall, backup jobs and identities."""

    node: str
    guests: list[Guest] = field(default_factory=list)
    backup_jobs: list[dict[str, Any]] = field(default_factory=list)
    datacenter: dict[str, Any] = field(
        default_factory=lambda: {"enable": 1, "policy_in": "DROP", "policy_out": "ACCEPT"}
    )
    #: The datacenter's own rules (they apply to every node's traffic).
    cluster_rules: list[dict[str, Any]] = field(default_factory=list)
    #: The node's firewall options and rules.
    node_options: dict[str, Any] = field(default_factory=lambda: {"enable": 1})
    node_rules: list[dict[str, Any]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    #: Security group name -> rules (no iface: Proxmox allows it only where the group is used).
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    identity: Identity = field(default_factory=Identity)

    def guest(self, vmid: int) -> Guest:
        return next(g for g in self.guests if g.vmid == vmid)

    def replace(self, vmid: int, **changes: Any) -> Guest:
        index = next(i for i, g in enumerate(self.guests) if g.vmid == vmid)
        self.guests[index] = replace(self.guests[index], **changes)
        return self.guests[index]


class FakeHost:
    """A started fakepve serving one host's plan on loopback."""

    def __init__(self, plan: HostPlan, certfile: str, keyfile: str, address: str = HOST) -> None:
        self.plan = plan
        self.certfile = certfile
        self.address = address
        self.pve = PlatformPve(host=address, port=0)
        self.pve.time_scale = 0
        self.pve.nodes = {plan.node: {"online": True}}
        self.pve.apitokens[TOKEN_ID] = TOKEN_SECRET
        self.pve.grant(TOKEN_ID, "/", *AUDITOR)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._call(self.pve.start(certfile, keyfile))
        try:
            with warnings.catch_warnings():
                # Seeding as root skips TLS verification (see _seed); the audit never does.
                warnings.filterwarnings("ignore", message="Unverified HTTPS request")
                self._seed()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.pve.port}/"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def stop(self) -> None:
        try:
            self._call(self.pve.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()

    def methods(self) -> set[str]:
        """HTTP methods of every request since seeding."""
        return {method for method, _path, _body in self.pve.requests}

    def _seed(self) -> None:
        plan = self.plan
        for guest in plan.guests:
            self._add(guest)
        self.pve.backup_jobs = [dict(job) for job in plan.backup_jobs]
        self.pve.roles = {role: list(privs) for role, privs in plan.identity.roles.items()}
        self.pve.users = {user: dict(data) for user, data in plan.identity.users.items()}
        self.pve.acl_entries = [dict(entry) for entry in plan.identity.acls]
        # Each job writes to a Proxmox Backup Server storage of the host, as the stacks' do.
        for job in plan.backup_jobs:
            if job.get("storage"):
                self.pve.storages[str(job["storage"])] = {
                    "type": "pbs",
                    "server": "10.99.0.21",
                    "datastore": "zlh",
                    "content": "backup",
                }
        root = ProxmoxAPI(
            f"{self.address}:{self.pve.port}",
            user="root@pam",
            password="secret",
            # Seeding only: a test may serve a certificate that does not name this address.
            verify_ssl=False,
        )
        cluster = root.cluster.firewall
        cluster.options.put(**plan.datacenter)
        for name, cidr in plan.aliases.items():
            cluster.aliases.post(name=name, cidr=cidr)
        for name, cidrs in plan.ipsets.items():
            cluster.ipset.post(name=name)
            for cidr in cidrs:
                cluster.ipset(name).post(**_ipset_entry(cidr))
        for name, rules in plan.groups.items():
            cluster.groups.post(group=name)
            for rule in reversed(rules):  # each new rule goes on top
                cluster.groups(name).post(**rule)
        for rule in reversed(plan.cluster_rules):
            cluster.rules.post(**rule)
        host = root.nodes(plan.node).firewall
        host.options.put(**plan.node_options)
        for rule in reversed(plan.node_rules):
            host.rules.post(**rule)
        for guest in plan.guests:
            firewall = root.nodes(plan.node)(guest.kind)(guest.vmid).firewall
            if guest.options is not None:
                firewall.options.put(**guest.options)
            for name, cidr in guest.aliases.items():
                firewall.aliases.post(name=name, cidr=cidr)
            for name, cidrs in guest.ipsets.items():
                firewall.ipset.post(name=name)
                for cidr in cidrs:
                    firewall.ipset(name).post(**_ipset_entry(cidr))
            for rule in reversed(guest.rules):
                firewall.rules.post(**rule)
        self.pve.requests.clear()

    def _add(self, guest: Guest) -> None:
        config: dict[str, Any] = {"tags": ";".join(guest.tags)} if guest.tags else {}
        if guest.protection:
            config["protection"] = 1
        if guest.nameserver:
            config["nameserver"] = guest.nameserver
        for index, nic in guest.nics.items():
            mac = f"BC:24:11:{guest.vmid // 256 % 256:02X}:{guest.vmid % 256:02X}:{index:02X}"
            flag = 1 if nic.firewall else 0
            ip = f",ip={nic.address}" if nic.address else ""
            ip += f",gw={nic.gateway}" if nic.gateway else ""
            if guest.kind == "lxc":
                config[f"net{index}"] = (
                    f"name=eth{index},bridge={nic.bridge},firewall={flag},hwaddr={mac}{ip},type=veth"
                )
            else:
                config[f"net{index}"] = f"virtio={mac},bridge={nic.bridge},firewall={flag}"
                if ip:
                    config[f"ipconfig{index}"] = ip[1:]
        if guest.kind == "lxc":
            self.pve.add_ct(
                guest.vmid,
                guest.name,
                node=self.plan.node,
                status=guest.status,
                config=config,
                template=guest.template,
                pool=guest.pool,
            )
        else:
            self.pve.add_vm(
                guest.vmid,
                guest.name,
                node=self.plan.node,
                status=guest.status,
                config=config,
                template=guest.template,
                pool=guest.pool,
            )


def _ipset_entry(cidr: str) -> dict[str, Any]:
    if cidr.startswith("!"):
        return {"cidr": cidr[1:], "nomatch": 1}
    return {"cidr": cidr}


# --- the compliant platform, as Pulumi.core.yaml and Pulumi.runtime.yaml declare it ------


def api_rule(rule: FirewallRule) -> dict[str, Any]:
    """One of the program's rules as the API takes it (``layers/guest.py``'s ``rule_args``)."""
    values: dict[str, Any] = {"type": rule.direction, "action": rule.action, "enable": 1}
    for key, value in (
        ("proto", rule.proto),
        ("dport", None if rule.dport is None else str(rule.dport)),
        ("iface", rule.iface or None),
        ("source", rule.source),
        ("dest", rule.dest),
        ("comment", rule.comment),
    ):
        if value is not None:
            values[key] = value
    return values


def group_reference(group: str, iface: str) -> dict[str, Any]:
    return {"type": "group", "action": group, "iface": iface, "enable": 1}


def rule(
    port: int | None,
    *,
    iface: str | None = None,
    source: str | None = None,
    action: str = "ACCEPT",
    proto: str | None = "tcp",
    comment: str | None = None,
) -> dict[str, Any]:
    """An enabled inbound rule as the API takes it."""
    values: dict[str, Any] = {"type": "in", "action": action, "enable": 1}
    for key, value in (
        ("proto", proto),
        ("dport", str(port) if port is not None else None),
        ("iface", iface),
        ("source", source),
        ("comment", comment),
    ):
        if value is not None:
            values[key] = value
    return values


def _service_guest(
    stack: str,
    spec: ServiceSpec,
    config: dict[str, Any],
    prefixes: dict[Network, int],
    *,
    gateway: str,
    nameserver: str,
) -> Guest:
    """A service guest as ``layers/site.py`` makes it: the LAN's router as its gateway
    (a container's), the stack's resolvers."""
    container = spec.kind is not GuestKind.VM
    nics = {}
    for index, network in enumerate(spec.networks):
        address = None
        if network is Network.LAN and config.get("lanAddress"):
            address = f"{config['lanAddress']}/{prefixes[Network.LAN]}"
        if network is Network.MANAGEMENT and config.get("managementAddress"):
            address = f"{config['managementAddress']}/{prefixes[Network.MANAGEMENT]}"
        routed = container and network is Network.LAN and address is not None
        nics[index] = Nic(BRIDGES[network], address, gateway=gateway if routed else None)
    return Guest(
        nameserver=nameserver if container else None,
        vmid=int(config["vmid"]),
        name=spec.name,
        kind="qemu" if spec.kind is GuestKind.VM else "lxc",
        tags=guest_tags(layer=spec.layer, role=spec.role, stack=stack, service=spec.name),
        nics=nics,
        protection=spec.stateful,
        pool=f"zlh-{spec.layer}",
        options=firewall_options(
            policy_in=spec.input_policy, container=spec.kind is not GuestKind.VM
        ),
    )


def _backup_job(job_id: str, vmids: Iterable[int]) -> dict[str, Any]:
    return {
        "id": job_id,
        "enabled": 1,
        "schedule": "02:30",
        "storage": job_id,
        "mode": "snapshot",
        "vmid": ",".join(str(vmid) for vmid in sorted(vmids)),
    }


def _host_firewall(
    config: dict[str, Any], *, api_ipset: str | None = None
) -> tuple[dict[str, str], dict[str, list[str]], list[dict[str, Any]]]:
    """The node's firewall as ``layers/host.py`` writes it: aliases, IP sets, node rules."""
    rules = host_rules(
        IPv4Address(MONITOR_ADDRESS),
        api_ipset=api_ipset,
        management_bridge=BRIDGES[Network.MANAGEMENT] if api_ipset else "",
    )
    return (
        {LOCAL_NETWORK_ALIAS: str(LOCAL_NETWORK)},
        {ADMIN_IPSET: list(config["proxmox"]["adminSources"])},
        [api_rule(r) for r in rules],
    )


def _identity(inputs: IdentityInputs = IDENTITY_INPUTS) -> Identity:
    """zpack-api's identity as the runtime stack grants it (``layers/api_access.py``),
    and the audit token's own entry."""
    acls: list[dict[str, Any]] = [
        {"path": "/", "type": "token", "ugid": TOKEN_ID, "roleid": "PVEAuditor", "propagate": 1}
    ]
    acls += [
        {"path": acl.path, "type": "user", "ugid": acl.ugid, "roleid": acl.role_id, "propagate": 0}
        for acl in acl_entries(inputs)
    ]
    return Identity(
        roles={"PVEAuditor": list(AUDITOR), **{k: list(v) for k, v in role_privileges().items()}},
        users={"root@pam": {}, "audit@pve": {"tokens": {"zlh": {"privsep": 1}}}, USER_ID: {}},
        acls=acls,
    )


def core_plan() -> HostPlan:
    config = shipped("core")
    services = config["guests"]
    guests = [
        _service_guest(
            "core",
            spec,
            services[name],
            {Network.LAN: 24, Network.MANAGEMENT: 22},
            gateway=config["network"]["lan"]["gateway"],
            # zlh-dns, then the router (program.py's deploy_core).
            nameserver=f"{services['zlh-dns']['lanAddress']} {config['network']['lan']['gateway']}",
        )
        for name, spec in CONTROL_PLANE_SERVICES.items()
    ]
    backed_up = [
        services[name]["vmid"]
        for name, spec in CONTROL_PLANE_SERVICES.items()
        if spec.stateful and name != "zlh-back"
    ]
    aliases, ipsets, node_rules = _host_firewall(config)
    return HostPlan(
        node="zlh-core",
        guests=sorted(guests, key=lambda g: g.vmid),
        backup_jobs=[_backup_job("zlh-core-backup", backed_up)],
        aliases=aliases,
        ipsets=ipsets,
        node_rules=node_rules,
    )


#: Who reaches a game's or a dev container's workload: Velocity, zlh-zpack-proxy.
WORKLOAD_SOURCE = {
    role: f"{shipped('runtime')['guests'][service]['lanAddress']}/32"
    for role, service in ((VmidRole.GAME, "zlh-velocity"), (VmidRole.DEV, "zlh-zpack-proxy"))
}
WORKLOAD_PORT = {VmidRole.GAME: 25565, VmidRole.DEV: 8443}


def fleet_rules(role: VmidRole) -> list[dict[str, Any]]:
    """What the program writes for a game or dev container: the fleet's security groups,
    then its workload's port from Velocity or zlh-zpack-proxy."""
    return [group_reference(group, iface) for group, iface in FLEET_GROUPS] + [
        rule(WORKLOAD_PORT[role], iface="net0", source=WORKLOAD_SOURCE[role], comment="workload")
    ]


def literal_fleet_rules(role: VmidRole) -> list[dict[str, Any]]:
    """A game or dev container's agent path written out, for a host without the fleet's
    security groups (the core host)."""
    return [
        rule(AGENT_PORT, iface="net1", source=f"{API_ADDRESS}/32", comment="zlh-agent"),
        rule(METRICS_PORT, iface="net1", source=f"{MONITOR_ADDRESS}/32", comment="metrics"),
        rule(WORKLOAD_PORT[role], iface="net0", source=WORKLOAD_SOURCE[role], comment="workload"),
    ]


def fleet_guest(vmid: int, name: str, role: VmidRole, *, stack: str = "runtime") -> Guest:
    number = vmid - 1000 + 256
    return Guest(
        vmid=vmid,
        name=name,
        tags=guest_tags(layer=Layer.RUNTIME, role=role, stack=stack, service=role.value),
        nics={
            0: Nic("vmbr1", f"10.20.{number // 256}.{number % 256}/22", gateway=RUNTIME_ROUTER),
            1: Nic("vmbr2", f"10.99.{number // 256}.{number % 256}/22"),
        },
        protection=True,
        pool="zlh-runtime",
        rules=fleet_rules(role),
        nameserver=RUNTIME_ROUTER,
    )


def runtime_plan() -> HostPlan:
    config = shipped("runtime")
    services = config["guests"]
    prefixes = {Network.LAN: 22, Network.MANAGEMENT: 22}
    guests = [
        _service_guest(
            "runtime",
            spec,
            services[name],
            prefixes,
            gateway=RUNTIME_ROUTER,
            nameserver=RUNTIME_ROUTER,
        )
        for name, spec in {**EDGE_SERVICES, **RUNTIME_SERVICES}.items()
    ]
    image_tags = guest_tags(
        layer=Layer.RUNTIME, role=VmidRole.BASE_TEMPLATE, stack="runtime", service="template"
    )
    images = [("zlh-base", config["baseTemplate"]["vmid"])] + [
        (f"zlh-template-{name}", template["vmid"]) for name, template in config["templates"].items()
    ]
    for name, vmid in images:
        guests.append(
            Guest(
                vmid=vmid,
                name=name,
                tags=image_tags,
                nics={0: Nic("vmbr1")},
                status="stopped",
                pool="zlh-runtime",
            )
        )
    fleet = [fleet_guest(g["vmid"], g["name"], VmidRole.GAME) for g in config["games"]]
    fleet += [fleet_guest(g["vmid"], g["name"], VmidRole.DEV) for g in config["devs"]]
    backed_up = [g.vmid for g in fleet] + [
        services[name]["vmid"]
        for name, spec in {**EDGE_SERVICES, **RUNTIME_SERVICES}.items()
        if spec.stateful
    ]
    aliases, ipsets, node_rules = _host_firewall(config, api_ipset=API_IPSET)
    fleet_sets = fleet_ipsets(IPv4Address(API_ADDRESS), IPv4Address(MONITOR_ADDRESS))
    groups = fleet_group_rules(
        router=IPv4Address(RUNTIME_ROUTER),
        artifact_store=IPv4Address(services["zlh-artifacts"]["lanAddress"]),
    )
    return HostPlan(
        node="zlh-runtime",
        guests=sorted(guests + fleet, key=lambda g: g.vmid),
        backup_jobs=[_backup_job("zlh-pbs", backed_up)],
        aliases=aliases,
        ipsets={**ipsets, **{name: [str(n) for n in nets] for name, nets in fleet_sets.items()}},
        groups={name: [api_rule(r) for r in rules] for name, rules in groups.items()},
        node_rules=node_rules,
        identity=_identity(),
    )
