"""``register = "proposed"``: rules on entries under review, allowed in shadow mode only."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sluice.decide import RegisterLookup
from sluice.flows.record import FlowRecord
from sluice.policy import Action, Mode, PolicyError, check_policy, parse_policy
from sluice.registry import Kind, Match, Matcher, open_store
from sluice.registry.model import Proposal
from sluice.registry.proposals import accept, propose, proposed_matcher

from .conftest import demo_analysis


def flow_matches(matcher: Matcher, rec: FlowRecord) -> list[Match]:
    return RegisterLookup(matcher).for_flow(rec)


ENFORCED = """\
version = 1

[[rule]]
name = "proposed-vpn"
register = "proposed"
action = "block"
"""

SHADOW = """\
[[rule]]
name = "register-block"
register = true
action = "block"

[[rule]]
name = "proposed-vpn"
register = "proposed"
register_source = ["proposals:*"]
action = "block"
mode = "shadow"
"""


def test_proposed_rule_refused_unless_shadow() -> None:
    with pytest.raises(PolicyError) as ei:
        parse_policy(ENFORCED, "p.toml")
    [issue] = ei.value.issues
    assert (issue.line, issue.reason, issue.rule_name, issue.key) == (
        5,
        "policy.proposed_not_shadow",
        "proposed-vpn",
        "register",
    )
    assert 'mode = "shadow"' in str(ei.value) and str(ei.value).startswith("p.toml:5: rule #1")
    # explicit enforce is refused too; shadow from the top level is enough
    with pytest.raises(PolicyError):
        parse_policy(ENFORCED + 'mode = "enforce"\n')
    pol = parse_policy('mode = "shadow"\n' + ENFORCED.replace("version = 1\n", ""))
    assert pol.rules[0].proposed and pol.rules[0].mode is Mode.SHADOW and pol.rules[0].register is None
    _, issues = check_policy(ENFORCED.replace('"proposed"', '"maybe"'))
    assert [i.reason for i in issues] == ["policy.bad_type"]


@given(st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.lists(st.booleans(), max_size=2)))
@example("proposed")
@example("Proposed")
def test_register_values_fuzz(value: object) -> None:
    for mode in ("shadow", "enforce"):
        text = f'[[rule]]\nname = "r"\naction = "log"\nmode = "{mode}"\nregister = {_toml(value)}\n'
        pol, issues = check_policy(text)
        if value == "proposed" and mode == "shadow":
            assert pol is not None and pol.rules[0].proposed
        elif isinstance(value, bool):
            assert pol is not None and pol.rules[0].register is value and not pol.rules[0].proposed
        else:
            assert pol is None and issues and issues[0].line == 5


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in value) + '"'
    return str(value)


def test_proposed_entries_match_only_proposed_rules(tmp_path: Path) -> None:
    store = open_store(tmp_path / "reg.db", create=True)
    try:
        pid = propose(store, Proposal(Kind.DOMAIN, "psiphon.ca", "vpn-services", "Psiphon's domain"))
        pol = parse_policy(SHADOW)
        register = Matcher.from_store(store)
        under_review = proposed_matcher(store)
        flows = [fv.record for fv in demo_analysis().flows if fv.record.meta.server_name == "psiphon.ca"]
        assert flows
        for rec in flows:
            d = pol.decide(rec, None, flow_matches(register, rec) + flow_matches(under_review, rec))
            assert (d.rule, d.action, d.mode, d.enforced) == (
                "proposed-vpn",
                Action.BLOCK,
                Mode.SHADOW,
                False,
            )
            assert [(r.source, r.indicator) for r in d.register] == [("proposals:vpn-services", "psiphon.ca")]
        other = next(fv.record for fv in demo_analysis().flows if fv.record.meta.server_name != "psiphon.ca")
        assert pol.decide(other, None, flow_matches(under_review, other)).rule == "(default)"
        # accepted, it is a register entry: the enforcing rule takes it, the proposed rule no longer does
        accept(store, [pid], reviewer="alice", reason="confirmed")
        register, under_review = Matcher.from_store(store), proposed_matcher(store)
        d = pol.decide(
            flows[0], None, flow_matches(register, flows[0]) + flow_matches(under_review, flows[0])
        )
        assert (d.rule, d.enforced) == ("register-block", True)
    finally:
        store.close()
