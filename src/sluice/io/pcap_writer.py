"""Capture file writers: classic pcap and pcapng.

Theory of operation
-------------------
Both writers are thin, streaming encoders of the two capture formats that tcpdump, Wireshark
and every pcap reader understand:

* **pcap** (tcpdump.org "pcap" format, draft-ietf-opsawg-pcap): a 24-byte global header with
  the link type, then one 16-byte record header per packet. The magic number ``0xa1b2c3d4``
  means microsecond timestamps, ``0xa1b23c4d`` nanosecond timestamps; the byte order of the
  whole file is the byte order in which the magic number is written.
* **pcapng** (draft-ietf-opsawg-pcapng): a Section Header Block (SHB), one Interface Description
  Block (IDB) per interface (each with its own link type, snap length and timestamp resolution
  ``if_tsresol``), then Enhanced Packet Blocks (EPB, any interface, optional ``opt_comment``) or
  Simple Packet Blocks (SPB, always interface 0, no timestamp). Every block is padded to 32 bits
  and ends with a copy of its total length.

Timestamps are given either as float seconds (``write``) or as integer nanoseconds
(``write_ns``). A float near the current epoch carries only about 0.2 µs of precision, so
nanosecond-exact files must be written with ``write_ns``.

The writers never seek, so they work on pipes and on :mod:`gzip` streams (``open_writer(...,
gzip=True)``; Wireshark and tcpdump read gzip-compressed captures transparently).
"""

from __future__ import annotations

__all__ = [
    "PcapWriter",
    "PcapngWriter",
    "open_writer",
]

import gzip as _gzip
import math
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Self, cast, overload

from sluice.errors import CaptureError

PCAP_MAGIC_US = 0xA1B2C3D4
"""pcap magic number for microsecond timestamps."""
PCAP_MAGIC_NS = 0xA1B23C4D
"""pcap magic number for nanosecond timestamps."""
DEFAULT_SNAPLEN = 262144
"""Default snap length (bytes), the one tcpdump uses."""

PCAPNG_SHB = 0x0A0D0D0A
"""pcapng Section Header Block type."""
PCAPNG_IDB = 0x00000001
"""pcapng Interface Description Block type."""
PCAPNG_SPB = 0x00000003
"""pcapng Simple Packet Block type."""
PCAPNG_EPB = 0x00000006
"""pcapng Enhanced Packet Block type."""
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
"""pcapng byte-order magic in the SHB."""

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_TSRESOL = 9

_NS_PER_S = 1_000_000_000


class _Closing:
    """Shared ownership logic: close the file only if the writer opened it."""

    _fh: BinaryIO
    _owns: bool
    _closed: bool

    def flush(self) -> None:
        """Flush buffered bytes to the underlying file."""
        self._fh.flush()

    def close(self) -> None:
        """Flush, and close the file if this writer opened it (see :func:`open_writer`)."""
        if self._closed:
            return
        self._closed = True
        if self._owns:
            self._fh.close()
        else:
            self._fh.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _split_float_ts(ts: float) -> int:
    """Float seconds to integer nanoseconds, exact to the float's own precision."""
    if not math.isfinite(ts) or ts < 0:
        raise ValueError(f"timestamp must be a finite non-negative number, got {ts!r}")
    sec = math.floor(ts)
    # ts - floor(ts) is exact in binary floating point, so only the fraction is rounded.
    return int(sec) * _NS_PER_S + round((ts - sec) * _NS_PER_S)


def _lengths(data: bytes, wirelen: int | None, snaplen: int) -> tuple[bytes, int]:
    """Truncate ``data`` to ``snaplen`` (0 means no limit) and check ``wirelen``."""
    if wirelen is None:
        wirelen = len(data)
    elif wirelen < len(data):
        raise ValueError(f"wirelen {wirelen} is shorter than the data ({len(data)} bytes)")
    if snaplen and len(data) > snaplen:
        data = data[:snaplen]
    return data, wirelen


class PcapWriter(_Closing):
    """Writes a classic pcap file (one link type, µs or ns timestamps).

    Args:
        fileobj: binary file open for writing; the global header is written immediately.
        linktype: link-layer header type of every packet (:class:`sluice.io.source.LinkType`).
        nanosecond: write nanosecond timestamps (magic ``0xa1b23c4d``) instead of microseconds.
        big_endian: write the file in big-endian byte order (default little-endian).
        snaplen: maximum bytes stored per packet; longer packets are truncated and keep their
            original length as ``wirelen``.

    Raises:
        ValueError: ``linktype`` or ``snaplen`` out of range.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        linktype: int,
        *,
        nanosecond: bool = False,
        big_endian: bool = False,
        snaplen: int = DEFAULT_SNAPLEN,
    ) -> None:
        if not 0 <= linktype <= 0x0FFFFFFF:
            raise ValueError(f"linktype out of range: {linktype}")
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen out of range: {snaplen}")
        self._fh = fileobj
        self._owns = False
        self._closed = False
        self.linktype = linktype
        """Link type written in the global header."""
        self.nanosecond = nanosecond
        """True when timestamps are written in nanoseconds."""
        self.snaplen = snaplen
        """Snap length written in the global header."""
        self.packets_written = 0
        """Number of packet records written so far."""
        bo = ">" if big_endian else "<"
        self._rec = struct.Struct(bo + "IIII")
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._fh.write(struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, data: bytes, wirelen: int | None = None) -> None:
        """Append one packet.

        Args:
            ts: capture time in seconds since the epoch.
            data: the frame bytes, starting with the link-layer header.
            wirelen: length on the wire when ``data`` is a truncated capture (default
                ``len(data)``).

        Raises:
            ValueError: negative or non-finite ``ts``, or ``wirelen < len(data)``.
        """
        self.write_ns(_split_float_ts(ts), data, wirelen)

    def write_ns(self, ts_ns: int, data: bytes, wirelen: int | None = None) -> None:
        """Append one packet with an exact integer-nanosecond timestamp.

        Args:
            ts_ns: capture time in nanoseconds since the epoch (truncated to µs in µs files).
            data: the frame bytes.
            wirelen: length on the wire (default ``len(data)``).

        Raises:
            ValueError: negative ``ts_ns``, a time after 2106, or ``wirelen < len(data)``.
        """
        if ts_ns < 0:
            raise ValueError(f"timestamp must be non-negative, got {ts_ns}")
        data, wirelen = _lengths(data, wirelen, self.snaplen)
        sec, frac = divmod(ts_ns, _NS_PER_S)
        if sec > 0xFFFFFFFF:
            raise ValueError(f"timestamp beyond what pcap can store (year 2106): {ts_ns} ns")
        if not self.nanosecond:
            frac //= 1000
        self._fh.write(self._rec.pack(sec, frac, len(data), wirelen))
        self._fh.write(data)
        self.packets_written += 1


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


class PcapngWriter(_Closing):
    """Writes a pcapng file: one section, any number of interfaces, EPB and SPB packets.

    Args:
        fileobj: binary file open for writing; the Section Header Block is written immediately.
        big_endian: write the section in big-endian byte order (default little-endian).
        comment: optional ``shb_comment`` of the section.
        userappl: ``shb_userappl`` naming the writing application (``None`` to omit).
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        *,
        big_endian: bool = False,
        comment: str | None = None,
        userappl: str | None = "sluice",
    ) -> None:
        self._fh = fileobj
        self._owns = False
        self._closed = False
        self._bo = ">" if big_endian else "<"
        self._u32 = struct.Struct(self._bo + "I")
        self._epb = struct.Struct(self._bo + "IIIIIII")
        self._ifaces: list[tuple[int, int, int]] = []  # (linktype, snaplen, tsresol_exp)
        self.packets_written = 0
        """Number of packet blocks (EPB and SPB) written so far."""
        opts = b""
        if comment is not None:
            opts += self._option(OPT_COMMENT, comment.encode())
        if userappl is not None:
            opts += self._option(SHB_USERAPPL, userappl.encode())
        if opts:
            opts += self._option(OPT_ENDOFOPT, b"")
        body = struct.pack(self._bo + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1) + opts
        self._block(PCAPNG_SHB, body)

    @property
    def interfaces(self) -> tuple[tuple[int, int, int], ...]:
        """The interfaces added so far as ``(linktype, snaplen, tsresol_exp)``."""
        return tuple(self._ifaces)

    def _option(self, code: int, value: bytes) -> bytes:
        head = struct.pack(self._bo + "HH", code, len(value))
        return head + value + b"\x00" * _pad4(len(value))

    def _block(self, btype: int, body: bytes) -> None:
        total = 12 + len(body)
        self._fh.write(struct.pack(self._bo + "II", btype, total) + body + self._u32.pack(total))

    def add_interface(
        self,
        linktype: int,
        *,
        tsresol_exp: int = 6,
        snaplen: int = DEFAULT_SNAPLEN,
        name: str | None = None,
    ) -> int:
        """Write an Interface Description Block.

        Args:
            linktype: link-layer header type of the interface's packets.
            tsresol_exp: timestamp resolution as a negative power of ten (6: µs, 9: ns).
            snaplen: maximum stored bytes per packet (0: no limit).
            name: optional ``if_name``.

        Returns:
            The interface index to pass to :meth:`write`.

        Raises:
            ValueError: ``linktype``, ``tsresol_exp`` or ``snaplen`` out of range.
        """
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"linktype out of range for pcapng: {linktype}")
        if not 0 <= tsresol_exp <= 9:
            raise ValueError(f"tsresol_exp must be 0..9, got {tsresol_exp}")
        if not 0 <= snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen out of range: {snaplen}")
        opts = b""
        if name is not None:
            opts += self._option(IF_NAME, name.encode())
        if tsresol_exp != 6:
            opts += self._option(IF_TSRESOL, bytes([tsresol_exp]))
        if opts:
            opts += self._option(OPT_ENDOFOPT, b"")
        self._block(PCAPNG_IDB, struct.pack(self._bo + "HHI", linktype, 0, snaplen) + opts)
        self._ifaces.append((linktype, snaplen, tsresol_exp))
        return len(self._ifaces) - 1

    def write(
        self,
        iface: int,
        ts: float,
        data: bytes,
        wirelen: int | None = None,
        comment: str | None = None,
    ) -> None:
        """Append an Enhanced Packet Block.

        Args:
            iface: interface index returned by :meth:`add_interface`.
            ts: capture time in seconds since the epoch.
            data: the frame bytes, starting with the interface's link-layer header.
            wirelen: length on the wire (default ``len(data)``).
            comment: optional ``opt_comment`` for this packet.

        Raises:
            ValueError: unknown interface, bad timestamp or ``wirelen < len(data)``.
        """
        self.write_ns(iface, _split_float_ts(ts), data, wirelen, comment)

    def write_ns(
        self,
        iface: int,
        ts_ns: int,
        data: bytes,
        wirelen: int | None = None,
        comment: str | None = None,
    ) -> None:
        """Append an Enhanced Packet Block with an integer-nanosecond timestamp.

        Args:
            iface: interface index returned by :meth:`add_interface`.
            ts_ns: capture time in nanoseconds since the epoch (truncated to the interface's
                resolution).
            data: the frame bytes.
            wirelen: length on the wire (default ``len(data)``).
            comment: optional ``opt_comment`` for this packet.

        Raises:
            ValueError: unknown interface, negative timestamp or ``wirelen < len(data)``.
        """
        if not 0 <= iface < len(self._ifaces):
            raise ValueError(f"unknown interface {iface} ({len(self._ifaces)} defined)")
        if ts_ns < 0:
            raise ValueError(f"timestamp must be non-negative, got {ts_ns}")
        _, snaplen, exp = self._ifaces[iface]
        data, wirelen = _lengths(data, wirelen, snaplen)
        units = ts_ns // 10 ** (9 - exp)
        if units >> 64:
            raise ValueError(f"timestamp beyond 64 bits of interface units: {ts_ns} ns")
        opts = b""
        if comment is not None:
            opts = self._option(OPT_COMMENT, comment.encode()) + self._option(OPT_ENDOFOPT, b"")
        pad = b"\x00" * _pad4(len(data))
        total = 32 + len(data) + len(pad) + len(opts)
        head = self._epb.pack(PCAPNG_EPB, total, iface, units >> 32, units & 0xFFFFFFFF, len(data), wirelen)
        self._fh.write(head + data + pad + opts + self._u32.pack(total))
        self.packets_written += 1

    def write_simple(self, data: bytes, wirelen: int | None = None) -> None:
        """Append a Simple Packet Block (interface 0, no timestamp).

        Args:
            data: the frame bytes (truncated to interface 0's snap length).
            wirelen: length on the wire (default ``len(data)``).

        Raises:
            ValueError: no interface defined yet, ``wirelen < len(data)``, or data shorter than
                ``wirelen`` without being cut at interface 0's snap length (an SPB has no
                captured-length field).
        """
        if not self._ifaces:
            raise ValueError("a Simple Packet Block needs interface 0; call add_interface first")
        snaplen = self._ifaces[0][1]
        data, wirelen = _lengths(data, wirelen, snaplen)
        if len(data) != wirelen and len(data) != snaplen:
            # readers take the captured length to be min(original length, snap length)
            raise ValueError("a Simple Packet Block can only be truncated at the snap length")
        self._block(PCAPNG_SPB, self._u32.pack(wirelen) + data + b"\x00" * _pad4(len(data)))
        self.packets_written += 1


def _open(path: Path, gz: bool, compresslevel: int) -> BinaryIO:
    try:
        if gz:
            return cast(BinaryIO, _gzip.open(path, "wb", compresslevel=compresslevel))
        return open(path, "wb")
    except OSError as exc:
        raise CaptureError("capture.open_failed", str(path), str(exc)) from exc


@overload
def open_writer(
    path: str | Path,
    fmt: Literal["pcap"] = "pcap",
    *,
    gzip: bool = False,
    linktype: int = 1,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = DEFAULT_SNAPLEN,
    comment: str | None = None,
    compresslevel: int = 6,
) -> PcapWriter: ...


@overload
def open_writer(
    path: str | Path,
    fmt: Literal["pcapng"],
    *,
    gzip: bool = False,
    linktype: int = 1,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = DEFAULT_SNAPLEN,
    comment: str | None = None,
    compresslevel: int = 6,
) -> PcapngWriter: ...


def open_writer(
    path: str | Path,
    fmt: Literal["pcap", "pcapng"] = "pcap",
    *,
    gzip: bool = False,
    linktype: int = 1,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = DEFAULT_SNAPLEN,
    comment: str | None = None,
    compresslevel: int = 6,
) -> PcapWriter | PcapngWriter:
    """Create a capture file and return a writer that owns it (use it as a context manager).

    Args:
        path: file to create (truncated if it exists).
        fmt: ``"pcap"`` or ``"pcapng"``.
        gzip: compress the file with gzip.
        linktype: pcap only: link type of the file (pcapng interfaces are added by the caller
            with :meth:`PcapngWriter.add_interface`).
        nanosecond: pcap only: nanosecond timestamps.
        big_endian: write big-endian headers.
        snaplen: pcap only: snap length.
        comment: pcapng only: section comment.
        compresslevel: gzip compression level (1 fastest .. 9 smallest).

    Returns:
        A :class:`PcapWriter` or :class:`PcapngWriter`; closing it closes the file.

    Raises:
        CaptureError: ``capture.open_failed`` when the file cannot be created.
        ValueError: unknown ``fmt`` or invalid pcap parameters.
    """
    if fmt not in ("pcap", "pcapng"):
        raise ValueError(f"unknown capture format {fmt!r} (pcap or pcapng)")
    fh = _open(Path(path), gzip, compresslevel)
    writer: PcapWriter | PcapngWriter
    try:
        if fmt == "pcap":
            writer = PcapWriter(fh, linktype, nanosecond=nanosecond, big_endian=big_endian, snaplen=snaplen)
        else:
            writer = PcapngWriter(fh, big_endian=big_endian, comment=comment)
    except BaseException:
        fh.close()
        raise
    writer._owns = True
    return writer
