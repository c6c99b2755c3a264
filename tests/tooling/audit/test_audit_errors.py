"""Hosts that cannot be read, and bad usage: one clear message naming the host, exit 2.

Faults come from fakepve itself (wrong token, missing privileges, injected 403s,
dropped and hanging connections, an offline node, a proxy page) or from loopback
(a closed port, a certificate from another CA). In every case the audit prints no
findings: a report missing a host must not pass for a complete one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.tooling.audit.conftest import REPO, Platform, Result
from tests.tooling.audit.fakehosts import TOKEN_ID, TOKEN_SECRET
from zlh_infra import cli


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_failed(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert result.out == ""
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, result.err
    assert result.err.rstrip().endswith(
        "error: the audit is incomplete, so it reports no findings; fix the above and run it again"
    )


def test_unreachable_host(platform: Platform) -> None:
    platform.start()
    port = closed_port()
    result = platform.audit("--host", f"runtime=https://127.0.0.1:{port}/")
    assert_failed(
        result,
        f"error: stack runtime (https://127.0.0.1:{port}/): cannot connect: Connection refused; "
        "check the endpoint, that the host is up and that port 8006 is reachable from here",
    )
    assert "stack core" not in result.err  # the core host was read fine


def test_failure_as_json_is_marked_incomplete(platform: Platform) -> None:
    platform.start()
    port = closed_port()
    result = platform.audit("--host", f"runtime=https://127.0.0.1:{port}/", "--format", "json")
    assert result.code == 2
    document = json.loads(result.out)
    assert document["complete"] is False
    assert document["compliant"] is None
    assert "findings" not in document
    assert [(e["stack"], e["endpoint"]) for e in document["errors"]] == [
        ("runtime", f"https://127.0.0.1:{port}/")
    ]


def test_wrong_token_is_refused(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZLH_RUNTIME_TOKEN", f"{TOKEN_ID}=not-the-secret")
    result = platform.audit("--token-env", "runtime=ZLH_RUNTIME_TOKEN")
    assert_failed(
        result,
        f"API token {TOKEN_ID} was refused (401 authentication failure); check the token",
    )
    assert "not-the-secret" not in result.err
    assert TOKEN_SECRET not in result.err


def test_missing_privileges_are_named(platform: Platform) -> None:
    hosts = platform.start()
    # A token that may see guests, but not the datacenter (firewall, backup jobs), pools,
    # the node's own firewall or (on the runtime host) the ACLs and users.
    for host in hosts.values():
        host.pve.acl = {TOKEN_ID: [("/vms", {"VM.Audit"})]}
    result = platform.audit()
    lacks = (
        f"API token {TOKEN_ID} lacks Sys.Audit on /, Pool.Audit on /pool, Datastore.Audit on "
        "/storage, Sys.Audit on /nodes/{node}, Sys.Audit on /access, Sys.Audit on /access/groups, "
        "so the host's guests, firewall, backup jobs and zpack-api's identity cannot all be "
        "read; grant it the "
        f"read-only role PVEAuditor on /: pveum acl modify / --tokens '{TOKEN_ID}' --roles "
        "PVEAuditor"
    )
    assert_failed(
        result,
        f"stack core (https://127.0.0.1:{hosts['core'].pve.port}/): "
        + lacks.format(node="zlh-core"),
        f"stack runtime (https://127.0.0.1:{hosts['runtime'].pve.port}/): "
        + lacks.format(node="zlh-runtime"),
    )


def test_no_access_below_a_grant_is_named(platform: Platform) -> None:
    hosts = platform.start()
    # PVEAuditor on /, but NoAccess on /access: Proxmox would list no ACL entry and no
    # user, and zpack-api's identity would look like it had none.
    hosts["runtime"].pve.no_access = {"/access"}
    result = platform.audit()
    assert_failed(
        result,
        f"stack runtime (https://127.0.0.1:{hosts['runtime'].pve.port}/): API token "
        f"{TOKEN_ID} lacks Sys.Audit on /access, Sys.Audit on /access/groups, so the host's "
        "guests, firewall, backup jobs and zpack-api's identity cannot all be read",
    )
    assert "stack core" not in result.err
    # Nothing but the privileges was asked of that host.
    asked = {path for _, path, _ in hosts["runtime"].pve.requests}
    assert "/api2/json/access/acl" not in asked


def test_forbidden_request(platform: Platform) -> None:
    hosts = platform.start()
    hosts["core"].pve.fail("GET", "/cluster/backup", 403, "Permission check failed (/, Sys.Audit)")
    result = platform.audit()
    assert_failed(
        result,
        f"error: stack core (https://127.0.0.1:{hosts['core'].pve.port}/): API token "
        f"{TOKEN_ID} may not read /cluster/backup (403 Permission check failed (/, Sys.Audit)); "
        "grant it the read-only role PVEAuditor on /",
    )


def test_tls_certificate_of_another_ca(platform: Platform, other_ca: str) -> None:
    platform.start()
    result = platform.audit("--ca-file", other_ca)
    assert_failed(result, "stack core (https://127.0.0.1:", "TLS verification failed:")
    assert "give the CA that signed the host's certificate with --ca-file" in result.err


def test_tls_certificate_for_another_host_name(platform: Platform) -> None:
    # The certificate names 127.0.0.1 and localhost, not the address this host listens on.
    platform.addresses["runtime"] = "127.0.0.2"
    result = platform.audit()
    assert_failed(
        result,
        "error: stack runtime (https://127.0.0.2:",
        "TLS verification failed: IP address mismatch, certificate is not valid for '127.0.0.2'",
    )


def test_tls_per_stack_ca_file(platform: Platform, other_ca: str) -> None:
    platform.start()
    # The runtime host's CA is the right one; every other host gets the wrong one.
    result = platform.audit("--ca-file", other_ca, "--ca-file", f"runtime={platform.pki.certfile}")
    assert_failed(result, "stack core (https://127.0.0.1:", "TLS verification failed")
    assert "stack runtime" not in result.err


def test_dropped_connections(platform: Platform) -> None:
    hosts = platform.start()
    hosts["runtime"].pve.flaky_network(drop_rate=1.0, seed=1)
    result = platform.audit()
    assert_failed(result, "error: stack runtime (https://127.0.0.1:", "cannot connect")


def test_host_that_does_not_answer(platform: Platform) -> None:
    hosts = platform.start()
    hosts["runtime"].pve.flaky_network(hang_rate=1.0, hang_secs=3, seed=1)
    result = platform.audit("--timeout", "0.5")
    assert_failed(result, "error: stack runtime (https://127.0.0.1:", "no answer in time")


def test_offline_node(platform: Platform) -> None:
    hosts = platform.start()
    hosts["runtime"].pve.set_node_offline("zlh-runtime")
    result = platform.audit()
    assert_failed(result, "node zlh-runtime is offline")


def test_wrong_node_name(platform: Platform) -> None:
    platform.start()
    result = platform.audit("--node", "runtime=zlh-runtime-2")
    assert_failed(
        result,
        "the host has no node 'zlh-runtime-2' (its nodes: zlh-runtime); check the endpoint and "
        "the node in zlh-infra:proxmox (or --host / --node)",
    )


def test_proxy_page_instead_of_the_api(platform: Platform) -> None:
    hosts = platform.start()
    hosts["runtime"].pve.fail(
        "GET", "/cluster/resources", 200, "<html><body>Sign in</body></html>", html=True
    )
    result = platform.audit()
    assert_failed(result, "unexpected answer to GET /cluster/resources")


def test_api_error_on_one_guest_fails_the_whole_host(platform: Platform) -> None:
    hosts = platform.start()
    hosts["runtime"].pve.fail("GET", "/nodes/zlh-runtime/lxc/1001/firewall/rules", 500, "boom")
    result = platform.audit()
    assert_failed(result, "GET /nodes/zlh-runtime/lxc/1001/firewall/rules failed: 500 boom")


def write_stack_file(path: Path, stack: str, **proxmox: object) -> Path:
    document = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    document["config"]["zlh-infra:proxmox"].update(proxmox)
    path.write_text(yaml.safe_dump(document))
    return path


def test_insecure_stack_file_skips_verification_with_a_warning(
    platform: Platform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = platform.start()
    stack_file = write_stack_file(
        tmp_path / "Pulumi.runtime.yaml", "runtime", endpoint=hosts["runtime"].url, insecure=True
    )
    core = hosts["core"]
    argv = ["audit", "--root", str(REPO), "--stack", "core", "--stack", "runtime"]
    argv += ["--host", f"core={core.url}", "--ca-file", f"core={platform.pki.certfile}"]
    argv += ["--stack-file", f"runtime={stack_file}"]
    capsys.readouterr()
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: stack runtime: TLS certificate of {hosts['runtime'].url} is NOT verified "
        "(zlh-infra:proxmox.insecure is true); give its CA with --ca-file instead"
    ) in err
    # A CA file wins over insecure: verified, no warning.
    capsys.readouterr()
    assert cli.main([*argv, "--ca-file", platform.pki.certfile]) == 0
    assert "NOT verified" not in capsys.readouterr().err


def test_insecure_is_never_assumed(platform: Platform) -> None:
    platform.start()
    # No CA file and no insecure in the stack file: the system's trust store, which
    # refuses the fakes' self-signed certificate.
    args = platform.args()
    index = args.index("--ca-file")
    del args[index : index + 2]
    platform.capsys.readouterr()
    code = cli.main(["audit", *args])
    err = platform.capsys.readouterr().err
    assert code == 2
    assert "TLS verification failed: self-signed certificate" in err


def run(capsys: pytest.CaptureFixture[str], *argv: str, root: Path = REPO) -> Result:
    capsys.readouterr()
    code = cli.main(["audit", "--root", str(root), *argv])
    out, err = capsys.readouterr()
    return Result(code, out, err)


def test_no_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROXMOX_VE_API_TOKEN", raising=False)
    result = run(capsys, "--stack", "runtime")
    assert result.code == 2
    assert result.err == (
        "error: stack runtime: no API token in $PROXMOX_VE_API_TOKEN (set PROXMOX_VE_API_TOKEN, "
        "or name another variable with --token-env runtime=VAR)\n"
    )


def test_malformed_token_is_not_echoed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXMOX_VE_API_TOKEN", "s3cr3t-without-an-id")
    result = run(capsys, "--stack", "runtime")
    assert result.code == 2
    assert result.err == (
        "error: $PROXMOX_VE_API_TOKEN (stack runtime) is not an API token of the form "
        "user@realm!tokenid=secret\n"
    )


def test_stack_without_file_or_host(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXMOX_VE_API_TOKEN", f"{TOKEN_ID}={TOKEN_SECRET}")
    result = run(capsys, "--stack", "runtime-2")
    assert result.code == 2
    assert (
        "error: stack runtime-2: no stack file Pulumi.runtime-2.yaml; give --host and --node"
        in (result.err)
    )


def test_no_management_addresses_without_the_core_stack_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROXMOX_VE_API_TOKEN", f"{TOKEN_ID}={TOKEN_SECRET}")
    write_stack_file(tmp_path / "Pulumi.runtime.yaml", "runtime")
    result = run(capsys, "--stack", "runtime", root=tmp_path)
    assert result.code == 2
    assert result.err.splitlines() == [
        "error: no management address of zpack-api: give --api-address, or the core stack file "
        "(zlh-infra:guests.zpack-api.managementAddress)",
        "error: no management address of zlh-monitor: give --monitor-address, or the core stack "
        "file (zlh-infra:guests.zlh-monitor.managementAddress)",
    ]


def test_invalid_stack_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROXMOX_VE_API_TOKEN", f"{TOKEN_ID}={TOKEN_SECRET}")
    stack_file = write_stack_file(tmp_path / "Pulumi.runtime.yaml", "runtime", node="Not A Node")
    result = run(capsys, "--stack", "runtime", "--stack-file", f"runtime={stack_file}")
    assert result.code == 2
    assert "zlh-infra:proxmox.node" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "runtime=http://zlh-runtime:8006/"], "must be an https:// URL"),
        (["--host", "runtime"], "expected STACK=URL"),
        (["--host", "staging=https://x:8006/"], "neither 'core' nor 'runtime'"),
        (["--token-env", "core=not a name"], "is not an environment variable name"),
        (["--api-address", "10.99.0.0/22"], "is not an IPv4 address"),
        (["--timeout", "0"], "give seconds"),
        (["--stack", "prod"], "neither 'core' nor 'runtime'"),
    ],
)
def test_bad_flags(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["audit", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_command_line_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """``python -m zlh_infra audit`` as a scheduler runs it."""
    env = {**os.environ, "PROXMOX_VE_API_TOKEN": f"{TOKEN_ID}={TOKEN_SECRET}"}
    port = closed_port()
    argv = ["audit", "--root", str(REPO), "--stack", "runtime", "--format", "json"]
    argv += ["--host", f"runtime=https://127.0.0.1:{port}/"]
    completed = subprocess.run(
        [sys.executable, "-m", "zlh_infra", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert json.loads(completed.stdout)["complete"] is False
    assert "Traceback" not in completed.stderr
    assert f"stack runtime (https://127.0.0.1:{port}/): cannot connect" in completed.stderr
