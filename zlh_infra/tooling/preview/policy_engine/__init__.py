"""Run a CrossGuard policy pack over a recorded stack, as ``pulumi preview --policy-pack`` does.

The pack runs as its own process (``pack_process``) and is driven over the real analyzer
gRPC protocol in the engine's order (``protocol``, which tells what is sent and why),
with a minimal engine service for its logs (``engine_service``). ``run_policy_pack``
analyses a finished recording; ``PolicySession`` runs beside a program and analyses
each resource as it registers. Both take the ``settings`` as keywords.
"""

from ..policy_config import PolicyConfigError
from .errors import PolicyEngineError, PolicyPackError
from .report import PolicyReport, has_mandatory_violation
from .session import PolicySession, run_policy_pack

__all__ = [
    "PolicyConfigError",
    "PolicyEngineError",
    "PolicyPackError",
    "PolicyReport",
    "PolicySession",
    "has_mandatory_violation",
    "run_policy_pack",
]
