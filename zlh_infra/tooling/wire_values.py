"""The engine's wire-form sentinels, and wire values made fit to show.

Spelled out rather than taken from ``pulumi.runtime.rpc``: the lab's ``pct`` reads guest
records through modules that use them and starts without the SDK. Modules that load the
SDK anyway use its own (``rpc.is_rpc_secret``, ``rpc.UNKNOWN``).
"""

from __future__ import annotations

from typing import Any

#: ``rpc._special_sig_key``: the key that marks a special object in a wire-form map.
SIG_KEY = "4dabf18193072939515e22adb298388d"
#: ``rpc._special_secret_sig``: ``{SIG_KEY: SECRET_SIG, "value": ...}`` is a secret.
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
#: ``rpc.UNKNOWN``: a value known only once the engine applies the plan.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

SECRET_MASK = "[secret]"
UNKNOWN_MASK = "(unknown)"


def is_secret(value: object) -> bool:
    """Whether ``value`` is a wire-form secret (the sentinel map, not what it holds)."""
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def mask_secrets(value: Any, *, name_unknowns: bool = False) -> Any:
    """A copy of a wire-form value with every secret as ``[secret]``.

    ``name_unknowns`` also puts ``(unknown)`` for each unknown value.
    """
    if is_secret(value):
        return SECRET_MASK
    if name_unknowns and value == UNKNOWN:
        return UNKNOWN_MASK
    if isinstance(value, dict):
        return {key: mask_secrets(item, name_unknowns=name_unknowns) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item, name_unknowns=name_unknowns) for item in value]
    return value
