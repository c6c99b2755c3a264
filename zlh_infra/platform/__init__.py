"""Pure platform logic: VMID scheme, address plans, firewall reachability.

Nothing in this package imports Pulumi, so the program, the policy pack and the
tests share one definition of each rule and can test it on its own.
"""
