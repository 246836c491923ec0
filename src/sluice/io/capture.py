"""Streaming readers for pcap and pcapng files, plain or gzip-compressed.

Theory of operation: :func:`open_capture` sniffs the first bytes (gzip magic, then the pcap or
pcapng magic) and returns a reader that yields :class:`~sluice.io.source.RawPacket` one at a time
from a bounded read buffer, so a capture of any size is read in constant memory.

Damage is never a traceback. A header that is not a capture raises
:class:`~sluice.errors.CaptureError` before any packet is read. Damage after the header — a last
record cut short, a record length that cannot be right, a block whose trailing length disagrees —
is counted in ``stats.anomalies`` under a stable reason, and reading stops there: the packets before
the damage have already been yielded. A record header of sixteen zero bytes (no time, no length) is
padding — a file preallocated and never filled, or a decompression bomb — and ends the read as
``capture.zero_padding``. A gzip stream that inflates past the limits of
:class:`~sluice.io.limits.ReadLimits` raises :class:`~sluice.errors.CaptureError`
(``capture.gzip_ratio``) instead of being read on. ``-`` and ``/dev/stdin`` read standard input,
which may be a pipe: nothing here seeks. Formats: pcap (tcpdump.org/manpages/pcap-savefile.5) in both
byte orders with micro- or nanosecond stamps; pcapng (draft-ietf-opsawg-pcapng) with several
sections and interfaces, EPB, SPB and the obsolete packet block, ``if_tsresol``/``if_tsoffset``.
"""

from __future__ import annotations

__all__ = [
    "MAX_RECORD_BYTES",
    "CaptureReader",
    "open_capture",
    "sniff_format",
]

import gzip
import os
import stat
import struct
import sys
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from sluice.errors import CaptureError
from sluice.io.limits import BoundedGunzip, CountingReader, LimitExceeded, ReadLimits
from sluice.io.source import RawPacket, SourceStats

MAX_RECORD_BYTES = 16 * 1024 * 1024
"""A record or block longer than this is damage, not a packet."""

READ_CHUNK_BYTES = 1 << 20

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
"""Magic → (byte order, timestamp ticks per second)."""

MAX_TSRESOL_EXP = 62
"""Largest if_tsresol exponent honoured (ticks per second must fit in 63 bits)."""


def ticks_to_seconds(ticks: int, per_second: int) -> float:
    """Seconds from a tick count: whole seconds plus the exactly-divided fraction.

    Computing ``ticks * 10**-9`` instead rounds twice and turns 115 s into 115.00000000000001;
    this form is exact to the last bit the float can hold (and is what the batch path computes).
    """
    return ticks // per_second + (ticks % per_second) / per_second


ZERO_RECORD = bytes(16)
"""A pcap record header of zeros: padding, never a packet (``capture.zero_padding``)."""

PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"


def sniff_format(head: bytes) -> str:
    """Name the capture format from its first bytes: ``pcap``, ``pcapng``, ``gzip`` or ``""``."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:4] in PCAP_MAGICS:
        return "pcap"
    if head[:4] == PCAPNG_SHB:
        return "pcapng"
    return ""


class _Buffer:
    """A bounded read-ahead window over a binary stream."""

    def __init__(self, f: BinaryIO | BoundedGunzip, stats: SourceStats, path: str = "") -> None:
        self.f = f
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.stats = stats
        self.path = path

    def ensure(self, n: int) -> bool:
        """Make ``n`` bytes available at ``pos``; False if the stream ends first."""
        have = len(self.buf) - self.pos
        if have >= n or self.eof:
            return have >= n
        # read1: a damaged gzip stream raises on the call after its last good bytes, whereas
        # read(n) would drop everything decompressed in the same call
        read = getattr(self.f, "read1", self.f.read)
        parts = [self.buf[self.pos :]]
        while have < n:
            try:
                chunk = read(max(READ_CHUNK_BYTES, n - have))
            except LimitExceeded as exc:
                raise CaptureError("capture.gzip_ratio", self.path, str(exc)) from None
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                self.stats.count(
                    "capture.bad_gzip" if not isinstance(exc, EOFError) else "capture.truncated_gzip"
                )
                chunk = b""
            if not chunk:
                self.eof = True
                break
            self.stats.bytes_read += len(chunk)
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts)  # joined once: linear even when a record spans many chunks
        self.pos = 0
        return have >= n

    def take(self, n: int) -> bytes:
        p = self.pos
        self.pos = p + n
        return self.buf[p : p + n]

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and self.eof


class CaptureReader:
    """Iterate the packets of one capture file.

    Args:
        path: a pcap or pcapng file, optionally gzip-compressed.

    Raises:
        CaptureError: ``capture.not_found``, ``capture.is_directory``,
            ``capture.permission_denied``, ``capture.empty``, ``capture.bad_magic``.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ReadLimits | None = None) -> None:
        self.path = os.fspath(path)
        self.stats = SourceStats()
        self.limits = limits or ReadLimits.from_env()
        raw = _open_file(self.path)
        self._raw = raw
        magic = _read_head(raw, 4)
        self.compressed = sniff_format(magic) == "gzip"
        # the head is kept and handed to _Buffer: nothing is read twice, nothing seeks (pipes)
        self._counted = CountingReader(raw, magic if self.compressed else b"")
        self._counted.consumed = 0 if self.compressed else len(magic)
        self._file: BinaryIO | BoundedGunzip = self._counted  # type: ignore[assignment]
        head = magic
        if self.compressed:
            self._file = BoundedGunzip(self._counted, self.limits)
            try:
                head = self._file.read1(1 << 16)
            except (EOFError, OSError, zlib.error) as exc:
                raw.close()
                raise CaptureError("capture.bad_gzip", self.path, f"bad gzip: {exc}") from exc
        self._head = head
        st = os.fstat(raw.fileno())
        self.stats.bytes_total = st.st_size if stat.S_ISREG(st.st_mode) else None
        self.format = sniff_format(head[:4])
        if not head:
            self.close()
            raise CaptureError("capture.empty", self.path, "empty file")
        if self.format not in ("pcap", "pcapng"):
            self.close()
            raise CaptureError(
                "capture.bad_magic", self.path, f"not a pcap or pcapng file (magic {head[:4].hex()})"
            )

    def progress(self) -> tuple[int, int | None]:
        """Bytes of the file consumed so far, and the file size."""
        done = self._counted.consumed
        return done, self.stats.bytes_total

    def __iter__(self) -> Iterator[RawPacket]:
        buf = _Buffer(self._file, self.stats, self.path)
        buf.buf, self._head = self._head, b""
        self.stats.bytes_read += len(buf.buf)
        if self.format == "pcap":
            yield from _read_pcap(buf, self.stats)
        else:
            yield from _read_pcapng(buf, self.stats)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
        self._raw.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_capture(path: str | os.PathLike[str], limits: ReadLimits | None = None) -> CaptureReader:
    """Open a capture file (``-``: standard input) for streaming; see :class:`CaptureReader`."""
    return CaptureReader(path, limits)


def _read_head(f: BinaryIO, n: int) -> bytes:
    """The first ``n`` bytes (fewer at the end), however a pipe splits them."""
    head = b""
    while len(head) < n:
        chunk = f.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _open_file(path: str) -> BinaryIO:
    if path == "-":
        return open(os.dup(sys.stdin.fileno()), "rb")  # closed by CaptureReader.close
    if os.path.isdir(path):
        raise CaptureError("capture.is_directory", path, "is a directory, not a capture file")
    try:
        return open(path, "rb")  # closed by CaptureReader.close
    except FileNotFoundError as exc:
        raise CaptureError("capture.not_found", path, "no such file") from exc
    except PermissionError as exc:
        raise CaptureError("capture.permission_denied", path, "permission denied") from exc
    except OSError as exc:
        raise CaptureError("capture.io_error", path, str(exc)) from exc


def _read_pcap(buf: _Buffer, stats: SourceStats) -> Iterator[RawPacket]:
    if not buf.ensure(24):
        stats.count("capture.truncated_header")
        return
    header = buf.take(24)
    order, per_second = PCAP_MAGICS[header[:4]]
    _maj, _min, _zone, _sig, snaplen, network = struct.unpack(order + "HHiIII", header[4:])
    linktype = network & 0xFFFF
    rec = struct.Struct(order + "IIII")
    limit = max(snaplen, 262144) if snaplen <= MAX_RECORD_BYTES else MAX_RECORD_BYTES
    while True:
        if not buf.ensure(16):
            if not buf.at_end or buf.pos < len(buf.buf):
                stats.count("capture.truncated_record")
            return
        header = buf.take(16)
        if header == ZERO_RECORD:
            stats.count("capture.zero_padding")
            return
        sec, frac, caplen, wirelen = rec.unpack(header)
        if caplen > limit:
            stats.count("capture.bad_record_length")
            return
        if not buf.ensure(caplen):
            stats.count("capture.truncated_record")
            return
        data = buf.take(caplen)
        yield RawPacket(sec + frac / per_second, linktype, data, max(wirelen, caplen), 0)


class _Iface:
    __slots__ = ("linktype", "per_second", "snaplen", "tsoffset")

    def __init__(self, linktype: int, snaplen: int, per_second: int, tsoffset: int) -> None:
        self.linktype, self.snaplen, self.per_second, self.tsoffset = (
            linktype,
            snaplen,
            per_second,
            tsoffset,
        )


def _idb(body: bytes, order: str) -> _Iface:
    linktype, _res, snaplen = struct.unpack_from(order + "HHI", body, 0)
    per_second, tsoffset = 1_000_000, 0
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, pos)
        pos += 4
        if code == 0:
            break
        value = body[pos : pos + length]  # may be shorter than ``length`` in a damaged block
        if code == 9 and len(value) >= 1:  # if_tsresol
            r = value[0]
            exp = min(r & 0x7F, MAX_TSRESOL_EXP)
            per_second = 2**exp if r & 0x80 else 10 ** min(r, 18)
        elif code == 14 and len(value) >= 8:  # if_tsoffset
            (tsoffset,) = struct.unpack_from(order + "q", value, 0)
        pos += (length + 3) & ~3
    return _Iface(linktype, snaplen, per_second, tsoffset)


def _read_pcapng(buf: _Buffer, stats: SourceStats) -> Iterator[RawPacket]:
    order = "<"
    ifaces: list[_Iface] = []
    first = True
    while True:
        if not buf.ensure(12):
            if buf.pos < len(buf.buf):
                stats.count("capture.truncated_record")
            return
        btype_raw = buf.buf[buf.pos : buf.pos + 4]
        if btype_raw == PCAPNG_SHB:
            bom = buf.buf[buf.pos + 8 : buf.pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                stats.count("capture.bad_byte_order_magic")
                return
            ifaces = []
        elif first:
            stats.count("capture.bad_block_length")
            return
        first = False
        btype, blen = struct.unpack_from(order + "II", buf.buf, buf.pos)
        if blen < 12 or blen % 4 or blen > MAX_RECORD_BYTES:
            stats.count("capture.bad_block_length")
            return
        if not buf.ensure(blen):
            stats.count("capture.truncated_record")
            return
        block = buf.take(blen)
        (trailer,) = struct.unpack_from(order + "I", block, blen - 4)
        if trailer != blen:
            stats.count("capture.bad_block_length")
            return
        body = block[8 : blen - 4]
        if btype == 1:
            if len(body) < 8:
                stats.count("capture.bad_block_length")
                return
            ifaces.append(_idb(body, order))
        elif btype == 6:  # enhanced packet block
            if len(body) < 20:
                stats.count("capture.bad_block_length")
                return
            iid, hi, lo, caplen, wirelen = struct.unpack_from(order + "IIIII", body, 0)
            if iid >= len(ifaces):
                stats.count("capture.unknown_interface")
                continue
            if 20 + caplen > len(body):
                stats.count("capture.bad_record_length")
                return
            ifc = ifaces[iid]
            ts = ticks_to_seconds((hi << 32) | lo, ifc.per_second) + ifc.tsoffset
            yield RawPacket(ts, ifc.linktype, body[20 : 20 + caplen], max(wirelen, caplen), iid)
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if not ifaces or len(body) < 4:
                stats.count("capture.unknown_interface")
                continue
            (wirelen,) = struct.unpack_from(order + "I", body, 0)
            ifc = ifaces[0]
            caplen = min(wirelen, len(body) - 4)
            if ifc.snaplen:
                caplen = min(caplen, ifc.snaplen)
            yield RawPacket(0.0, ifc.linktype, body[4 : 4 + caplen], wirelen, 0)
        elif btype == 2:  # obsolete packet block
            if len(body) < 20:
                stats.count("capture.bad_block_length")
                return
            iid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(order + "HHIIII", body, 0)
            if iid >= len(ifaces) or 20 + caplen > len(body):
                stats.count("capture.bad_record_length")
                return
            ifc = ifaces[iid]
            ts = ticks_to_seconds((hi << 32) | lo, ifc.per_second) + ifc.tsoffset
            yield RawPacket(ts, ifc.linktype, body[20 : 20 + caplen], max(wirelen, caplen), iid)
        # other blocks (name resolution, statistics, decryption secrets, custom) are skipped
