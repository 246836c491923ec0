"""The gateway engine with detector verdicts, on real lab captures replayed packet by packet (no root).

Every excerpt in ``tests/detect/data/lab`` was made by ``sluice lab run`` with the real programs.
Under a policy that blocks VPN, proxy, tunnel and circumvention classes, each labeled carrier flow
must be blocked with the lab's class and family, within the packets the kernel queues, and every
benign flow must pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import pytest

from sluice.decide import replay_captures
from sluice.detect.combiner import Combiner
from sluice.detect.model import DEFAULT_MODEL_DIR, ModelScorer, load_model
from sluice.detect.verdict import flow_key_text
from sluice.gateway.engine import GatewayEngine
from sluice.gateway.rules import MARK_ALLOW, MARK_DROP
from sluice.io.capture import open_capture
from sluice.policy import parse_policy
from sluice.policy.model import Decision
from tests.detect.conftest import LAB, lab_index, lab_label, lab_records

BLOCK_FINDINGS = """
[[rule]]
name = "findings-block"
class = ["vpn", "proxy", "circumvention", "tunnel"]
action = "block"
"""
ONLY_WIREGUARD = """
[[rule]]
name = "wireguard-block"
class = ["vpn"]
family = ["wireguard"]
action = "block"
"""
DECIDE_AFTER = 10
# Where the lab's label is not what the gateway finds. None of them is a disagreement between the
# gateway and an offline analysis any more: replayed through `sluice policy test` / `sluice analyze
# --decisions`, the whole flow (the offline stage) says the same as the gateway on every excerpt
# (checked below), so no lab excerpt is an offline-only case.
# - SSH forwarding is told from a terminal by volume over the whole flow (docs/detection-notes.md);
#   the excerpts hold the first 40 packets, where both see an SSH terminal;
# - TLS-wrapped carriers: the shipped model was retrained without HTTPS-shaped findings (a TLS
#   carrier fetching HTTP is HTTPS between client and relay), so neither stage calls them findings.
#   kcptun, listed here before, is now found inline.
BY_VOLUME = {"ssh-socks-dynamic-s1-000", "sshuttle-default-s1-001"}
TLS_WRAPPED = {
    "stunnel-default-s1-000",
    "trojan-default-s1-000",
    "v2ray-vless-tls-s1-001",
    "v2ray-vmess-ws-tls-s1-002",
    "shadowsocks-plugin-obfs-tls-s1-002",
}
OFFLINE_ONLY: set[str] = set()
"""Lab sessions with a flow the whole flow decides otherwise than the gateway (none)."""


@cache
def _combiner() -> Combiner:
    fitted, _ = load_model(DEFAULT_MODEL_DIR)
    return Combiner(ModelScorer(fitted))


def _replay(session: str, policy: str) -> tuple[GatewayEngine, dict[str, tuple[int, Decision]]]:
    """The engine after the session's packets, and flow key -> (mark, decision)."""
    eng = GatewayEngine(
        parse_policy(policy, "<test>"), None, None, detector=_combiner(), decide_after=DECIDE_AFTER
    )
    out: dict[str, tuple[int, Decision]] = {}
    with open_capture(LAB / f"{session}.pcap") as cap:
        for raw in cap:
            v = eng.handle(bytes(raw.data), raw.linktype, raw.ts)
            if v.decision is not None:
                key = v.decision.flow_key
                assert key not in out, f"{key} decided twice"
                out[key] = (v.mark, v.decision)
    return eng, out


def _labeled(session: str) -> Iterator[tuple[str, tuple[str, str]]]:
    for rec in lab_records(session):
        if rec.early:
            continue
        label = lab_label(session, rec)
        if label is not None:
            yield flow_key_text(rec), label


@pytest.mark.parametrize("session", sorted(lab_index()))
def test_lab_flows_blocked_by_class_benign_pass(session: str) -> None:
    _eng, decided = _replay(session, BLOCK_FINDINGS)
    labeled = dict(_labeled(session))
    findings = {k: v for k, v in labeled.items() if v[0] != "benign"}
    for key, (cls, fam) in findings.items():
        assert key in decided, f"{key} ({cls}/{fam}) never decided"
        mark, dec = decided[key]
        if session in BY_VOLUME or session in TLS_WRAPPED:
            assert mark == MARK_ALLOW and dec.verdict_class == "benign", dec
            continue
        assert (mark, dec.verdict_class) == (MARK_DROP, cls), dec
        assert dec.family == fam, dec
        assert dec.rule == "findings-block" and dec.evidence, dec
    for key, (cls, _fam) in labeled.items():
        if cls == "benign" and key in decided:
            mark, dec = decided[key]
            assert mark == MARK_ALLOW and dec.verdict_class not in ("vpn", "proxy", "tunnel"), dec


@pytest.mark.parametrize("session", sorted(lab_index()))
def test_offline_stage_says_what_the_gateway_says(session: str) -> None:
    res = replay_captures(
        parse_policy(BLOCK_FINDINGS, "<test>"),
        [str(LAB / f"{session}.pcap")],
        _combiner(),
        decide_after=DECIDE_AFTER,
    )
    off = {o.verdict.flow_key for o in res.offline_only}
    assert bool(off) == (session in OFFLINE_ONLY), [o.to_dict() for o in res.offline_only]
    if session in BY_VOLUME | TLS_WRAPPED:  # missed by both stages alike: a finding in neither
        for o in res.outcomes:  # (the whole flow may leave the model uncertain: unknown is no finding)
            assert o.inline is not None and o.inline.verdict_class == "benign"
            assert o.offline.verdict_class in ("benign", "unknown")


def test_family_rule_blocks_wireguard_and_passes_openvpn() -> None:
    _, wg = _replay("wireguard-default-s1-000", ONLY_WIREGUARD)
    _, ovpn = _replay("openvpn-udp-pki-tlsauth-s1-002", ONLY_WIREGUARD)
    assert [m for m, _d in wg.values()] == [MARK_DROP]
    ((mark, dec),) = ovpn.values()
    assert mark == MARK_ALLOW and (dec.verdict_class, dec.family, dec.rule) == ("vpn", "openvpn", "(default)")


def test_fingerprints_decide_on_the_first_exchange() -> None:
    eng, decided = _replay("wireguard-psk-s1-001", BLOCK_FINDINGS)
    ((_mark, dec),) = decided.values()
    assert dec.detector.startswith("combiner:fingerprint:") and eng.stats.by_stage == {"fingerprint": 1}
    assert 0 not in eng.stats.marked  # the handshake initiation itself carries the decision


def test_register_block_does_not_wait_for_detectors() -> None:
    policy = '[[rule]]\nname = "names"\naction = "block"\nhost = ["*"]\n' + BLOCK_FINDINGS
    eng, decided = _replay("https-nginx-h2-tls13-s1-000", policy)
    assert {d.rule for _m, d in decided.values()} == {"names"}
    assert eng.stats.by_stage == {"settled": len(decided)} and eng.stats.detector_seconds == 0.0
