"""Analyzer messages: built from the recording, read back into the preview's terms."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from google.protobuf import struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime.proto import analyzer_pb2

from zlh_infra.platform import urns
from zlh_infra.tooling.wire_values import mask_secrets

from ..durations import duration_seconds
from ..policy_config import PolicyConfig, PolicySpec
from ..recording import Diagnostic, RecordedResource
from .wire import marshal_properties, struct_to_dict

LEVEL_VALUES: dict[str, analyzer_pb2.EnforcementLevel.ValueType] = {
    "advisory": analyzer_pb2.ADVISORY,
    "mandatory": analyzer_pb2.MANDATORY,
    "remediate": analyzer_pb2.REMEDIATE,
    "disabled": analyzer_pb2.DISABLED,
}
#: Declared levels map one to one (no remediate downgrade, unlike diagnostics).
DECLARED_LEVELS = {v: k for k, v in LEVEL_VALUES.items()}
#: A remediate-level violation means remediation did not fix it: the engine reports it
#: as mandatory.
REPORTED_LEVELS = {**DECLARED_LEVELS, analyzer_pb2.REMEDIATE: "mandatory"}
_SEVERITY = {"mandatory": "error", "advisory": "warning"}
_MISSING = object()


class ResourceMessages:
    """The wire form of a stack's resources, as Analyze and AnalyzeStack send them."""

    def __init__(self) -> None:
        #: Every resource seen so far, to find providers and to file stack diagnostics.
        self.by_urn: dict[str, RecordedResource] = {}
        #: Wire-form provider resources by reference, built once per provider.
        self._providers: dict[str, analyzer_pb2.AnalyzerProviderResource] = {}
        #: Each analysed resource's inputs and their Struct, reused by AnalyzeStack
        #: when the outputs equal the inputs (as they do in a preview's creates).
        self._input_props: dict[str, tuple[Mapping[str, Any], struct_pb2.Struct]] = {}

    def requests(
        self, res: RecordedResource, *, remediate: bool
    ) -> tuple[analyzer_pb2.AnalyzeRequest, analyzer_pb2.AnalyzeRequest | None]:
        """The Analyze request, and the Remediate request when remediations run.

        They differ only when the inputs hold ``__`` keys (the engine keeps those for
        Remediate alone); otherwise one message serves both calls.
        """
        self.by_urn[res.urn] = res
        dropped: list[str] = []
        analyze = self._analyze_request(res, skip_internal=True, dropped=dropped)
        self._input_props[res.urn] = (res.inputs, analyze.properties)
        if not remediate:
            return analyze, None
        if not dropped:
            return analyze, analyze
        return analyze, self._analyze_request(res, skip_internal=False)

    def stack_resource(self, res: RecordedResource) -> analyzer_pb2.AnalyzerResource:
        """``res`` as AnalyzeStack sends it: outputs, parent and dependencies."""
        msg = analyzer_pb2.AnalyzerResource(
            urn=res.urn,
            type=res.type,
            name=_urn_name(res.urn, res.name),
            options=_options(res),
            provider=self._provider(res),
            parent=res.parent or "",
            dependencies=res.dependencies,
        )
        analysed = self._input_props.get(res.urn)
        if analysed is not None and analysed[0] == res.outputs:
            msg.properties.CopyFrom(analysed[1])
        else:
            msg.properties.update(marshal_properties(res.outputs, skip_internal=True))
        for key, dependencies in res.property_dependencies.items():
            if dependencies:
                msg.propertyDependencies[key].urns.extend(dependencies)
        return msg

    def _provider(self, res: RecordedResource) -> analyzer_pb2.AnalyzerProviderResource | None:
        if not res.provider:
            return None
        ref = res.provider
        cached = self._providers.get(ref)
        if cached is not None:
            return cached
        bare = urns.provider_urn(ref) or ref
        prov = self.by_urn.get(ref) or self.by_urn.get(bare)
        if prov is None:
            # A provider the recording does not hold: identity only.
            urn = ref if ref.count("::") == 3 else bare
            return analyzer_pb2.AnalyzerProviderResource(
                urn=urn, type=_urn_type(urn), name=_urn_name(urn, "")
            )
        msg = analyzer_pb2.AnalyzerProviderResource(
            urn=prov.urn, type=prov.type, name=_urn_name(prov.urn, prov.name)
        )
        msg.properties.update(marshal_properties(prov.inputs, skip_internal=True))
        self._providers[ref] = msg
        return msg

    def _analyze_request(
        self, res: RecordedResource, *, skip_internal: bool, dropped: list[str] | None = None
    ) -> analyzer_pb2.AnalyzeRequest:
        request = analyzer_pb2.AnalyzeRequest(
            urn=res.urn,
            type=res.type,
            name=_urn_name(res.urn, res.name),
            options=_options(res),
            provider=self._provider(res),
        )
        request.properties.update(
            marshal_properties(res.inputs, skip_internal=skip_internal, dropped=dropped)
        )
        return request


def _seconds(value: object) -> float:
    """A custom timeout in seconds; strings use Go duration syntax ("5m", "1h30m")."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return duration_seconds(str(value))
    except ValueError:
        raise ValueError(f"invalid custom timeout {value!r}") from None


def _options(res: RecordedResource) -> analyzer_pb2.AnalyzerResourceOptions:
    opts = res.options or {}
    dbr = opts.get("deleteBeforeReplace")
    timeouts = opts.get("customTimeouts") or {}
    aliases = [
        a if isinstance(a, str) else a.get("urn", "")
        for a in opts.get("aliases") or []
        if isinstance(a, str) or (isinstance(a, dict) and a.get("urn"))
    ]
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(opts.get("protect", False)),
        ignoreChanges=list(opts.get("ignoreChanges") or []),
        deleteBeforeReplace=bool(dbr),
        deleteBeforeReplaceDefined=bool(opts.get("deleteBeforeReplaceDefined", dbr is not None)),
        additionalSecretOutputs=list(opts.get("additionalSecretOutputs") or []),
        aliases=aliases,
        customTimeouts=analyzer_pb2.AnalyzerResourceOptions.CustomTimeouts(
            create=_seconds(timeouts.get("create")),
            update=_seconds(timeouts.get("update")),
            delete=_seconds(timeouts.get("delete")),
        ),
        parent=res.parent or "",
    )


def _urn_name(urn: str, fallback: str) -> str:
    # The engine names a resource by its URN (``URN.Name()``).
    parsed = urns.parse(urn)
    return parsed.name if parsed else fallback


def _urn_type(urn: str) -> str:
    parsed = urns.parse(urn)
    return parsed.type if parsed else ""


# --- configuration ---------------------------------------------------------------------------


def policy_specs(info: analyzer_pb2.AnalyzerInfo) -> list[PolicySpec]:
    """What ``GetAnalyzerInfo`` says of each policy."""
    return [_policy_spec(p, with_schema=info.supportsConfig) for p in info.policies]


def _policy_spec(policy: analyzer_pb2.PolicyInfo, *, with_schema: bool) -> PolicySpec:
    return PolicySpec(
        name=policy.name,
        enforcement_level=DECLARED_LEVELS[policy.enforcementLevel],
        schema_properties=struct_to_dict(policy.configSchema.properties) if with_schema else None,
        required=list(policy.configSchema.required),
    )


def initial_config_from_info(info: analyzer_pb2.AnalyzerInfo) -> dict[str, PolicyConfig]:
    """The pack's ``initial_config`` as the engine reads it (a missing level is advisory)."""
    return {name: _initial_config(cfg) for name, cfg in info.initialConfig.items()}


def _initial_config(cfg: analyzer_pb2.PolicyConfig) -> PolicyConfig:
    return PolicyConfig(DECLARED_LEVELS[cfg.enforcementLevel], struct_to_dict(cfg.properties))


def configure_request(merged: Mapping[str, PolicyConfig]) -> analyzer_pb2.ConfigureAnalyzerRequest:
    """The ``Configure`` request for the merged configuration."""
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for name, cfg in merged.items():
        entry = request.policyConfig[name]
        entry.enforcementLevel = LEVEL_VALUES[cfg.enforcement_level or "advisory"]
        entry.properties.update(cfg.properties)
    return request


# --- answers -------------------------------------------------------------------------------


def policy_diagnostic(d: analyzer_pb2.AnalyzeDiagnostic, urn: str) -> Diagnostic:
    """A violation the pack reported, filed under ``urn``."""
    level = REPORTED_LEVELS[d.enforcementLevel]
    return Diagnostic(
        severity=_SEVERITY.get(level, "info"),
        message=d.message,
        source="policy",
        urn=urn,
        policy_pack=d.policyPackName,
        policy_name=d.policyName,
        enforcement_level=level,
    )


def remediation_diagnostics(
    res: RecordedResource, response: analyzer_pb2.RemediateResponse
) -> Iterator[Diagnostic]:
    """The remediations proposed for ``res``, reported and not applied."""
    for rem in response.remediations:
        diagnostic = _remediation_diagnostic(res, rem)
        if diagnostic is not None:
            yield diagnostic


def _remediation_diagnostic(
    res: RecordedResource, rem: analyzer_pb2.Remediation
) -> Diagnostic | None:
    if rem.diagnostic:
        severity, level, message = "warning", "advisory", rem.diagnostic
    elif rem.HasField("properties"):
        after = struct_to_dict(rem.properties)
        changed = {k: v for k, v in after.items() if res.inputs.get(k, _MISSING) != v}
        shown = ", ".join(
            f"{k}={json.dumps(mask_secrets(v), sort_keys=True)}" for k, v in sorted(changed.items())
        )
        severity, level = "info", "remediate"
        message = (
            f"{rem.description}\nremediation would set {shown or 'nothing'} (not applied offline)"
        )
    else:
        return None
    return Diagnostic(
        severity=severity,
        message=message,
        source="policy",
        urn=res.urn,
        policy_pack=rem.policyPackName,
        policy_name=rem.policyName,
        enforcement_level=level,
    )
