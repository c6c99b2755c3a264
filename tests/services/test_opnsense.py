"""Both routers' config.xml, against OPNsense's own configuration format.

Two references, both opnsense/core tag 25.7.11 (commit
41587bb2d45af01811f580438dd758b8d45c9541, BSD-2-Clause):

- ``src/etc/config.xml.sample``, copied unmodified to ``tests/data/reference/opnsense/``:
  the generated files have its root and top-level layout, and every element they share
  with it sits at a path the sample has;
- the fields OPNsense's code reads from a filter rule, a port forward, an interface and a
  gateway, and the value forms it accepts, transcribed below next to the file and
  function they come from. A generated element outside them, or a value OPNsense would
  disable its rule for, fails.

The rules are then read back the way OPNsense turns them into pf rules (first match,
every rule quick) to check what each router lets through.
"""

from __future__ import annotations

import copy
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from tests.stack_configs import engine_config, set_path, shipped
from zlh_infra.config import CoreStackConfig, RuntimeStackConfig, parse_stack_config
from zlh_infra.platform.catalogue import (
    CONTROL_PLANE_SERVICES,
    EDGE_SERVICES,
    Network,
    ServiceSpec,
)
from zlh_infra.services import headscale, opnsense, velocity
from zlh_infra.services.opnsense import (
    BlockedDestination,
    DhcpWan,
    PortForward,
    RouterConfig,
    RouterConfigError,
    StaticWan,
)

SAMPLE_PATH = Path(__file__).parents[1] / "data/reference/opnsense/config.xml.sample"
SAMPLE = ET.parse(SAMPLE_PATH).getroot()
#: git's blob id of upstream's src/etc/config.xml.sample at 25.7.11.
SAMPLE_BLOB = "b4f88b45899ff9f5272d4f2b8dc702d9cb1aea6f"
#: The sample's elements the generated files leave out on purpose: the first-login wizard
#: would offer to redo what the file already configures.
LEFT_OUT = {"trigger_initial_wizard"}

# --- what OPNsense reads (opnsense/core 25.7.11 = 41587bb2d45af01811f580438dd758b8d45c9541) --

#: A filter rule: src/www/firewall_rules_edit.php, ``$config_fields`` (the fields the
#: page loads from ``filter/rule``), plus ``source``/``destination`` (read there with
#: ``address_to_pconfig``) and the revision stamps ``created``/``updated``.
FILTER_RULE_FIELDS = {
    "allowopts", "associated-rule-id", "category", "descr", "direction", "disabled",
    "disablereplyto", "reply-to", "floating", "gateway", "icmptype", "icmp6-type",
    "interfacenot", "interface", "ipprotocol", "log", "max", "max-src-conn",
    "max-src-conn-rate", "max-src-conn-rates", "adaptivestart", "adaptiveend", "overload",
    "max-src-nodes", "max-src-states", "nopfsync", "nosync", "os", "prio", "protocol",
    "quick", "sched", "set-prio", "set-prio-low", "statetimeout", "statetype",
    "state-policy", "tag", "tagged", "tcpflags1", "tcpflags2", "tcpflags_any", "type",
    "tos", "shaper1", "shaper2", "source", "destination", "created", "updated",
}  # fmt: skip
#: A port forward: src/www/firewall_nat_edit.php, the fields its GET branch copies from
#: ``nat/rule``, and ``associated-rule-id``, ``disabled``, ``nordr``, ``source``,
#: ``destination`` it reads besides.
NAT_RULE_FIELDS = {
    "protocol", "target", "local-port", "descr", "interface", "nosync", "log",
    "natreflection", "created", "updated", "ipprotocol", "tag", "tagged", "poolopts",
    "category", "associated-rule-id", "disabled", "nordr", "source", "destination",
}  # fmt: skip
#: ``source``/``destination``: src/www/guiconfig.inc, ``address_to_pconfig`` (and
#: ``Rule::legacyMoveAddressFields`` in
#: src/opnsense/mvc/app/library/OPNsense/Firewall/Rule.php).
ADDRESS_FIELDS = {"any", "network", "address", "not", "port"}
#: An interface: src/www/interfaces.php, ``$std_copy_fieldnames`` (its ``adv_dhcp*``
#: fields left out: nothing here sets them) and the flags it reads besides.
INTERFACE_FIELDS = {
    "alias-address", "alias-subnet", "descr", "dhcp6-ia-pd-len", "dhcp6-prefix-id",
    "dhcp6_ifid", "dhcp6vlanprio", "dhcphostname", "dhcprejectfrom", "dhcpvlanprio",
    "disablechecksumoffloading", "disablelargereceiveoffloading",
    "disablesegmentationoffloading", "disablevlanhwfilter", "gateway", "gateway-6rd",
    "gatewayv6", "hw_settings_overwrite", "if", "ipaddr", "ipaddrv6", "media", "mediaopt",
    "mss", "mtu", "prefix-6rd", "prefix-6rd-v4addr", "prefix-6rd-v4plen", "spoofmac",
    "subnet", "subnetv6", "track6-interface", "track6-prefix-id", "track6_ifid",
    "enable", "blockpriv", "blockbogons", "lock", "promisc", "gateway_interface",
}  # fmt: skip
#: A legacy ``gateways/gateway_item``: the fields of
#: src/opnsense/mvc/app/models/OPNsense/Routing/Gateways.xml that its migration
#: (Routing/Migrations/M1_0_0.php) copies into the model; it skips any other.
GATEWAY_FIELDS = {
    "disabled", "name", "descr", "interface", "ipprotocol", "gateway", "defaultgw",
    "fargw", "monitor_disable", "monitor_noroute", "monitor_killstates",
    "monitor_killstates_priority", "monitor", "force_down", "priority", "weight",
}  # fmt: skip
#: FilterRule::parseType (``reject`` becomes ``block return``; anything else is written
#: as is into pf, so only these mean what they say).
FILTER_TYPES = {"pass", "block", "reject"}
#: Rule::reader: ``inet46`` expands to both families.
IP_PROTOCOLS = {"inet", "inet6", "inet46"}
#: Rule::legacyMoveAddressFields moves a port into the rule only for these protocols.
PORT_PROTOCOLS = {"tcp", "udp", "tcp/udp"}
#: firewall_rules_edit.php's state types, as FilterRule::parseFilterRules reads them.
STATE_TYPES = {"keep state", "sloppy state", "synproxy state", "modulate state", "none"}
#: src/etc/inc/filter.inc, filter_configure_sync: the outbound NAT modes.
OUTBOUND_MODES = {"automatic", "hybrid", "advanced", "disabled"}


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def configs() -> tuple[CoreStackConfig, RuntimeStackConfig]:
    core = parse_stack_config(CoreStackConfig, engine_config(shipped("core")), stack="core")
    runtime = parse_stack_config(
        RuntimeStackConfig, engine_config(shipped("runtime")), stack="runtime"
    )
    return core, runtime


def generated(stack: str) -> ET.Element:
    core, runtime = configs()
    name = "zlh-router" if stack == "core" else "zlh-zpack-router"
    text = opnsense.render_router_configs(core, runtime)[f"{name}/conf/config.xml"]
    return ET.fromstring(text)


def text(element: ET.Element, path: str) -> str:
    found = element.find(path)
    assert found is not None, path
    return found.text or ""


def paths(element: ET.Element, prefix: str = "") -> Iterator[str]:
    for child in element:
        path = f"{prefix}/{child.tag}" if prefix else child.tag
        yield path
        yield from paths(child, path)


# --- OPNsense's reading of the rules (Rule.php, FilterRule.php, ForwardRule.php) ---------


@dataclass(frozen=True)
class PfRule:
    action: str
    interface: str
    protocol: str | None
    source: IPv4Network
    destination: IPv4Network
    port: int | None

    def matches(self, interface: str, protocol: str, source: str, to: str, port: int) -> bool:
        return (
            self.interface == interface
            and self.protocol in (None, protocol)
            and IPv4Address(source) in self.source
            and IPv4Address(to) in self.destination
            and self.port in (None, port)
        )


def interface_networks(document: ET.Element) -> dict[str, IPv4Network]:
    """``lan`` as OPNsense maps it (``(vtnet1:network)``), from the interface's address."""
    found = {}
    for interface in document.findall("interfaces/*"):
        address = text(interface, "ipaddr")
        if address != "dhcp":
            subnet = text(interface, "subnet")
            found[interface.tag] = IPv4Interface(f"{address}/{subnet}").network
    return found


def address_of(side: ET.Element, networks: dict[str, IPv4Network]) -> IPv4Network:
    """Rule::legacyMoveAddressFields and Rule::mapAddressInfo, for what this file uses."""
    if side.find("any") is not None:
        return IPv4Network("0.0.0.0/0")
    network = side.find("network")
    if network is not None:
        return networks[network.text or ""]
    return IPv4Network(text(side, "address"), strict=False)


def pf_rules(document: ET.Element) -> list[PfRule]:
    """The user filter rules in config order: OPNsense registers them in that order, quick."""
    networks = interface_networks(document)
    rules = []
    for rule in document.findall("filter/rule"):
        assert text(rule, "quick") == "1"
        destination = rule.find("destination")
        source = rule.find("source")
        assert destination is not None and source is not None
        port = destination.find("port")
        rules.append(
            PfRule(
                action=text(rule, "type"),
                interface=text(rule, "interface"),
                protocol=rule.findtext("protocol"),
                source=address_of(source, networks),
                destination=address_of(destination, networks),
                port=int(port.text or "") if port is not None else None,
            )
        )
    return rules


def decide(
    rules: list[PfRule], interface: str, protocol: str, source: str, to: str, port: int
) -> str:
    """The first matching rule decides; OPNsense's default deny takes what none matches."""
    for rule in rules:
        if rule.matches(interface, protocol, source, to, port):
            return rule.action
    return "block"


def forwards(document: ET.Element) -> set[tuple[str, int, str, int]]:
    """(protocol, WAN port, target, target port) of every port forward."""
    found = set()
    for rule in document.findall("nat/rule"):
        assert text(rule, "destination/network") == "wanip"
        found.add(
            (
                text(rule, "protocol"),
                int(text(rule, "destination/port")),
                text(rule, "target"),
                int(text(rule, "local-port")),
            )
        )
    return found


# --- the reference copy ---------------------------------------------------------------------


def test_the_sample_is_upstreams_file_unmodified() -> None:
    assert blob_id(SAMPLE_PATH.read_bytes()) == SAMPLE_BLOB


# --- layout against the sample ---------------------------------------------------------------


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_the_generated_file_parses_with_the_samples_root_and_top_level_order(stack: str) -> None:
    document = generated(stack)
    assert document.tag == SAMPLE.tag == "opnsense"
    sample_order = [child.tag for child in SAMPLE]
    tags = [child.tag for child in document]
    assert tags == [tag for tag in sample_order if tag not in LEFT_OUT]


def not_in_sample(document: ET.Element) -> list[str]:
    """Element paths the sample lacks, but in the rules (checked field by field below)."""
    sample_paths = set(paths(SAMPLE))
    rules = ("filter/rule", "nat/rule")
    return [p for p in paths(document) if not p.startswith(rules) and p not in sample_paths]


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_every_element_outside_the_rules_sits_where_the_sample_has_one(stack: str) -> None:
    assert not_in_sample(generated(stack)) == []


def test_the_layout_check_catches_an_element_the_sample_lacks() -> None:
    document = generated("core")
    wan = document.find("interfaces/wan")
    assert wan is not None
    ET.SubElement(wan, "ipaddrv4")
    ET.SubElement(document, "dhcpd")
    assert not_in_sample(document) == ["interfaces/wan/ipaddrv4", "dhcpd"]


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_the_only_login_is_opnsenses_own_default_root(stack: str) -> None:
    document = generated(stack)
    for part in ("system/group", "system/user"):
        generated_items = [(e.tag, e.text) for e in document.findall(f"{part}/*")]
        sample_items = [(e.tag, e.text) for e in SAMPLE.findall(f"{part}/*")]
        assert generated_items == sample_items
    assert len(document.findall("system/user")) == 1
    assert text(document, "system/user/password") == opnsense.DEFAULT_ROOT_PASSWORD_HASH


# --- every rule element is one OPNsense reads, in a form it accepts ---------------------------


def is_port(value: str) -> bool:
    """Util::isPort, for numbers: one port or a range ``a-b`` (stored with '-')."""
    parts = value.split("-")
    return len(parts) <= 2 and all(p.isdigit() and 1 <= int(p) <= 65535 for p in parts)


def is_address(value: str) -> bool:
    """Util::isIpAddress, or Util::isSubnet (an address, '/', a prefix length in digits)."""
    address, slash, prefix = value.partition("/")
    try:
        IPv4Address(address)
    except ValueError:
        return False
    return not slash or (prefix.isdigit() and int(prefix) <= 32)


def address_problems(side: ET.Element, where: str, networks: set[str]) -> list[str]:
    found = [f"{where}/{e.tag}: not read" for e in side if e.tag not in ADDRESS_FIELDS]
    kinds = [e.tag for e in side if e.tag in ("any", "network", "address")]
    if len(kinds) != 1:
        found.append(f"{where}: one of any, network, address expected, found {kinds}")
    network = side.findtext("network")
    # Rule::loadAliasMap: any, (self), each interface and each wan/lan/optN's address.
    if network is not None and network not in {"any", "(self)"} | networks:
        found.append(f"{where}/network: {network!r} is not a network OPNsense knows")
    address = side.findtext("address")
    if address is not None and not is_address(address):
        found.append(f"{where}/address: {address!r} is neither an address nor a subnet")
    port = side.findtext("port")
    if port is not None and not is_port(port):
        found.append(f"{where}/port: {port!r} is not a port or a port range")
    return found


def rule_problems(document: ET.Element) -> list[str]:
    interfaces = {e.tag for e in document.findall("interfaces/*") if e.findtext("if")}
    networks = interfaces | {f"{name}ip" for name in interfaces}
    found: list[str] = []
    filter_ids = []
    for index, rule in enumerate(document.findall("filter/rule")):
        where = f"filter/rule[{index}]"
        found += [f"{where}/{e.tag}: not read" for e in rule if e.tag not in FILTER_RULE_FIELDS]
        if rule.findtext("type") not in FILTER_TYPES:
            found.append(f"{where}/type: {rule.findtext('type')!r}")
        if rule.findtext("ipprotocol") not in IP_PROTOCOLS:
            found.append(f"{where}/ipprotocol: {rule.findtext('ipprotocol')!r}")
        # Rule::reader disables a rule whose interface has no device.
        if rule.findtext("interface") not in interfaces:
            found.append(f"{where}/interface: {rule.findtext('interface')!r} is no interface")
        if rule.find("statetype") is not None and rule.findtext("statetype") not in STATE_TYPES:
            found.append(f"{where}/statetype: {rule.findtext('statetype')!r}")
        for flag in ("quick", "log"):  # parseBool: set when not empty
            if rule.find(flag) is not None and rule.findtext(flag) != "1":
                found.append(f"{where}/{flag}: {rule.findtext(flag)!r}, '1' expected")
        for side in ("source", "destination"):
            element = rule.find(side)
            if element is None:
                found.append(f"{where}/{side}: missing")
                continue
            found += address_problems(element, f"{where}/{side}", networks)
            if element.find("port") is not None and rule.findtext("protocol") not in PORT_PROTOCOLS:
                found.append(f"{where}/{side}/port: OPNsense ignores a port without tcp/udp")
        if rule.findtext("associated-rule-id"):
            filter_ids.append(rule.findtext("associated-rule-id"))
    for index, rule in enumerate(document.findall("nat/rule")):
        where = f"nat/rule[{index}]"
        found += [f"{where}/{e.tag}: not read" for e in rule if e.tag not in NAT_RULE_FIELDS]
        if rule.findtext("interface") not in interfaces:
            found.append(f"{where}/interface: {rule.findtext('interface')!r} is no interface")
        if rule.findtext("protocol") not in PORT_PROTOCOLS:
            found.append(f"{where}/protocol: {rule.findtext('protocol')!r} takes no port")
        if rule.findtext("ipprotocol") not in {"inet", "inet6"}:
            found.append(f"{where}/ipprotocol: {rule.findtext('ipprotocol')!r}")
        # ForwardRule::parseRdrRules disables a forward whose target or local port is bad.
        if not is_address(rule.findtext("target") or ""):
            found.append(f"{where}/target: {rule.findtext('target')!r}")
        if not is_port(rule.findtext("local-port") or ""):
            found.append(f"{where}/local-port: {rule.findtext('local-port')!r}")
        for side in ("source", "destination"):
            element = rule.find(side)
            if element is None:
                found.append(f"{where}/{side}: missing")
            else:
                found += address_problems(element, f"{where}/{side}", networks)
        # firewall_nat_edit.php links a forward to exactly one filter rule by this id;
        # "pass" would instead make the redirect pass without a rule.
        linked = rule.findtext("associated-rule-id")
        if linked in (None, "", "pass") or filter_ids.count(linked) != 1:
            found.append(f"{where}/associated-rule-id: {linked!r} links no single filter rule")
    if document.findtext("nat/outbound/mode") not in OUTBOUND_MODES:
        found.append(f"nat/outbound/mode: {document.findtext('nat/outbound/mode')!r}")
    return found


def interface_problems(document: ET.Element) -> list[str]:
    found = []
    for interface in document.findall("interfaces/*"):
        where = f"interfaces/{interface.tag}"
        found += [f"{where}/{e.tag}: not read" for e in interface if e.tag not in INTERFACE_FIELDS]
        address = interface.findtext("ipaddr") or ""
        if address != "dhcp":
            try:
                IPv4Address(address)
            except ValueError:
                found.append(f"{where}/ipaddr: {address!r}")
            subnet = interface.findtext("subnet") or ""
            if not (subnet.isdigit() and 1 <= int(subnet) <= 32):
                found.append(f"{where}/subnet: {subnet!r}")
    for index, item in enumerate(document.findall("gateways/gateway_item")):
        where = f"gateways/gateway_item[{index}]"
        found += [f"{where}/{e.tag}: not read" for e in item if e.tag not in GATEWAY_FIELDS]
    return found


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_every_rule_element_is_one_opnsense_reads_in_a_form_it_accepts(stack: str) -> None:
    document = generated(stack)
    assert document.findall("filter/rule") and document.findall("nat/rule")
    assert rule_problems(document) == []
    assert interface_problems(document) == []


@pytest.mark.parametrize(
    ("path", "tag", "value", "expected"),
    [
        ("filter/rule", "quik", "1", "filter/rule[0]/quik: not read"),
        ("filter/rule/destination", "adress", "10.0.0.1", "destination/adress: not read"),
        ("nat/rule", "localport", "80", "nat/rule[0]/localport: not read"),
        ("nat/rule/destination", "network", "lanaddress", "is not a network OPNsense knows"),
    ],
)
def test_the_field_check_catches_what_opnsense_would_not_read(
    path: str, tag: str, value: str, expected: str
) -> None:
    document = generated("core")
    parent = document.find(path)
    assert parent is not None
    for child in parent.findall(tag):
        parent.remove(child)
    ET.SubElement(parent, tag).text = value
    assert any(expected in problem for problem in rule_problems(document))


def test_the_value_check_catches_a_port_opnsense_would_disable_the_forward_for() -> None:
    document = generated("core")
    local_port = document.find("nat/rule/local-port")
    assert local_port is not None
    local_port.text = "70000"
    assert rule_problems(document) == ["nat/rule[0]/local-port: '70000'"]


# --- what each router lets through ------------------------------------------------------------


def test_the_core_router_forwards_http_https_to_traefik_and_stun_to_headscale() -> None:
    core, _ = configs()
    proxy = str(core.guests["zlh-proxy"].lan_address)
    ctl = str(core.guests["zlh-ctl"].lan_address)
    document = generated("core")
    assert forwards(document) == {
        ("tcp", 80, proxy, 80),
        ("tcp", 443, proxy, 443),
        ("udp", headscale.STUN_PORT, ctl, headscale.STUN_PORT),
    }
    assert headscale.STUN_PORT == 3478


def test_the_runtime_router_forwards_http_https_to_traefik_and_minecraft_to_velocity() -> None:
    _, runtime = configs()
    proxy = str(runtime.guests["zlh-zpack-proxy"].lan_address)
    velocity_address = str(runtime.guests["zlh-velocity"].lan_address)
    catalogue_ports = {i.port for i in EDGE_SERVICES["zlh-velocity"].ingress}
    assert velocity.PORT in catalogue_ports
    assert forwards(generated("runtime")) == {
        ("tcp", 80, proxy, 80),
        ("tcp", 443, proxy, 443),
        ("tcp", velocity.PORT, velocity_address, velocity.PORT),
    }


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_wan_lets_in_exactly_the_forwarded_ports(stack: str) -> None:
    document = generated(stack)
    rules = pf_rules(document)
    wan = {(r.protocol, r.destination, r.port) for r in rules if r.interface == opnsense.WAN}
    assert wan == {
        (protocol, IPv4Network(target), port) for protocol, _, target, port in forwards(document)
    }
    for protocol, _, target, port in forwards(document):
        assert decide(rules, "wan", protocol, "198.51.100.7", target, port) == "pass"
        assert decide(rules, "wan", protocol, "198.51.100.7", target, port + 1) == "block"
        other = "udp" if protocol == "tcp" else "tcp"
        assert decide(rules, "wan", other, "198.51.100.7", target, port) == "block"
    lan = interface_networks(document)["lan"]
    for host in (lan.network_address + 1, lan.broadcast_address - 1):
        assert decide(rules, "wan", "tcp", "198.51.100.7", str(host), 22) == "block"


def test_each_forward_and_its_filter_rule_share_one_link() -> None:
    document = generated("runtime")
    nat_ids = [rule.findtext("associated-rule-id") for rule in document.findall("nat/rule")]
    filter_ids = [
        rule.findtext("associated-rule-id")
        for rule in document.findall("filter/rule")
        if rule.findtext("associated-rule-id")
    ]
    assert sorted(nat_ids, key=str) == sorted(filter_ids, key=str)
    assert len(set(nat_ids)) == len(nat_ids) == 3


def test_the_runtime_lan_never_reaches_the_core_lan_and_the_block_comes_first() -> None:
    core, runtime = configs()
    core_lan = core.network.lan.cidr
    rules = pf_rules(generated("runtime"))
    lan_rules = [r for r in rules if r.interface == opnsense.LAN]
    block = next(i for i, r in enumerate(lan_rules) if r.action == "block")
    allow = next(i for i, r in enumerate(lan_rules) if r.action == "pass")
    assert block < allow
    assert lan_rules[block].destination == core_lan
    assert lan_rules[block].source == runtime.network.lan.cidr
    guest = str(runtime.guests["zlh-build"].lan_address)
    for target in (core_lan.network_address + 1, core.guests["zpack-api"].lan_address):
        for protocol, port in (("tcp", 8080), ("udp", 53), ("tcp", 443)):
            assert decide(rules, "lan", protocol, guest, str(target), port) == "block"
    assert decide(rules, "lan", "tcp", guest, "151.101.2.132", 443) == "pass"
    assert decide(rules, "lan", "udp", guest, str(runtime.network.lan.gateway), 53) == "pass"


def test_the_block_placed_after_the_allow_would_let_the_core_lan_through() -> None:
    """The order check is real: with the rules swapped, the first match lets it through."""
    core, runtime = configs()
    rules = pf_rules(generated("runtime"))
    swapped = [rules[1], rules[0], *rules[2:]]
    target = str(core.guests["zpack-api"].lan_address)
    guest = str(runtime.guests["zlh-build"].lan_address)
    assert decide(swapped, "lan", "tcp", guest, target, 8080) == "pass"


def test_the_core_lan_goes_out_to_any_and_blocks_nothing() -> None:
    core, _ = configs()
    rules = pf_rules(generated("core"))
    assert [r.action for r in rules if r.interface == opnsense.LAN] == ["pass"]
    guest = str(core.guests["zpack-api"].lan_address)
    assert decide(rules, "lan", "tcp", guest, "151.101.2.132", 443) == "pass"


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_outbound_nat_is_automatic_and_the_lan_has_no_dhcp_server(stack: str) -> None:
    document = generated(stack)
    assert text(document, "nat/outbound/mode") == "automatic"
    assert document.find("dhcpd") is None
    assert text(document, "dnsmasq/enable") == "0"
    assert document.find("dnsmasq/dhcp_ranges") is None
    assert text(document, "unbound/enable") == "1"


@pytest.mark.parametrize(
    ("stack", "router", "services"),
    [
        ("core", "zlh-router", CONTROL_PLANE_SERVICES),
        ("runtime", "zlh-zpack-router", EDGE_SERVICES),
    ],
)
def test_the_interfaces_follow_the_stack_config_and_the_vms_nic_order(
    stack: str, router: str, services: Mapping[str, ServiceSpec]
) -> None:
    core, runtime = configs()
    config = core if stack == "core" else runtime
    document = generated(stack)
    networks = services[router].networks
    assert text(document, "interfaces/wan/if") == f"vtnet{networks.index(Network.WAN)}"
    assert text(document, "interfaces/lan/if") == f"vtnet{networks.index(Network.LAN)}"
    assert text(document, "interfaces/wan/ipaddr") == "dhcp"
    assert text(document, "interfaces/lan/ipaddr") == str(config.network.lan.gateway)
    assert text(document, "interfaces/lan/subnet") == str(config.network.lan.cidr.prefixlen)
    assert text(document, "system/hostname") == router
    assert text(document, "system/domain") == config.network.dns_domain


def test_addresses_come_from_the_stack_config() -> None:
    raw = copy.deepcopy(shipped("runtime"))
    set_path(raw, "guests.zlh-velocity.lanAddress", "10.20.0.66")
    set_path(raw, "network.lan.cidr", "10.20.0.0/23")
    runtime = parse_stack_config(RuntimeStackConfig, engine_config(raw), stack="runtime")
    core, _ = configs()
    document = ET.fromstring(
        opnsense.render_router_configs(core, runtime)["zlh-zpack-router/conf/config.xml"]
    )
    assert ("tcp", velocity.PORT, "10.20.0.66", velocity.PORT) in forwards(document)
    assert text(document, "interfaces/lan/subnet") == "23"


def test_the_files_are_keyed_by_router_and_the_same_on_every_run() -> None:
    core, runtime = configs()
    first = opnsense.render_router_configs(core, runtime)
    assert list(first) == ["zlh-router/conf/config.xml", "zlh-zpack-router/conf/config.xml"]
    assert opnsense.render_router_configs(core, runtime) == first


def test_a_builder_refuses_a_forwarded_service_without_an_address() -> None:
    core, _ = configs()
    guests = dict(core.guests)
    guests["zlh-ctl"] = guests["zlh-ctl"].model_copy(update={"lan_address": None})
    broken = core.model_copy(update={"guests": guests})
    with pytest.raises(RouterConfigError) as raised:
        opnsense.core_router(broken)
    assert raised.value.problems == [
        "guests.zlh-ctl.lanAddress: required: the router forwards UDP 3478 to it"
    ]


# --- a static WAN ---------------------------------------------------------------------------


def base() -> RouterConfig:
    return RouterConfig(
        hostname="zlh-router",
        domain="core.zlh.internal",
        lan_network=IPv4Network("10.10.0.0/24"),
        lan_address=IPv4Address("10.10.0.1"),
        forwards=(PortForward("tcp", 443, IPv4Address("10.10.0.5"), "HTTPS to zlh-proxy"),),
        blocked=(BlockedDestination(IPv4Network("10.20.0.0/22"), "Block the runtime LAN"),),
    )


def test_a_static_wan_names_its_gateway_as_opnsense_reads_it() -> None:
    router = replace(
        base(),
        wan=StaticWan(IPv4Interface("203.0.113.10/24"), IPv4Address("203.0.113.1")),
    )
    document = ET.fromstring(opnsense.config_xml(router))
    assert text(document, "interfaces/wan/ipaddr") == "203.0.113.10"
    assert text(document, "interfaces/wan/subnet") == "24"
    gateway = text(document, "interfaces/wan/gateway")
    assert text(document, "gateways/gateway_item/name") == gateway
    assert text(document, "gateways/gateway_item/gateway") == "203.0.113.1"
    assert text(document, "gateways/gateway_item/interface") == "wan"
    assert interface_problems(document) == []
    assert rule_problems(document) == []


def test_descriptions_are_escaped_by_the_xml_writer() -> None:
    description = "HTTPS & <TLS> \"quoted\" 'too'"
    router = replace(
        base(), forwards=(PortForward("tcp", 443, IPv4Address("10.10.0.5"), description),)
    )
    document = ET.fromstring(opnsense.config_xml(router))
    assert text(document, "nat/rule/descr") == description


# --- bad values are refused -----------------------------------------------------------------


def forward(**changes: Any) -> RouterConfig:
    return replace(base(), forwards=(replace(base().forwards[0], **changes),))


@pytest.mark.parametrize(
    ("router", "problem"),
    [
        (forward(port=0), "forwards[0].port: 0 is not a port (an integer from 1 to 65535)"),
        (forward(port=65536), "forwards[0].port: 65536 is not a port"),
        (forward(port=True), "forwards[0].port: True is not a port"),
        (forward(port="443"), "forwards[0].port: '443' is not a port"),
        (forward(target_port=0), "forwards[0].target_port: 0 is not a port"),
        (forward(protocol="sctp"), "forwards[0].protocol: 'sctp' must be one of tcp, udp"),
        (forward(target="10.10.0.300"), "forwards[0].target: '10.10.0.300' is not an IPv4"),
        (
            forward(target=IPv4Interface("10.10.0.5/24")),
            "forwards[0].target: IPv4Interface('10.10.0.5/24') is not an IPv4 address",
        ),
        (forward(target=IPv4Address("10.20.0.5")), "forwards[0].target: 10.20.0.5 is outside"),
        (forward(target=IPv4Address("10.10.0.255")), "is the network or broadcast address"),
        (forward(target=IPv4Address("10.10.0.1")), "is the router's own LAN address"),
        (forward(description="HTTPS\nrdr pass"), "forwards[0].description: 'HTTPS\\nrdr pass'"),
        (forward(description="a\x00b"), "without control characters"),
        (forward(description=""), "forwards[0].description: '' must be non-empty"),
        (
            replace(base(), forwards=base().forwards * 2),
            "forwards[1]: TCP 443 is already forwarded by forwards[0]",
        ),
        (
            replace(base(), blocked=(BlockedDestination(IPv4Network("10.0.0.0/8"), "x"),)),
            "blocked[0].network: 10.0.0.0/8 overlaps the LAN 10.10.0.0/24",
        ),
        (
            replace(base(), blocked=(BlockedDestination("10.20.0.1/22", "x"),)),  # type: ignore[arg-type]
            "blocked[0].network: '10.20.0.1/22' is not an IPv4 network with its host bits zero",
        ),
        (
            replace(base(), blocked=base().blocked * 2),
            "blocked[1].network: 10.20.0.0/22 is blocked already",
        ),
        (
            replace(base(), lan_address=IPv4Address("10.10.1.1")),
            "lan_address: 10.10.1.1 is outside 10.10.0.0/24",
        ),
        (replace(base(), lan_network=IPv4Network("10.10.0.0/31")), "at most /30"),
        (replace(base(), hostname="zlh_router"), "hostname: 'zlh_router' is not a host name"),
        (replace(base(), hostname="zlh.router"), "hostname: 'zlh.router' is not a host name"),
        (replace(base(), domain="core..internal"), "domain: 'core..internal' is not a domain"),
        (replace(base(), lan_device="vtnet0"), "lan_device: vtnet0 is the WAN's device too"),
        (replace(base(), wan_device="vt net0"), "wan_device: 'vt net0' is not a FreeBSD"),
        (replace(base(), wan="dhcp"), "wan: 'dhcp' is neither DhcpWan() nor StaticWan"),  # type: ignore[arg-type]
        (
            replace(
                base(),
                wan=StaticWan(IPv4Interface("203.0.113.10/24"), IPv4Address("198.51.100.1")),
            ),
            "wan.gateway: 198.51.100.1 is outside 203.0.113.0/24",
        ),
        (
            replace(
                base(), wan=StaticWan(IPv4Interface("10.10.0.200/16"), IPv4Address("10.10.0.9"))
            ),
            "wan.address: 10.10.0.0/16 overlaps the LAN 10.10.0.0/24",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_the_field_and_the_rule(
    router: RouterConfig, problem: str
) -> None:
    with pytest.raises(RouterConfigError) as raised:
        opnsense.config_xml(router)
    assert any(p.startswith(problem) or problem in p for p in raised.value.problems), (
        raised.value.problems
    )
    assert str(raised.value).startswith("OPNsense configuration of ")


def test_every_problem_is_listed_at_once() -> None:
    router = replace(
        base(),
        hostname="bad_name",
        lan_address=IPv4Address("192.0.2.1"),
        forwards=(PortForward("tcp", 0, IPv4Address("10.10.0.5"), "x\ty"),),
    )
    with pytest.raises(RouterConfigError) as raised:
        opnsense.config_xml(router)
    assert [p.split(":")[0] for p in raised.value.problems] == [
        "hostname",
        "lan_address",
        "forwards[0].port",
        "forwards[0].description",
    ]
    assert str(raised.value).startswith("OPNsense configuration of 'bad_name': invalid:\n  - ")


def test_address_strings_are_parsed_and_the_same_file_results() -> None:
    as_strings = replace(
        base(),
        lan_network="10.10.0.0/24",  # type: ignore[arg-type]
        lan_address="10.10.0.1",  # type: ignore[arg-type]
        forwards=(PortForward("tcp", 443, "10.10.0.5", "HTTPS to zlh-proxy"),),  # type: ignore[arg-type]
    )
    assert opnsense.config_xml(as_strings) == opnsense.config_xml(base())
    assert isinstance(opnsense.checked(as_strings).wan, DhcpWan)
