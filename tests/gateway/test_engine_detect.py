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
# decided by volume at the flow's end (docs/detection-notes.md): an inline gateway sees an SSH terminal
BY_VOLUME = {"ssh-socks-dynamic-s1-000", "sshuttle-default-s1-001"}
DECIDE_AFTER = 10
# TLS-wrapped carriers and KCP: since feature set 2 (issue 11) the model reads their shape after
# the handshake (bursts up to packet 31), not the client's TLS library in the first packets, so
# within the packets the gateway queues they may pass; offline (`sluice analyze`) they are found
AFTER_HANDSHAKE = {
    "kcptun-default-s1-000",
    "stunnel-default-s1-000",
    "trojan-default-s1-000",
    "v2ray-vless-tls-s1-001",
    "v2ray-vmess-ws-tls-s1-002",
    "shadowsocks-plugin-obfs-tls-s1-002",
}


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
        if session in BY_VOLUME:
            mark, dec = decided[key]
            assert mark == MARK_ALLOW and dec.verdict_class == "benign", dec
            continue
        assert key in decided, f"{key} ({cls}/{fam}) never decided"
        mark, dec = decided[key]
        if session in AFTER_HANDSHAKE and mark == MARK_ALLOW:
            assert dec.verdict_class in ("benign", "unknown"), dec
            continue
        assert (mark, dec.verdict_class) == (MARK_DROP, cls), dec
        assert dec.family == fam, dec
        assert dec.rule == "findings-block" and dec.evidence, dec
    for key, (cls, _fam) in labeled.items():
        if cls == "benign" and key in decided:
            mark, dec = decided[key]
            assert mark == MARK_ALLOW and dec.verdict_class not in ("vpn", "proxy", "tunnel"), dec


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
