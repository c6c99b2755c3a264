"""Hand-built stacks in the shape the program registers them, for the policy tests.

Properties are in wire form (camelCase keys, numbers as floats), URNs carry the
engine's full parent type chain. Every call builds fresh objects, so a test may
change a fixture's properties in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from pulumi_policy.proxy import unknown_checking_proxy

from zlh_infra.platform.firewall import FirewallRule
from zlh_infra.platform.fleet_firewall import FLEET_GROUPS, fleet_group_rules, fleet_ipsets
from zlh_infra.platform.type_tokens import (
    BACKUP_JOB,
    FIREWALL_ALIAS,
    FIREWALL_IPSET,
    NODE_FIREWALL,
    PBS_STORAGE,
    POOL,
    SECURITY_GROUP,
)
from zlh_infra.policies.resources import (
    CLUSTER_FIREWALL,
    CONTAINER,
    FIREWALL_OPTIONS,
    FIREWALL_RULES,
    PROXMOX_PROVIDER,
    VM,
    Provider,
    Resource,
)

PROJECT = "zlh-infra"
CORE_ENDPOINT = "https://zlh-core.zerolaghub.net:8006/"
RUNTIME_ENDPOINT = "https://zlh-runtime.zerolaghub.net:8006/"
API = "10.99.0.10"
MONITOR = "10.99.0.20"
LAYER_TYPES = {
    "control-plane": "zlh:control-plane:ControlPlane",
    "edge": "zlh:edge:Edge",
    "runtime": "zlh:runtime:Runtime",
}
#: The component holding the node's and the datacenter's firewall objects.
HOST_TYPE = "zlh:host:Host"


def urn(stack: str, chain: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{chain}::{name}"


def rule(
    port: int, source: str | None, *, proto: str = "tcp", iface: str = "net1", comment: str = ""
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": "in",
        "action": "ACCEPT",
        "proto": proto,
        "dport": str(port),
        "iface": iface,
        "comment": comment,
        "enabled": True,
    }
    if source is not None:
        found["source"] = source
    return found


FLEET_RULES = (
    rule(18888, f"{API}/32", comment="zlh-agent from zpack-api"),
    rule(9100, f"{MONITOR}/32", comment="metrics scrape from zlh-monitor"),
)


#: The runtime LAN's router and zlh-artifacts' store, as the shipped runtime stack has them.
RUNTIME_ROUTER = "10.20.0.1"
RUNTIME_STORE = "10.20.0.10"


def provider_rule(rule: FirewallRule) -> dict[str, Any]:
    """A program rule in the provider's rule shape (what a recording holds)."""
    fields = {
        "type": rule.direction,
        "action": rule.action,
        "proto": rule.proto,
        "dport": None if rule.dport is None else str(rule.dport),
        "source": rule.source,
        "dest": rule.dest,
        "iface": rule.iface or None,
        "comment": rule.comment,
    }
    return {key: value for key, value in fields.items() if value is not None}


def host_rule(port: int, source: str, **extra: Any) -> dict[str, Any]:
    """A node rule accepting TCP ``port`` from ``source``."""
    accept = {"type": "in", "action": "ACCEPT", "proto": "tcp", "dport": str(port)}
    return {**accept, "source": source, **extra}


class StackBuilder:
    """Registers resources the way the program does: layer > guest component > guest."""

    def __init__(self, stack: str, endpoint: str, node: str) -> None:
        self.stack = stack
        self.node = node
        self.resources: list[Resource] = []
        self.root = self.add("pulumi:pulumi:Stack", f"{PROJECT}-{stack}", {})
        self.provider_resource = self.add(
            PROXMOX_PROVIDER,
            f"{stack}-proxmox",
            # The SDK sends a provider's non-string inputs JSON-encoded.
            {"endpoint": endpoint, "insecure": "false"},
            parent=self.root.urn,
        )
        self.layers: dict[str, Resource] = {}
        self._host: Resource | None = None
        #: The layer holding the host's backup storage and job.
        self.backup_layer = "control-plane" if stack == "core" else "runtime"

    @property
    def provider(self) -> Provider:
        p = self.provider_resource
        return Provider(p.urn, p.type, p.name, p.props)

    def add(
        self,
        chain: str,
        name: str,
        props: dict[str, Any],
        *,
        parent: str | None = None,
        managed: bool = False,
        property_dependencies: dict[str, tuple[str, ...]] | None = None,
        protect: bool = False,
    ) -> Resource:
        deps = property_dependencies or {}
        resource = Resource(
            urn=urn(self.stack, chain, name),
            type=chain.rsplit("$", 1)[-1],
            name=name,
            props=props,
            provider=self.provider if managed else None,
            parent=parent,
            dependencies=tuple(dict.fromkeys(u for urns in deps.values() for u in urns)),
            property_dependencies=deps,
            protect=protect,
        )
        self.resources.append(resource)
        return resource

    def layer(self, layer: str) -> Resource:
        if layer not in self.layers:
            self.layers[layer] = self.add(LAYER_TYPES[layer], layer, {}, parent=self.root.urn)
        return self.layers[layer]

    @property
    def host(self) -> Resource:
        """The host component: the node's and the datacenter's firewall objects."""
        if self._host is None:
            self._host = self.add(HOST_TYPE, f"{self.stack}-host", {}, parent=self.root.urn)
        return self._host

    def pool(self, layer: str) -> Resource:
        """The layer's Proxmox pool, which its guests' ``poolId`` names."""
        return self.add(
            f"{LAYER_TYPES[layer]}${POOL}",
            f"zlh-{layer}",
            {"poolId": f"zlh-{layer}"},
            parent=self.layer(layer).urn,
            managed=True,
        )

    def guest(
        self,
        name: str,
        vmid: int,
        *,
        layer: str,
        role: str,
        service: str,
        vm: bool = False,
        bridges: Sequence[str] = ("vmbr1",),
        rules: Iterable[dict[str, Any]] = (),
        input_policy: str = "DROP",
        stateful: bool = False,
    ) -> Resource:
        """A guest with its firewall options (and rules, if any); returns the guest."""
        component_type = "zlh:guest:VmGuest" if vm else "zlh:guest:LxcGuest"
        outer = f"{LAYER_TYPES[layer]}${component_type}"
        component = self.add(outer, name, {}, parent=self.layer(layer).urn)
        tags = sorted(
            {"zlh", f"layer-{layer}", f"role-{role}", f"stack-{self.stack}", f"svc-{service}"}
        )
        props: dict[str, Any] = {
            "vmId": float(vmid),
            "nodeName": self.node,
            "tags": tags,
            "description": f"{name}, managed by zlh-infra",
            "protection": stateful,
            "poolId": f"zlh-{layer}",
        }
        if vm:
            props["name"] = name
            props["networkDevices"] = [
                {"bridge": bridge, "firewall": True, "model": "virtio"} for bridge in bridges
            ]
        else:
            props["networkInterfaces"] = [
                {"name": f"eth{index}", "bridge": bridge, "firewall": True}
                for index, bridge in enumerate(bridges)
            ]
        guest = self.add(
            f"{outer}${VM if vm else CONTAINER}",
            name,
            props,
            parent=component.urn,
            managed=True,
            protect=stateful,
        )
        owner = "vmId" if vm else "containerId"
        self.add(
            f"{outer}${FIREWALL_OPTIONS}",
            f"{name}-firewall",
            {
                owner: float(vmid),
                "nodeName": self.node,
                "enabled": True,
                "inputPolicy": input_policy,
                "outputPolicy": "ACCEPT",
                # As the program writes them: a container's sources are its own addresses.
                "ipfilter": not vm,
                "macfilter": True,
                "dhcp": False,
            },
            parent=component.urn,
            managed=True,
            property_dependencies={owner: (guest.urn,)},
        )
        rule_list = [dict(entry) for entry in rules]  # each guest owns its rule dicts
        if rule_list:
            self.add(
                f"{outer}${FIREWALL_RULES}",
                f"{name}-rules",
                {owner: float(vmid), "nodeName": self.node, "rules": rule_list},
                parent=component.urn,
                managed=True,
                property_dependencies={owner: (guest.urn,)},
            )
        return guest

    def pbs_storage(self, storage_id: str) -> Resource:
        layer = self.layer(self.backup_layer)
        return self.add(
            f"{layer.type}${PBS_STORAGE}",
            f"{storage_id}-pbs",
            {"resourceId": storage_id, "nodes": [self.node], "datastore": "zlh"},
            parent=layer.urn,
            managed=True,
        )

    def backup_job(self, **changes: Any) -> Resource:
        """The host's backup job to its PBS storage, taking every stateful guest (PBS
        itself excepted); ``changes`` replace or add job inputs."""
        storage_id = f"zlh-{self.stack}-backup"
        self.pbs_storage(storage_id)
        vmids = sorted(
            int(r.props["vmId"])
            for r in self.resources
            if r.type in (CONTAINER, VM) and r.protect and "svc-zlh-back" not in r.props["tags"]
        )
        inputs: dict[str, Any] = {
            "resourceId": storage_id,
            "node": self.node,
            "storage": storage_id,
            "vmids": [str(v) for v in vmids],
            "enabled": True,
            **changes,
        }
        layer = self.layer(self.backup_layer)
        return self.add(
            f"{layer.type}${BACKUP_JOB}",
            f"{self.stack}-backup-job",
            inputs,
            parent=layer.urn,
            managed=True,
        )

    def fleet_group(self) -> None:
        """The host's fleet security group and its IP sets, as the program makes them."""
        sets = fleet_ipsets(api=IPv4Address(API), monitor=IPv4Address(MONITOR))
        for name, networks in sets.items():
            self.add(
                f"{HOST_TYPE}${FIREWALL_IPSET}",
                f"{name}-ipset",
                {"name": name, "cidrs": [{"name": str(n)} for n in networks]},
                parent=self.host.urn,
                managed=True,
            )
        layer = self.layer("runtime")
        rules = fleet_group_rules(
            router=IPv4Address(RUNTIME_ROUTER), artifact_store=IPv4Address(RUNTIME_STORE)
        )
        for group, _iface in FLEET_GROUPS:
            self.add(
                f"{layer.type}${SECURITY_GROUP}",
                group,
                {"name": group, "rules": [provider_rule(r) for r in rules[group]]},
                parent=layer.urn,
                managed=True,
            )

    def addresses(self, guest: Resource, lan: str) -> None:
        """Give ``guest`` its LAN address (first NIC) behind the runtime router."""
        props = dict(guest.props)
        props["initialization"] = {
            "ipConfigs": [{"ipv4": {"address": f"{lan}/22", "gateway": RUNTIME_ROUTER}}, {}]
        }
        index = self.resources.index(guest)
        self.resources[index] = replace(guest, props=props)

    def host_firewall(
        self,
        *,
        admins: tuple[str, ...] = ("192.0.2.0/24",),
        rules: tuple[dict[str, Any], ...] | None = None,
        local_network: str | None = "127.0.0.1/32",
        node_enabled: bool | None = True,
    ) -> None:
        """The node's own firewall as the program sets it: set, alias, switch, rules."""
        host = self.host.urn
        self.add(
            f"{HOST_TYPE}${FIREWALL_IPSET}",
            "management",
            {"name": "management", "cidrs": [{"name": cidr} for cidr in admins]},
            parent=host,
            managed=True,
        )
        if local_network is not None:
            self.add(
                f"{HOST_TYPE}${FIREWALL_ALIAS}",
                "local-network",
                {"name": "local_network", "cidr": local_network},
                parent=host,
                managed=True,
            )
        if node_enabled is not None:
            self.add(
                f"{HOST_TYPE}${NODE_FIREWALL}",
                "node-firewall",
                {"nodeName": self.node, "enabled": node_enabled},
                parent=host,
                managed=True,
            )
        if rules is None:
            rules = (
                host_rule(8006, "+management"),
                host_rule(22, "+management"),
                host_rule(9100, f"{MONITOR}/32"),
            )
        self.add(
            f"{HOST_TYPE}${FIREWALL_RULES}",
            "host-rules",
            {"nodeName": self.node, "rules": [dict(r) for r in rules]},
            parent=host,
            managed=True,
        )

    def cluster_firewall(self, *, enabled: bool = True) -> Resource:
        return self.add(
            f"{HOST_TYPE}${CLUSTER_FIREWALL}",
            f"{self.stack}-datacenter-firewall",
            {"enabled": enabled, "inputPolicy": "DROP", "outputPolicy": "ACCEPT"},
            parent=self.host.urn,
            managed=True,
        )


def core_builder(*, host_firewall: bool = True) -> StackBuilder:
    b = StackBuilder("core", CORE_ENDPOINT, "zlh-core")
    if host_firewall:
        b.host_firewall()
    cp = "control-plane"
    b.guest(
        "zlh-router",
        300,
        layer=cp,
        role="network",
        service="zlh-router",
        vm=True,
        bridges=("vmbr0", "vmbr1"),
        input_policy="ACCEPT",
    )
    b.guest(
        "zpack-api",
        100,
        layer=cp,
        role="core-infra",
        service="zpack-api",
        bridges=("vmbr1", "vmbr2"),
        rules=[rule(8080, "10.10.0.5/32", iface="net0")],
    )
    b.guest(
        "zlh-db",
        102,
        layer=cp,
        role="core-infra",
        service="zlh-db",
        stateful=True,
        rules=[rule(3306, "10.10.0.10/32", iface="net0")],
    )
    b.guest(
        "zlh-proxy",
        301,
        layer=cp,
        role="network",
        service="zlh-proxy",
        stateful=True,
        rules=[rule(80, None, iface="net0"), rule(443, None, iface="net0")],
    )
    b.guest(
        "zlh-monitor",
        2000,
        layer=cp,
        role="monitoring",
        service="zlh-monitor",
        bridges=("vmbr1", "vmbr2"),
        stateful=True,
    )
    b.cluster_firewall()
    b.backup_job()
    return b


def runtime_builder(
    stack: str = "runtime", node: str = "zlh-runtime", *, fleet_group: bool = False
) -> StackBuilder:
    """The runtime stack; ``fleet_group``: its fleet as the program makes it, attaching the
    host's security group (else the agent rules sit on each container, where the agent
    port's tests vary them)."""
    b = StackBuilder(stack, RUNTIME_ENDPOINT, node)
    b.host_firewall()
    b.guest(
        "zlh-zpack-router",
        310,
        layer="edge",
        role="network",
        service="zlh-zpack-router",
        vm=True,
        bridges=("vmbr0", "vmbr1"),
        input_policy="ACCEPT",
    )
    b.guest(
        "zlh-zpack-proxy",
        311,
        layer="edge",
        role="network",
        service="zlh-zpack-proxy",
        stateful=True,
        rules=[rule(80, None, iface="net0"), rule(443, None, iface="net0")],
    )
    b.guest(
        "zlh-velocity",
        312,
        layer="edge",
        role="network",
        service="zlh-velocity",
        rules=[rule(25565, None, iface="net0")],
    )
    b.guest(
        "zlh-artifacts",
        150,
        layer="runtime",
        role="core-infra",
        service="zlh-artifacts",
        stateful=True,
        rules=[rule(8080, "10.20.0.0/22", iface="net0")],
    )
    b.guest("zlh-base", 200, layer="runtime", role="template", service="template")
    fleet_rules: Sequence[dict[str, Any]] = FLEET_RULES
    if fleet_group:
        b.fleet_group()
        fleet_rules = tuple(
            {"securityGroup": group, "iface": iface, "enabled": True}
            for group, iface in FLEET_GROUPS
        )
    for name, vmid, role, address in (
        ("mc-survival", 1000, "game", "10.20.1.0"),
        ("dev-alice", 1100, "dev", "10.20.1.100"),
    ):
        guest = b.guest(
            name,
            vmid,
            layer="runtime",
            role=role,
            service=role,
            bridges=("vmbr1", "vmbr2"),
            rules=fleet_rules,
            stateful=True,
        )
        if fleet_group:
            b.addresses(guest, address)
    if fleet_group:
        b.addresses(find(b.resources, "zlh-artifacts"), RUNTIME_STORE)
    b.cluster_firewall()
    b.backup_job()
    return b


def core_stack() -> list[Resource]:
    return core_builder().resources


def runtime_stack(
    stack: str = "runtime", node: str = "zlh-runtime", *, fleet_group: bool = False
) -> list[Resource]:
    return runtime_builder(stack, node, fleet_group=fleet_group).resources


def find(resources: Iterable[Resource], name: str, type_: str = CONTAINER) -> Resource:
    """The resource of that name and type (a guest's container by default)."""
    for resource in resources:
        if resource.name == name and resource.type in (type_, VM if type_ == CONTAINER else type_):
            return resource
    raise KeyError(f"{name} ({type_})")


def props(resource: Resource) -> dict[str, Any]:
    """A fixture's properties, to change in place (they are a plain dict)."""
    assert isinstance(resource.props, dict)
    return resource.props


def guests(resources: Iterable[Resource]) -> list[Resource]:
    return [r for r in resources if r.type in (CONTAINER, VM)]


def unknown(resource: Resource, **sentinels: str) -> Resource:
    """The resource with ``key=sentinel`` values unknown, seen through the SDK's proxy."""
    props = {**resource.props, **sentinels}
    return replace(resource, props=unknown_checking_proxy(props))
