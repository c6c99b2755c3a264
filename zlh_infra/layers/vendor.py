"""What the layers share to wire vendor software in: artifacts, ACME, values read from guests."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pulumi
import pulumi_command as command
from pydantic import SecretStr

from zlh_infra.config import Acme, VendorArtifact
from zlh_infra.services import traefik
from zlh_infra.services.artifacts import Artifact
from zlh_infra.services.plan import ServicePlan
from zlh_infra.services.vendor import Vendored


def artifact(name: str, release: VendorArtifact) -> Artifact:
    """The config's vendor artifact as the services see it (``name``: its store directory)."""
    return Artifact(name, release.version, release.file_name, release.sha256, release.url)


def plain_credentials(credentials: Mapping[str, SecretStr] | None) -> dict[str, str]:
    return {key: value.get_secret_value() for key, value in (credentials or {}).items()}


def traefik_plan(
    *,
    guest: str,
    source: Vendored,
    acme: Acme,
    credentials: Mapping[str, SecretStr] | None,
    tenant_routes: bool = False,
) -> ServicePlan | pulumi.Output[ServicePlan]:
    """Traefik on ``guest``; with DNS credentials the plan is a secret Output (a 0600 file)."""

    def build(secrets: Mapping[str, str]) -> ServicePlan:
        challenge = None
        if acme.challenge == "dns":
            assert acme.dns_provider is not None  # the config requires it
            challenge = traefik.DnsChallenge(
                acme.dns_provider, dict(secrets), tuple(acme.dns_resolvers)
            )
        return traefik.plan(
            guest=guest,
            traefik=source,
            acme=traefik.Acme(
                email=acme.email,
                challenge=challenge,
                domains=tuple(acme.domains),
                ca_server=acme.ca_server,
            ),
            tenant_routes=tenant_routes,
        )

    secrets = plain_credentials(credentials)
    if not secrets:
        return build({})
    return pulumi.Output.secret(secrets).apply(build)


def traefik_answers() -> str:
    """Shell failing unless Traefik answers its ping (after a routes file was written)."""
    return (
        f"curl -fsS -o /dev/null --retry 10 --retry-connrefused --retry-delay 1"
        f" http://{traefik.PING}/ping"
    )


def not_known() -> pulumi.Output[str]:
    """An Output whose value is unknown, as the engine's preview shows a value to come."""
    return pulumi.Output.from_input(pulumi.output.UNKNOWN)  # type: ignore[arg-type]


def read_value(
    read: command.remote.Command, parse: Callable[[str], str], *, secret: bool = False
) -> pulumi.Output[str]:
    """What a guest printed (``read.stdout``), parsed and checked by ``parse``.

    Unknown while previewing, like every output of a step still to run; unknown too when
    no engine ran the step (an offline run has no stdout): never a made-up value.
    """

    def value(stdout: str | None) -> pulumi.Input[str]:
        if stdout is None:
            return not_known()
        return parse(stdout)

    found = read.stdout.apply(value)
    return pulumi.Output.secret(found) if secret else found
