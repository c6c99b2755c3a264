"""Software only its vendor ships: fetched, verified, and installed once per pinned release.

Every vendor artifact (a binary, a jar, a tarball, a ``.deb``) is an ``Artifact`` of the
stack config: name, version, file, SHA-256 and the vendor's URL. A guest fetches it from
``Vendored.source_url``: core guests from the artifact's own URL (``Vendored.from_vendor``),
runtime guests from zlh-artifacts (``Vendored.from_store``), never from the internet.

The shell here checks the SHA-256 before anything is installed or unpacked, fetches
nothing when that exact artifact is already in place, sets ``ZLH_CHANGED=1`` when it
installs something, and exits ``EXIT_UNAVAILABLE`` with
``zlh: <name> <version> could not be fetched from <url>`` when the fetch fails.

Vendor APT repositories (Grafana's, Proxmox's) are ``AptRepository``: the signing key as
given (armored, ``/etc/apt/keyrings/<name>.asc``) and a deb822 ``.sources`` file whose
``Signed-By`` names it; their packages are installed by the configure step
(``apt_install``), after those files are written.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import (
    EXIT_UNAVAILABLE,
    GuestFile,
    PlanError,
    download,
    sha256_matches,
)

#: Where a ``.deb`` artifact's SHA-256 is recorded once it is installed.
DEB_MARKERS = "/var/lib/zlh/vendor"

_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PATH = re.compile(r"^/[A-Za-z0-9._/@+-]+$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~:-]*$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SUITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_URI = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$")
_KEY_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_KEY_END = "-----END PGP PUBLIC KEY BLOCK-----"

#: apt-get, non-interactive, keeping the configuration files this project wrote before the
#: package was installed (a package's own conffile would otherwise prompt or win).
APT_GET = (
    "DEBIAN_FRONTEND=noninteractive apt-get -y -q"
    " -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


@dataclass(frozen=True, slots=True)
class Vendored:
    """A vendor artifact and the URL this guest fetches it from."""

    artifact: Artifact
    source_url: str

    def __post_init__(self) -> None:
        if not _FILE.match(self.artifact.file):
            raise PlanError(f"{self.what}: {self.artifact.file!r} is not a plain file name")
        # file:// fetches a local copy (curl reads it the same way).
        if not re.fullmatch(r"(https?|file)://\S+", self.source_url):
            raise PlanError(f"{self.what}: {self.source_url!r} is not an http(s) URL")

    @classmethod
    def from_vendor(cls, artifact: Artifact) -> Vendored:
        """A core guest's source: the vendor's own URL, as the stack config declares it."""
        if artifact.url is None:
            raise PlanError(f"{artifact.name} {artifact.version}: the stack config has no URL")
        return cls(artifact, artifact.url)

    @classmethod
    def from_store(cls, artifact: Artifact, store_url: str) -> Vendored:
        """A runtime guest's source: zlh-artifacts (``http://<lan>:8080``) plus the path."""
        return cls(artifact, store_url.rstrip("/") + artifact.path)

    @property
    def what(self) -> str:
        return f"{self.artifact.name} {self.artifact.version}"


def _path(what: str, path: str) -> str:
    if not _PATH.match(path) or "/../" in f"{path}/":
        raise PlanError(f"{what}: {path!r} is not an absolute, plain path")
    return path


def fetch_verified(source: Vendored, path: str) -> str:
    """Shell leaving the verified artifact at ``path`` under ``"$zlh_dl"``, or exiting.

    A fetch failure exits ``EXIT_UNAVAILABLE``; content whose SHA-256 differs from the
    pinned one exits 1. The caller creates ``zlh_dl`` (``mktemp -d``) and removes it.
    """
    mismatch = shlex.quote(f"zlh: {source.what}: SHA-256 differs from the config's")
    return download(source.source_url, path, source.what) + (
        f"if ! {sha256_matches(source.artifact.sha256, path)}; then\n"
        f'  echo {mismatch} >&2; rm -rf "$zlh_dl"; exit 1\n'
        "fi\n"
    )


def _indented(shell: str) -> str:
    return textwrap.indent(shell, "  ")


def install_file(
    source: Vendored, dest: str, *, mode: int = 0o644, owner: str = "root", group: str = "root"
) -> str:
    """Shell installing the artifact at ``dest`` unless ``dest`` already has its SHA-256."""
    dest = _path(source.what, dest)
    fetched = f'"$zlh_dl"/{source.artifact.file}'
    return f"""\
if ! {sha256_matches(source.artifact.sha256, dest)}; then
  zlh_dl=$(mktemp -d)
{_indented(fetch_verified(source, f"$zlh_dl/{source.artifact.file}"))}\
  install -D -m {mode:04o} -o {owner} -g {group} {fetched} {dest}
  rm -rf "$zlh_dl"
  ZLH_CHANGED=1
fi
"""


def unpack(source: Vendored, directory: str, *, strip_components: int = 0) -> str:
    """Shell replacing ``directory`` with the unpacked tarball unless it holds that release.

    The directory records the tarball's SHA-256 in ``.zlh-sha256``; the release is
    unpacked beside it and moved into place, so a failed unpack leaves the old one.
    """
    directory = _path(source.what, directory)
    sha = source.artifact.sha256
    new = f"{directory}.zlh-new"
    return f"""\
if [ "$(cat {directory}/.zlh-sha256 2>/dev/null || true)" != {sha} ]; then
  zlh_dl=$(mktemp -d)
{_indented(fetch_verified(source, f"$zlh_dl/{source.artifact.file}"))}\
  rm -rf {new} && mkdir -p {new}
  tar -xf "$zlh_dl"/{source.artifact.file} -C {new} --no-same-owner \\
    --strip-components={strip_components}
  echo {sha} >{new}/.zlh-sha256
  chown -R root:root {new} && chmod -R go-w {new}
  rm -rf {directory} && mv {new} {directory} && rm -rf "$zlh_dl"
  ZLH_CHANGED=1
fi
"""


def install_deb(source: Vendored, package: str, *, markers: str = DEB_MARKERS) -> str:
    """Shell installing a ``.deb`` artifact (with its Debian dependencies) once per release.

    It is reinstalled when the SHA-256 recorded under ``markers`` differs or ``package``
    is not installed.
    """
    if not _PACKAGE.match(package):
        raise PlanError(f"{source.what}: {package!r} is not a Debian package name")
    if not source.artifact.file.endswith(".deb"):
        raise PlanError(f"{source.what}: {source.artifact.file!r} is not a .deb")
    sha = source.artifact.sha256
    markers = _path(source.what, markers)
    marker = f"{markers}/{package}.sha256"
    return f"""\
if [ "$(cat {marker} 2>/dev/null || true)" != {sha} ] \\
    || ! dpkg-query -W -f='${{Status}}' {package} 2>/dev/null | grep -q ' installed$'; then
  zlh_dl=$(mktemp -d)
  chmod 0755 "$zlh_dl"
{_indented(fetch_verified(source, f"$zlh_dl/{source.artifact.file}"))}\
  chmod 0644 "$zlh_dl"/{source.artifact.file}
  {APT_GET} install --no-install-recommends "$zlh_dl"/{source.artifact.file} >/dev/null
  install -d -m 0755 {markers} && echo {sha} >{marker}
  rm -rf "$zlh_dl"
  ZLH_CHANGED=1
fi
"""


@dataclass(frozen=True, slots=True)
class AptRepository:
    """A vendor's APT repository, trusted through the key given (never fetched)."""

    #: Names the keyring and the sources file (``grafana``, ``proxmox-backup``).
    name: str
    uri: str
    suite: str
    components: tuple[str, ...]
    #: The vendor's signing key, ASCII-armored (``gpg --armor --export``).
    key: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise PlanError(f"APT repository name {self.name!r}: lower-case letters, digits, -")
        if not _URI.match(self.uri):
            raise PlanError(f"APT repository {self.name}: {self.uri!r} is not an http(s) URI")
        for part in (self.suite, *self.components):
            if not _SUITE.match(part):
                raise PlanError(f"APT repository {self.name}: {part!r} is not a suite/component")
        if not self.components:
            raise PlanError(f"APT repository {self.name}: no components")
        key = self.key.strip()
        if not (key.startswith(_KEY_BEGIN) and key.endswith(_KEY_END)):
            raise PlanError(f"APT repository {self.name}: the key is not an armored public key")

    @property
    def keyring(self) -> str:
        return f"/etc/apt/keyrings/{self.name}.asc"

    @property
    def sources(self) -> str:
        return f"/etc/apt/sources.list.d/{self.name}.sources"

    def files(self) -> tuple[GuestFile, GuestFile]:
        """The keyring (0644, apt reads it unprivileged) and the deb822 sources file."""
        sources = (
            "# Generated by zlh-infra.\n"
            "Types: deb\n"
            f"URIs: {self.uri}\n"
            f"Suites: {self.suite}\n"
            f"Components: {' '.join(self.components)}\n"
            f"Signed-By: {self.keyring}\n"
        )
        return (
            GuestFile(self.keyring, self.key.strip() + "\n", mode=0o644),
            GuestFile(self.sources, sources, mode=0o644),
        )


def apt_install(repository: AptRepository, packages: Mapping[str, str | None]) -> str:
    """Shell installing ``packages`` (name -> pinned version, or None) from ``repository``.

    Nothing is fetched when every package is installed (at its pinned version); otherwise
    the package lists are updated, which exits ``EXIT_UNAVAILABLE`` when they cannot be
    fetched (the vendor's repository is unreachable).
    """
    checks: list[str] = []
    wanted: list[str] = []
    for name, version in packages.items():
        if not _PACKAGE.match(name):
            raise PlanError(f"{name!r} is not a Debian package name")
        if version is None:
            checks.append(
                f"dpkg-query -W -f='${{Status}}' {name} 2>/dev/null"
                " | grep -qx 'install ok installed'"
            )
            wanted.append(name)
        else:
            if not _VERSION.match(version):
                raise PlanError(f"{name}: {version!r} is not a Debian version")
            checks.append(
                f"[ \"$(dpkg-query -W -f='${{Status}} ${{Version}}' {name} 2>/dev/null || true)\""
                f" = 'install ok installed {version}' ]"
            )
            wanted.append(f"{name}={version}")
    if not checks:
        raise PlanError(f"APT repository {repository.name}: nothing to install")
    unreachable = shlex.quote(
        f"zlh: {' '.join(packages)} could not be fetched from {repository.uri}"
    )
    failed = shlex.quote(f"zlh: {' '.join(wanted)} could not be installed from {repository.uri}")
    return f"""\
if ! {{ {" && ".join(checks)}; }}; then
  # --error-on=any: a repository that cannot be fetched fails the update (apt only
  # warns by default, and the install would then not find the package).
  if ! DEBIAN_FRONTEND=noninteractive apt-get update -q --error-on=any \
      >/var/log/zlh-apt-update.log 2>&1; then
    echo {unreachable} >&2; tail -n 5 /var/log/zlh-apt-update.log >&2; exit {EXIT_UNAVAILABLE}
  fi
  if ! {APT_GET} install --no-install-recommends {" ".join(wanted)} \\
      >/var/log/zlh-apt-install.log 2>&1; then
    echo {failed} >&2; tail -n 20 /var/log/zlh-apt-install.log >&2; exit 1
  fi
  ZLH_CHANGED=1
fi
"""


def installed_debs(packages: Sequence[str]) -> str:
    """A shell condition: every package in ``packages`` is installed."""
    return " && ".join(
        f"dpkg-query -W -f='${{Status}}' {package} 2>/dev/null | grep -q ' installed$'"
        for package in packages
    )
