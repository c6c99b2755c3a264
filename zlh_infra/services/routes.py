"""Tenant routes: how zpack-api registers the servers it makes with the runtime host's edge.

zpack-api holds one ed25519 key (``api_plan``: generated once in its guest, ``KEY``, 0600,
owned by the service account; only the public half leaves, through the contract). On
zlh-zpack-proxy and zlh-velocity (``edge_plan``) that key logs in as the account
``ACCOUNT``, and only as ``restrict,from="<zpack-api's management address>",
command="zlh-route"``: no shell, no forwarding, no pty, from nowhere else. sshd listens on
the guest's management address only and lets no one else in.

The forced command ``zlh-route`` (``ROUTE_SCRIPT``, Python's standard library only) takes
``SSH_ORIGINAL_COMMAND``:

- ``put NAME IP:PORT``: registers server NAME (a DNS label) at IP:PORT, which must lie in
  the fleet's LAN; a name the stack declares itself is refused;
- ``delete NAME``: removes it (nothing to remove is not an error);
- ``list``: prints ``NAME IP:PORT`` per registered server.

It writes one file per server, atomically, into the directory the proxy reads:

- Traefik (``http``): ``/etc/traefik/dynamic/tenant-NAME.yml``, a router for
  ``NAME.<dev IDE domain>`` to ``http://IP:PORT``; Traefik watches the directory.
- Velocity (``game``): ``/etc/velocity/servers.d/NAME.toml``; a path unit runs
  Velocity's merge (``velocity.MERGE``) and restarts Velocity only when the merged
  ``velocity.toml`` changed.

Both directories are this plan's (``traefik.plan`` and ``velocity.plan`` leave them to it
with ``tenant_routes``), which runs before the proxy's: sticky and writable by the
account's group, so it replaces and deletes only its own files. Pulumi's file beside
them (root's) stays Pulumi's, and no Pulumi run deletes a registered server.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from zlh_infra.services import traefik, velocity
from zlh_infra.services.plan import GuestFile, ServicePlan
from zlh_infra.services.ssh import ed25519_key, generate_key
from zlh_infra.services.ssh import print_public_key as _print_key
from zlh_infra.services.traefik import domain

ACCOUNT = "zlh-route"
#: Root's, so the account can change nothing in it (sshd's StrictModes accepts root).
ACCOUNT_HOME = f"/home/{ACCOUNT}"
AUTHORIZED_KEYS = f"{ACCOUNT_HOME}/.ssh/authorized_keys"
COMMAND = "/usr/local/sbin/zlh-route"
SSHD_CONFIG = "/etc/ssh/sshd_config.d/zlh-route.conf"
#: The forced command's exit code for a malformed command: what health checks expect.
USAGE_EXIT = 2
#: Traefik's file of a registered route: ``tenant-NAME.yml`` (Pulumi's is ``zlh.yml``).
TENANT_PREFIX = "tenant-"

#: zpack-api's side.
KEY = "/etc/zpack-api/route-key"
KNOWN_HOSTS = "/etc/zpack-api/route-known-hosts"
SSH_CONFIG = "/etc/zpack-api/route-ssh-config"
#: The runtime stack's output of each route host's SSH host key, which the operator
#: copies into the core stack's ``runtimeHosts.<stack>.routeHostKeys``.
HOST_KEYS_OUTPUT = "routeHostKeys"

VELOCITY_PATH_UNIT = "zlh-velocity-servers.path"
VELOCITY_MERGE_UNIT = "zlh-velocity-servers.service"


class RouteKind(StrEnum):
    """Which proxy a route host feeds: Traefik's HTTP routes or Velocity's game servers."""

    HTTP = "http"
    GAME = "game"


#: The edge guest that takes each kind of route.
ROUTE_GUESTS: dict[RouteKind, str] = {
    RouteKind.HTTP: "zlh-zpack-proxy",
    RouteKind.GAME: "zlh-velocity",
}
#: Where its proxy reads each kind of route from.
ROUTE_DIRECTORIES: dict[RouteKind, str] = {
    RouteKind.HTTP: traefik.DYNAMIC_DIR,
    RouteKind.GAME: velocity.SERVERS_DIR,
}


def public_key(stdout: str) -> str:
    """zpack-api's route key, from ``print_public_key``'s output."""
    return ed25519_key("zpack-api's route key", stdout)


def host_key(what: str, stdout: str) -> str:
    """An edge guest's ed25519 host key, from ``ssh.print_host_key``'s output."""
    return ed25519_key(f"{what}'s host key", stdout)


def print_public_key() -> str:
    """Shell printing the route key's public half (derived from the private key)."""
    return _print_key(KEY)


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """What ``zlh-route`` on one edge guest accepts and where it writes."""

    kind: RouteKind
    #: Where the proxy reads its files from.
    directory: str
    #: Backends must lie here: the runtime host's LAN, where the fleet is.
    network: IPv4Network
    #: The HTTP routes' host names are ``NAME.<domain>`` (the dev IDE domain).
    domain: str = ""
    #: Names the stack declares itself (refused, so no tenant shadows them).
    reserved: tuple[str, ...] = ()

    def document(self) -> str:
        if self.kind is RouteKind.HTTP:
            domain("tenant route domain", self.domain)
        return json.dumps(
            {
                "kind": str(self.kind),
                "directory": self.directory,
                "network": str(IPv4Network(self.network)),
                "domain": self.domain,
                "entrypoint": "websecure",
                "resolver": traefik.RESOLVER,
                "prefix": TENANT_PREFIX,
                "reserved": sorted(self.reserved),
            },
            sort_keys=True,
        )


ROUTE_SCRIPT = r'''#!/usr/bin/python3
"""zlh-route: zpack-api's forced command on this edge guest (generated by zlh-infra).

From SSH_ORIGINAL_COMMAND: put NAME IP:PORT | delete NAME | list.
"""

import ipaddress
import json
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

SETTINGS = json.loads(__SETTINGS__)
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
PORT = re.compile(r"[1-9][0-9]{0,4}")
USAGE = __USAGE__
DIRECTORY = Path(SETTINGS["directory"])
NETWORK = ipaddress.IPv4Network(SETTINGS["network"])
HTTP = SETTINGS["kind"] == "http"


class Refused(Exception):
    pass


def name_of(text):
    if not NAME.fullmatch(text):
        raise Refused(f"{text!r} is not a server name (a DNS label: a-z, 0-9, '-')")
    if text in SETTINGS["reserved"]:
        raise Refused(f"{text} is a server the stack declares; choose another name")
    return text


def address_of(text):
    host, _, port = text.rpartition(":")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise Refused(f"{text!r} is not IP:PORT") from None
    if not PORT.fullmatch(port) or int(port) > 65535:
        raise Refused(f"{text!r} is not IP:PORT")
    if address not in NETWORK or address in (NETWORK.network_address, NETWORK.broadcast_address):
        raise Refused(f"{address} is not a host of the fleet's network {NETWORK}")
    return f"{address}:{int(port)}"


def path_of(name):
    if HTTP:
        return DIRECTORY / f"{SETTINGS['prefix']}{name}.yml"
    return DIRECTORY / f"{name}.toml"


def content(name, address):
    if not HTTP:
        return f"{json.dumps(name)} = {json.dumps(address)}\n"
    router = f"{SETTINGS['prefix']}{name}"
    host = f"{name}.{SETTINGS['domain']}"
    document = {
        "http": {
            "routers": {
                router: {
                    "rule": f"Host(`{host}`)",
                    "service": router,
                    "entryPoints": [SETTINGS["entrypoint"]],
                    "tls": {"certResolver": SETTINGS["resolver"]},
                }
            },
            "services": {router: {"loadBalancer": {"servers": [{"url": f"http://{address}"}]}}},
        }
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def registered():
    found = {}
    pattern = f"{SETTINGS['prefix']}*.yml" if HTTP else "*.toml"
    for path in sorted(DIRECTORY.glob(pattern)):
        if path.is_symlink() or not path.is_file() or path.stat().st_uid != os.getuid():
            continue
        try:
            if HTTP:
                name = path.name[len(SETTINGS["prefix"]) : -len(".yml")]
                services = json.loads(path.read_text())["http"]["services"]
                url = services[f"{SETTINGS['prefix']}{name}"]["loadBalancer"]["servers"][0]["url"]
                address = url.removeprefix("http://")
            else:
                ((name, address),) = tomllib.loads(path.read_text()).items()
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            print(f"zlh-route: {path.name} does not parse; delete it and put it again",
                  file=sys.stderr)
            continue
        found[name] = address
    return found


def put(name, address):
    target = path_of(name)
    text = content(name, address)
    try:
        if target.read_text() == text:
            return "unchanged"
    except FileNotFoundError:
        pass
    # A dot file without the proxies' suffix: neither reads it half-written.
    fd, scratch = tempfile.mkstemp(dir=DIRECTORY, prefix=".zlh-route-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(scratch, 0o644)
        os.replace(scratch, target)
    except BaseException:
        os.unlink(scratch)
        raise
    return "registered"


def main():
    words = os.environ.get("SSH_ORIGINAL_COMMAND", "").split()
    try:
        if words[:1] == ["put"] and len(words) == 3:
            print(f"{put(name_of(words[1]), address_of(words[2]))} {words[1]}")
        elif words[:1] == ["delete"] and len(words) == 2:
            target = path_of(name_of(words[1]))
            existed = target.exists()
            target.unlink(missing_ok=True)
            print(f"{'deleted' if existed else 'absent'} {words[1]}")
        elif words == ["list"]:
            for name, address in sorted(registered().items()):
                print(f"{name} {address}")
        else:
            raise Refused("usage: put NAME IP:PORT | delete NAME | list")
    except Refused as error:
        print(f"zlh-route: {error}", file=sys.stderr)
        return USAGE
    except PermissionError as error:
        print(f"zlh-route: {error.filename or 'a file'} is not this account's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def route_script(settings: RouteSettings) -> str:
    """``zlh-route`` with ``settings`` baked in (as a JSON string literal)."""
    return ROUTE_SCRIPT.replace("__SETTINGS__", json.dumps(settings.document())).replace(
        "__USAGE__", str(USAGE_EXIT)
    )


def _authorized_key(key: str, api_address: IPv4Address) -> str:
    return (
        f'restrict,from="{IPv4Address(api_address)}",command="{COMMAND}" '
        f"{public_key(key)} zpack-api\n"
    )


def _sshd_config(listen: IPv4Address) -> str:
    return f"""\
# Generated by zlh-infra: zpack-api's route account is the only SSH login here.
ListenAddress {IPv4Address(listen)}
AllowUsers {ACCOUNT}
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
"""


def _velocity_units(games_domain: str) -> tuple[GuestFile, GuestFile]:
    path = f"""\
# Generated by zlh-infra: a server registered in {velocity.SERVERS_DIR} reaches Velocity.
[Unit]
Description=Velocity's registered game servers

[Path]
PathChanged={velocity.SERVERS_DIR}
Unit={VELOCITY_MERGE_UNIT}

[Install]
WantedBy=multi-user.target
"""
    merge = shlex.quote(
        f"zlh_out=$({velocity.merge_command(games_domain)}) || exit 1; "
        f'if [ "$zlh_out" = changed ]; then systemctl try-restart {velocity.UNIT}; fi'
    )
    service = f"""\
# Generated by zlh-infra: Velocity restarts only when its merged configuration changed.
[Unit]
Description=Fold Velocity's registered game servers in

# Until Velocity is installed there is nothing to fold into; it merges when it starts.
ConditionPathExists={velocity.MERGE}

[Service]
Type=oneshot
ExecStart=/bin/sh -c {merge}
"""
    return (
        GuestFile(f"/etc/systemd/system/{VELOCITY_PATH_UNIT}", path),
        GuestFile(f"/etc/systemd/system/{VELOCITY_MERGE_UNIT}", service),
    )


def edge_plan(
    *,
    guest: str,
    settings: RouteSettings,
    listen: IPv4Address,
    api_address: IPv4Address,
    api_key: str,
    games_domain: str = "",
) -> ServicePlan:
    """The route account on ``guest``, reachable with ``api_key`` from ``api_address`` only.

    ``listen``: the guest's management address, the only one sshd listens on.
    """
    line = _authorized_key(api_key, api_address)
    files = [
        GuestFile(AUTHORIZED_KEYS, line, mode=0o644),
        GuestFile(COMMAND, route_script(settings), mode=0o755),
        GuestFile(SSHD_CONFIG, _sshd_config(listen)),
    ]
    units = ["ssh.service"]
    if settings.kind is RouteKind.GAME:
        files += _velocity_units(games_domain)
        units.append(VELOCITY_PATH_UNIT)
    # A system account, then its home, a shell for the forced command, and no password
    # that could log in, nor a locked one (sshd refuses locked accounts).
    converge = f"usermod --home {ACCOUNT_HOME} --shell /bin/sh --password '*' {ACCOUNT}\n"
    return ServicePlan(
        service=f"{settings.kind}-routes",
        guest=guest,
        packages=("openssh-server", "python3"),
        accounts=(ACCOUNT,),
        directories=(
            GuestFile(ACCOUNT_HOME, "", mode=0o755),
            GuestFile(f"{ACCOUNT_HOME}/.ssh", "", mode=0o755),
            GuestFile(settings.directory, "", mode=0o1775, group=ACCOUNT),
        ),
        files=tuple(files),
        converge=converge,
        units=tuple(units),
        health=(
            f"sshd -t && grep -qxF {shlex.quote(line.rstrip())} {AUTHORIZED_KEYS}"
            f" && [ \"$(stat -c '%a %U %G' {settings.directory})\" = '1775 root {ACCOUNT}' ]"
            f" && runuser -u {ACCOUNT} -- env SSH_ORIGINAL_COMMAND=list {COMMAND} >/dev/null"
        ),
        journal_units=("ssh.service",),
    )


@dataclass(frozen=True, slots=True)
class RouteHost:
    """One edge guest zpack-api registers routes with."""

    stack: str
    kind: RouteKind
    address: IPv4Address
    host_key: str

    @property
    def alias(self) -> str:
        return alias(self.stack, self.kind)


def alias(stack: str, kind: RouteKind) -> str:
    """The ssh host alias zpack-api uses for a stack's route host: ``route-<stack>-<kind>``."""
    return f"route-{stack}-{kind}"


def client_command(stack: str, kind: RouteKind, *words: str) -> list[str]:
    """What zpack-api runs, as its account, to ``put``, ``delete`` or ``list`` routes."""
    return ["ssh", "-F", SSH_CONFIG, alias(stack, kind), *words]


def api_environment(hosts: Sequence[RouteHost]) -> dict[str, str]:
    """What zpack-api's environment file says about its route hosts."""
    return {
        "ROUTE_SSH_CONFIG": SSH_CONFIG,
        "ROUTE_HOSTS": json.dumps(
            [{"stack": h.stack, "kind": str(h.kind), "alias": h.alias} for h in hosts],
            sort_keys=True,
        ),
    }


def api_plan(*, guest: str, account: str, hosts: Sequence[RouteHost]) -> ServicePlan:
    """zpack-api's route key (generated once, 0600, the service account's) and ssh client.

    ``ssh -F SSH_CONFIG <alias> put NAME IP:PORT`` registers a route: each host's key is
    pinned (``KNOWN_HOSTS``, from the core stack's config), never trusted on first use.
    """
    known = "".join(
        f"{h.alias} {host_key(f'{h.stack} {ROUTE_GUESTS[h.kind]}', h.host_key)}\n" for h in hosts
    )
    config = [f"# Generated by zlh-infra: zpack-api's route hosts ({COMMAND} on each)."]
    for h in hosts:
        config += [
            f"Host {h.alias}",
            f"    HostName {IPv4Address(h.address)}",
            f"    User {ACCOUNT}",
            f"    IdentityFile {KEY}",
            "    IdentitiesOnly yes",
            f"    HostKeyAlias {h.alias}",
            f"    UserKnownHostsFile {KNOWN_HOSTS}",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    ConnectTimeout 10",
        ]
    converge = generate_key(KEY, "zpack-api routes") + (
        f"chown {account}:{account} {KEY} && chmod 0600 {KEY}\n"
    )
    return ServicePlan(
        service="zpack-api-routes",
        guest=guest,
        packages=("openssh-client",),
        accounts=(account,),
        directories=(GuestFile("/etc/zpack-api", "", mode=0o755),),
        files=(
            GuestFile(KNOWN_HOSTS, known),
            GuestFile(SSH_CONFIG, "\n".join(config) + "\n"),
        ),
        converge=converge,
        health=(
            f"[ \"$(stat -c '%a %U' {KEY})\" = '600 {account}' ]"
            f" && ssh-keygen -y -f {KEY} >/dev/null"
        ),
        health_timeout=10,
    )
