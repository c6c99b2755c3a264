"""What makes a policy run fail."""

from __future__ import annotations


class PolicyEngineError(Exception):
    """Base class of everything that makes a policy run fail."""


class PolicyPackError(PolicyEngineError):
    """The pack did not start, crashed, timed out or a policy raised."""

    def __init__(self, message: str, stderr: str = "") -> None:
        full = f"{message}\n--- policy pack stderr (tail) ---\n{stderr}" if stderr else message
        super().__init__(full)
        self.stderr = stderr


class PackFailedError(Exception):
    """A call failed; becomes PolicyPackError once the pack's stderr is complete."""
