"""The batch path equals the streaming path: fixed captures and random mixes (hypothesis).

Both paths read the same file; the streaming :class:`PacketLoop` (strict) is fed by
:func:`open_capture` and finished, its summary merged with the reader's anomalies; the batch
path is :func:`batch_flows` (strict, early records on). Records are compared as
``{(early, flow_id): record.to_dict()}`` and summaries with ``to_dict()``.
"""

from __future__ import annotations

import gzip
import random
import tempfile
from collections import deque
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.batch.flows import batch_flows
from sluice.batch.index import index_capture
from sluice.batch.kernels import OK, SLOW, parse_l2l4
from sluice.flows.table import FlowConfig
from sluice.io.pcap_writer import PcapWriter
from sluice.io.source import LinkType
from sluice.synth import packets as P
from sluice.synth.sessions import Framing, LinuxSllFraming, NullFraming, RawIpFraming, TcpSession, UdpExchange
from tests.flows.test_app import app_sessions
from tests.flows.test_table import Frame, finals, keyed, paths_agree, stream_flows, write_capture
from tests.wire.test_l2l4 import C4, C6, MALFORMED, S4, S6, SAMPLES, tunnel_sessions

CONFIGS = {
    "defaults": FlowConfig(),
    "short": FlowConfig(idle_timeout_s=0.05, active_timeout_s=0.2, early_packets=3, inspect_packets=4),
}


@cache
def sessions() -> list[list[Frame]]:
    """Whole conversations: applications, tunnels, fragments, odd link types, long flows."""
    out = [list(frames) for frames in app_sessions().values()]
    for sess, _text in tunnel_sessions(start=2.0).values():
        out.append([(ts, sess.linktype, fr) for ts, fr in sess.packets])
    odd_links: list[tuple[Framing, str, str]] = [
        (NullFraming(), C6, S6),
        (RawIpFraming(), C4, S4),
        (LinuxSllFraming(1), C4, S4),
    ]
    for k, (framing, client, server) in enumerate(odd_links):
        u = UdpExchange(
            (client, 41000 + k), (server, 4433), start_ts=3.0, mtu=700, framing=framing, rng=random.Random(7)
        )
        u.client_send(bytes(range(256)) * 8)
        u.server_send(b"r" * 900)
        out.append([(ts, u.linktype, fr) for ts, fr in u.packets])
    t = TcpSession((C4, 42000), (S4, 8080), start_ts=4.0, rng=random.Random(8))
    t.client_send(b"x" * 5000)
    t.server_send(b"y" * 300)
    t.close()
    out.append([(ts, t.linktype, fr) for ts, fr in t.packets[1:]])  # SYN lost: SYN+ACK first
    long = UdpExchange((C4, 43000), (S4, 5060), start_ts=5.0)
    for k in range(45):
        long.send(k % 4 == 3, bytes([k]) * (10 + k))
    out.append([(ts, long.linktype, fr) for ts, fr in long.packets])
    echo = [P.ipv4(C4, S4, 1, P.icmp_echo(3, k, b"ping")) for k in range(3)]
    echo += [P.ipv4(S4, C4, 1, P.icmp_echo(3, k, b"ping", reply=True)) for k in range(3)]
    out.append([(6.0 + k, int(LinkType.RAW), pkt) for k, pkt in enumerate(echo)])
    return out


V4_FRAGS = P.ipv4_fragments(C4, S4, 17, P.udp(7000, 53, bytes(3000), src_ip=C4, dst_ip=S4), ident=77)
V6_FRAGS = P.ipv6_fragments(C6, S6, 17, P.udp(7001, 53, bytes(3000), src_ip=C6, dst_ip=S6), ident=78)
SINGLES: list[tuple[int, bytes]] = (
    [(s.linktype, s.frame) for s in SAMPLES]
    + [(lt, fr) for _n, lt, fr, _r in MALFORMED]
    + [(int(LinkType.RAW), fr) for fr in V4_FRAGS + V6_FRAGS]  # alone or out of order: orphans
)


# --------------------------------------------------------------------------------------------
# fixed captures


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_sample_and_malformed_frame(tmp_path: Path, name: str) -> None:
    singles = SINGLES[: len(SAMPLES) + len(MALFORMED)]
    frames = [(10.0 + k * 0.01, lt, fr) for k, (lt, fr) in enumerate(singles)]
    records, summary = paths_agree(write_capture(tmp_path / "s.pcapng", frames), CONFIGS[name])
    want: dict[str, int] = {}
    for _n, _lt, _fr, reason in MALFORMED:
        want[reason] = want.get(reason, 0) + 1
    assert dict(summary.anomalies) == want
    assert summary.packets == len(singles) and summary.ip_packets + summary.non_ip == len(SAMPLES)
    assert len(finals(records)) == summary.flows > 20


@pytest.mark.parametrize("name", list(CONFIGS))
def test_all_sessions_interleaved(tmp_path: Path, name: str) -> None:
    frames = sorted(f for s in sessions() for f in s)
    records, summary = paths_agree(write_capture(tmp_path / "a.pcapng", frames), CONFIGS[name])
    assert summary.flows >= len(sessions())
    assert {r.meta.app for r in finals(records)} >= {"tls", "quic", "dns", "http", "ssh", "socks"}
    assert {r.tunnels.split(":")[0] for r in finals(records)} >= {
        "gre",
        "vxlan/42",
        "gtpu",
        "ipip",
        "6in4",
        "4in6",
        "teredo",
    }
    if name == "short":
        assert summary.early_records > 0
        assert {r.end_reason for r in finals(records)} >= {"idle", "active", "end"}


@pytest.mark.parametrize(
    "linktype",
    [LinkType.ETHERNET, LinkType.RAW, LinkType.LINUX_SLL, LinkType.LINUX_SLL2, LinkType.NULL, LinkType.LOOP],
)
def test_single_link_type_pcap(tmp_path: Path, linktype: int) -> None:
    frames = [(20.0 + k, lt, fr) for k, (lt, fr) in enumerate(SINGLES) if lt == linktype]
    assert frames
    path = tmp_path / "one.pcap"
    with path.open("wb") as f:
        w = PcapWriter(f, linktype, nanosecond=True, big_endian=linktype % 2 == 0)
        for ts, _lt, fr in frames:
            w.write(ts, fr)
    paths_agree(path, FlowConfig())


def test_gzip_capture_same_records(tmp_path: Path) -> None:
    plain = write_capture(tmp_path / "p.pcapng", sorted(f for s in sessions()[:6] for f in s))
    packed = tmp_path / "p.pcapng.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a = batch_flows(str(plain), FlowConfig(), strict=True, early=True)
    b = batch_flows(str(packed), FlowConfig(), strict=True, early=True)
    assert keyed(a.records) == keyed(b.records) and a.summary.to_dict() == b.summary.to_dict()
    paths_agree(packed, FlowConfig())


def test_fragments_out_of_order(tmp_path: Path) -> None:
    order = [V4_FRAGS[1], V6_FRAGS[0], V4_FRAGS[0], V6_FRAGS[2], V4_FRAGS[2], V6_FRAGS[1]]
    frames = [(1.0 + k * 0.001, int(LinkType.RAW), fr) for k, fr in enumerate(order)]
    records, summary = paths_agree(write_capture(tmp_path / "f.pcap", frames), FlowConfig(early_packets=2))
    assert summary.anomalies == {"ip.fragment_orphan": 1}  # only the v4 fragment before its first
    got = sorted((r.client_port, r.packets) for r in finals(records))
    assert got == [(0, 1), (7000, 2), (7001, 3)]


def test_damaged_capture_anomalies_in_both_summaries(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "d.pcap",
        [
            (1.0 + k, int(LinkType.RAW), P.ipv4(C4, S4, 17, P.udp(1, 2, b"z" * k, src_ip=C4, dst_ip=S4)))
            for k in range(5)
        ],
    )
    path.write_bytes(path.read_bytes()[:-3])
    records, summary = paths_agree(path, FlowConfig())
    assert summary.anomalies["capture.truncated_record"] == 1
    assert summary.packets == 4 and finals(records)[0].packets == 4


def test_records_order_early_flag_and_progress(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "o.pcapng", sorted(f for s in sessions()[:4] for f in s))
    seen: list[tuple[float, str]] = []
    res = batch_flows(
        str(path),
        FlowConfig(early_packets=2),
        early=False,
        progress=lambda fraction, stage: seen.append((fraction, stage)),
    )
    assert all(not r.early for r in res.records)
    assert [r.flow_id for r in res.records] == list(range(len(res.records)))
    fractions = [f for f, _stage in seen]
    assert seen[0] == (0.0, "index") and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    with_early = batch_flows(str(path), FlowConfig(early_packets=2), early=True)
    n_final = len(res.records)
    assert [r.early for r in with_early.records] == [False] * n_final + [
        True
    ] * with_early.summary.early_records
    streamed, _ = stream_flows(path, FlowConfig(early_packets=2))
    assert sum(r.early for r in streamed) == with_early.summary.early_records > 0


def test_fast_and_slow_paths_both_used(tmp_path: Path) -> None:
    """The numba parser takes the common frames and leaves tunnels, options and odd links to the
    streaming dissectors; the comparison above therefore covers both implementations."""
    frames = [(1.0 + k, lt, fr) for k, (lt, fr) in enumerate(SINGLES)]
    ix = index_capture(str(write_capture(tmp_path / "f.pcapng", frames)))
    n = len(ix)
    status, ipver = np.zeros(n, np.int64), np.zeros(n, np.int64)
    addrs = [np.zeros(n, np.uint64) for _ in range(4)]  # src hi/lo, dst hi/lo
    rest = [np.zeros(n, np.int64) for _ in range(9)]  # ports, proto, flags, seq, len, vlan, payload
    parse_l2l4(ix.buf, ix.offset, ix.caplen, ix.linktype, status, ipver, *addrs, *rest)
    assert (status == OK).sum() >= 10 and (status == SLOW).sum() >= 30


# --------------------------------------------------------------------------------------------
# random mixes

DELTAS = [0.0, 1e-6, 0.001, 0.5, 1.5, 29.0, 31.0, 61.0, 121.0, 1000.0, -0.25, -3.0, -200.0]


@st.composite
def mixes(draw: st.DrawFn) -> tuple[list[Frame], FlowConfig, bool]:
    pool = sessions()
    queues: list[deque[tuple[int, bytes]]] = []
    for i in draw(st.lists(st.integers(0, len(pool) - 1), max_size=4)):
        queues.append(deque((lt, fr) for _ts, lt, fr in pool[i]))
    for i in draw(st.lists(st.integers(0, len(SINGLES) - 1), max_size=8)):
        queues.append(deque([SINGLES[i]]))
    frames: list[Frame] = []
    t = 1_000_000.0
    while queues:
        q = draw(st.integers(0, len(queues) - 1))
        lt, fr = queues[q].popleft()
        if not queues[q]:
            queues.pop(q)
        t = max(0.0, t + draw(st.sampled_from(DELTAS)))
        frames.append((t, lt, fr))
    config = FlowConfig(
        idle_timeout_s=draw(st.sampled_from([1.0, 30.0, 120.0])),
        active_timeout_s=draw(st.sampled_from([2.0, 60.0, 1800.0])),
        early_packets=draw(st.integers(0, 9)),
        inspect_packets=draw(st.sampled_from([0, 2, 5, 32])),
    )
    return frames, config, draw(st.booleans())


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mix=mixes())
def test_batch_equals_streaming_on_random_mixes(mix: tuple[list[Frame], FlowConfig, bool]) -> None:
    frames, config, compress = mix
    if not frames:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = write_capture(Path(tmp) / "m.cap", frames)
        if compress:
            path.write_bytes(gzip.compress(path.read_bytes()))
        records, summary = paths_agree(path, config)
        assert summary.packets == len(frames)
        assert len(finals(records)) == summary.flows


def test_random_mix_with_equal_timestamps_and_reuse(tmp_path: Path) -> None:
    """The same five-tuple reused after a timeout, with ties in time: one deterministic case."""
    pkt = P.ipv4(C4, S4, 6, P.tcp(1, 2, 0, 0, 0x02, src_ip=C4, dst_ip=S4))
    back = P.ipv4(S4, C4, 6, P.tcp(2, 1, 0, 1, 0x12, src_ip=S4, dst_ip=C4))
    times = [5.0, 5.0, 5.0, 200.0, 200.0, 100.0, 400.0, 400.0]
    frames = [(t, int(LinkType.RAW), pkt if k % 2 == 0 else back) for k, t in enumerate(times)]
    records, _ = paths_agree(write_capture(tmp_path / "r.pcap", frames), FlowConfig(early_packets=2))
    assert [(r.packets, r.end_reason) for r in finals(records)] == [(3, "idle"), (3, "idle"), (2, "end")]


def test_summary_does_not_depend_on_early_flag(tmp_path: Path) -> None:
    """``early`` only chooses whether early records are returned; the run's counts are the same
    (the streaming loop always counts the early records it emits)."""
    path = write_capture(tmp_path / "e.pcapng", sorted(f for s in sessions()[:4] for f in s))
    config = FlowConfig(early_packets=2)
    without = batch_flows(str(path), config, early=False).summary.to_dict()
    with_early = batch_flows(str(path), config, early=True).summary.to_dict()
    assert with_early["early_records"] > 0
    assert without == with_early
