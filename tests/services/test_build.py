"""zlh-build's toolchains and publishing key; zlh-artifacts' ``publish`` account and its wrapper.

The wrapper and the key generation run for real with ``sh`` against temporary paths.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tests.scripts import decoded, file_content, shellcheck
from zlh_infra.services import artifacts, build, ssh
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script

BUILD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDiK14tBothHhVFv/yDmF9U0IysymOJRcCcbx+T5Dv/F"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC3YLQUmVzEwvcVTKtRth5M4RojEFaf+it4DRikkJ3z1"
RSA_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"
GATEWAY = Gateway("10.20.0.1", "zlh-zpack-router")


def publish_plan() -> ServicePlan:
    return build.publish_plan(guest="zlh-artifacts", public_key=f"{BUILD_KEY} zlh-build\n")


def client_plan() -> ServicePlan:
    return build.client_plan(
        guest="zlh-build",
        artifacts_address=IPv4Address("10.20.0.10"),
        artifacts_host_key=f"{HOST_KEY} root@zlh-artifacts\n",
    )


# --- the keys as read back from the guests ---------------------------------------------------


def test_keys_are_read_as_one_ed25519_line_without_their_comment() -> None:
    assert build.public_key(f"{BUILD_KEY} zlh-build publishing\n") == BUILD_KEY
    assert build.host_key(f"{HOST_KEY} root@zlh-artifacts") == HOST_KEY


@pytest.mark.parametrize(
    "text",
    [
        "",
        RSA_KEY,
        f"{BUILD_KEY}\n{HOST_KEY}",
        "ssh-ed25519 not*base64",
        "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7",  # an RSA blob under the ed25519 name
        f'command="rm -rf /" {BUILD_KEY}',
    ],
)
def test_anything_but_one_ed25519_key_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="zlh-build's publishing key"):
        build.public_key(text)


def test_the_read_commands_print_the_keys() -> None:
    assert build.print_public_key() == "ssh-keygen -y -f /root/.ssh/zlh-publish"
    assert ssh.print_host_key() == "cat /etc/ssh/ssh_host_ed25519_key.pub"


# --- zlh-build ---------------------------------------------------------------------------


def test_zlh_build_has_the_templates_toolchains() -> None:
    plan = build.plan(guest="zlh-build")
    for package in ("openjdk-17-jdk-headless", "git", "build-essential", "nodejs", "npm"):
        assert package in plan.packages
    assert "openssh-client" in plan.packages
    assert "javac -version" in plan.health and "npm --version" in plan.health


def test_the_publishing_key_is_made_once_and_stays_0600(tmp_path: Path) -> None:
    key = tmp_path / "zlh-publish"
    converge = build.plan(guest="zlh-build").converge.replace(build.KEY, str(key))
    run = ["sh", "-euc", f"ZLH_CHANGED=0\n{converge}echo changed=$ZLH_CHANGED"]
    first = subprocess.run(run, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "changed=1"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    made = key.read_bytes()
    second = subprocess.run(run, capture_output=True, text=True, check=True)
    assert second.stdout.strip() == "changed=0"
    assert key.read_bytes() == made
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True
    )
    assert build.public_key(derived.stdout).startswith("ssh-ed25519 ")


# --- zlh-artifacts' publish account ---------------------------------------------------------


def test_the_publish_account_may_only_run_the_wrapper() -> None:
    plan = publish_plan()
    keys = file_content(plan, build.AUTHORIZED_KEYS)
    assert keys == f'restrict,command="/usr/local/sbin/zlh-publish-ssh" {BUILD_KEY} zlh-build\n'
    owned = {item.path: (item.owner, item.mode) for item in (*plan.files, *plan.directories)}
    # Root's: the account cannot change its own key line.
    assert owned[build.AUTHORIZED_KEYS] == ("root", 0o644)
    assert owned["/home/publish"] == ("root", 0o755)
    assert owned["/home/publish/.ssh"] == ("root", 0o755)
    assert owned[build.SUDOERS] == ("root", 0o440)
    assert file_content(plan, build.SUDOERS).endswith(
        "publish ALL=(root) NOPASSWD: /usr/local/sbin/zlh-publish\n"
    )
    assert plan.packages == ("openssh-server", "sudo")
    assert "visudo -cqf /etc/sudoers.d/zlh-publish" in plan.converge
    assert "--shell /bin/sh publish" in plan.converge and "usermod -p '*' publish" in plan.converge


def test_visudo_accepts_the_rule(tmp_path: Path) -> None:
    visudo = next((p for p in ("/usr/sbin/visudo", "/sbin/visudo") if os.path.exists(p)), None)
    assert visudo, "visudo not found: install the Debian package sudo"
    rule = tmp_path / "zlh-publish"
    rule.write_text(file_content(publish_plan(), build.SUDOERS))
    rule.chmod(0o440)
    subprocess.run([visudo, "-cqf", str(rule)], check=True)


def wrapper(
    tmp_path: Path, command: str | None, content: bytes = b""
) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    """Run the wrapper with a fake ``sudo zlh-publish`` that records what it was given."""
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    called = tmp_path / "called"
    fake = tmp_path / "fake-publish"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >{called}\ncat >>{called}\n')
    fake.chmod(0o755)
    script = build.WRAPPER_SCRIPT.replace(artifacts.STORE, str(store)).replace(
        f"sudo -n {artifacts.PUBLISH}", str(fake)
    )
    env = {"PATH": os.environ["PATH"]}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    result = subprocess.run(
        ["sh", "-c", script], input=content, env=env, capture_output=True, check=False
    )
    return result, called


def test_the_wrapper_passes_four_checked_words_and_the_content_to_zlh_publish(
    tmp_path: Path,
) -> None:
    digest = hashlib.sha256(b"jar").hexdigest()
    result, called = wrapper(tmp_path, f"paper 1.20.4-499 paper.jar {digest}", b"jar")
    assert result.returncode == 0, result.stderr
    assert called.read_text() == f"paper\n1.20.4-499\npaper.jar\n{digest}\njar"


@pytest.mark.parametrize(
    "command",
    [
        None,
        "",
        "sh",
        "paper 1.0 paper.jar",
        f"paper 1.0 paper.jar {'ab' * 32} extra",
        f"../etc 1.0 passwd {'ab' * 32}",
        f"paper 1.0 .hidden {'ab' * 32}",
        "paper 1.0 paper.jar ABCDEF",
        "paper 1.0 * " + "ab" * 32,
        "paper 1.0 $(reboot) " + "ab" * 32,
    ],
)
def test_the_wrapper_refuses_any_other_command(tmp_path: Path, command: str | None) -> None:
    result, called = wrapper(tmp_path, command)
    assert result.returncode == build.USAGE_EXIT
    assert b"usage: ssh publish@zlh-artifacts" in result.stderr
    assert not called.exists()


def test_a_published_artifact_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "store/paper/1.0/paper.jar"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"jar")
    same = hashlib.sha256(b"jar").hexdigest()
    result, called = wrapper(tmp_path, f"paper 1.0 paper.jar {same}", b"jar")
    assert (result.returncode, called.exists()) == (0, False)
    assert b"already published" in result.stderr
    other = hashlib.sha256(b"other").hexdigest()
    result, called = wrapper(tmp_path, f"paper 1.0 paper.jar {other}", b"other")
    assert (result.returncode, called.exists()) == (1, False)
    assert b"publish a new version" in result.stderr
    assert target.read_bytes() == b"jar"


# --- zlh-build's client --------------------------------------------------------------------


def test_zlh_build_reaches_the_store_with_its_key_and_the_pinned_host_key() -> None:
    plan = client_plan()
    config = file_content(plan, build.CLIENT_CONFIG)
    for line in (
        "Host zlh-artifacts\n",
        "    HostName 10.20.0.10\n",
        "    User publish\n",
        "    IdentityFile /root/.ssh/zlh-publish\n",
        "    IdentitiesOnly yes\n",
        "    StrictHostKeyChecking yes\n",
        f"    UserKnownHostsFile {build.KNOWN_HOSTS}\n",
    ):
        assert line in config
    assert file_content(plan, build.KNOWN_HOSTS) == f"zlh-artifacts {HOST_KEY}\n"
    # Logged in, the wrapper's usage error proves the key, the host key and the forced command.
    assert plan.health.endswith('[ "$zlh_rc" -eq 2 ]')


def test_zlh_publish_remote_sends_the_file_with_its_digest(tmp_path: Path) -> None:
    artifact = tmp_path / "paper.jar"
    artifact.write_bytes(b"jar")
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\ncat\n')
    fake_ssh.chmod(0o755)
    result = subprocess.run(
        ["sh", "-c", build.REMOTE_SCRIPT, "zlh-publish-remote", "paper", "1.0", str(artifact)],
        env={"PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=True,
    )
    digest = hashlib.sha256(b"jar").hexdigest()
    assert result.stdout == f"zlh-artifacts\npaper\n1.0\npaper.jar\n{digest}\njar"


@pytest.mark.parametrize("make", [lambda: build.plan(guest="zlh-build"), publish_plan, client_plan])
def test_the_scripts_pass_shellcheck(make: object) -> None:
    plan = make()  # type: ignore[operator]
    shellcheck(configure_script([plan]))
    shellcheck(install_script([plan], GATEWAY))


def test_the_wrappers_pass_shellcheck() -> None:
    shellcheck(build.WRAPPER_SCRIPT)
    shellcheck(build.REMOTE_SCRIPT)
    assert "zlh-publish-ssh" in decoded(configure_script([publish_plan()]))
