"""Credentials travel as secrets: never plain in a resource's inputs, state or logs.

``pulumi_policy`` hands validation policies every secret already unwrapped, so a
validation policy cannot tell a secret password from a plain one. Only a remediation
sees the difference: the pack's ``zlh-secret-inputs`` remediation marks any plain
credential secret before the engine stores it, and the offline preview, which sees
the engine's wire form, fails a stack outright on one (``plain_credentials``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Input names that hold a credential wherever they appear (provider inputs too).
CREDENTIAL_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "apiToken",
        "privateKey",
        "privateKeyPassword",
        "encryptionKey",
        "socks5Password",
        "authKey",
    }
)


def plain_credentials(value: Any, is_secret: Callable[[Any], bool], path: str = "") -> list[str]:
    """Paths of credential inputs in ``value`` that hold a plain (non-secret) value."""
    found: list[str] = []
    if is_secret(value):
        return found
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in CREDENTIAL_KEYS and item not in (None, "") and not is_secret(item):
                found.append(where)
            else:
                found += plain_credentials(item, is_secret, where)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index, item in enumerate(value):
            found += plain_credentials(item, is_secret, f"{path}[{index}]")
    return found


def mark_credentials_secret(
    value: Any, is_secret: Callable[[Any], bool], wrap: Callable[[Any], Any]
) -> tuple[Any, bool]:
    """A copy of ``value`` with every plain credential wrapped, and whether any was."""
    if is_secret(value):
        return value, False
    if isinstance(value, Mapping):
        changed = False
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if key in CREDENTIAL_KEYS and item not in (None, "") and not is_secret(item):
                copy[key], changed = wrap(item), True
            else:
                copy[key], inner = mark_credentials_secret(item, is_secret, wrap)
                changed = changed or inner
        return copy, changed
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = [mark_credentials_secret(item, is_secret, wrap) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    return value, False
