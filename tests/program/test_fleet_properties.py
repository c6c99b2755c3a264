"""Property tests over generated fleets: whatever the fleet and the addresses, the program
opens zlh-agent to zpack-api's management address and to nothing else."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.program.conftest import guests, tag
from tests.stack_configs import engine_config, shipped
from zlh_infra.platform.catalogue import AGENT_PORT, METRICS_PORT
from zlh_infra.platform.firewall_state import read_firewall
from zlh_infra.platform.reachability import AddressSet, exposure
from zlh_infra.platform.vmids import VmidRole, fleet_split
from zlh_infra.tooling.preview.recording import StackRecording
from zlh_infra.tooling.preview.runner import load_program, run_stack, secret_exports


@st.composite
def fleets(draw: st.DrawFn) -> dict[str, Any]:
    # VMIDs of the declared parts: the rest of each range is zpack-api's.
    games = draw(st.sets(st.sampled_from(fleet_split(VmidRole.GAME).declared.vmids()), max_size=12))
    devs = draw(st.sets(st.sampled_from(fleet_split(VmidRole.DEV).declared.vmids()), max_size=12))
    return {
        "games": [
            {"name": f"game-{v}", "vmid": v, "template": "minecraft-paper"} for v in sorted(games)
        ],
        "devs": [{"name": f"dev-{v}", "vmid": v, "template": "code-server"} for v in sorted(devs)],
    }


#: The API and the monitor anywhere in the management network but its ends.
hosts = st.integers(2, 250).map(lambda n: IPv4Address("10.99.0.0") + n)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets(), api=hosts, monitor=hosts)
def test_agent_port_reachable_only_from_the_api(
    core: StackRecording, fleet: dict[str, Any], api: IPv4Address, monitor: IPv4Address
) -> None:
    if api == monitor:
        monitor = api + 1
    outputs = copy.deepcopy(core.outputs)
    outputs["apiManagementAddress"] = str(api)
    outputs["monitorManagementAddress"] = str(monitor)
    config = {**shipped("runtime"), **fleet}
    recording = run_stack(
        "runtime",
        engine_config(config),
        [],
        load_program(),
        stack_outputs={"core": outputs},
        secret_output_names={"core": secret_exports(outputs)},
    )
    assert [d.message for d in recording.diagnostics if d.severity == "error"] == []
    host, views = read_firewall((r.type, r.name, r.inputs) for r in recording.resources)
    fleet_guests = [g for g in guests(recording) if tag(g, "role-") in ("game", "dev")]
    assert len(fleet_guests) == len(fleet["games"]) + len(fleet["devs"])
    management = IPv4Network(config["network"]["management"]["cidr"])
    for guest in fleet_guests:
        view = views[int(guest.inputs["vmId"])]
        iface = view.iface_on(config["network"]["management"]["bridge"])
        assert iface is not None
        opened = exposure(host, view.firewall(), iface=iface)
        agent = [
            e for e in opened if e.proto == "tcp" and e.first_port <= AGENT_PORT <= e.last_port
        ]
        assert [e.sources for e in agent] == [AddressSet.of(api)], guest.urn
        others = [
            e
            for e in opened
            if e not in agent
            and not (e.proto == "tcp" and e.first_port == e.last_port == METRICS_PORT)
        ]
        assert others == [], guest.urn
        assert all(e.sources - AddressSet.of(management) == AddressSet() for e in opened)
