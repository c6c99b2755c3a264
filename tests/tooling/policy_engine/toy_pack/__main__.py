"""Toy policy pack: one policy of each kind the offline runner must handle."""

import sys

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ResourceValidationPolicy,
    Secret,
    StackValidationPolicy,
)

GUEST = "toy:index:Guest"
PROBE = "toy:index:Probe"


def vmid_range(args, report_violation):
    if args.resource_type != GUEST:
        return
    config = args.get_config()
    low, high = int(config["minVmId"]), int(config["maxVmId"])
    vmid = int(args.props["vmId"])
    if not low <= vmid <= high:
        report_violation(f"VM ID {vmid} is outside {low}-{high}.", None)


def description_required(args, report_violation):
    if args.resource_type == GUEST and not args.props.get("description"):
        report_violation(f"{args.name} has no description.", None)


def provider_https(args, report_violation):
    if args.provider is None:
        return
    endpoint = args.provider.props.get("endpoint", "")
    if not endpoint.startswith("https://"):
        report_violation(f"provider {args.provider.name} uses {endpoint!r}.", None)


def explode(args, report_violation):
    if args.name == "boom":
        raise RuntimeError("the explode policy blew up on purpose")


def probe(args, report_violation):
    if args.resource_type != PROBE:
        return
    # pulumi_policy hands Analyze plain values, secrets included.
    report_violation(f"password={args.props['password']!r}", None)
    # Reading an unknown raises; the pack turns that into an advisory note.
    args.props["address"]


def tag_secrets(args):
    # Only Remediate sees secrets wrapped as pulumi_policy.Secret.
    raw = args.props["__target"]
    keys = sorted(k for k, v in raw.items() if isinstance(v, Secret))
    if keys:
        return {**raw, "secretKeys": keys}
    return None


def internal_keys_seen(args, report_violation):
    if args.resource_type == PROBE:
        keys = sorted(k for k in args.props if k.startswith("__"))
        report_violation(f"Analyze sees internal keys {keys}", None)


def internal_keys_kept(args):
    # The engine keeps "__" inputs for Remediate only.
    if args.resource_type != PROBE:
        return None
    raw = args.props["__target"]
    return {**raw, "internalKeys": sorted(k for k in raw if k.startswith("__"))}


def trace(args, report_violation):
    # Anything a pack prints reaches the engine as an info message.
    # One write per line: several resources are analysed at once.
    sys.stderr.write(f"analyzed {args.resource_type} {args.name}\n")


def unique_vmids(args, report_violation):
    seen: dict[float, str] = {}
    for res in args.resources:
        if res.resource_type != GUEST:
            continue
        vmid = res.props.get("vmId")
        if vmid in seen:
            report_violation(
                f"VM ID {vmid:g} is used by {seen[vmid]} and {res.name}.", res.urn
            )
        else:
            seen[vmid] = res.name
    guests = [r for r in args.resources if r.resource_type == GUEST]
    for res in guests:
        if res.parent is None or res.parent.resource_type != "toy:index:Host":
            # No URN: the engine files it under the root stack.
            report_violation(f"{res.name} is not parented to a host.", None)


PolicyPack(
    name="toy-pack",
    enforcement_level=EnforcementLevel.ADVISORY,
    initial_config={
        "vmid-range": {"enforcementLevel": EnforcementLevel.MANDATORY, "maxVmId": 899},
    },
    policies=[
        ResourceValidationPolicy(
            name="vmid-range",
            description="Guests use VM IDs from the configured range.",
            validate=vmid_range,
            enforcement_level=EnforcementLevel.MANDATORY,
            config_schema=PolicyConfigSchema(
                properties={
                    "minVmId": {"type": "integer", "minimum": 100, "default": 100},
                    "maxVmId": {"type": "integer", "default": 999},
                },
            ),
        ),
        ResourceValidationPolicy(
            name="description-required",
            description="Guests carry a description.",
            validate=description_required,
        ),
        ResourceValidationPolicy(
            name="provider-https",
            description="Providers talk HTTPS.",
            validate=provider_https,
        ),
        ResourceValidationPolicy(
            name="explode",
            description="Crashes on a resource named boom.",
            validate=explode,
        ),
        ResourceValidationPolicy(
            name="probe",
            description="Shows what a policy sees of secrets and unknowns.",
            validate=probe,
        ),
        ResourceValidationPolicy(
            name="tag-secrets",
            description="Lists secret inputs in secretKeys.",
            remediate=tag_secrets,
        ),
        ResourceValidationPolicy(
            name="internal-keys",
            description="Shows which internal inputs Analyze and Remediate get.",
            validate=internal_keys_seen,
            remediate=internal_keys_kept,
            enforcement_level=EnforcementLevel.DISABLED,
        ),
        ResourceValidationPolicy(
            name="trace",
            description="Prints every resource it is shown.",
            validate=trace,
            enforcement_level=EnforcementLevel.DISABLED,
        ),
        StackValidationPolicy(
            name="unique-vmids",
            description="VM IDs are unique and guests sit under a host.",
            validate=unique_vmids,
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
    ],
)
