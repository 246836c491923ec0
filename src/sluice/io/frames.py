"""pandas DataFrames of flow runs and analyses (like NFStream's ``to_pandas()``).

pandas is an optional dependency (``pip install sluice[pandas]``), imported only when a frame is
asked for. The columns are the exported ones (:data:`sluice.io.flowlog.EXPORT_COLUMNS`), with
dtypes an analyst expects: ``first_ts``/``last_ts`` as ``datetime64[us, UTC]``, integer columns as
nullable ``Int64`` (an absent cipher or DNS rcode is ``<NA>``, not ``-1``), fractions as
``Float64``, text as ``string``, and low-cardinality columns (protocol, app, end reason, TLS
names, verdict class and family) as ``category``. List columns stay Python lists.
"""

from __future__ import annotations

__all__ = ["CATEGORY_COLUMNS", "VerdictRow", "flows_frame", "verdicts_frame"]

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sluice.flows.record import FlowRecord
from sluice.io.flowlog import EXPORT_COLUMNS, export_row

if TYPE_CHECKING:
    import pandas as pd


class _AsDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class _VerdictLike(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def decided_at(self) -> int: ...
    @property
    def detector(self) -> str: ...
    @property
    def model_digest(self) -> str: ...
    @property
    def evidence(self) -> Sequence[_AsDict]: ...


class VerdictRow(Protocol):
    """What :func:`verdicts_frame` reads of a row (``sluice.detect.service.FlowVerdict``)."""

    @property
    def capture(self) -> str: ...
    @property
    def record(self) -> FlowRecord: ...
    @property
    def verdict(self) -> _VerdictLike: ...
    @property
    def register(self) -> Sequence[_AsDict]: ...


CATEGORY_COLUMNS = (
    "capture", "end_reason", "app", "quic_version", "tls_version_name", "tls_cipher_name",
    "class", "family", "service", "detector",
)  # fmt: skip
"""Columns stored as pandas categoricals."""

_INT_COLUMNS = (
    "flow_id", "ip_version", "client_port", "server_port", "proto", "c2s_packets", "s2c_packets",
    "c2s_bytes", "s2c_bytes", "c2s_payload_bytes", "s2c_payload_bytes", "c2s_tcp_flags",
    "s2c_tcp_flags", "c2s_first_payload_len", "tls_version", "tls_cipher", "dns_qtype", "dns_rcode",
    "http_status", "decided_at",
)  # fmt: skip
_FLOAT_COLUMNS = ("c2s_entropy", "c2s_printable", "s2c_entropy", "s2c_printable", "duration", "confidence")
_BOOL_COLUMNS = ("early", "ech")
_LIST_COLUMNS = ("vlans", "pkt_sizes", "pkt_dirs", "pkt_iats", "alpn", "tls_versions", "cert_san",
                 "dns_answers", "evidence", "register")  # fmt: skip


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=list(columns))
    for name in df.columns:
        if name in ("first_ts", "last_ts"):
            df[name] = pd.to_datetime(df[name], unit="s", utc=True).astype("datetime64[us, UTC]")
        elif name in _INT_COLUMNS:
            df[name] = df[name].astype("Int64")
        elif name in _FLOAT_COLUMNS:
            df[name] = df[name].astype("Float64")
        elif name in _BOOL_COLUMNS:
            df[name] = df[name].astype("boolean")
        elif name in CATEGORY_COLUMNS:
            df[name] = df[name].astype("category")
        elif name not in _LIST_COLUMNS:
            df[name] = df[name].astype("string")
    return df


def flows_frame(records: Iterable[FlowRecord]) -> pd.DataFrame:
    """One row per flow record.

    Args:
        records: flow records (early ones included if given).

    Returns:
        A DataFrame with :data:`~sluice.io.flowlog.EXPORT_COLUMNS`.

    Raises:
        ImportError: pandas is not installed.
    """
    return _frame([export_row(r) for r in records], EXPORT_COLUMNS)


def verdicts_frame(flows: Iterable[VerdictRow]) -> pd.DataFrame:
    """One row per analysed flow: capture, the flow's columns, then the verdict's.

    Args:
        flows: rows of an :class:`~sluice.detect.service.AnalysisResult`.

    Returns:
        A DataFrame; ``evidence`` and ``register`` hold lists of dicts.

    Raises:
        ImportError: pandas is not installed.
    """
    rows = []
    for f in flows:
        v = f.verdict
        rows.append({
            "capture": f.capture,
            **export_row(f.record),
            "class": v.label,
            "family": v.family or None,
            "service": v.service or None,
            "confidence": v.confidence,
            "decided_at": v.decided_at if v.decided_at >= 0 else None,
            "detector": v.detector or None,
            "model_digest": v.model_digest or None,
            "evidence": [e.to_dict() for e in v.evidence],
            "register": [h.to_dict() for h in f.register],
        })  # fmt: skip
    columns = ("capture", *EXPORT_COLUMNS, "class", "family", "service", "confidence", "decided_at",
               "detector", "model_digest", "evidence", "register")  # fmt: skip
    return _frame(rows, columns)
