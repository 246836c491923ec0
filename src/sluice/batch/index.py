"""Index a whole capture held in memory: where each record is, its time and link type.

Numba kernels walk the pcap records or pcapng blocks once and return columns. The rules (and the
anomaly reasons) are those of the streaming reader :mod:`sluice.io.capture`; tests check both
give the same packets.
"""

from __future__ import annotations

__all__ = ["CaptureIndex", "index_capture", "load_capture_bytes"]

import mmap
import os
import stat
import sys
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

import numba
import numpy as np
import numpy.typing as npt

from sluice.errors import CaptureError
from sluice.io.capture import MAX_RECORD_BYTES, PCAP_MAGICS, sniff_format
from sluice.io.limits import BoundedGunzip, CountingReader, LimitExceeded, ReadLimits

# status codes returned by the kernels, mapped to the streaming reader's reasons
_REASONS = {
    1: "capture.truncated_record",
    2: "capture.bad_record_length",
    3: "capture.bad_block_length",
    4: "capture.bad_byte_order_magic",
    5: "capture.truncated_header",
    6: "capture.zero_padding",
}
MAX_INTERFACES = 256


@dataclass
class CaptureIndex:
    """Columns describing every record of a capture, shape ``(n,)`` each."""

    buf: npt.NDArray[np.uint8]
    """The capture's bytes (memory-mapped for plain files)."""
    offset: npt.NDArray[np.int64]
    """Offset of each frame's first byte in ``buf``."""
    caplen: npt.NDArray[np.int64]
    """Captured length."""
    wirelen: npt.NDArray[np.int64]
    """Length on the wire."""
    ts: npt.NDArray[np.float64]
    """Capture time, seconds."""
    linktype: npt.NDArray[np.int64]
    """Link type per frame."""
    iface: npt.NDArray[np.int64]
    """Interface index per frame."""
    anomalies: dict[str, int]
    """Damage found while indexing (reading stopped there)."""

    def __len__(self) -> int:
        return len(self.offset)


def load_capture_bytes(
    path: str, anomalies: dict[str, int] | None = None, limits: ReadLimits | None = None
) -> npt.NDArray[np.uint8]:
    """The capture's bytes: memory-mapped, or held in memory when gzip-compressed or a pipe.

    Args:
        path: the capture file; ``-`` or ``/dev/stdin`` (or any pipe or device) is read
            sequentially into memory.
        anomalies: receives ``capture.truncated_gzip`` / ``capture.bad_gzip`` when a compressed
            stream is damaged after some data (what came before the damage is returned).
        limits: gzip ratio and in-memory size limits (default: :meth:`ReadLimits.from_env`).

    Raises:
        CaptureError: as :class:`~sluice.io.capture.CaptureReader` does, and
            ``capture.gzip_ratio`` / ``capture.too_large`` past a limit.
    """
    if anomalies is None:
        anomalies = {}
    lim = limits or ReadLimits.from_env()
    if os.path.isdir(path):
        raise CaptureError("capture.is_directory", path, "is a directory, not a capture file")
    try:
        f = open(os.dup(sys.stdin.fileno()), "rb") if path == "-" else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError as exc:
        raise CaptureError("capture.not_found", path, "no such file") from exc
    except PermissionError as exc:
        raise CaptureError("capture.permission_denied", path, "permission denied") from exc
    except OSError as exc:
        raise CaptureError("capture.io_error", path, str(exc)) from exc
    with f:
        st = os.fstat(f.fileno())
        head = f.read(4)
        if not head:
            raise CaptureError("capture.empty", path, "empty file")
        fmt = sniff_format(head)
        if fmt == "":
            raise CaptureError("capture.bad_magic", path, f"not a pcap or pcapng file (magic {head.hex()})")
        if fmt == "gzip":
            data, damage = _gunzip(path, CountingReader(f, head), lim)
        elif not stat.S_ISREG(st.st_mode):
            data, damage = _spool(path, f, head, lim), ""
        else:
            return _map(f, st.st_size)
    if fmt == "gzip":
        if not data:
            if damage:
                raise CaptureError("capture.bad_gzip", path, f"bad gzip stream ({damage})")
            raise CaptureError("capture.empty", path, "empty capture inside gzip")
        inner = sniff_format(bytes(data[:4]))
        if inner not in ("pcap", "pcapng"):
            raise CaptureError(
                "capture.bad_magic",
                path,
                f"not a pcap or pcapng file inside gzip (magic {bytes(data[:4]).hex()})",
            )
        if damage:
            anomalies[damage] = 1
    return np.frombuffer(data, dtype=np.uint8)


def _map(f: BinaryIO, size: int) -> npt.NDArray[np.uint8]:
    # populate the mapping up front when it fits easily in memory: one sequential read
    # instead of a page fault per 4 KiB during the record walk
    if hasattr(mmap, "MAP_POPULATE") and size < _available_memory() // 4:
        mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
    else:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, dtype=np.uint8)  # a plain array over the mapping: cheap slices


def _spool(path: str, f: BinaryIO, head: bytes, lim: ReadLimits) -> bytearray:
    """A pipe or device read to its end, within ``lim.max_capture_bytes``."""
    out = bytearray(head)
    while chunk := f.read(1 << 20):
        out += chunk
        if len(out) > lim.max_capture_bytes:
            raise CaptureError(
                "capture.too_large",
                path,
                str(
                    LimitExceeded(
                        "capture read from a pipe", lim.max_capture_bytes, "SLUICE_MAX_CAPTURE_BYTES"
                    )
                ),
            )
    return out


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def _gunzip(path: str, compressed: CountingReader, lim: ReadLimits) -> tuple[bytearray, str]:
    """Decompress a gzip stream within the limits; with damage, what came before it and the
    damage's reason."""
    out = bytearray()
    damage = ""
    g = BoundedGunzip(compressed, lim, lim.max_capture_bytes)
    try:
        while chunk := g.read1(1 << 20):
            out += chunk
    except LimitExceeded as exc:
        reason = "capture.gzip_ratio" if "ratio" in exc.what else "capture.too_large"
        raise CaptureError(reason, path, str(exc)) from None
    except EOFError:
        damage = "capture.truncated_gzip"
    except (OSError, zlib.error):
        damage = "capture.bad_gzip"
    return out, damage


@numba.njit(cache=True, nogil=True)
def _u32(buf: npt.NDArray[np.uint8], p: int, le: bool) -> Any:
    if le:
        return (
            np.int64(buf[p])
            | (np.int64(buf[p + 1]) << 8)
            | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 3]) << 24)
        )
    return (
        np.int64(buf[p + 3])
        | (np.int64(buf[p + 2]) << 8)
        | (np.int64(buf[p + 1]) << 16)
        | (np.int64(buf[p]) << 24)
    )


@numba.njit(cache=True, nogil=True)
def _u16(buf: npt.NDArray[np.uint8], p: int, le: bool) -> Any:
    if le:
        return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
    return np.int64(buf[p + 1]) | (np.int64(buf[p]) << 8)


@numba.njit(cache=True, nogil=True)
def _ticks_to_seconds(ticks: int, per_second: int) -> float:
    """As :func:`sluice.io.capture.ticks_to_seconds` (same float operations)."""
    return ticks // per_second + (ticks % per_second) / per_second


@numba.njit(cache=True, nogil=True, inline="always")
def _emit(i, off, cl, wl, t, lt, iid, offset, caplen, wirelen, ts, linktype, iface):  # type: ignore[no-untyped-def]
    """Write one packet's row of the index columns."""
    offset[i] = off
    caplen[i] = cl
    wirelen[i] = wl
    ts[i] = t
    linktype[i] = lt
    iface[i] = iid


@numba.njit(cache=True, nogil=True)
def _walk_pcap(buf, le, per_second, limit, fill, offset, caplen, wirelen, ts):  # type: ignore[no-untyped-def]
    n = len(buf)
    p = 24
    i = 0
    status = 0
    while True:
        if p + 16 > n:
            if p < n:
                status = 1
            break
        sec = _u32(buf, p, le)
        frac = _u32(buf, p + 4, le)
        cl = _u32(buf, p + 8, le)
        wl = _u32(buf, p + 12, le)
        if sec == 0 and frac == 0 and cl == 0 and wl == 0:
            status = 6
            break
        if cl > limit:
            status = 2
            break
        if p + 16 + cl > n:
            status = 1
            break
        if fill:
            offset[i] = p + 16
            caplen[i] = cl
            wirelen[i] = max(wl, cl)
            ts[i] = sec + frac / per_second
        i += 1
        p += 16 + cl
    return i, status


@numba.njit(cache=True, nogil=True)
def _walk_pcapng(buf, fill, offset, caplen, wirelen, ts, linktype, iface):  # type: ignore[no-untyped-def]
    n = len(buf)
    p = 0
    i = 0
    status = 0
    le = True
    if_link = np.zeros(256, np.int64)
    if_snap = np.zeros(256, np.int64)
    if_per_second = np.ones(256, np.int64)
    if_off = np.zeros(256, np.int64)
    n_if = 0
    unknown = 0
    first = True
    while True:
        if p + 12 > n:
            if p < n:
                status = 1
            break
        is_shb = buf[p] == 0x0A and buf[p + 1] == 0x0D and buf[p + 2] == 0x0D and buf[p + 3] == 0x0A
        if is_shb:
            if buf[p + 8] == 0x4D and buf[p + 9] == 0x3C and buf[p + 10] == 0x2B and buf[p + 11] == 0x1A:
                le = True
            elif buf[p + 8] == 0x1A and buf[p + 9] == 0x2B and buf[p + 10] == 0x3C and buf[p + 11] == 0x4D:
                le = False
            else:
                status = 4
                break
            n_if = 0
        elif first:
            status = 3
            break
        first = False
        btype = _u32(buf, p, le)
        blen = _u32(buf, p + 4, le)
        if blen < 12 or blen % 4 != 0 or blen > 16 * 1024 * 1024:
            status = 3
            break
        if p + blen > n:
            status = 1
            break
        if _u32(buf, p + blen - 4, le) != blen:
            status = 3
            break
        body = p + 8
        blen_body = blen - 12
        if btype == 1:
            if blen_body < 8:
                status = 3
                break
            if n_if < 256:
                if_link[n_if] = _u16(buf, body, le)
                if_snap[n_if] = _u32(buf, body + 4, le)
                per_second = 1_000_000
                tsoff = 0
                q = body + 8
                end = body + blen_body
                while q + 4 <= end:
                    code = _u16(buf, q, le)
                    ln = _u16(buf, q + 2, le)
                    q += 4
                    if code == 0:
                        break
                    if code == 9 and ln >= 1 and q < end:
                        r = int(buf[q])
                        if r & 0x80:
                            per_second = 1 << min(r & 0x7F, 62)
                        else:
                            per_second = 10 ** min(r, 18)
                    elif code == 14 and ln >= 8 and q + 8 <= end:
                        lo = _u32(buf, q, le)
                        hi = _u32(buf, q + 4, le)
                        if le:
                            tsoff = (hi << 32) | lo
                        else:
                            tsoff = (lo << 32) | hi
                    q += (ln + 3) & ~3
                if_per_second[n_if] = per_second
                if_off[n_if] = tsoff
            n_if += 1
        elif btype == 6:
            if blen_body < 20:
                status = 3
                break
            iid = _u32(buf, body, le)
            hi = _u32(buf, body + 4, le)
            lo = _u32(buf, body + 8, le)
            cl = _u32(buf, body + 12, le)
            wl = _u32(buf, body + 16, le)
            if iid < n_if and iid < 256:
                if 20 + cl > blen_body:
                    status = 2
                    break
                if fill:
                    t = _ticks_to_seconds((hi << 32) | lo, if_per_second[iid]) + if_off[iid]
                    _emit(
                        i,
                        body + 20,
                        cl,
                        max(wl, cl),
                        t,
                        if_link[iid],
                        iid,
                        offset,
                        caplen,
                        wirelen,
                        ts,
                        linktype,
                        iface,
                    )
                i += 1
            else:
                unknown += 1  # unknown interface: counted, skipped
        elif btype == 3:
            if n_if == 0 or blen_body < 4:
                unknown += 1
            else:
                wl = _u32(buf, body, le)
                cl = min(wl, blen_body - 4)
                if if_snap[0] > 0:
                    cl = min(cl, if_snap[0])
                if fill:
                    _emit(
                        i, body + 4, cl, wl, 0.0, if_link[0], 0, offset, caplen, wirelen, ts, linktype, iface
                    )
                i += 1
        elif btype == 2:
            if blen_body < 20:
                status = 3
                break
            iid = _u16(buf, body, le)
            hi = _u32(buf, body + 4, le)
            lo = _u32(buf, body + 8, le)
            cl = _u32(buf, body + 12, le)
            wl = _u32(buf, body + 16, le)
            if iid >= n_if or 20 + cl > blen_body:
                status = 2
                break
            if fill:
                t = _ticks_to_seconds((hi << 32) | lo, if_per_second[iid]) + if_off[iid]
                _emit(
                    i,
                    body + 20,
                    cl,
                    max(wl, cl),
                    t,
                    if_link[iid],
                    iid,
                    offset,
                    caplen,
                    wirelen,
                    ts,
                    linktype,
                    iface,
                )
            i += 1
        p += blen
    return i, status, unknown


def index_capture(path: str, limits: ReadLimits | None = None) -> CaptureIndex:
    """Index every record of a pcap or pcapng file (optionally gzip-compressed; ``-``: stdin).

    Raises:
        CaptureError: when the file is missing, a directory, empty or not a capture, or past a
            limit of ``limits`` (see :func:`load_capture_bytes`).
    """
    anomalies: dict[str, int] = {}
    buf = load_capture_bytes(path, anomalies, limits)
    fmt = sniff_format(bytes(buf[:4]))
    status = 0
    empty_i = np.zeros(0, np.int64)
    empty_f = np.zeros(0, np.float64)
    if fmt == "pcap":
        if len(buf) < 24:
            return CaptureIndex(
                buf,
                empty_i,
                empty_i,
                empty_i,
                empty_f,
                empty_i,
                empty_i,
                {"capture.truncated_header": 1},
            )
        order, per_second = PCAP_MAGICS[bytes(buf[:4])]
        le = order == "<"
        snaplen = int.from_bytes(bytes(buf[16:20]), "little" if le else "big")
        network = int.from_bytes(bytes(buf[20:24]), "little" if le else "big") & 0xFFFF
        limit = max(snaplen, 262144) if snaplen <= MAX_RECORD_BYTES else MAX_RECORD_BYTES
        n, status = _walk_pcap(buf, le, per_second, limit, False, empty_i, empty_i, empty_i, empty_f)
        offset, caplen, wirelen = (np.empty(n, np.int64) for _ in range(3))
        ts = np.empty(n, np.float64)
        _walk_pcap(buf, le, per_second, limit, True, offset, caplen, wirelen, ts)
        linktype = np.full(n, network, np.int64)
        iface = np.zeros(n, np.int64)
    else:
        n, status, unknown = _walk_pcapng(buf, False, empty_i, empty_i, empty_i, empty_f, empty_i, empty_i)
        if unknown:
            anomalies["capture.unknown_interface"] = int(unknown)
        offset, caplen, wirelen, linktype, iface = (np.empty(n, np.int64) for _ in range(5))
        ts = np.empty(n, np.float64)
        _walk_pcapng(buf, True, offset, caplen, wirelen, ts, linktype, iface)
    if status > 0:
        anomalies[_REASONS[int(status)]] = 1
    return CaptureIndex(buf, offset, caplen, wirelen, ts, linktype, iface, anomalies)
