"""Early-flow features: one row of numbers per flow record, from its first packets only.

Theory of operation: a gateway that must decide early has the first ``EARLY_PACKETS`` packets of a
flow, the first bytes of each direction's first payload and the handshake metadata the
inspectors decoded. :class:`FlowFeatures` turns exactly that into a float matrix whose columns
(``feature_names_``) are stable: a model stores them and refuses a matrix with other columns.

Never used: addresses, port numbers, whole-flow counters (bytes, duration, packet totals) and
names (SNI, Host, certificate subjects) as text. The lab uses fixed addresses and ports, so a
model that learned them would learn the lab, not the protocols. Names enter only as shapes
(present, length, character entropy).

Missing values (no second payload, no TLS) are ``-1``; LightGBM treats them as one more value.
"""

from __future__ import annotations

__all__ = [
    "EARLY_PACKETS",
    "FEATURE_NAMES",
    "FlowFeatures",
    "feature_row",
    "record_from_row",
]

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from sluice.features.view import FlowView, label_entropy
from sluice.flows.record import AppMeta, FlowRecord

EARLY_PACKETS = 8
"""Packets of a flow the features read."""

_APPS = ("tls", "quic", "http", "dns", "ssh", "socks")
_HEAD_STATS = ("len", "entropy", "printable", "popcount", "zero_frac", "high_frac", "print_run")
_HEAD_MAGIC = ("tls_record", "http_method", "http_response", "ssh_banner")
_HTTP_METHODS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"OPTI", b"CONN", b"DELE", b"PATC")


def _names() -> tuple[str, ...]:
    names = ["proto.tcp", "proto.udp", "proto.other", "tcp.syn_seen", "early.packets"]
    names += [f"pkt{i}.payload" for i in range(EARLY_PACKETS)]
    names += [f"pkt{i}.log_iat_us" for i in range(EARLY_PACKETS)]
    names += ["early.c2s_payload_pkts", "early.s2c_payload_pkts", "early.c2s_payload_bytes"]
    names += ["early.s2c_payload_bytes", "early.dir_changes", "early.max_payload", "early.distinct_sizes"]
    names += ["early.payload_mod16_zero", "c2s.first_payload_len", "s2c.first_payload_len"]
    for d in ("c2s", "s2c"):
        names += [f"{d}.head_{s}" for s in _HEAD_STATS]
        names += [f"{d}.head_byte{i}" for i in range(3)]
        names += [f"{d}.{m}" for m in _HEAD_MAGIC]
    names += ["c2s.entropy", "c2s.printable", "s2c.entropy", "s2c.printable"]
    names += [f"app.{a}" for a in _APPS]
    names += ["tls.sni_present", "tls.sni_len", "tls.sni_entropy", "tls.alpn_count", "tls.alpn_h2"]
    names += ["tls.alpn_http11", "tls.ja4_version", "tls.ja4_sni", "tls.ja4_ciphers", "tls.ja4_extensions"]
    names += ["tls.offered_max", "tls.selected_version", "tls.cipher_seen", "tls.ech"]
    names += ["tls.cert_present", "tls.cert_self_issued", "tls.cert_san_count", "quic.present"]
    names += ["http.host_present", "http.status", "dns.qtype", "dns.query_len"]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names()
"""Column names of the feature matrix, in order (version 1 of the feature set)."""

FEATURE_SET_VERSION = "1"
"""Version of :data:`FEATURE_NAMES` and their definitions."""


def _head_stats(head: bytes) -> list[float]:
    if not head:
        return [0.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0]
    n = len(head)
    counts = Counter(head)
    ent = -sum(c / n * math.log2(c / n) for c in counts.values())
    printable = sum(1 for b in head if 0x20 <= b < 0x7F) / n
    pop = sum(bin(b).count("1") for b in head) / n
    zero = counts.get(0, 0) / n
    high = sum(1 for b in head if b >= 0x80) / n
    run = best = 0
    for b in head:
        run = run + 1 if 0x20 <= b < 0x7F else 0
        best = max(best, run)
    return [float(n), ent, printable, pop, zero, high, float(best)]


def _head_magic(head: bytes) -> list[float]:
    return [
        float(len(head) >= 3 and head[0] in (0x14, 0x15, 0x16, 0x17) and head[1] == 0x03),
        float(head[:4] in _HTTP_METHODS),
        float(head[:5] == b"HTTP/"),
        float(head[:4] == b"SSH-"),
    ]


def _ja4_parts(ja4: str) -> list[float]:
    """Version, SNI flag, cipher count and extension count of a JA4 ``a`` part (``t13d1516h2``)."""
    a = ja4.split("_", 1)[0]
    if len(a) < 10:
        return [-1.0, -1.0, -1.0, -1.0]
    try:
        version = float(int(a[1:3])) if a[1:3].isdigit() else 0.0
        return [version, float(a[3] == "d"), float(int(a[4:6])), float(int(a[6:8]))]
    except ValueError:
        return [-1.0, -1.0, -1.0, -1.0]


def _early_shape(view: FlowView) -> list[float]:
    rec = view.rec
    k = min(EARLY_PACKETS, len(rec.pkt_sizes))
    dirs = rec.pkt_dirs[:k]
    lens = view.payload_lens[:k]
    signed = [float(n if d == 0 else -n) for d, n in zip(dirs, lens, strict=False)]
    signed += [0.0] * (EARLY_PACKETS - len(signed))  # len: a hand-made row's lists may be unequal
    iats = [math.log1p(max(0.0, t) * 1e6) for t in rec.pkt_iats[:k]]
    iats += [-1.0] * (EARLY_PACKETS - len(iats))
    c2s = [n for d, n in zip(dirs, lens, strict=False) if d == 0 and n > 0]
    s2c = [n for d, n in zip(dirs, lens, strict=False) if d == 1 and n > 0]
    nz = c2s + s2c
    changes = sum(1 for a, b in itertools.pairwise(dirs) if a != b)
    return [
        float(k),
        *signed,
        *iats,
        float(len(c2s)),
        float(len(s2c)),
        float(sum(c2s)),
        float(sum(s2c)),
        float(changes),
        float(max(nz, default=0)),
        float(len(set(nz))),
        (sum(1 for n in nz if n % 16 == 0) / len(nz)) if nz else -1.0,
        float(view.payload_len(0)),
        float(view.payload_len(1)),
    ]


def _meta_features(rec: FlowRecord) -> list[float]:
    m = rec.meta
    app = m.app
    sni = m.sni
    tls = app == "tls" or bool(m.ja4)
    out = [float(app == a or (a == "quic" and app == "gquic")) for a in _APPS]
    out += [float(bool(sni)), float(len(sni)), label_entropy(sni)]
    out += [float(len(m.alpn)), float("h2" in m.alpn), float("http/1.1" in m.alpn)]
    out += _ja4_parts(m.ja4) if tls else [-1.0] * 4
    out += [float(max(m.tls_versions, default=-1)), float(m.tls_version or -1), float(m.tls_cipher >= 0)]
    out += [float(m.ech), float(bool(m.cert_subject or m.cert_san))]
    out += [float(bool(m.cert_subject) and m.cert_subject == m.cert_issuer), float(len(m.cert_san))]
    out += [float(bool(m.quic_version) or app in ("quic", "gquic"))]
    out += [float(bool(m.http_host)), float(m.http_status), float(m.dns_qtype), float(len(m.dns_query))]
    return out


def feature_row(rec: FlowRecord) -> list[float]:
    """One row of the feature matrix: the definition of every column, one record at a time.

    :meth:`FlowFeatures.transform` computes whole batches with
    :func:`sluice.features.batch.feature_matrix`, which gives exactly these values, faster.
    """
    view = FlowView(rec)
    syn = bool((rec.c2s_tcp_flags | rec.s2c_tcp_flags) & 0x02)
    out = [float(rec.proto == 6), float(rec.proto == 17), float(rec.proto not in (6, 17)), float(syn)]
    out += _early_shape(view)
    for d in (0, 1):
        head = view.head(d)
        out += _head_stats(head)
        out += [float(head[i]) if len(head) > i else -1.0 for i in range(3)]
        out += _head_magic(head)
    out += [rec.c2s_entropy, rec.c2s_printable, rec.s2c_entropy, rec.s2c_printable]
    out += _meta_features(rec)
    return out


class FlowFeatures:
    """Early-flow feature extractor (stateless; ``fit`` only records the column names).

    Attributes:
        feature_names_: the column names, set by ``fit``.
    """

    feature_names_: tuple[str, ...]

    def __init__(self) -> None:
        pass

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments (none)."""
        return {}

    def fit(self, records: Sequence[FlowRecord] | None = None, y: object = None) -> Self:
        """Set ``feature_names_``; nothing is learned from the data."""
        self.feature_names_ = FEATURE_NAMES
        return self

    def transform(self, records: Sequence[FlowRecord]) -> npt.NDArray[np.float64]:
        """The feature matrix.

        Args:
            records: flow records (early or final; only their first packets are read).

        Returns:
            float64 array of shape ``(len(records), len(FEATURE_NAMES))``.
        """
        from sluice.features.batch import feature_matrix  # imports this module

        return feature_matrix(records)

    def fit_transform(self, records: Sequence[FlowRecord], y: object = None) -> npt.NDArray[np.float64]:
        """``fit`` then ``transform``."""
        return self.fit(records).transform(records)


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if value is not None else ()


def record_from_row(row: Mapping[str, Any]) -> FlowRecord:
    """A flow record from one flat row (``FlowRecord.to_dict``, or a Parquet/JSONL flow log row).

    Missing metadata columns take their defaults; extra columns (labels, capture) are ignored.
    """
    meta = AppMeta()
    for name in AppMeta.__dataclass_fields__:
        if name in row and row[name] is not None:
            value = row[name]
            setattr(meta, name, _tuple(value) if isinstance(value, list | tuple | np.ndarray) else value)
    return FlowRecord(
        flow_id=int(row["flow_id"]),
        early=bool(row.get("early", False)),
        end_reason=str(row.get("end_reason", "")),
        ip_version=int(row.get("ip_version", 4)),
        client=str(row.get("client", "")),
        client_port=int(row.get("client_port", 0)),
        server=str(row.get("server", "")),
        server_port=int(row.get("server_port", 0)),
        proto=int(row["proto"]),
        vlans=_tuple(row.get("vlans")),
        tunnels=str(row.get("tunnels", "")),
        first_ts=float(row.get("first_ts", 0.0)),
        last_ts=float(row.get("last_ts", 0.0)),
        c2s_packets=int(row.get("c2s_packets", 0)),
        s2c_packets=int(row.get("s2c_packets", 0)),
        c2s_bytes=int(row.get("c2s_bytes", 0)),
        s2c_bytes=int(row.get("s2c_bytes", 0)),
        c2s_payload_bytes=int(row.get("c2s_payload_bytes", 0)),
        s2c_payload_bytes=int(row.get("s2c_payload_bytes", 0)),
        c2s_tcp_flags=int(row.get("c2s_tcp_flags", 0)),
        s2c_tcp_flags=int(row.get("s2c_tcp_flags", 0)),
        pkt_sizes=_tuple(row.get("pkt_sizes")),
        pkt_dirs=_tuple(row.get("pkt_dirs")),
        pkt_iats=_tuple(row.get("pkt_iats")),
        c2s_entropy=float(row.get("c2s_entropy", -1.0)),
        c2s_printable=float(row.get("c2s_printable", -1.0)),
        s2c_entropy=float(row.get("s2c_entropy", -1.0)),
        s2c_printable=float(row.get("s2c_printable", -1.0)),
        c2s_first_payload_len=int(row.get("c2s_first_payload_len", 0)),
        c2s_head=str(row.get("c2s_head", "")),
        s2c_head=str(row.get("s2c_head", "")),
        meta=meta,
    )
