"""The Decider's register lookup serves ``register = "proposed"`` rules: the gateway, ``policy test``
and ``analyze --decisions`` see entries under review (shadow only) from the same store."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sluice.cli.analyze import analyze
from sluice.cli.policy import policy
from sluice.decide import open_register, replay_captures
from sluice.detect.combiner import Combiner
from sluice.gateway.engine import GatewayEngine
from sluice.gateway.rules import MARK_ALLOW
from sluice.io.capture import open_capture
from sluice.policy import Action, Mode, parse_policy
from sluice.registry import Kind, open_store
from sluice.registry.model import Proposal
from sluice.registry.proposals import accept, propose
from tests.policy.conftest import DEMO

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


def _store(tmp_path: Path) -> tuple[str, int]:
    db = str(tmp_path / "reg.db")
    store = open_store(db, create=True)
    try:
        pid = propose(store, Proposal(Kind.DOMAIN, "psiphon.ca", "vpn-services", "Psiphon's domain"))
    finally:
        store.close()
    return db, pid


def test_gateway_and_dry_run_apply_proposed_rules_in_shadow(tmp_path: Path) -> None:
    db, pid = _store(tmp_path)
    pol = parse_policy(SHADOW)
    register = open_register(db)
    assert (len(register), register.proposals) == (0, 1)
    eng = GatewayEngine(pol, register, None, detector=Combiner(None))
    inline = []
    with open_capture(DEMO) as cap:
        for raw in cap:
            v = eng.handle(bytes(raw.data), raw.linktype, raw.ts)
            if v.decision is not None and v.decision.server_name == "psiphon.ca":
                inline.append((v.mark, v.decision))
    assert inline and all(m == MARK_ALLOW for m, _d in inline)  # shadow: nothing enforced
    for _m, d in inline:
        assert (d.rule, d.action, d.mode, d.enforced) == ("proposed-vpn", Action.BLOCK, Mode.SHADOW, False)
        assert [(r.source, r.indicator) for r in d.register] == [("proposals:vpn-services", "psiphon.ca")]
    res = replay_captures(pol, [str(DEMO)], Combiner(None), register=register)
    dry = [d for d in res.decisions if d.server_name == "psiphon.ca"]
    assert [d.rule for d in dry] == [d.rule for _m, d in inline] and not any(d.enforced for d in dry)
    # the default decision of other flows does not cite an entry under review
    assert all(not d.register for d in res.decisions if d.rule == "(default)")
    # accepted, it is a register entry: the enforcing rule takes it
    store = open_store(db)
    try:
        accept(store, [pid], reviewer="alice", reason="confirmed")
    finally:
        store.close()
    res = replay_captures(pol, [str(DEMO)], Combiner(None), register=open_register(db))
    assert {d.rule for d in res.decisions if d.server_name == "psiphon.ca"} == {"register-block"}


def test_policy_test_and_analyze_decisions_read_proposals(tmp_path: Path) -> None:
    db, _ = _store(tmp_path)
    p = tmp_path / "p.toml"
    p.write_text(SHADOW)
    for cmd, args in (
        (policy, ["test", str(p), str(DEMO)]),
        (analyze, [str(DEMO), "--decisions", "--policy", str(p)]),
    ):
        res = CliRunner().invoke(cmd, [*args, "--register", db, "--no-model"])
        assert res.exit_code == 0, res.output
        rows = [x for x in res.output.splitlines() if "psiphon.ca" in x]
        assert rows and all("proposed-vpn" in x and "(shadow)" in x for x in rows), res.output
        assert "register:proposals:vpn-services:psiphon.ca" in rows[0]
