"""The recorded Proxmox firewall as the lab's nftables: verdicts, order, refusals, prediction."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address

import pytest

from tests.tooling.lab.fwlab import (
    BRIDGES,
    GUESTS,
    NODES,
    PLAN,
    Triple,
    accept,
    firewall,
    nic,
    options,
    rules,
    stacks,
)
from zlh_infra.platform import firewall_state as fs
from zlh_infra.platform.reachability import TCP, UDP
from zlh_infra.tooling.lab.firewall import (
    LabFirewall,
    LabFirewallError,
    bridge_table,
    build_firewall,
    firewall_resources,
    inet_table,
    mac_to_link_local,
    node_addresses,
    port_chains,
)
from zlh_infra.tooling.lab.lxcconf import mac_address
from zlh_infra.tooling.lab.plan import UNKNOWN, LabGuest, LabPlan
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording


def statements(fw: LabFirewall, name: str, direction: str) -> list[str]:
    """A port's chain as "<match> <verdict>" lines, in order."""
    inbound, outbound = port_chains(fw, fw.port(name))
    chain = inbound if direction == "in" else outbound
    return [" ".join(p for p in (s.match, s.verdict) if p) for s in chain.statements]


def test_inbound_rules_keep_their_order_groups_in_place_and_end_in_the_policy() -> None:
    lines = statements(firewall(), "veth1000i1", "in")
    verdicts = [line for line in lines]
    assert verdicts == [
        "ip saddr { 224.0.0.0/4, 255.255.255.255 } drop",
        "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
        "nd-neighbor-advert } accept",
        "ip saddr 10.99.1.1 tcp dport 18888 drop",
        # The alias, then the IP set with its nomatch entry taken out.
        "ip saddr 10.99.0.10 tcp dport 18888 accept",
        "ip saddr { 10.99.0.0/29, 10.99.0.8/31, 10.99.0.11, 10.99.0.12/30, 10.99.0.16/28, "
        "10.99.0.32/27, 10.99.0.64/26, 10.99.0.128/25 } tcp dport 9100 accept",
        # The security group, expanded where it is referenced, its DROP first.
        "ip saddr 10.99.1.1 tcp dport 25565 drop",
        "tcp dport 25565 accept",
        "jump zlh-policy-drop",
    ]
    # The disabled rule and the outbound one are not inbound rules.
    assert not any("2222" in line or "dport 53" in line for line in lines)


def test_outbound_rules_return_so_the_receivers_chain_still_decides() -> None:
    fw = firewall(
        runtime=[rules(1001, {"type": "out", "action": "ACCEPT", "proto": "tcp", "dport": "80"})]
    )
    lines = [line for line in statements(fw, "veth1001i1", "out")]
    assert "ip saddr != @ipfilter-veth1001i1-v4 drop" in lines
    assert lines.index("ip saddr != @ipfilter-veth1001i1-v4 drop") < lines.index(
        "tcp dport 80 return"
    )
    assert lines[-1] == "return"
    game = [line for line in statements(fw, "veth1000i1", "out")]
    assert "ip daddr 10.99.0.21 udp dport 53 drop" in game


def test_a_rule_bound_to_another_interface_stays_off_this_ones_chain() -> None:
    lan = [line for line in statements(firewall(), "veth1000i0", "in")]
    # The group's rules and the ACCEPT are bound to net1; the DROP names no interface.
    assert not any("25565" in line or "18888 accept" in line for line in lan)
    assert "ip saddr 10.99.1.1 tcp dport 18888 drop" in lan


def test_policies_map_to_proxmoxs_standard_chains() -> None:
    fw = firewall(runtime=[options(1001, inputPolicy="REJECT", outputPolicy="DROP")])
    assert statements(fw, "veth1001i1", "in")[-1] == "jump zlh-policy-reject"
    assert statements(fw, "veth1001i1", "out")[-1] == "jump zlh-policy-drop-out"
    fw = firewall(runtime=[options(1001, inputPolicy="ACCEPT")])
    assert statements(fw, "veth1001i1", "in")[-1] == "accept"
    table = inet_table(fw)
    # Outbound, an accepted ICMP error returns: the receiver's chain still runs.
    assert "return" in table.chain("zlh-policy-drop-out").verdicts
    assert "accept" not in table.chain("zlh-policy-drop-out").verdicts
    assert table.chain("zlh-policy-drop").verdicts[-1] == "drop"


def test_reject_rules_reset_tcp() -> None:
    fw = firewall(runtime=[rules(1001, accept("25", action="REJECT"))])
    assert any(
        line.startswith("tcp dport 25 jump zlh-reject")
        for line in statements(fw, "veth1001i1", "in")
    )
    assert "reject with tcp reset" in inet_table(fw).chain("zlh-reject").verdicts


def test_ip_and_mac_filters_hold_the_nic_to_its_own_address_and_mac() -> None:
    fw = firewall()
    settings = fw.settings["veth1000i1"]
    mac = mac_address(1000, 1)
    assert settings.ipfilter is not None
    assert IPv4Address("10.99.1.0") in settings.ipfilter
    assert IPv4Address("10.99.0.10") not in settings.ipfilter
    assert mac_to_link_local(mac) in settings.ipfilter
    origin = bridge_table(fw).chain("from-veth1000i1")
    assert [" ".join(p for p in (s.match, s.verdict) if p) for s in origin.statements] == [
        f"ether saddr != {mac} drop",
        "ether type arp arp saddr ip != 10.99.1.0 drop",
        f"meta mark set 0x{fw.port('veth1000i1').number:08x}",
    ]


def test_mac_derived_link_local_address_is_rfc_4291s() -> None:
    assert str(mac_to_link_local("52:54:00:12:34:56")) == "fe80::5054:ff:fe12:3456"


def test_a_guest_without_its_firewall_gets_no_chain_but_keeps_its_port_number() -> None:
    fw = firewall(runtime=[options(1001, enabled=False)])
    assert not fw.settings["veth1001i1"].active
    names = [c.name for c in inet_table(fw).chains]
    assert "in-veth1001i1" not in names and "in-veth1000i1" in names
    assert any(c.name == "from-veth1001i1" for c in bridge_table(fw).chains)
    assert fw.predict(fw.port("veth1000i1"), fw.port("veth1001i1"), TCP, 1).reachable


def test_the_datacenter_switch_off_filters_nothing() -> None:
    off = {
        "core": stacks()["core"],
        "runtime": [t for t in stacks()["runtime"] if t[0] != fs.DATACENTER],
    }
    fw = build_firewall(PLAN, off, NODES)
    assert not any(fw.settings[p.name].active for p in fw.ports if p.stack == "runtime")
    game, other = fw.port("veth1000i1"), fw.port("veth1001i1")
    assert fw.predict(other, game, TCP, 18888).reachable


def test_node_stand_ins_sit_on_the_network_holding_their_address() -> None:
    fw = firewall()
    assert [(n.node, n.bridge, str(n.address), n.inner) for n in fw.nodes] == [
        ("zlh-core", "l-vmbr2", "10.99.0.2/22", "vmbr2"),
        ("zlh-runtime", "l-vmbr2", "10.99.0.3/22", "vmbr2"),
    ]
    lines = [line for line in statements(fw, fw.nodes[0].port, "in")]
    own = lines.index("ip saddr 192.0.2.0/24 tcp dport 22 accept")
    builtin = lines.index("ip saddr 192.0.2.0/24 tcp dport 8006 accept")
    # Proxmox's standard management rules come after the node's own rules.
    assert own < builtin
    assert "ip saddr 127.0.0.1 tcp dport 60000-60050 accept" in lines
    assert lines[-1] == "jump zlh-policy-drop"


def test_node_addresses_come_from_the_monitoring_config() -> None:
    recording = StackRecording("core", "zlh-infra")
    recording.config["zlh-infra:monitoring"] = '{"proxmoxNodes": {"zlh-core": "10.99.0.2"}}'
    assert node_addresses([recording]) == {"zlh-core": IPv4Address("10.99.0.2")}
    recording.config["zlh-infra:monitoring"] = '{"proxmoxNodes": {"zlh-core": "zlh-core.lan"}}'
    with pytest.raises(LabFirewallError, match=r"proxmoxNodes\.zlh-core"):
        node_addresses([recording])


def test_prediction_follows_first_match_groups_names_and_outbound_rules() -> None:
    fw = firewall()
    api, back = fw.port("veth100i1"), fw.port("veth2001i1")
    game, other = fw.port("veth1000i1"), fw.port("veth1001i1")
    core, runtime = fw.port("zlhlab-n0"), fw.port("zlhlab-n1")
    assert fw.predict(api, game, TCP, 18888).reachable
    # The DROP before the ACCEPT decides for mc-creative.
    assert not fw.predict(other, game, TCP, 18888).reachable
    assert not fw.predict(other, game, TCP, 25565).reachable
    assert fw.predict(api, game, TCP, 25565).reachable
    # The IP set's nomatch entry: zpack-api is not among the monitors.
    assert not fw.predict(api, game, TCP, 9100).reachable
    assert fw.predict(back, game, TCP, 9100).reachable
    assert not fw.predict(game, back, UDP, 53).reachable
    assert (
        fw.predict(core, back, TCP, 8007).reachable
        and fw.predict(runtime, back, TCP, 8007).reachable
    )
    assert not fw.predict(game, back, TCP, 8007).reachable
    # The node accepts what its rules admit, and nothing from a guest otherwise.
    assert not fw.predict(game, core, TCP, 22).reachable
    assert not fw.predict(game, core, TCP, 8006).reachable


def test_a_vm_with_ipfilter_and_no_ip_set_may_not_send_from_its_address() -> None:
    router = LabGuest(
        310,
        "zlh-zpack-router",
        "runtime",
        "zlh-runtime",
        "u310",
        (nic("eth0", "l-vmbr2", "vmbr2", "10.99.1.250/22"),),
        stand_in_for="VM 310 zlh-zpack-router",
    )
    plan = LabPlan(["core", "runtime"], BRIDGES, {**GUESTS, 310: router}, {}, [], {})
    vm = (
        fs.VM,
        "zlh-zpack-router",
        {
            "vmId": 310,
            "nodeName": "zlh-runtime",
            "networkDevices": [{"bridge": "vmbr2", "firewall": True}],
        },
    )
    data = stacks(runtime=[vm, (fs.OPTIONS, "o", {"vmId": 310, "enabled": True, "ipfilter": True})])
    fw = build_firewall(plan, data, NODES)
    verdict = fw.predict(fw.port("veth310i0"), fw.port("veth1000i1"), TCP, 18888)
    assert not verdict.reachable and "IP filter" in verdict.why
    assert IPv4Address("10.99.1.250") not in (fw.settings["veth310i0"].ipfilter or ())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (rules(1001, accept("80-90")), "dport '80-90'"),
        (rules(1001, {"securityGroup": "nope"}), "security group 'nope' does not exist"),
        (rules(1001, accept("80", macro="HTTP")), "macro 'HTTP'"),
        (rules(1001, accept("80", "+nothere")), "IP set 'nothere' does not exist"),
        (
            rules(1001, {"type": "in", "action": "ACCEPT", "proto": "icmp", "dport": "8"}),
            "ports on protocol 'icmp'",
        ),
        (options(1001, inputPolicy="DORP"), "inputPolicy 'DORP' is not ACCEPT, DROP or REJECT"),
        (options(1001, ipfilter="yes"), "ipfilter 'yes' is not true or false"),
        (options(1001, enabled=1), "enabled 1 is not true or false"),
    ],
)
def test_what_cannot_be_read_is_refused_naming_the_guest(extra: Triple, message: str) -> None:
    with pytest.raises(LabFirewallError, match=r"^runtime: ") as raised:
        firewall(runtime=[extra])
    assert message in str(raised.value)


def test_a_firewall_value_unknown_until_deploy_time_is_refused() -> None:
    recording = StackRecording("runtime", "zlh-infra")
    recording.resources.append(
        RecordedResource(
            urn="urn:x", type=fs.RULES, name="r", custom=True, parent=None, dependencies=[],
            property_dependencies={}, provider=None, options={},
            inputs={"containerId": 1000, "rules": [accept("18888", UNKNOWN)]},
        )
    )  # fmt: skip
    with pytest.raises(LabFirewallError, match="unknown until deploy time"):
        firewall_resources(recording)


def _nft_check_available() -> bool:
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _nft_check_available(), reason="needs nft and unprivileged namespaces")
def test_the_ruleset_is_valid_nftables() -> None:
    text = firewall(runtime=[rules(1001, accept("25", action="REJECT"))]).ruleset()
    done = subprocess.run(
        ["unshare", "-rn", "nft", "-c", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
