"""Property values between the program's wire form, the analyzer's and protobuf Structs.

Properties are the program's wire-form inputs marshalled like the engine's
``MarshalProperties(KeepUnknowns, KeepSecrets, SkipInternalKeys)``: secrets keep the
secret signature, unknowns stay the unknown sentinel, output values become their value
(or unknown, wrapped as secret if secret), resource references become their ID, or URN
for components, and ``__``-prefixed keys are dropped (kept for ``Remediate``). The
engine sends provider-checked inputs; offline there is no provider ``Check``.

Values are JSON-like trees as the recording holds them, hence ``Any``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import rpc

SIG = rpc._special_sig_key
SECRET_SIG = rpc._special_secret_sig
RESOURCE_SIG = rpc._special_resource_sig
OUTPUT_SIG = rpc._special_output_value_sig
UNKNOWN = rpc.UNKNOWN


def marshal_properties(
    props: Mapping[str, Any], *, skip_internal: bool, dropped: list[str] | None = None
) -> dict[str, Any]:
    """Wire-form properties as the engine marshals them for an analyzer.

    ``dropped``, when given, collects the internal keys that were left out.
    """
    marshalled = {}
    for k, v in props.items():
        if skip_internal and k.startswith("__"):
            if dropped is not None:
                dropped.append(k)
            continue
        marshalled[k] = _marshal(v, skip_internal, dropped)
    return marshalled


def _marshal(value: Any, skip_internal: bool, dropped: list[str] | None) -> Any:
    if isinstance(value, dict):
        sig = value.get(SIG)
        if sig == SECRET_SIG:
            return {
                SIG: SECRET_SIG,
                "value": _marshal(value.get("value"), skip_internal, dropped),
            }
        if sig == OUTPUT_SIG:
            inner = (
                _marshal(value["value"], skip_internal, dropped) if "value" in value else UNKNOWN
            )
            return {SIG: SECRET_SIG, "value": inner} if value.get("secret") else inner
        if sig == RESOURCE_SIG:
            if "id" in value:
                return value["id"] or UNKNOWN
            return value.get("urn", "")
        if sig is not None:
            return value  # assets and archives pass unchanged
        return marshal_properties(value, skip_internal=skip_internal, dropped=dropped)
    if isinstance(value, list):
        return [_marshal(v, skip_internal, dropped) for v in value]
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct's fields as plain JSON values."""
    fields: dict[str, Any] = json_format.MessageToDict(struct)
    return fields
