"""The Pulumi program: pick the stack's role, validate its config once, build its layers.

``core`` builds the control plane and exports the contract; ``runtime`` and
``runtime-<x>`` read that contract through a StackReference and build the edge and
runtime layers. Nothing here reads from a runtime stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_proxmoxve as proxmox
import pulumi_random as random
from pulumi.output import Unknown
from pulumi.runtime import config as runtime_config
from pulumi.runtime.sync_await import _sync_await

from zlh_infra.config import (
    NAMESPACE,
    ConfigModel,
    CoreStackConfig,
    M,
    RuntimeStackConfig,
    check_secret_keys,
    parse_stack_config,
)
from zlh_infra.contract import (
    CONTRACT_OUTPUTS,
    CONTRACT_VERSION,
    DEPLOY_TIME_OUTPUTS,
    SECRET_OUTPUTS,
    ContractError,
    CoreContract,
    parse_contract,
)
from zlh_infra.errors import ConfigError
from zlh_infra.layers.control_plane import ControlPlane, ControlPlaneArgs
from zlh_infra.layers.edge import Edge, EdgeArgs
from zlh_infra.layers.guest_steps import NodeShell
from zlh_infra.layers.host import Host, HostArgs
from zlh_infra.layers.runtime import FleetMember, Runtime, RuntimeArgs
from zlh_infra.layers.site import Site
from zlh_infra.layers.vendor import not_known
from zlh_infra.platform.api_identity import (
    FLEET_SPEC_OUTPUT,
    FleetSegment,
    FleetSpec,
    FleetTemplate,
)
from zlh_infra.platform.catalogue import EDGE_SERVICES, RUNTIME_SERVICES, Network
from zlh_infra.platform.fleet_firewall import fleet_ipsets
from zlh_infra.platform.proxy_config import GameServer, HttpRoute
from zlh_infra.platform.topology import StackRole, UnknownStackError, short_stack, stack_role
from zlh_infra.platform.vmids import VmidRole
from zlh_infra.services.routes import HOST_KEYS_OUTPUT

WAN_BRIDGE = "vmbr0"


def main() -> None:
    stack = pulumi.get_stack()
    try:
        role = stack_role(stack)
    except UnknownStackError as error:
        raise ConfigError([str(error)], stack=stack) from None
    raw, secret_keys = _stack_config()
    if role is StackRole.CORE:
        deploy_core(stack, _load(CoreStackConfig, raw, secret_keys, stack))
    else:
        config = _load(RuntimeStackConfig, raw, secret_keys, stack)
        # In the routers stage the core stack has read nothing from its guests yet.
        read = read_core_contract(config.core_stack, allow_pending=config.stage == "routers")
        deploy_runtime(stack, config, read)


def _stack_config() -> tuple[dict[str, str], set[str]]:
    """The engine's flat config map (set in-process or through the environment)."""
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    secret_keys |= {key for key in raw if runtime_config.is_config_secret(key)}
    return {k: v for k, v in raw.items() if k.startswith(f"{NAMESPACE}:")}, secret_keys


def _load(model: type[M], raw: Mapping[str, str], secret_keys: set[str], stack: str) -> M:
    plain_credentials = check_secret_keys(model, secret_keys, raw)
    if plain_credentials:
        raise ConfigError(plain_credentials, stack=stack)
    return parse_stack_config(model, raw, stack=stack)


def _providers(stack: str, config: ConfigModel) -> list[pulumi.ProviderResource]:
    """One explicit provider per package: default providers are disabled in every stack."""
    host = config.proxmox
    token = config.proxmox_api_token
    key = config.ssh_private_key
    proxmox_provider = proxmox.Provider(
        f"{stack}-proxmox",
        endpoint=host.endpoint,
        insecure=host.insecure,
        # Unset, the provider reads PROXMOX_VE_API_TOKEN from the environment.
        api_token=pulumi.Output.secret(token.get_secret_value()) if token else None,
        ssh=proxmox.ProviderSshArgs(
            username=host.ssh_user,
            agent=key is None,
            private_key=pulumi.Output.secret(key.get_secret_value()) if key else None,
        ),
    )
    return [
        proxmox_provider,
        random.Provider(f"{stack}-random"),
        command.Provider(f"{stack}-command"),
    ]


def _site(
    stack: str,
    config: ConfigModel,
    host: Host,
    *,
    dns_servers: list[str],
    router: str,
    extra_addresses: Mapping[tuple[str, Network], IPv4Address] | None = None,
) -> Site:
    addresses: dict[tuple[str, Network], IPv4Address] = dict(extra_addresses or {})
    for name, guest in config.guests.items():
        if guest.lan_address is not None:
            addresses[(name, Network.LAN)] = guest.lan_address
        if guest.management_address is not None:
            addresses[(name, Network.MANAGEMENT)] = guest.management_address
    key = config.ssh_private_key
    return Site(
        stack=stack,
        node=config.proxmox.node,
        datastore=config.storage.datastore,
        wan_bridge=WAN_BRIDGE,
        lan=config.network.lan,
        management=config.network.management,
        dns_domain=config.network.dns_domain,
        dns_servers=dns_servers,
        os_template_file_id=host.os_template_file_id,
        router_iso_file_id=host.router_iso_file_id,
        shell=NodeShell(
            address=config.proxmox.shell_address,
            host_key=config.proxmox.ssh_host_key,
            user=config.proxmox.ssh_user,
            private_key=key.get_secret_value() if key else None,
        ),
        router=router,
        converge=config.stage == "platform",
        addresses=addresses,
    )


def _host(
    stack: str,
    config: ConfigModel,
    providers: list[pulumi.ProviderResource],
    *,
    monitor_address: IPv4Address,
    fleet_sets: Mapping[str, Sequence[IPv4Network | IPv6Network]] | None = None,
) -> Host:
    return Host(
        f"{stack}-host",
        HostArgs(
            node=config.proxmox.node,
            image_store=config.storage.image_store,
            os_template=config.os_template,
            router_iso=config.router_iso,
            admin_sources=config.proxmox.admin_sources,
            monitor_address=str(monitor_address),
            fleet_sets=fleet_sets or {},
            management_bridge=config.network.management.bridge,
        ),
        pulumi.ResourceOptions(providers=providers),
    )


def deploy_core(stack: str, config: CoreStackConfig) -> ControlPlane:
    providers = _providers(stack, config)
    monitor = config.guests["zlh-monitor"].management_address
    assert monitor is not None  # required by the catalogue: the config refused it missing
    host = _host(stack, config, providers, monitor_address=monitor)
    dns = config.guests["zlh-dns"].lan_address
    # The router resolves too, so a guest reaches its package mirrors before zlh-dns runs.
    site = _site(
        stack,
        config,
        host,
        dns_servers=[str(dns), str(config.network.lan.gateway)],
        router="zlh-router",
        # The nodes back up to zlh-back over the management network, from these addresses.
        extra_addresses={
            (f"node:{node}", Network.MANAGEMENT): address
            for node, address in config.monitoring.proxmox_nodes.items()
            if address in config.network.management.cidr
        },
    )
    control_plane = ControlPlane(
        "control-plane",
        ControlPlaneArgs(
            site=site,
            guests=config.guests,
            domains=config.domains,
            pbs=config.pbs,
            backup=config.backup,
            releases=config.releases,
            database=config.database,
            monitoring=config.monitoring,
            vendor=config.vendor,
            apt_repositories=config.apt_repositories,
            acme=config.acme,
            acme_credentials=config.acme_dns_credentials,
            headscale=config.headscale,
            dns=config.dns,
            runtime_hosts=config.runtime_hosts,
        ),
        pulumi.ResourceOptions(providers=providers),
    )
    exports: dict[str, Any] = {
        "contractVersion": CONTRACT_VERSION,
        "coreNode": config.proxmox.node,
        "coreHosts": sorted({config.proxmox.endpoint_host, config.proxmox.shell_address}),
        "coreHostKey": config.proxmox.ssh_host_key,
        "managementCidr": str(config.network.management.cidr),
        "apiManagementAddress": control_plane.api_management_address,
        "monitorManagementAddress": control_plane.monitor_management_address,
        "pbsServer": control_plane.pbs_server,
        "pbsDatastore": control_plane.pbs_datastore,
        "pbsFingerprint": control_plane.pbs_fingerprint,
        "runtimeHosts": control_plane.runtime_hosts,
        "pbsHosts": control_plane.pbs_hosts,
        "apiHosts": control_plane.api_hosts,
        "headscaleUrl": control_plane.headscale_url,
        "headscalePreauthKey": control_plane.headscale_preauth_key,
        "routeKey": control_plane.route_key,
        "coreVmids": control_plane.vmids,
        "fleetBlocks": {node: str(first) for node, first in config.monitoring.fleets.items()},
    }
    for name in CONTRACT_OUTPUTS:
        if exports[name] is None:
            continue
        value = exports[name]
        pulumi.export(name, pulumi.Output.secret(value) if name in SECRET_OUTPUTS else value)
    return control_plane


@dataclass(frozen=True, slots=True)
class CoreOutputs:
    """The core stack's contract, validated, and its deploy-time values as Outputs.

    ``pbs_fingerprint``, ``headscale_preauth_key`` (secret) and ``route_key`` are known
    once the core stack has deployed; previewed against a core stack that was itself only
    previewed, they are unknown, as the engine shows any value still to come.
    """

    contract: CoreContract
    pbs_fingerprint: pulumi.Output[str]
    headscale_preauth_key: pulumi.Output[str]
    route_key: pulumi.Output[str]


def read_core_contract(core_stack: str, *, allow_pending: bool = False) -> CoreOutputs:
    """Read and validate the core stack's contract before any resource is registered.

    The outputs are awaited here, synchronously, because every runtime resource is
    shaped by them and a bad contract must stop the program before it starts. A
    deploy-time output (``DEPLOY_TIME_OUTPUTS``) may be unknown or missing in a preview
    (against a core stack previewed, not deployed) and with ``allow_pending`` (the
    routers stage, which uses neither); a deploy in the platform stage needs them.
    """
    reference = pulumi.StackReference(core_stack)
    outputs = _sync_await(reference.outputs.future(with_unknowns=True)) or {}
    # A preview shows a value still to come as unknown; a deploy needs every value.
    pending_allowed = allow_pending or pulumi.runtime.is_dry_run()
    values: dict[str, Any] = {}
    pending: set[str] = set()
    for name in CONTRACT_OUTPUTS:
        value = outputs.get(name)
        if value is not None and not isinstance(value, Unknown):
            values[name] = value
        elif name in DEPLOY_TIME_OUTPUTS and pending_allowed:
            pending.add(name)
    try:
        contract = parse_contract(values, core_stack=core_stack, pending=pending)
    except ContractError as error:
        raise ConfigError([str(error)], stack=pulumi.get_stack()) from None

    def value_of(known: str | None) -> pulumi.Output[str]:
        return pulumi.Output.from_input(known) if known is not None else not_known()

    key = contract.headscale_preauth_key
    return CoreOutputs(
        contract=contract,
        pbs_fingerprint=value_of(contract.pbs_fingerprint),
        headscale_preauth_key=pulumi.Output.secret(
            value_of(key.get_secret_value() if key else None)
        ),
        route_key=value_of(contract.route_key),
    )


def fleet_members(config: RuntimeStackConfig) -> list[FleetMember]:
    return [
        FleetMember(
            guest=guest,
            role=role,
            lan_address=config.fleet_addresses(Network.LAN, guest.vmid),
            management_address=config.fleet_addresses(Network.MANAGEMENT, guest.vmid),
        )
        for role, fleet in ((VmidRole.GAME, config.games), (VmidRole.DEV, config.devs))
        for guest in fleet
    ]


def fleet_spec(stack: str, config: RuntimeStackConfig, site: Site) -> FleetSpec:
    """What zpack-api gives a container it makes on this host: the declared fleet's shape."""
    return FleetSpec(
        node=config.proxmox.node,
        stack=short_stack(stack),
        lan=FleetSegment(
            config.network.lan.bridge, config.network.lan.cidr, config.network.lan.gateway
        ),
        management=FleetSegment(config.network.management.bridge, config.network.management.cidr),
        fleet_offset=config.network.fleet_offset,
        templates=tuple(
            FleetTemplate(
                template.vmid,
                VmidRole.GAME if template.kind == "game" else VmidRole.DEV,
                tuple(template.ports),
            )
            for _name, template in sorted(config.templates.items())
        ),
        addresses=site.addresses,
        storage=config.storage.datastore,
    )


def deploy_runtime(stack: str, config: RuntimeStackConfig, core: CoreOutputs) -> Runtime:
    contract = core.contract
    problems = config.refuse_contract(
        contract, stack=short_stack(stack), core_stack=config.core_stack
    )
    if problems:
        raise ConfigError(
            [
                p if p.startswith(NAMESPACE) or p.startswith("core stack") else f"{NAMESPACE}:{p}"
                for p in problems
            ],
            stack=stack,
        )
    _host_entry, pbs_host, api_host = contract.host(
        short_stack(stack), core_stack=config.core_stack
    )

    providers = _providers(stack, config)
    host = _host(
        stack,
        config,
        providers,
        monitor_address=contract.monitor_management_address,
        fleet_sets=fleet_ipsets(
            api=contract.api_management_address, monitor=contract.monitor_management_address
        ),
    )
    router = str(config.network.lan.gateway)
    site = _site(
        stack,
        config,
        host,
        # zlh-zpack-router resolves for the runtime host: no runtime guest needs the
        # core host to boot or run.
        dns_servers=[router],
        router="zlh-zpack-router",
        extra_addresses={
            ("core:zpack-api", Network.MANAGEMENT): contract.api_management_address,
            ("core:zlh-monitor", Network.MANAGEMENT): contract.monitor_management_address,
            **{
                (name, Network.MANAGEMENT): address
                for name, address in config.service_management_addresses().items()
            },
        },
    )
    members = fleet_members(config)
    layer_opts = pulumi.ResourceOptions(providers=providers)
    # The runtime layer first: its zlh-artifacts serves the edge's vendor software, and
    # its game templates share Velocity's forwarding secret.
    runtime = Runtime(
        "runtime",
        RuntimeArgs(
            site=site,
            contract=contract,
            guests={name: config.guests[name] for name in RUNTIME_SERVICES},
            base_image=config.base_template,
            templates=config.templates,
            fleet=members,
            agent=config.agent,
            backup=config.backup,
            vendor=config.vendor,
            paper=config.paper,
            pbs_host=pbs_host,
            api_login=api_host,
            fleet_sets=host.fleet_sets,
            pbs_fingerprint=core.pbs_fingerprint,
            headscale_preauth_key=core.headscale_preauth_key,
            edge_backups=[
                config.guests[name].vmid for name, spec in EDGE_SERVICES.items() if spec.stateful
            ],
        ),
        layer_opts,
    )
    edge = Edge(
        "edge",
        EdgeArgs(
            site=site,
            guests={name: config.guests[name] for name in EDGE_SERVICES},
            routes=[
                HttpRoute(
                    f"ide-{m.guest.name}",
                    f"{m.guest.name}.{config.domains.dev_ide}",
                    f"http://{m.lan_address}:{config.templates[m.guest.template].ports[0]}",
                )
                for m in members
                if m.role is VmidRole.DEV
            ],
            game_servers=[
                GameServer(
                    m.guest.name, f"{m.lan_address}:{config.templates[m.guest.template].ports[0]}"
                )
                for m in members
                if m.role is VmidRole.GAME
            ],
            games_domain=config.domains.games,
            dev_domain=config.domains.dev_ide,
            acme=config.acme,
            acme_credentials=config.acme_dns_credentials,
            traefik=runtime.vendor_artifacts["traefik"],
            velocity=runtime.vendor_artifacts["velocity"],
            store_url=runtime.store_url,
            vendor_store=runtime.vendor_store,
            forwarding_secret=runtime.forwarding_secret,
            route_key=core.route_key,
        ),
        layer_opts,
    )
    pulumi.export("node", config.proxmox.node)
    pulumi.export("coreStack", config.core_stack)
    # What zpack-api gives a container it makes here (docs/fleet.md).
    pulumi.export(FLEET_SPEC_OUTPUT, fleet_spec(stack, config, site).export())
    if edge.route_host_keys is not None:
        # For the core stack's runtimeHosts.<stack>.routeHostKeys (docs/fleet.md).
        pulumi.export(HOST_KEYS_OUTPUT, edge.route_host_keys)
    pulumi.export(
        "fleet",
        {
            m.guest.name: {
                "vmid": m.guest.vmid,
                "role": str(m.role),
                "lanAddress": str(m.lan_address),
                "managementAddress": str(m.management_address),
            }
            for m in members
        },
    )
    return runtime
