"""The real program, previewed offline once per test session from the shipped stack files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from pulumi.runtime import rpc

from tests.scripts import decoded
from tests.stack_configs import ROOT
from zlh_infra.platform.type_tokens import CONTAINER as CONTAINER
from zlh_infra.platform.type_tokens import VM as VM
from zlh_infra.tooling.preview.recorder import PreviewMocks
from zlh_infra.tooling.preview.recording import RecordedResource, StackRecording
from zlh_infra.tooling.preview.runner import run_platform


@pytest.fixture(scope="session")
def platform() -> dict[str, StackRecording]:
    recordings = run_platform(
        {"core": ROOT / "Pulumi.core.yaml", "runtime": ROOT / "Pulumi.runtime.yaml"},
        ["core", "runtime"],
    )
    return {recording.stack: recording for recording in recordings}


@pytest.fixture(scope="session")
def core(platform: dict[str, StackRecording]) -> StackRecording:
    return platform["core"]


@pytest.fixture(scope="session")
def runtime(platform: dict[str, StackRecording]) -> StackRecording:
    return platform["runtime"]


def guests(recording: StackRecording) -> Iterator[RecordedResource]:
    return (r for r in recording.resources if r.type in (CONTAINER, VM))


def by_vmid(recording: StackRecording) -> dict[int, RecordedResource]:
    return {int(r.inputs["vmId"]): r for r in guests(recording)}


def of_type(recording: StackRecording, type_: str) -> list[RecordedResource]:
    return [r for r in recording.resources if r.type == type_]


def resource(recording: StackRecording, urn: str | None) -> RecordedResource:
    return next(r for r in recording.resources if r.urn == urn)


def tag(res: RecordedResource, prefix: str) -> Any:
    return next(
        (t[len(prefix) :] for t in res.inputs.get("tags", []) if t.startswith(prefix)), None
    )


COMMAND = "command:remote:Command"


def commands(recording: StackRecording) -> dict[str, RecordedResource]:
    return {r.name: r for r in of_type(recording, COMMAND)}


def clear(value: Any) -> str:
    text = rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value
    assert isinstance(text, str)
    return text


def script(step: RecordedResource) -> str:
    """What a step runs (or writes), every embedded file decoded."""
    return decoded(clear(step.inputs["stdin"]))


#: What the guests print to the steps that read from them, in a deploy (``deployed``).
PBS_FINGERPRINT = ":".join(f"{n:02x}" for n in range(0x10, 0x30))
PREAUTH_KEY = "3f1d0c9a8b7e6d5c4b3a29180f1e2d3c4b5a69788796a5b4"
BUILD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDiK14tBothHhVFv/yDmF9U0IysymOJRcCcbx+T5Dv/F"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3YLQUmVzEwvcVTKtRth5M4RojEFaf+it4DRikkJ3z1"
ROUTE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF6MQtZBm8azTD+dyCxWG1gL2z1FyH65Tb4cwMyYyvVC"
GUEST_ANSWERS = {
    "proxmox-backup-manager cert info": (
        f"Subject: CN=zlh-back\nIssuer: CN=zlh-back\nFingerprint (sha256): {PBS_FINGERPRINT}\n"
    ),
    "/var/lib/zlh/headscale/dev-preauthkey.json": f"{PREAUTH_KEY}\n",
    "ssh-keygen -y -f /root/.ssh/zlh-publish": f"{BUILD_KEY}\n",
    "ssh-keygen -y -f /etc/zpack-api/route-key": f"{ROUTE_KEY} zpack-api routes\n",
    "cat /etc/ssh/ssh_host_ed25519_key.pub": f"{HOST_KEY} root@zlh-artifacts\n",
}


@pytest.fixture(scope="session")
def deployed() -> dict[str, StackRecording]:
    """Both stacks as ``pulumi up`` runs them: no unknowns, each read step answering."""
    original = PreviewMocks.new_resource

    def new_resource(self: PreviewMocks, args: Any) -> Any:
        resource_id, outputs = original(self, args)
        if args.typ == COMMAND:
            create = str(args.inputs.get("create", ""))
            answers = [out for marker, out in GUEST_ANSWERS.items() if marker in create]
            if answers:
                (outputs["stdout"],) = answers
        return resource_id, outputs

    with mock.patch.object(PreviewMocks, "new_resource", new_resource):
        recordings = run_platform(
            {"core": ROOT / "Pulumi.core.yaml", "runtime": ROOT / "Pulumi.runtime.yaml"},
            ["core", "runtime"],
            preview=False,
        )
    return {recording.stack: recording for recording in recordings}
