"""The lab overlay: release settings pointed at the lab's stand-ins, nothing else touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zlh_infra.platform.type_tokens import RANDOM_PASSWORD
from zlh_infra.tooling.lab.overlay import (
    LAB_OVERLAY,
    BuiltRelease,
    ReleaseSha256,
    apply_overlay,
    mirror_overlay,
    referenced_releases,
)
from zlh_infra.tooling.lab.releases import build_releases
from zlh_infra.tooling.lab.secrets_store import SecretStore
from zlh_infra.tooling.preview.recorder import PreviewMocks, fake_secret

ROOT = Path(__file__).resolve().parents[3]
AGENT = BuiltRelease("zlh-agent", "0.0.0-lab", "zlh-agent/0.0.0-lab/zlh-agent", "a" * 64)


def test_object_values_merge_key_by_key_in_engine_form() -> None:
    config = {
        "zlh-infra:agent": json.dumps(
            {"version": "1.4.2", "sha256": "b" * 64, "url": "https://x/"}
        ),
        "zlh-infra:other": "kept",
    }
    result = apply_overlay(
        config, LAB_OVERLAY["runtime"], {"zlh-agent": AGENT}, base_url="http://lab:1"
    )
    assert json.loads(result.config["zlh-infra:agent"]) == {
        "version": "0.0.0-lab",
        "sha256": "a" * 64,
        "url": "http://lab:1/zlh-agent/0.0.0-lab/zlh-agent",
    }
    assert result.config["zlh-infra:agent"] == json.dumps(
        json.loads(result.config["zlh-infra:agent"]), separators=(",", ":"), sort_keys=True
    )
    assert result.config["zlh-infra:other"] == "kept" and not result.missing


def test_a_missing_release_leaves_its_settings_alone_and_is_reported() -> None:
    config = {"zlh-infra:releases": json.dumps({"zpackApi": {"url": "https://v/"}})}
    result = apply_overlay(config, LAB_OVERLAY["core"], {})
    assert json.loads(result.config["zlh-infra:releases"]) == {"zpackApi": {"url": "https://v/"}}
    assert result.missing == {"zpack-api", "zpack-portal"}


def test_keys_the_stack_does_not_set_are_skipped() -> None:
    result = apply_overlay({}, {"zlh-infra:agent": {"sha256": ReleaseSha256("zlh-agent")}}, {})
    assert result.config == {} and result.skipped == ["zlh-infra:agent"]


def test_every_release_the_overlay_names_has_a_stand_in(tmp_path: Path) -> None:
    built = build_releases(ROOT, tmp_path)
    assert referenced_releases(LAB_OVERLAY) <= set(built)
    for release in built.values():
        assert (tmp_path / release.path).is_file()
        assert len(release.sha256) == 64


def test_secret_values_answer_random_passwords_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    store = SecretStore(path)
    answer = store.for_stack("core")
    first = answer(RANDOM_PASSWORD, "db", 32)
    assert len(first) == 32 and first.isalnum()
    assert answer(RANDOM_PASSWORD, "db", 32) == first
    assert store.for_stack("runtime")(RANDOM_PASSWORD, "db", 32) != first
    store.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert SecretStore(path).value("core", RANDOM_PASSWORD, "db", 32) == first
    assert len(SecretStore(path).value("core", RANDOM_PASSWORD, "db", 40)) == 40


def test_preview_mocks_use_the_hook_and_default_to_fake_secrets() -> None:
    from pulumi.runtime.mocks import MockResourceArgs

    args = MockResourceArgs(typ=RANDOM_PASSWORD, name="db", inputs={"length": 12}, provider="")
    _, outputs = PreviewMocks(secret_value=lambda t, n, length: "x" * length).new_resource(args)
    assert outputs["result"]["value"] == "x" * 12
    _, outputs = PreviewMocks().new_resource(args)
    assert outputs["result"]["value"] == fake_secret("password:db", 12)


@pytest.mark.parametrize("stack", ["core", "runtime"])
def test_overlay_keys_exist_in_the_shipped_stack_files(stack: str) -> None:
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8")
    for key in LAB_OVERLAY[stack]:
        assert f"{key}:" in text


def test_a_local_mirror_serves_every_download_it_holds_with_the_stack_files_digest() -> None:
    config = {
        "zlh-infra:traefik": json.dumps(
            {
                "version": "3.3.4",
                "url": "https://github.com/x/traefik_v3.3.4.tar.gz",
                "sha256": "a" * 64,
            }
        ),
        "zlh-infra:releases": json.dumps(
            {"api": {"version": "1", "url": "https://r.example/api.tar.gz", "sha256": "b" * 64}}
        ),
        "zlh-infra:stage": "platform",
    }
    mirrored, changed = mirror_overlay(config, ["traefik_v3.3.4.tar.gz"], "http://100.72.1.1:8088")
    assert changed == ["zlh-infra:traefik.url"]
    assert json.loads(mirrored["zlh-infra:traefik"]) == {
        "version": "3.3.4",
        "url": "http://100.72.1.1:8088/mirror/traefik_v3.3.4.tar.gz",
        "sha256": "a" * 64,
    }
    # What the mirror does not hold, and plain values, are left as they are.
    assert mirrored["zlh-infra:releases"] == config["zlh-infra:releases"]
    assert mirrored["zlh-infra:stage"] == "platform"
