"""The exit codes every subcommand of ``python -m zlh_infra`` shares."""

from __future__ import annotations

from enum import IntEnum

from zlh_infra.services.plan import EXIT_UNAVAILABLE


class ExitCode(IntEnum):
    OK = 0
    #: What the command checks does not hold: a mandatory policy violation, an audit
    #: finding, a stale diagram, a failed lab check.
    FAILED = 1
    #: Bad arguments or input: a missing or malformed stack file, a ConfigError or
    #: ContractError raised by the program.
    USAGE = 2
    #: The program itself failed (an exception, a duplicate URN).
    PROGRAM = 3
    #: Something the command needs is missing on this machine, or a guest step could not
    #: fetch what only its vendor ships (the in-guest scripts' own code, EX_UNAVAILABLE).
    UNAVAILABLE = EXIT_UNAVAILABLE
