"""Credentials travel as secrets: never plain in a resource's inputs, state or logs.

``pulumi_policy`` hands validation policies every secret already unwrapped, so a
validation policy cannot tell a secret password from a plain one. Only a remediation
sees the difference: the pack's ``zlh-secret-inputs`` remediation marks any plain
credential secret before the engine stores it, and the offline preview, which sees
the engine's wire form, fails a stack outright on one (``plain_credentials``).

A credential is found

* under a credential input name (``password``, ``apiToken``, ``privateKey``, ...),
  at any depth (a command's ``connection.password`` and ``connection.privateKey``);
* inside a string that holds JSON: a provider's object inputs reach the engine as JSON
  text (the Proxmox provider's ``ssh`` block, with its ``password`` and ``privateKey``),
  reported at the path inside it (``ssh.password``), and marked secret as a whole;
* in a command's ``environment``: a variable whose name says it is a credential
  (``DB_PASSWORD``, ``CF_DNS_API_TOKEN``, ...) or whose value carries one;
* in a command's ``stdin`` when the text carries one: a private key block, a URL
  with a password in its user info, or a credential-named variable assigned a literal.

A plain script or variable that carries none of these stays plain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Input names whose value is a credential wherever they appear (provider inputs too).
_SECRET_NAMES: frozenset[str] = frozenset(
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
#: Input names whose value may carry a credential inside (looked into, see the module).
_CARRIER_NAMES: frozenset[str] = frozenset({"ssh", "environment", "stdin"})
#: Every input name that makes the pack look at a resource's credentials.
CREDENTIAL_KEYS: frozenset[str] = _SECRET_NAMES | _CARRIER_NAMES

# Words that make a variable's name a credential's: anywhere in the name ...
_STRONG_WORDS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey")
# ... or as one of its words (DB_PASS, MYSQL_PWD, API_KEY, AUTH_KEY).
_WEAK_WORDS = frozenset({"pass", "pwd", "key", "auth"})
_PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# scheme://user:password@ (a password, not a bare user name such as git@).
_URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:[^\s/?#@]+@")
# NAME=value or export NAME=value, the value a literal (not $VAR, $(...) or a path).
_ASSIGNMENT = re.compile(
    r"(?:^|[\s;&|(])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(['\"]?)(?![$/'\"\s;&|)]|$)"
)


def credential_name(name: str) -> bool:
    """Whether a variable called ``name`` holds a credential by its name."""
    lowered = name.lower()
    if any(word in lowered.replace("_", "").replace("-", "") for word in _STRONG_WORDS):
        return True
    return any(word in _WEAK_WORDS for word in re.split(r"[^a-z0-9]+", lowered))


def carries_credential(text: str) -> bool:
    """Whether ``text`` (a script, a variable's value) holds a credential in it."""
    if _PRIVATE_KEY_BLOCK.search(text) or _URL_PASSWORD.search(text):
        return True
    return any(credential_name(match.group(1)) for match in _ASSIGNMENT.finditer(text))


def _json_in(text: str) -> Any:
    """The object or list ``text`` holds as JSON, else None."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, (Mapping, list)) else None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _entry(key: str, item: Any, is_secret: Callable[[Any], bool], where: str) -> list[str]:
    """Paths of plain credentials in the input ``key`` (at ``where``) holding ``item``."""
    if _blank(item) or is_secret(item):
        return []
    if key in _SECRET_NAMES:
        return [where]
    if key == "environment" and isinstance(item, Mapping):
        return [
            f"{where}.{name}"
            for name, value in item.items()
            if not _blank(value)
            and not is_secret(value)
            and (
                credential_name(str(name)) or (isinstance(value, str) and carries_credential(value))
            )
        ]
    if key == "stdin" and isinstance(item, str) and carries_credential(item):
        return [where]
    return plain_credentials(item, is_secret, where)


def plain_credentials(value: Any, is_secret: Callable[[Any], bool], path: str = "") -> list[str]:
    """Paths of credential inputs in ``value`` that hold a plain (non-secret) value."""
    found: list[str] = []
    if is_secret(value):
        return found
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found += _entry(str(key), item, is_secret, where)
    elif isinstance(value, str):
        inner = _json_in(value)
        if inner is not None:
            found += plain_credentials(inner, is_secret, path)
    elif isinstance(value, Sequence):
        for index, item in enumerate(value):
            found += plain_credentials(item, is_secret, f"{path}[{index}]")
    return found


def mark_credentials_secret(
    value: Any, is_secret: Callable[[Any], bool], wrap: Callable[[Any], Any]
) -> tuple[Any, bool]:
    """A copy of ``value`` with every plain credential wrapped, and whether any was.

    A credential inside a string (JSON text, a script) is marked by wrapping the string.
    """
    if is_secret(value):
        return value, False
    if isinstance(value, Mapping):
        changed = False
        copy: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if name == "environment" and isinstance(item, Mapping) and not is_secret(item):
                flagged = {found.partition(".")[2] for found in _entry(name, item, is_secret, name)}
                copy[key] = {k: wrap(v) if str(k) in flagged else v for k, v in item.items()}
                changed = changed or bool(flagged)
            elif (name in _SECRET_NAMES or isinstance(item, str)) and _entry(
                name, item, is_secret, name
            ):
                copy[key], changed = wrap(item), True
            else:
                copy[key], inner = mark_credentials_secret(item, is_secret, wrap)
                changed = changed or inner
        return copy, changed
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = [mark_credentials_secret(item, is_secret, wrap) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    return value, False
