"""Layer 1 fingerprints on real captures: the lab's excerpts and nDPI's corpus (by file name)."""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sluice.detect import fingerprints as fp
from sluice.detect._base import NotFittedError
from sluice.detect._rules import Rule, transports_of
from sluice.detect.ndpi import read_ndpi_out
from sluice.detect.verdict import DETECTABLE_CLASSES
from sluice.errors import ConfigError
from sluice.features.view import FlowView
from sluice.flows.record import FlowRecord

from .conftest import NDPI, lab_index, lab_label, lab_records, ndpi_captures, ndpi_records

# sessions where the fingerprints must name every labeled flow (others are left to layers 2-3)
FINGERPRINTED = {
    "openvpn-tcp-pki-tlscrypt-s1-001": ("vpn", "openvpn"),
    "openvpn-udp-pki-tlsauth-s1-002": ("vpn", "openvpn"),
    "openvpn-udp-static-s1-000": ("vpn", "openvpn"),
    "wireguard-default-s1-000": ("vpn", "wireguard"),
    "wireguard-psk-s1-001": ("vpn", "wireguard"),
    "socks-dante-s1-001": ("proxy", "socks"),
    "socks-microsocks-s1-000": ("proxy", "socks"),
    "socks-microsocks-auth-s1-002": ("proxy", "socks"),
    "http-proxy-squid-forward-s1-000": ("proxy", "http-proxy"),
    "http-proxy-squid-connect-s1-001": ("proxy", "http-proxy"),
    "http-proxy-tinyproxy-connect-s1-002": ("proxy", "http-proxy"),
    "ptunnel-default-s1-000": ("tunnel", "icmp-tunnel"),
    "iodine-default-s1-000": ("tunnel", "dns-tunnel"),
    "vxlan-default-s1-001": ("tunnel", "vxlan"),
    "httptunnel-default-s1-000": ("tunnel", "http-tunnel"),
}


def _best(rec: FlowRecord) -> fp.RuleMatch | None:
    got = fp.match_record(rec)
    return got[0] if got else None


@pytest.mark.parametrize("session", sorted(FINGERPRINTED))
def test_lab_flows_are_named_with_evidence(session: str) -> None:
    expected = FINGERPRINTED[session]
    labeled = [r for r in lab_records(session) if lab_label(session, r) == expected]
    assert labeled, "the excerpt holds at least one labeled flow"
    for rec in labeled:
        m = _best(rec)
        assert m is not None, f"flow {rec.flow_id} not recognised"
        assert (m.label, m.family) == expected
        assert m.evidence and all(e.reason and e.code for e in m.evidence)
        assert 0 <= m.decided_at < max(1, len(rec.pkt_sizes))


@pytest.mark.parametrize("session", sorted(set(lab_index()) - set(FINGERPRINTED)))
def test_lab_flows_without_a_fingerprint_stay_unnamed_or_right(session: str) -> None:
    """No rule misnames a flow: it either stays silent or names the lab's own label."""
    for rec in lab_records(session):
        m = _best(rec)
        label = lab_label(session, rec)
        if m is None or m.label == "benign":
            continue
        assert label is not None and (m.label, m.family) == label, (session, m)


def test_ssh_after_the_handshake_is_a_terminal_in_a_short_excerpt_and_forwarding_in_bulk() -> None:
    rec = next(r for r in lab_records("ssh-socks-dynamic-s1-000") if r.meta.app == "ssh")
    m = _best(rec)
    assert m is not None and (m.label, m.family) == ("benign", "app:ssh")
    # the same real flow as the full session ends: 1.3 MB from the server in 950 packets
    bulk = dataclasses.replace(rec, s2c_payload_bytes=1_303_549, s2c_packets=950, c2s_packets=433)
    m = _best(bulk)
    assert m is not None and (m.label, m.family) == ("tunnel", "ssh")
    assert "ssh.bulk_after_handshake" in {e.code for e in m.evidence}


def test_openvpn_static_key_by_its_block_lengths() -> None:
    from sluice.detect._vpn import openvpn_static
    from sluice.features.view import FlowView

    session = "openvpn-udp-static-s1-000"
    rec = next(r for r in lab_records(session) if lab_label(session, r))
    m = _best(rec)
    assert m is not None and m.rule == "openvpn_static"
    assert [e.code for e in m.evidence] == ["openvpn.static_key_lengths", "openvpn.static_key_random"]
    assert "0 mod 16" in m.evidence[0].observed  # AES-256-CBC with HMAC-SHA256, as the lab runs it
    assert m.decided_at < 8, "decided within the packets the gateway queues"
    # one datagram of another length breaks the block structure: silent
    view = FlowView(rec)
    i = next(j for j, n in enumerate(view.payload_lens) if n > 0 and j > m.decided_at)
    sizes = list(rec.pkt_sizes)
    sizes[i] += 3
    assert openvpn_static(FlowView(dataclasses.replace(rec, pkt_sizes=tuple(sizes)))) is None
    # too few datagrams, or one direction only: silent
    cut = dataclasses.replace(
        rec, pkt_sizes=rec.pkt_sizes[:4], pkt_dirs=rec.pkt_dirs[:4], pkt_iats=rec.pkt_iats[:4]
    )
    assert openvpn_static(FlowView(cut)) is None
    one_way = dataclasses.replace(rec, pkt_dirs=tuple(0 for _ in rec.pkt_dirs))
    assert openvpn_static(FlowView(one_way)) is None
    # WireGuard's data packets are 16-byte blocks too; its own rule names them
    for wg in ("wireguard-default-s1-000", "wireguard-psk-s1-001"):
        for r in lab_records(wg):
            got = _best(r)
            assert got is None or got.rule != "openvpn_static"


def test_wireguard_index_echo_raises_confidence() -> None:
    rec = lab_records("wireguard-default-s1-000")[0]
    m = _best(rec)
    assert m is not None and m.confidence == 0.99 and m.decided_at == 1
    head = bytearray.fromhex(rec.s2c_head)
    head[8] ^= 0xFF  # the response no longer names the initiator's index
    other = _best(dataclasses.replace(rec, s2c_head=head.hex()))
    assert other is not None and other.family == "wireguard" and other.confidence < 0.99


def test_openvpn_reset_answered_by_a_reset_of_the_same_kind_is_not_openvpn() -> None:
    rec = lab_records("openvpn-udp-pki-tlsauth-s1-002")[0]
    assert _best(rec) is not None
    both_clients = dataclasses.replace(rec, s2c_head=rec.c2s_head)
    m = _best(both_clients)
    assert m is None or m.family != "openvpn"


# -- the detector contract --------------------------------------------------------------------------


def test_detector_contract() -> None:
    recs = list(lab_records("wireguard-default-s1-000")) + list(lab_records("https-nginx-h2-tls13-s1-000"))
    det = fp.FingerprintDetector()
    with pytest.raises(NotFittedError):
        det.predict(recs)
    assert det.get_params() == {"rules": None, "threshold": 0.5}
    det.fit(recs)
    labels = det.predict(recs)
    scores = det.score_samples(recs)
    assert labels.shape == scores.shape == (len(recs),)
    assert list(labels[:1]) == ["vpn"]
    assert (det.decision_function(recs) == scores - 0.5).all()
    verdicts = det.explain(recs)
    assert verdicts[0].detector == "fingerprint:wireguard" and verdicts[0].evidence
    assert verdicts[-1].label == "unknown" and verdicts[-1].decided_at == -1
    with pytest.raises(ConfigError):
        fp.FingerprintDetector(rules=("nope",)).fit()
    with pytest.raises(ConfigError):
        fp.FingerprintDetector(threshold=2.0).fit()
    only_ssh = fp.FingerprintDetector(rules=("ssh",)).fit()
    assert list(only_ssh.predict(recs[:1])) == ["unknown"]


# -- fuzz: any bytes in the heads give a match or None ---------------------------------------------

_SAMPLES = [
    lab_records(s)[0]
    for s in (
        "openvpn-udp-pki-tlsauth-s1-002",
        "openvpn-tcp-pki-tlscrypt-s1-001",
        "wireguard-default-s1-000",
        "socks-microsocks-auth-s1-002",
        "ptunnel-default-s1-000",
        "iodine-default-s1-000",
    )
]


@given(
    sample=st.sampled_from(range(len(_SAMPLES))),
    cut_c=st.integers(0, 64),
    cut_s=st.integers(0, 64),
    tail_c=st.binary(max_size=64),
    tail_s=st.binary(max_size=64),
)
@example(sample=0, cut_c=1, cut_s=0, tail_c=b"", tail_s=b"")
@example(sample=1, cut_c=3, cut_s=3, tail_c=b"\x00" * 20, tail_s=b"")
def test_any_head_prefix_plus_random_bytes_gives_a_match_or_none(
    sample: int, cut_c: int, cut_s: int, tail_c: bytes, tail_s: bytes
) -> None:
    rec = _SAMPLES[sample]
    c = (bytes.fromhex(rec.c2s_head)[:cut_c] + tail_c)[:64]
    s = (bytes.fromhex(rec.s2c_head)[:cut_s] + tail_s)[:64]
    mutated = dataclasses.replace(rec, c2s_head=c.hex(), s2c_head=s.hex(), c2s_first_payload_len=len(c))
    for m in fp.match_record(mutated):
        assert 0.0 < m.confidence <= 1.0 and m.evidence
        assert -1 <= m.decided_at < max(1, len(rec.pkt_sizes))


# -- nDPI's corpus, by file name -------------------------------------------------------------------

EXPECTED_IN_CORPUS = [
    # capture, (class, family), at least this many flows
    ("openvpn.pcap", ("vpn", "openvpn"), 10),
    ("openvpn-tlscrypt.pcap", ("vpn", "openvpn"), 1),
    ("openvpn_nohmac.pcapng", ("vpn", "openvpn"), 1),
    ("443-opvn.pcap", ("vpn", "openvpn"), 1),
    ("wireguard.pcap", ("vpn", "wireguard"), 3),
    ("tor.pcap", ("circumvention", "tor"), 7),
    ("socks.pcap", ("proxy", "socks"), 4),
    ("http_connect.pcap", ("proxy", "http-proxy"), 1),
    ("haproxy.pcap", ("proxy", "relay"), 1),
    ("tinc.pcap", ("vpn", "tinc"), 2),
    ("pptp.pcap", ("vpn", "pptp"), 1),
    ("esp.pcapng", ("vpn", "ipsec"), 2),
    ("ah.pcapng", ("vpn", "ipsec"), 2),
    ("ipsec_isakmp_esp.pcap", ("vpn", "ipsec"), 24),
    ("tailscale.pcap", ("vpn", "commercial:tailscale"), 1),
    ("opera-vpn.pcapng", ("vpn", "commercial:operavpn"), 60),
    ("anyconnect-vpn.pcap", ("vpn", "anyconnect"), 1),  # its DTLS channel (version 0x0100)
    ("openvpn_obfuscated.pcapng", ("vpn", "openvpn"), 2),  # XOR-obfuscated, TCP and UDP
    ("pia.pcap", ("vpn", "commercial:pia"), 1),  # PIA's own CA
    ("dns-tunnel-iodine.pcap", ("tunnel", "dns-tunnel"), 1),
    ("dns_exfiltration.pcap", ("tunnel", "dns-tunnel"), 1),
    ("vxlan.pcap", ("tunnel", "vxlan"), 1),
    ("teredo.pcap", ("tunnel", "teredo"), 1),
    ("4in4tunnel.pcap", ("tunnel", "ip-in-ip"), 1),
    ("6in4tunnel.pcap", ("tunnel", "ip-in-ip"), 1),
]


@pytest.mark.corpus
@pytest.mark.parametrize(("capture", "expected", "at_least"), EXPECTED_IN_CORPUS)
def test_corpus_captures_are_named(capture: str, expected: tuple[str, str], at_least: int) -> None:
    named = [r for r in ndpi_records(capture) if (m := _best(r)) and (m.label, m.family) == expected]
    assert len(named) >= at_least


@pytest.mark.corpus
def test_tor_finds_all_seven_flows_where_ndpi_names_three() -> None:
    recs = ndpi_records("tor.pcap")
    ndpi = read_ndpi_out(NDPI / "tor.pcap.out")
    assert sum(f.family == "tor" for f in ndpi) == 3
    tor = [r for r in recs if (m := _best(r)) and m.family == "tor"]
    assert len(tor) == 7
    assert all(r.meta.sni.startswith("www.") for r in tor)


# Known fingerprint findings in captures that are not about VPNs/proxies/tunnels: each is listed
# with why; a new one fails the test so that it gets looked at.
KNOWN_CORPUS_FINDINGS = {
    ("forticlient.pcap", "fortinet"),  # a FortiGate SSL-VPN session: right, nDPI agrees
    ("ipv6_in_gtp.pcap", "ipsec"),  # ESP inside GTP: nDPI says IPSec too
    ("gre.pcapng", "pptp"),  # PPP in GRE: PPTP's data channel
    ("shadowsocks.pcap", "socks"),  # the local SOCKS leg of the Shadowsocks client
    ("tls_heur__shadowsocks-tcp.pcapng", "socks"),
    ("tls_heur__vmess-tcp.pcapng", "socks"),
    ("tls_heur__vmess-tcp-tls.pcapng", "socks"),
    ("dns-exf.pcap", "dns-tunnel"),  # exfiltration through DNS names
    ("4in6tunnel.pcap", "ip-in-ip"),
    ("6in6tunnel.pcap", "ip-in-ip"),
}


@pytest.mark.corpus
def test_no_unexplained_findings_in_the_rest_of_the_corpus() -> None:
    captures = ndpi_captures()
    if not captures:
        pytest.skip(f"../shared not present: {NDPI} missing")
    expected = {c for c, _, _ in EXPECTED_IN_CORPUS}
    unexplained = []
    benign_flows = findings = 0
    for path in captures:
        if path.name in expected:
            continue
        for rec in ndpi_records(path.name):
            m = _best(rec)
            if m is None or m.label == "benign":
                benign_flows += 1
                continue
            findings += 1
            if (path.name, m.family) not in KNOWN_CORPUS_FINDINGS:
                unexplained.append((path.name, rec.flow_id, m.label, m.family, m.evidence[0].code))
    if os.environ.get("SLUICE_PRINT"):
        print(f"benign-ish flows {benign_flows}, findings {findings}")
    assert not unexplained, unexplained


# -- transports: a rule runs only on the IP protocols it declares ----------------------------------

_DECLARED = [(name, rule) for name, rule in fp._ALL_RULES if transports_of(rule) is not None]
_PROTOS = range(256)


class _OnlyProto:
    """A view of which a rule can read the IP protocol and nothing else (anything else raises)."""

    __slots__ = ("rec",)

    def __init__(self, proto: int) -> None:
        self.rec = SimpleNamespace(proto=proto)


@pytest.mark.parametrize(("name", "rule"), _DECLARED, ids=[n for n, _ in _DECLARED])
def test_a_rule_decides_from_the_transport_alone_off_its_declared_transports(name: str, rule: Rule) -> None:
    """Off its declared transports a rule returns None before it reads anything but the protocol:
    skipping it there (as the dispatch does) changes no result, whatever the flow holds."""
    declared = transports_of(rule)
    assert declared and declared <= set(_PROTOS)
    for proto in set(_PROTOS) - declared:
        assert rule(_OnlyProto(proto)) is None, (name, proto)  # type: ignore[arg-type]


def test_dispatch_by_transport_matches_every_rule_run() -> None:
    """The dispatch gives what running every rule on every flow gives, on the lab's flows and on
    each of them relabelled with every transport a rule declares (and one none declares)."""
    protos = {p for _n, rule in _DECLARED for p in transports_of(rule) or ()} | {132}
    recs = [r for s in sorted(lab_index()) for r in lab_records(s)]
    assert {r.proto for r in recs} >= {1, 6, 17}
    fired = set()
    for rec in recs:
        for variant in [rec, *(dataclasses.replace(rec, proto=p) for p in protos - {rec.proto})]:
            view = FlowView(variant)
            every = [m for _n, rule in fp._ALL_RULES if (m := rule(view)) is not None]
            every.sort(key=lambda m: (-m.confidence, m.label not in DETECTABLE_CLASSES))
            assert fp.match_record(view) == every
            assert fp.FingerprintDetector().fit().best(view) == (every[0] if every else None)
            fired |= {m.rule for m in every}
    assert {"openvpn", "wireguard", "socks", "icmp-tunnel"} <= fired, "declared rules fire here too"
