"""The policy tests' hand-built stacks are in the shape the real program registers.

A fixture resource whose type, parent chain, input key or nested shape the program never
produces would test the pack against a stack that cannot occur; each is checked against
one offline recording of the shipped stacks.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.policies.policy_fixtures import StackBuilder, core_builder, find, runtime_builder
from tests.stack_configs import ROOT
from zlh_infra.platform import urns
from zlh_infra.policies.resources import Resource
from zlh_infra.tooling.preview.runner import run_platform


@dataclass
class Shape:
    """Every form a value took across the recording: scalar types, mapping keys, items."""

    scalars: set[str] = field(default_factory=set)
    keys: dict[str, Shape] | None = None
    items: Shape | None = None

    def add(self, value: Any) -> None:
        if isinstance(value, Mapping):
            self.keys = {} if self.keys is None else self.keys
            for key, item in value.items():
                self.keys.setdefault(key, Shape()).add(item)
        elif isinstance(value, list):
            self.items = self.items or Shape()
            for item in value:
                self.items.add(item)
        else:
            self.scalars.add(type(value).__name__)

    def strays(self, value: Any, where: str) -> Iterator[str]:
        """What in ``value`` no recorded value has: ``where.path: why``."""
        if isinstance(value, Mapping):
            if self.keys is None:
                yield f"{where}: a mapping, where the program sets {self._forms()}"
                return
            for key, item in value.items():
                if key not in self.keys:
                    yield f"{where}.{key}: a key the program never sets"
                else:
                    yield from self.keys[key].strays(item, f"{where}.{key}")
        elif isinstance(value, list):
            if self.items is None:
                yield f"{where}: a list, where the program sets {self._forms()}"
                return
            for index, item in enumerate(value):
                yield from self.items.strays(item, f"{where}[{index}]")
        elif type(value).__name__ not in self.scalars:
            yield f"{where}: a {type(value).__name__}, where the program sets {self._forms()}"

    def _forms(self) -> str:
        forms = sorted(self.scalars)
        forms += ["a mapping"] * (self.keys is not None) + ["a list"] * (self.items is not None)
        return " or ".join(forms) or "nothing"


@dataclass(frozen=True)
class Registered:
    """What the program registers, by type: parent chains and the shape of the inputs."""

    chains: Mapping[str, set[str]]
    inputs: Mapping[str, Shape]

    def strays(self, resource: Resource) -> Iterator[str]:
        where = f"{resource.name} ({resource.type})"
        if resource.type not in self.chains:
            yield f"{where}: a type the program never registers"
            return
        parsed = urns.parse(resource.urn)
        chain = parsed.qualified_type if parsed else resource.urn
        if chain not in self.chains[resource.type]:
            yield f"{where}: parent chain {chain}, not one of {sorted(self.chains[resource.type])}"
        yield from self.inputs[resource.type].strays(resource.props, where)


@pytest.fixture(scope="module")
def registered() -> Registered:
    with contextlib.redirect_stdout(sys.stderr):
        recordings = run_platform(
            {"core": ROOT / "Pulumi.core.yaml", "runtime": ROOT / "Pulumi.runtime.yaml"},
            ["core", "runtime"],
            project_file=ROOT / "Pulumi.yaml",
        )
    chains: dict[str, set[str]] = {}
    inputs: dict[str, Shape] = {}
    for recording in recordings:
        assert not [d for d in recording.diagnostics if d.severity == "error"], recording.stack
        for resource in recording.resources:
            parsed = urns.parse(resource.urn)
            assert parsed is not None, resource.urn
            chains.setdefault(resource.type, set()).add(parsed.qualified_type)
            inputs.setdefault(resource.type, Shape()).add(resource.inputs)
    return Registered(chains, inputs)


def with_pools(builder: StackBuilder, layers: Iterable[str]) -> StackBuilder:
    for layer in layers:
        builder.pool(layer)
    return builder


BUILDERS: dict[str, Callable[[], StackBuilder]] = {
    "core": lambda: with_pools(core_builder(), ["control-plane"]),
    "runtime": lambda: with_pools(runtime_builder(), ["edge", "runtime"]),
    "runtime-fleet-group": lambda: runtime_builder(fleet_group=True),
}


@pytest.mark.parametrize("build", BUILDERS.values(), ids=BUILDERS.keys())
def test_every_fixture_resource_is_one_the_program_registers(
    registered: Registered, build: Callable[[], StackBuilder]
) -> None:
    builder = build()
    assert [s for r in builder.resources for s in registered.strays(r)] == []


def test_a_property_the_program_never_sets_is_caught(registered: Registered) -> None:
    guest = find(core_builder().resources, "zpack-api")
    network = {**guest.props["networkInterfaces"][0], "vlan": 5.0}
    invented = {**guest.props, "hostname": "x", "networkInterfaces": [network], "tags": ["zlh", 1]}
    wrong = Resource(guest.urn, guest.type, guest.name, invented)
    unknown_type = Resource(guest.urn, "proxmoxve:index/nope:Nope", "nope", {})
    at_root = Resource(urns_at_root(guest), guest.type, guest.name, guest.props)

    where = f"zpack-api ({guest.type})"
    assert sorted(registered.strays(wrong)) == [
        f"{where}.hostname: a key the program never sets",
        f"{where}.networkInterfaces[0].vlan: a key the program never sets",
        f"{where}.tags[1]: a int, where the program sets str",
    ]
    assert list(registered.strays(unknown_type)) == [
        "nope (proxmoxve:index/nope:Nope): a type the program never registers"
    ]
    [chain] = registered.strays(at_root)
    assert chain.startswith(f"{where}: parent chain {guest.type}, not one of ")


def urns_at_root(resource: Resource) -> str:
    parsed = urns.parse(resource.urn)
    assert parsed is not None
    return f"urn:pulumi:{parsed.stack}::{parsed.project}::{resource.type}::{resource.name}"
