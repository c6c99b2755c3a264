"""Proxmox Backup Server's plan: every command, option, role and path against PBS's docs.

References (proxmox/proxmox-backup at 4940514b, "bump version to 3.2.4-1"): the admin
guide's user-management, maintenance and storage chapters and the config file formats,
and, where the guide does not list a job's options, the job configuration types
(``pbs-api-types/src/jobs.rs``) and the ``cert info`` command (``cert.rs``). The users
script runs for real against stand-ins for ``proxmox-backup-manager`` and ``curl``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.scripts import decoded, shellcheck
from zlh_infra.services import pbs
from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script
from zlh_infra.services.vendor import AptRepository

REFERENCE = Path(__file__).parents[1] / "data/reference/pbs"
USERS_DOC = (REFERENCE / "user-management.rst").read_text()
MAINTENANCE_DOC = (REFERENCE / "maintenance.rst").read_text()
STORAGE_DOC = (REFERENCE / "storage.rst").read_text()
ACL_FORMAT = (REFERENCE / "config/acl/format.rst").read_text()
JOBS = (REFERENCE / "pbs-api-types/src/jobs.rs").read_text()
CERT = (REFERENCE / "src/bin/proxmox_backup_manager/cert.rs").read_text()

CORE_PASSWORD = "C0rePbsPassw0rdAbCdEfGhIjKlMnOpQrStUvWx"
RUNTIME_PASSWORD = "RuntimePbsPassw0rdAbCdEfGhIjKlMnOpQrStU"
KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGODfake\n-----END PGP PUBLIC KEY BLOCK-----\n"
REPOSITORY = AptRepository(
    "proxmox-backup",
    "http://download.proxmox.com/debian/pbs",
    "bookworm",
    ("pbs-no-subscription",),
    KEY,
)
USERS = [
    pbs.BackupUser("zlh-core@pbs", "zlh-core", CORE_PASSWORD),
    pbs.BackupUser("zlh-runtime@pbs", "zlh-runtime", RUNTIME_PASSWORD),
]
RETENTION = pbs.Retention(keep_daily=7, keep_weekly=4, keep_monthly=6)


def a_plan() -> ServicePlan:
    return pbs.plan(
        guest="zlh-back", repository=REPOSITORY, store="zlh", users=USERS, retention=RETENTION
    )


def all_commands() -> list[pbs.Command]:
    commands = list(pbs.datastore_commands("zlh", "sat 03:30"))
    for update, create in pbs.job_commands(
        store="zlh",
        retention=RETENTION,
        prune_schedule="daily",
        verify_schedule="sun 05:00",
        verify_outdated_after=30,
    ):
        commands += [update, create]
    return commands + list(pbs.user_commands("zlh").values())


def struct_fields(name: str) -> set[str]:
    """The options a job type takes: its fields (kebab-case), flattened ones included."""
    body = re.search(rf"pub struct {name} \{{\n(.*?)\n\}}", JOBS, re.DOTALL)
    assert body, name
    fields = set()
    for flattened, field, kind in re.findall(
        r"(#\[serde\(flatten\)\]\s*)?pub (\w+): ([\w<>]+),", body[1]
    ):
        if flattened:
            fields |= struct_fields(kind)
        else:
            fields.add(field.replace("_", "-"))
    return fields


# --- the repository -----------------------------------------------------------------------


def test_pbs_comes_from_the_no_subscription_repository_with_the_given_key() -> None:
    plan = a_plan()
    sources = next(f for f in plan.files if f.path.endswith(".sources")).content
    assert "URIs: http://download.proxmox.com/debian/pbs\n" in sources
    assert "Suites: bookworm\nComponents: pbs-no-subscription\n" in sources
    assert "Signed-By: /etc/apt/keyrings/proxmox-backup.asc\n" in sources
    assert "install --no-install-recommends proxmox-backup-server" in plan.converge


# --- commands against the documentation ---------------------------------------------------


def test_datastore_commands_are_the_documented_ones() -> None:
    show, create, update = pbs.datastore_commands("zlh", "sat 03:30")
    assert create.render() == "proxmox-backup-manager datastore create zlh /srv/data/zlh"
    assert "# proxmox-backup-manager datastore create store1 /backup/disk1/store1" in STORAGE_DOC
    assert show.render() == "proxmox-backup-manager datastore show zlh"
    assert "# proxmox-backup-manager datastore show store1" in STORAGE_DOC
    assert (
        update.render() == "proxmox-backup-manager datastore update zlh --gc-schedule 'sat 03:30'"
    )
    assert "# proxmox-backup-manager datastore update store1 --gc-schedule 'Tue 04:27'" in (
        STORAGE_DOC
    )
    assert "datastore update <datastore> --gc-schedule <schedule>" in MAINTENANCE_DOC


def test_job_subcommands_and_options_are_documented() -> None:
    assert "``proxmox-backup-manager prune-job`` command" in MAINTENANCE_DOC
    assert "CLI's ``create`` subcommand" in MAINTENANCE_DOC
    prune_fields = struct_fields("PruneJobConfig")
    verify_fields = struct_fields("VerificationJobConfig")
    assert {"store", "schedule", "keep-daily", "ns", "max-depth"} <= prune_fields
    assert {"store", "schedule", "ignore-verified", "outdated-after"} <= verify_fields
    # update takes the same options as create: both types derive an Updater.
    for name in ("PruneJobConfig", "VerificationJobConfig"):
        assert re.search(
            rf"#\[derive\([^)]*Updater[^)]*\)\]\n#\[serde[^\n]*\n(///[^\n]*\n)?"
            rf"pub struct {name} ",
            JOBS,
        ), name
    for command in all_commands():
        kind = command.args[0]
        if kind not in ("prune-job", "verify-job"):
            continue
        assert command.args[1] in ("create", "update")
        fields = prune_fields if kind == "prune-job" else verify_fields
        for option, _ in command.options:
            assert option in fields, f"{kind} --{option}"
            if option.startswith("keep-"):
                # The guide documents every retention option by name.
                assert f"``{option} <N>``" in MAINTENANCE_DOC


def test_prune_job_settings_are_those_the_guide_lists() -> None:
    for setting in ("``store <datastore>``", "``schedule``", "``ns <namespace>``"):
        assert setting in MAINTENANCE_DOC


def test_a_misspelled_job_option_would_be_caught() -> None:
    assert "keep-dayly" not in struct_fields("PruneJobConfig")
    assert "ignore-verify" not in struct_fields("VerificationJobConfig")


def test_user_and_acl_commands_follow_the_documented_syntax() -> None:
    for command in pbs.user_commands("zlh").values():
        group, sub = command.args[:2]
        assert group in ("user", "acl")
        if (group, sub) == ("acl", "update"):
            # acl update <path> <role> --auth-id <id>
            assert len(command.args) == 4 and [o for o, _ in command.options] == ["auth-id"]
            assert re.search(
                r"proxmox-backup-manager acl update /datastore/\S+ \w+ --auth-id \S+", USERS_DOC
            )
        elif sub in ("create", "update"):
            assert [o for o, _ in command.options] == ["comment"]
            assert f"# proxmox-backup-manager user {sub} john@pbs" in USERS_DOC
            assert "user update john@pbs --comment" in USERS_DOC
        elif sub == "generate-token":
            assert len(command.args) == 4
            assert "# proxmox-backup-manager user generate-token john@pbs client1" in USERS_DOC
        else:
            assert sub == "delete-token" and "``user delete-token`` subcommand" in USERS_DOC


def roles() -> set[str]:
    section = USERS_DOC.split("Access Roles\n~~~~~~~~~~~~", 1)[1].split("Objects and Paths", 1)[0]
    return set(re.findall(r"^\*\*(\w+)\*\*$", section, re.MULTILINE))


def test_every_role_granted_is_a_documented_built_in_role() -> None:
    assert {"DatastoreBackup", "DatastorePowerUser", "Admin"} <= roles()
    for command in pbs.user_commands("zlh").values():
        if command.args[:2] == ("acl", "update"):
            assert command.args[3] in roles(), command.args[3]
    assert pbs.HOST_ROLE in roles()


def test_the_host_role_is_the_least_that_backs_up_and_prunes_owned_groups() -> None:
    assert "**DatastoreBackup**\n  Can backup and restore owned backups." in USERS_DOC
    assert "**DatastorePowerUser**\n  Can backup, restore, and prune *owned* backups." in USERS_DOC
    assert pbs.HOST_ROLE == "DatastorePowerUser"
    assert (
        "Datastore.Prune allows a user to delete snapshots, but additionally requires\n"
        "  backup ownership." in USERS_DOC
    )


def test_grants_are_per_namespace_paths_of_the_documented_form() -> None:
    assert "``/datastore/{store}/{ns}`` Access to a specific namespace" in USERS_DOC
    assert "``/access/users``           User administration" in USERS_DOC
    grant = pbs.user_commands("zlh")["grant"]
    assert grant.args[2] == "/datastore/zlh/$ns"
    assert pbs.acl_path("zlh", "zlh-core") == "/datastore/zlh/zlh-core"


def test_acl_entries_follow_the_acl_cfg_format() -> None:
    # acl:<propagate>:<path>:<users/tokens>:<roles>, as format.rst lists the fields.
    line = re.compile(r"acl:[01]:/[^:\s]*:[^:\s]+:[^:\s]+")
    examples = re.findall(r"^   (acl:\S+)$", ACL_FORMAT, re.MULTILINE)
    assert examples and all(line.fullmatch(e) for e in examples)
    assert pbs.acl_entries("zlh", USERS) == [
        "acl:1:/datastore/zlh/zlh-core:zlh-core@pbs:DatastorePowerUser",
        "acl:1:/datastore/zlh/zlh-runtime:zlh-runtime@pbs:DatastorePowerUser",
    ]
    assert all(line.fullmatch(entry) for entry in pbs.acl_entries("zlh", USERS))
    # The health check looks for exactly those lines.
    for entry in pbs.acl_entries("zlh", USERS):
        assert f"grep -qxF {entry} /etc/proxmox-backup/acl.cfg" in a_plan().health


def test_the_token_secret_is_read_from_the_documented_answer() -> None:
    sample = re.search(r"client1\n(  Result: \{.*?\n  \})", USERS_DOC, re.DOTALL)
    assert sample
    answer = textwrap.dedent(sample[1])
    result = subprocess.run(
        ["sh", "-c", pbs.TOKEN_VALUE], input=answer, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, "d63e505a-e3ec-449a-9bc7-1da610d4ccde\n")
    assert "``PBSAPIToken`` to the value\n``TOKENID:TOKENSECRET``" in USERS_DOC
    assert "printf 'Authorization: PBSAPIToken=root@pam!zlh-converge:%s\\n'" in (
        pbs.users_script("zlh")
    )


# --- the fingerprint ----------------------------------------------------------------------

CERT_INFO = """\
Subject: OU = PVE Cluster Node, O = Proxmox Virtual Environment, CN = zlh-back
    DNS:localhost
    IP:[127, 0, 0, 1]
    DNS:zlh-back
Issuer: OU = PVE Cluster Node, O = Proxmox Virtual Environment, CN = zlh-back
Validity:
    Not Before: Mar  1 10:00:00 2025 GMT
    Not After : Feb 28 10:00:00 2027 GMT
Fingerprint (sha256): 5e:a1:0c:33:9f:48:71:de:2b:6a:80:17:c4:e9:3d:52:06:bf:91:7a:e8:24:c5:3b:\
0d:66:f2:19:8a:47:b3:ce
Public key type: rsaEncryption
Public key bits: 4096
"""


def test_the_sample_follows_cert_info_s_output_lines() -> None:
    # Each line of the sample starts with one of cert info's println! formats.
    printed = [text.split("{")[0] for text in re.findall(r'println!\(\s*"([^"]*)"', CERT)]
    assert "Fingerprint (sha256): " in printed
    for line in CERT_INFO.splitlines():
        assert any(line.startswith(label) for label in printed if label.strip()), line
    assert 'println!("Fingerprint (sha256): {}", cert.fingerprint()?);' in CERT
    assert pbs.fingerprint_command() == "proxmox-backup-manager cert info"
    assert '.insert("info", CliCommand::new(&API_METHOD_CERT_INFO))' in CERT


def test_the_fingerprint_is_read_from_cert_info() -> None:
    assert pbs.fingerprint_from(CERT_INFO) == (
        "5e:a1:0c:33:9f:48:71:de:2b:6a:80:17:c4:e9:3d:52:06:bf:91:7a:e8:24:c5:3b:"
        "0d:66:f2:19:8a:47:b3:ce"
    )
    # The form the stack config's pbs.fingerprint takes.
    assert re.fullmatch(r"([0-9a-f]{2}:){31}[0-9a-f]{2}", pbs.fingerprint_from(CERT_INFO))


@pytest.mark.parametrize(
    "output",
    ["", "Fingerprint (sha256): 5e:a1\n", CERT_INFO + CERT_INFO, CERT_INFO.upper()],
    ids=["empty", "short", "twice", "upper-case"],
)
def test_no_single_fingerprint_is_an_error(output: str) -> None:
    with pytest.raises(ValueError, match="Fingerprint"):
        pbs.fingerprint_from(output)


# --- the plan and its secrets -------------------------------------------------------------


def test_no_password_is_in_clear_in_the_script_and_none_is_an_argument() -> None:
    plan = a_plan()
    script = configure_script([plan])
    assert CORE_PASSWORD not in script and RUNTIME_PASSWORD not in script
    fed = next(line for line in decoded(script).splitlines() if CORE_PASSWORD in line)
    assert fed.startswith("printf '%s' '")
    assert "| base64 -d | /usr/local/sbin/zlh-pbs-users >/dev/null" in script
    # The passwords are written to no file.
    assert all(CORE_PASSWORD not in f.content for f in plan.files)
    assert "--password" not in decoded(script)


def test_jobs_are_updated_or_created_and_the_datastore_made_once() -> None:
    converge = a_plan().converge
    assert (
        "proxmox-backup-manager datastore show zlh >/dev/null 2>&1"
        " || proxmox-backup-manager datastore create zlh /srv/data/zlh >/dev/null" in converge
    )
    assert (
        "proxmox-backup-manager prune-job update zlh-zlh --store zlh --schedule daily"
        " --keep-daily 7 --keep-weekly 4 --keep-monthly 6 2>/dev/null"
        " || proxmox-backup-manager prune-job create zlh-zlh" in converge
    )
    assert (
        "verify-job update zlh-zlh --store zlh --schedule 'sun 05:00' --ignore-verified true"
        in (converge)
    )


@pytest.mark.parametrize(
    "users",
    [
        [pbs.BackupUser("zlh-core@pam", "zlh-core", CORE_PASSWORD)],
        [pbs.BackupUser("zlh-core@pbs", "a/b", CORE_PASSWORD)],
        [USERS[0], pbs.BackupUser("zlh-other@pbs", "zlh-core", RUNTIME_PASSWORD)],
        [pbs.BackupUser("zlh-core@pbs", "zlh-core", "short")],
    ],
    ids=["realm", "namespace", "shared-namespace", "password"],
)
def test_bad_users_are_refused(users: list[pbs.BackupUser]) -> None:
    with pytest.raises(ValueError) as error:
        pbs.plan(
            guest="zlh-back", repository=REPOSITORY, store="zlh", users=users, retention=RETENTION
        )
    assert CORE_PASSWORD not in str(error.value)


def test_the_scripts_pass_shellcheck() -> None:
    plan = a_plan()
    shellcheck(configure_script([plan]))
    shellcheck(install_script([plan], Gateway("10.10.0.1", "zlh-router")))
    shellcheck(pbs.users_script("zlh"))


# --- the users script, run against stand-ins ----------------------------------------------

FAKE = r"""#!/usr/bin/python3
import json, os, sys
state_dir = os.environ["FAKE_STATE"]
name = os.path.basename(sys.argv[0])
with open(os.path.join(state_dir, "argv.log"), "a") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\n")
path = os.path.join(state_dir, "state.json")
state = json.load(open(path)) if os.path.exists(path) else {
    "users": {}, "namespaces": [], "token": None, "acl": []}
args = sys.argv[1:]
def save():
    json.dump(state, open(path, "w"))
if name == "proxmox-backup-manager":
    if args[:2] == ["user", "delete-token"]:
        code = 0 if state["token"] else 1
        state["token"] = None; save(); sys.exit(code)
    if args[:2] == ["user", "generate-token"]:
        state["token"] = "s3cr3t-token"; save()
        print('Result: {\n  "tokenid": "root@pam!%s",\n  "value": "s3cr3t-token"\n}' % args[3])
        sys.exit(0)
    if args[:2] == ["user", "update"]:
        sys.exit(0 if args[2] in state["users"] else 255)
    if args[:2] == ["user", "create"]:
        state["users"][args[2]] = None; save(); sys.exit(0)
    if args[:2] == ["acl", "update"]:
        entry = "acl:1:%s:%s:%s" % (args[2], args[5], args[3])
        if entry not in state["acl"]:
            state["acl"].append(entry)
        save(); sys.exit(0)
    sys.exit(2)
# curl
form, headers, method, url, out = {}, [], "GET", None, None
i = 0
while i < len(args):
    a = args[i]
    if a in ("--cacert",): i += 2; continue
    if a == "-o": out = args[i + 1]; i += 2; continue
    if a == "-H": headers.append(open(args[i + 1][1:]).read()); i += 2; continue
    if a == "-X": method = args[i + 1]; i += 2; continue
    if a == "--data-urlencode":
        item = args[i + 1]
        if item.endswith("@-"):
            form[item[:-2]] = sys.stdin.read()
        else:
            key, _, value = item.partition("="); form[key] = value
        if method == "GET": method = "POST"
        i += 2; continue
    if a.startswith("https://"): url = a
    i += 1
path_ = url.split("/api2/json", 1)[1]
expected = "Authorization: PBSAPIToken=root@pam!zlh-converge:" + str(state["token"])
authorized = any(h.strip() == expected for h in headers)
def answer(data, code=0):
    text = json.dumps({"data": data})
    if out: open(out, "w").write(text)
    else: print(text)
    sys.exit(code)
if path_ == "/access/ticket":
    ok = state["users"].get(form["username"]) == form["password"]
    answer({"ticket": "t"} if ok else None, 0 if ok else 22)
if not authorized:
    answer(None, 22)
if path_.endswith("/namespace"):
    if method == "POST":
        state["namespaces"].append(form["name"]); save(); answer(None)
    answer([{"ns": ""}] + [{"ns": n} for n in state["namespaces"]])
if path_.startswith("/access/users/") and method == "PUT":
    state["users"][path_.rsplit("/", 1)[1]] = form["password"]; save(); answer(None)
answer(None, 22)
"""


def test_the_users_script_sets_everything_once_and_never_puts_a_password_in_argv(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("proxmox-backup-manager", "curl"):
        (bin_dir / name).write_text(FAKE.replace("/usr/bin/python3", sys.executable))
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(tmp_path)}
    lines = "".join(f"{u.userid} {u.namespace} {u.password}\n" for u in USERS)

    def run() -> dict[str, object]:
        result = subprocess.run(
            ["sh", "-c", pbs.users_script("zlh")],
            input=lines,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        state: dict[str, object] = json.loads((tmp_path / "state.json").read_text())
        return state

    first = run()
    assert first["users"] == {"zlh-core@pbs": CORE_PASSWORD, "zlh-runtime@pbs": RUNTIME_PASSWORD}
    assert first["namespaces"] == ["zlh-core", "zlh-runtime"]
    acl = first["acl"]
    assert isinstance(acl, list)
    assert set(pbs.acl_entries("zlh", USERS)) <= set(acl)
    assert first["token"] is None  # deleted on exit
    log_after_first = (tmp_path / "argv.log").read_text()
    second = run()
    assert second["users"] == first["users"] and second["namespaces"] == first["namespaces"]
    log = (tmp_path / "argv.log").read_text()
    # The second run set no password: every ticket check passed.
    puts = [json.loads(line) for line in log.splitlines() if '"PUT"' in line]
    assert len(puts) == 2 and len(log_after_first.splitlines()) < len(log.splitlines())
    assert CORE_PASSWORD not in log and RUNTIME_PASSWORD not in log
    assert "s3cr3t-token" not in log
