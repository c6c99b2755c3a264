"""Credentials inside strings: the provider's JSON-encoded SSH block, a command's
environment and stdin. Each plain one fails the offline preview naming the resource and
the input, and the pack's remediation marks it secret; neither ever shows the value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import Secret

from tests.policies.policy_fixtures import find, props, runtime_builder
from tests.policies.test_policy_protocol import SECRET_SIG, SIG, diags, recording, run
from zlh_infra.policies.resources import PROXMOX_PROVIDER, Resource
from zlh_infra.policies.secrets import mark_credentials_secret, plain_credentials
from zlh_infra.tooling.preview.command import secret_inputs_check

COMMAND = "command:remote:Command"
KEY_BLOCK = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
REMEDY = (
    "is a credential in clear; pass it as a secret (pulumi.Output.secret, a RandomPassword "
    "result, or `pulumi config set --secret`)."
)


def secret(value: Any) -> dict[str, Any]:
    return {SIG: SECRET_SIG, "value": value}


def is_secret(value: object) -> bool:
    return isinstance(value, dict) and value.get(SIG) == SECRET_SIG


def ssh(**fields: Any) -> str:
    """The provider's ssh block as the engine gets it: JSON text."""
    return json.dumps({"agent": False, "username": "root", **fields})


def command(**inputs: Any) -> dict[str, Any]:
    connection = {"host": "10.20.0.12", "user": "root", "privateKey": secret("agent-key")}
    return {"connection": connection, "create": "sh -s", "logging": "stdoutAndStderr", **inputs}


# --- where a credential is found ------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "paths"),
    [
        ({"ssh": ssh(password="ssh-pw-1")}, ["ssh.password"]),
        ({"ssh": ssh(privateKey=KEY_BLOCK)}, ["ssh.privateKey"]),
        ({"ssh": ssh(node=[{"name": "n", "password": "x"}])}, ["ssh.node[0].password"]),
        ({"apiToken": "root@pam!t=1", "password": "pw"}, ["apiToken", "password"]),
    ],
)
def test_provider_credentials_in_clear(inputs: dict[str, Any], paths: list[str]) -> None:
    assert plain_credentials({"endpoint": "https://h:8006/", **inputs}, is_secret) == paths


@pytest.mark.parametrize(
    "inputs",
    [
        {"ssh": ssh()},  # the agent, no credential
        {"ssh": secret(ssh(privateKey=KEY_BLOCK))},  # what Output.secret inside it gives
        {"ssh": ssh(password="")},
        {"apiToken": secret("root@pam!t=1"), "password": None},
        {"ssh": "{not json", "insecure": "false"},
    ],
)
def test_provider_credentials_kept_secret(inputs: dict[str, Any]) -> None:
    assert plain_credentials({"endpoint": "https://h:8006/", **inputs}, is_secret) == []


@pytest.mark.parametrize(
    ("inputs", "paths"),
    [
        ({"environment": {"DB_PASSWORD": "db-pw-1"}}, ["environment.DB_PASSWORD"]),
        (
            {"environment": {"CF_DNS_API_TOKEN": "t", "MYSQL_PWD": "p"}},
            [
                "environment.CF_DNS_API_TOKEN",
                "environment.MYSQL_PWD",
            ],
        ),
        ({"environment": {"MIRROR": "https://ci:mirror-pw@m/"}}, ["environment.MIRROR"]),
        ({"environment": {"DEPLOY": KEY_BLOCK}}, ["environment.DEPLOY"]),
        (
            {"stdin": f"install -m 0600 /dev/stdin /root/.ssh/id <<'EOF'\n{KEY_BLOCK}EOF\n"},
            ["stdin"],
        ),
        ({"stdin": "curl -fsS https://ci:curl-pw@releases/x -o x\n"}, ["stdin"]),
        ({"stdin": "set -eu\nexport REDIS_PASSWORD='redis-pw-1'\nrun\n"}, ["stdin"]),
        ({"stdin": 'echo \'{"password": "in-json"}\' >/dev/null\n'}, []),  # not JSON itself
        ({"stdin": json.dumps({"users": [{"password": "json-pw"}]})}, ["stdin.users[0].password"]),
        ({"connection": {"host": "h", "password": "conn-pw"}}, ["connection.password"]),
        ({"connection": {"host": "h", "privateKey": KEY_BLOCK}}, ["connection.privateKey"]),
    ],
)
def test_command_credentials_in_clear(inputs: dict[str, Any], paths: list[str]) -> None:
    assert plain_credentials(command(**inputs), is_secret) == paths


@pytest.mark.parametrize(
    "inputs",
    [
        {"environment": {"DEBIAN_FRONTEND": "noninteractive", "ZLH_CHANGED": "1"}},
        {"environment": {"DB_PASSWORD": secret("db-pw-1"), "URL": "https://m/a@b"}},
        {"environment": secret({"DB_PASSWORD": "db-pw-1"})},
        {"stdin": "set -eu\nexport DEBIAN_FRONTEND=noninteractive\napt-get install -y x\n"},
        {"stdin": 'DB_PASSWORD="$(cat /run/zlh/db)"\nTOKEN_FILE=/etc/zlh/token\nPASS=\n'},
        {"stdin": "git clone ssh://git@git.zerolaghub.com/zlh.git\n"},
        {"stdin": secret(f"export REDIS_PASSWORD='redis-pw-1'\n{KEY_BLOCK}")},
        {"connection": {"host": "h", "password": secret("p"), "privateKey": secret("k")}},
    ],
)
def test_command_credentials_kept_secret(inputs: dict[str, Any]) -> None:
    assert plain_credentials(command(**inputs), is_secret) == []


def test_marking_wraps_the_string_that_holds_the_credential() -> None:
    marked, changed = mark_credentials_secret(
        {
            "ssh": ssh(password="ssh-pw-1"),
            "environment": {"DB_PASSWORD": "db-pw-1", "DEBIAN_FRONTEND": "noninteractive"},
            "stdin": "export REDIS_PASSWORD='redis-pw-1'\n",
            "create": "sh -s",
        },
        lambda value: isinstance(value, Secret),
        Secret,
    )
    assert changed
    assert isinstance(marked["ssh"], Secret) and json.loads(marked["ssh"].value)["agent"] is False
    assert isinstance(marked["environment"]["DB_PASSWORD"], Secret)
    assert marked["environment"]["DEBIAN_FRONTEND"] == "noninteractive"
    assert isinstance(marked["stdin"], Secret) and marked["create"] == "sh -s"


def test_marking_leaves_credential_free_strings_alone() -> None:
    inputs = command(stdin="set -eu\n", environment={"DEBIAN_FRONTEND": "noninteractive"})
    inputs["ssh"] = ssh()
    marked, changed = mark_credentials_secret(inputs, is_secret, Secret)
    assert (marked, changed) == (inputs, False)


# --- the offline preview fails them; the pack remediates them -------------------------


def leaky_stack() -> tuple[list[Resource], Resource, Resource]:
    builder = runtime_builder()
    resources = builder.resources
    provider = find(resources, "runtime-proxmox", PROXMOX_PROVIDER)
    props(provider)["ssh"] = ssh(password="ssh-pw-1")
    configure = builder.add(
        COMMAND,
        "zlh-velocity-configure",
        command(
            environment={"FORWARDING_SECRET": "fwd-secret-1", "DEBIAN_FRONTEND": "noninteractive"},
            stdin="set -eu\nexport RCON_PASSWORD='rcon-pw-1'\n",
        ),
        parent=builder.root.urn,
    )
    return resources, provider, configure


def test_the_preview_fails_credentials_inside_strings() -> None:
    resources, provider, configure = leaky_stack()
    found = secret_inputs_check(recording("runtime", resources))
    assert [(d.severity, d.enforcement_level, d.urn, d.message) for d in found] == [
        ("error", "mandatory", provider.urn, f"runtime-proxmox: input ssh.password {REMEDY}"),
        (
            "error",
            "mandatory",
            configure.urn,
            f"zlh-velocity-configure: input environment.FORWARDING_SECRET {REMEDY}",
        ),
        ("error", "mandatory", configure.urn, f"zlh-velocity-configure: input stdin {REMEDY}"),
    ]
    shown = str([d.message for d in found])
    assert all(value not in shown for value in ("ssh-pw-1", "fwd-secret-1", "rcon-pw-1"))


def test_the_preview_passes_them_as_secrets() -> None:
    resources, provider, configure = leaky_stack()
    props(provider)["ssh"] = secret(props(provider)["ssh"])
    props(configure)["environment"]["FORWARDING_SECRET"] = secret("fwd-secret-1")
    props(configure)["stdin"] = secret(props(configure)["stdin"])
    assert secret_inputs_check(recording("runtime", resources)) == []


def test_the_pack_remediates_credentials_inside_strings() -> None:
    resources, provider, configure = leaky_stack()
    report = run(recording("runtime", resources))
    remediated = [d for d in diags(report) if d[0] == "zlh-secret-inputs"]
    assert [(d[1], d[3], d[2].split("\n", 1)[1]) for d in remediated] == [
        ("remediate", provider.urn, 'remediation would set ssh="[secret]" (not applied offline)'),
        (
            "remediate",
            configure.urn,
            'remediation would set environment={"DEBIAN_FRONTEND": "noninteractive", '
            '"FORWARDING_SECRET": "[secret]"}, stdin="[secret]" (not applied offline)',
        ),
    ]
    shown = str(diags(report))
    assert all(value not in shown for value in ("ssh-pw-1", "fwd-secret-1", "rcon-pw-1"))


def test_the_pack_leaves_secret_and_credential_free_strings_alone() -> None:
    resources, provider, configure = leaky_stack()
    props(provider)["ssh"] = ssh()
    props(configure)["environment"]["FORWARDING_SECRET"] = secret("fwd-secret-1")
    props(configure)["stdin"] = "set -eu\n"
    report = run(recording("runtime", resources))
    assert [d for d in diags(report) if d[0] == "zlh-secret-inputs"] == []
