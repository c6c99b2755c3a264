"""Where a guest may open connections to: its outbound rules, read as Proxmox applies them.

Proxmox evaluates a guest's ``OUT`` rules (its own and those of the security groups it
references) top to bottom, first match wins, and the guest's output policy decides for
what no rule matched; packets of established connections pass before any rule. That is
the inbound evaluation with the roles of the addresses swapped, so this module mirrors
each outbound rule into an inbound one (its destination read as the source) and asks the
evaluator, :mod:`zlh_infra.platform.reachability`, which therefore reads every rule alike
for both directions. A mirrored rule's own ``source`` (which of the guest's addresses it
sends from) is not modelled: such a rule's ACCEPT counts as matching and its DROP is not
relied on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from zlh_infra.platform.reachability import (
    Exposure,
    GuestFirewall,
    HostFirewall,
    Rule,
    exposure,
    read_rule,
)


def _mirrored(rules: Iterable[Rule]) -> list[Rule]:
    found = []
    for rule in rules:
        reading = read_rule(rule)
        if reading.type == "group":
            found.append(rule)
        elif reading.type == "out":
            # ``dest`` marks what the evaluator does not model: here, the sender's source.
            found.append(dataclasses.replace(rule, type="in", source=rule.dest, dest=rule.source))
    return found


def egress(
    host: HostFirewall,
    guest: GuestFirewall,
    *,
    iface: str,
    output_policy: str,
    guest_aliases: Mapping[str, str] | None = None,
    guest_ipsets: Mapping[str, Sequence[tuple[str, bool]]] | None = None,
) -> list[Exposure]:
    """Every destination ``iface`` may open a connection to, per protocol and port class.

    ``sources`` of each :class:`Exposure` are the destinations; ``output_policy`` is the
    guest option (Proxmox's default is ACCEPT).
    """
    mirrored_host = dataclasses.replace(
        host,
        security_groups={name: _mirrored(rules) for name, rules in host.security_groups.items()},
    )
    mirrored_guest = dataclasses.replace(
        guest, input_policy=output_policy, rules=tuple(_mirrored(guest.rules))
    )
    return exposure(
        mirrored_host,
        mirrored_guest,
        iface=iface,
        guest_aliases=guest_aliases,
        guest_ipsets=guest_ipsets,
    )
