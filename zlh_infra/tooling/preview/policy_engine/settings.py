"""How a policy pack runs: one frozen settings object, and the calls that take it as keywords."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Concatenate, ParamSpec, TypeVar

_P = ParamSpec("_P")
_A = TypeVar("_A")
_B = TypeVar("_B")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="PolicySettings")


@dataclass(frozen=True, kw_only=True)
class PolicySettings:
    """How a pack runs over a stack, whichever stack it is.

    ``run_policy_pack`` and ``PolicySession`` take these as keyword arguments
    (``takes_settings``), so each setting and its default is spelled here alone.
    """

    #: The stack's plain config, keyed ``namespace:key``.
    stack_config: Mapping[str, str] = field(default_factory=dict)
    #: A ``--policy-pack-config`` JSON file; read before the pack starts.
    policy_config_file: Path | None = None
    organization: str = "organization"
    dry_run: bool = True
    #: The pack's interpreter; else its virtualenv's, else this one (``choose_python``).
    python: str | None = None
    #: Seconds for the whole run, the pack's start included.
    timeout: float = 60
    stack_tags: Mapping[str, str] = field(default_factory=dict)
    #: Calls awaiting their answer at most. The pack's gRPC server queues the calls its
    #: Python side has not picked up yet, and refuses some at random (the call ends
    #: CANCELLED) once that backlog is large: a whole stack sent at once trips it.
    max_unanswered: int = 256

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"policy pack timeout must be above 0 seconds, not {self.timeout!r}")
        if self.max_unanswered < 1:
            raise ValueError(
                f"policy pack max_unanswered must be at least 1, not {self.max_unanswered!r}"
            )
        # The pack is driven from another thread: read-only copies keep a caller's later
        # changes out of a run that has started.
        object.__setattr__(self, "stack_config", MappingProxyType(dict(self.stack_config)))
        object.__setattr__(self, "stack_tags", MappingProxyType(dict(self.stack_tags)))

    def keywords(self) -> dict[str, Any]:
        """These settings as the keywords that make them, to hand them on."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(PolicySettings)}


@dataclass(frozen=True, kw_only=True)
class SessionSettings(PolicySettings):
    """The settings of one session, which also names the stack it analyses."""

    stack: str
    project: str

    @property
    def root_urn(self) -> str:
        """The URN of the stack's root ``pulumi:pulumi:Stack`` resource."""
        project, stack = self.project, self.stack
        return f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack::{project}-{stack}"


def takes_settings(
    build: Callable[_P, _S],
) -> Callable[[Callable[[_A, _B, _S], _R]], Callable[Concatenate[_A, _B, _P], _R]]:
    """Let ``call(a, b, settings)`` be called as ``call(a, b, **settings_fields)``.

    The keywords are ``build``'s (a settings class), checked by type checkers and at
    run time alike, so no signature repeats the settings or their defaults.
    """

    def decorate(call: Callable[[_A, _B, _S], _R]) -> Callable[Concatenate[_A, _B, _P], _R]:
        @functools.wraps(call)
        def with_keywords(a: _A, b: _B, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            return call(a, b, build(*args, **kwargs))

        # What help() and inspect show: the call's leading arguments, then the settings.
        called = inspect.signature(call)
        leading = [
            p.replace(kind=inspect.Parameter.POSITIONAL_ONLY)
            for p in list(called.parameters.values())[:-1]
        ]
        signature = called.replace(
            parameters=[*leading, *inspect.signature(build).parameters.values()]
        )
        with_keywords.__signature__ = signature  # type: ignore[attr-defined]
        return with_keywords

    return decorate
