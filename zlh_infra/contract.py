"""The core -> runtime contract: the one thing that crosses the stack boundary.

The core stack exports each field as a stack output named by ``CoreContract``'s
aliases; a runtime stack reads them through a StackReference and validates them
with the same model. Names and version live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from zlh_infra.platform.wire_numbers import whole_number

#: Bump when a field is added, removed or changes meaning; a runtime stack refuses
#: a core stack that exports another version.
CONTRACT_VERSION = 6


class ContractError(ValueError):
    """The core stack's outputs do not fit the contract this program expects."""


class _Login(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    password: SecretStr

    @field_validator("password")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value


class PbsHost(_Login):
    """One runtime stack's PBS login and the namespace that is its own."""

    username: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}@pbs$")
    namespace: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")


class ApiHost(_Login):
    """zpack-api's Proxmox login on one runtime host, which that host's stack creates."""

    username: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}@pve$")


class RuntimeHost(BaseModel):
    """One runtime stack's node and API endpoint, as the core stack's config names them."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    node: str = Field(min_length=1)
    endpoint: str = Field(pattern=r"^https://")


class CoreContract(BaseModel):
    """What the runtime side needs from the control plane, and nothing more."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    contract_version: int = Field(alias="contractVersion")
    core_node: str = Field(alias="coreNode", min_length=1)
    #: How the core stack reaches its node (API host, SSH address) and the node's SSH host
    #: key: a runtime stack pointed at any of them would run its steps on the core host.
    core_hosts: frozenset[str] = Field(alias="coreHosts", min_length=1)
    core_host_key: str = Field(alias="coreHostKey", min_length=1)
    management_cidr: IPv4Network = Field(alias="managementCidr")
    api_management_address: IPv4Address = Field(alias="apiManagementAddress")
    monitor_management_address: IPv4Address = Field(alias="monitorManagementAddress")
    pbs_server: IPv4Address = Field(alias="pbsServer")
    pbs_datastore: str = Field(alias="pbsDatastore", min_length=1)
    #: Read from zlh-back while the core stack deploys; None only while pending (below).
    pbs_fingerprint: str | None = Field(
        default=None, alias="pbsFingerprint", pattern=r"^([0-9a-f]{2}:){31}[0-9a-f]{2}$"
    )
    #: Per runtime stack name: its node and endpoint (the core's runtimeHosts).
    runtime_hosts: dict[str, RuntimeHost] = Field(alias="runtimeHosts")
    #: Per runtime stack name: its PBS user, password and namespace.
    pbs_hosts: dict[str, PbsHost] = Field(alias="pbsHosts")
    #: Per runtime stack name: the login its stack gives zpack-api on its node.
    api_hosts: dict[str, ApiHost] = Field(alias="apiHosts")
    headscale_url: str = Field(alias="headscaleUrl", pattern=r"^https://")
    #: The dev containers' reusable pre-auth key, read from zlh-ctl while the core deploys.
    headscale_preauth_key: SecretStr | None = Field(default=None, alias="headscalePreauthKey")
    #: zpack-api's route key (``ssh-ed25519 <base64>``), generated in its guest while the
    #: core deploys: each runtime host's proxies accept it for ``zlh-route`` only.
    route_key: str | None = Field(
        default=None, alias="routeKey", pattern=r"^ssh-ed25519 [A-Za-z0-9+/]+={0,3}$"
    )
    core_vmids: frozenset[int] = Field(alias="coreVmids")
    #: Per runtime node, the management address of its first fleet VMID: where zlh-monitor
    #: looks for that host's guests, so the runtime stack must put them there.
    fleet_blocks: dict[str, IPv4Address] = Field(alias="fleetBlocks")

    @field_validator("headscale_preauth_key")
    @classmethod
    def _key_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    def host(self, stack: str, *, core_stack: str) -> tuple[RuntimeHost, PbsHost, ApiHost]:
        """What the core stack holds for runtime stack ``stack``; refused when it has nothing."""
        found = (
            self.runtime_hosts.get(stack),
            self.pbs_hosts.get(stack),
            self.api_hosts.get(stack),
        )
        if found[0] is None or found[1] is None or found[2] is None:
            known = ", ".join(sorted(self.runtime_hosts)) or "none"
            raise ContractError(
                f"core stack {core_stack!r} knows no runtime host for stack {stack!r} (it "
                f"knows: {known}): add zlh-infra:runtimeHosts.{stack} to the core stack and "
                "run `pulumi up` on it first"
            )
        return found[0], found[1], found[2]


#: Output names, in the order the core stack exports them.
CONTRACT_OUTPUTS: tuple[str, ...] = tuple(
    field.alias or name for name, field in CoreContract.model_fields.items()
)
#: Outputs that the core stack exports as secrets.
SECRET_OUTPUTS: frozenset[str] = frozenset({"pbsHosts", "apiHosts", "headscalePreauthKey"})
#: Outputs the core stack reads from its guests while it deploys (zlh-back's certificate,
#: zlh-ctl's pre-auth key, zpack-api's route key). A core stack that was previewed, not
#: deployed, has them unknown; a core stack in the ``routers`` bootstrap stage does not
#: export them yet.
DEPLOY_TIME_OUTPUTS: frozenset[str] = frozenset(
    {"pbsFingerprint", "headscalePreauthKey", "routeKey"}
)


def parse_contract(
    outputs: Mapping[str, Any], *, core_stack: str, pending: Collection[str] = ()
) -> CoreContract:
    """Validate a core stack's outputs, naming the stack and the output on failure.

    ``pending``: deploy-time outputs the caller accepts without a value (see
    ``DEPLOY_TIME_OUTPUTS``); any other missing output is refused.
    """
    waived = set(pending) & DEPLOY_TIME_OUTPUTS
    missing = [
        name for name in CONTRACT_OUTPUTS if name not in waived and outputs.get(name) is None
    ]
    if missing:
        raise ContractError(
            f"core stack {core_stack!r} does not export {', '.join(missing)}: "
            "run `pulumi up` on the core stack first, with this version of the program"
        )
    exported = outputs.get("contractVersion")
    # Numbers cross the wire as floats; a bool or a string is no version.
    version = whole_number(exported, digits=False)
    if version != CONTRACT_VERSION:
        shown = exported if version is None else version
        raise ContractError(
            f"core stack {core_stack!r} exports contractVersion {shown!r}, this program "
            f"needs {CONTRACT_VERSION}: deploy the same program version to core and runtime"
        )
    try:
        return CoreContract.model_validate(
            {name: value for name, value in outputs.items() if value is not None}
        )
    except ValidationError as error:
        problems = "; ".join(
            f"output {'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}"
            for issue in error.errors(include_url=False)
        )
        raise ContractError(f"core stack {core_stack!r}: {problems}") from None
