"""Early-flow features: one row of numbers per flow record, from its first packets only.

Theory of operation: a gateway that must decide early has the first ``EARLY_PACKETS`` packets of a
flow, the first bytes of each direction's first payload and the handshake metadata the
inspectors decoded. :class:`~sluice.features.extractor.FlowFeatures` turns exactly that into a float
matrix whose columns (``feature_names_``) are stable: a model stores them and refuses a matrix with
other columns.

Never used: addresses, port numbers, whole-flow counters (bytes, duration, packet totals) and
names (SNI, Host, certificate subjects) as text. The lab uses fixed addresses and ports, so a
model that learned them would learn the lab, not the protocols. Names enter only as shapes
(present, length, character entropy).

Never used either (feature set 2): what only identifies the client's TLS library or program.
The JA4 parts (cipher-suite and extension counts), the ALPN list and the versions the client
offers are not columns at all; and in a flow that opens with a TLS handshake record the sizes,
byte statistics, entropy and timing of the handshake itself (the first eight packets and the
first two bursts) are *masked* (:data:`MASKED`, value -2) by :func:`mask_handshake`, because a
ClientHello's length and bytes name the library that wrote it, not the protocol inside, and the
handshake's gaps name the server's TLS stack and whether it resumed a session (no certificate
to sign: a faster answer); a model that read them missed a stunnel client that resumes. A
model trained on them called curl's HTTPS "trojan" (issue 11). What a TLS flow keeps is what
generalises across implementations: the bursts *after* the handshake (an encapsulated
handshake is a ClientHello-sized client burst answered by a certificate-chain-sized server
burst; Xue et al., USENIX Security 2024), payload sizes per direction after it, timing, the
server's certificate shape and the name's shape. Knowing one circumvention client by its
handshake is legitimate, and belongs in a fingerprint rule that names the program.

Missing values (no second payload, no TLS) are ``-1``; LightGBM treats them as one more value.
"""

from __future__ import annotations

__all__ = [
    "APP_BURSTS",
    "BURSTS",
    "EARLY_PACKETS",
    "FEATURE_NAMES",
    "MASKED",
    "bursts",
    "feature_row",
    "mask_handshake",
    "opens_with_tls_handshake",
    "record_from_row",
]

import itertools
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from sluice.features.view import FlowView, label_entropy
from sluice.flows.record import AppMeta, FlowRecord

EARLY_PACKETS = 8
"""Packets of a flow the per-packet columns read."""
BURSTS = 10
"""Bursts (runs of payload packets in one direction) with a column each, of the first 32 packets."""
APP_BURSTS = 6
"""Bursts after the outer TLS handshake with a column each (``tls_app0.bytes`` …)."""
MASKED = -2.0
"""Value of a column masked by :func:`mask_handshake` (distinct from -1, "not seen")."""

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
    names += ["tls.sni_present", "tls.sni_len", "tls.sni_entropy"]
    names += ["tls.selected_version", "tls.cipher_seen", "tls.ech"]
    names += ["tls.cert_present", "tls.cert_self_issued", "tls.cert_san_count", "quic.present"]
    names += ["http.host_present", "http.status", "dns.qtype", "dns.query_len"]
    names += [f"burst{k}.bytes" for k in range(BURSTS)]
    names += ["bursts.count", "nested.handshakes"]
    names += [f"late.{d}_{s}" for d in ("c2s", "s2c") for s in ("pkts", "mean", "max")]
    names += [f"tls_app{k}.bytes" for k in range(APP_BURSTS)]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names()
"""Column names of the feature matrix, in order (version 2 of the feature set)."""

FEATURE_SET_VERSION = "3"
"""Version of :data:`FEATURE_NAMES` and their definitions (2: no client-library columns, the
handshake masked, bursts and the shape after the handshake; 3: the bursts after the outer TLS
handshake, aligned where it ends, and the handshake's packet gaps masked too)."""

COL_BURSTS = FEATURE_NAMES.index("burst0.bytes")
"""First of the burst columns (``burst0.bytes`` … ``late.s2c_max``)."""

NESTED_CLIENT_HELLO = (250, 2600)
"""Client burst sizes an encapsulated ClientHello takes (with the carrier's framing): the smallest
real ClientHellos are about 250 bytes, a browser's with padding and post-quantum key shares up
to about 2 KB."""
NESTED_SERVER_FLIGHT = 1000
"""Smallest server burst that can hold a certificate chain (an encapsulated server flight)."""
TLS12 = 0x0303
"""``tls.selected_version`` of TLS 1.2: a full handshake has a second round trip."""
FINISHED_MAX = 100
"""Largest payload of a packet holding only a client's Finished (with a ChangeCipherSpec): TLS
1.3's 53-74 bytes with its record, TLS 1.2's 51-80 after a resumption."""

_MASK_COLS = (
    [f"pkt{i}.payload" for i in range(EARLY_PACKETS)]
    + [f"pkt{i}.log_iat_us" for i in range(EARLY_PACKETS)]
    + ["early.c2s_payload_pkts", "early.s2c_payload_pkts", "early.c2s_payload_bytes"]
    + ["early.s2c_payload_bytes", "early.dir_changes", "early.max_payload", "early.distinct_sizes"]
    + ["early.payload_mod16_zero", "c2s.first_payload_len", "s2c.first_payload_len"]
    + [f"{d}.head_{s}" for d in ("c2s", "s2c") for s in _HEAD_STATS]
    + [f"{d}.head_byte{i}" for d in ("c2s", "s2c") for i in range(3)]
    + ["c2s.entropy", "c2s.printable", "s2c.entropy", "s2c.printable", "burst0.bytes", "burst1.bytes"]
)
MASKED_COLUMNS: tuple[int, ...] = tuple(FEATURE_NAMES.index(c) for c in _MASK_COLS)
"""Columns :func:`mask_handshake` masks in a flow that opens with a TLS handshake."""
_COL_TLS_RECORD = FEATURE_NAMES.index("c2s.tls_record")
_COL_BYTE0 = FEATURE_NAMES.index("c2s.head_byte0")
_COL_TLS_VERSION = FEATURE_NAMES.index("tls.selected_version")
_COL_CERT = FEATURE_NAMES.index("tls.cert_present")
COL_APP_BURSTS = FEATURE_NAMES.index("tls_app0.bytes")
"""First of the columns after the outer TLS handshake (the last block of the matrix)."""


def opens_with_tls_handshake(rec: FlowRecord) -> bool:
    """Whether the client's first payload is a TLS handshake record (the rows :func:`mask_handshake`
    masks)."""
    return rec.c2s_head[:4].lower() == "1603" and len(rec.c2s_head) >= 6


def mask_handshake(X: npt.NDArray[np.float64]) -> None:
    """Mask, in place, the handshake columns of rows whose first client payload is a TLS handshake.

    A row is masked when its ``c2s.tls_record`` is 1 and the record type (``c2s.head_byte0``)
    is 22 (handshake): the ClientHello and the server's first flight fill the first packets
    and bursts, and their sizes, bytes and gaps identify the TLS libraries, not the protocol.
    """
    rows = (X[:, _COL_TLS_RECORD] == 1.0) & (X[:, _COL_BYTE0] == 22.0)
    if rows.any():
        X[np.ix_(np.flatnonzero(rows), np.asarray(MASKED_COLUMNS, dtype=np.intp))] = MASKED


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
    out = [float(app == a or (a == "quic" and app == "gquic")) for a in _APPS]
    out += [float(bool(sni)), float(len(sni)), label_entropy(sni)]
    out += [float(m.tls_version or -1), float(m.tls_cipher >= 0)]
    out += [float(m.ech), float(bool(m.cert_subject or m.cert_san))]
    out += [float(bool(m.cert_subject) and m.cert_subject == m.cert_issuer), float(len(m.cert_san))]
    out += [float(bool(m.quic_version) or app in ("quic", "gquic"))]
    out += [float(bool(m.http_host)), float(m.http_status), float(m.dns_qtype), float(len(m.dns_query))]
    return out


def bursts(view: FlowView) -> list[tuple[int, int]]:
    """``(direction, payload bytes)`` of each run of payload packets in one direction, in order."""
    out: list[tuple[int, int]] = []
    for d, n in zip(view.rec.pkt_dirs, view.payload_lens, strict=False):
        if n <= 0:
            continue
        if out and out[-1][0] == d:
            out[-1] = (d, out[-1][1] + n)
        else:
            out.append((d, n))
    return out


def _burst_features(view: FlowView) -> list[float]:
    bs = bursts(view)
    out = [float(n if d == 0 else -n) for d, n in bs[:BURSTS]]
    out += [0.0] * (BURSTS - len(out))
    lo, hi = NESTED_CLIENT_HELLO
    flight = NESTED_SERVER_FLIGHT
    nested = sum(
        1
        for k in range(2, len(bs) - 1)
        if bs[k][0] == 0 and lo <= bs[k][1] <= hi and bs[k + 1][0] == 1 and bs[k + 1][1] >= flight
    )
    out += [float(len(bs)), float(nested)]
    # payload packets after the first two bursts (after the handshake, in a TLS flow)
    late: list[list[int]] = [[], []]
    k = -1
    prev = -1
    for d, n in zip(view.rec.pkt_dirs, view.payload_lens, strict=False):
        if n <= 0 or d not in (0, 1):
            continue
        if d != prev:
            k += 1
            prev = d
        if k >= 2:
            late[d].append(n)
    for sizes in late:
        out += [float(len(sizes)), sum(sizes) / len(sizes) if sizes else -1.0, float(max(sizes, default=-1))]
    return out


def _app_bursts(view: FlowView, tls_version: float, cert: float) -> list[float]:
    """Signed sizes of the first :data:`APP_BURSTS` bursts after the outer TLS handshake.

    The positional burst columns put a tunnel's nested handshake at burst 2 after a TLS 1.3 or a
    resumed handshake and at burst 4 after a full TLS 1.2 one, so a model that learned it at one
    place missed it at the other (a stunnel client that resumes its sessions, held out: 55 %).
    Here the columns start where the outer handshake ends: after the client's first flight and
    the server's; after one more round trip when the server chose TLS 1.2 and sent a certificate
    (the client's key exchange and Finished, the server's Finished); otherwise minus the
    client's Finished when it came in a packet of its own (:data:`FINISHED_MAX`). What is left
    of a relay's or a Trojan's stream starts with the inner ClientHello and the inner server's
    certificate chain.
    """
    seq = [
        (d, n) for d, n in zip(view.rec.pkt_dirs, view.payload_lens, strict=False) if n > 0 and d in (0, 1)
    ]
    i = _skip_run(seq, _skip_run(seq, 0, 0), 1)
    if tls_version == TLS12 and cert == 1.0:
        i = _skip_run(seq, _skip_run(seq, i, 0), 1)
    elif i < len(seq) and seq[i][1] <= FINISHED_MAX:
        i += 1
    out: list[float] = []
    for d, n in seq[i:]:
        signed = float(n if d == 0 else -n)
        if out and (out[-1] > 0) == (d == 0):
            out[-1] += signed
        elif len(out) < APP_BURSTS:
            out.append(signed)
        else:
            break
    return out + [0.0] * (APP_BURSTS - len(out))


def _skip_run(seq: list[tuple[int, int]], i: int, d: int) -> int:
    """The index after the run of direction ``d`` payloads that starts at ``i`` (``i`` if none)."""
    while i < len(seq) and seq[i][0] == d:
        i += 1
    return i


def feature_row(rec: FlowRecord) -> list[float]:
    """One row of the feature matrix: the definition of every column, one record at a time.

    :meth:`FlowFeatures.transform` computes whole batches with
    :func:`sluice.features.batch.feature_matrix`, which gives exactly these values, faster.
    """
    row = np.asarray([_unmasked_row(rec)], dtype=np.float64)
    mask_handshake(row)
    return [float(x) for x in row[0]]


def _unmasked_row(rec: FlowRecord) -> list[float]:
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
    out += _burst_features(view)
    if out[_COL_TLS_RECORD] == 1.0 and out[_COL_BYTE0] == 22.0:  # mask_handshake's rows
        out += _app_bursts(view, out[_COL_TLS_VERSION], out[_COL_CERT])
    else:
        out += [-1.0] * APP_BURSTS
    return out


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if value is not None else ()


def record_from_row(row: Mapping[str, Any]) -> FlowRecord:
    """A flow record from one flat row (``FlowRecord.to_dict``, or a Parquet/JSONL flow log row).

    Missing metadata columns take their defaults; extra columns (labels, capture) are ignored.
    Exported rows (nulls, Parquet timestamps) are read too (:func:`sluice.io.rows.import_row`).
    """
    from sluice.io.rows import import_row

    row = import_row(row)
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
