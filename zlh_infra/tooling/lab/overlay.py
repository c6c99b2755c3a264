"""The lab's small overlay of stack config: releases served by the lab instead of the vendor's.

The shipped stack files stay as they are; for the lab, a few values are replaced when
the programs run: each platform release's version, URL and SHA-256 point at the
stand-in the lab builds from ``tests/tooling/lab/releases/`` and serves on its WAN. Extend
``LAB_OVERLAY`` as the program grows; a release the lab has no stand-in for leaves its
values alone and marks the checks needing it "not checked".
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from zlh_infra.tooling.lab.paths import release_base_url


@dataclass(frozen=True, slots=True)
class BuiltRelease:
    """A stand-in release the lab built and serves."""

    name: str
    version: str
    #: Its path under the release server's root.
    path: str
    sha256: str


@dataclass(frozen=True, slots=True)
class ReleaseUrl:
    """Stands for the URL the lab serves release ``name`` at."""

    name: str


@dataclass(frozen=True, slots=True)
class ReleaseSha256:
    """Stands for the SHA-256 of release ``name``'s artifact."""

    name: str


@dataclass(frozen=True, slots=True)
class ReleaseVersion:
    """Stands for the version of release ``name``'s stand-in."""

    name: str


ReleaseRef = ReleaseUrl | ReleaseSha256 | ReleaseVersion
OverlayValue = str | int | float | bool | ReleaseRef | Mapping[str, Any]


def release(name: str) -> dict[str, ReleaseRef]:
    """A release config object (``version``, ``url``, ``sha256``) pointing at the lab's."""
    return {"version": ReleaseVersion(name), "url": ReleaseUrl(name), "sha256": ReleaseSha256(name)}


#: Stack -> config key -> value; an object value is merged into the stack's object key
#: by key. Only keys the stack file already sets are touched.
LAB_OVERLAY: dict[str, dict[str, OverlayValue]] = {
    "core": {
        "zlh-infra:releases": {
            "zpackApi": release("zpack-api"),
            "zpackPortal": release("zpack-portal"),
        },
    },
    "runtime": {
        "zlh-infra:agent": release("zlh-agent"),
    },
}


def referenced_releases(overlay: Mapping[str, Mapping[str, OverlayValue]]) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, (ReleaseUrl, ReleaseSha256, ReleaseVersion)):
            found.add(value.name)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)

    walk(overlay)
    return found


@dataclass(slots=True)
class OverlayResult:
    config: dict[str, str]
    #: Release names the overlay wanted that the lab has no stand-in for.
    missing: set[str] = field(default_factory=set)
    #: Config keys the overlay names that the stack does not set (left alone).
    skipped: list[str] = field(default_factory=list)


def _to_json(value: Any) -> str:
    # The engine's form of an object value: sorted keys, no spaces (as stack_files does).
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


class _MissingReleaseError(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _resolve(value: Any, releases: Mapping[str, BuiltRelease], base_url: str) -> Any:
    if isinstance(value, (ReleaseUrl, ReleaseSha256, ReleaseVersion)):
        built = releases.get(value.name)
        if built is None:
            raise _MissingReleaseError(value.name)
        if isinstance(value, ReleaseUrl):
            return f"{base_url}/{built.path}"
        if isinstance(value, ReleaseSha256):
            return built.sha256
        return built.version
    if isinstance(value, Mapping):
        return {key: _resolve(item, releases, base_url) for key, item in value.items()}
    return value


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, item in patch.items():
            merged[key] = _merge(base.get(key), item) if key in base else item
        return merged
    return patch


def apply_overlay(
    config: Mapping[str, str],
    overlay: Mapping[str, OverlayValue],
    releases: Mapping[str, BuiltRelease],
    *,
    base_url: str | None = None,
) -> OverlayResult:
    """``config`` (engine form: objects as JSON) with ``overlay`` merged in.

    An object entry whose releases are all there is merged as a whole; one naming a
    missing release is left out whole (half a release, a new URL with the old digest,
    would only fail later and less clearly).
    """
    url = base_url or release_base_url()
    result = OverlayResult(config=dict(config))
    for key, patch in overlay.items():
        if key not in config:
            result.skipped.append(key)
            continue
        entries = patch.items() if isinstance(patch, Mapping) else [(None, patch)]
        current: Any = json.loads(config[key]) if isinstance(patch, Mapping) else config[key]
        for sub, item in entries:
            try:
                resolved = _resolve(item, releases, url)
            except _MissingReleaseError as missing:
                result.missing.add(missing.name)
                continue
            if sub is None:
                current = resolved
            elif isinstance(current, dict) and (sub in current or not isinstance(item, Mapping)):
                current[sub] = _merge(current.get(sub), resolved)
            else:
                result.skipped.append(f"{key}.{sub}")
        result.config[key] = _to_json(current) if isinstance(current, dict) else str(current)
    return result


#: Where ``lab up --artifacts DIR`` serves the operator's mirror, under the release server.
MIRROR = "mirror"


def mirror_overlay(
    config: Mapping[str, str], mirrored: Collection[str], base_url: str
) -> tuple[dict[str, str], list[str]]:
    """``config`` with every download the mirror holds pointed at the lab's copy of it.

    A download is any config object with a ``url`` and a ``sha256`` (releases, vendor
    artifacts); the mirror holds it when it has a file named as the URL's last path
    segment. The SHA-256 stays the stack file's, so the step still proves the file.
    Returns the new config and the config paths it changed.
    """
    changed: list[str] = []

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            url = value.get("url")
            if isinstance(url, str) and isinstance(value.get("sha256"), str):
                name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
                if name and name in mirrored:
                    changed.append(f"{path}.url")
                    return {**value, "url": f"{base_url}/{MIRROR}/{name}"}
            return {key: walk(item, f"{path}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return value

    result = dict(config)
    for key, text in config.items():
        try:
            value = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            continue
        if isinstance(value, (dict, list)):
            walked = walk(value, key)
            if walked != value:
                result[key] = _to_json(walked)
    return result, changed


#: The core stack's config key holding each runtime host's settings.
RUNTIME_HOSTS_KEY = "zlh-infra:runtimeHosts"


def with_route_host_keys(
    config: Mapping[str, str], keys: Mapping[str, Mapping[str, str]]
) -> tuple[dict[str, str], list[str]]:
    """The core's ``config`` with each runtime stack's exported ``routeHostKeys`` copied
    into ``runtimeHosts.<stack>.routeHostKeys``, as the operator does after the runtime
    stack's first ``pulumi up`` (``docs/fleet.md``). Returns the config and what it set.

    Only runtime hosts the core's config names are touched.
    """
    if RUNTIME_HOSTS_KEY not in config or not keys:
        return dict(config), []
    hosts = json.loads(config[RUNTIME_HOSTS_KEY])
    changed = []
    for stack, found in sorted(keys.items()):
        if isinstance(hosts.get(stack), dict) and found:
            hosts[stack]["routeHostKeys"] = dict(found)
            changed.append(f"{RUNTIME_HOSTS_KEY}.{stack}.routeHostKeys")
    return {**config, RUNTIME_HOSTS_KEY: _to_json(hosts)}, changed
