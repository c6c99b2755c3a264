"""Small Pulumi programs that register real provider resources, for the preview's tests."""

from __future__ import annotations

import pulumi
import pulumi_proxmoxve as pve
import pulumi_random as random

STACK = "urn:pulumi:{stack}::zlh-infra::pulumi:pulumi:Stack::zlh-infra-{stack}"
CONTAINER = "proxmoxve:index/containerLegacy:ContainerLegacy"
PASSWORD = "random:index/randomPassword:RandomPassword"
API_TOKEN = "root@pam!preview=not-a-real-token-0f3c"


class Layer(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("zlh:platform:Layer", name, None, opts)


class Service(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("zlh:platform:Service", name, None, opts)
        self.register_outputs({})


def container(
    name: str,
    vmid: int,
    address: pulumi.Input[str],
    *,
    node: str = "zlh-core",
    opts: pulumi.ResourceOptions | None = None,
    password: pulumi.Input[str] | None = None,
) -> pve.ContainerLegacy:
    return pve.ContainerLegacy(
        name,
        node_name=node,
        vm_id=vmid,
        tags=["layer-control-plane", "role-core-infra", "zlh"],
        initialization=pve.ContainerLegacyInitializationArgs(
            hostname=name,
            ip_configs=[
                pve.ContainerLegacyInitializationIpConfigArgs(
                    ipv4=pve.ContainerLegacyInitializationIpConfigIpv4Args(
                        address=address, gateway="10.10.0.1"
                    )
                )
            ],
            user_account=(
                pve.ContainerLegacyInitializationUserAccountArgs(password=password)
                if password is not None
                else None
            ),
        ),
        opts=opts,
    )


def nested_platform() -> None:
    """Provider, Layer -> Service -> (password, container), a StackReference and exports."""
    config = pulumi.Config("zlh-infra")
    provider = pve.Provider(
        "core-host",
        endpoint="https://zlh-core.example.net:8006/",
        api_token=pulumi.Output.secret(API_TOKEN),
    )
    layer = Layer("control-plane")
    service = Service("api", opts=pulumi.ResourceOptions(parent=layer))
    password = random.RandomPassword(
        "api-root", length=24, opts=pulumi.ResourceOptions(parent=service)
    )
    base = container(
        "zpack-db", 102, "10.10.0.12/24", opts=pulumi.ResourceOptions(provider=provider)
    )
    api = container(
        "zpack-api",
        100,
        "10.10.0.10/24",
        password=password.result,
        opts=pulumi.ResourceOptions(
            parent=service,
            provider=provider,
            depends_on=[base],
            protect=True,
            ignore_changes=["description"],
            delete_before_replace=True,
            retain_on_delete=True,
            replace_on_changes=["vmId"],
            custom_timeouts=pulumi.CustomTimeouts(create="5m", delete="1h30m"),
            aliases=[pulumi.Alias(name="old-api")],
        ),
    )
    core = pulumi.StackReference("core", stack_name=config.get("coreStack") or "core")
    pulumi.export("apiPassword", password.result)
    pulumi.export("apiVmid", api.vm_id)
    pulumi.export("pbsPassword", core.get_output("pbsPassword"))
    pulumi.export("coreNode", core.get_output("coreNode"))
    pulumi.export("greeting", config.get("greeting"))
