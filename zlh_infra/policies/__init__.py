"""The CrossGuard checks of the ``zlh-platform`` policy pack.

Each check is a plain function over :class:`~zlh_infra.policies.resources.Resource`
(property mappings in the engine's wire form), so tests call it directly;
:mod:`zlh_infra.policies.pack` wraps the checks as ``pulumi_policy`` policies and
``policy/__main__.py`` assembles them into the pack.
"""
