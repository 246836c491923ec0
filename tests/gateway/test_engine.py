"""The gateway engine on real packets (no root): TLS from OpenSSL, QUIC from aioquic, HTTP."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.decisions import DecisionLog, read_decisions
from sluice.gateway.engine import GatewayEngine, mark_for
from sluice.gateway.rules import MARK_ALLOW, MARK_DROP, MARK_RESET
from sluice.policy import parse_policy
from sluice.registry import Matcher
from sluice.synth.payloads import http_request, quic_exchange, tls_exchange
from sluice.synth.sessions import RawIpFraming, TcpSession, UdpExchange

C4, S4, BLOCKED_IP = "10.9.0.2", "10.9.1.2", "10.9.1.66"

POLICY = """
[[rule]]
name = "register-block"
action = "block"
register = true

[[rule]]
name = "refuse-quic-to-bad"
action = "reset"
app = "quic"
sni = "*.bad.example"

[[rule]]
name = "watch"
action = "block"
mode = "shadow"
host = "watched.example"
"""


def _matcher() -> Matcher:
    return Matcher(
        [
            ("test-list", "domain", "blocked.example", "[]"),
            ("test-list", "ip", BLOCKED_IP, "[]"),
        ]
    )


def _engine(log: DecisionLog | None = None) -> GatewayEngine:
    return GatewayEngine(parse_policy(POLICY, "<test>"), _matcher(), log, decide_after=10, capture="t")


def _tls_packets(sni: str, server: str = S4, port: int = 50000) -> list[bytes]:
    ex = tls_exchange(sni, version="1.3", alpn=("h2",))
    s = TcpSession((C4, port), (server, 443), start_ts=1.0, rng=random.Random(1), framing=RawIpFraming())
    for from_client, data in ex.messages:
        (s.client_send if from_client else s.server_send)(data)
    s.close()
    return [fr for _, fr in s.packets]


def _verdicts(engine: GatewayEngine, packets: list[bytes]) -> list[int]:
    return [engine.handle(p).mark for p in packets]


def test_registered_sni_is_dropped_once_the_client_hello_is_seen(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "log") as log:
        eng = _engine(log)
        marks = _verdicts(eng, _tls_packets("blocked.example"))
        other = _verdicts(eng, _tls_packets("fine.example", port=50001))
    # handshake packets pass unmarked; the ClientHello carries the decision; later ones repeat it
    first = next(i for i, m in enumerate(marks) if m)
    assert first >= 2 and set(marks[:first]) == {0} and set(marks[first:]) == {MARK_DROP}
    assert MARK_ALLOW in other and MARK_DROP not in other
    decs = list(read_decisions(tmp_path / "log"))
    assert [(d.server_name, d.action.value, d.rule) for d in decs] == [
        ("blocked.example", "block", "register-block"),
        ("fine.example", "allow", "(default)"),
    ]
    assert decs[0].register[0].indicator == "blocked.example" and decs[0].enforced
    assert decs[0].flow_key == "tcp 10.9.0.2:50000 > 10.9.1.2:443" and decs[0].capture == "t"
    assert eng.stats.decisions == 2


def test_registered_address_is_dropped_without_a_name() -> None:
    eng = _engine()
    marks = _verdicts(eng, _tls_packets("anything.example", server=BLOCKED_IP))
    assert MARK_DROP in marks and MARK_ALLOW not in marks


def test_quic_initial_sni_decides_on_the_first_datagram() -> None:
    q = quic_exchange("video.bad.example")
    u = UdpExchange((C4, 55000), (S4, 443), start_ts=1.0, framing=RawIpFraming())
    for from_client, t, data in q.datagrams:
        u.send(from_client, data, at=1.0 + t)
    eng = _engine()
    v = eng.handle(u.packets[0][1])
    assert v.mark == MARK_RESET and v.decision is not None
    assert (v.decision.app, v.decision.server_name, v.decision.rule) == (
        "quic",
        "video.bad.example",
        "refuse-quic-to-bad",
    )


def test_shadow_decision_passes_http() -> None:
    s = TcpSession((C4, 40000), (S4, 80), start_ts=1.0, rng=random.Random(2), framing=RawIpFraming())
    s.client_send(http_request("GET", "watched.example"))
    s.close()
    eng = _engine()
    vs = [eng.handle(fr) for _, fr in s.packets]
    (d,) = [v.decision for v in vs if v.decision is not None]
    assert (d.action.value, d.mode.value, d.enforced, d.app) == ("block", "shadow", False, "http")
    assert mark_for(d) == MARK_ALLOW and {v.mark for v in vs} <= {0, MARK_ALLOW}


def test_undecided_connection_is_decided_after_n_packets() -> None:
    s = TcpSession((C4, 40001), (S4, 9000), start_ts=1.0, rng=random.Random(3), framing=RawIpFraming())
    for _ in range(6):
        s.server_send(b"\x00" * 10)  # server speaks first, nothing recognisable is ever sent by the client
    eng = GatewayEngine(parse_policy(POLICY, "<t>"), None, decide_after=4)
    marks = _verdicts(eng, [fr for _, fr in s.packets])
    assert eng.stats.decisions == 1 and MARK_ALLOW in marks[:5]


def test_reload_applies_to_new_connections_only() -> None:
    eng = _engine()
    assert MARK_DROP in _verdicts(eng, _tls_packets("blocked.example"))
    eng.reload(parse_policy("[default]\naction = 'allow'\n", "<t>"), Matcher([]))
    assert MARK_DROP not in _verdicts(eng, _tls_packets("blocked.example", port=50002))


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(0, 200), junk=st.binary(max_size=64))
def test_any_bytes_get_a_verdict(cut: int, junk: bytes) -> None:
    packets = _tls_packets("blocked.example")
    eng = _engine()
    for p in packets:
        v = eng.handle(p[:cut] + junk)
        assert v.mark in (0, MARK_ALLOW, MARK_DROP, MARK_RESET)
