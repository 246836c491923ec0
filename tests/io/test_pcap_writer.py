"""The pcap/pcapng writers, checked by the real readers: tshark, capinfos and tcpdump."""

from __future__ import annotations

import gzip
import io
import math
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import CaptureError
from sluice.io.pcap_writer import PcapngWriter, PcapWriter, _split_float_ts, open_writer
from sluice.io.source import LinkType

needs_tools = pytest.mark.skipif(
    not (shutil.which("tshark") and shutil.which("capinfos") and shutil.which("tcpdump")),
    reason="tshark, capinfos and tcpdump are needed",
)

LINKTYPE_USER0 = 147  # tshark shows these frames as plain data


def tshark(path: Path, *fields: str, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """Rows of ``tshark -T fields`` output."""
    cmd = ["tshark", "-n", "-r", str(path), *extra, "-T", "fields", "-E", "occurrence=a"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def capinfos(path: Path) -> str:
    return subprocess.run(["capinfos", str(path)], capture_output=True, text=True, check=True).stdout


def tcpdump_times(path: Path) -> list[str]:
    """Epoch timestamps (9 digits) of the packets tcpdump reads."""
    cmd = ["tcpdump", "-tt", "--time-stamp-precision=nano", "-nn", "-r", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split(" ", 1)[0] for line in out.splitlines() if line[:1].isdigit()]


def random_packets(seed: int, n: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    t = 1_700_000_000 * 10**9 + rng.randrange(10**9)
    out = []
    for _ in range(n):
        t += rng.randrange(1, 3 * 10**9)
        out.append((t, rng.randbytes(rng.randrange(1, 1600))))
    return out


def epoch_ns(ts_ns: int, digits: int) -> str:
    sec, frac = divmod(ts_ns, 10**9)
    frac = frac // 10 ** (9 - digits) * 10 ** (9 - digits)
    return f"{sec}.{frac:09d}"


@needs_tools
@pytest.mark.parametrize("nanosecond", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_read_back_by_tshark_capinfos_tcpdump(
    tmp_path: Path, nanosecond: bool, big_endian: bool
) -> None:
    pkts = random_packets(1 + nanosecond + 2 * big_endian, 200)
    path = tmp_path / "t.pcap"
    with path.open("wb") as fh:
        w = PcapWriter(fh, LINKTYPE_USER0, nanosecond=nanosecond, big_endian=big_endian)
        for ts, data in pkts:
            w.write_ns(ts, data)
        w.close()
        assert w.packets_written == len(pkts)
    rows = tshark(path, "frame.time_epoch", "frame.len", "frame.cap_len", "data.data")
    assert len(rows) == len(pkts)
    digits = 9 if nanosecond else 6
    for (ts, data), (epoch, flen, clen, hexdata) in zip(pkts, rows, strict=True):
        assert epoch == epoch_ns(ts, digits)
        assert int(flen) == int(clen) == len(data)
        assert bytes.fromhex(hexdata) == data
    info = capinfos(path)
    assert f"Number of packets:   {len(pkts)}" in info
    assert f"({digits})" in info  # timestamp precision
    assert tcpdump_times(path) == [epoch_ns(ts, digits) for ts, _ in pkts]


@needs_tools
def test_pcap_snaplen_wirelen_and_linktype(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    with open_writer(path, "pcap", linktype=LinkType.RAW, snaplen=100) as w:
        assert isinstance(w, PcapWriter)
        w.write(1_700_000_000.25, b"\x45" + bytes(499))  # truncated to 100
        w.write(1_700_000_001.5, b"\x45" + bytes(59), wirelen=1500)  # capture shorter than wire
    rows = tshark(path, "frame.len", "frame.cap_len", "frame.time_epoch")
    assert rows == [
        ["500", "100", "1700000000.250000000"],
        ["1500", "60", "1700000001.500000000"],
    ]
    info = capinfos(path)
    assert "Raw IP" in info
    assert "file hdr: 100 bytes" in info


@needs_tools
def test_gzip_capture_is_read_transparently(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap.gz"
    pkts = random_packets(7, 50)
    with open_writer(path, "pcap", gzip=True, linktype=LINKTYPE_USER0, nanosecond=True) as w:
        for ts, data in pkts:
            w.write_ns(ts, data)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    rows = tshark(path, "frame.time_epoch", "frame.len")
    assert [r[0] for r in rows] == [epoch_ns(ts, 9) for ts, _ in pkts]
    # libpcap does not read gzip itself; decompressed, it reads the same packets
    unzipped = tmp_path / "t.pcap"
    unzipped.write_bytes(gzip.decompress(path.read_bytes()))
    assert tcpdump_times(unzipped) == [epoch_ns(ts, 9) for ts, _ in pkts]


@needs_tools
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_interfaces_comments_resolution_and_spb(tmp_path: Path, big_endian: bool) -> None:
    path = tmp_path / "t.pcapng"
    pkts = random_packets(11, 60)
    with open_writer(path, "pcapng", big_endian=big_endian, comment="section note") as w:
        assert isinstance(w, PcapngWriter)
        ns = w.add_interface(LINKTYPE_USER0, tsresol_exp=9, name="fast0")
        us = w.add_interface(LinkType.RAW, tsresol_exp=6, snaplen=64, name="tun0")
        assert (ns, us) == (0, 1)
        for i, (ts, data) in enumerate(pkts):
            iface = i % 2
            payload = data if iface == 0 else b"\x45" + data
            w.write_ns(iface, ts, payload, comment=f"pkt {i}" if i % 3 == 0 else None)
        w.write_simple(b"simple block data")
        with pytest.raises(ValueError, match="snap length"):
            w.write_simple(b"short", wirelen=40)
    rows = tshark(
        path,
        "frame.interface_id",
        "frame.interface_name",
        "frame.time_epoch",
        "frame.len",
        "frame.cap_len",
        "frame.comment",
    )
    assert len(rows) == len(pkts) + 1
    for i, ((ts, data), row) in enumerate(zip(pkts, rows, strict=False)):
        ifid, name, epoch, flen, clen, comment = row
        assert int(ifid) == i % 2
        assert name == ("fast0" if i % 2 == 0 else "tun0")
        assert epoch == epoch_ns(ts, 9 if i % 2 == 0 else 6)
        wire = len(data) + (i % 2)
        assert int(flen) == wire
        assert int(clen) == (wire if i % 2 == 0 else min(wire, 64))
        assert comment == (f"pkt {i}" if i % 3 == 0 else "")
    spb = rows[-1]
    assert spb[0] == "0"
    assert (spb[3], spb[4]) == ("17", "17")
    info = capinfos(path)
    assert "Number of interfaces in file: 2" in info
    assert "section note" in info


@needs_tools
def test_pcapng_simple_packet_cut_at_snaplen(tmp_path: Path) -> None:
    path = tmp_path / "spb.pcapng"
    with open_writer(path, "pcapng") as w:
        w.add_interface(LINKTYPE_USER0, snaplen=8)
        w.write_simple(bytes(range(16)))
    assert tshark(path, "frame.len", "frame.cap_len", "data.data") == [["16", "8", "0001020304050607"]]


@needs_tools
def test_pcapng_float_timestamps_keep_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "f.pcapng"
    with open_writer(path, "pcapng") as w:
        w.add_interface(LINKTYPE_USER0)
        w.write(0, 1_720_000_000.123456, b"x")
        w.write(0, 0.000001, b"y")
    rows = tshark(path, "frame.time_epoch")
    assert rows == [["1720000000.123456000"], ["0.000001000"]]


def test_invalid_arguments_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, LinkType.ETHERNET)
    with pytest.raises(ValueError, match="wirelen"):
        w.write(1.0, b"abcd", wirelen=3)
    with pytest.raises(ValueError, match="timestamp"):
        w.write(-1.0, b"abcd")
    with pytest.raises(ValueError, match="timestamp"):
        w.write(math.nan, b"abcd")
    with pytest.raises(ValueError, match="snaplen"):
        PcapWriter(io.BytesIO(), 1, snaplen=0)
    ng = PcapngWriter(io.BytesIO())
    with pytest.raises(ValueError, match="interface 0"):
        ng.write_simple(b"x")
    with pytest.raises(ValueError, match="unknown interface"):
        ng.write(0, 1.0, b"x")
    with pytest.raises(ValueError, match="tsresol"):
        ng.add_interface(1, tsresol_exp=10)
    with pytest.raises(ValueError, match="format"):
        open_writer(tmp_path / "x", "erf")  # type: ignore[call-overload]
    with pytest.raises(CaptureError) as err:
        open_writer(tmp_path / "missing-dir" / "x.pcap")
    assert err.value.reason == "capture.open_failed"


def test_timestamps_beyond_the_format_are_refused() -> None:
    with pytest.raises(ValueError, match="2106"):
        PcapWriter(io.BytesIO(), 1).write_ns(2**32 * 10**9, b"x")
    ng = PcapngWriter(io.BytesIO())
    ng.add_interface(1, tsresol_exp=9)
    ng.write_ns(0, 2**64 - 1, b"x")
    with pytest.raises(ValueError, match="64 bits"):
        ng.write_ns(0, 2**64, b"x")


def test_writer_given_a_file_leaves_it_open() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, LinkType.ETHERNET) as w:
        w.write(1.0, b"\x00" * 14)
    assert not buf.closed
    assert len(buf.getvalue()) == 24 + 16 + 14


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False))
def test_float_timestamp_conversion_is_exact_to_the_float(ts: float) -> None:
    ns = _split_float_ts(ts)
    sec, frac = divmod(ns, 10**9)
    assert sec == math.floor(ts) or (frac == 0 and sec == math.floor(ts) + 1)
    # the float's own spacing bounds the error
    assert abs(ns / 1e9 - ts) <= max(math.ulp(ts), 1e-9)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2**64 - 1),
            st.binary(max_size=300),
            st.none() | st.text(max_size=20),
            st.integers(min_value=0, max_value=1),
        ),
        max_size=20,
    ),
    st.booleans(),
)
def test_pcapng_blocks_are_aligned_and_self_describing(
    pkts: list[tuple[int, bytes, str | None, int]], big_endian: bool
) -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf, big_endian=big_endian, comment="c")
    w.add_interface(1, tsresol_exp=9)
    w.add_interface(101, tsresol_exp=6, snaplen=0)
    for ts, data, comment, iface in pkts:
        w.write_ns(iface, ts, data, comment=comment)
    raw = buf.getvalue()
    bo = ">" if big_endian else "<"
    off, blocks = 0, []
    while off < len(raw):
        btype, total = struct.unpack_from(bo + "II", raw, off)
        assert total % 4 == 0 and total >= 12
        assert struct.unpack_from(bo + "I", raw, off + total - 4)[0] == total
        blocks.append((btype, raw[off + 8 : off + total - 4]))
        off += total
    assert off == len(raw)
    assert [b[0] for b in blocks] == [0x0A0D0D0A, 1, 1] + [6] * len(pkts)
    for (ts, data, _, iface), (_, body) in zip(pkts, blocks[3:], strict=True):
        ifid, hi, lo, cap, orig = struct.unpack_from(bo + "IIIII", body)
        units = (hi << 32) | lo
        assert ifid == iface
        assert units == (ts if iface == 0 else ts // 1000)
        assert cap == orig == len(data)
        assert body[20 : 20 + cap] == data
