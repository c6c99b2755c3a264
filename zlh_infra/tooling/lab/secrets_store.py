"""Real random values for the program's generated secrets, made once and kept for reruns.

The offline preview answers RandomPassword / RandomString with deterministic stand-ins;
the lab answers them with values from ``secrets`` kept in a file only root can read,
so a second ``lab up`` sees the same values and reruns nothing. The values are never
printed.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path

from zlh_infra.tooling.preview.recorder import SecretValue

_ALPHABET = string.ascii_letters + string.digits


class SecretStore:
    """``(stack, type, name) -> value``, generated on first use and saved (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, str] = {}
        self._dirty = False
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            self._values = {str(k): str(v) for k, v in data.items()}

    def value(self, stack: str, type_: str, name: str, length: int) -> str:
        key = f"{stack}|{type_}|{name}"
        current = self._values.get(key)
        if current is None or len(current) != length:
            current = "".join(secrets.choice(_ALPHABET) for _ in range(length))
            self._values[key] = current
            self._dirty = True
        return current

    def for_stack(self, stack: str) -> SecretValue:
        def answer(type_: str, name: str, length: int) -> str:
            return self.value(stack, type_, name, length)

        return answer

    def values(self) -> set[str]:
        return set(self._values.values())

    def save(self) -> None:
        if not self._dirty and self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(self._values, handle, indent=1, sort_keys=True)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
        self._dirty = False
