"""Proxmox VE stand-ins on loopback (fakepve), seeded with the platform's guests.

Each :class:`FakeHost` is one standalone host: a fakepve server on 127.0.0.1 with a
port of its own, serving TLS with a test certificate, one node, and an API token
holding the PVEAuditor privileges on ``/``. Guests are added with fakepve's Python
API; their firewall is written through the HTTP API as root (so fakepve checks each
rule as Proxmox does), and the request log is cleared before the audit runs.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from fakepve import FakePve  # type: ignore[import-untyped]
from proxmoxer import ProxmoxAPI  # type: ignore[import-untyped]

from tests.stack_configs import shipped
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


class PlatformPve(FakePve):  # type: ignore[misc]
    """fakepve, plus the vzdump jobs it does not store.

    fakepve answers ``GET /cluster/backup`` with a made-up example job and keeps
    nothing a client writes there. This serves the jobs a test sets, through fakepve's
    own route table, so the schema's permission check (Sys.Audit on /) still applies.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backup_jobs: list[dict[str, Any]] = []

    def _routes_backup_jobs(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/cluster/backup", self._backup_jobs_get)]

    async def _backup_jobs_get(self, values: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [dict(job, type="vzdump") for job in self.backup_jobs]


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


@dataclass
class HostPlan:
    """What one fake host holds: its node, guests, datacenter firewall and backup jobs."""

    node: str
    guests: list[Guest] = field(default_factory=list)
    backup_jobs: list[dict[str, Any]] = field(default_factory=list)
    datacenter: dict[str, Any] = field(default_factory=lambda: {"enable": 1, "policy_in": "ACCEPT"})
    aliases: dict[str, str] = field(default_factory=dict)
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    #: Security group name -> rules (no iface: Proxmox allows it only where the group is used).
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

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
        for index, nic in guest.nics.items():
            mac = f"BC:24:11:{guest.vmid // 256 % 256:02X}:{guest.vmid % 256:02X}:{index:02X}"
            flag = 1 if nic.firewall else 0
            if guest.kind == "lxc":
                ip = f",ip={nic.address}" if nic.address else ""
                config[f"net{index}"] = (
                    f"name=eth{index},bridge={nic.bridge},firewall={flag},hwaddr={mac}{ip},type=veth"
                )
            else:
                config[f"net{index}"] = f"virtio={mac},bridge={nic.bridge},firewall={flag}"
                if nic.address:
                    config[f"ipconfig{index}"] = f"ip={nic.address}"
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
    stack: str, spec: ServiceSpec, config: dict[str, Any], prefixes: dict[Network, int]
) -> Guest:
    nics = {}
    for index, network in enumerate(spec.networks):
        address = None
        if network is Network.LAN and config.get("lanAddress"):
            address = f"{config['lanAddress']}/{prefixes[Network.LAN]}"
        if network is Network.MANAGEMENT and config.get("managementAddress"):
            address = f"{config['managementAddress']}/{prefixes[Network.MANAGEMENT]}"
        nics[index] = Nic(BRIDGES[network], address)
    return Guest(
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


def core_plan() -> HostPlan:
    config = shipped("core")
    services = config["guests"]
    guests = [
        _service_guest("core", spec, services[name], {Network.LAN: 24, Network.MANAGEMENT: 22})
        for name, spec in CONTROL_PLANE_SERVICES.items()
    ]
    backed_up = [
        services[name]["vmid"]
        for name, spec in CONTROL_PLANE_SERVICES.items()
        if spec.stateful and name != "zlh-back"
    ]
    return HostPlan(
        node="zlh-core",
        guests=sorted(guests, key=lambda g: g.vmid),
        backup_jobs=[_backup_job("zlh-core-backup", backed_up)],
    )


def fleet_rules(*, lan_port: int) -> list[dict[str, Any]]:
    """What the program writes for a game or dev container."""
    return [
        rule(AGENT_PORT, iface="net1", source=f"{API_ADDRESS}/32", comment="zlh-agent"),
        rule(METRICS_PORT, iface="net1", source=f"{MONITOR_ADDRESS}/32", comment="metrics"),
        rule(lan_port, iface="net0", source="10.20.0.0/22", comment="workload"),
    ]


def fleet_guest(vmid: int, name: str, role: VmidRole, *, stack: str = "runtime") -> Guest:
    number = vmid - 1000 + 256
    return Guest(
        vmid=vmid,
        name=name,
        tags=guest_tags(layer=Layer.RUNTIME, role=role, stack=stack, service=role.value),
        nics={
            0: Nic("vmbr1", f"10.20.{number // 256}.{number % 256}/22"),
            1: Nic("vmbr2", f"10.99.{number // 256}.{number % 256}/22"),
        },
        protection=True,
        pool="zlh-runtime",
        rules=fleet_rules(lan_port=25565 if role is VmidRole.GAME else 8443),
    )


def runtime_plan() -> HostPlan:
    config = shipped("runtime")
    services = config["guests"]
    prefixes = {Network.LAN: 22, Network.MANAGEMENT: 22}
    guests = [
        _service_guest("runtime", spec, services[name], prefixes)
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
    # One game container uses names instead of addresses: a security group, an IP set
    # and an alias, as an operator might write it in the UI.
    named = fleet[0]
    named.rules = [
        {"type": "group", "action": "zlh-agent-path", "iface": "net1", "enable": 1},
        rule(25565, iface="net0", source="10.20.0.0/22"),
    ]
    backed_up = [g.vmid for g in fleet] + [
        services[name]["vmid"]
        for name, spec in {**EDGE_SERVICES, **RUNTIME_SERVICES}.items()
        if spec.stateful
    ]
    return HostPlan(
        node="zlh-runtime",
        guests=sorted(guests + fleet, key=lambda g: g.vmid),
        backup_jobs=[_backup_job("zlh-pbs", backed_up)],
        aliases={"zlh-monitor": MONITOR_ADDRESS},
        ipsets={"zpack-api": [API_ADDRESS]},
        groups={
            "zlh-agent-path": [
                rule(AGENT_PORT, source="+zpack-api"),
                rule(METRICS_PORT, source="zlh-monitor"),
            ]
        },
    )
