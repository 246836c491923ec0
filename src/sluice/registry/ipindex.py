"""Address lookups over IP and subnet entries: elementary intervals + binary search (v4 and v6).

See :mod:`sluice.registry._kernels` for the idea.  IPv4 segment starts live in one ``uint64``
array searched with :func:`numpy.searchsorted`; IPv6 starts are 128-bit keys split into two
``uint64`` arrays searched by a compiled loop.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import numpy as np
import numpy.typing as npt

from sluice.registry import _kernels as K

__all__ = ["IpIndex"]

_M64 = (1 << 64) - 1
I64 = npt.NDArray[np.int64]


class _Family:
    """Segments of one address family."""

    def __init__(self, nets: list[tuple[int, int, int, int]], bits: int) -> None:
        space_end = 1 << bits
        if bits == 32:
            lo = np.fromiter((n[0] for n in nets), np.uint64, len(nets))
            hi1 = np.fromiter((n[1] + 1 for n in nets), np.uint64, len(nets))
            pts = np.unique(np.concatenate([lo, hi1]))
            self.plo = pts
            self.phi = np.zeros(pts.shape[0], np.uint64)
            starts = np.searchsorted(pts, lo).astype(np.int64)
            ends = np.searchsorted(pts, hi1).astype(np.int64)
        else:
            pset = {n[0] for n in nets} | {n[1] + 1 for n in nets if n[1] + 1 < space_end}
            pl = sorted(pset)
            where = {p: i for i, p in enumerate(pl)}
            self.phi = np.fromiter((p >> 64 for p in pl), np.uint64, len(pl))
            self.plo = np.fromiter((p & _M64 for p in pl), np.uint64, len(pl))
            starts = np.fromiter((where[n[0]] for n in nets), np.int64, len(nets))
            ends = np.fromiter((where.get(n[1] + 1, len(pl)) for n in nets), np.int64, len(nets))
        plen = np.fromiter((n[2] for n in nets), np.int64, len(nets))
        eids = np.fromiter((n[3] for n in nets), np.int64, len(nets))
        order = np.argsort(-plen, kind="stable")
        self.off, self.ent = K.fill_segments(starts[order], ends[order], eids[order], int(self.plo.shape[0]))
        self.v4 = bits == 32

    @property
    def nbytes(self) -> int:
        return int(self.phi.nbytes + self.plo.nbytes + self.off.nbytes + self.ent.nbytes)

    def segments(self, qhi: npt.NDArray[np.uint64], qlo: npt.NDArray[np.uint64]) -> I64:
        if self.plo.shape[0] == 0:
            return np.full(qlo.shape[0], -1, np.int64)
        if self.v4:
            return np.searchsorted(self.plo, qlo, side="right").astype(np.int64) - 1
        return K.search128(self.phi, self.plo, qhi, qlo)

    def expand(self, seg: I64) -> tuple[I64, I64]:
        """(query index, entry) pairs for segment indices (-1 = none)."""
        ok = seg >= 0
        if self.plo.shape[0] == 0 or not ok.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        s = np.where(ok, self.off[np.maximum(seg, 0)], 0)
        e = np.where(ok, self.off[np.maximum(seg, 0) + 1], 0)
        counts = e - s
        total = int(counts.sum())
        q = np.repeat(np.arange(seg.shape[0], dtype=np.int64), counts)
        if total == 0:
            return q, np.zeros(0, np.int64)
        first = np.cumsum(counts) - counts
        pos = np.arange(total, dtype=np.int64) - np.repeat(first, counts) + np.repeat(s, counts)
        return q, self.ent[pos]


def _v4(text: str) -> tuple[int, int]:
    addr, _, plen = text.partition("/")
    p = int(plen) if plen else 32
    lo = int.from_bytes(socket.inet_aton(addr), "big")
    return lo, p


class IpIndex:
    """IP and subnet entries of the register, for exact and longest-prefix lookups.

    Args:
        rows: ``(canonical indicator, entry index)`` for every ``ip``/``subnet`` entry.
    """

    def __init__(self, rows: list[tuple[str, int]]) -> None:
        v4: list[tuple[int, int, int, int]] = []
        v6: list[tuple[int, int, int, int]] = []
        for ind, eid in rows:
            if ":" not in ind:
                lo, p = _v4(ind)
                v4.append((lo, lo | ((1 << (32 - p)) - 1), p, eid))
            else:
                net = ipaddress.IPv6Network(ind)
                lo6 = int(net.network_address)
                v6.append((lo6, int(net.broadcast_address), net.prefixlen, eid))
        self.v4 = _Family(v4, 32)
        self.v6 = _Family(v6, 128)

    @property
    def nbytes(self) -> int:
        """Memory of the arrays (bytes)."""
        return self.v4.nbytes + self.v6.nbytes

    def match(self, ips: Any) -> tuple[I64, I64]:
        """(query index, entry index) pairs, longest prefix first per query.

        Args:
            ips: numpy unsigned integer array of IPv4 addresses, or a sequence of address
                strings / ``ipaddress`` objects.

        Raises:
            ValueError: an item that is not an address.
        """
        if isinstance(ips, np.ndarray) and ips.dtype.kind == "u":
            qv = ips.astype(np.uint64)
            seg = self.v4.segments(np.zeros_like(qv), qv)
            return self.v4.expand(seg)
        i4: list[int] = []
        a4: list[int] = []
        i6: list[int] = []
        a6: list[int] = []
        for i, item in enumerate(ips):
            a = item if not isinstance(item, str) else ipaddress.ip_address(item.strip())
            if a.version == 4:
                i4.append(i)
                a4.append(int(a))
            else:
                i6.append(i)
                a6.append(int(a))
        qs: list[I64] = []
        es: list[I64] = []
        if a4:
            lo4 = np.asarray(a4, np.uint64)
            q, e = self.v4.expand(self.v4.segments(np.zeros_like(lo4), lo4))
            qs.append(np.asarray(i4, np.int64)[q])
            es.append(e)
        if a6:
            hi = np.fromiter((a >> 64 for a in a6), np.uint64, len(a6))
            lo6 = np.fromiter((a & _M64 for a in a6), np.uint64, len(a6))
            q, e = self.v6.expand(self.v6.segments(hi, lo6))
            qs.append(np.asarray(i6, np.int64)[q])
            es.append(e)
        if not qs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(qs), np.concatenate(es)
