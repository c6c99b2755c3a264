"""zlh-build: the toolchains the templates' software is built with, and the right to publish.

``plan`` installs Debian's toolchains on zlh-build (Java 17 JDK for Paper plugins and
Velocity, Node.js and npm for code-server extensions, git and build-essential) and
generates, once, the publishing key: an ed25519 key in ``KEY`` (0600, root), which never
leaves the guest. ``print_public_key`` prints its public half for a program step to read.

``publish_plan`` is zlh-artifacts' side: a dedicated account ``publish`` that may do one
thing, add a file to the store through ``zlh-publish``. Its only key is zlh-build's, in
``authorized_keys`` as ``restrict,command="/usr/local/sbin/zlh-publish-ssh"``: no shell,
no forwarding, no pty. The wrapper ``zlh-publish-ssh`` takes ``SSH_ORIGINAL_COMMAND``'s
four words (``NAME VERSION FILE SHA256``), checks each, refuses to replace a file the
store already holds with other content (a published artifact is immutable: publish a
new version), and runs ``zlh-publish`` through ``sudo``, whose rule allows that one
command and nothing else. The account's home and ``authorized_keys`` are root's, so it
cannot change its own key line. openssh-server listens on the LAN; the firewall admits
port 22 from zlh-build only.

``client_plan`` is zlh-build's side: ``ssh zlh-artifacts ...`` (``/etc/ssh/ssh_config.d``)
with the key, the account and zlh-artifacts' host key pinned (read from it, never
trusted on first use), and ``zlh-publish-remote NAME VERSION PATH``. Its health check
logs in: the wrapper's usage error (exit 2) proves the key, the host key and the forced
command.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from ipaddress import IPv4Address

from zlh_infra.services.artifacts import PUBLISH, STORE
from zlh_infra.services.plan import GuestFile, ServicePlan

#: Debian packages the templates' builds need.
TOOLCHAIN = ("openjdk-17-jdk-headless", "git", "build-essential", "nodejs", "npm")
KEY = "/root/.ssh/zlh-publish"
ACCOUNT = "publish"
#: Root's, so the account can change nothing in it (sshd's StrictModes accepts root).
ACCOUNT_HOME = f"/home/{ACCOUNT}"
AUTHORIZED_KEYS = f"{ACCOUNT_HOME}/.ssh/authorized_keys"
WRAPPER = "/usr/local/sbin/zlh-publish-ssh"
SUDOERS = "/etc/sudoers.d/zlh-publish"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
CLIENT_CONFIG = "/etc/ssh/ssh_config.d/zlh-artifacts.conf"
KNOWN_HOSTS = "/etc/ssh/zlh-artifacts.known_hosts"
REMOTE = "/usr/local/bin/zlh-publish-remote"
#: The name zlh-build reaches the store by (an ssh host alias).
ALIAS = "zlh-artifacts"
#: The wrapper's exit code for a malformed command: what the client's health check expects.
USAGE_EXIT = 2

_ED25519 = re.compile(r"^ssh-ed25519 ([A-Za-z0-9+/]+={0,3})(?: [^\n]*)?$")


def _ed25519(what: str, text: str) -> str:
    """``ssh-ed25519 <base64>`` from one line of ssh-keygen's or sshd's output."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    match = _ED25519.match(lines[0].strip()) if len(lines) == 1 else None
    if match is None:
        raise ValueError(f"{what}: not one 'ssh-ed25519 <base64>' line")
    try:
        blob = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: its key is not base64") from None
    if not blob.startswith(b"\x00\x00\x00\x0bssh-ed25519"):
        raise ValueError(f"{what}: its key is not an ed25519 key")
    return f"ssh-ed25519 {match.group(1)}"


def public_key(stdout: str) -> str:
    """The publishing key's public half, from ``print_public_key``'s output."""
    return _ed25519("zlh-build's publishing key", stdout)


def host_key(stdout: str) -> str:
    """zlh-artifacts' ed25519 host key, from ``print_host_key``'s output."""
    return _ed25519("zlh-artifacts' host key", stdout)


def print_public_key() -> str:
    """Shell printing the publishing key's public half (derived from the private key)."""
    return f"ssh-keygen -y -f {KEY}"


def print_host_key() -> str:
    """Shell printing zlh-artifacts' ed25519 host key."""
    return f"cat {HOST_KEY}"


def plan(*, guest: str) -> ServicePlan:
    """The toolchains, and the publishing key (generated once, 0600, never copied out)."""
    converge = f"""\
if ! [ -s {KEY} ]; then
  rm -f {KEY} {KEY}.pub
  ssh-keygen -q -t ed25519 -N '' -C 'zlh-build publishing' -f {KEY}
  ZLH_CHANGED=1
fi
chmod 0600 {KEY}
"""
    return ServicePlan(
        service="build-toolchains",
        guest=guest,
        packages=(*TOOLCHAIN, "openssh-client", "curl", "ca-certificates"),
        directories=(GuestFile("/root/.ssh", "", mode=0o700),),
        converge=converge,
        health=(
            "javac -version && git --version && cc --version && node --version"
            f" && npm --version && [ \"$(stat -c '%a %U' {KEY})\" = '600 root' ]"
            f" && ssh-keygen -y -f {KEY}"
        ),
        health_timeout=10,
    )


WRAPPER_SCRIPT = f"""\
#!/bin/sh
# zlh-publish-ssh: the forced command of the {ACCOUNT} account (generated by zlh-infra).
# Runs zlh-publish with the 4 words of SSH_ORIGINAL_COMMAND, the content on stdin; no other
# command, and no replacing what the store already holds.
set -eu
usage() {{
  echo "usage: ssh {ACCOUNT}@zlh-artifacts NAME VERSION FILE SHA256 <content" >&2
  exit {USAGE_EXIT}
}}
set -f
# shellcheck disable=SC2086 # split into words on purpose, globbing off
set -- ${{SSH_ORIGINAL_COMMAND:-}}
[ "$#" -eq 4 ] || usage
for part in "$1" "$2" "$3"; do
  case "$part" in
    ''|.*|*/*|*[!A-Za-z0-9._+-]*) usage ;;
  esac
done
case "$4" in
  *[!0-9a-f]*) usage ;;
esac
[ "${{#4}}" -eq 64 ] || usage
target={STORE}/$1/$2/$3
if [ -e "$target" ]; then
  if printf '%s  %s\\n' "$4" "$target" | sha256sum -c --quiet - >/dev/null 2>&1; then
    cat >/dev/null
    echo "zlh-publish-ssh: $1 $2 $3 is already published" >&2
    exit 0
  fi
  echo "zlh-publish-ssh: $1 $2 $3 is published with other content; publish a new version" >&2
  exit 1
fi
exec sudo -n {PUBLISH} "$1" "$2" "$3" "$4"
"""


def _authorized_key(key: str) -> str:
    return f'restrict,command="{WRAPPER}" {public_key(key)} zlh-build\n'


def publish_plan(*, guest: str, public_key: str) -> ServicePlan:
    """zlh-artifacts: the ``publish`` account, reachable with ``public_key`` only."""
    line = _authorized_key(public_key)
    converge = f"""\
if ! id -u {ACCOUNT} >/dev/null 2>&1; then
  useradd --system --home-dir {ACCOUNT_HOME} --no-create-home --shell /bin/sh {ACCOUNT}
fi
# No password that could log in, and not locked either (sshd refuses locked accounts).
usermod -p '*' {ACCOUNT}
if ! visudo -cqf {SUDOERS}; then
  rm -f {SUDOERS}; echo 'zlh: the sudoers rule of {ACCOUNT} does not parse' >&2; exit 1
fi
"""
    return ServicePlan(
        service="artifact-publishing",
        guest=guest,
        packages=("openssh-server", "sudo"),
        directories=(
            GuestFile(ACCOUNT_HOME, "", mode=0o755),
            GuestFile(f"{ACCOUNT_HOME}/.ssh", "", mode=0o755),
        ),
        files=(
            GuestFile(AUTHORIZED_KEYS, line, mode=0o644),
            GuestFile(WRAPPER, WRAPPER_SCRIPT, mode=0o755),
            GuestFile(
                SUDOERS,
                f"# Generated by zlh-infra: {ACCOUNT} may run zlh-publish as root, nothing else.\n"
                f"{ACCOUNT} ALL=(root) NOPASSWD: {PUBLISH}\n",
                mode=0o440,
            ),
        ),
        converge=converge,
        units=("ssh.service",),
        health=(
            f"sshd -t && grep -qxF {shlex.quote(line.rstrip())} {AUTHORIZED_KEYS}"
            f" && sudo -n -l -U {ACCOUNT} {PUBLISH} >/dev/null"
        ),
    )


REMOTE_SCRIPT = f"""\
#!/bin/sh
# zlh-publish-remote NAME VERSION PATH: publish PATH to zlh-artifacts (generated by zlh-infra).
set -eu
[ "$#" -eq 3 ] || {{ echo "usage: zlh-publish-remote NAME VERSION PATH" >&2; exit 2; }}
sha=$(sha256sum "$3" | cut -d' ' -f1)
exec ssh {ALIAS} "$1" "$2" "$(basename "$3")" "$sha" <"$3"
"""


def client_plan(
    *, guest: str, artifacts_address: IPv4Address, artifacts_host_key: str
) -> ServicePlan:
    """zlh-build: ``ssh zlh-artifacts`` with the publishing key and the store's host key."""
    known = f"{ALIAS} {host_key(artifacts_host_key)}\n"
    config = f"""\
# Generated by zlh-infra: `zlh-publish-remote NAME VERSION PATH` publishes to zlh-artifacts.
Host {ALIAS}
    HostName {IPv4Address(artifacts_address)}
    User {ACCOUNT}
    IdentityFile {KEY}
    IdentitiesOnly yes
    HostKeyAlias {ALIAS}
    UserKnownHostsFile {KNOWN_HOSTS}
    StrictHostKeyChecking yes
    BatchMode yes
"""
    return ServicePlan(
        service="artifact-publishing-client",
        guest=guest,
        files=(
            GuestFile(CLIENT_CONFIG, config),
            GuestFile(KNOWN_HOSTS, known),
            GuestFile(REMOTE, REMOTE_SCRIPT, mode=0o755),
        ),
        health=(
            f"zlh_rc=0; ssh -o ConnectTimeout=5 {ALIAS} </dev/null || zlh_rc=$?"
            f'; [ "$zlh_rc" -eq {USAGE_EXIT} ]'
        ),
        health_timeout=30,
    )
