"""Values written into generated files: validated for their syntax, escaped for their target.

Every function raises ``ValueError`` naming what it refused; the config models validate
user input first, so these are the last line, not the first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from ipaddress import IPv4Address

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GENERATED_SECRET = re.compile(r"^[A-Za-z0-9]{16,128}$")
_SQL_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_ENV_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")


def no_control(what: str, value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{what}: control characters (a newline?) are not allowed")
    return value


def generated_secret(what: str, value: str) -> str:
    """A pulumi-random password: letters and digits only, so no target needs escaping."""
    if not _GENERATED_SECRET.match(value):
        # Never echo the value: it is a secret.
        raise ValueError(f"{what}: must be 16 to 128 letters and digits")
    return value


def sql_name(what: str, value: str) -> str:
    """A database or user name: quoted where it is used, but kept plain."""
    if not _SQL_NAME.match(value):
        raise ValueError(f"{what}: {value!r} must be 1 to 64 letters, digits or '_'")
    return value


def sql_string(value: str) -> str:
    """A MariaDB string literal (NO_BACKSLASH_ESCAPES off, the default)."""
    no_control("SQL string", value)
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def systemd_environment(values: Mapping[str, str]) -> str:
    """A systemd ``EnvironmentFile``: one ``KEY="value"`` a line, double-quoted and escaped."""
    lines = []
    for key, value in values.items():
        if not _ENV_KEY.match(key):
            raise ValueError(f"environment key {key!r} must be upper-case letters, digits, '_'")
        no_control(f"environment value of {key}", value)
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def config_string(value: str) -> str:
    """A double-quoted string of redis.conf (and other sds-style config files)."""
    no_control("config string", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_ipv4_port(value: str) -> bool:
    """``10.20.0.6:25565``: an IPv4 address, a colon and a port from 1 to 65535."""
    address, _, port = value.rpartition(":")
    try:
        IPv4Address(address)
    except ValueError:
        return False
    return port.isdigit() and 0 < int(port) < 65536
