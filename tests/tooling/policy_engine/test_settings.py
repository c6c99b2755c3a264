"""The policy run's settings: refused when unusable, fixed once made."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from zlh_infra.tooling.preview.policy_engine import PolicySession, run_policy_pack
from zlh_infra.tooling.preview.policy_engine.settings import PolicySettings
from zlh_infra.tooling.preview.recording import StackRecording

TOY_PACK = Path(__file__).parent / "toy_pack"


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ({"timeout": 0}, "timeout must be above 0 seconds, not 0"),
        ({"timeout": -5.0}, "timeout must be above 0 seconds, not -5.0"),
        ({"timeout": math.nan}, "timeout must be above 0 seconds, not nan"),
        ({"max_unanswered": 0}, "max_unanswered must be at least 1, not 0"),
    ],
)
def test_unusable_settings_are_refused_before_any_pack_starts(
    bad: dict[str, Any], expected: str
) -> None:
    recording = StackRecording(stack="dev", project="toy", resources=[])
    with pytest.raises(ValueError, match=expected):
        run_policy_pack(TOY_PACK, recording, **bad)
    with pytest.raises(ValueError, match=expected):
        PolicySession(TOY_PACK, stack="dev", project="toy", **bad)


def test_settings_keep_a_copy_of_the_mappings_they_are_given() -> None:
    config = {"toy:region": "eu"}
    settings = PolicySettings(stack_config=config)
    config["toy:region"] = "us"
    assert settings.stack_config == {"toy:region": "eu"}
    with pytest.raises(TypeError):
        settings.stack_config["toy:region"] = "us"  # type: ignore[index]
