"""Summaries computed over the shards' Parquet files (pandas), without the Python objects.

The same counts :func:`sluice.detect.service.summarize` gives over the merged rows, read
straight from the columns :mod:`sluice.cluster.rows` writes — what a person would run over a
directory of shards in a notebook, and what ``tests/cluster`` checks against the merged result.
"""

from __future__ import annotations

__all__ = ["summarize_shards"]

from collections.abc import Sequence
from typing import Any

from sluice.detect.verdict import DETECTABLE_CLASSES


def summarize_shards(files: Sequence[str]) -> dict[str, Any]:
    """Counts over shard files of ``sluice analyze --cluster`` (or of ``flows``: flows and packets only).

    Args:
        files: Parquet files written by :func:`~sluice.cluster.rows.write_verdicts` or
            :func:`~sluice.cluster.rows.write_records`.

    Returns:
        ``flows``, ``packets``, ``bytes``, ``by_app``; with verdict columns also ``by_class``,
        ``by_family``, ``findings``, ``register_matches`` (as :func:`summarize` names them).

    Raises:
        ImportError: pandas is not installed.
    """
    import pandas as pd

    frames = [pd.read_parquet(f) for f in files]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if df.empty:
        return {"flows": 0, "packets": 0, "bytes": 0, "by_app": {}}
    finals = df[~df["early"]]
    out: dict[str, Any] = {
        "flows": len(finals),
        "packets": int((finals["c2s_packets"] + finals["s2c_packets"]).sum()),
        "bytes": int((finals["c2s_bytes"] + finals["s2c_bytes"]).sum()),
        "by_app": {str(k): int(v) for k, v in sorted(finals["meta_app"].value_counts().items())},
    }
    if "v_label" not in df.columns:
        return out
    family = df["v_label"] + "/" + df["v_family"].where(df["v_family"] != "", "-")
    out["by_class"] = {str(k): int(v) for k, v in sorted(df["v_label"].value_counts().items())}
    out["by_family"] = {str(k): int(v) for k, v in sorted(family.value_counts().items())}
    out["findings"] = int(df["v_label"].isin(sorted(DETECTABLE_CLASSES)).sum())
    out["register_matches"] = int((df["register"] != "[]").sum())
    return out
