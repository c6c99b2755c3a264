"""In-guest steps the Proxmox provider cannot do, run through the node's shell with ``pct``.

The node is reachable wherever its API is, while the guests sit behind their router,
so every step is an SSH command to the node that enters the guest with ``pct``.
Each step's trigger is the hash of what it writes: it reruns only when that changes.

A service plan (``zlh_infra/services``) runs as two steps, install then configure
(``converge_service``); a step is replaced with its guest, since a new container starts
from nothing.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from zlh_infra.services.plan import Gateway, ServicePlan, configure_script, install_script


@dataclass(frozen=True, slots=True)
class NodeShell:
    """SSH access to a Proxmox node (root, or a user allowed to run ``pct``).

    ``host_key`` pins the node: a step refuses to run anywhere else, so neither a
    spoofed address nor a stack pointed at the wrong host gets root commands.
    """

    address: str
    user: str
    host_key: str
    private_key: pulumi.Input[str] | None = None

    def connection(self) -> command.remote.ConnectionArgs:
        return command.remote.ConnectionArgs(
            host=self.address,
            user=self.user,
            host_key=self.host_key,
            private_key=pulumi.Output.secret(self.private_key) if self.private_key else None,
        )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _hashed_step(
    name: str,
    *,
    shell: NodeShell,
    create: str,
    content: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    on_stdin: bool = True,
) -> command.remote.Command:
    """A node-shell step rerun exactly when ``content`` changes (its trigger is its hash)."""
    return command.remote.Command(
        name,
        connection=shell.connection(),
        create=create,
        stdin=content if on_stdin else None,
        triggers=[pulumi.Output.from_input(content).apply(_sha256)],
        logging=command.remote.Logging.STDERR,
        opts=opts,
    )


def write_guest_file(
    name: str,
    *,
    shell: NodeShell,
    vmid: int,
    path: str,
    content: pulumi.Input[str],
    after: str = "",
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> command.remote.Command:
    """Write ``content`` to ``path`` inside container ``vmid``, then run ``after`` there.

    The content travels on stdin, so it never appears in the command line or its log.
    """
    directory = path.rsplit("/", 1)[0] or "/"
    script = f"mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(path)}"
    if after:
        script += f" && {after}"
    return _hashed_step(
        name,
        shell=shell,
        create=f"pct exec {vmid} -- sh -c {shlex.quote(script)}",
        content=content,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )


def run_in_base_image(
    name: str,
    *,
    shell: NodeShell,
    vmid: int,
    script: pulumi.Input[str],
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    replace_with: Sequence[pulumi.Resource] = (),
) -> command.remote.Command:
    """Start base image ``vmid``, run ``script`` in it, and shut it down again.

    Base images stay stopped so that clones copy a quiet file system; they run only
    for the time an image step takes. A script holding a secret comes as a secret Output:
    it travels on stdin, never in the command line.
    """
    # The script waits (bounded) for the package mirrors itself.
    wrapped = (
        "set -eu; "
        f"pct start {vmid}; "
        f"trap 'pct shutdown {vmid} --timeout 60' EXIT; "
        f"pct exec {vmid} -- sh -eu"
    )
    return _hashed_step(
        name,
        shell=shell,
        create=f"sh -c {shlex.quote(wrapped)}",
        content=script,
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=list(depends_on), replace_with=list(replace_with)
        ),
    )


def node_command(
    name: str,
    *,
    shell: NodeShell,
    script: str,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    replace_with: Sequence[pulumi.Resource] = (),
) -> command.remote.Command:
    """Run ``script`` in the node's own shell (``pct`` work on a guest from outside)."""
    return _hashed_step(
        name,
        shell=shell,
        create=f"sh -eu -c {shlex.quote(script)}",
        content=script,
        on_stdin=False,
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=list(depends_on), replace_with=list(replace_with)
        ),
    )


def read_from_guest(
    name: str,
    *,
    shell: NodeShell,
    vmid: int,
    command_line: str,
    parent: pulumi.Resource,
    after: pulumi.Resource,
    secret: bool = False,
) -> command.remote.Command:
    """Run ``command_line`` in container ``vmid`` and keep what it prints (``stdout``).

    It reruns whenever ``after`` (the step that made what it reads) is replaced, which is
    whenever that step reruns or its guest is rebuilt. ``secret``: the output is a
    secret, marked so in the state and never logged.
    """
    return command.remote.Command(
        name,
        connection=shell.connection(),
        create=f"pct exec {vmid} -- sh -c {shlex.quote(command_line)}",
        logging=command.remote.Logging.STDERR,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[after],
            replace_with=[after],
            additional_secret_outputs=["stdout"] if secret else None,
        ),
    )


def _step(
    name: str,
    *,
    shell: NodeShell,
    vmid: int,
    script: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> command.remote.Command:
    return _hashed_step(
        name, shell=shell, create=f"pct exec {vmid} -- sh -eu", content=script, opts=opts
    )


def converge_service(
    name: str,
    *,
    shell: NodeShell,
    vmid: int,
    plans: Sequence[ServicePlan] | pulumi.Output[Sequence[ServicePlan]],
    gateway: Gateway,
    parent: pulumi.Resource,
    guest: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    secret: bool | None = None,
) -> command.remote.Command:
    """Install and configure ``plans`` (a guest's services) in container ``vmid``.

    Returns the configure step, which ends with every plan's health check. Plans built
    from secrets come as an Output: the configure script stays secret, and the install
    script (packages only) is unsecreted, so diffs show what it installs. ``secret=False``
    for plans that are an Output only because they wait for a value that is no secret (a
    public key read from a guest); a secret they were built from stays secret regardless.
    """
    planned: pulumi.Output[Sequence[ServicePlan]] = pulumi.Output.from_input(plans)
    opts = pulumi.ResourceOptions(parent=parent, replace_with=[guest])
    install = _step(
        f"{name}-install",
        shell=shell,
        vmid=vmid,
        script=pulumi.Output.unsecret(planned.apply(lambda p: install_script(p, gateway))),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[guest])),
    )
    script = planned.apply(configure_script)
    return _step(
        f"{name}-configure",
        shell=shell,
        vmid=vmid,
        script=pulumi.Output.secret(script)
        if (isinstance(plans, pulumi.Output) if secret is None else secret)
        else script,
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[install, *depends_on])
        ),
    )
