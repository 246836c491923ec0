"""The flow table: orientation, timeouts, eviction, early records, per-flow features.

Every property except ``max_flows`` (which only the streaming path has) is checked on both paths:
the frames are written to a capture, read by the streaming :class:`PacketLoop` and by
:func:`batch_flows`, and the two sets of records must be identical before anything else is
asserted (:func:`both_paths`).
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from sluice.batch.flows import batch_flows
from sluice.flows.loop import PacketLoop, RunSummary
from sluice.flows.record import RECORD_COLUMNS, FlowRecord
from sluice.flows.table import FlowConfig, payload_stats
from sluice.io.capture import open_capture
from sluice.io.pcap_writer import PcapngWriter, PcapWriter
from sluice.wire.frame import LinkType, RawPacket
from tests.wire.test_l2l4 import ACK, FIN, HTTP_GET, PSH, SYN, eth, tcp_ip, udp_ip

RST = 0x04
Frame = tuple[float, int, bytes]
"""(ts, linktype, frame bytes)"""


# --------------------------------------------------------------------------------------------
# helpers shared with the app and batch tests


def write_capture(path: Path, frames: list[Frame], wirelens: list[int] | None = None) -> Path:
    """Frames in the given order: pcap for one link type, else pcapng, one interface per type.

    Microsecond stamps: whole seconds read back exactly (``units * 1e-9`` is off by one ulp for
    about one whole second in seven), so timeout boundaries in the tests are exact.
    """
    lens: list[int | None] = [None] * len(frames) if wirelens is None else list(wirelens)
    with path.open("wb") as f:
        if len({lt for _ts, lt, _fr in frames}) == 1:
            pw = PcapWriter(f, frames[0][1], snaplen=0xFFFF)
            for (ts, _lt, fr), wl in zip(frames, lens, strict=True):
                pw.write(ts, fr, wl)
            return path
        w = PcapngWriter(f)
        ifaces: dict[int, int] = {}
        for (ts, lt, fr), wl in zip(frames, lens, strict=True):
            if lt not in ifaces:
                ifaces[lt] = w.add_interface(lt, tsresol_exp=6, snaplen=0)
            w.write(ifaces[lt], ts, fr, wl)
    return path


def stream_flows(path: Path, config: FlowConfig) -> tuple[list[FlowRecord], RunSummary]:
    """Streaming path over a capture file, the reader's anomalies merged into the summary."""
    loop = PacketLoop(config, strict=True)
    out: list[FlowRecord] = []
    with open_capture(path) as reader:
        for raw in reader:
            loop.process(raw, out)
        summary = loop.finish(out)
        summary.merge_counts(reader.stats.anomalies)
    return out, summary


def keyed(records: list[FlowRecord]) -> dict[tuple[bool, int], dict[str, object]]:
    """Records by (early, flow_id), as flat dicts."""
    out = {(r.early, r.flow_id): r.to_dict() for r in records}
    assert len(out) == len(records), "two records with the same (early, flow_id)"
    return out


def paths_agree(path: Path, config: FlowConfig) -> tuple[list[FlowRecord], RunSummary]:
    """Run both paths on one capture, assert identical records and summaries."""
    streamed, summary = stream_flows(path, config)
    batched = batch_flows(str(path), config, strict=True, early=True)
    assert keyed(streamed) == keyed(batched.records)
    assert summary.to_dict() == batched.summary.to_dict()
    return sorted(streamed, key=lambda r: (r.early, r.flow_id)), summary


def both_paths(
    frames: list[Frame], config: FlowConfig | None = None, wirelens: list[int] | None = None
) -> tuple[list[FlowRecord], RunSummary]:
    """Write ``frames`` to a capture and run :func:`paths_agree` on it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_capture(Path(tmp) / "c.pcapng", frames, wirelens)
        return paths_agree(path, config or FlowConfig())


def finals(records: list[FlowRecord]) -> list[FlowRecord]:
    """Final records in flow-id order."""
    return [r for r in records if not r.early]


def earlies(records: list[FlowRecord]) -> list[FlowRecord]:
    """Early records in flow-id order."""
    return [r for r in records if r.early]


def raw(ts: float, packet: bytes) -> Frame:
    """An IP packet as a LINKTYPE_RAW frame."""
    return (ts, int(LinkType.RAW), packet)


A, B = "10.1.0.1", "10.2.0.2"  # A sorts before B
Z = "10.200.0.9"  # sorts after both


# --------------------------------------------------------------------------------------------
# orientation


@pytest.mark.parametrize(("client", "server"), [(A, B), (Z, B)], ids=["client-low", "client-high"])
def test_client_is_sender_of_first_packet(client: str, server: str) -> None:
    frames = [
        raw(10.0, udp_ip(client, server, 5000, 53, b"q1")),
        raw(10.1, udp_ip(server, client, 53, 5000, b"answer")),
        raw(10.2, udp_ip(client, server, 5000, 53, b"q2")),
    ]
    records, summary = both_paths(frames)
    (rec,) = finals(records)
    assert (rec.client, rec.client_port, rec.server, rec.server_port) == (client, 5000, server, 53)
    assert (rec.c2s_packets, rec.s2c_packets) == (2, 1)
    assert rec.pkt_dirs == (0, 1, 0)
    assert (rec.c2s_payload_bytes, rec.s2c_payload_bytes) == (4, 6)
    assert rec.proto == 17 and rec.ip_version == 4 and rec.end_reason == "end"
    assert summary.flows == 1 and summary.ip_packets == 3


@pytest.mark.parametrize(("client", "server"), [(A, B), (Z, B)], ids=["client-low", "client-high"])
def test_synack_first_makes_its_receiver_the_client(client: str, server: str) -> None:
    frames = [
        raw(1.0, tcp_ip(server, client, 443, 40000, SYN | ACK | 0x40)),  # SYN+ACK (with ECE)
        raw(1.1, tcp_ip(client, server, 40000, 443, ACK)),
        raw(1.2, tcp_ip(client, server, 40000, 443, ACK | PSH, b"hello")),
    ]
    records, _ = both_paths(frames)
    (rec,) = finals(records)
    assert (rec.client, rec.client_port, rec.server, rec.server_port) == (client, 40000, server, 443)
    assert rec.pkt_dirs == (1, 0, 0)
    assert rec.s2c_tcp_flags == SYN | ACK | 0x40 and rec.c2s_tcp_flags == ACK | PSH


def test_mid_stream_capture_client_is_first_sender() -> None:
    frames = [raw(1.0, tcp_ip(B, A, 443, 40000, ACK | PSH, b"data")), raw(1.1, tcp_ip(A, B, 40000, 443, ACK))]
    (rec,) = finals(both_paths(frames)[0])
    assert (rec.client, rec.client_port) == (B, 443)


def test_flow_ids_follow_first_packets() -> None:
    frames = [
        raw(1.0, udp_ip(Z, B, 1, 2, b"")),
        raw(1.1, udp_ip(A, B, 3, 4, b"")),
        raw(1.2, udp_ip(B, Z, 2, 1, b"")),
        raw(1.3, tcp_ip(A, B, 5, 6, SYN)),
    ]
    records, summary = both_paths(frames)
    assert [(r.flow_id, r.client_port) for r in finals(records)] == [(0, 1), (1, 3), (2, 5)]
    assert summary.flows == 3


def test_icmp_flow_has_no_ports() -> None:
    from sluice.synth import packets as P

    frames = [
        raw(1.0, P.ipv4(A, B, 1, P.icmp_echo(1, 1, b"abc"))),
        raw(1.1, P.ipv4(B, A, 1, P.icmp_echo(1, 1, b"abc", reply=True))),
    ]
    (rec,) = finals(both_paths(frames)[0])
    assert (rec.proto, rec.client_port, rec.server_port) == (1, 0, 0)
    assert (rec.client, rec.c2s_packets, rec.s2c_packets) == (A, 1, 1)
    assert rec.c2s_payload_bytes == 7  # identifier, sequence and data after type/code/checksum


# --------------------------------------------------------------------------------------------
# timeouts


def test_idle_timeout_splits_strictly_after_the_gap() -> None:
    times = [0.0, 5.0, 15.0, 26.0, 27.0]  # 15 -> 26 is 11 s
    frames = [raw(100.0 + t, udp_ip(A, B, 7, 8, b"x")) for t in times]
    records, summary = both_paths(frames, FlowConfig(idle_timeout_s=10.0))
    first, second = finals(records)
    assert (first.packets, first.end_reason, first.first_ts, first.last_ts) == (3, "idle", 100.0, 115.0)
    assert (second.packets, second.end_reason, second.first_ts) == (2, "end", 126.0)
    assert second.pkt_iats == (0.0, 1.0)
    assert summary.flows == 2


def test_idle_flow_ended_by_the_clock_of_other_flows() -> None:
    frames = [raw(0.0, udp_ip(A, B, 1, 2, b"a"))]
    frames += [raw(float(t), udp_ip(A, Z, 3, 4, b"b")) for t in range(1, 60, 5)]
    records, _ = both_paths(frames, FlowConfig(idle_timeout_s=20.0))
    reasons = {r.server: r.end_reason for r in finals(records)}
    assert reasons == {B: "idle", Z: "end"}


def test_active_timeout_splits_long_flows() -> None:
    frames = [raw(1000.0 + t, udp_ip(A, B, 7, 8, b"x")) for t in range(0, 101, 10)]
    records, _ = both_paths(frames, FlowConfig(idle_timeout_s=100.0, active_timeout_s=30.0))
    got = [(r.packets, r.first_ts, r.end_reason) for r in finals(records)]
    assert got == [(4, 1000.0, "active"), (4, 1040.0, "active"), (3, 1080.0, "end")]


def test_timestamps_going_backwards() -> None:
    frames = [raw(t, udp_ip(A, B, 7, 8, b"x")) for t in (100.0, 90.0, 95.0, 101.0)]
    (rec,) = finals(both_paths(frames)[0])
    assert (rec.first_ts, rec.last_ts, rec.duration) == (100.0, 101.0, 1.0)
    assert rec.pkt_iats == (0.0, 0.0, 0.0, 1.0)  # never negative; measured from the latest packet


def test_late_packet_of_a_stale_flow_is_judged_on_the_capture_clock() -> None:
    """Timeouts run on the capture clock (the latest time seen), so a flow whose packets arrive
    'in the past' is already idle when its second packet comes."""
    frames = [
        raw(1000.0, udp_ip(A, Z, 1, 2, b"clock")),
        raw(500.0, udp_ip(A, B, 3, 4, b"late")),
        raw(501.0, udp_ip(A, B, 3, 4, b"late")),
    ]
    records, _ = both_paths(frames, FlowConfig(idle_timeout_s=120.0))
    late = [r for r in finals(records) if r.server == B]
    assert [(r.packets, r.end_reason) for r in late] == [(1, "idle"), (1, "idle")]


# --------------------------------------------------------------------------------------------
# limits (streaming only: the batch path holds the whole capture)


def test_max_flows_evicts_least_recently_seen() -> None:
    loop = PacketLoop(FlowConfig(max_flows=2), strict=True)
    out: list[FlowRecord] = []
    for ts, pkt in [
        (0.0, udp_ip(A, B, 1, 1, b"a")),
        (1.0, udp_ip(A, B, 2, 2, b"b")),
        (2.0, udp_ip(A, B, 1, 1, b"a")),
        (3.0, udp_ip(A, B, 3, 3, b"c")),
        (4.0, udp_ip(A, B, 2, 2, b"b")),
    ]:
        loop.process(RawPacket(ts, LinkType.RAW, pkt, len(pkt)), out)
    assert [(r.client_port, r.end_reason) for r in out] == [(2, "evicted"), (1, "evicted")]
    summary = loop.finish(out)
    assert summary.anomalies == Counter({"flows.table_full": 2})
    assert [(r.flow_id, r.client_port, r.end_reason, r.packets) for r in out] == [
        (1, 2, "evicted", 1),
        (0, 1, "evicted", 2),
        (2, 3, "end", 1),
        (3, 2, "end", 1),
    ]
    assert summary.flows == 4 and len(loop.table.flows) == 0


def test_expire_ends_only_idle_flows() -> None:
    loop = PacketLoop(FlowConfig(idle_timeout_s=10.0), strict=True)
    out: list[FlowRecord] = []
    for ts, pkt in [(0.0, udp_ip(A, B, 1, 1, b"a")), (5.0, udp_ip(A, B, 2, 2, b"b"))]:
        loop.process(RawPacket(ts, LinkType.RAW, pkt, len(pkt)), out)
    loop.table.expire(10.0, out)
    assert out == []
    loop.table.expire(10.5, out)
    assert [(r.client_port, r.end_reason) for r in out] == [(1, "idle")]
    loop.table.expire(100.0, out)
    assert [r.client_port for r in out] == [1, 2] and not loop.table.flows


# --------------------------------------------------------------------------------------------
# early records


def _http_exchange(n_acks: int) -> list[Frame]:
    frames = [
        raw(1.0, tcp_ip(A, B, 40000, 80, SYN, seq=100)),
        raw(1.1, tcp_ip(B, A, 80, 40000, SYN | ACK, seq=500, ack=101)),
        raw(1.2, tcp_ip(A, B, 40000, 80, ACK, seq=101, ack=501)),
        raw(1.3, tcp_ip(A, B, 40000, 80, ACK | PSH, HTTP_GET, seq=101, ack=501)),
    ]
    frames += [
        raw(1.4 + k / 100, tcp_ip(B, A, 80, 40000, ACK, seq=501, ack=101 + len(HTTP_GET)))
        for k in range(n_acks)
    ]
    resp = b"HTTP/1.1 200 OK\r\nServer: test\r\nContent-Length: 0\r\n\r\n"
    frames.append(raw(2.0, tcp_ip(B, A, 80, 40000, ACK | PSH, resp, seq=501, ack=101 + len(HTTP_GET))))
    frames.append(raw(2.1, tcp_ip(A, B, 40000, 80, FIN | ACK, seq=101 + len(HTTP_GET), ack=501 + len(resp))))
    return frames


def test_early_record_once_with_the_first_k_packets() -> None:
    frames = _http_exchange(n_acks=3)  # 9 packets; the response is the 8th
    records, summary = both_paths(frames, FlowConfig(early_packets=5))
    (early,) = earlies(records)
    (final,) = finals(records)
    assert early.flow_id == final.flow_id and early.end_reason == "early" and final.end_reason == "end"
    assert (early.c2s_packets, early.s2c_packets, early.packets) == (3, 2, 5)
    assert early.pkt_dirs == (0, 1, 0, 0, 1) and len(early.pkt_sizes) == 5
    assert early.last_ts == pytest.approx(1.4) and final.last_ts == pytest.approx(2.1)
    assert early.c2s_tcp_flags == SYN | ACK | PSH and final.c2s_tcp_flags == SYN | ACK | PSH | FIN
    assert early.meta.http_method == "GET" and early.meta.http_status == 0
    assert final.meta.http_status == 200 and final.packets == 9
    assert summary.early_records == 1


def test_early_record_emitted_at_the_kth_packet() -> None:
    loop = PacketLoop(FlowConfig(early_packets=3), strict=True)
    out: list[FlowRecord] = []
    for k, (ts, lt, fr) in enumerate(_http_exchange(n_acks=0)):
        loop.process(RawPacket(ts, lt, fr, len(fr)), out)
        assert len(out) == (1 if k >= 2 else 0)
    assert out[0].early and out[0].packets == 3


@pytest.mark.parametrize("k", [0, 8])
def test_no_early_record_when_never_reached(k: int) -> None:
    records, summary = both_paths(_http_exchange(n_acks=0), FlowConfig(early_packets=k))  # 6 packets
    assert earlies(records) == [] and summary.early_records == 0


def test_early_at_exactly_the_flow_length() -> None:
    records, _ = both_paths(_http_exchange(n_acks=0), FlowConfig(early_packets=6))
    (early,) = earlies(records)
    (final,) = finals(records)
    assert {k: v for k, v in early.to_dict().items() if k not in ("early", "end_reason")} == {
        k: v for k, v in final.to_dict().items() if k not in ("early", "end_reason")
    }


def test_inspection_limited_to_first_packets() -> None:
    records, _ = both_paths(_http_exchange(n_acks=3), FlowConfig(inspect_packets=6))
    (final,) = finals(records)
    assert final.meta.http_method == "GET" and final.meta.http_status == 0  # response is 8th


# --------------------------------------------------------------------------------------------
# per-flow features


def test_first_32_sizes_dirs_iats() -> None:
    frames = []
    for i in range(40):
        c2s = i % 3 != 2
        pkt = udp_ip(A, B, 9, 10, b"p" * i) if c2s else udp_ip(B, A, 10, 9, b"p" * i)
        frames.append(raw(1000.0 + i * 0.125 + (i % 2) * 0.0625, pkt))
    (rec,) = finals(both_paths(frames)[0])
    assert rec.packets == 40
    assert rec.pkt_sizes == tuple(28 + i for i in range(32))
    assert rec.pkt_dirs == tuple(0 if i % 3 != 2 else 1 for i in range(32))
    ts = [f[0] for f in frames]
    assert rec.pkt_iats == pytest.approx((0.0, *(ts[i] - ts[i - 1] for i in range(1, 32))), abs=1e-9)
    assert rec.to_dict()["pkt_iats"] == list(rec.pkt_iats)


def _entropy(data: bytes) -> float:
    counts = Counter(data)
    return -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())


def test_payload_entropy_and_printable() -> None:
    binary = bytes(range(256))
    frames = [
        raw(1.0, tcp_ip(A, B, 40000, 80, SYN)),
        raw(1.1, tcp_ip(A, B, 40000, 80, ACK | PSH, HTTP_GET)),
        raw(1.2, tcp_ip(B, A, 80, 40000, ACK | PSH, binary)),
        raw(1.3, tcp_ip(B, A, 80, 40000, ACK | PSH, b"\x00" * 10)),
    ]
    (rec,) = finals(both_paths(frames)[0])
    assert rec.c2s_printable == 1.0
    assert rec.c2s_entropy == pytest.approx(_entropy(HTTP_GET), abs=1e-6)
    assert rec.s2c_entropy == pytest.approx(8.0) and rec.s2c_printable == pytest.approx(98 / 256, abs=1e-6)
    assert rec.c2s_first_payload_len == len(HTTP_GET)
    assert payload_stats(b"") == (-1.0, -1.0)
    assert payload_stats(b"aaaa") == (0.0, 1.0)
    (one_sided,) = finals(both_paths([raw(1.0, udp_ip(A, B, 1, 2, b"\t\r\n\x01"))])[0])
    assert (one_sided.s2c_entropy, one_sided.s2c_printable) == (-1.0, -1.0)
    assert (one_sided.c2s_entropy, one_sided.c2s_printable) == (2.0, 0.75)


def test_tcp_flags_or_per_direction() -> None:
    frames = [
        raw(1.0, tcp_ip(A, B, 40000, 443, SYN)),
        raw(1.1, tcp_ip(B, A, 443, 40000, SYN | ACK)),
        raw(1.2, tcp_ip(A, B, 40000, 443, ACK)),
        raw(1.3, tcp_ip(A, B, 40000, 443, ACK | PSH, b"x")),
        raw(1.4, tcp_ip(B, A, 443, 40000, ACK | PSH, b"y")),
        raw(1.5, tcp_ip(A, B, 40000, 443, FIN | ACK)),
        raw(1.6, tcp_ip(B, A, 443, 40000, RST)),
    ]
    (rec,) = finals(both_paths(frames)[0])
    assert rec.c2s_tcp_flags == SYN | ACK | PSH | FIN == 0x1B
    assert rec.s2c_tcp_flags == SYN | ACK | PSH | RST == 0x1E


def test_bytes_count_wire_lengths() -> None:
    pkts = [eth(udp_ip(A, B, 1, 2, b"a" * 100)), eth(udp_ip(B, A, 2, 1, b"b" * 50))]
    frames = [(1.0, int(LinkType.ETHERNET), pkts[0][:60]), (1.1, int(LinkType.ETHERNET), pkts[1])]
    (rec,) = finals(both_paths(frames, wirelens=[len(pkts[0]), len(pkts[1])])[0])
    assert (rec.c2s_bytes, rec.s2c_bytes) == (len(pkts[0]), len(pkts[1]))
    assert rec.pkt_sizes == (128, 78)  # from the IP headers, not the captured bytes
    assert (rec.c2s_payload_bytes, rec.s2c_payload_bytes) == (60 - 42, 50)


def test_record_columns_are_the_flat_dict_keys() -> None:
    (rec,) = finals(both_paths([raw(1.0, udp_ip(A, B, 1, 2, b"x"))])[0])
    assert tuple(rec.to_dict()) == RECORD_COLUMNS
    assert rec.to_dict()["vlans"] == [] and rec.to_dict()["duration"] == 0.0


def test_non_ip_frames_are_counted_not_flowed() -> None:
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    records, summary = both_paths(
        [(1.0, int(LinkType.ETHERNET), arp), (1.1, int(LinkType.ETHERNET), eth(udp_ip(A, B, 1, 2, b"")))]
    )
    assert (summary.packets, summary.non_ip, summary.ip_packets, summary.flows) == (2, 1, 1, 1)
    assert len(finals(records)) == 1


def test_fragment_reassembly_memory_is_bounded() -> None:
    """Overlapping fragments of one datagram cannot hold more than a datagram's 64 KiB.

    3000 fragments of 1400 bytes at offsets 8, 16, 24 ... (all legal, all overlapping) would
    otherwise keep about 4 MB for a single datagram, and the tracker keeps 4096 datagrams.
    """
    import tracemalloc

    from sluice.synth import packets as P

    loop = PacketLoop(strict=True)
    out: list[FlowRecord] = []
    tracemalloc.start()
    try:
        base, _peak = tracemalloc.get_traced_memory()
        for k in range(3000):
            pkt = P.ipv4(A, B, 17, bytes(1400), ident=7, frag_offset=8 + 8 * k, more_fragments=True, df=False)
            loop.process(RawPacket(1.0 + k * 1e-6, LinkType.RAW, pkt, len(pkt)), out)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loop.summary.anomalies["ip.fragment_orphan"] == 3000
    assert held - base < 1_000_000, f"{(held - base) / 1e6:.1f} MB held for one 64 KiB datagram"
