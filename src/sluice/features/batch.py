"""Batch path of the early-flow features: the whole matrix at once, equal bit for bit to the rows.

Theory of operation: :func:`sluice.features.flow.feature_row` is the definition of a row, one
record at a time in Python (about 75 us a flow). :func:`feature_matrix` gives the same matrix
for a batch in a few microseconds a flow: it reads each field of every record once into flat
columns (packet sizes, directions and the first inter-arrival times as CSR arrays, the payload
heads decoded once), lets a compiled loop (:mod:`sluice.features._kernels`) fill the packet-shape
and head columns, and fills the metadata columns column by column, computing each distinct value
(a server name's entropy) once; a second compiled loop fills the burst columns, and the
handshake columns of TLS flows are masked by the definition's own :func:`mask_handshake`.

Nothing is approximated: every column repeats the definition's arithmetic in the same order
(see the kernel's notes on the entropy and ``log1p``), and a record the fast path cannot
represent (a direction other than 0 or 1, sequences of unequal length, a head longer than
``HEAD_BYTES``) gets its row from the definition itself. ``tests/features/test_batch.py`` checks
equality on real captures and on generated records.
"""

from __future__ import annotations

__all__ = ["feature_matrix"]

import math
from collections.abc import Callable, Hashable, Sequence
from functools import cache
from itertools import chain
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from sluice.features import _kernels
from sluice.features.flow import (
    _APPS,
    APP_BURSTS,
    BURSTS,
    COL_APP_BURSTS,
    COL_BURSTS,
    EARLY_PACKETS,
    FEATURE_NAMES,
    FINISHED_MAX,
    NESTED_CLIENT_HELLO,
    NESTED_SERVER_FLIGHT,
    TLS12,
    feature_row,
    mask_handshake,
)
from sluice.features.view import label_entropy
from sluice.flows.record import HEAD_BYTES, AppMeta, FlowRecord

F64 = npt.NDArray[np.float64]
H = TypeVar("H", bound=Hashable)

COL_META = FEATURE_NAMES.index("app.tls")
"""First metadata column."""
_COL_ENTROPY = FEATURE_NAMES.index("c2s.entropy")
_N_META = COL_BURSTS - COL_META
_APP_CODE = {a: i for i, a in enumerate(_APPS)} | {"gquic": _APPS.index("quic")}
_QUIC_APPS = ("quic", "gquic")
_APP_COLS = np.asarray(
    [
        *(FEATURE_NAMES.index(c) for c in ("c2s.tls_record", "c2s.head_byte0")),
        *(FEATURE_NAMES.index(c) for c in ("tls.selected_version", "tls.cert_present")),
        COL_APP_BURSTS,
    ],
    dtype=np.int64,
)
"""What :func:`_kernels.app_burst_columns` reads (filled before it runs) and where it writes."""

if (
    _kernels.EARLY != EARLY_PACKETS
    or FEATURE_NAMES[_kernels.COL_IAT] != "pkt0.log_iat_us"
    or FEATURE_NAMES[_kernels.COL_AFTER_IAT] != "early.c2s_payload_pkts"
    or FEATURE_NAMES[_kernels.COL_HEADS] != "c2s.head_len"
    or _kernels.N_COLS != _COL_ENTROPY
    or COL_META != _COL_ENTROPY + 4
):  # pragma: no cover - a change of the feature set must change the kernel too
    raise ImportError("sluice.features._kernels does not match FEATURE_NAMES")


def _sum_is_compensated() -> bool:
    """True when ``sum`` of floats compensates rounding (CPython >= 3.12), as the kernel must."""
    return sum([1e16, 1.0, -1e16]) != 0.0


COMPENSATED_SUM = _sum_is_compensated()
"""Whether this Python's ``sum`` of floats is compensated (the entropy columns follow it)."""


@cache
def _entropy_terms(n_max: int) -> F64:
    """``terms[c, n] = c / n * log2(c / n)``, computed by Python's ``math`` as the definition does."""
    terms = np.zeros((n_max + 1, n_max + 1), dtype=np.float64)
    for n in range(1, n_max + 1):
        for c in range(1, n + 1):
            terms[c, n] = c / n * math.log2(c / n)
    terms.setflags(write=False)
    return terms


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _csr(lengths: list[int]) -> npt.NDArray[np.int64]:
    off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=off[1:])
    return off


def feature_matrix(records: Sequence[FlowRecord]) -> F64:
    """The feature matrix of ``records``: row ``i`` equals ``feature_row(records[i])`` exactly.

    Returns:
        float64 array of shape ``(len(records), len(FEATURE_NAMES))``.
    """
    n = len(records)
    out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float64)
    if n == 0:
        return out
    sizes = [r.pkt_sizes for r in records]
    dirs = [r.pkt_dirs for r in records]
    iats = [r.pkt_iats for r in records]
    ns = list(map(len, sizes))
    bad: set[int] = set()
    if ns != list(map(len, dirs)) or ns != list(map(len, iats)):
        bad.update(i for i in range(n) if not ns[i] == len(dirs[i]) == len(iats[i]))
    raw_heads = [h for r in records for h in (r.c2s_head, r.s2c_head)]
    try:
        heads = [bytes.fromhex(h) for h in raw_heads]  # what FlowView.head does
    except ValueError:
        heads = [_unhex(h) for h in raw_heads]
    hl = list(map(len, heads))
    if max(hl) > HEAD_BYTES:
        bad.update(j // 2 for j, x in enumerate(hl) if x > HEAD_BYTES)
    checked: set[int] = set()
    while True:
        for i in bad - checked:  # their rows come from the definition; keep them out of the arrays
            sizes[i] = dirs[i] = iats[i] = ()
            ns[i] = 0
            heads[2 * i] = heads[2 * i + 1] = b""
            hl[2 * i] = hl[2 * i + 1] = 0
        checked |= bad
        off = _csr(ns)
        total = int(off[-1])
        flat_dirs = np.fromiter(chain.from_iterable(dirs), dtype=np.int64, count=total)
        wrong = np.flatnonzero((flat_dirs < 0) | (flat_dirs > 1))
        if not len(wrong):
            break
        bad.update((np.searchsorted(off, wrong, side="right") - 1).tolist())
    flat_sizes = np.fromiter(chain.from_iterable(sizes), dtype=np.int64, count=total)
    ks = [min(EARLY_PACKETS, x) for x in ns]
    first = np.fromiter(chain.from_iterable(t[:EARLY_PACKETS] for t in iats), dtype=np.float64, count=sum(ks))
    # log1p(max(0.0, t) * 1e6): max(0.0, t) is t when t > 0.0, else 0.0 (also for -0.0 and nan)
    scaled = np.where(first > 0.0, first, 0.0) * 1e6
    iat_logs = np.fromiter(map(math.log1p, scaled.tolist()), dtype=np.float64, count=len(scaled))
    ints = np.array(
        [(r.proto, r.ip_version, r.c2s_tcp_flags, r.s2c_tcp_flags, r.c2s_first_payload_len) for r in records],
        dtype=np.int64,
    )
    head_bytes = np.frombuffer(b"".join(heads), dtype=np.uint8)
    _kernels.shape_and_heads(
        ints,
        off,
        flat_sizes,
        flat_dirs,
        iat_logs,
        _csr(hl),
        head_bytes,
        _entropy_terms(HEAD_BYTES),
        COMPENSATED_SUM,
        out,
    )
    out[:, _COL_ENTROPY:COL_META] = [
        (r.c2s_entropy, r.c2s_printable, r.s2c_entropy, r.s2c_printable) for r in records
    ]
    _meta_columns(records, out[:, COL_META:COL_BURSTS])
    _kernels.burst_columns(
        ints, off, flat_sizes, flat_dirs, BURSTS, *NESTED_CLIENT_HELLO, NESTED_SERVER_FLIGHT, out, COL_BURSTS
    )
    _kernels.app_burst_columns(
        ints, off, flat_sizes, flat_dirs, out, _APP_COLS, APP_BURSTS, TLS12, FINISHED_MAX
    )
    mask_handshake(out)
    for i in bad:
        out[i] = feature_row(records[i])
    return out


def _per_value(values: list[H], columns: Callable[[H], Sequence[float]], width: int) -> F64:
    """``columns(v)`` for each of ``values``, computed once per distinct value."""
    index: dict[H, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values))
    table = np.empty((len(index), width), dtype=np.float64)
    for v, i in index.items():
        table[i] = columns(v)
    return table[codes]


def _sni_columns(sni: str) -> tuple[float, float, float]:
    return float(bool(sni)), float(len(sni)), label_entropy(sni)


_SCALAR_META: tuple[Callable[[AppMeta], object], ...] = (
    lambda m: m.tls_version or -1,
    lambda m: m.tls_cipher >= 0,
    lambda m: m.ech,
    lambda m: bool(m.cert_subject or m.cert_san),
    lambda m: bool(m.cert_subject) and m.cert_subject == m.cert_issuer,
    lambda m: len(m.cert_san),
    lambda m: bool(m.quic_version) or m.app in _QUIC_APPS,
    lambda m: bool(m.http_host),
    lambda m: m.http_status,
    lambda m: m.dns_qtype,
    lambda m: len(m.dns_query),
)
"""``tls.selected_version`` to ``dns.query_len``."""


def _meta_columns(records: Sequence[FlowRecord], out: F64) -> None:
    """The metadata columns (``app.tls`` on) of every record, as ``_meta_features`` computes them."""
    metas = [r.meta for r in records]
    n = len(metas)
    codes = np.fromiter((_APP_CODE.get(m.app, -1) for m in metas), dtype=np.int64, count=n)
    out[:, : len(_APPS)] = 0.0
    rows = np.flatnonzero(codes >= 0)
    out[rows, codes[rows]] = 1.0
    c = len(_APPS)
    out[:, c : c + 3] = _per_value([m.sni for m in metas], _sni_columns, 3)
    for j, get in enumerate(_SCALAR_META, c + 3):
        out[:, j] = np.fromiter(map(get, metas), dtype=np.float64, count=n)
