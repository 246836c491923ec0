"""The combiner and ``sluice analyze`` on real captures."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from sluice.cli.analyze import analyze
from sluice.detect.combiner import Combiner
from sluice.detect.service import analyze_captures, summarize

from .conftest import LAB, NDPI, lab_label, lab_records

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
    got = runner.invoke(analyze, [cap, "--fail-on-findings", "--json"])
    assert got.exit_code == 1
    assert json.loads(got.output[got.output.index("{") :])["summary"]["findings"] == 1


def test_cli_errors() -> None:
    runner = CliRunner()
    cap = str(LAB / "dns-udp-s1-000.pcap")
    assert runner.invoke(analyze, [cap, "--format", "parquet"]).exit_code == 2
    assert runner.invoke(analyze, [cap, "--explain", "x"]).exit_code == 2
    assert runner.invoke(analyze, [cap, "--explain", "999"]).exit_code == 2
    assert runner.invoke(analyze, [str(LAB / "index.json")]).exit_code == 3
    assert runner.invoke(analyze, [cap, "--register", "postgresql://nobody@127.0.0.1:1/x"]).exit_code == 3


def test_cli_register_matches(tmp_path: Path) -> None:
    from sluice.registry.store import open_store
    from sluice.registry.sync import import_files

    lst = tmp_path / "tor.txt"
    lst.write_text("www.t3i3ru.com\n")
    db = str(tmp_path / "r.db")
    store = open_store(db)
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
def test_cli_runs_on_the_whole_shared_corpus() -> None:
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing")
    caps = sorted(str(p) for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng"))
    got = CliRunner().invoke(analyze, [*caps, "--format", "jsonl", "--json"])
    assert got.exit_code == 0, got.output[-2000:]
    summary = json.loads(got.output[got.output.index('{\n  "summary"') :])["summary"]
    assert summary["flows"] > 1500 and summary["findings"] > 100
