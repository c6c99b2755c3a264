from zlh_infra.platform import urns


def test_a_name_may_hold_the_separator() -> None:
    parsed = urns.parse("urn:pulumi:runtime::zlh-infra::zlh:edge:Edge$proxmoxve:index/x:X::a::b")
    assert parsed == urns.Urn("runtime", "zlh-infra", "zlh:edge:Edge$proxmoxve:index/x:X", "a::b")
    assert parsed.type_chain == ["zlh:edge:Edge", "proxmoxve:index/x:X"]
    assert parsed.type == "proxmoxve:index/x:X"


def test_what_is_not_a_urn_parses_to_nothing() -> None:
    assert urns.parse("zlh-runtime") is None
    assert urns.parse("urn:pulumi:s::p::t") is None
