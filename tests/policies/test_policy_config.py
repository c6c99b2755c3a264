"""Each policy's config: defaults from the platform's definitions, and what is refused."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pulumi_policy import PolicyConfigSchema

from zlh_infra.platform.catalogue import AGENT_PORT, CONTROL_PLANE_SERVICES, EDGE_SERVICES
from zlh_infra.platform.vmids import DEFAULT_SCHEME
from zlh_infra.policies import config as cfg
from zlh_infra.policies.config import ConfigSpec, PolicyConfigError

SPECS: dict[str, ConfigSpec[Any]] = {
    "zlh-vmid-range": cfg.VMID_RANGE,
    "zlh-vmid-unique": cfg.VMID_UNIQUE,
    "zlh-guest-placement": cfg.PLACEMENT,
    "zlh-control-plane-independent": cfg.INDEPENDENCE,
    "zlh-runtime-isolation": cfg.ISOLATION,
    "zlh-agent-port": cfg.AGENT,
    "zlh-traefik-per-domain": cfg.TRAEFIK,
    "zlh-required-tags": cfg.TAGS,
}


@pytest.mark.parametrize("name", SPECS)
def test_defaults_satisfy_the_schema_and_parse(name: str) -> None:
    spec = SPECS[name]
    PolicyConfigSchema(properties=spec.properties)
    schema = {"type": "object", "properties": spec.properties}
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(spec.defaults, schema)
    spec.parse(name, None)
    spec.parse(name, spec.defaults)


def test_vmid_ranges_default_to_the_one_scheme() -> None:
    assert cfg.VMID_RANGE.parse("zlh-vmid-range", None).scheme == DEFAULT_SCHEME
    assert cfg.VMID_RANGE.defaults["ranges"]["game"] == {"first": 1000, "last": 1099}
    assert cfg.VMID_RANGE.defaults["ranges"]["monitoring"] == {"first": 2000, "last": 999_999_999}


def test_service_and_port_defaults_come_from_the_catalogue() -> None:
    assert cfg.AGENT.defaults["agentPort"] == AGENT_PORT
    assert cfg.ISOLATION.defaults["controlPlaneServices"] == list(CONTROL_PLANE_SERVICES)
    assert set(EDGE_SERVICES) <= set(cfg.INDEPENDENCE.defaults["runtimeServices"])
    assert {"game", "dev", "template"} <= set(cfg.INDEPENDENCE.defaults["runtimeServices"])
    assert cfg.PLACEMENT.defaults["stackNodes"] == {"core": "zlh-core", "runtime": "zlh-runtime"}


def test_numbers_arrive_as_floats_from_the_engine() -> None:
    parsed = cfg.VMID_RANGE.parse(
        "zlh-vmid-range", {"ranges": {"dev": {"first": 1100.0, "last": 1199.0}}}
    )
    assert parsed.scheme == DEFAULT_SCHEME
    assert cfg.AGENT.parse("zlh-agent-port", {"agentPort": 18888.0}).agent_port == 18888


@pytest.mark.parametrize(
    ("spec", "given", "problem"),
    [
        (
            cfg.VMID_RANGE,
            {"ranges": {"games": {"first": 1000, "last": 1099}}},
            "ranges has unknown role 'games'; roles are core-infra, template, network, game, "
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
            "ranges.game must be {first, last} whole numbers",
        ),
        (
            cfg.VMID_UNIQUE,
            {"reservedVmids": [99]},
            "reservedVmids must be a list of whole numbers from 100 to 999999999, not [99]",
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
            cfg.AGENT,
            {"agentPort": 70000},
            "agentPort must be a whole number from 1 to 65535, not 70000",
        ),
        (
            cfg.AGENT,
            {"fleetRoles": ["game", "gaming"]},
            "fleetRoles has unknown role(s) gaming",
        ),
        (
            cfg.AGENT,
            {"apiAdress": "10.99.0.11"},
            "unknown key(s) apiAdress; its keys are agentPort, apiAddress, managementBridge, "
            "metricsPort, monitorAddress, fleetRoles, requireClusterFirewall",
        ),
        (
            cfg.TAGS,
            {"requireServiceTag": "yes"},
            "requireServiceTag must be true or false, not 'yes'",
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
