"""The combiner and ``sluice analyze`` on real captures."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sluice.cli.analyze import analyze
from sluice.detect.combiner import DEFAULT_FET_VETO, NEEDS_FINGERPRINT, Combiner, Opinion
from sluice.detect.service import analyze_captures, summarize
from sluice.detect.verdict import DETECTABLE_CLASSES
from sluice.errors import ConfigError
from sluice.features.view import FlowView
from sluice.flows.record import FlowRecord

from .conftest import LAB, NDPI, lab_label, lab_records, ndpi_records

EXPECTED = {
    "openvpn-udp-pki-tlsauth-s1-002": ("vpn", "openvpn"),
    "wireguard-psk-s1-001": ("vpn", "wireguard"),
    "socks-microsocks-auth-s1-002": ("proxy", "socks"),
    "iodine-default-s1-000": ("tunnel", "dns-tunnel"),
    "shadowsocks-aead-s1-000": ("circumvention", ""),  # fully encrypted: no family without a model
    "obfs4-iat0-s1-000": ("circumvention", ""),
}


@pytest.mark.parametrize("session", sorted(EXPECTED))
def test_one_verdict_per_flow_decided_early(session: str) -> None:
    records = lab_records(session, early=True)
    judged = Combiner().judge_all(records)
    assert [r.flow_id for r, _ in judged] == [r.flow_id for r in records if not r.early]
    labeled = [(r, v) for r, v in judged if lab_label(session, r)]
    assert labeled
    for rec, v in labeled:
        assert (v.label, v.family) == EXPECTED[session]
        assert v.evidence and 0 < v.confidence <= 1
        assert 0 <= v.decided_at < 8, "the first packets decide these"
        assert v.flow_id == rec.flow_id


def test_benign_flows_get_their_protocol() -> None:
    for session, family in (
        ("https-nginx-h2-tls13-s1-000", "tls"),
        ("http-nginx-s1-000", "http"),
        ("dns-udp-s1-000", "dns"),
    ):
        for _rec, v in Combiner().judge_all(lab_records(session, early=True)):
            assert (v.label, v.family) == ("benign", family), (session, v)
            assert v.evidence[0].code == "app.protocol"


def test_fet_alone_can_be_switched_off() -> None:
    rec = next(r for r in lab_records("shadowsocks-aead-s1-000") if lab_label("shadowsocks-aead-s1-000", r))
    v = Combiner(use_fet=False).judge(rec)
    assert v.label == "unknown"


class _Sure:
    """A stand-in model that gives every flow ``P(benign) = p_benign`` and names ``family``."""

    def __init__(self, p_benign: float, label: str = "circumvention", family: str = "obfs4") -> None:
        self.p_benign = p_benign
        self.label, self.family = label, family

    def opinions(self, records: Sequence[FlowRecord]) -> list[Opinion]:
        return [
            Opinion(1 - self.p_benign, self.label, self.family, 0.7, 7, "d" * 64, "stub", ()) for _ in records
        ]


def _first_labeled(session: str) -> FlowRecord:
    return next(r for r in lab_records(session) if lab_label(session, r))


def test_families_that_need_their_fingerprint() -> None:
    https = lab_records("https-nginx-h2-tls13-s1-000")[0]
    wg = _first_labeled("wireguard-psk-s1-001")
    # the model alone may not call a TLS flow IPsec: no IKE/ESP there; the verdict says so
    v = Combiner(_Sure(0.1, "vpn", "ipsec")).judge(https)
    assert (v.label, v.family) == ("benign", "tls")
    assert [e.code for e in v.evidence][:2] == ["app.protocol", "model.unconfirmed"]
    assert v.evidence[1].observed == "vpn/ipsec (0.900)"
    # where the fingerprint is there, the fingerprint decides (and gives its own family)
    w = Combiner(_Sure(0.1, "vpn", "ipsec")).judge(wg)
    assert (w.label, w.family, w.detector) == ("vpn", "wireguard", "combiner:fingerprint:wireguard")
    # families no fingerprint covers stay the model's
    t = Combiner(_Sure(0.1, "circumvention", "trojan")).judge(https)
    assert (t.label, t.family, t.detector) == ("circumvention", "trojan", "combiner:model")
    # switched off: the model's word is enough
    off = Combiner(_Sure(0.1, "vpn", "ipsec"), needs_fingerprint=frozenset()).judge(https)
    assert (off.label, off.family) == ("vpn", "ipsec")
    assert ("vpn", "openvpn") not in NEEDS_FINGERPRINT, "static-key OpenVPN has no rule"
    # an unconfirmed model finding does not veto the FET: a fully encrypted flow stays a finding
    fe = Combiner(_Sure(0.1, "proxy", "socks")).judge(_obfs4_flow())
    assert (fe.label, fe.detector) == ("circumvention", "combiner:fet")


def _obfs4_flow() -> FlowRecord:
    return _first_labeled("obfs4-iat0-s1-000")


def test_fet_veto_on_a_real_obfs4_flow() -> None:
    rec = _obfs4_flow()
    assert Combiner().judge(rec).detector == "combiner:fet", "no model: the FET alone decides"
    # a model unsure enough (as for obfs4 it never saw: P(benign) <= 0.977 measured) keeps the FET
    kept = Combiner(_Sure(0.95), fet_veto=0.99).judge(rec)
    assert (kept.label, kept.detector) == ("circumvention", "combiner:fet")
    assert kept.evidence[0].code == "fet.fully_encrypted"
    # a model sure of benign vetoes it; the verdict keeps the FET's result and says why it lost
    vetoed = Combiner(_Sure(0.995), fet_veto=0.99).judge(rec)
    assert vetoed.label == "benign" and not vetoed.is_finding
    codes = [e.code for e in vetoed.evidence]
    assert codes == ["model.benign", "fet.fully_encrypted", "fet.vetoed"]
    ev = vetoed.evidence[2]
    assert (ev.feature, ev.observed, ev.reference) == ("model.p_benign", "0.995", ">= 0.99")
    assert ev.contribution < 0
    # off: None or 1.0
    for off in (None, 1.0):
        assert Combiner(_Sure(0.999999), fet_veto=off).judge(rec).detector == "combiner:fet"


def test_fet_veto_bounds_and_defaults() -> None:
    import inspect

    from sluice.cli._detect import load_combiner
    from sluice.detect.evaluate import EvalResult, cross_validate, leave_out, score_with

    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="fet_veto"):
            Combiner(fet_veto=bad)
    # evaluate judges with what analyze, policy test and the gateway ship
    assert Combiner().fet_veto == DEFAULT_FET_VETO
    for fn in (cross_validate, leave_out, score_with, EvalResult.extend, load_combiner):
        assert inspect.signature(fn).parameters["fet_veto"].default == DEFAULT_FET_VETO


def test_fet_veto_with_the_shipped_model_on_threema() -> None:
    from sluice.detect.model import ModelScorer, load_model

    records = ndpi_records("threema.pcap")
    scorer = ModelScorer(load_model()[0])
    plain = {r.flow_id: v for r, v in Combiner(scorer, fet_veto=None).judge_all(records)}
    veto = {r.flow_id: v for r, v in Combiner(scorer, fet_veto=0.99).judge_all(records)}
    p_benign = {r.flow_id: 1 - op.p_finding for r, op in zip(records, scorer.opinions(records), strict=True)}
    fet_only = [i for i, v in plain.items() if v.detector == "combiner:fet"]
    vetoed = [i for i in fet_only if not veto[i].is_finding]
    kept = [i for i in fet_only if veto[i].detector == "combiner:fet"]
    assert vetoed, "the shipped model is sure of some of Threema's flows"
    assert len(vetoed) + len(kept) == len(fet_only)
    for i in vetoed:
        assert p_benign[i] >= 0.99
        assert [e.code for e in veto[i].evidence][-2:] == ["fet.fully_encrypted", "fet.vetoed"]
    for i in kept:
        assert p_benign[i] < 0.99 and veto[i].label == "circumvention"


def test_cli_fet_veto_option(tmp_path: Path) -> None:
    cap = NDPI / "threema.pcap"
    if not cap.exists():
        pytest.skip(f"../shared not present: {cap} missing")
    runner = CliRunner()
    counts = {}
    for opt in ("1", "0.99"):
        got = runner.invoke(
            analyze, [str(cap), "--fet-veto", opt, "--summary-json", str(tmp_path / "s.json")]
        )
        assert got.exit_code == 0, got.output
        counts[opt] = json.loads((tmp_path / "s.json").read_text())["summary"]["findings"]
    assert counts["0.99"] < counts["1"]
    assert runner.invoke(analyze, [str(cap), "--fet-veto", "0"]).exit_code == 2


def test_service_summary_counts_classes() -> None:
    paths = [str(LAB / f"{s}.pcap") for s in ("wireguard-psk-s1-001", "dns-udp-s1-000")]
    res = analyze_captures(paths, Combiner())
    s = summarize(res.flows)
    assert s["by_class"]["vpn"] == 1 and s["by_class"]["benign"] == len(res.flows) - 1
    assert s["findings"] == 1 and s["decided_within_8_packets"] == 1
    assert set(res.runs) == set(paths) and all("verdict_seconds" in r for r in res.runs.values())


# -- the command ------------------------------------------------------------------------------------


def test_cli_table_jsonl_parquet_and_explain(tmp_path: Path) -> None:
    cap = str(LAB / "openvpn-udp-pki-tlsauth-s1-002.pcap")
    runner = CliRunner()
    got = runner.invoke(analyze, [cap])
    assert got.exit_code == 0, got.output
    assert "vpn" in got.output and "openvpn" in got.output and "1 findings" in got.output
    got = runner.invoke(analyze, [cap, "--format", "jsonl", "--out", str(tmp_path / "v.jsonl")])
    assert got.exit_code == 0, got.output
    row = json.loads((tmp_path / "v.jsonl").read_text().splitlines()[0])
    assert row["class"] == "vpn" and row["family"] == "openvpn" and row["evidence"][0]["code"]
    got = runner.invoke(analyze, [cap, "--format", "parquet", "--out", str(tmp_path / "v.parquet")])
    assert got.exit_code == 0, got.output
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column("class").to_pylist() == ["vpn"]
    got = runner.invoke(analyze, [cap, "--explain", "0"])
    assert got.exit_code == 0 and "openvpn.session_echo" in got.output and "@pkt 1" in got.output
    got = runner.invoke(
        analyze, [cap, "--fail-on-findings", "--json", "--summary-json", str(tmp_path / "s.json")]
    )
    assert got.exit_code == 1
    assert [json.loads(line)["class"] for line in got.stdout.splitlines()] == ["vpn"]  # --json: JSON lines
    assert json.loads((tmp_path / "s.json").read_text())["summary"]["findings"] == 1


def test_cli_errors() -> None:
    runner = CliRunner()
    cap = str(LAB / "dns-udp-s1-000.pcap")
    assert runner.invoke(analyze, [cap, "--format", "parquet"]).exit_code == 2
    assert runner.invoke(analyze, [cap, "--explain", "x"]).exit_code == 2
    assert runner.invoke(analyze, [cap, "--explain", "999"]).exit_code == 2
    assert runner.invoke(analyze, [str(LAB / "index.json")]).exit_code == 3
    assert runner.invoke(analyze, [cap, "--register", "postgresql://nobody@127.0.0.1:1/x"]).exit_code == 3


def test_cli_register_matches(tmp_path: Path) -> None:
    from sluice.registry.stores import open_store
    from sluice.registry.sync import import_files

    lst = tmp_path / "tor.txt"
    lst.write_text("www.t3i3ru.com\n")
    db = str(tmp_path / "r.db")
    store = open_store(db, create=True)
    import_files(store, [str(lst)], source="test-list", fmt="domains")
    store.close()
    cap = NDPI / "tor.pcap"
    if not cap.exists():
        pytest.skip(f"../shared not present: {cap} missing")
    got = CliRunner().invoke(analyze, [str(cap), "--register", db, "--format", "jsonl"])
    assert got.exit_code == 0, got.output
    rows = [json.loads(line) for line in got.output.splitlines() if line.startswith("{")]
    hit = [r for r in rows if r["register"]]
    assert len(hit) == 1 and hit[0]["server_name"] == "www.t3i3ru.com"
    assert hit[0]["register"][0]["source"] == "test-list" and hit[0]["class"] == "circumvention"


@pytest.mark.corpus
def test_cli_runs_on_the_whole_shared_corpus(tmp_path: Path) -> None:
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing")
    caps = sorted(str(p) for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng"))
    got = CliRunner().invoke(
        analyze, [*caps, "--format", "jsonl", "--summary-json", str(tmp_path / "s.json")]
    )
    assert got.exit_code == 0, got.output[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())["summary"]
    assert summary["flows"] > 1500 and summary["findings"] > 100


def test_uncertain_model_gives_unknown_with_its_reasons() -> None:
    from sluice.detect.combiner import DEFAULT_UNCERTAIN_FROM

    https = lab_records("https-nginx-h2-tls13-s1-000")[0]
    assert DEFAULT_UNCERTAIN_FROM is not None and 0 < DEFAULT_UNCERTAIN_FROM < 0.7
    # between uncertain_from and the threshold: unknown, not benign, not a finding
    v = Combiner(_Sure(0.5, "circumvention", "trojan")).judge(https)
    assert (v.label, v.family, v.is_finding) == ("unknown", "", False)
    assert v.evidence[0].code == "model.uncertain"
    assert v.evidence[0].observed == "0.500 (circumvention/trojan most likely)"
    assert v.evidence[0].reference == f"[{DEFAULT_UNCERTAIN_FROM:g}, 0.7)"
    # below it: the protocol decides, as before; switched off: benign
    assert Combiner(_Sure(0.9)).judge(https).label == "benign"
    assert Combiner(_Sure(0.5), uncertain_from=None).judge(https).label == "benign"
    # at the threshold: a finding
    assert Combiner(_Sure(0.3, "circumvention", "trojan")).judge(https).label == "circumvention"
    # a fingerprint still decides over an uncertain model
    wg = _first_labeled("wireguard-psk-s1-001")
    assert Combiner(_Sure(0.5)).judge(wg).family == "wireguard"
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="uncertain_from"):
            Combiner(uncertain_from=bad)


class _Counting(_Sure):
    """A stand-in model that remembers which records it was asked about."""

    def __init__(self, p_benign: float) -> None:
        super().__init__(p_benign)
        self.asked: list[tuple[int, bool]] = []

    def opinions(self, records: Sequence[FlowRecord]) -> list[Opinion]:
        self.asked += [(r.flow_id, r.early) for r in records]
        return super().opinions(records)


@pytest.mark.parametrize("p_benign", [0.1, 0.5, 0.99])
def test_the_model_is_asked_only_where_a_fingerprint_does_not_decide(p_benign: float) -> None:
    both = lab_records("wireguard-psk-s1-001") + lab_records("https-nginx-h2-tls13-s1-000")
    records = [dataclasses.replace(r, flow_id=i) for i, r in enumerate(both)]  # ids per capture collide
    rules = Combiner().fingerprints
    decided = set()
    for r in records:
        m = rules.best(FlowView(r))
        if m is not None and m.label in DETECTABLE_CLASSES:
            decided.add((r.flow_id, r.early))
    assert decided and len(decided) < len(records)
    bulk, one = _Counting(p_benign), _Counting(p_benign)
    judged = Combiner(bulk).judge_all(records)
    single = [Combiner(one).judge(rec) for rec, _ in judged]
    # the same verdicts in bulk and one by one, and neither asked the model about a decided flow
    assert [v for _, v in judged] == single
    assert not decided & set(bulk.asked) and not decided & set(one.asked)
    assert set(bulk.asked) == {(r.flow_id, r.early) for r in records if not r.early} - decided
