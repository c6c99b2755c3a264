"""Errors a user can fix: shown as one clear message, never as a traceback."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi


class ConfigError(pulumi.RunError):
    """The stack's configuration (or what it reads from the core stack) is unusable.

    ``pulumi.RunError`` makes the engine print the message without a traceback.
    """

    def __init__(self, problems: Sequence[str], *, stack: str | None = None) -> None:
        self.problems = list(problems)
        where = f"stack {stack!r}: " if stack else ""
        body = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{where}invalid configuration:\n{body}")
