"""The core -> runtime contract: the one thing that crosses the stack boundary.

The core stack exports each field as a stack output named by ``CoreContract``'s
aliases; a runtime stack reads them through a StackReference and validates them
with the same model. Names and version live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

#: Bump when a field is added, removed or changes meaning; a runtime stack refuses
#: a core stack that exports another version.
CONTRACT_VERSION = 1


class ContractError(ValueError):
    """The core stack's outputs do not fit the contract this program expects."""


class CoreContract(BaseModel):
    """What the runtime side needs from the control plane, and nothing more."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    contract_version: int = Field(alias="contractVersion")
    core_node: str = Field(alias="coreNode", min_length=1)
    management_cidr: IPv4Network = Field(alias="managementCidr")
    api_management_address: IPv4Address = Field(alias="apiManagementAddress")
    monitor_management_address: IPv4Address = Field(alias="monitorManagementAddress")
    pbs_server: IPv4Address = Field(alias="pbsServer")
    pbs_datastore: str = Field(alias="pbsDatastore", min_length=1)
    pbs_fingerprint: str | None = Field(default=None, alias="pbsFingerprint")
    pbs_username: str = Field(alias="pbsUsername", min_length=1)
    pbs_password: SecretStr = Field(alias="pbsPassword")
    headscale_url: str = Field(alias="headscaleUrl", pattern=r"^https://")
    core_vmids: frozenset[int] = Field(alias="coreVmids")

    @field_validator("pbs_password")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


#: Output names, in the order the core stack exports them.
CONTRACT_OUTPUTS: tuple[str, ...] = tuple(
    field.alias or name for name, field in CoreContract.model_fields.items()
)
#: Outputs that the core stack exports as secrets.
SECRET_OUTPUTS: frozenset[str] = frozenset({"pbsPassword"})
#: Outputs a core stack may leave out.
OPTIONAL_OUTPUTS: frozenset[str] = frozenset(
    field.alias or name
    for name, field in CoreContract.model_fields.items()
    if not field.is_required()
)


def parse_contract(outputs: Mapping[str, Any], *, core_stack: str) -> CoreContract:
    """Validate a core stack's outputs, naming the stack and the output on failure."""
    missing = [
        name
        for name in CONTRACT_OUTPUTS
        if name not in OPTIONAL_OUTPUTS and outputs.get(name) is None
    ]
    if missing:
        raise ContractError(
            f"core stack {core_stack!r} does not export {', '.join(missing)}: "
            "run `pulumi up` on the core stack first, with this version of the program"
        )
    version = outputs.get("contractVersion")
    if isinstance(version, float) and version.is_integer():
        version = int(version)  # numbers cross the wire as floats
    if version != CONTRACT_VERSION:
        raise ContractError(
            f"core stack {core_stack!r} exports contractVersion {version!r}, this program "
            f"needs {CONTRACT_VERSION}: deploy the same program version to core and runtime"
        )
    try:
        return CoreContract.model_validate(dict(outputs))
    except ValidationError as error:
        problems = "; ".join(
            f"output {'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
            for issue in error.errors(include_url=False)
        )
        raise ContractError(f"core stack {core_stack!r}: {problems}") from None
