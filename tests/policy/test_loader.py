"""Policy files: every error names its rule and its line; the shipped policy is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sluice.errors import ConfigError
from sluice.policy import Action, Mode, PolicyError, check_policy, default_policy_text, load_policy
from sluice.policy.loader import REGISTER_KINDS
from sluice.registry import Kind

BAD = """\
version = 1

[default]
action = "allow"

[[rule]]
name = "a"
actoin = "block"

[[rule]]
name = "b"
action = "throttle"

[[rule]]
name = "c"
host = ["*.ok.example", "bad host"]
action = "explode"
ports = [443, "1-x"]
proto = ["tcp", "carrier-pigeon"]

[[rule]]
name = "a"
action = "log"
rate_kbit = 10
register_kind = ["domain", "nope"]
min_confidence = 1.5
[rule.extra]
x = 1

[[rule]]
action = "block"
mode = "sometimes"
"""


def test_every_problem_is_reported_with_rule_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(BAD)
    with pytest.raises(PolicyError) as ei:
        load_policy(p)
    got = [(i.line, i.reason, i.rule_index, i.rule_name, i.key) for i in ei.value.issues]
    assert got == [
        (6, "policy.missing_action", 0, "a", ""),
        (8, "policy.unknown_key", 0, "a", "actoin"),
        (12, "policy.throttle_without_rate", 1, "b", "action"),
        (16, "policy.bad_pattern", 2, "c", "host"),
        (17, "policy.bad_action", 2, "c", "action"),
        (18, "policy.bad_port", 2, "c", "ports"),
        (19, "policy.bad_proto", 2, "c", "proto"),
        (22, "policy.duplicate_name", 3, "a", "name"),
        (24, "policy.rate_without_throttle", 3, "a", "rate_kbit"),
        (25, "policy.bad_kind", 3, "a", "register_kind"),
        (26, "policy.bad_confidence", 3, "a", "min_confidence"),
        (27, "policy.unknown_key", 3, "a", "extra"),
        (30, "policy.missing_name", 4, "", ""),
        (32, "policy.bad_mode", 4, "", "mode"),
    ]
    assert isinstance(ei.value, ConfigError)
    text = str(ei.value)
    assert f"{p}:8: rule #1 'a': unknown key 'actoin' (did you mean 'action'?) [policy.unknown_key]" in text
    assert ei.value.line == 6


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('version = 1\n[[rule]]\nname = "x"\naction = block\n', 4, "policy.syntax"),
        ("version = 2\n", 1, "policy.bad_version"),
        ('colour = "red"\n[[rule]]\nname = "x"\naction = "log"\n', 1, "policy.unknown_key"),
        ('[default]\naction = "throttle"\n', 2, "policy.throttle_without_rate"),
        ('[default]\naction = "throttle"\nrate_kbit = 0\n', 3, "policy.bad_rate"),
        ('\n\n[[rule]]\nname = "x"\n"sni" = [""]\naction = "log"\n', 5, "policy.bad_pattern"),
        ('[[rule]]\nname = "x"\nhost = ["a..b"]\naction = "log"\n', 3, "policy.bad_pattern"),
        ('[[rule]]\nname = "x"\nfamily = 3\naction = "log"\n', 3, "policy.bad_type"),
        ('[[rule]]\nname = "x"\nclass = ["vpn", "evil"]\naction = "log"\n', 3, "policy.bad_class"),
        ('[[rule]]\nname = "x"\nregister = "yes"\naction = "log"\n', 3, "policy.bad_type"),
        ('[[rule]]\nname = "x"\ndescription = """\nname = 1\n"""\nactoin = "log"\n', 6, "policy.unknown_key"),
    ],
)
def test_single_errors(text: str, line: int, reason: str) -> None:
    pol, issues = check_policy(text, "p.toml")
    assert pol is None
    assert (line, reason) in [(i.line, i.reason) for i in issues], issues


def test_valid_policy_parses_to_typed_rules() -> None:
    pol, issues = check_policy(
        'mode = "shadow"\n[default]\naction = "reset"\n[[rule]]\nname = "t"\naction = "throttle"\n'
        'rate_kbit = 256\nports = [443, "8000-8080"]\nproto = ["udp", 6]\nmode = "enforce"\n'
        '[[rule]]\nname = "s"\naction = "block"\n'
    )
    assert not issues and pol is not None
    t, s = pol.rules
    assert (t.action, t.rate_kbit, t.mode, t.line) == (Action.THROTTLE, 256, Mode.ENFORCE, 4)
    assert t.ports == ((443, 443), (8000, 8080)) and t.proto == frozenset({17, 6})
    assert (s.mode, s.line) == (Mode.SHADOW, 11)
    assert (pol.default.action, pol.default.mode) == (Action.RESET, Mode.SHADOW)
    assert len(pol.digest) == 16


def test_shipped_policy_is_valid_and_says_what_the_issue_asks() -> None:
    pol, issues = check_policy(default_policy_text(), "default.toml")
    assert not issues and pol is not None
    assert [(r.name, r.action, r.register) for r in pol.rules] == [
        ("register-block", Action.BLOCK, True),
        ("findings-log", Action.LOG, None),
    ]
    assert pol.rules[1].classes == frozenset({"vpn", "proxy", "circumvention", "tunnel", "crypto"})
    assert pol.default.action is Action.ALLOW


def test_register_kinds_are_the_registers() -> None:
    """Every kind a flow can match; wallets (addresses found in content) are not one."""
    assert set(REGISTER_KINDS) == {k.value for k in Kind} - {"wallet"}


@given(cut=st.integers(0, 2000), tail=st.text(max_size=60))
@example(cut=10, tail="[[rule]]\n[rule]\n")
@example(cut=0, tail='[[rule]]\nname = "x"\naction = "log"\n[rule.a.b]\n')
@example(cut=0, tail="rule = 1")
@example(cut=0, tail="default = []")
@example(cut=0, tail="rule = [1]")
def test_any_text_gives_a_policy_or_issues(cut: int, tail: str) -> None:
    text = default_policy_text()[:cut] + tail
    pol, issues = check_policy(text)
    assert (pol is None) == bool(issues)
    assert all(i.line >= 0 and i.reason.startswith("policy.") for i in issues)


def test_policy_size_is_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sluice policy check /dev/zero` grew to 24 GB: a policy is read within a limit."""
    import tracemalloc

    from sluice.io.limits import MAX_POLICY_BYTES

    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (MAX_POLICY_BYTES // 10 + 1))
    for path in (big, Path("/dev/zero")):
        tracemalloc.start()
        try:
            with pytest.raises(PolicyError) as exc:
                load_policy(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert exc.value.reason == "policy.too_large" and "SLUICE_MAX_POLICY_BYTES" in str(exc.value)
        assert peak < 3 * MAX_POLICY_BYTES
    monkeypatch.setenv("SLUICE_MAX_POLICY_BYTES", str(2 * MAX_POLICY_BYTES))
    try:
        load_policy(big)  # read now (only comments: no rules, the default applies)
    except PolicyError as err:
        assert err.reason != "policy.too_large"
