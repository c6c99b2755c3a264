"""The shipped stack configurations as test data, and the malformed variants of them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "zlh-infra"
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def shipped(stack: str) -> dict[str, Any]:
    """``Pulumi.<stack>.yaml``'s config as nested data, keys without the namespace."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {
        key.partition(":")[2] if key.startswith(f"{NAMESPACE}:") else key: value
        for key, value in data.items()
    }


#: The second runtime host of the runbook ("Adding a second runtime host"): its own node,
#: endpoint, host key and fleet block.
RUNTIME_2_HOST_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPWYzSXqR6qg7gJ3eIx7d5nSVyR9ZJ4YbOq1xYqfWq0x"
)


def second_runtime_stack() -> dict[str, Any]:
    """``Pulumi.runtime-2.yaml`` as the runbook makes it from the shipped runtime stack."""
    config = shipped("runtime")
    config["proxmox"] = {
        "endpoint": "https://zlh-runtime-2.zerolaghub.net:8006/",
        "node": "zlh-runtime-2",
        "sshHostKey": RUNTIME_2_HOST_KEY,
        "adminSources": ["192.0.2.0/24"],
    }
    config["network"]["fleetOffset"] = 512
    return config


def core_with_second_runtime_host() -> dict[str, Any]:
    """The shipped core stack with the second runtime host's entries added."""
    config = shipped("core")
    config["runtimeHosts"]["runtime-2"] = {
        "node": "zlh-runtime-2",
        "endpoint": "https://zlh-runtime-2.zerolaghub.net:8006/",
        "pbs": {"user": "zlh-runtime-2@pbs", "namespace": "runtime-2"},
    }
    config["monitoring"]["fleets"]["zlh-runtime-2"] = "10.99.2.0"
    config["monitoring"]["proxmoxNodes"]["zlh-runtime-2"] = "10.99.0.4"
    return config


def _walk(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _TOKEN.findall(path)]


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    parts = _walk(path)
    node: Any = config
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def delete_path(config: dict[str, Any], path: str) -> None:
    parts = _walk(path)
    node: Any = config
    for part in parts[:-1]:
        node = node[part]
    del node[parts[-1]]


def engine_config(config: dict[str, Any]) -> dict[str, str]:
    """The flat ``namespace:key -> string`` map the engine hands a program."""
    flat = {}
    for key, value in config.items():
        full = key if ":" in key else f"{NAMESPACE}:{key}"
        flat[full] = value if isinstance(value, str) else json.dumps(value)
    return flat


def bad_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(
        (ROOT / "tests" / "data" / "bad_configs.yaml").read_text()
    )
    return cases


def apply_case(case: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The case's configuration and its secret keys (full names)."""
    config = copy.deepcopy(shipped(case.get("base", case["stack"])))
    for path, value in (case.get("set") or {}).items():
        set_path(config, path, value)
    for path in case.get("delete") or ():
        delete_path(config, path)
    if "generate_games" in case:
        config["games"] = [
            {"name": f"game-{i}", "vmid": 1000 + i, "template": "minecraft-paper"}
            for i in range(case["generate_games"])
        ]
    return config, {f"{NAMESPACE}:{key}" for key in case.get("secret", ())}
