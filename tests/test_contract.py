"""The core -> runtime contract: one model, refused with the output and stack named."""

from __future__ import annotations

from typing import Any

import pytest

from zlh_infra.contract import (
    CONTRACT_OUTPUTS,
    CONTRACT_VERSION,
    DEPLOY_TIME_OUTPUTS,
    SECRET_OUTPUTS,
    ContractError,
    parse_contract,
)

FINGERPRINT = ":".join(["ab"] * 32)
ROUTE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDiK14tBothHhVFv/yDmF9U0IysymOJRcCcbx+T5Dv/F"
GOOD: dict[str, Any] = {
    "contractVersion": CONTRACT_VERSION,
    "coreNode": "zlh-core",
    "coreHosts": ["zlh-core.zerolaghub.net"],
    "coreHostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6MQtZBm8azTD+dyCxWG1gL2z1FyH65Tb4",
    "managementCidr": "10.99.0.0/22",
    "apiManagementAddress": "10.99.0.10",
    "monitorManagementAddress": "10.99.0.20",
    "pbsServer": "10.99.0.21",
    "pbsDatastore": "zlh",
    "pbsFingerprint": FINGERPRINT,
    "runtimeHosts": {
        "runtime": {"node": "zlh-runtime", "endpoint": "https://zlh-runtime.zerolaghub.net:8006/"}
    },
    "pbsHosts": {
        "runtime": {
            "username": "zlh-runtime@pbs",
            "password": "s3cret-value",
            "namespace": "runtime",
        }
    },
    "apiHosts": {"runtime": {"username": "zpack-api@pve", "password": "api-s3cret"}},
    "headscaleUrl": "https://vpn.zerolaghub.com",
    "headscalePreauthKey": "0123456789abcdef0123456789abcdef0123456789abcdef",
    "routeKey": ROUTE_KEY,
    "coreVmids": [100, 101],
    "fleetBlocks": {"zlh-runtime": "10.99.1.0"},
}


def test_the_contract_is_version_6_with_its_secrets_and_deploy_time_values() -> None:
    assert CONTRACT_VERSION == 6
    assert {"pbsHosts", "apiHosts", "headscalePreauthKey"} == SECRET_OUTPUTS
    assert {"pbsFingerprint", "headscalePreauthKey", "routeKey"} == DEPLOY_TIME_OUTPUTS
    assert set(SECRET_OUTPUTS | DEPLOY_TIME_OUTPUTS) <= set(CONTRACT_OUTPUTS)
    assert "pbsUsername" not in CONTRACT_OUTPUTS and "pbsPassword" not in CONTRACT_OUTPUTS


def test_good_contract_parses_and_hides_the_secrets() -> None:
    contract = parse_contract(GOOD, core_stack="core")
    assert str(contract.api_management_address) == "10.99.0.10"
    assert contract.pbs_fingerprint == FINGERPRINT
    assert "s3cret-value" not in repr(contract) and "api-s3cret" not in repr(contract)
    assert "0123456789abcdef" not in repr(contract)
    assert contract.core_vmids == frozenset({100, 101})


def test_a_runtime_stack_picks_its_own_node_and_logins() -> None:
    contract = parse_contract(GOOD, core_stack="core")
    host, pbs, api = contract.host("runtime", core_stack="core")
    assert (host.node, host.endpoint) == ("zlh-runtime", "https://zlh-runtime.zerolaghub.net:8006/")
    assert (pbs.username, pbs.namespace) == ("zlh-runtime@pbs", "runtime")
    assert pbs.password.get_secret_value() == "s3cret-value"
    assert (api.username, api.password.get_secret_value()) == ("zpack-api@pve", "api-s3cret")


def test_a_runtime_stack_the_core_does_not_know_is_refused_naming_the_key() -> None:
    contract = parse_contract(GOOD, core_stack="acme/zlh-infra/core")
    with pytest.raises(ContractError) as raised:
        contract.host("runtime-2", core_stack="acme/zlh-infra/core")
    assert str(raised.value) == (
        "core stack 'acme/zlh-infra/core' knows no runtime host for stack 'runtime-2' (it "
        "knows: runtime): add zlh-infra:runtimeHosts.runtime-2 to the core stack and run "
        "`pulumi up` on it first"
    )


@pytest.mark.parametrize("missing", CONTRACT_OUTPUTS)
def test_missing_output_is_named_with_the_core_stack(missing: str) -> None:
    outputs = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(
        ContractError, match=f"core stack 'acme/zlh-infra/core' does not export {missing}:"
    ):
        parse_contract(outputs, core_stack="acme/zlh-infra/core")


def test_deploy_time_outputs_may_be_pending_and_nothing_else() -> None:
    outputs = {k: v for k, v in GOOD.items() if k not in DEPLOY_TIME_OUTPUTS}
    contract = parse_contract(outputs, core_stack="core", pending=DEPLOY_TIME_OUTPUTS)
    assert contract.pbs_fingerprint is None and contract.headscale_preauth_key is None
    without_server = {k: v for k, v in GOOD.items() if k != "pbsServer"}
    with pytest.raises(ContractError, match="does not export pbsServer:"):
        parse_contract(without_server, core_stack="core", pending={"pbsServer"})


def test_other_contract_version_is_refused() -> None:
    with pytest.raises(
        ContractError, match=f"exports contractVersion 1, this program needs {CONTRACT_VERSION}"
    ):
        parse_contract({**GOOD, "contractVersion": 1}, core_stack="core")


def test_the_contract_version_crosses_the_wire_as_a_float() -> None:
    contract = parse_contract({**GOOD, "contractVersion": float(CONTRACT_VERSION)}, core_stack="c")
    assert contract.contract_version == CONTRACT_VERSION
    with pytest.raises(ContractError, match="exports contractVersion 1, this"):
        parse_contract({**GOOD, "contractVersion": 1.0}, core_stack="core")


@pytest.mark.parametrize("version", [str(CONTRACT_VERSION), CONTRACT_VERSION + 0.5, True])
def test_a_contract_version_that_is_no_whole_number_is_refused(version: object) -> None:
    with pytest.raises(ContractError, match=f"exports contractVersion {version!r}, this"):
        parse_contract({**GOOD, "contractVersion": version}, core_stack="core")


@pytest.mark.parametrize(
    ("output", "value"),
    [
        ("apiManagementAddress", "api.internal"),
        ("pbsFingerprint", "AB:CD"),
        ("pbsHosts", {"runtime": {"username": "root@pam", "password": "x", "namespace": "r"}}),
        ("apiHosts", {"runtime": {"username": "zpack-api@pam", "password": "x"}}),
        ("apiHosts", {"runtime": {"username": "zpack-api@pve", "password": ""}}),
        ("runtimeHosts", {"runtime": {"node": "zlh-runtime", "endpoint": "http://x:8006/"}}),
    ],
)
def test_wrong_output_type_names_the_output(output: str, value: Any) -> None:
    with pytest.raises(ContractError, match=f"output {output}[.:]"):
        parse_contract({**GOOD, output: value}, core_stack="core")


@pytest.mark.parametrize(
    "key",
    [
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7",
        f"{ROUTE_KEY} zpack-api",
        f'command="sh" {ROUTE_KEY}',
        f"{ROUTE_KEY}\n{ROUTE_KEY}",
    ],
)
def test_a_route_key_that_is_not_one_bare_ed25519_key_is_refused(key: str) -> None:
    with pytest.raises(ContractError, match="output routeKey"):
        parse_contract({**GOOD, "routeKey": key}, core_stack="core")


def test_a_core_stack_not_deployed_yet_may_leave_the_route_key_pending() -> None:
    outputs = {name: value for name, value in GOOD.items() if name != "routeKey"}
    assert parse_contract(outputs, core_stack="core", pending={"routeKey"}).route_key is None
    with pytest.raises(ContractError, match="does not export routeKey"):
        parse_contract(outputs, core_stack="core")
