"""API answers -> the wire-form properties the policy checks and the evaluator read.

The policy pack sees pulumi-proxmoxve inputs (camelCase: ``vmId``, ``nodeName``,
``networkInterfaces``, ``enabled``, ``inputPolicy``...); ``firewall_state.read_firewall``
reads the same shape as (type, name, props) triples. Proxmox's API speaks its own
dialect (``net1: name=eth1,bridge=vmbr2,firewall=1``, ``enable: 1``, ``policy_in``,
tags as ``a;b``). Translating the live answers into the provider's shape lets the
audit run the pack's checks and the evaluator unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from zlh_infra.platform import firewall_state as fs
from zlh_infra.platform.type_tokens import NODE_FIREWALL
from zlh_infra.platform.wire_numbers import whole_number
from zlh_infra.policies.resilience import BACKUP_JOB, PBS_STORAGE
from zlh_infra.policies.resources import CONTAINER, VM, Resource
from zlh_infra.tooling.audit.client import GuestRecord, HostSnapshot, flag

Triple = tuple[str, str, Mapping[str, Any]]

_NET_KEY = re.compile(r"^net(\d+)$")
#: Proxmox's own NIC models: in a VM's ``netN`` the model is the first key (``virtio=MAC``).
_VM_NIC_MODELS = ("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "ne2k_pci", "pcnet", "i82551")


def property_string(text: object) -> dict[str, str]:
    """``name=eth0,bridge=vmbr2,firewall=1`` -> ``{"name": "eth0", ...}`` (bare items -> "")."""
    values: dict[str, str] = {}
    for item in str(text or "").split(","):
        key, _, value = item.partition("=")
        if key.strip():
            values[key.strip()] = value.strip()
    return values


def split_tags(value: object) -> list[str]:
    """Proxmox keeps tags as one string separated by ``;`` (``,`` and spaces also parse)."""
    return sorted({tag for tag in re.split(r"[;,\s]+", str(value or "")) if tag})


@dataclass(frozen=True, slots=True)
class LiveNic:
    index: int
    bridge: str
    firewall: bool
    address: str | None
    address6: str | None = None
    gateway: str | None = None

    @property
    def iface(self) -> str:
        return f"net{self.index}"


def nics(guest: GuestRecord) -> list[LiveNic]:
    """The guest's ``netN`` entries in index order (an index may be missing)."""
    found = []
    for key, value in guest.config.items():
        match = _NET_KEY.match(key)
        if match is None:
            continue
        index = int(match.group(1))
        props = property_string(value)
        if guest.kind == "qemu":
            # A VM's addresses live in cloud-init's ipconfigN, not in netN.
            addresses = property_string(guest.config.get(f"ipconfig{index}"))
        else:
            addresses = props
        found.append(
            LiveNic(
                index=index,
                # Proxmox's default bridge is none; the checks treat "" as "not the bridge".
                bridge=props.get("bridge", ""),
                firewall=flag(props.get("firewall")),
                address=addresses.get("ip") or None,
                address6=addresses.get("ip6") or None,
                gateway=addresses.get("gw") or None,
            )
        )
    return sorted(found, key=lambda nic: nic.index)


class AbsentNic:
    """The slot of a ``netN`` the guest does not have (net1 removed, net2 kept).

    The provider lists NICs by position, so a gap needs a filler. The checks' NIC reader
    skips anything that is not a mapping, and ``read_firewall`` reads ``.get()`` of each
    entry: this is neither a NIC to the checks nor a bridge to the evaluator.
    """

    def get(self, key: str, default: object = None) -> object:
        return default

    def __repr__(self) -> str:
        return "AbsentNic()"


def _nic_list(guest: GuestRecord) -> list[object]:
    """NICs as the provider lists them: position i is ``net<i>``."""
    live = nics(guest)
    if not live:
        return []
    slots: list[object] = [AbsentNic()] * (live[-1].index + 1)
    for nic in live:
        entry: dict[str, Any] = {"bridge": nic.bridge, "firewall": nic.firewall}
        if guest.kind == "lxc":
            entry["name"] = property_string(guest.config.get(nic.iface)).get("name", "")
        else:
            model = next(
                (m for m in _VM_NIC_MODELS if m in property_string(guest.config.get(nic.iface))),
                None,
            )
            entry["model"] = model or ""
        slots[nic.index] = entry
    return slots


def guest_type(guest: GuestRecord) -> str:
    return CONTAINER if guest.kind == "lxc" else VM


def guest_urn(snapshot: HostSnapshot, guest: GuestRecord) -> str:
    """A stable identity for findings (never a Pulumi URN: no ``::`` in it)."""
    return f"pve:{snapshot.target.stack}/{guest.node}/{guest.kind}/{guest.vmid}"


def _ip_configs(guest: GuestRecord) -> list[dict[str, Any]]:
    """``initialization.ipConfigs``: position i is ``net<i>``, as in the NIC list."""
    live = nics(guest)
    configs: list[dict[str, Any]] = [{} for _ in range(live[-1].index + 1)] if live else []
    for nic in live:
        for family, address in (("ipv4", nic.address), ("ipv6", nic.address6)):
            if address:
                configs[nic.index][family] = {"address": address}
        if nic.gateway:
            configs[nic.index].setdefault("ipv4", {})["gateway"] = nic.gateway
    return configs


def _dns(guest: GuestRecord) -> dict[str, Any] | None:
    """``initialization.dns``: ``nameserver`` (space separated) and ``searchdomain``."""
    servers = str(guest.config.get("nameserver") or "").split()
    if not servers:
        return None
    dns: dict[str, Any] = {"servers": servers}
    if guest.config.get("searchdomain"):
        dns["domain"] = str(guest.config["searchdomain"])
    return dns


def guest_props(guest: GuestRecord) -> dict[str, Any]:
    """The guest as a ContainerLegacy / VmLegacy input."""
    config = guest.config
    addresses = _ip_configs(guest)
    props: dict[str, Any] = {
        "vmId": guest.vmid,
        "nodeName": guest.node,
        "tags": split_tags(config.get("tags")),
        "protection": flag(config.get("protection")),
        "template": guest.template,
        "description": str(config.get("description") or ""),
        "initialization": {"ipConfigs": addresses},
    }
    if (dns := _dns(guest)) is not None:
        props["initialization"]["dns"] = dns
    if guest.pool:
        props["poolId"] = guest.pool
    if guest.kind == "lxc":
        props["networkInterfaces"] = _nic_list(guest)
        props["initialization"]["hostname"] = str(config.get("hostname") or guest.name)
    else:
        props["networkDevices"] = _nic_list(guest)
        props["name"] = str(config.get("name") or guest.name)
    return props


def _owner(guest: GuestRecord) -> dict[str, Any]:
    key = "containerId" if guest.kind == "lxc" else "vmId"
    return {key: guest.vmid, "nodeName": guest.node}


def options_props(options: Mapping[str, Any]) -> dict[str, Any]:
    """Firewall options (``enable``, ``policy_in``) as an OptionsLegacy / FirewallLegacy input."""
    props: dict[str, Any] = {
        # The datacenter's switch may hold a time stamp instead of 1; any non-zero is on.
        "enabled": flag(options.get("enable")) or _positive(options.get("enable")),
    }
    for api_key, prop in (("policy_in", "inputPolicy"), ("policy_out", "outputPolicy")):
        if options.get(api_key):
            props[prop] = str(options[api_key])
    return props


#: The guest options that bound what it sends, where pve-firewall reads an unset one
#: otherwise than the provider does: MAC filtering is on, and DHCP is let out unless
#: ``dhcp`` is 0 (though the option's documented default is off). An unset ``ipfilter``
#: is off for both, and stays unset.
_UNSET = {"macfilter": True, "dhcp": True}


def guest_options_props(options: Mapping[str, Any]) -> dict[str, Any]:
    """A guest's firewall options as an OptionsLegacy input, with what bounds its sending."""
    props = options_props(options)
    for key in ("ipfilter", "macfilter", "dhcp"):
        value = options.get(key)
        if value is not None:
            props[key] = _option_flag(value)
        elif key in _UNSET:
            props[key] = _UNSET[key]
    return props


def _option_flag(value: object) -> object:
    """0 or 1 as a bool; anything else as it came, for the reader to refuse by name."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value).strip() in ("0", "1"):
        return str(value).strip() == "1"
    return value


def _positive(value: object) -> bool:
    return isinstance(value, str) and value.strip().isdigit() and int(value) > 0


def rule_props(rule: Mapping[str, Any]) -> dict[str, Any]:
    """One API rule as a RulesLegacy rule input; a ``group`` rule names its security group."""
    kind = str(rule.get("type") or "in")
    props: dict[str, Any] = {
        "type": kind,
        "action": str(rule.get("action") or ""),
        # Proxmox writes a disabled rule with a leading '|' and answers enable=0; a rule
        # without the key is enabled, as its parser reads it.
        "enabled": flag(rule["enable"]) if "enable" in rule else True,
    }
    if kind == "group":
        props["securityGroup"] = props["action"]
    for key in ("proto", "dport", "sport", "source", "dest", "iface", "macro", "comment"):
        if rule.get(key) not in (None, ""):
            props[key] = str(rule[key])
    return props


def ipset_props(name: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "cidrs": [
            {"name": str(entry.get("cidr")), "nomatch": flag(entry.get("nomatch"))}
            for entry in entries
        ],
    }


def guest_resource(snapshot: HostSnapshot, guest: GuestRecord) -> Resource:
    return Resource(
        urn=guest_urn(snapshot, guest),
        type=guest_type(guest),
        name=guest.name,
        props=guest_props(guest),
    )


def options_resource(snapshot: HostSnapshot, guest: GuestRecord) -> Resource:
    return Resource(
        urn=guest_urn(snapshot, guest) + "/firewall/options",
        type=fs.OPTIONS,
        name=f"{guest.kind}/{guest.vmid}",
        props={**guest_options_props(guest.firewall_options), **_owner(guest)},
    )


def rules_resource(snapshot: HostSnapshot, guest: GuestRecord) -> Resource:
    return Resource(
        urn=guest_urn(snapshot, guest) + "/firewall/rules",
        type=fs.RULES,
        name=guest.name,
        props={**_owner(guest), "rules": [rule_props(rule) for rule in guest.firewall_rules]},
    )


def datacenter_resource(snapshot: HostSnapshot) -> Resource:
    return Resource(
        urn=f"pve:{snapshot.target.stack}/cluster/firewall",
        type=fs.DATACENTER,
        name=f"on node {snapshot.target.node}",
        props=options_props(snapshot.firewall_options),
    )


#: Where Proxmox keeps the datacenter's and a node's firewall: how findings name them.
CLUSTER_FW = "/etc/pve/firewall/cluster.fw"


def host_fw(node: str) -> str:
    return f"/etc/pve/nodes/{node}/host.fw"


def host_firewall_resources(snapshot: HostSnapshot) -> list[Resource]:
    """The datacenter's options and rules and the node's, as the provider's inputs.

    Read as pve-firewall applies them: the datacenter's input policy is DROP unless set,
    and the node's firewall is on unless ``enable`` is 0 (a value that is neither 0 nor 1
    counts as off, so it is reported).
    """
    stack, node = snapshot.target.stack, snapshot.target.node
    options = options_props(snapshot.firewall_options)
    options["inputPolicy"] = str(snapshot.firewall_options.get("policy_in") or "DROP")
    node_enable = snapshot.node_firewall_options.get("enable")
    return [
        Resource(
            urn=f"pve:{stack}/cluster/firewall/options",
            type=fs.DATACENTER,
            name=CLUSTER_FW,
            props=options,
        ),
        Resource(
            urn=f"pve:{stack}/cluster/firewall/rules",
            type=fs.RULES,
            name=CLUSTER_FW,
            props={"rules": [rule_props(rule) for rule in snapshot.cluster_rules]},
        ),
        Resource(
            urn=f"pve:{stack}/nodes/{node}/firewall/options",
            type=NODE_FIREWALL,
            name=host_fw(node),
            props={
                "nodeName": node,
                "enabled": node_enable is None or _option_flag(node_enable) is True,
            },
        ),
        Resource(
            urn=f"pve:{stack}/nodes/{node}/firewall/rules",
            type=fs.RULES,
            name=host_fw(node),
            props={"nodeName": node, "rules": [rule_props(rule) for rule in snapshot.node_rules]},
        ),
    ]


def group_resource(snapshot: HostSnapshot, name: str) -> Resource:
    rules = snapshot.security_groups.get(name, [])
    return Resource(
        urn=f"pve:{snapshot.target.stack}/cluster/firewall/groups/{name}",
        type=fs.SECURITY_GROUP,
        name=name,
        props={"name": name, "rules": [rule_props(rule) for rule in rules]},
    )


def _names(
    base: str,
    aliases: list[dict[str, Any]],
    ipsets: dict[str, list[dict[str, Any]]],
    owner: dict[str, Any],
) -> Iterator[Resource]:
    for alias in aliases:
        name = str(alias.get("name"))
        yield Resource(
            urn=f"{base}/aliases/{name}",
            type=fs.ALIAS,
            name=name,
            props={**owner, "name": name, "cidr": alias.get("cidr")},
        )
    for name, entries in ipsets.items():
        yield Resource(
            urn=f"{base}/ipset/{name}",
            type=fs.IPSET,
            name=name,
            props={**owner, **ipset_props(name, entries)},
        )


def firewall_resources(
    snapshot: HostSnapshot, guests: Iterable[GuestRecord] | None = None
) -> list[Resource]:
    """The host's firewall state as resources: the datacenter's, then each guest's.

    ``guests`` limits the guests (default: all of the host's); the datacenter's
    aliases, IP sets and security groups are always included.
    """
    found = [datacenter_resource(snapshot)]
    found += _names(
        f"pve:{snapshot.target.stack}/cluster/firewall", snapshot.aliases, snapshot.ipsets, {}
    )
    found += [group_resource(snapshot, name) for name in snapshot.security_groups]
    for guest in snapshot.guests if guests is None else guests:
        found += [
            guest_resource(snapshot, guest),
            options_resource(snapshot, guest),
            rules_resource(snapshot, guest),
        ]
        base = guest_urn(snapshot, guest) + "/firewall"
        found += _names(base, guest.aliases, guest.ipsets, _owner(guest))
    return found


def firewall_triples(snapshot: HostSnapshot) -> list[Triple]:
    """The host's firewall state as ``read_firewall`` takes it."""
    return [(r.type, r.name, r.props) for r in firewall_resources(snapshot)]


def backup_job_resource(snapshot: HostSnapshot, job: Mapping[str, Any]) -> Resource | None:
    """A vzdump job as the provider's ``backup.Job`` input, its selection spelled out.

    The pack reads ``enabled``, ``all``, ``node``, ``vmids`` and ``storage``. A live job may also
    select a pool, exclude VMIDs, or pin a VMID list to one node; those become the
    VMIDs the job takes on this host, so the pack's reading stays exact.
    """
    if str(job.get("type") or "vzdump") != "vzdump":
        return None
    node = str(job["node"]) if job.get("node") else None
    excluded = vmid_list(job.get("exclude"))
    on_node = {g.vmid for g in snapshot.guests if node is None or g.node == node}
    props: dict[str, Any] = {
        "resourceId": str(job.get("id") or ""),
        "enabled": flag(job["enabled"]) if "enabled" in job else True,
        "all": False,
        "vmids": [],
        "storage": str(job.get("storage") or ""),
    }
    if node is not None:
        props["node"] = node
    if flag(job.get("all")):
        if excluded:
            props["vmids"] = [str(vmid) for vmid in sorted(on_node - excluded)]
        else:
            props["all"] = True
    else:
        if job.get("vmid"):
            chosen = vmid_list(job["vmid"])
        else:
            chosen = set(snapshot.pools.get(str(job.get("pool") or ""), set()))
        props["vmids"] = [str(vmid) for vmid in sorted((chosen & on_node) - excluded)]
    return Resource(
        urn=f"pve:{snapshot.target.stack}/cluster/backup/{props['resourceId']}",
        type=BACKUP_JOB,
        name=props["resourceId"],
        props=props,
    )


def pbs_storage_resources(snapshot: HostSnapshot) -> list[Resource]:
    """The host's Proxmox Backup Server storages, as the provider's ``storage.Pbs``."""
    return [
        Resource(
            urn=f"pve:{snapshot.target.stack}/storage/{storage['storage']}",
            type=PBS_STORAGE,
            name=str(storage["storage"]),
            props={"resourceId": str(storage["storage"])},
        )
        for storage in snapshot.storages
        if storage.get("type") == "pbs" and storage.get("storage")
    ]


def vmid_list(value: object) -> set[int]:
    """``"100,101"`` (or ``;`` / space separated) -> ``{100, 101}``."""
    return {
        number
        for item in re.split(r"[,;\s]+", str(value or ""))
        if (number := whole_number(item)) is not None
    }
