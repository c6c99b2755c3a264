"""Typed stack configuration: one model per stack, validated once before any resource.

Every key lives in the ``zlh-infra`` namespace of the stack's Pulumi config. A bad
value raises ``ConfigError`` listing each problem as ``zlh-infra:<key path>: <rule>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from ipaddress import IPv4Address, IPv4Network
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from zlh_infra.contract import ContractError, CoreContract
from zlh_infra.errors import ConfigError
from zlh_infra.platform.addressing import (
    DEFAULT_FLEET_OFFSET,
    AddressPlanError,
    block_address,
    fleet_address,
    usable,
)
from zlh_infra.platform.catalogue import (
    CONTROL_PLANE_SERVICES,
    EDGE_SERVICES,
    HOST_BLOCK_SIZE,
    RUNTIME_SERVICES,
    Network,
    ServiceSpec,
)
from zlh_infra.platform.topology import StackRole, UnknownStackError, stack_role
from zlh_infra.platform.vmids import (
    DEFAULT_SCHEME,
    VmidRole,
    fleet_owner_problem,
    fleet_split,
)
from zlh_infra.services.paper import heap_mb as paper_heap_mb
from zlh_infra.services.routes import ROUTE_GUESTS
from zlh_infra.services.ssh import ed25519_key
from zlh_infra.services.values import is_ipv4_port

NAMESPACE = "zlh-infra"

# Proxmox bridge names are ``vmbr<N>``; Linux caps interface names at 15 bytes and
# Proxmox's own check is stricter, so keep them short and canonical.
_BRIDGE = re.compile(r"^vmbr\d{1,4}$")
# A guest name becomes its hostname: one DNS label.
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _bridge(value: str) -> str:
    if not _BRIDGE.match(value):
        raise ValueError(
            f"bridge name {value!r} must be 'vmbr' followed by 1 to 4 digits (at most 8 characters)"
        )
    return value


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid guest name: lower-case letters, digits and '-', "
            "1 to 63 characters, not starting or ending with '-'"
        )
    return value


_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _domain(value: str) -> str:
    """A DNS name (lower case): it lands in Traefik rules, environment files and zones."""
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{value!r} is not a domain name: dot-separated labels of lower-case letters, "
            "digits and '-' (at least two labels, at most 253 characters)"
        )
    return value


#: The problem of a URL with user info: never the URL itself, which would show the credential.
USER_INFO_IN_URL = (
    "user info in the URL is refused: remove the part before '@' "
    "(a credential never goes in a URL in config)"
)


def _has_user_info(value: str) -> bool:
    """Whether ``value``'s authority (after ``scheme://``, before the path) holds user info.

    Looked for in the text itself, scheme or not, so that no malformed URL slips past.
    """
    rest = value.split("://", 1)[1] if "://" in value else value
    return "@" in re.split(r"[/?#]", rest, maxsplit=1)[0]


def _no_user_info(value: Any) -> Any:
    if isinstance(value, str) and _has_user_info(value):
        raise ValueError(USER_INFO_IN_URL)
    return value


#: On a URL-valued field: user info is refused before any other rule (a pattern, a
#: validator quoting the value) looks at the URL.
NoUserInfo = BeforeValidator(_no_user_info)


def _non_empty_secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("secret must not be empty")
    return value


def _ssh_host_key(value: str) -> str:
    """An OpenSSH public key line (``<type> <base64> [comment]``), kept without its comment."""
    words = value.split()
    try:
        if len(words) < 2:
            raise ValueError
        serialization.load_ssh_public_key(f"{words[0]} {words[1]}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            "not an OpenSSH public key: '<type> <base64>' as in the node's "
            "/etc/ssh/ssh_host_ed25519_key.pub"
        ) from None
    return f"{words[0]} {words[1]}"


def _ed25519_host_key(value: str) -> str:
    try:
        return ed25519_key("host key", value)
    except ValueError:
        raise ValueError(
            "not an ed25519 host key: 'ssh-ed25519 <base64>' as the guest's "
            "/etc/ssh/ssh_host_ed25519_key.pub"
        ) from None


BridgeName = Annotated[str, AfterValidator(_bridge)]
Ed25519HostKey = Annotated[str, AfterValidator(_ed25519_host_key)]


def _route_guest(value: str) -> str:
    if value not in ROUTE_GUESTS.values():
        raise ValueError(
            f"not a guest zpack-api registers routes with ({', '.join(ROUTE_GUESTS.values())})"
        )
    return value


#: The edge guests zpack-api registers routes with.
RouteGuest = Annotated[str, AfterValidator(_route_guest)]
DomainName = Annotated[str, AfterValidator(_domain)]
SshHostKey = Annotated[str, AfterValidator(_ssh_host_key)]
GuestName = Annotated[str, AfterValidator(_hostname)]
Secret = Annotated[SecretStr, AfterValidator(_non_empty_secret)]
Vmid = Annotated[StrictInt, Field(ge=100, le=999_999_999)]
#: Upper bounds on a guest's size: 4 TiB of memory and 64 TiB per disk, beyond any one
#: Proxmox host of this platform, so that a slip of the keyboard cannot pass as a size.
MAX_MEMORY_MB = 4 * 1024 * 1024
MAX_DISK_GB = 64 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


def _https_url(value: str) -> str:
    _no_user_info(value)
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r} must be an https:// URL with a host name")
    return value


class ProxmoxHost(_Model):
    """How the stack reaches its Proxmox VE node's API (and its shell, for in-guest steps)."""

    endpoint: str = Field(description="HTTPS URL of the node's API, e.g. https://zlh-core:8006/")
    node: GuestName = Field(description="Proxmox node name")
    insecure: StrictBool = Field(
        default=False, description="skip TLS verification (only for a self-signed lab host)"
    )
    ssh_user: str = Field(
        default="root", min_length=1, description="SSH user on the node for in-guest steps"
    )
    ssh_address: str | None = Field(
        default=None, description="address for SSH to the node; defaults to the endpoint's host"
    )
    ssh_host_key: SshHostKey = Field(
        description=(
            "the node's SSH host key (its /etc/ssh/ssh_host_ed25519_key.pub, read on the node "
            "itself): in-guest steps connect to no other"
        )
    )
    admin_sources: list[IPv4Network] = Field(
        min_length=1,
        max_length=64,
        description=(
            "the networks operators and the deploy runner reach the node's API (8006) and SSH "
            "from: the host firewall drops everything else, so include the address `pulumi up` "
            "runs from; never a network guests are on"
        ),
    )

    @field_validator("endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        return _https_url(value)

    @property
    def endpoint_host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""

    @property
    def shell_address(self) -> str:
        return self.ssh_address or self.endpoint_host


class Segment(_Model):
    """A bridged network on the host."""

    bridge: BridgeName = Field(description="existing Linux bridge on the node, vmbr<N>")
    cidr: IPv4Network = Field(description="the network, e.g. 10.20.0.0/22")
    gateway: IPv4Address | None = Field(
        default=None, description="LAN only: the router's address on it"
    )


class NetworkPlan(_Model):
    lan: Segment = Field(description="the host's LAN behind its OPNsense router")
    management: Segment = Field(
        description="the management network shared by both hosts (the API -> agent path)"
    )
    dns_domain: DomainName = Field(default="zlh.internal", description="guests' search domain")
    fleet_offset: StrictInt = Field(
        default=DEFAULT_FLEET_OFFSET, ge=1, description="first fleet host number on each network"
    )


class Storage(_Model):
    datastore: str = Field(default="local-lvm", min_length=1, description="guest disks")
    image_store: str = Field(
        default="local", min_length=1, description="holds LXC templates and ISO images"
    )


class Download(_Model):
    """A file the node downloads itself (LXC template or ISO), pinned by checksum."""

    url: Annotated[str, NoUserInfo] = Field(pattern=r"^https://", description="HTTPS download URL")
    checksum: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{32,128}$", description="hex digest; pin it for production"
    )
    checksum_algorithm: Literal["md5", "sha1", "sha224", "sha256", "sha384", "sha512"] = Field(
        default="sha256", description="algorithm of checksum"
    )
    file_name: str | None = Field(default=None, description="file name on the node's storage")
    decompression_algorithm: Literal["gz", "lzo", "zst", "bz2"] | None = Field(
        default=None, description="for compressed images (the OPNsense ISO is bz2)"
    )


class Size(_Model):
    cores: StrictInt = Field(default=1, ge=1, le=128, description="CPU cores")
    memory_mb: StrictInt = Field(
        default=1024, ge=128, le=MAX_MEMORY_MB, description="memory in MiB"
    )
    disk_gb: StrictInt = Field(default=8, ge=1, le=MAX_DISK_GB, description="root disk in GiB")


class ServiceGuest(Size):
    """One of the platform's named services."""

    vmid: Vmid = Field(description="Proxmox VMID, in the service's role range")
    lan_address: IPv4Address | None = Field(
        default=None, description="static LAN address; a router's is the LAN gateway"
    )
    management_address: IPv4Address | None = Field(
        default=None, description="address on the management network, for services with a NIC there"
    )
    data_disk_gb: StrictInt | None = Field(
        default=None, ge=1, le=MAX_DISK_GB, description="extra volume for data"
    )


class Backup(_Model):
    schedule: str = Field(
        default="*-*-* 02:30",
        pattern=r"^[A-Za-z0-9*:/,.~ -]{1,64}$",
        description="systemd calendar event, e.g. *-*-* 02:30",
    )
    keep_daily: StrictInt = Field(default=7, ge=1, description="daily backups kept")
    keep_weekly: StrictInt = Field(default=4, ge=0, description="weekly backups kept")
    keep_monthly: StrictInt = Field(default=3, ge=0, description="monthly backups kept")


class CoreDomains(_Model):
    """Host names zlh-proxy (core Traefik) routes."""

    portal: DomainName = Field(description="host name of the portal")
    api: DomainName = Field(description="host name of zpack-api")
    grafana: DomainName = Field(description="host name of Grafana")
    headscale: DomainName = Field(
        description="host name of Headscale; dev containers join it over HTTPS"
    )


_CALENDAR_EVENT = re.compile(r"^[A-Za-z0-9*:/,.~ -]{1,64}$")


def _calendar_event(value: str) -> str:
    """A Proxmox calendar event (systemd-like): ``daily``, ``sat 03:30``, ``*-*-* 02:30``."""
    if not _CALENDAR_EVENT.match(value) or not value.strip() or value != value.strip():
        raise ValueError(
            f"{value!r} is not a calendar event (e.g. daily, sat 03:30, *-*-* 02:30): "
            "letters, digits, spaces and * : / , . ~ -, at most 64 characters"
        )
    return value


CalendarEvent = Annotated[str, AfterValidator(_calendar_event)]
PbsUserId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}@pbs$")]
PbsNamespace = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")]


class PbsRetention(_Model):
    """What the datastore's own prune job keeps (each host's backup job prunes too)."""

    keep_last: StrictInt | None = Field(default=None, ge=0, description="most recent backups kept")
    keep_daily: StrictInt = Field(default=7, ge=0, description="daily backups kept")
    keep_weekly: StrictInt = Field(default=4, ge=0, description="weekly backups kept")
    keep_monthly: StrictInt = Field(default=3, ge=0, description="monthly backups kept")
    keep_yearly: StrictInt | None = Field(default=None, ge=0, description="yearly backups kept")


class PbsHostUser(_Model):
    """The PBS user one Proxmox host backs up as, and the namespace that is its own."""

    user: PbsUserId = Field(description="PBS user, <name>@pbs (password generated)")
    namespace: PbsNamespace = Field(
        description="namespace of the datastore the host writes to; the user may touch no other"
    )


class Pbs(_Model):
    datastore: str = Field(
        default="zlh",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{2,31}$",
        description="PBS datastore that holds both hosts' backups",
    )
    fingerprint: str | None = Field(
        default=None,
        pattern=r"^([0-9a-f]{2}:){31}[0-9a-f]{2}$",
        description=(
            "optional pin of the PBS certificate's SHA-256 fingerprint (aa:bb:...): the program "
            "reads the fingerprint from zlh-back on every deploy, and fails if it differs from this"
        ),
    )
    version: str | None = Field(
        default=None,
        pattern=r"^[0-9][A-Za-z0-9.+~:-]{0,63}$",
        description="pin proxmox-backup-server to this Debian version; unset, the repository's",
    )
    core_user: PbsHostUser = Field(
        default=PbsHostUser(user="zlh-core@pbs", namespace="core"),
        description="the core host's PBS user and namespace",
    )
    retention: PbsRetention = Field(
        default=PbsRetention(), description="what the datastore's prune job keeps"
    )
    gc_schedule: CalendarEvent = Field(
        default="sat 03:30", description="garbage collection of the datastore (calendar event)"
    )
    prune_schedule: CalendarEvent = Field(
        default="daily", description="the datastore's prune job (calendar event)"
    )
    verify_schedule: CalendarEvent = Field(
        default="sun 05:00", description="the datastore's verify job (calendar event)"
    )
    verify_outdated_after: StrictInt = Field(
        default=30,
        ge=1,
        le=3650,
        description="re-verify snapshots verified more than this many days ago",
    )

    def problems(self) -> list[str]:
        found = []
        retention = self.retention
        counts = [
            retention.keep_last,
            retention.keep_daily,
            retention.keep_weekly,
            retention.keep_monthly,
            retention.keep_yearly,
        ]
        if not any(counts):
            found.append("pbs.retention: keeps nothing; set at least one count above 0")
        return found


_SHA256 = r"^[0-9a-f]{64}$"
_VERSION = r"^[0-9][0-9A-Za-z.+~-]{0,63}$"


def _download_url(value: str) -> str:
    _no_user_info(value)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} must be an http:// or https:// URL with a host name")
    if any(ord(char) < 33 or ord(char) == 127 for char in value):
        raise ValueError("a download URL must not contain spaces or control characters")
    return value


DownloadUrl = Annotated[str, AfterValidator(_download_url)]


class Release(_Model):
    """A release the program fetches into a guest, verified by SHA-256 before use.

    Point ``url`` at your own mirror to deploy without reaching the vendor.
    """

    version: str = Field(pattern=_VERSION, description="release version")
    url: DownloadUrl = Field(description="where the release's .tar.gz is fetched from")
    sha256: str = Field(pattern=_SHA256, description="SHA-256 of that file")


class Releases(_Model):
    """The platform's own releases, run by Debian's Node.js."""

    zpack_api: Release = Field(description="zpack-api (a .tar.gz with server.js at its top)")
    zpack_portal: Release = Field(description="zpack-portal (a Next.js standalone .tar.gz)")


_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class VendorArtifact(Release):
    """Software only its vendor ships (a binary, jar, tarball or .deb), pinned by SHA-256.

    Core guests fetch it from ``url``; runtime guests from zlh-artifacts, which mirrors
    it from ``url`` (so a runtime host keeps working while the core host is down).
    """

    url: DownloadUrl = Field(description="the vendor's download URL (or your mirror's)")
    file: str | None = Field(
        default=None,
        pattern=_FILE_NAME.pattern,
        description=(
            "file name in zlh-artifacts and in the guest; unset, the URL's last path segment"
        ),
    )

    @property
    def file_name(self) -> str:
        return self.file or urlsplit(self.url).path.rsplit("/", 1)[-1]

    def problems(self, key: str, suffix: str | None = None) -> list[str]:
        name = self.file_name
        if self.file is None and not _FILE_NAME.match(name):
            return [f"{key}.url: its last path segment {name!r} is no file name; set {key}.file"]
        if suffix is not None and not name.endswith(suffix):
            where = "file" if self.file is not None else "url"
            return [f"{key}.{where}: {name!r} must be a {suffix} file"]
        return []


_KEY_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_KEY_END = "-----END PGP PUBLIC KEY BLOCK-----"
_ARMOR_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9-]*: .*$")
_BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_ARMOR_CRC = re.compile(r"^=[A-Za-z0-9+/]{4}$")


def _armored_public_key(value: str) -> str:
    """An ASCII-armored OpenPGP public key block (``gpg --armor --export``)."""
    problem = (
        "not an ASCII-armored PGP public key block: the vendor's signing key as "
        f"`gpg --armor --export` prints it, from {_KEY_BEGIN} to {_KEY_END}"
    )
    lines = [line.rstrip() for line in value.strip().splitlines()]
    if len(lines) < 4 or lines[0] != _KEY_BEGIN or lines[-1] != _KEY_END:
        raise ValueError(problem)
    inner = lines[1:-1]
    while inner and _ARMOR_HEADER.match(inner[0]):
        inner = inner[1:]
    if not inner or inner[0] != "":
        raise ValueError(f"{problem} (a blank line must follow the armor headers)")
    body = inner[1:]
    if body and _ARMOR_CRC.match(body[-1]):
        body = body[:-1]
    if not body or not all(_BASE64_LINE.match(line) for line in body):
        raise ValueError(f"{problem} (its body is not base64)")
    try:
        packets = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{problem} (its body is not base64)") from None
    # The first packet is a public key (tag 6), old or new packet format.
    first = packets[0] if packets else 0
    tag = (first & 0x3F) if first & 0x40 else (first & 0x3C) >> 2
    if not first & 0x80 or tag != 6:
        raise ValueError(f"{problem} (it does not start with a public key packet)")
    return value.strip() + "\n"


ArmoredPublicKey = Annotated[str, AfterValidator(_armored_public_key)]
_APT_URI = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$")
AptWord = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")]


def _apt_uri(value: str) -> str:
    _no_user_info(value)
    if not _APT_URI.match(value):
        raise ValueError(
            f"{value!r} is not an APT repository URI: http(s)://host[:port][/path], "
            "no credentials, query or spaces"
        )
    return value


class AptRepository(_Model):
    """A vendor's APT repository, trusted through the signing key given here (never fetched)."""

    uri: Annotated[str, AfterValidator(_apt_uri)] = Field(description="the repository's URI")
    suite: AptWord = Field(description="suite (distribution), e.g. stable or bookworm")
    components: list[AptWord] = Field(min_length=1, description="components, e.g. [main]")
    key: ArmoredPublicKey = Field(
        description=(
            "the vendor's signing key, ASCII-armored (a multi-line string: "
            "-----BEGIN PGP PUBLIC KEY BLOCK----- ...); check its fingerprint with the vendor"
        )
    )


class AptRepositories(_Model):
    grafana: AptRepository = Field(description="Grafana's repository (apt.grafana.com)")
    proxmox_backup: AptRepository = Field(
        description="Proxmox's pbs-no-subscription repository, for Proxmox Backup Server"
    )


class CoreVendor(_Model):
    """Vendor software of the core stack, fetched by its guests from each URL."""

    traefik: VendorArtifact = Field(description="Traefik v3 release tarball, for zlh-proxy")
    headscale: VendorArtifact = Field(description="Headscale .deb (linux amd64), for zlh-ctl")
    technitium: VendorArtifact = Field(
        description="Technitium DNS Server portable tarball (DnsServerPortable.tar.gz), for zlh-dns"
    )
    dotnet: VendorArtifact = Field(
        description=(
            "ASP.NET Core runtime tarball (linux x64) of the major version Technitium requires"
        )
    )

    def problems(self) -> list[str]:
        return [
            *self.traefik.problems("vendor.traefik"),
            *self.headscale.problems("vendor.headscale", ".deb"),
            *self.technitium.problems("vendor.technitium"),
            *self.dotnet.problems("vendor.dotnet"),
        ]


class RuntimeVendor(_Model):
    """Vendor software of a runtime stack: zlh-artifacts mirrors it, the guests fetch it there."""

    traefik: VendorArtifact = Field(description="Traefik v3 release tarball, for zlh-zpack-proxy")
    velocity: VendorArtifact = Field(description="Velocity proxy jar, for zlh-velocity")
    paper: VendorArtifact = Field(description="Paper server jar, for every game container")
    code_server: VendorArtifact = Field(
        description="code-server .deb (amd64), for every dev container"
    )
    tailscale: VendorArtifact = Field(
        description="Tailscale .deb (amd64), the dev VPN client in every dev container"
    )
    java: VendorArtifact | None = Field(
        default=None,
        description=(
            "a JRE tarball (Temurin 21, say) for Paper 1.20.5 and later; unset, Debian's OpenJDK 17"
        ),
    )

    def problems(self) -> list[str]:
        return [
            *self.traefik.problems("vendor.traefik"),
            *self.velocity.problems("vendor.velocity", ".jar"),
            *self.paper.problems("vendor.paper", ".jar"),
            *self.code_server.problems("vendor.codeServer", ".deb"),
            *self.tailscale.problems("vendor.tailscale", ".deb"),
            *(self.java.problems("vendor.java") if self.java else []),
        ]

    def artifacts(self) -> dict[str, VendorArtifact]:
        """By artifact name (its directory in zlh-artifacts)."""
        found = {
            "traefik": self.traefik,
            "velocity": self.velocity,
            "paper": self.paper,
            "code-server": self.code_server,
            "tailscale": self.tailscale,
        }
        if self.java is not None:
            found["java"] = self.java
        return found


_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_LEGO_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _resolver(value: str) -> str:
    if not is_ipv4_port(value):
        raise ValueError(f"{value!r} is not ipv4:port")
    return value


def _acme_domain(value: str) -> str:
    _domain(value[2:] if value.startswith("*.") else value)
    return value


EnvName = Annotated[str, Field(pattern=_ENV_NAME.pattern)]


class Acme(_Model):
    """How the stack's Traefik gets its certificates from Let's Encrypt."""

    email: Annotated[str, AfterValidator(_email)] = Field(
        description="ACME account email (expiry notices)"
    )
    challenge: Literal["http", "dns"] = Field(
        default="http",
        description=(
            "http: HTTP-01 on port 80 (the router forwards 80 and 443); dns: DNS-01 through "
            "dnsProvider, with the secret acmeDnsCredentials (needed for wildcard domains)"
        ),
    )
    dns_provider: str | None = Field(
        default=None,
        pattern=_LEGO_PROVIDER.pattern,
        description="the lego DNS provider of the dns challenge (cloudflare, ovh, ...)",
    )
    dns_resolvers: list[Annotated[str, AfterValidator(_resolver)]] = Field(
        default=["1.1.1.1:53", "9.9.9.9:53"],
        min_length=1,
        description="resolvers (ipv4:port) that check the dns challenge's propagation",
    )
    domains: list[Annotated[str, AfterValidator(_acme_domain)]] = Field(
        default=[],
        description=(
            "certificates requested up front (the first is the main name, the rest its SANs; "
            "a *. wildcard needs the dns challenge); unset, one per routed host"
        ),
    )
    ca_server: DownloadUrl | None = Field(
        default=None,
        description="another ACME directory (Let's Encrypt staging, say); unset, production",
    )

    @field_validator("ca_server")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme != "https":
            raise ValueError(f"{value!r} must be an https:// ACME directory URL")
        return value


class Headscale(_Model):
    base_domain: DomainName = Field(
        description=(
            "MagicDNS domain of the dev VPN (<node>.<baseDomain>); must not contain "
            "domains.headscale"
        )
    )
    key_expiration: str = Field(
        default="8760h",
        pattern=r"^[1-9][0-9]{0,5}(h|d|w|y)$",
        description=(
            "lifetime of the dev containers' reusable pre-auth key, e.g. 8760h; it is renewed "
            "when the Headscale step runs within 30 days of its expiry"
        ),
    )


class Dns(_Model):
    """Technitium DNS on zlh-dns: the core zone (network.dnsDomain) and what it forwards."""

    forwarders: list[IPv4Address] = Field(
        default=[],
        description="upstream resolvers (IPv4); unset, Technitium resolves recursively itself",
    )


class Paper(_Model):
    """Paper in every game container (the game template carries its Java).

    Each game container's heap follows its ``memoryMb``: all but 512 MiB.
    """

    accept_eula: StrictBool = Field(
        description=(
            "must be true: deploying Paper accepts the Minecraft EULA "
            "(https://aka.ms/MinecraftEULA) on the operator's behalf"
        )
    )
    motd: str = Field(
        default="A ZeroLagHub server",
        min_length=1,
        max_length=120,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="server list message (no control characters)",
    )

    @field_validator("accept_eula")
    @classmethod
    def _accepted(cls, value: bool) -> bool:
        if value is not True:
            raise ValueError(
                "must be true: Paper runs only once the operator accepts the Minecraft EULA "
                "(https://aka.ms/MinecraftEULA)"
            )
        return value


class Database(_Model):
    name: str = Field(
        default="zpack", pattern=r"^[A-Za-z0-9_]{1,64}$", description="zpack-api's database"
    )
    user: str = Field(
        default="zpack_api",
        pattern=r"^[A-Za-z0-9_]{1,32}$",
        description="zpack-api's database user (password generated)",
    )


class Monitoring(_Model):
    retention: str = Field(
        default="30d",
        pattern=r"^[1-9][0-9]{0,4}[dwy]$",
        description="how long Prometheus keeps metrics, e.g. 30d",
    )
    proxmox_nodes: dict[GuestName, IPv4Address] = Field(
        default={},
        description=(
            "every Proxmox node, by name, with its management address: zlh-monitor scrapes "
            "its node exporter (port 9100) there, and zlh-back accepts backups (port 8007) "
            "from these addresses only"
        ),
    )
    fleets: dict[GuestName, IPv4Address] = Field(
        default={},
        description=(
            "per runtime node, the management address of its first fleet VMID (1000): the "
            "runtime stack's fleetOffset-th address of the management network (the runtime "
            "stack refuses any other). zlh-monitor finds that host's containers there, declared "
            "or made by zpack-api; blocks of two hosts must not overlap"
        ),
    )
    grafana_version: str | None = Field(
        default=None,
        pattern=r"^[0-9][A-Za-z0-9.+~:-]{0,63}$",
        description="pin Grafana to this Debian version of its repository; unset, the latest",
    )


Stage = Literal["routers", "platform"]


class _StackConfig(_Model):
    proxmox: ProxmoxHost = Field(description="the stack's Proxmox node")
    stage: Stage = Field(
        default="platform",
        description=(
            "bootstrap stage: 'routers' creates the host's router alone, to be installed "
            "before any guest needs a package mirror; 'platform' builds and installs everything"
        ),
    )
    proxmox_api_token: Secret | None = Field(
        default=None, description="API token; else PROXMOX_VE_API_TOKEN in the environment"
    )
    ssh_private_key: Secret | None = Field(
        default=None, description="key for SSH to the node; else the SSH agent"
    )
    network: NetworkPlan = Field(description="the host's LAN and the management network")
    storage: Storage = Field(default=Storage(), description="Proxmox storages to use")
    os_template: Download = Field(description="LXC OS template every container starts from")
    router_iso: Download = Field(description="OPNsense installer the router VM boots")
    guests: dict[str, ServiceGuest] = Field(
        description="the stack's platform services by name (see the catalogue in docs)"
    )
    backup: Backup = Field(default=Backup(), description="schedule and retention of backups")
    acme: Acme = Field(description="Let's Encrypt for the stack's Traefik")
    acme_dns_credentials: dict[EnvName, Secret] | None = Field(
        default=None,
        description=(
            "the dns challenge's provider credentials, as lego's environment variables "
            "(`pulumi config set --secret --path 'acmeDnsCredentials.CF_DNS_API_TOKEN' ...`)"
        ),
    )

    #: Services this kind of stack runs (checked against ``guests``).
    SERVICES: ClassVar[tuple[Mapping[str, ServiceSpec], ...]] = ()

    def service_specs(self) -> dict[str, ServiceSpec]:
        specs: dict[str, ServiceSpec] = {}
        for group in self.SERVICES:
            specs.update(group)
        return specs

    def _admin_source_problems(self) -> list[str]:
        found = []
        guests = {"network.lan": self.network.lan.cidr}
        guests["network.management"] = self.network.management.cidr
        for index, source in enumerate(self.proxmox.admin_sources):
            key = f"proxmox.adminSources[{index}]"
            if source.prefixlen < 8:
                found.append(f"{key}: {source} is a /{source.prefixlen}; name /8 or longer")
            for name, network in guests.items():
                if source.overlaps(network):
                    found.append(
                        f"{key}: {source} overlaps {name} ({network}), where guests (tenants "
                        "included) would reach the node's API and SSH; name the operators' "
                        "own networks"
                    )
        return found

    def all_vmids(self) -> Iterator[tuple[str, int]]:
        """(config key path, VMID) for every guest the stack declares."""
        for name, guest in self.guests.items():
            yield f"guests.{name}.vmid", guest.vmid

    def all_addresses(self) -> Iterator[tuple[str, Network, IPv4Address]]:
        for name, guest in self.guests.items():
            if guest.lan_address is not None:
                yield f"guests.{name}.lanAddress", Network.LAN, guest.lan_address
            if guest.management_address is not None:
                yield (
                    f"guests.{name}.managementAddress",
                    Network.MANAGEMENT,
                    guest.management_address,
                )

    def problems(self) -> list[str]:
        """Rules across fields; each problem starts with the config key it concerns."""
        found: list[str] = self._admin_source_problems()
        specs = self.service_specs()
        for name in specs.keys() - self.guests.keys():
            found.append(f"guests.{name}: missing; this stack runs {specs[name].description}")
        for name in self.guests.keys() - specs.keys():
            found.append(f"guests.{name}: unknown service; known: {', '.join(sorted(specs))}")
        for name, guest in self.guests.items():
            spec = specs.get(name)
            if spec is None:
                continue
            found += _role_problem(f"guests.{name}.vmid", guest.vmid, spec.role)
            if Network.LAN in spec.networks and guest.lan_address is None and spec.kind != "vm":
                found.append(f"guests.{name}.lanAddress: required, {name} has a LAN NIC")
            if spec.management_index is not None:
                if guest.management_address is not None:
                    found.append(
                        f"guests.{name}.managementAddress: derived (host number "
                        f"network.fleetOffset + {spec.management_index} of "
                        "network.management, where zlh-monitor looks for it); remove it"
                    )
            elif Network.MANAGEMENT in spec.networks and guest.management_address is None:
                found.append(
                    f"guests.{name}.managementAddress: required, {name} has a management NIC"
                )
            if Network.MANAGEMENT not in spec.networks and guest.management_address is not None:
                found.append(
                    f"guests.{name}.managementAddress: {name} has no management NIC; remove it"
                )
        found += self._network_problems()
        found += self._acme_problems()
        found += _duplicates("VMID", self.all_vmids())
        found += _duplicates(
            "address",
            ((key, (network, address)) for key, network, address in self.all_addresses()),
            show=lambda value: str(value[1]),
        )
        segments = {Network.LAN: self.network.lan, Network.MANAGEMENT: self.network.management}
        for key, network, address in self.all_addresses():
            why = usable(segments[network].cidr, address)
            if why:
                found.append(f"{key}: {why} (network.{network})")
        return found

    def _acme_problems(self) -> list[str]:
        found = []
        acme = self.acme
        if acme.challenge == "dns":
            if acme.dns_provider is None:
                found.append("acme.dnsProvider: required with the dns challenge")
            if not self.acme_dns_credentials:
                found.append(
                    "acmeDnsCredentials: required with the dns challenge: the provider's "
                    "credentials, as lego's environment variables"
                )
        else:
            if acme.dns_provider is not None:
                found.append("acme.dnsProvider: only the dns challenge uses a provider; remove it")
            if self.acme_dns_credentials is not None:
                found.append(
                    "acmeDnsCredentials: only the dns challenge uses credentials; remove them"
                )
            for index, name in enumerate(acme.domains):
                if name.startswith("*."):
                    found.append(
                        f"acme.domains[{index}]: the wildcard {name} needs the dns challenge"
                    )
        return found

    def _network_problems(self) -> list[str]:
        found = []
        lan, management = self.network.lan, self.network.management
        if lan.gateway is None:
            found.append("network.lan.gateway: required, the router's LAN address")
        else:
            why = usable(lan.cidr, lan.gateway)
            if why:
                found.append(f"network.lan.gateway: {why}")
        if management.gateway is not None:
            found.append(
                "network.management.gateway: the management network is not routed; remove it"
            )
        if lan.bridge == management.bridge:
            found.append(f"network.management.bridge: {lan.bridge} is the LAN bridge too")
        if lan.cidr.overlaps(management.cidr):
            found.append(f"network.management.cidr: {management.cidr} overlaps the LAN {lan.cidr}")
        return found


def _pem_certificate(value: str) -> str:
    try:
        x509.load_pem_x509_certificate(value.encode("utf-8"))
    except ValueError:
        raise ValueError(
            "must be one PEM certificate (-----BEGIN CERTIFICATE----- ...), e.g. the node's "
            "/etc/pve/pve-root-ca.pem"
        ) from None
    return value


class RuntimeHost(_Model):
    """One runtime stack as the core stack knows it: its node, its API, its backups."""

    node: GuestName = Field(
        description=(
            "the runtime stack's Proxmox node: the only node that stack may deploy to (it "
            "refuses any other), so two stacks never manage one host's VMIDs and addresses"
        )
    )
    endpoint: Annotated[str, AfterValidator(_https_url)] = Field(
        description=(
            "HTTPS URL of the node's API, as zpack-api reaches it to make servers (the runtime "
            "stack refuses another endpoint)"
        )
    )
    ca_certificate: Annotated[str, AfterValidator(_pem_certificate)] | None = Field(
        default=None,
        description=(
            "PEM of the CA that signed the node's API certificate (its "
            "/etc/pve/pve-root-ca.pem), which zpack-api trusts; unset, the system's CAs"
        ),
    )
    pbs: PbsHostUser = Field(description="the PBS user and namespace the host backs up as")
    route_host_keys: dict[RouteGuest, Ed25519HostKey] = Field(
        default_factory=dict,
        description=(
            "the ed25519 host keys of the host's zlh-zpack-proxy and zlh-velocity, as its "
            "stack exports them (`routeHostKeys`), which zpack-api pins to register the "
            "servers it makes there; unset, zpack-api registers no routes on this host yet"
        ),
    )

    @property
    def endpoint_host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""


class CoreStackConfig(_StackConfig):
    """``Pulumi.core.yaml``: the control plane on the core host."""

    SERVICES: ClassVar[tuple[Mapping[str, ServiceSpec], ...]] = (CONTROL_PLANE_SERVICES,)
    domains: CoreDomains = Field(description="host names zlh-proxy routes")
    pbs: Pbs = Field(default=Pbs(), description="Proxmox Backup Server on zlh-back")
    releases: Releases = Field(description="zpack-api and zpack-portal releases")
    database: Database = Field(default=Database(), description="zpack-api's MariaDB database")
    monitoring: Monitoring = Field(
        default=Monitoring(), description="Prometheus and Grafana on zlh-monitor"
    )
    vendor: CoreVendor = Field(description="vendor software of the core guests, pinned")
    apt_repositories: AptRepositories = Field(
        description="vendor APT repositories (Grafana, Proxmox Backup Server) and their keys"
    )
    headscale: Headscale = Field(description="Headscale, the dev VPN's control server, on zlh-ctl")
    dns: Dns = Field(default=Dns(), description="Technitium DNS on zlh-dns")
    runtime_hosts: dict[str, RuntimeHost] = Field(
        default={},
        description=(
            "per runtime stack (its name: runtime, runtime-<x>), its node, API endpoint and PBS "
            "user; a runtime stack without an entry refuses to deploy"
        ),
    )

    def problems(self) -> list[str]:
        found = super().problems() + self._runtime_host_problems()
        router = self.guests.get("zlh-router")
        if router is not None and router.lan_address not in (None, self.network.lan.gateway):
            found.append("guests.zlh-router.lanAddress: must equal network.lan.gateway")
        found += self.vendor.problems() + self.pbs.problems()
        server, base = self.domains.headscale, self.headscale.base_domain
        if base == server or server.endswith(f".{base}"):
            found.append(
                f"headscale.baseDomain: {base} contains domains.headscale ({server}); MagicDNS "
                "would shadow the control server's name"
            )
        return found + self._monitoring_problems()

    def _runtime_host_problems(self) -> list[str]:
        found = []
        for stack, host in self.runtime_hosts.items():
            try:
                role = stack_role(stack)
            except UnknownStackError:
                role = None
            if role is not StackRole.RUNTIME or "/" in stack:
                found.append(
                    f"runtimeHosts.{stack}: not a runtime stack name (runtime or runtime-<x>)"
                )
            if host.endpoint_host.lower() in {
                self.proxmox.endpoint_host.lower(),
                self.proxmox.shell_address.lower(),
            }:
                found.append(f"runtimeHosts.{stack}.endpoint: {host.endpoint} is the core host's")
        hosts = [("pbs.coreUser", self.pbs.core_user)] + [
            (f"runtimeHosts.{stack}.pbs", host.pbs) for stack, host in self.runtime_hosts.items()
        ]
        found += _duplicates("user", ((f"{key}.user", h.user) for key, h in hosts))
        found += _duplicates("namespace", ((f"{key}.namespace", h.namespace) for key, h in hosts))
        for field in ("node", "endpoint"):
            found += _duplicates(
                field,
                (
                    (f"runtimeHosts.{stack}.{field}", getattr(host, field))
                    for stack, host in sorted(self.runtime_hosts.items())
                ),
            )
        return found

    def _monitoring_problems(self) -> list[str]:
        """Nodes and fleets as zlh-monitor and zlh-back reach them: on the management network."""
        found = []
        management = self.network.management.cidr
        used = {address: key for key, _network, address in self.all_addresses()}
        for node, address in self.monitoring.proxmox_nodes.items():
            key = f"monitoring.proxmoxNodes.{node}"
            if address not in management:
                found.append(
                    f"{key}: {address} is outside network.management ({management}): a node "
                    "backs up to zlh-back and is scraped on its management address"
                )
            elif address in used:
                found.append(f"{key}: {address} is {used[address]}")
            else:
                # A fleet container at a node's address would pass zlh-back's firewall.
                used[address] = key
        if self.proxmox.node not in self.monitoring.proxmox_nodes:
            found.append(
                f"monitoring.proxmoxNodes: must name {self.proxmox.node}, this stack's node, "
                "with its management address: zlh-back accepts backups from the nodes named there"
            )
        size = HOST_BLOCK_SIZE
        blocks: list[tuple[IPv4Address, IPv4Address, str]] = []
        for node, first in self.monitoring.fleets.items():
            key = f"monitoring.fleets.{node}"
            last = first + (size - 1)
            if usable(management, first) or usable(management, last):
                found.append(
                    f"{key}: the {size} addresses of a runtime host's block from {first} do not "
                    f"fit the management network {management}"
                )
                continue
            inside = sorted(k for a, k in used.items() if first <= a <= last)
            if inside:
                found.append(f"{key}: the block {first}-{last} holds {', '.join(inside)}")
            for other_first, other_last, other in blocks:
                if first <= other_last and other_first <= last:
                    found.append(
                        f"{key}: the block {first}-{last} overlaps {other}'s "
                        f"({other_first}-{other_last}); each runtime host needs {size} "
                        "addresses of its own"
                    )
            blocks.append((first, last, key))
        for stack, host in self.runtime_hosts.items():
            key = f"runtimeHosts.{stack}.node"
            if host.node == self.proxmox.node:
                found.append(f"{key}: {host.node} is this core stack's node")
                continue
            for section, names in (
                ("monitoring.fleets", self.monitoring.fleets),
                ("monitoring.proxmoxNodes", self.monitoring.proxmox_nodes),
            ):
                if host.node not in names:
                    found.append(
                        f"{key}: {host.node} has no entry in {section}; zlh-monitor and "
                        "zlh-back know a runtime host only from there"
                    )
        return found


class Template(_Model):
    """A base template (200-299) that game or dev containers are cloned from."""

    vmid: Vmid = Field(description="Proxmox VMID, in the template range (200-299)")
    kind: Literal["game", "dev"] = Field(
        description="game: Paper (behind Velocity); dev: code-server and the dev VPN client"
    )
    lan_address: IPv4Address = Field(description="LAN address while the image is being built")
    ports: list[Annotated[StrictInt, Field(ge=1, le=65535)]] = Field(
        min_length=1, description="ports the workload serves on the LAN, via the edge"
    )
    setup: str = Field(
        default="", description="extra shell run inside the template, after its prerequisites"
    )


class FleetGuest(Size):
    """A game or dev container, declared in the runtime stack's config."""

    name: GuestName = Field(description="container and host name")
    vmid: Vmid = Field(
        description=(
            "VMID in the declared part of the game (1000-1019) or dev (1100-1119) range; the "
            "rest of each range is zpack-api's"
        )
    )
    template: str = Field(description="name of a declared template of the same kind")


class RuntimeDomains(_Model):
    """Host names zlh-zpack-proxy (runtime Traefik) routes."""

    games: DomainName = Field(description="domain of game servers")
    dev_ide: DomainName = Field(description="domain under which each dev container's IDE is routed")


class Agent(_Model):
    version: str = Field(pattern=_VERSION, description="zlh-agent release on zlh-artifacts")
    sha256: str = Field(pattern=_SHA256, description="SHA-256 of that release")
    url: DownloadUrl | None = Field(
        default=None,
        description=(
            "where zlh-artifacts fetches the release from; unset, publish it there yourself "
            "(zlh-publish, see the runbook)"
        ),
    )


class RuntimeStackConfig(_StackConfig):
    """``Pulumi.runtime.yaml`` (and ``Pulumi.runtime-<x>.yaml``): edge and runtime layers."""

    SERVICES: ClassVar[tuple[Mapping[str, ServiceSpec], ...]] = (EDGE_SERVICES, RUNTIME_SERVICES)
    core_stack: str = Field(
        min_length=1,
        description="the core stack to read the contract from, e.g. org/zlh-infra/core",
    )
    domains: RuntimeDomains = Field(description="host names zlh-zpack-proxy routes")
    agent: Agent = Field(description="the zlh-agent baked into the base image")
    base_template: ServiceGuest = Field(description="the 200-299 image every template derives from")
    templates: dict[GuestName, Template] = Field(
        min_length=1, description="game and dev templates cloned from the base image"
    )
    games: list[FleetGuest] = Field(default=[], description="game containers")
    devs: list[FleetGuest] = Field(default=[], description="dev containers")
    vendor: RuntimeVendor = Field(
        description="vendor software of the runtime guests, mirrored by zlh-artifacts"
    )
    paper: Paper = Field(description="Paper in the game containers")

    def all_vmids(self) -> Iterator[tuple[str, int]]:
        yield from super().all_vmids()
        yield "baseTemplate.vmid", self.base_template.vmid
        for name, template in self.templates.items():
            yield f"templates.{name}.vmid", template.vmid
        for kind, fleet in (("games", self.games), ("devs", self.devs)):
            for index, guest in enumerate(fleet):
                yield f"{kind}[{index}].vmid", guest.vmid

    def fleet_addresses(self, network: Network, vmid: int) -> IPv4Address:
        segment = self.network.lan if network is Network.LAN else self.network.management
        first = DEFAULT_SCHEME.range_of(VmidRole.GAME).first
        return fleet_address(segment.cidr, self.network.fleet_offset, first, vmid)

    def service_management_addresses(self) -> dict[str, IPv4Address]:
        """Each runtime-host service's management address, from its slot after the fleet.

        Raises AddressPlanError when one falls outside the management network.
        """
        found: dict[str, IPv4Address] = {}
        for specs in self.SERVICES:
            for name, spec in specs.items():
                if spec.management_index is not None:
                    found[name] = block_address(
                        self.network.management.cidr,
                        self.network.fleet_offset,
                        spec.management_index,
                        f"{name}'s management address",
                    )
        return found

    def all_addresses(self) -> Iterator[tuple[str, Network, IPv4Address]]:
        yield from super().all_addresses()
        if self.base_template.lan_address is not None:
            yield "baseTemplate.lanAddress", Network.LAN, self.base_template.lan_address
        for name, template in self.templates.items():
            yield f"templates.{name}.lanAddress", Network.LAN, template.lan_address
        try:
            for name, address in self.service_management_addresses().items():
                yield f"guests.{name} (management address)", Network.MANAGEMENT, address
        except AddressPlanError:
            pass  # reported by problems()
        # A derived address repeats only where a VMID does, which is reported as such.
        seen_vmids: set[int] = set()
        for kind, fleet in (("games", self.games), ("devs", self.devs)):
            for index, guest in enumerate(fleet):
                if guest.vmid in seen_vmids:
                    continue
                seen_vmids.add(guest.vmid)
                for network in (Network.LAN, Network.MANAGEMENT):
                    try:
                        address = self.fleet_addresses(network, guest.vmid)
                    except AddressPlanError:
                        continue  # reported by problems()
                    yield f"{kind}[{index}] ({network} address)", network, address

    def problems(self) -> list[str]:
        found = super().problems()
        router = self.guests.get("zlh-zpack-router")
        if router is not None and router.lan_address not in (None, self.network.lan.gateway):
            found.append("guests.zlh-zpack-router.lanAddress: must equal network.lan.gateway")
        found += _role_problem("baseTemplate.vmid", self.base_template.vmid, VmidRole.BASE_TEMPLATE)
        if self.base_template.lan_address is None:
            found.append("baseTemplate.lanAddress: required while the image is being built")
        if self.base_template.management_address is not None:
            found.append("baseTemplate.managementAddress: base images have no management NIC")
        for name, template in self.templates.items():
            found += _role_problem(f"templates.{name}.vmid", template.vmid, VmidRole.BASE_TEMPLATE)
        for kind, fleet, role in (
            ("games", self.games, VmidRole.GAME),
            ("devs", self.devs, VmidRole.DEV),
        ):
            declared = fleet_split(role).declared
            if len(fleet) > declared.size:
                found.append(
                    f"{kind}: {len(fleet)} {role} containers do not fit the declared part "
                    f"{declared.describe()} of the {role} range ({declared.size} VMIDs; the rest "
                    "is zpack-api's)"
                )
            found += _duplicates(
                "name", ((f"{kind}[{i}].name", g.name) for i, g in enumerate(fleet))
            )
            for index, guest in enumerate(fleet):
                role_problems = _role_problem(f"{kind}[{index}].vmid", guest.vmid, role)
                found += role_problems
                owner = fleet_owner_problem(guest.vmid, declared=True)
                if owner and not role_problems:
                    found.append(f"{kind}[{index}].vmid: {owner}")
                chosen = self.templates.get(guest.template)
                if chosen is None:
                    found.append(
                        f"{kind}[{index}].template: unknown template {guest.template!r}; "
                        f"declared: {', '.join(sorted(self.templates))}"
                    )
                elif chosen.kind != role:
                    found.append(
                        f"{kind}[{index}].template: {guest.template!r} is a {chosen.kind} "
                        f"template, not a {role} one"
                    )
                for network in (Network.LAN, Network.MANAGEMENT):
                    try:
                        self.fleet_addresses(network, guest.vmid)
                    except AddressPlanError as error:
                        found.append(f"{kind}[{index}].vmid: on network.{network}: {error}")
        try:
            self.service_management_addresses()
        except AddressPlanError as error:
            found.append(f"network.fleetOffset: {error}")
        found += self.vendor.problems()
        for index, guest in enumerate(self.games):
            try:
                paper_heap_mb(guest.memory_mb)
            except ValueError as error:
                found.append(f"games[{index}].memoryMb: {error}")
        names = Counter(g.name for g in [*self.games, *self.devs])
        for name in sorted(n for n, count in names.items() if count > 1):
            found.append(f"devs: name {name!r} is also a game container's name")
        return found

    def refuse_contract(self, contract: CoreContract, *, stack: str, core_stack: str) -> list[str]:
        """Everything this stack would share with the core or another runtime stack.

        The runtime stacks never read each other; what keeps them apart is in the core's
        config and reaches each through the contract: its node, its fleet block, its PBS
        namespace. ``stack``: this stack's short name (``runtime``, ``runtime-<x>``).
        """
        problems = self.refuse_core_vmids(contract.core_vmids)
        problems += self.refuse_core_addresses(
            {
                contract.api_management_address: "zpack-api",
                contract.monitor_management_address: "zlh-monitor",
                contract.pbs_server: "zlh-back",
            }
        )
        on_core_node = contract.core_node == self.proxmox.node
        if on_core_node:
            problems.append(
                f"proxmox.node: {self.proxmox.node} is the core host's node; runtime guests "
                "must never run on the core host"
            )
        else:
            problems += self.refuse_fleet_block(contract.fleet_blocks)
        problems += self.refuse_core_host(contract.core_hosts, contract.core_host_key)
        if contract.management_cidr != self.network.management.cidr:
            problems.append(
                f"network.management.cidr: {self.network.management.cidr} differs from the "
                f"core stack's management network {contract.management_cidr}"
            )
        try:
            host, _pbs, _api = contract.host(stack, core_stack=core_stack)
        except ContractError as error:
            problems.append(str(error))
        else:
            if not on_core_node:  # refused above; once is enough
                problems += self.refuse_other_node(host.node, stack=stack)
            if urlsplit(host.endpoint)[:2] != urlsplit(self.proxmox.endpoint)[:2]:
                problems.append(
                    f"proxmox.endpoint: {self.proxmox.endpoint} is not the endpoint the core "
                    f"stack gives zpack-api for stack {stack} (runtimeHosts.{stack}.endpoint: "
                    f"{host.endpoint}); make the two agree"
                )
        return problems

    def refuse_core_addresses(self, core: Mapping[IPv4Address, str]) -> list[str]:
        """Management addresses the core stack's guests hold (``core``: address -> guest).

        A fleet container holding zpack-api's address would pass the agent port's only
        firewall rule; one holding the monitor's or PBS's would take their traffic.
        """
        return [
            f"{key}: {address} is {core[address]}'s management address in the core stack; "
            "change network.fleetOffset or the VMID"
            for key, network, address in self.all_addresses()
            if network is Network.MANAGEMENT and address in core
        ]

    def refuse_core_host(self, core_hosts: Collection[str], core_host_key: str) -> list[str]:
        """How the core stack reaches its node: no runtime step may reach it that way."""
        hosts = {host.lower() for host in core_hosts}
        found = [
            f"{key}: {value} is how the core stack reaches the core host; a runtime stack's "
            "API calls and in-guest steps must never reach it"
            for key, value in (
                ("proxmox.endpoint", self.proxmox.endpoint_host),
                ("proxmox.sshAddress", self.proxmox.ssh_address),
            )
            if value is not None and value.lower() in hosts
        ]
        if self.proxmox.ssh_host_key == core_host_key:
            found.append(
                "proxmox.sshHostKey: is the core host's SSH host key; pin the runtime node's "
                "own key (its /etc/ssh/ssh_host_ed25519_key.pub)"
            )
        return found

    def refuse_fleet_block(self, blocks: Mapping[str, IPv4Address]) -> list[str]:
        """Where the core's zlh-monitor looks for this host (``blocks``: node -> VMID 1000's)."""
        first_vmid = DEFAULT_SCHEME.range_of(VmidRole.GAME).first
        try:
            placed = self.fleet_addresses(Network.MANAGEMENT, first_vmid)
        except AddressPlanError:
            return []  # reported by problems()
        node = self.proxmox.node
        expected = blocks.get(node)
        if expected is None:
            return [
                f"proxmox.node: the core stack's monitoring.fleets has no block for {node}, so "
                f"zlh-monitor would not find its guests: add zlh-infra:monitoring.fleets.{node}: "
                f"{placed} to the core stack and run `pulumi up` on it first"
            ]
        if placed != expected:
            return [
                f"network.fleetOffset: puts VMID {first_vmid} at {placed}, but the core stack's "
                f"monitoring.fleets.{node} is {expected}, where zlh-monitor looks: make the two "
                "agree"
            ]
        return []

    def refuse_other_node(self, node: str, *, stack: str) -> list[str]:
        """The node the core stack assigns this stack: a copied stack file keeps another's."""
        if self.proxmox.node == node:
            return []
        return [
            f"proxmox.node: the core stack assigns stack {stack} to node {node} "
            f"(runtimeHosts.{stack}.node), not {self.proxmox.node}: two stacks on one node "
            "would manage the same VMIDs and addresses; make the two agree"
        ]

    def refuse_core_vmids(self, core_vmids: frozenset[int]) -> list[str]:
        """VMIDs the core stack already uses (PBS keys backups by VMID across hosts)."""
        return [
            f"{key}: VMID {vmid} is used by the core stack; VMIDs are unique across hosts "
            "because Proxmox Backup Server keys backups by VMID"
            for key, vmid in self.all_vmids()
            if vmid in core_vmids
        ]


def _role_problem(key: str, vmid: int, role: VmidRole) -> list[str]:
    if DEFAULT_SCHEME.role_of(vmid) is role:
        return []
    vmid_range = DEFAULT_SCHEME.range_of(role)
    return [f"{key}: VMID {vmid} is outside the {role} range {vmid_range.describe()}"]


def _duplicates(
    what: str, items: Iterator[tuple[str, Any]], show: Callable[[Any], str] = str
) -> list[str]:
    first_key: dict[Any, str] = {}
    found = []
    for key, value in items:
        if value in first_key:
            found.append(f"{key}: {what} {show(value)} is already used by {first_key[value]}")
        else:
            first_key[value] = key
    return found


def _error_location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


M = TypeVar("M", bound="_StackConfig")


def parse_stack_config(model: type[M], raw: Mapping[str, str], *, stack: str) -> M:
    """Validate the ``zlh-infra:*`` keys of ``raw`` (the engine's flat config map).

    Values arrive as strings; objects and lists as JSON text, as the engine passes them.
    """
    values: dict[str, Any] = {}
    for full_key, text in raw.items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        try:
            values[key] = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            values[key] = text
    spelling = _spelling_problems(model, values)
    if spelling:
        raise ConfigError([f"{NAMESPACE}:{problem}" for problem in spelling], stack=stack)
    secret_inputs = {
        alias: values[alias] for alias in _secret_fields(model).values() if alias in values
    }
    try:
        config = model.model_validate(values)
    except ValidationError as error:
        problems = []
        for issue in error.errors(include_url=False):
            loc, message = tuple(issue["loc"]), _message(issue)
            if loc and loc[0] in secret_inputs:
                message = _without_secret(message, [issue.get("input"), secret_inputs[loc[0]]])
            if loc and loc[-1] == "[key]":  # the key of a map entry, not its value
                loc, message = loc[:-1], f"the name: {message}"
            problems.append(f"{NAMESPACE}:{_error_location(loc)}: {message}")
        raise ConfigError(problems, stack=stack) from None
    problems = config.problems()
    if problems:
        raise ConfigError([f"{NAMESPACE}:{problem}" for problem in problems], stack=stack)
    return config


# Every key has one spelling, camelCase: the models also accept their Python field names
# (``populate_by_name``, for the program's own use), so a stack config spelling a key as
# its field name (``proxmox_api_token``) is refused here, naming the camelCase key, before
# validation. That keeps every check that reads keys by their alias (``check_secret_keys``
# above all) seeing every key the model would take.
def _spelling_problems(model: type[BaseModel], data: Any, path: str = "") -> list[str]:
    """Keys of ``data`` (validated as ``model``) spelled as a field name, not its alias."""
    if not isinstance(data, Mapping):
        return []
    found = []
    by_key = {field.alias or name: field for name, field in model.model_fields.items()}
    for key, item in data.items():
        where = f"{path}.{key}" if path else str(key)
        field = by_key.get(key)
        if field is None and key in model.model_fields:
            alias = model.model_fields[key].alias or key
            camel = f"{path}.{alias}" if path else alias
            found.append(f"{where}: unknown key; it is spelled {camel} (keys are camelCase)")
        elif field is not None:
            found += _nested_spelling(field.annotation, item, where)
    return found


def _nested_spelling(annotation: Any, data: Any, path: str) -> list[str]:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _spelling_problems(annotation, data, path)
    if origin is Annotated:
        return _nested_spelling(args[0], data, path)
    if origin in (Union, UnionType):
        found: list[str] = []
        for arg in args:
            found += [p for p in _nested_spelling(arg, data, path) if p not in found]
        return found
    if origin is dict and isinstance(data, Mapping):
        return [p for k, v in data.items() for p in _nested_spelling(args[1], v, f"{path}.{k}")]
    if origin is list and isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _nested_spelling(args[0], v, f"{path}[{i}]")]
    return []


def _secret_fields(model: type[BaseModel]) -> dict[str, str]:
    """The model's secret fields: field name -> config key."""
    return {
        name: field.alias or name
        for name, field in model.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }


def _secret_texts(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        if value.strip():
            yield value
            yield repr(value)[1:-1]
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _secret_texts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secret_texts(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _without_secret(message: str, inputs: list[Any]) -> str:
    """``message`` with every text of a secret input in it replaced by ``[secret]``.

    pydantic's messages seldom quote the input, but a validator's own might: a problem
    with a secret field never shows the secret.
    """
    texts = {text for value in inputs for text in _secret_texts(value)}
    for text in sorted(texts, key=len, reverse=True):
        message = message.replace(text, "[secret]")
    return message


def _message(issue: Any) -> str:
    if issue["type"] == "extra_forbidden":
        return "unknown key"
    if issue["type"] == "missing":
        return "required"
    message = str(issue["msg"])
    return message.removeprefix("Value error, ")


def check_secret_keys(
    model: type[_StackConfig], secret_keys: set[str], raw: Mapping[str, str]
) -> list[str]:
    """Secret fields set in plain text (``pulumi config set`` without ``--secret``).

    Only the camelCase key is looked at: ``parse_stack_config`` refuses a key spelled as
    its field name, whatever its value (see ``_spelling_problems``).
    """
    found = []
    for name, alias in _secret_fields(model).items():
        full_key = f"{NAMESPACE}:{alias}"
        annotation = str(model.model_fields[name].annotation)
        if full_key in raw and full_key not in secret_keys:
            how = (
                f"`pulumi config set --secret --path '{alias}.<NAME>' ...` for each entry"
                if annotation.startswith("dict[")
                else f"`pulumi config set --secret {alias}`"
            )
            found.append(f"{full_key}: holds a credential in plain text; set it with {how}")
    return found


ConfigModel = CoreStackConfig | RuntimeStackConfig
__all__ = [
    "NAMESPACE",
    "ConfigModel",
    "CoreStackConfig",
    "RuntimeStackConfig",
    "check_secret_keys",
    "parse_stack_config",
]
