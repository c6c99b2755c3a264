"""The core -> runtime contract: one model, refused with the output and stack named."""

from __future__ import annotations

from typing import Any

import pytest

from zlh_infra.contract import CONTRACT_OUTPUTS, CONTRACT_VERSION, ContractError, parse_contract

GOOD: dict[str, Any] = {
    "contractVersion": CONTRACT_VERSION,
    "coreNode": "zlh-core",
    "managementCidr": "10.99.0.0/22",
    "apiManagementAddress": "10.99.0.10",
    "monitorManagementAddress": "10.99.0.20",
    "pbsServer": "10.99.0.21",
    "pbsDatastore": "zlh",
    "pbsUsername": "zlh-runtime@pbs",
    "pbsPassword": "s3cret-value",
    "headscaleUrl": "https://vpn.zerolaghub.com",
    "coreVmids": [100, 101],
}


def test_good_contract_parses_and_hides_the_password() -> None:
    contract = parse_contract(GOOD, core_stack="core")
    assert str(contract.api_management_address) == "10.99.0.10"
    assert "s3cret-value" not in repr(contract)
    assert contract.core_vmids == frozenset({100, 101})


@pytest.mark.parametrize("missing", [n for n in CONTRACT_OUTPUTS if n != "pbsFingerprint"])
def test_missing_output_is_named_with_the_core_stack(missing: str) -> None:
    outputs = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(
        ContractError, match=f"core stack 'acme/zlh-infra/core' does not export {missing}:"
    ):
        parse_contract(outputs, core_stack="acme/zlh-infra/core")


def test_other_contract_version_is_refused() -> None:
    with pytest.raises(ContractError, match="exports contractVersion 2, this program needs 1"):
        parse_contract({**GOOD, "contractVersion": 2}, core_stack="core")


def test_wrong_output_type_names_the_output() -> None:
    with pytest.raises(ContractError, match="output apiManagementAddress: "):
        parse_contract({**GOOD, "apiManagementAddress": "api.internal"}, core_stack="core")
