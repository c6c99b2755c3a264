"""The wire sentinels spelled out for SDK-free modules, and masking wire values."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest
from pulumi.runtime import rpc

from zlh_infra.tooling.wire_values import (
    SECRET_MASK,
    SECRET_SIG,
    SIG_KEY,
    UNKNOWN,
    UNKNOWN_MASK,
    is_secret,
    mask_secrets,
)


def test_the_sentinels_are_the_sdks() -> None:
    assert rpc._special_sig_key == SIG_KEY
    assert rpc._special_secret_sig == SECRET_SIG
    assert rpc.UNKNOWN == UNKNOWN


def test_the_lab_reads_recordings_without_loading_the_sdk() -> None:
    code = "import sys, zlh_infra.tooling.lab.pct; print('pulumi' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "value",
    [
        rpc.wrap_rpc_secret("x"),
        rpc.wrap_rpc_secret(None),
        {SIG_KEY: SECRET_SIG},
        {SIG_KEY: SECRET_SIG, "value": {"nested": 1.0}},
    ],
)
def test_a_secret_is_the_sentinel_map(value: Any) -> None:
    assert is_secret(value) and rpc.is_rpc_secret(value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        SECRET_SIG,
        [SIG_KEY, SECRET_SIG],
        {"value": "x"},
        {SIG_KEY: rpc._special_resource_sig, "urn": "urn:x"},
        {SIG_KEY: rpc._special_output_value_sig, "secret": True},
        {"secret": {SIG_KEY: SECRET_SIG, "value": "x"}},
    ],
)
def test_anything_else_is_not_a_secret(value: Any) -> None:
    assert not is_secret(value) and not rpc.is_rpc_secret(value)


def test_masking_reaches_into_maps_and_lists_and_keeps_the_rest() -> None:
    secret = rpc.wrap_rpc_secret({"password": "p"})
    value = {"a": [secret, {"b": secret}], "c": 1.0, "d": None, "e": UNKNOWN}
    original = copy.deepcopy(value)
    assert mask_secrets(value) == {
        "a": [SECRET_MASK, {"b": SECRET_MASK}],
        "c": 1.0,
        "d": None,
        "e": UNKNOWN,
    }
    assert value == original


def test_a_secret_is_masked_whole_even_holding_an_unknown() -> None:
    assert mask_secrets([rpc.wrap_rpc_secret(UNKNOWN)], name_unknowns=True) == [SECRET_MASK]


def test_unknowns_are_named_only_when_asked() -> None:
    value = {"a": UNKNOWN, "b": [UNKNOWN, "known"]}
    assert mask_secrets(value, name_unknowns=True) == {
        "a": UNKNOWN_MASK,
        "b": [UNKNOWN_MASK, "known"],
    }
    assert mask_secrets(value) == value
