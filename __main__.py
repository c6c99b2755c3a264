"""Entry point for `pulumi up` / `pulumi preview`: the stack's name picks what it builds."""

from zlh_infra.program import main

main()
