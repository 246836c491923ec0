"""Policy decisions on the demo capture with a real register."""

from __future__ import annotations

import pytest

from sluice.decide import RegisterLookup, replay_captures
from sluice.detect.combiner import Combiner
from sluice.detect.verdict import DETECTABLE_CLASSES
from sluice.flows.record import FlowRecord
from sluice.policy import (
    DEFAULT_RULE,
    Action,
    Decision,
    Mode,
    default_policy,
    parse_policy,
)
from sluice.registry import Match, Matcher

from .conftest import DEMO, demo_analysis


def flow_matches(matcher: Matcher, rec: FlowRecord) -> list[Match]:
    return RegisterLookup(matcher).for_flow(rec)


def _decide_all(text: str, matcher: Matcher, dry_run: bool = False) -> dict[str, Decision]:
    pol = parse_policy(text)
    out = {}
    for fv in demo_analysis().flows:
        d = pol.decide(
            fv.record, fv.verdict, flow_matches(matcher, fv.record), now=fv.record.first_ts, dry_run=dry_run
        )
        out[f"{fv.record.flow_id}:{fv.record.meta.server_name}"] = d
    return out


def test_default_policy_blocks_register_names_and_logs_findings(matcher: Matcher) -> None:
    pol = default_policy()
    by_name: dict[str, list[Decision]] = {}
    for fv in demo_analysis().flows:
        d = pol.decide(fv.record, fv.verdict, flow_matches(matcher, fv.record), now=fv.record.first_ts)
        by_name.setdefault(fv.record.meta.server_name, []).append(d)
        if d.rule == "register-block":
            assert d.action is Action.BLOCK and d.enforced
            ref = d.register[0]
            assert ref.source == "testlist" and ref.kind == "domain" and ref.reason == "domain.exact"
            assert ref.basis == ("testlist",)  # a hosts list's authority is the list itself
        elif fv.verdict.label in DETECTABLE_CLASSES:
            assert (d.rule, d.action) == ("findings-log", Action.LOG)
            assert d.evidence and d.evidence[0].startswith(fv.verdict.evidence[0].code)
        else:
            assert (d.rule, d.action, d.rule_index) == (DEFAULT_RULE, Action.ALLOW, -1)
    blocked = {n for n, ds in by_name.items() if any(d.action is Action.BLOCK for d in ds)}
    assert blocked == {"psiphon.ca", "thepiratebay.org"}
    # not in the register: the catalogue names the service (a DNS query for Lantern's domain), and
    # the default policy only logs findings: getlantern.org passes
    assert {d.action for d in by_name["getlantern.org"]} == {Action.LOG}
    assert {d.family for d in by_name["getlantern.org"]} == {"lantern"}
    psiphon = by_name["psiphon.ca"][0]
    assert (psiphon.verdict_class, psiphon.family) == ("circumvention", "psiphon")
    assert psiphon.flow_key.startswith("udp ") and psiphon.flow_key.endswith(":53")


def test_without_register_matches_nothing_is_blocked() -> None:
    pol = default_policy()
    actions = {pol.decide(fv.record, fv.verdict, ()).action for fv in demo_analysis().flows}
    assert actions == {Action.ALLOW, Action.LOG}


def test_shadow_mode_decides_but_does_not_enforce(matcher: Matcher) -> None:
    text = """
[[rule]]
name = "try-block"
register = true
action = "block"
mode = "shadow"

[[rule]]
name = "block-socks"
family = ["socks*"]
action = "reset"
"""
    ds = _decide_all(text, matcher)
    shadow = [d for d in ds.values() if d.rule == "try-block"]
    assert len(shadow) == 2
    assert all(d.mode is Mode.SHADOW and not d.enforced and d.action is Action.BLOCK for d in shadow)
    socks = [d for d in ds.values() if d.rule == "block-socks"]
    assert len(socks) == 1 and socks[0].enforced and socks[0].family == "socks"
    # a whole policy can be put in shadow mode with one top-level key
    top = _decide_all('mode = "shadow"\n' + text.replace('mode = "shadow"', ""), matcher)
    assert all(not d.enforced for d in top.values())
    # a dry run enforces nothing, whatever the mode
    assert not any(d.enforced for d in _decide_all(text, matcher, dry_run=True).values())


def test_conditions_host_sni_ports_proto_confidence_and_register(matcher: Matcher) -> None:
    text = """
[[rule]]
name = "throttle-video"
sni = ["*.youtube.com", "i.ytimg.com"]
proto = "udp"
ports = ["400-500"]
action = "throttle"
rate_kbit = 512

[[rule]]
name = "piratebay-by-source"
register_source = ["test*"]
register_kind = "domain"
register_authority = ["TESTLIST"]
action = "block"

[[rule]]
name = "dns-of-wikipedia"
host = "*.wikipedia.org"
app = ["dns"]
ports = [53]
action = "log"

[[rule]]
name = "sure-tunnels"
class = "tunnel"
min_confidence = 0.9
action = "reset"

[[rule]]
name = "unsure-anything"
register = false
min_confidence = 0.99
action = "block"
"""
    ds = _decide_all(text, matcher)
    rules = {k: d.rule for k, d in ds.items()}
    assert rules["3:www.youtube.com"] == "throttle-video" and ds["3:www.youtube.com"].rate_kbit == 512
    assert rules["5:i.ytimg.com"] == "throttle-video"
    assert rules["4:i.ytimg.com"] == DEFAULT_RULE  # the DNS query: no SNI
    assert rules["47:thepiratebay.org"] == "piratebay-by-source"
    assert rules["0:www.wikipedia.org"] == "dns-of-wikipedia"
    assert rules["1:www.wikipedia.org"] == DEFAULT_RULE  # TLS on 443, not DNS
    tunnels = [d for d in ds.values() if d.verdict_class == "tunnel"]
    assert tunnels and all(d.rule == "sure-tunnels" for d in tunnels)
    assert "unsure-anything" not in rules.values()


def test_register_authority_that_does_not_match_excludes_the_rule(matcher: Matcher) -> None:
    ds = _decide_all('[[rule]]\nname = "court"\nregister_authority = ["суд"]\naction = "block"\n', matcher)
    assert {d.rule for d in ds.values()} == {DEFAULT_RULE}


def test_first_matching_rule_wins_and_replay_counts(matcher: Matcher) -> None:
    text = """
[default]
action = "log"

[[rule]]
name = "dns"
app = "dns"
action = "allow"

[[rule]]
name = "register"
register = true
action = "block"
"""
    res = replay_captures(parse_policy(text), [str(DEMO)], Combiner(None), register=matcher)
    counts = {r.name: (r.decided, r.matched) for r in res.rules}
    n_dns = sum(1 for fv in demo_analysis().flows if fv.record.meta.app == "dns")
    # both register names appear only as DNS queries in the demo: the earlier rule takes them
    assert counts["dns"] == (n_dns, n_dns)
    assert counts["register"] == (0, 2)
    assert counts[DEFAULT_RULE][0] == len(res.decisions) - n_dns
    assert sum(res.by_action.values()) == len(res.decisions) == len(demo_analysis().flows)
    assert not any(d.enforced for d in res.decisions)


def test_decision_round_trips_through_its_dict(matcher: Matcher) -> None:
    for d in _decide_all(default_policy_text_for_test(), matcher).values():
        assert Decision.from_dict(d.to_dict()) == d


def default_policy_text_for_test() -> str:
    from sluice.policy import default_policy_text

    return default_policy_text()


@pytest.mark.parametrize("name", ["psiphon.ca", "PSIPHON.CA.", "www.psiphon.ca", "a.b.psiphon.ca"])
def test_mask_glob_matches_the_domain_and_below(name: str) -> None:
    from sluice.policy.loader import _glob

    assert _glob("*.psiphon.ca", host=True).fullmatch(name.lower().rstrip("."))
    assert not _glob("*.psiphon.ca", host=True).fullmatch("notpsiphon.ca")
