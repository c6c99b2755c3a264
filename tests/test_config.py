"""Stack configuration: the shipped files validate; every malformed variant is refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.stack_configs import apply_case, bad_cases, engine_config, shipped
from zlh_infra.config import (
    CoreStackConfig,
    RuntimeStackConfig,
    check_secret_keys,
    parse_stack_config,
)
from zlh_infra.errors import ConfigError
from zlh_infra.platform.topology import StackRole, stack_role

MODELS: dict[StackRole, type[CoreStackConfig] | type[RuntimeStackConfig]] = {
    StackRole.CORE: CoreStackConfig,
    StackRole.RUNTIME: RuntimeStackConfig,
}
CONFIG_CASES = [case for case in bad_cases() if case["stack"] in ("core", "runtime")]


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_shipped_stack_files_are_valid(stack: str) -> None:
    model = MODELS[stack_role(stack)]
    config: CoreStackConfig | RuntimeStackConfig = parse_stack_config(
        model, engine_config(shipped(stack)), stack=stack
    )
    assert config.proxmox.node == f"zlh-{stack}"


def test_catalogue_has_at_least_25_distinct_cases() -> None:
    ids = [case["id"] for case in bad_cases()]
    assert len(ids) == len(set(ids)) >= 25


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c["id"] for c in CONFIG_CASES])
def test_malformed_config_is_refused_naming_key_and_rule(case: dict[str, Any]) -> None:
    config, secret_keys = apply_case(case)
    model = MODELS[stack_role(case["stack"])]
    raw = engine_config(config)
    problems = check_secret_keys(model, secret_keys, raw)
    if not problems:
        with pytest.raises(ConfigError) as raised:
            parse_stack_config(model, raw, stack=case["stack"])
        problems = raised.value.problems
    assert problems == case["errors"]


def test_config_error_message_lists_every_problem_without_traceback() -> None:
    error = ConfigError(["zlh-infra:a: first", "zlh-infra:b: second"], stack="core")
    assert str(error) == (
        "stack 'core': invalid configuration:\n  - zlh-infra:a: first\n  - zlh-infra:b: second"
    )


def test_fleet_addresses_follow_the_vmid() -> None:
    config = parse_stack_config(
        RuntimeStackConfig, engine_config(shipped("runtime")), stack="runtime"
    )
    from zlh_infra.platform.catalogue import Network

    assert str(config.fleet_addresses(Network.LAN, 1000)) == "10.20.1.0"
    assert str(config.fleet_addresses(Network.MANAGEMENT, 1101)) == "10.99.1.101"
