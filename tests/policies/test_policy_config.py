"""Each policy's config: defaults from the platform's definitions, and what is refused."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import jsonschema
import pytest
from pulumi_policy import PolicyConfigSchema

from zlh_infra.platform.catalogue import AGENT_PORT, CONTROL_PLANE_SERVICES, EDGE_SERVICES
from zlh_infra.platform.vmids import DEFAULT_SCHEME, VmidRole
from zlh_infra.policies import config as cfg
from zlh_infra.policies.api_identity import API_IDENTITY
from zlh_infra.policies.config import ConfigSpec, PolicyConfigError
from zlh_infra.policies.pack import POLICIES

SPECS: dict[str, ConfigSpec[Any]] = {
    "zlh-vmid-range": cfg.VMID_RANGE,
    "zlh-vmid-unique": cfg.VMID_UNIQUE,
    "zlh-guest-placement": cfg.PLACEMENT,
    "zlh-control-plane-independent": cfg.INDEPENDENCE,
    "zlh-runtime-isolation": cfg.ISOLATION,
    "zlh-agent-port": cfg.AGENT,
    "zlh-traefik-per-domain": cfg.TRAEFIK,
    "zlh-required-tags": cfg.TAGS,
    "zlh-stateful-protected": cfg.STATEFUL,
    "zlh-runtime-self-sufficient": cfg.SELF_SUFFICIENT,
    "zlh-host-firewall": cfg.HOST_FIREWALL,
    "zlh-tenant-egress": cfg.EGRESS,
    "zlh-api-identity": API_IDENTITY,
}

#: The keys config files use today, in order: a model that renames one breaks every file.
KEYS = {
    "zlh-vmid-range": ["ranges"],
    "zlh-vmid-unique": ["reservedVmids"],
    "zlh-guest-placement": ["stackNodes"],
    "zlh-control-plane-independent": [
        "coreNode",
        "coreEndpointHosts",
        "runtimeServices",
        "coreNetworks",
    ],
    "zlh-runtime-isolation": ["coreNode", "coreEndpointHosts", "controlPlaneServices"],
    "zlh-agent-port": [
        "agentPort",
        "apiAddress",
        "managementBridge",
        "metricsPort",
        "monitorAddress",
        "fleetRoles",
        "requireClusterFirewall",
    ],
    "zlh-traefik-per-domain": ["coreProxyService", "runtimeProxyService"],
    "zlh-required-tags": ["platformTag", "requireServiceTag"],
    "zlh-stateful-protected": ["statefulServices", "statefulRoles", "backupExempt"],
    "zlh-runtime-self-sufficient": ["coreNetworks", "managementNetwork"],
    "zlh-host-firewall": ["guestNetworks", "managementBridge"],
    "zlh-tenant-egress": ["managementBridge"],
    "zlh-api-identity": ["userId", "storages", "bridges", "pool"],
}


def engine_schema(spec: ConfigSpec[Any]) -> dict[str, Any]:
    """The schema the engine validates a policy's config with (it adds no more than this)."""
    return {"type": "object", "properties": spec.properties}


def test_every_configurable_policy_of_the_pack_is_listed_with_its_schema() -> None:
    advertised = {p.name: p.config_schema for p in POLICIES if p.config_schema is not None}
    assert set(advertised) == set(SPECS)
    for name, schema in advertised.items():
        assert schema.properties == SPECS[name].properties, name


@pytest.mark.parametrize("name", SPECS)
def test_the_keys_stay_those_of_todays_config_files(name: str) -> None:
    assert list(SPECS[name].properties) == KEYS[name]


@pytest.mark.parametrize("name", SPECS)
def test_defaults_satisfy_the_schema_and_parse(name: str) -> None:
    spec = SPECS[name]
    PolicyConfigSchema(properties=spec.properties)
    schema = engine_schema(spec)
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(spec.defaults, schema)
    assert spec.parse(name, None) == spec.parse(name, spec.defaults)


@pytest.mark.parametrize("name", SPECS)
def test_the_engines_schema_stands_alone_and_says_what_each_key_is(name: str) -> None:
    text = json.dumps(SPECS[name].properties)
    # The engine nests each property in a schema of its own: a reference would dangle.
    assert "$ref" not in text and "$defs" not in text
    # Its own checks of these would refuse what the pack reads: "10.99.0.10/32", a repeat.
    assert '"format"' not in text and '"uniqueItems"' not in text
    for key, prop in SPECS[name].properties.items():
        assert "default" in prop and prop.get("description"), key
        assert "type" in prop, key


def test_the_engine_gets_defaults_as_the_config_file_writes_them() -> None:
    assert cfg.VMID_RANGE.parse("zlh-vmid-range", None).scheme == DEFAULT_SCHEME
    assert cfg.VMID_RANGE.defaults["ranges"]["game"] == {"first": 1000, "last": 1099}
    assert cfg.VMID_RANGE.defaults["ranges"]["monitoring"] == {"first": 2000, "last": 999_999_999}
    assert cfg.VMID_UNIQUE.defaults == {"reservedVmids": []}
    assert cfg.AGENT.defaults["apiAddress"] == "10.99.0.10"
    assert cfg.HOST_FIREWALL.defaults["guestNetworks"] == [
        "10.10.0.0/24",
        "10.20.0.0/22",
        "10.99.0.0/22",
    ]


def test_the_vmid_ranges_model_has_one_key_per_role() -> None:
    roles = cfg.VMID_RANGE.properties["ranges"]["properties"]
    assert list(roles) == [str(r.role) for r in DEFAULT_SCHEME.ranges]
    assert set(roles) == {role.value for role in VmidRole}


def test_service_and_port_defaults_come_from_the_catalogue() -> None:
    assert cfg.AGENT.defaults["agentPort"] == AGENT_PORT
    assert cfg.ISOLATION.defaults["controlPlaneServices"] == list(CONTROL_PLANE_SERVICES)
    assert set(EDGE_SERVICES) <= set(cfg.INDEPENDENCE.defaults["runtimeServices"])
    assert {"game", "dev", "template"} <= set(cfg.INDEPENDENCE.defaults["runtimeServices"])
    assert cfg.PLACEMENT.defaults["stackNodes"] == {"core": "zlh-core", "runtime": "zlh-runtime"}


def test_the_checks_read_typed_values() -> None:
    agent = cfg.AGENT.parse("zlh-agent-port", None)
    assert agent.api_address == IPv4Address("10.99.0.10")
    assert agent.fleet_roles == frozenset({"game", "dev"})
    independence = cfg.INDEPENDENCE.parse("zlh-control-plane-independent", None)
    assert independence.core_networks == (IPv4Network("10.10.0.0/24"),)
    assert isinstance(independence.runtime_services, frozenset)
    assert cfg.VMID_UNIQUE.parse("zlh-vmid-unique", {"reservedVmids": [120]}).reserved == {120}
    placement = cfg.PLACEMENT.parse("zlh-guest-placement", {"stackNodes": {"core": "pve-a"}})
    assert placement.core_node == "pve-a"
    with pytest.raises(ValueError, match="frozen"):
        agent.agent_port = 1


def test_numbers_arrive_as_floats_from_the_engine() -> None:
    parsed = cfg.VMID_RANGE.parse(
        "zlh-vmid-range", {"ranges": {"dev": {"first": 1100.0, "last": 1199.0}}}
    )
    assert parsed.scheme == DEFAULT_SCHEME
    assert cfg.AGENT.parse("zlh-agent-port", {"agentPort": 18888.0}).agent_port == 18888


@pytest.mark.parametrize(
    ("spec", "given"),
    [
        # An address also written as a /32 network, as a firewall rule's source may be.
        (cfg.AGENT, {"apiAddress": "10.99.0.10/32", "enforcementLevel": "mandatory"}),
        # A repeated entry changes nothing, and the engine must not refuse it either.
        (cfg.VMID_UNIQUE, {"reservedVmids": [120, 120]}),
        (cfg.STATEFUL, {"statefulRoles": ["game", "game"]}),
        (cfg.SELF_SUFFICIENT, {"coreNetworks": [" 10.10.0.0/24 "]}),
    ],
)
def test_what_the_pack_accepts_the_engine_accepts(
    spec: ConfigSpec[Any], given: dict[str, Any]
) -> None:
    jsonschema.validate({**spec.defaults, **given}, engine_schema(spec))
    spec.parse("zlh-x", given)


def test_an_address_is_read_as_one() -> None:
    parsed = cfg.AGENT.parse("zlh-agent-port", {"apiAddress": " 10.99.0.11/32 "})
    assert parsed.api_address == IPv4Address("10.99.0.11")


@pytest.mark.parametrize(
    ("spec", "given", "problem"),
    [
        (
            cfg.VMID_RANGE,
            {"ranges": {"games": {"first": 1000, "last": 1099}}},
            "ranges has unknown key(s) games; its keys are core-infra, template, network, game, "
            "dev, monitoring",
        ),
        (
            cfg.VMID_RANGE,
            {"ranges": {"game": {"first": 1099, "last": 1000}}},
            "ranges: range game starts at 1099, after its end 1000",
        ),
        (
            cfg.VMID_RANGE,
            {"ranges": {"game": {"first": 1000}}},
            "ranges.game must be {first, last} whole numbers from 100 to 999999999, not "
            "{'first': 1000}",
        ),
        (
            cfg.VMID_RANGE,
            {"ranges": {"game": {"first": 99, "last": 1099}}},
            "ranges.game.first must be a whole number from 100 to 999999999, not 99",
        ),
        (
            cfg.VMID_RANGE,
            {"ranges": [1000, 1099]},
            "ranges must be an object of {core-infra, template, network, game, dev, monitoring}, "
            "not [1000, 1099]",
        ),
        (
            cfg.VMID_UNIQUE,
            {"reservedVmids": [99]},
            "reservedVmids must be a list of whole numbers from 100 to 999999999, not [99]",
        ),
        (
            cfg.VMID_UNIQUE,
            {"reservedVmids": ["120"]},
            "reservedVmids must be a list of whole numbers from 100 to 999999999, not ['120']",
        ),
        (
            cfg.PLACEMENT,
            {"stackNodes": {"core": ""}},
            "stackNodes must be an object mapping names to non-empty strings, not {'core': ''}",
        ),
        (
            cfg.ISOLATION,
            {"coreEndpointHosts": "zlh-core"},
            "coreEndpointHosts must be a list of non-empty strings, not 'zlh-core'",
        ),
        (
            cfg.ISOLATION,
            {"coreNode": "  "},
            "coreNode must be a non-empty string, not '  '",
        ),
        (
            cfg.AGENT,
            {"agentPort": 70000},
            "agentPort must be a whole number from 1 to 65535, not 70000",
        ),
        (
            cfg.AGENT,
            {"agentPort": 18888.5},
            "agentPort must be a whole number from 1 to 65535, not 18888.5",
        ),
        (
            cfg.AGENT,
            {"fleetRoles": ["game", "gaming"]},
            "fleetRoles has unknown role(s) gaming",
        ),
        (
            cfg.AGENT,
            {"monitorAddress": "10.99.0.0/22"},
            "monitorAddress must be one IPv4 address, not '10.99.0.0/22'",
        ),
        (
            cfg.AGENT,
            {"apiAdress": "10.99.0.11"},
            "unknown key(s) apiAdress; its keys are agentPort, apiAddress, managementBridge, "
            "metricsPort, monitorAddress, fleetRoles, requireClusterFirewall",
        ),
        (
            cfg.AGENT,
            {"api_address": "10.99.0.11"},
            "unknown key(s) api_address; its keys are agentPort, apiAddress, managementBridge, "
            "metricsPort, monitorAddress, fleetRoles, requireClusterFirewall",
        ),
        (
            cfg.TAGS,
            {"requireServiceTag": "yes"},
            "requireServiceTag must be true or false, not 'yes'",
        ),
        (
            cfg.SELF_SUFFICIENT,
            {"managementNetwork": "10.99.0.1/22"},
            "managementNetwork must be an IPv4 network, not '10.99.0.1/22'",
        ),
        (
            cfg.HOST_FIREWALL,
            {"guestNetworks": ["10.10.0.0/24", "fd00::/8"]},
            "guestNetworks must be a list of IPv4 networks, not ['10.10.0.0/24', 'fd00::/8']",
        ),
    ],
)
def test_unusable_values_are_named(
    spec: ConfigSpec[Any], given: dict[str, Any], problem: str
) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        spec.parse("zlh-x", given)
    assert caught.value.problems == [problem]
    assert str(caught.value) == (
        f"the configuration of policy zlh-x is unusable: {problem}. Fix it in the "
        "--policy-pack-config file."
    )


def test_every_bad_key_is_named_at_once_in_plain_words() -> None:
    given = {"agentPort": "18888", "fleetRoles": ["gaming"], "ipfilter": True}
    with pytest.raises(PolicyConfigError) as caught:
        cfg.AGENT.parse("zlh-agent-port", given)
    assert caught.value.problems == [
        "unknown key(s) ipfilter; its keys are agentPort, apiAddress, managementBridge, "
        "metricsPort, monitorAddress, fleetRoles, requireClusterFirewall",
        "agentPort must be a whole number from 1 to 65535, not '18888'",
        "fleetRoles has unknown role(s) gaming",
    ]
    message = str(caught.value)
    assert "\n" not in message and "pydantic" not in message and "validation error" not in message
    # Nothing of the validator's own error is chained onto the one the operator sees.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
