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
        assert all(text not in str(raised.value) for text in case.get("absent", ()))
    assert problems == case["errors"]
    assert all(text not in str(problems) for text in case.get("absent", ()))


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


def parsed(stack: str, secret: tuple[str, ...] = (), **changes: Any) -> list[str]:
    """The problems of the shipped ``stack`` with ``changes`` (config paths) applied."""
    return problems_with(stack, changes, secret)


def problems_with(stack: str, changes: dict[str, Any], secret: tuple[str, ...] = ()) -> list[str]:
    """``parsed`` for config paths that are not Python names."""
    config, _ = apply_case({"stack": stack, "set": changes})
    model = MODELS[stack_role(stack)]
    raw = engine_config(config)
    problems = check_secret_keys(model, {f"zlh-infra:{key}" for key in secret}, raw)
    if problems:
        return problems
    try:
        parse_stack_config(model, raw, stack=stack)
    except ConfigError as error:
        return error.problems
    return []


def test_secrets_in_camel_case_set_as_secrets_are_accepted() -> None:
    secrets = {
        "proxmoxApiToken": "root@pam!zlh=00000000-0000-0000-0000-000000000000",
        "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----",
        "acmeDnsCredentials": {"CF_DNS_API_TOKEN": "token"},
    }
    changes = {"acme.challenge": "dns", "acme.dnsProvider": "cloudflare", **secrets}
    assert parsed("core", tuple(secrets), **changes) == []


def test_field_names_are_refused_whatever_their_value() -> None:
    # Not a secret, and valid under its camelCase key: the spelling alone is refused.
    assert problems_with("core", {"storage.image_store": "local"}) == [
        "zlh-infra:storage.image_store: unknown key; it is spelled storage.imageStore "
        "(keys are camelCase)"
    ]
    assert problems_with("core", {"storage.imageStore": "local"}) == []


@pytest.mark.parametrize(
    ("stack", "key", "url"),
    [
        ("core", "proxmox.endpoint", "https://zlh-core.zerolaghub.net:8006/api2/json"),
        (
            "core",
            "releases.zpackApi.url",
            "https://releases.zerolaghub.com/zpack-api/@2.3.0/a.tar.gz",
        ),
        ("core", "osTemplate.url", "https://download.proxmox.com/images/system/a@b.tar.zst"),
        ("core", "aptRepositories.grafana.uri", "https://apt.grafana.com:443/debian"),
        ("core", "acme.caServer", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        ("runtime", "agent.url", "https://releases.zerolaghub.com/zlh-agent/1.4.2/zlh-agent"),
        ("runtime", "vendor.paper.url", "https://api.papermc.io/v2/paper.jar?from=a@b"),
    ],
)
def test_urls_without_user_info_are_accepted(stack: str, key: str, url: str) -> None:
    """An '@' in the path or query is not user info."""
    assert problems_with(stack, {key: url}) == []


def test_a_secret_quoted_by_a_message_is_masked() -> None:
    """Should a rule's message quote a secret input, the problem shows [secret] instead."""
    from zlh_infra.config import _without_secret

    message = "'pw-1234' is not valid; nor is 'line\\nbreak' or 12345678"
    assert _without_secret(message, ["pw-1234", {"a": ["line\nbreak"]}, 12345678, "  "]) == (
        "'[secret]' is not valid; nor is '[secret]' or [secret]"
    )
