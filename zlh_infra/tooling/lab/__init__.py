"""The lab: the program's in-guest steps against local LXC containers, no Proxmox needed.

``python -m zlh_infra lab up|check|down`` (root only; see docs/lab.md). The pure parts
(``plan``, ``pct_args``, ``checks``, ``overlay``, ``netconf``, ``lxcconf``, ``firewall``,
``matrix``) turn a recording into what to build and render results; ``host``, ``lxc``,
``rootfs`` and ``steps`` change the machine.
"""
