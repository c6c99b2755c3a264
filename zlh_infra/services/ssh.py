"""OpenSSH pieces the services share: ed25519 keys generated in a guest, and read back."""

from __future__ import annotations

import base64
import binascii
import re
import shlex

#: A guest's ed25519 host key (openssh-server makes it when it is installed).
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"

_ED25519 = re.compile(r"^ssh-ed25519 ([A-Za-z0-9+/]+={0,3})(?: [^\n]*)?$")


def ed25519_key(what: str, text: str) -> str:
    """``ssh-ed25519 <base64>`` from one line of ssh-keygen's or sshd's output.

    The comment is dropped and the blob decoded, so nothing but a key lands in an
    ``authorized_keys`` or ``known_hosts`` line.
    """
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


def print_host_key() -> str:
    """Shell printing the guest's ed25519 host key."""
    return f"cat {HOST_KEY}"


def print_public_key(key: str) -> str:
    """Shell printing the public half of the private key at ``key`` (derived from it)."""
    return f"ssh-keygen -y -f {key}"


def generate_key(key: str, comment: str) -> str:
    """Shell making an ed25519 key at ``key`` once (``ZLH_CHANGED=1`` when it did)."""
    return f"""\
if ! [ -s {key} ]; then
  rm -f {key} {key}.pub
  ssh-keygen -q -t ed25519 -N '' -C {shlex.quote(comment)} -f {key}
  ZLH_CHANGED=1
fi
"""
