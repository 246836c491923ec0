"""Derived views of one flow record that several detectors need.

The record keeps IP lengths of the first packets, not transport payload lengths; these helpers
estimate payload lengths (UDP exactly, TCP from the flow's smallest segment, which is a pure ACK in
any flow that has one) and find the packet that carried each direction's first payload, so that
a rule can say *at which packet* it decided.
"""

from __future__ import annotations

__all__ = [
    "FlowView",
    "base32_like",
    "label_entropy",
]

import math
from collections import Counter
from collections.abc import Sequence

from sluice.flows.record import FlowRecord

_SYN = 0x02
_NO_SYN: frozenset[int] = frozenset()
_IP_HEADER = {4: 20, 6: 40}


def label_entropy(text: str) -> float:
    """Shannon entropy (bits per character) of a string; 0 for the empty string."""
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


_VOWELS = frozenset("aeiouy")


def base32_like(label: str) -> bool:
    """True when a DNS label looks like random base32 (RFC 4648 alphabet, little pronounceable).

    Random base32 mixes the digits 2–7 with letters, or strings consonants together in a way
    words rarely do; ordinary names (``www``, ``google``, ``mail2``) are pronounceable.
    """
    if not label or any(c not in "abcdefghijklmnopqrstuvwxyz234567" for c in label):
        return False
    digits = sum(c.isdigit() for c in label)
    if digits and digits < len(label) and len(label) >= 6:
        return True
    run = best = 0
    for c in label:
        run = 0 if c in _VOWELS or c.isdigit() else run + 1
        best = max(best, run)
    return len(label) >= 8 and best >= 5


def _unhex(text: str) -> bytes:
    """A head's bytes from its hex text (none when the text is not hex: a hand-made row)."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


class FlowView:
    """Per-packet payload estimates and first-payload positions of one record.

    Args:
        rec: the flow record.
    """

    __slots__ = ("_firsts", "_heads", "payload_lens", "rec")

    def __init__(self, rec: FlowRecord) -> None:
        self.rec = rec
        # decoded up front: every rule reads both heads (about 30 reads per flow), and the
        # decoding costs less than the checks a lazy cache would add to each read
        self._heads = (_unhex(rec.c2s_head), _unhex(rec.s2c_head))
        self._firsts: tuple[int, int] | None = None
        self.payload_lens = self._payload_lens()

    def _payload_lens(self) -> tuple[int, ...]:
        r = self.rec
        sizes = r.pkt_sizes
        ip_hdr = _IP_HEADER.get(r.ip_version, 20)
        proto = r.proto
        if proto != 6:
            sub = ip_hdr + 8 if proto == 17 else ip_hdr + 4 if proto in (1, 58) else ip_hdr
            # max(0, s - sub) without the call; 0 also for a nan size, as max gives
            return tuple([n if (n := s - sub) > 0 else 0 for s in sizes])
        syn = self._syn_indices()
        plain: Sequence[int] = sizes
        if syn:
            rest = list(sizes)
            for i in sorted(syn, reverse=True):
                if i < len(rest):
                    del rest[i]
            plain = rest
        base = min(plain) if plain else ip_hdr + 20
        base = min(max(base, ip_hdr + 20), ip_hdr + 60)
        out = [n if (n := s - base) > 0 else 0 for s in sizes]
        for i in syn:
            if i < len(out):
                out[i] = 0
        return tuple(out)

    def _syn_indices(self) -> frozenset[int]:
        r = self.rec
        if not ((r.c2s_tcp_flags | r.s2c_tcp_flags) & _SYN):
            return _NO_SYN
        out = set()
        seen = [False, False]
        for i, d in enumerate(r.pkt_dirs[:4]):
            if (d == 0 or d == 1) and not seen[d]:  # a corrupt direction (a hand-made row) is skipped
                seen[d] = True
                flags = r.c2s_tcp_flags if d == 0 else r.s2c_tcp_flags
                if flags & _SYN:
                    out.add(i)
        return frozenset(out)

    def head(self, d: int) -> bytes:
        """The first bytes of direction ``d``'s first payload (0 client to server)."""
        return self._heads[d]

    def first_payload_index(self, d: int) -> int:
        """Index of the packet that carried direction ``d``'s first payload (-1 if none seen)."""
        if d != 0 and d != 1:  # no such direction in a sound record; a hand-made one may say so
            pairs = zip(self.rec.pkt_dirs, self.payload_lens, strict=False)
            return next((i for i, (dd, n) in enumerate(pairs) if dd == d and n > 0), -1)
        firsts = self._firsts
        if firsts is None:  # both directions in one pass: rules ask for each, several times
            first = [-1, -1]
            for i, (dd, n) in enumerate(zip(self.rec.pkt_dirs, self.payload_lens, strict=False)):
                if n > 0 and (dd == 0 or dd == 1) and first[dd] < 0:
                    first[dd] = i
                    if first[1 - dd] >= 0:
                        break
            # a tuple of ints, which the garbage collector stops tracking (a list it would not):
            # a batch keeps every flow's view until its verdicts are made
            firsts = self._firsts = (first[0], first[1])
        return firsts[d]

    def payload_sizes(self, d: int | None = None, start: int = 0) -> list[int]:
        """Estimated payload lengths of the packets with payload (of direction ``d``, if given)."""
        return [
            n
            for i, (dd, n) in enumerate(zip(self.rec.pkt_dirs, self.payload_lens, strict=False))
            if i >= start and n > 0 and (d is None or dd == d)
        ]

    def payload_len(self, d: int) -> int:
        """Length of direction ``d``'s first payload (exact for the client, estimated for the server)."""
        if d == 0 and self.rec.c2s_first_payload_len:
            return self.rec.c2s_first_payload_len
        i = self.first_payload_index(d)
        return self.payload_lens[i] if i >= 0 else 0
