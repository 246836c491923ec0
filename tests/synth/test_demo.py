"""The demo capture and the benchmark capture script, read back by the real tools."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.synth.demo import main as demo_main
from sluice.synth.truth import GroundTruth
from tests.synth.capture_util import needs_tshark, tshark_fields

ROOT = Path(__file__).resolve().parents[2]

FIELDS = (
    "frame.interface_id",
    "frame.protocols",
    "tls.handshake.extensions_server_name",
    "quic.version",
    "dns.qry.name",
    "http.host",
    "ssh.protocol",
    "socks.remote_name",
    "ip.flags.mf",
    "vlan.id",
    "_ws.malformed",
)


def check_demo(pcap: Path, truth: GroundTruth) -> None:
    assert pcap.stat().st_size < 200_000
    rows = tshark_fields(pcap, FIELDS, two_pass=True)
    assert len(rows) == truth.total_packets == truth.meta["packets"]
    assert not any(r["_ws.malformed"] for r in rows)
    by_iface = {"0": 0, "1": 0}
    for r in rows:
        by_iface[r["frame.interface_id"]] += 1
    assert by_iface == {str(i): sum(f.packets for f in truth if f.interface == i) for i in (0, 1)}
    snis = {v for r in rows for v in r["tls.handshake.extensions_server_name"].split(",") if v}
    assert snis == {f.sni for f in truth if f.sni}
    quic_snis = {
        r["tls.handshake.extensions_server_name"]
        for r in rows
        if r["quic.version"] and r["tls.handshake.extensions_server_name"]
    }
    assert quic_snis == {f.sni for f in truth if f.app == "quic"}
    assert {r["dns.qry.name"] for r in rows if r["dns.qry.name"]} == {
        f.dns_qname for f in truth if f.dns_qname
    }
    assert {r["http.host"] for r in rows if r["http.host"]} == {f.http_host for f in truth if f.http_host}
    assert any(r["ssh.protocol"] for r in rows)
    assert {r["socks.remote_name"] for r in rows if r["socks.remote_name"]} == {
        (f.socks_target or "").split(":")[0] for f in truth if f.socks_target
    }
    stacks = " ".join(r["frame.protocols"] for r in rows)
    for layer in ("vlan", "ieee8021ad", "vxlan", "gre", "gtp", "raw:ip", "raw:ipv6", "ip:ipv6"):
        assert layer in stacks, layer
    assert any(r["ip.flags.mf"] == "1" for r in rows)  # a fragmented DNS answer
    versions = {r["quic.version"].split(",")[0] for r in rows if r["quic.version"]}
    assert versions == {"0x00000001", "0x6b3343cf"}
    assert {f.tunnel for f in truth} >= {"gre", "vxlan", "gtpu", "ipip"}
    assert any(f.fragmented for f in truth) and any(f.out_of_order for f in truth)


@needs_tshark
def test_demo_written_by_the_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.pcapng"
    assert demo_main(["--out", str(out)]) == 0
    assert "50 flows" in capsys.readouterr().out
    truth = GroundTruth.load(tmp_path / "demo.truth.json")
    assert len(truth) == 50
    check_demo(out, truth)
    info = subprocess.run(["capinfos", str(out)], capture_output=True, text=True).stdout
    assert "Number of interfaces in file: 2" in info
    assert "nanoseconds (9)" in info and "microseconds (6)" in info


@needs_tshark
def test_bundled_demo_matches_its_truth() -> None:
    pcap, truth_path = ROOT / "examples" / "demo.pcapng", ROOT / "examples" / "demo.truth.json"
    if not pcap.exists():
        pytest.skip("examples/demo.pcapng not generated")
    check_demo(pcap, GroundTruth.load(truth_path))


@pytest.mark.skipif(shutil.which("capinfos") is None, reason="capinfos not installed")
def test_make_capture_script(tmp_path: Path) -> None:
    out = tmp_path / "small.pcap"
    cmd = [sys.executable, str(ROOT / "bench" / "make_capture.py"), "--packets", "3000"]
    cmd += ["--flows", "60", "--out", str(out), "--seed", "3", "--pool", str(tmp_path / "p.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = json.loads(res.stdout)
    assert summary["packets"] >= 3000 and summary["flows"] >= 60
    info = subprocess.run(["capinfos", str(out)], capture_output=True, text=True).stdout
    assert f"Number of packets:   {summary['packets']}" in info
    assert "Strict time order:   True" in info
    truth = GroundTruth.load(tmp_path / "small.truth.json")
    assert truth.total_packets == summary["packets"]
    assert {"tls", "quic", "dns", "http"} <= {f.app for f in truth}
    assert not list(tmp_path.glob(".*.tmp"))
    # a second run with the saved pool writes the same bytes
    again = tmp_path / "again.pcap"
    cmd[cmd.index(str(out))] = str(again)
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert again.read_bytes() == out.read_bytes()
