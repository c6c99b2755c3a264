"""zlh-guest-placement, zlh-control-plane-independent and zlh-runtime-isolation."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from tests.policies.policy_fixtures import (
    CORE_ENDPOINT,
    core_builder,
    core_stack,
    find,
    props,
    runtime_builder,
    runtime_stack,
    unknown,
)
from zlh_infra.policies.config import INDEPENDENCE, ISOLATION, PLACEMENT
from zlh_infra.policies.placement import (
    check_control_plane_independent,
    check_placement,
    check_runtime_isolation,
)
from zlh_infra.policies.resources import PROXMOX_PROVIDER, Provider, Resource, Violation

PLACE = PLACEMENT.parse("zlh-guest-placement", None)
INDEPENDENT = INDEPENDENCE.parse("zlh-control-plane-independent", None)
ISOLATED = ISOLATION.parse("zlh-runtime-isolation", None)


def messages(violations: list[Violation]) -> list[str]:
    return [violation.message for violation in violations]


def placement(resources: list[Resource], stack: str) -> list[str]:
    return [v.message for r in resources for v in check_placement(r, PLACE, stack)]


def isolation(resources: list[Resource], stack: str = "runtime") -> list[str]:
    return [v.message for r in resources for v in check_runtime_isolation(r, ISOLATED, stack)]


# --- zlh-guest-placement ----------------------------------------------------------


def test_platform_guests_are_on_their_stacks_node() -> None:
    assert placement(core_stack(), "core") == []
    assert placement(runtime_stack(), "runtime") == []
    assert placement(runtime_stack(), "acme/zlh-infra/runtime") == []


def test_a_guest_on_the_other_hosts_node() -> None:
    guest = find(runtime_stack(), "mc-survival")
    props(guest)["nodeName"] = "zlh-core"
    assert messages(check_placement(guest, PLACE, "runtime")) == [
        "mc-survival (VMID 1000) is on node zlh-core, but stack runtime deploys to node "
        "zlh-runtime (policy config stackNodes); set its node to zlh-runtime, or declare it "
        "in stack core."
    ]


def test_a_guest_on_a_node_no_stack_owns() -> None:
    guest = find(core_stack(), "zlh-db")
    props(guest)["nodeName"] = "pve1"
    assert messages(check_placement(guest, PLACE, "core")) == [
        "zlh-db (VMID 102) is on node pve1, but stack core deploys to node zlh-core (policy "
        "config stackNodes); set its node to zlh-core, or declare it in that host's stack."
    ]


def test_a_guest_without_node() -> None:
    guest = find(core_stack(), "zlh-db")
    del props(guest)["nodeName"]
    assert messages(check_placement(guest, PLACE, "core")) == [
        "zlh-db (VMID 102) names no node; set its node to zlh-core."
    ]


def test_a_further_runtime_stack_on_its_own_node() -> None:
    assert placement(runtime_stack("runtime-2", "zlh-runtime-2"), "runtime-2") == []


def test_a_further_runtime_stack_on_the_core_node() -> None:
    guest = find(runtime_stack("runtime-2", "zlh-core"), "mc-survival")
    assert messages(check_placement(guest, PLACE, "runtime-2")) == [
        "mc-survival (VMID 1000) is on the core node zlh-core, but stack runtime-2 is a "
        "runtime stack; set its node to this runtime host's node and add stack runtime-2 to "
        "policy config stackNodes."
    ]


def test_a_further_runtime_stack_on_the_first_runtime_hosts_node() -> None:
    guest = find(runtime_stack("runtime-2", "zlh-runtime"), "mc-survival")
    assert messages(check_placement(guest, PLACE, "runtime-2")) == [
        "mc-survival (VMID 1000) is on node zlh-runtime, which policy config stackNodes gives "
        "to stack runtime; each runtime host belongs to one runtime stack: give stack "
        "runtime-2 its own node and add it to stackNodes."
    ]


def test_stack_nodes_from_config() -> None:
    config = PLACEMENT.parse(
        "zlh-guest-placement",
        {"stackNodes": {"core": "zlh-core", "runtime": "zlh-runtime", "runtime-2": "big-2"}},
    )
    assert [
        m
        for r in runtime_stack("runtime-2", "big-2")
        for m in check_placement(r, config, "runtime-2")
    ] == []
    guest = find(runtime_stack("runtime-2", "zlh-runtime-2"), "dev-alice")
    assert messages(check_placement(guest, config, "runtime-2")) == [
        "dev-alice (VMID 1100) is on node zlh-runtime-2, but stack runtime-2 deploys to node "
        "big-2 (policy config stackNodes); set its node to big-2, or declare it in that "
        "host's stack."
    ]


def test_a_stack_that_is_neither_core_nor_runtime() -> None:
    guest = find(core_stack(), "zlh-db")
    assert messages(check_placement(guest, PLACE, "staging")) == [
        "zlh-db (VMID 102): stack 'staging' is neither 'core' nor 'runtime' / "
        "'runtime-<name>' and policy config stackNodes names no node for it, so its host is "
        "unknown; rename the stack or add it to stackNodes."
    ]


# --- zlh-control-plane-independent ------------------------------------------------


def test_the_core_stack_is_independent() -> None:
    findings = check_control_plane_independent(core_stack(), INDEPENDENT, "core")
    assert findings.violations == []
    assert findings.unknowns == []


def test_only_the_core_stack_is_checked() -> None:
    assert check_control_plane_independent(runtime_stack(), INDEPENDENT, "runtime").violations == []


def test_a_runtime_guest_in_the_core_stack() -> None:
    builder = core_builder()
    game = builder.guest(
        "mc-survival",
        1000,
        layer="runtime",
        role="game",
        service="game",
        bridges=("vmbr1", "vmbr2"),
    )
    props(game)["nodeName"] = "zlh-runtime"
    findings = check_control_plane_independent(builder.resources, INDEPENDENT, "core")
    runtime_component = builder.layers["runtime"]
    assert [(v.message, v.urn) for v in findings.violations] == [
        (
            "runtime (zlh:runtime:Runtime) sits in the runtime layer, which the core stack "
            "must not deploy; declare it in a runtime stack.",
            runtime_component.urn,
        ),
        (
            "mc-survival (zlh:guest:LxcGuest) sits in the runtime layer, which the core stack "
            "must not deploy; declare it in a runtime stack.",
            game.parent,
        ),
        (
            "mc-survival (VMID 1000) sits in the runtime layer, which the core stack must not "
            "deploy; declare it in a runtime stack.",
            game.urn,
        ),
        (
            "mc-survival (VMID 1000) is tagged layer-runtime; declare it in a runtime stack, "
            "or correct its layer tag.",
            game.urn,
        ),
        (
            "mc-survival (VMID 1000) is tagged svc-game, an edge/runtime service (policy "
            "config runtimeServices); declare it in a runtime stack.",
            game.urn,
        ),
        (
            "mc-survival (VMID 1000) is tagged role-game, a role of the runtime hosts; "
            "declare it in a runtime stack.",
            game.urn,
        ),
        (
            "mc-survival (VMID 1000) has VMID 1000, in the game range 1000-1099 of the "
            "runtime hosts; declare it in a runtime stack.",
            game.urn,
        ),
        (
            "mc-survival (VMID 1000) is on node zlh-runtime, not the core node zlh-core; set "
            "its node to zlh-core.",
            game.urn,
        ),
        (
            "mc-survival-firewall (proxmoxve:firewall/optionsLegacy:OptionsLegacy) sits in "
            "the runtime layer, which the core stack must not deploy; declare it in a runtime "
            "stack.",
            builder.resources[-1].urn,
        ),
    ]


def test_a_core_provider_pointed_elsewhere() -> None:
    resources = core_stack()
    provider = find(resources, "core-proxmox", PROXMOX_PROVIDER)
    props(provider)["endpoint"] = "https://10.20.0.2:8006"
    findings = check_control_plane_independent(resources, INDEPENDENT, "core")
    # Reported once, on the provider (never quoting the endpoint, which may be secret).
    assert [(v.message, v.urn) for v in findings.violations] == [
        (
            "provider core-proxmox points at a host other than the core host (policy config "
            "coreEndpointHosts: zlh-core); point it at the core host's API.",
            provider.urn,
        )
    ]


def test_a_core_provider_without_endpoint() -> None:
    resources = core_stack()
    del props(find(resources, "core-proxmox", PROXMOX_PROVIDER))["endpoint"]
    assert check_control_plane_independent(resources, INDEPENDENT, "core").messages == [
        "provider core-proxmox sets no endpoint, so the host it manages cannot be checked; "
        "set its endpoint to the core host's API URL."
    ]


def test_core_endpoint_hosts_from_config() -> None:
    config = INDEPENDENCE.parse(
        "zlh-control-plane-independent", {"coreEndpointHosts": ["10.10.0.3"]}
    )
    resources = core_stack()
    assert check_control_plane_independent(resources, config, "core").messages == [
        "provider core-proxmox points at a host other than the core host (policy config "
        "coreEndpointHosts: 10.10.0.3); point it at the core host's API."
    ]
    props(find(resources, "core-proxmox", PROXMOX_PROVIDER))["endpoint"] = "https://10.10.0.3:8006"
    assert check_control_plane_independent(resources, config, "core").violations == []


def test_a_core_resource_depending_on_a_runtime_resource() -> None:
    builder = core_builder()
    artifacts = builder.add(
        "zlh:runtime:Runtime$proxmoxve:index/containerLegacy:ContainerLegacy",
        "zlh-artifacts",
        {"vmId": 150.0, "nodeName": "zlh-core"},
    )
    api = find(builder.resources, "zpack-api")
    builder.resources[builder.resources.index(api)] = replace(
        api,
        dependencies=(artifacts.urn,),
        property_dependencies={"description": (artifacts.urn,)},
    )
    findings = check_control_plane_independent(builder.resources, INDEPENDENT, "core")
    assert findings.messages == [
        "zlh-artifacts (VMID 150) sits in the runtime layer, which the core stack must not "
        "deploy; declare it in a runtime stack.",
        "zpack-api (VMID 100) depends on zlh-artifacts (VMID 150), which belongs to the "
        "edge/runtime side; the control plane must never depend on the runtime: remove the "
        "dependency.",
    ]
    assert findings.violations[1].urn == api.urn


def test_an_unknown_endpoint_skips_only_the_provider() -> None:
    resources = core_stack()
    index = resources.index(find(resources, "core-proxmox", PROXMOX_PROVIDER))
    resources[index] = unknown(resources[index], endpoint=UNKNOWN_STRING_VALUE)
    findings = check_control_plane_independent(resources, INDEPENDENT, "core")
    assert findings.violations == []
    assert [u.message for u in findings.unknowns] == [
        "string value at .endpoint can't be known during preview"
    ]


# --- zlh-runtime-isolation --------------------------------------------------------


@pytest.mark.parametrize("stack", ["runtime", "runtime-2", "acme/zlh-infra/runtime"])
def test_runtime_stacks_keep_off_the_core_host(stack: str) -> None:
    assert isolation(runtime_stack(), stack) == []


def test_only_runtime_stacks_are_checked() -> None:
    assert isolation(core_stack(), "core") == []


def test_a_runtime_provider_pointed_at_the_core_host() -> None:
    resources = runtime_stack()
    provider = find(resources, "runtime-proxmox", PROXMOX_PROVIDER)
    props(provider)["endpoint"] = CORE_ENDPOINT
    assert messages(check_runtime_isolation(provider, ISOLATED, "runtime")) == [
        "provider runtime-proxmox points at the core host (policy config coreEndpointHosts: "
        "zlh-core); a runtime stack must never manage the core host: point it at this "
        "runtime host's API."
    ]


def test_resources_are_not_judged_again_by_their_provider() -> None:
    guest = find(runtime_stack(), "mc-survival")
    core_provider = Provider(
        "urn:pulumi:runtime::zlh-infra::pulumi:providers:proxmoxve::core",
        PROXMOX_PROVIDER,
        "core",
        {"endpoint": "zlh-core:8006"},
    )
    assert (
        check_runtime_isolation(replace(guest, provider=core_provider), ISOLATED, "runtime") == []
    )
    core = Resource(core_provider.urn, PROXMOX_PROVIDER, "core", core_provider.props)
    assert messages(check_runtime_isolation(core, ISOLATED, "runtime")) == [
        "provider core points at the core host (policy config coreEndpointHosts: zlh-core); a "
        "runtime stack must never manage the core host: point it at this runtime host's API."
    ]


def test_a_runtime_provider_without_endpoint() -> None:
    provider = find(runtime_stack(), "runtime-proxmox", PROXMOX_PROVIDER)
    del props(provider)["endpoint"]
    assert messages(check_runtime_isolation(provider, ISOLATED, "runtime")) == [
        "provider runtime-proxmox sets no endpoint, so the host it manages cannot be "
        "checked; set its endpoint to this runtime host's API URL."
    ]


def test_anything_of_a_runtime_stack_on_the_core_node() -> None:
    resources = runtime_stack()
    rules = find(resources, "mc-survival-rules", "proxmoxve:firewall/rulesLegacy:RulesLegacy")
    props(rules)["nodeName"] = "zlh-core"
    assert messages(check_runtime_isolation(rules, ISOLATED, "runtime")) == [
        "mc-survival-rules (proxmoxve:firewall/rulesLegacy:RulesLegacy) is on the core node "
        "zlh-core; a runtime stack must never place anything on the core host: set its node "
        "to this runtime host's node."
    ]


def test_a_control_plane_guest_in_a_runtime_stack() -> None:
    builder = runtime_builder()
    db = builder.guest("zlh-db", 102, layer="control-plane", role="core-infra", service="zlh-db")
    assert messages(check_runtime_isolation(db, ISOLATED, "runtime")) == [
        "zlh-db (VMID 102) sits in the control-plane layer; a runtime stack must not deploy "
        "the control plane: declare it in the core stack.",
        "zlh-db (VMID 102) is tagged layer-control-plane; declare it in the core stack, or "
        "correct its layer tag.",
        "zlh-db (VMID 102) is tagged svc-zlh-db, a control-plane service (policy config "
        "controlPlaneServices); declare it in the core stack.",
    ]
    assert messages(
        check_runtime_isolation(builder.layers["control-plane"], ISOLATED, "runtime")
    ) == [
        "control-plane (zlh:control-plane:ControlPlane) sits in the control-plane layer; a "
        "runtime stack must not deploy the control plane: declare it in the core stack."
    ]


def test_a_control_plane_service_hidden_in_the_runtime_layer() -> None:
    builder = runtime_builder()
    api = builder.guest("zpack-api-2", 160, layer="runtime", role="core-infra", service="zpack-api")
    assert messages(check_runtime_isolation(api, ISOLATED, "runtime")) == [
        "zpack-api-2 (VMID 160) is tagged svc-zpack-api, a control-plane service (policy "
        "config controlPlaneServices); declare it in the core stack."
    ]


def test_a_layer_seen_through_the_parent_urn_only() -> None:
    # A URN that keeps only the nearest parent type still shows the layer via its parent.
    builder = runtime_builder()
    db = builder.guest("zlh-db", 102, layer="control-plane", role="core-infra", service="x")
    short = replace(
        db,
        urn="urn:pulumi:runtime::zlh-infra::zlh:guest:LxcGuest$"
        "proxmoxve:index/containerLegacy:ContainerLegacy::zlh-db",
        props={**db.props, "tags": ["zlh"]},
    )
    assert messages(check_runtime_isolation(short, ISOLATED, "runtime")) == [
        "zlh-db (VMID 102) sits in the control-plane layer; a runtime stack must not deploy "
        "the control plane: declare it in the core stack."
    ]


def remote_command(connection: dict[str, object]) -> Resource:
    return Resource(
        "urn:pulumi:runtime::zlh-infra::zlh:runtime:Runtime$command:remote:Command::step",
        "command:remote:Command",
        "step",
        {"connection": connection, "create": "pct exec 1000 -- sh -eu"},
    )


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINJi/bhRX1ozQ1UdeoqVyg2Vb+KtS/znE10FsgZ+A+vc"


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (
            {"host": "zlh-core.zerolaghub.net", "user": "root", "hostKey": HOST_KEY},
            "step (command:remote:Command) connects to zlh-core.zerolaghub.net, the core host "
            "(policy config coreEndpointHosts: zlh-core); a runtime stack's commands must "
            "never run on the core host: connect it to this runtime host's node.",
        ),
        (
            {"host": "zlh-runtime.zerolaghub.net", "user": "root"},
            "step (command:remote:Command) connects to zlh-runtime.zerolaghub.net without a "
            "pinned host key, so any host answering there gets its commands: set "
            "connection.hostKey to the node's SSH host key.",
        ),
        (
            {"user": "root", "hostKey": HOST_KEY},
            "step (command:remote:Command) names no connection host, so where it runs as root "
            "cannot be checked; connect it to this runtime host's node.",
        ),
    ],
    ids=["core-host", "no-host-key", "no-host"],
)
def test_a_runtime_command_never_reaches_the_core_host_and_pins_its_node(
    connection: dict[str, object], expected: str
) -> None:
    assert messages(check_runtime_isolation(remote_command(connection), ISOLATED, "runtime")) == [
        expected
    ]


def test_a_runtime_command_to_its_own_pinned_node_passes() -> None:
    command = remote_command({"host": "zlh-runtime.zerolaghub.net", "hostKey": HOST_KEY})
    assert check_runtime_isolation(command, ISOLATED, "runtime") == []


@pytest.mark.parametrize(
    ("role", "vmid", "expected"),
    [
        (
            "game",
            150,
            "svc (VMID 150) is tagged role-game, a role of the runtime hosts; declare it in a "
            "runtime stack.",
        ),
        (
            "core-infra",
            1100,
            "svc (VMID 1100) has VMID 1100, in the dev range 1100-1199 of the runtime hosts; "
            "declare it in a runtime stack.",
        ),
    ],
    ids=["role-tag-in-the-core-layer", "vmid-under-a-core-tag"],
)
def test_a_core_stack_guest_of_a_runtime_role_is_refused_whatever_its_layer_tag(
    role: str, vmid: int, expected: str
) -> None:
    """Tags in the control-plane layer do not make a game or dev container core."""
    builder = core_builder()
    builder.guest("svc", vmid, layer="control-plane", role=role, service="zlh-db")
    findings = check_control_plane_independent(builder.resources, INDEPENDENT, "core")
    assert findings.violations[0].message == expected
    # And what hangs on it (its firewall) depends on the runtime side.
    assert [v.message.split(" depends on ")[0] for v in findings.violations][1:] == [
        "svc-firewall (proxmoxve:firewall/optionsLegacy:OptionsLegacy)"
    ]


def core_guest_with(**props: object) -> list[Resource]:
    builder = core_builder()
    guest = builder.guest("zlh-db", 102, layer="control-plane", role="core-infra", service="zlh-db")
    index = builder.resources.index(guest)
    builder.resources[index] = replace(guest, props={**guest.props, **props})
    return builder.resources


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (
            {"initialization": {"ipConfigs": [{"ipv4": {"gateway": "10.20.0.1"}}]}},
            "zlh-db (VMID 102): its gateway of NIC 0 10.20.0.1 is outside the core host's "
            "networks (policy config coreNetworks: 10.10.0.0/24), so the control plane would "
            "route or resolve through another host; use an address on the core LAN.",
        ),
        (
            {"initialization": {"dns": {"servers": ["10.10.0.2", "10.20.0.1"]}}},
            "zlh-db (VMID 102): its DNS resolver 10.20.0.1 is outside the core host's networks "
            "(policy config coreNetworks: 10.10.0.0/24), so the control plane would route or "
            "resolve through another host; use an address on the core LAN.",
        ),
        (
            {"initialization": {"dns": {"servers": ["fd00::53"]}}},
            "zlh-db (VMID 102): its DNS resolver fd00::53 is outside the core host's networks "
            "(policy config coreNetworks: 10.10.0.0/24), so the control plane would route or "
            "resolve through another host; use an address on the core LAN.",
        ),
        (
            {"initialization": {"dns": {"servers": ["resolver.runtime.example"]}}},
            "zlh-db (VMID 102): its DNS resolver is 'resolver.runtime.example', not an address, "
            "so where the guest routes or resolves cannot be checked; give an address on the "
            "core LAN.",
        ),
        (
            {"clone": {"vmId": 210.0, "full": True}},
            "zlh-db (VMID 102) is cloned from VMID 210, in the template range of the runtime "
            "hosts; the control plane must never be built from the runtime side: clone from a "
            "core guest by VMID, or build it from an image.",
        ),
        (
            {"clone": {"vmId": 102.0, "nodeName": "zlh-runtime"}},
            "zlh-db (VMID 102) is cloned from node zlh-runtime, not the core node zlh-core; "
            "clone it from a guest on zlh-core.",
        ),
        (
            {"clone": {"vmId": "two-ten"}},
            "zlh-db (VMID 102) is cloned from 'two-ten', not a VMID, so its source cannot be "
            "checked; clone from a core guest by VMID, or build it from an image.",
        ),
    ],
    ids=[
        "gateway",
        "resolver",
        "resolver-v6",
        "resolver-name",
        "clone-vmid",
        "clone-node",
        "clone-unreadable",
    ],
)
def test_a_core_guest_referencing_the_runtime_side_is_refused(
    props: dict[str, object], expected: str
) -> None:
    findings = check_control_plane_independent(core_guest_with(**props), INDEPENDENT, "core")
    assert findings.violations[0].message == expected


def test_a_core_guests_reference_states_problem_and_fix_apart() -> None:
    resources = core_guest_with(clone={"vmId": 210.0, "full": True})
    findings = check_control_plane_independent(resources, INDEPENDENT, "core")
    # Its firewall resources, which depend on it, follow with findings of their own.
    assert findings.violations[:1] == [
        Violation(
            problem="zlh-db (VMID 102) is cloned from VMID 210, in the template range of the "
            "runtime hosts; the control plane must never be built from the runtime side",
            fix="clone from a core guest by VMID, or build it from an image",
            urn=find(resources, "zlh-db").urn,
            joint=": ",
        )
    ]


def test_a_core_guest_on_the_core_lan_with_its_own_resolver_passes() -> None:
    resources = core_guest_with(
        initialization={
            "ipConfigs": [{"ipv4": {"address": "10.10.0.12/24", "gateway": "10.10.0.1"}}, {}],
            "dns": {"servers": ["10.10.0.2", "10.10.0.1"]},
        },
        clone={"vmId": 105.0, "nodeName": "zlh-core"},
    )
    assert check_control_plane_independent(resources, INDEPENDENT, "core").violations == []


def core_command(connection: dict[str, object]) -> Resource:
    return Resource(
        "urn:pulumi:core::zlh-infra::zlh:control-plane:ControlPlane$command:remote:Command::step",
        "command:remote:Command",
        "step",
        {"connection": connection, "create": "pct exec 102 -- sh -eu"},
    )


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (
            {"host": "zlh-runtime.zerolaghub.net", "hostKey": HOST_KEY},
            [
                "step (command:remote:Command) connects to zlh-runtime.zerolaghub.net, not "
                "the core host (policy config coreEndpointHosts: zlh-core); a core stack's "
                "commands run on the core host only: connect it to the core node, or add its "
                "address to coreEndpointHosts."
            ],
        ),
        (
            {"host": "zlh-core.zerolaghub.net", "hostKey": "  "},
            [
                "step (command:remote:Command) connects to zlh-core.zerolaghub.net without a "
                "pinned host key, so any host answering there gets its commands: set "
                "connection.hostKey to the node's SSH host key."
            ],
        ),
        (
            {"hostKey": HOST_KEY},
            [
                "step (command:remote:Command) names no connection host, so where it runs as "
                "root cannot be checked; connect it to the core node."
            ],
        ),
    ],
    ids=["runtime-host", "blank-host-key", "no-host"],
)
def test_a_core_command_runs_on_the_pinned_core_host_only(
    connection: dict[str, object], expected: list[str]
) -> None:
    findings = check_control_plane_independent([core_command(connection)], INDEPENDENT, "core")
    assert [v.message for v in findings.violations] == expected


def test_a_core_command_to_the_pinned_core_host_passes() -> None:
    command = core_command({"host": "zlh-core.zerolaghub.net", "hostKey": HOST_KEY})
    assert check_control_plane_independent([command], INDEPENDENT, "core").violations == []
