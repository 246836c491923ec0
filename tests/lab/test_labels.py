"""Label files, label look-up, pcap flow counts, registry and CLI (no root needed)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import CaptureError, ConfigError
from sluice.lab import FiveTuple, LabelIndex, label_for, load_labels
from sluice.lab.flowsum import summarize_capture
from sluice.lab.labels import LABEL_FORMAT, write_label_file
from sluice.lab.registry import all_packages, all_scenarios, parse_selection

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
TAXONOMY_FAMILIES = {
    "vpn": {"openvpn", "wireguard", "ipsec", "anyconnect", "tinc", "nebula"},
    "circumvention": {"tor", "obfs4", "shadowsocks", "vmess", "vless", "trojan"},
    "proxy": {"socks", "http-proxy", "relay"},
    "tunnel": {"ssh", "dns-tunnel", "icmp-tunnel", "http-tunnel", "kcp", "stunnel", "vxlan"},
    "benign": {"tls", "quic", "http", "dns", "doh", "dot"},
    "crypto": {"bitcoin", "litecoin", "monero", "ethereum", "electrum", "stratum"},
}


def _doc(flows: list[dict[str, object]], *, ok: bool = True) -> dict[str, object]:
    return {
        "format": LABEL_FORMAT,
        "session_id": "openvpn-udp-static-s1-000",
        "capture": "openvpn-udp-static-s1-000.pcap",
        "scenario": "openvpn",
        "variant": "udp-static",
        "verified": {"ok": ok},
        "flows": flows,
    }


def _flow(proto: int, src: str, sport: int, dst: str, dport: int, cls: str, fam: str) -> dict[str, object]:
    return {
        "proto": proto,
        "src": src,
        "sport": sport,
        "dst": dst,
        "dport": dport,
        "class": cls,
        "family": fam,
        "packets": 3,
        "bytes": 300,
        "first_ts": 1.0,
        "last_ts": 2.0,
        "rule": "carrier",
    }


def test_load_labels_and_lookup_both_directions(tmp_path: Path) -> None:
    write_label_file(
        tmp_path / "a.labels.json",
        _doc(
            [
                _flow(17, "192.168.5.2", 40000, "198.51.100.7", 1194, "vpn", "openvpn"),
                _flow(1, "192.168.5.2", 0, "198.51.100.7", 0, "tunnel", "icmp-tunnel"),
            ]
        ),
    )
    sub = tmp_path / "more"
    sub.mkdir()
    write_label_file(
        sub / "b.labels.json", _doc([_flow(6, "192.168.5.2", 50000, "203.0.113.9", 443, "benign", "tls")])
    )
    labels = load_labels(tmp_path)
    assert len(labels) == 3
    assert labels[0].scenario == "openvpn" and labels[0].capture.endswith(".pcap")
    idx = LabelIndex(labels)
    assert idx.label_for((17, "192.168.5.2", 40000, "198.51.100.7", 1194)) == ("vpn", "openvpn")
    assert idx.label_for(FiveTuple(17, "198.51.100.7", 1194, "192.168.5.2", 40000)) == ("vpn", "openvpn")
    assert idx.label_for((17, bytes([198, 51, 100, 7]), 1194, "192.168.5.2", 40000)) == ("vpn", "openvpn")
    # ICMP: ports are ignored (ids/types live there in other flow keys)
    assert idx.label_for((1, "198.51.100.7", 8, "192.168.5.2", 77)) == ("tunnel", "icmp-tunnel")
    assert idx.label_for((17, "192.168.5.2", 40001, "198.51.100.7", 1194)) is None
    assert label_for((6, "203.0.113.9", 443, "192.168.5.2", 50000), labels) == ("benign", "tls")
    assert len(load_labels(sub / "b.labels.json")) == 1


def test_rejects_unverified_wrong_format_and_bad_class(tmp_path: Path) -> None:
    p = tmp_path / "x.labels.json"
    write_label_file(p, _doc([], ok=False))
    with pytest.raises(ConfigError, match="unverified"):
        load_labels(p)
    p.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match="not a"):
        load_labels(p)
    write_label_file(p, _doc([_flow(6, "10.0.0.1", 1, "10.0.0.2", 2, "vpnish", "x")]))
    with pytest.raises(ConfigError, match="TAXONOMY"):
        load_labels(p)
    write_label_file(p, _doc([{"proto": 6}]))
    with pytest.raises(ConfigError, match="bad flow entry"):
        load_labels(p)


def test_conflicting_labels_are_an_error(tmp_path: Path) -> None:
    write_label_file(
        tmp_path / "a.labels.json",
        _doc(
            [
                _flow(6, "10.0.0.1", 1000, "10.0.0.2", 22, "tunnel", "ssh"),
                _flow(6, "10.0.0.2", 22, "10.0.0.1", 1000, "benign", "tls"),
            ]
        ),
    )
    with pytest.raises(ConfigError, match="conflicting"):
        LabelIndex.from_path(tmp_path)


def _corpus(name: str) -> Path:
    p = SHARED / "corpus" / "ndpi" / name
    if not p.exists():
        pytest.skip(f"../shared not present: {p}")
    return p


@pytest.mark.corpus
def test_flow_counts_agree_with_ndpi() -> None:
    # nDPI's expected output for 443-opvn.pcap: TCP 192.168.1.84:52973 <-> 192.12.192.103:1194,
    # 25 pkts/5636 bytes <-> 21 pkts/5937 bytes (bytes counted with the 14-byte Ethernet header)
    s = summarize_capture(_corpus("443-opvn.pcap"))
    assert s.packets == 46 and s.other == 0 and len(s.flows) == 1
    fl = s.flows[0]
    assert fl.key == FiveTuple(6, "192.168.1.84", 52973, "192.12.192.103", 1194)
    assert fl.packets == 46
    assert fl.fwd_bytes + 25 * 14 == 5636
    assert fl.rev_bytes + 21 * 14 == 5937


@pytest.mark.corpus
def test_pcapng_and_garbage_are_capture_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as ei:
        summarize_capture(_corpus("ssh.pcap"))  # pcapng
    assert ei.value.reason == "capture.bad_magic"
    with pytest.raises(CaptureError):
        summarize_capture(tmp_path / "missing.pcap")


@pytest.mark.corpus
@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=12_000), junk=st.binary(max_size=200))
def test_truncated_capture_gives_summary_or_capture_error(
    cut: int, junk: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = _corpus("443-opvn.pcap").read_bytes()
    p = tmp_path_factory.mktemp("cut") / "x.pcap"
    p.write_bytes(data[:cut] + junk)
    try:
        s = summarize_capture(p)
    except CaptureError:
        return
    assert s.packets >= sum(1 for _ in s.flows)
    assert all(f.packets > 0 and f.bytes >= 20 * f.packets for f in s.flows) or s.other >= 0


def test_flowsum_reassembles_fragments_and_counts_icmp(tmp_path: Path) -> None:
    # a classic pcap (raw IPv4) written by hand: UDP first fragment + second fragment + ICMP echo
    def ip(proto: int, ident: int, frag: int, payload: bytes, src: bytes, dst: bytes) -> bytes:
        hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, src, dst)
        return hdr + payload

    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    udp = struct.pack(">HHHH", 5000, 1194, 8 + 2000, 0) + b"x" * 1472
    pkts = [
        ip(17, 7, 0x2000, udp, a, b),
        ip(17, 7, 185, b"y" * 528, a, b),
        ip(1, 9, 0, b"\x08\x00" + b"z" * 62, a, b),
        ip(1, 10, 0, b"\x00\x00" + b"z" * 62, b, a),
    ]
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    for i, p in enumerate(pkts):
        out += struct.pack("<IIII", 100 + i, 0, len(p), len(p)) + p
    f = tmp_path / "frag.pcap"
    f.write_bytes(out)
    s = summarize_capture(f)
    assert s.packets == 4 and s.other == 0
    assert [(fl.key.proto, fl.packets) for fl in s.flows] == [(17, 2), (1, 2)]
    assert s.flows[0].bytes == 20 + len(udp) + 20 + 528
    assert s.flows[1].fwd_bytes == s.flows[1].rev_bytes == 84


def test_registry_families_are_taxonomy_names() -> None:
    scen = all_scenarios()
    assert {"openvpn", "wireguard", "shadowsocks", "ssh-socks", "https", "dns"} <= {
        n for n, sc in scen.items() if sc.quick
    }
    for sc in scen.values():
        # TAXONOMY.md: benign families include `app:<name>` (ssh-interactive is app:ssh)
        app = sc.traffic_class == "benign" and sc.family.startswith("app:") and len(sc.family) > 4
        assert app or sc.family in TAXONOMY_FAMILIES[sc.traffic_class], sc.name
        assert sc.variants and sc.programs
    later = {"ipsec", "anyconnect", "tinc", "nebula", "tor", "tor-obfs4", "http3", "ssh-interactive"}
    assert later <= set(scen)
    assert not any(scen[n].quick for n in later)


def test_package_list_matches_registry() -> None:
    listed = [
        ln.strip()
        for ln in (REPO / "scripts" / "lab-packages.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert set(listed) == set(all_packages())


def test_parse_selection() -> None:
    assert [sc.name for sc, _ in parse_selection([], quick=True)] == [
        n for n, sc in all_scenarios().items() if sc.quick
    ]
    assert [(sc.name, v) for sc, v in parse_selection(["openvpn:tcp-static", "dns"])] == [
        ("openvpn", "tcp-static"),
        ("dns", None),
    ]
    with pytest.raises(ConfigError, match="unknown scenario"):
        parse_selection(["nope"])
    with pytest.raises(ConfigError, match="no variant"):
        parse_selection(["openvpn:nope"])


def test_cli_list_install_and_usage_errors() -> None:
    from sluice.cli.lab import lab

    runner = CliRunner()
    r = runner.invoke(lab, ["list", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert {row["name"] for row in rows} == set(all_scenarios())
    assert all(isinstance(row["installed"], bool) for row in rows)
    r = runner.invoke(lab, ["install", "--dry-run"])
    assert r.exit_code == 0 and "DPkg::Lock::Timeout=600" in r.output and "openvpn" in r.output
    r = runner.invoke(lab, ["run", "no-such-scenario"])
    assert r.exit_code == 2 and "unknown scenario" in r.output
