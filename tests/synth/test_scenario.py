"""Scenario mixes: tshark's reading of a generated capture agrees with the ground truth."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from sluice.errors import ConfigError
from sluice.io.pcap_writer import open_writer
from sluice.synth.flows import BUILDERS
from sluice.synth.payloads import PayloadPool
from sluice.synth.scenario import generate
from sluice.synth.truth import FlowTruth, GroundTruth
from tests.synth.capture_util import needs_tshark, tshark_fields

ALL_KINDS = {k: 1.0 for k in BUILDERS}

FIELDS = (
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "vlan.id",
    "tls.handshake.type",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "quic.version",
    "dns.qry.name",
    "dns.flags.response",
    "http.host",
    "http.request.full_uri",
    "ssh.protocol",
    "socks.remote_name",
    "tcp.analysis.flags",
    "tcp.analysis.out_of_order",
    "tcp.checksum.status",
    "udp.checksum.status",
    "ip.checksum.status",
    "_ws.malformed",
)


def run_scenario(**kw: object) -> tuple[list[tuple[float, bytes]], GroundTruth]:
    sc = generate(**kw)  # type: ignore[arg-type]
    frames = list(sc)
    return frames, sc.truth


def flow_key(row: dict[str, str]) -> tuple[str, str, str, str]:
    src = row["ip.src"] or row["ipv6.src"]
    dst = row["ip.dst"] or row["ipv6.dst"]
    sport = row["tcp.srcport"] or row["udp.srcport"]
    dport = row["tcp.dstport"] or row["udp.dstport"]
    return (src, sport, dst, dport)


class Generated:
    def __init__(self, tmp: Path) -> None:
        self.frames, self.truth = run_scenario(
            n_flows=48, seed=11, mix=ALL_KINDS, ipv6_fraction=0.3, vlan_fraction=0.25
        )
        self.path = tmp / "mix.pcap"
        with open_writer(self.path, "pcap", linktype=1) as w:
            for ts, fr in self.frames:
                w.write(ts, fr)
        rows = tshark_fields(self.path, FIELDS, two_pass=True)
        index = {}
        for f in self.truth:
            ends = ((f.client_ip, str(f.client_port)), (f.server_ip, str(f.server_port)))
            index[(*ends[0], *ends[1])] = f
            index[(*ends[1], *ends[0])] = f
        self.rows = rows
        self.per_flow: dict[int, list[dict[str, str]]] = defaultdict(list)
        for r in rows:
            self.per_flow[index[flow_key(r)].flow_id].append(r)

    def seen(self, f: FlowTruth, field: str) -> list[str]:
        return [r[field] for r in self.per_flow[f.flow_id] if r[field]]


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    return Generated(tmp_path_factory.mktemp("scenario"))


@needs_tshark
def test_every_frame_belongs_to_its_flow(gen: Generated) -> None:
    assert len(gen.rows) == len(gen.frames) == gen.truth.total_packets
    assert {k for f in gen.truth for k in [f.kind]} == set(BUILDERS)
    for f in gen.truth:
        assert len(gen.per_flow[f.flow_id]) == f.packets, f
    times = [ts for ts, _ in gen.frames]
    assert times == sorted(times)


@needs_tshark
def test_nothing_malformed_and_checksums_good(gen: Generated) -> None:
    assert not any(r["_ws.malformed"] for r in gen.rows)
    for field in ("tcp.checksum.status", "udp.checksum.status", "ip.checksum.status"):
        assert {r[field] for r in gen.rows} <= {"", "1"}
    for f in gen.truth:
        flags = gen.seen(f, "tcp.analysis.flags")
        if f.out_of_order:
            assert gen.seen(f, "tcp.analysis.out_of_order"), f
        else:
            assert flags == [], (f, flags)


@needs_tshark
def test_application_facts_match_truth(gen: Generated) -> None:
    checked: Counter[str] = Counter()
    for f in gen.truth:
        if f.app in ("tls", "quic", "socks5"):
            assert gen.seen(f, "tls.handshake.extensions_server_name") == [f.sni], f
            alpn = gen.seen(f, "tls.handshake.extensions_alpn_str")
            assert alpn[0] == ",".join(f.alpn), f
            # TLS 1.2 servers answer ALPN in the clear; TLS 1.3 and QUIC encrypt the answer
            assert alpn[1:] == ([f.alpn_selected] if f.tls_version == "TLSv1.2" else []), f
        if f.app == "quic":
            assert {v for r in gen.seen(f, "quic.version") for v in r.split(",")} == {
                f"0x{f.quic_version:08x}"
            }
        if f.app == "dns":
            assert set(gen.seen(f, "dns.qry.name")) == {f.dns_qname}
            assert sorted(gen.seen(f, "dns.flags.response")) == ["0", "1"]
        if f.app == "http":
            assert gen.seen(f, "http.host")[0] == f.http_host
            assert gen.seen(f, "http.request.full_uri")[0] == f.http_url
        if f.app == "ssh":
            banners = {f.ssh_client_banner, f.ssh_server_banner}
            assert set(gen.seen(f, "ssh.protocol")) == banners and len(banners) == 2
        if f.app == "socks5":
            assert gen.seen(f, "socks.remote_name")[0] == (f.socks_target or "").split(":")[0]
        if f.vlans:
            assert set(gen.seen(f, "vlan.id")) == {str(v) for v in f.vlans}
        else:
            assert gen.seen(f, "vlan.id") == []
        checked[f.app] += 1
    assert set(checked) == {"tls", "quic", "dns", "http", "ssh", "socks5"}


def test_same_seed_same_capture_with_a_saved_pool() -> None:
    pool = PayloadPool(4, filler_size=1 << 18)
    frames_a, truth_a = run_scenario(n_flows=25, seed=4, mix=ALL_KINDS, pool=pool)
    reloaded = PayloadPool.from_json(json.loads(json.dumps(pool.to_json())))
    frames_b, truth_b = run_scenario(n_flows=25, seed=4, mix=ALL_KINDS, pool=reloaded)
    assert frames_a == frames_b
    assert truth_a == truth_b
    assert reloaded.handshakes_made == 0
    frames_c, _ = run_scenario(n_flows=25, seed=5, mix=ALL_KINDS, pool=reloaded)
    assert frames_c != frames_a


SUBPROCESS = """
import json, sys
from sluice.synth.scenario import generate
sc = generate(30, 21, mix={k: 1.0 for k in %r})
digest = [len(f) for _, f in sc]
print(json.dumps({"truth": sc.truth.to_json(), "lengths": digest}))
"""


def test_same_seed_same_truth_in_a_fresh_process() -> None:
    """Without a saved pool the handshake bytes differ, but not the flows, sizes or timing."""
    code = SUBPROCESS % (list(BUILDERS),)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    theirs = json.loads(out)
    sc = generate(30, 21, mix=ALL_KINDS)
    lengths = [len(f) for _, f in sc]
    assert theirs["truth"] == json.loads(json.dumps(sc.truth.to_json()))
    assert theirs["lengths"] == lengths


def test_packet_budget_is_met() -> None:
    frames, truth = run_scenario(n_flows=30, seed=2, min_packets=4000)
    assert len(frames) >= 4000 and len(truth) >= 30
    assert truth.total_packets == len(frames) == truth.meta["packets"]
    small, _ = run_scenario(n_flows=30, seed=2, mix={"dns": 1.0}, min_packets=500)
    assert len(small) >= 500  # DNS sizes cannot scale: flows are added instead


def test_ground_truth_round_trips(tmp_path: Path) -> None:
    _, truth = run_scenario(n_flows=20, seed=8, mix=ALL_KINDS)
    path = tmp_path / "t.json"
    truth.dump(path)
    back = GroundTruth.load(path)
    assert back == truth and back.meta == json.loads(json.dumps(truth.meta))
    assert all(isinstance(f.alpn, tuple) for f in back)
    bad = tmp_path / "bad.json"
    bad.write_text('{"flows": [{"nope": 1}]}')
    with pytest.raises(ValueError):
        GroundTruth.load(bad)


def test_bad_parameters_fail_at_load_time() -> None:
    with pytest.raises(ConfigError, match="mix"):
        generate(10, 1, mix={"gopher": 1.0})
    with pytest.raises(ConfigError, match="mix"):
        generate(10, 1, mix={"dns": -1.0})
    with pytest.raises(ConfigError, match="n_flows"):
        generate(0, 1)
    with pytest.raises(ConfigError, match="ipv6_fraction"):
        generate(10, 1, ipv6_fraction=2.0)


def test_kinds_without_handshakes_are_byte_identical() -> None:
    mix = {"dns": 1.0, "http": 1.0, "dns_tcp": 1.0, "ssh": 1.0}
    a, _ = run_scenario(n_flows=20, seed=3, mix=mix)
    b, _ = run_scenario(n_flows=20, seed=3, mix=mix)
    digest = hashlib.sha256(b"".join(f for _, f in a)).hexdigest()
    assert digest == hashlib.sha256(b"".join(f for _, f in b)).hexdigest()
