"""Exported flow rows: nulls, Community ID, TLS names, CSV lists, Parquet timestamps, pandas."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import pytest

from sluice.batch.flows import BatchResult, batch_flows
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig
from sluice.io.flowlog import EXPORT_COLUMNS, export_row, open_flow_writer, split_csv_list
from sluice.io.tls_names import tls_cipher_name, tls_version_name

MIX = Path(__file__).parents[1] / "data" / "pcaps" / "mix40.pcap.gz"


@pytest.fixture(scope="module")
def mix() -> BatchResult:
    return batch_flows(str(MIX), FlowConfig())


def test_tls_names() -> None:
    assert tls_version_name(0x0304) == "TLS 1.3" and tls_version_name(0x0301) == "TLS 1.0"
    assert tls_version_name(0) is None and tls_version_name(0x7F17) is None
    assert tls_cipher_name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert tls_cipher_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert tls_cipher_name(0xCCA8) == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
    assert tls_cipher_name(-1) is None and tls_cipher_name(0xABCD) is None


def test_absent_values_are_null(mix: BatchResult) -> None:
    for r in mix.records:
        row = export_row(r)
        assert list(row) == list(EXPORT_COLUMNS)
        assert -1 not in (row["tls_cipher"], row["dns_rcode"], row["c2s_entropy"], row["s2c_entropy"])
        assert "" not in row.values()
        if r.meta.tls_cipher < 0:
            assert row["tls_cipher"] is None and row["tls_cipher_name"] is None
        else:
            assert row["tls_cipher"] == r.meta.tls_cipher
        assert row["community_id"] and row["community_id"].startswith("1:")
    tls = [export_row(r) for r in mix.records if r.meta.tls_cipher >= 0]
    assert tls and all(row["tls_cipher_name"] and row["tls_version_name"] for row in tls)


def _csv_text(records: list[FlowRecord]) -> str:
    buf = io.StringIO()
    writer = open_flow_writer("csv", buf, None)
    writer.write(records)
    writer.close()
    return buf.getvalue()


def test_csv_lists_split_back(mix: BatchResult) -> None:
    odd = dataclasses.replace(mix.records[0], meta=mix.records[0].meta.copy())
    odd.meta.alpn = ("h2", "a b,c", 'q"uote', "")
    odd.meta.dns_answers = ("x y", "1.2.3.4")
    records = [odd, *mix.records[1:]]
    rows = list(csv.DictReader(io.StringIO(_csv_text(records))))
    assert len(rows) == len(records)
    for r, row in zip(records, rows, strict=True):
        assert tuple(split_csv_list(row["alpn"])) == r.meta.alpn
        assert tuple(split_csv_list(row["dns_answers"])) == r.meta.dns_answers
        assert tuple(split_csv_list(row["cert_san"])) == r.meta.cert_san
        assert tuple(split_csv_list(row["pkt_sizes"])) == r.pkt_sizes
        assert float(row["first_ts"]) == r.first_ts
        assert row["tls_cipher"] == ("" if r.meta.tls_cipher < 0 else str(r.meta.tls_cipher))


def test_parquet_timestamps_and_nulls(tmp_path: Path, mix: BatchResult) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "f.parquet"
    writer = open_flow_writer("parquet", None, str(path))
    writer.write(mix.records)
    writer.close()
    table = pq.read_table(path)
    assert table.schema.field("first_ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("last_ts").type == pa.timestamp("us", tz="UTC")
    first = table.column("first_ts").to_pylist()
    assert len(first) == len(mix.records)
    assert all(abs(t.timestamp() - r.first_ts) <= 1e-6 for t, r in zip(first, mix.records, strict=True))
    ciphers = table.column("tls_cipher").to_pylist()
    assert ciphers == [r.meta.tls_cipher if r.meta.tls_cipher >= 0 else None for r in mix.records]
    empty = tmp_path / "e.parquet"
    w = open_flow_writer("parquet", None, str(empty))
    w.close()
    assert pq.read_table(empty).schema.field("first_ts").type == pa.timestamp("us", tz="UTC")


def test_to_pandas_dtypes(mix: BatchResult) -> None:
    pd = pytest.importorskip("pandas")
    df = mix.to_pandas()
    assert len(df) == len(mix.records)
    assert str(df["first_ts"].dtype) == "datetime64[us, UTC]"
    assert df["first_ts"].iloc[0] == pd.Timestamp(mix.records[0].first_ts, unit="s", tz="UTC").floor("us")
    assert str(df["tls_cipher"].dtype) == "Int64"
    assert df["tls_cipher"].isna().sum() == sum(1 for r in mix.records if r.meta.tls_cipher < 0)
    assert str(df["app"].dtype) == "category" and set(df["app"].cat.categories) >= {"tls", "dns", "http"}
    assert str(df["server_name"].dtype).startswith("string")
    assert str(df["c2s_entropy"].dtype) == "Float64"
    assert isinstance(df["alpn"].iloc[0], list)


def test_cli_csv_and_jsonl_agree(tmp_path: Path, mix: BatchResult) -> None:
    from click.testing import CliRunner

    from sluice.cli.main import cli

    out = CliRunner().invoke(cli, ["flows", str(MIX), "--format", "jsonl"])
    assert out.exit_code == 0
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert rows == [json.loads(json.dumps(export_row(r))) for r in mix.records]
