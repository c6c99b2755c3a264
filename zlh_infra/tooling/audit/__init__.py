"""The live audit: read the Proxmox hosts and hold what is there to the platform's rules.

The policy pack sees only what Pulumi registers. The platform API creates and removes
game containers itself, and operators make guests by hand, so ``python -m zlh_infra
audit`` reads each host's API (read-only), turns what it finds into the same property
shape the policy checks read, and runs the same checks and the same firewall
reachability evaluator on it.

- :mod:`.targets`: which hosts, with which endpoint, node, token and TLS settings.
- :mod:`.client`: the read-only API calls, and errors that name the host.
- :mod:`.convert`: API answers -> the provider's wire-form properties.
- :mod:`.rules`: the rules, mostly the policy pack's own checks.
- :mod:`.report`: findings as a text table or JSON.
- :mod:`.cli`: the ``audit`` subcommand.
"""
