"""``sluice flows`` through click's test runner: formats, paths, exit codes, summaries."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from sluice.batch.flows import batch_flows
from sluice.cli.main import cli
from sluice.flows.record import RECORD_COLUMNS
from sluice.flows.table import FlowConfig
from sluice.io.flowlog import EXPORT_COLUMNS, export_row, split_csv_list
from sluice.io.source import LinkType
from tests.flows.test_app import app_sessions
from tests.flows.test_table import Frame, write_capture
from tests.wire.test_l2l4 import MALFORMED


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real application sessions (two link types) plus three malformed frames."""
    frames: list[Frame] = sorted(f for s in app_sessions().values() for f in s)
    frames += [
        (9.0 + k, lt, fr)
        for k, (_n, lt, fr, _r) in enumerate(MALFORMED[:3])
        if lt in (LinkType.ETHERNET, LinkType.LINUX_SLL2)
    ]
    return write_capture(tmp_path_factory.mktemp("cli") / "apps.pcapng", frames)


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = app_sessions()["dns-udp"] + app_sessions()["ssh"]
    return write_capture(tmp_path_factory.mktemp("cli2") / "more.pcap", sorted(frames))


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["flows", "--no-progress", *args], catch_exceptions=False)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[bool, int], dict[str, Any]]:
    out = {(bool(r["early"]), int(r["flow_id"])): r for r in rows}
    assert len(out) == len(rows)
    return out


def test_jsonl_matches_batch_records(capture: Path) -> None:
    res = run("--format", "jsonl", str(capture))
    assert res.exit_code == 0, res.output
    rows = jsonl(res.stdout)
    records = batch_flows(str(capture), FlowConfig()).records
    want = [json.loads(json.dumps(export_row(r))) for r in records]
    assert rows == want
    assert all(tuple(r) == EXPORT_COLUMNS for r in rows)
    assert tuple(rows[0])[: len(RECORD_COLUMNS)] == RECORD_COLUMNS
    assert {r["app"] for r in rows} >= {"tls", "quic", "dns", "http", "ssh", "socks"}
    assert "packets" in res.stderr and "anomalies:" in res.stderr


def test_table_format(capture: Path) -> None:
    res = run(str(capture))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == [
        "flow_id",
        "proto",
        "client",
        "server",
        "packets",
        "bytes",
        "duration",
        "app",
        "server_name",
    ]
    n = len(batch_flows(str(capture), FlowConfig()).records)
    assert len(lines) == 1 + n
    tls_row = next(line for line in lines if "www.example.org" in line and " tls " in line)
    assert tls_row.split()[1] == "tcp" and tls_row.split()[3].endswith(":443")
    assert any(line.split()[1] == "udp" and "[2001:db8:2::2]:443" in line for line in lines)


def test_csv_format(capture: Path, tmp_path: Path) -> None:
    res = run("--format", "csv", str(capture))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    ref = jsonl(run("--format", "jsonl", str(capture)).stdout)
    assert len(rows) == len(ref)
    for got, want in zip(rows, ref, strict=True):
        assert split_csv_list(got["pkt_sizes"]) == want["pkt_sizes"]
        assert split_csv_list(got["alpn"]) == want["alpn"]
        assert got["tls_cipher"] == ("" if want["tls_cipher"] is None else str(want["tls_cipher"]))
        assert got["client"] == want["client"] and int(got["c2s_bytes"]) == want["c2s_bytes"]


def test_parquet_format_typed_columns(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "flows.parquet"
    res = run("--format", "parquet", "--out", str(out), str(capture))
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    table = pq.read_table(out)
    schema = table.schema
    assert tuple(schema.names) == EXPORT_COLUMNS
    for name in ("pkt_sizes", "pkt_dirs", "vlans"):
        assert schema.field(name).type == pa.list_(pa.int64()), name
    assert schema.field("pkt_iats").type == pa.list_(pa.float64())
    for name in ("alpn", "cert_san", "dns_answers"):
        assert schema.field(name).type == pa.list_(pa.string()), name
    assert schema.field("early").type == pa.bool_()
    assert schema.field("first_ts").type == pa.timestamp("us", tz="UTC")  # JSONL keeps Unix seconds
    assert schema.field("client").type == pa.string() and schema.field("c2s_bytes").type == pa.int64()
    ref = jsonl(run("--format", "jsonl", str(capture)).stdout)
    got = table.to_pylist()
    for row in got:
        for name in ("first_ts", "last_ts"):
            row[name] = row[name].timestamp()
    assert len(got) == len(ref)
    for g, w in zip(got, ref, strict=True):
        assert abs(g.pop("first_ts") - w.pop("first_ts")) <= 1e-6
        assert abs(g.pop("last_ts") - w.pop("last_ts")) <= 1e-6
        assert g == w


def test_parquet_needs_out(capture: Path) -> None:
    res = run("--format", "parquet", str(capture))
    assert res.exit_code == 2 and "--out" in res.stderr


def test_out_file(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.jsonl"
    res = run("--format", "jsonl", "--out", str(out), str(capture))
    assert res.exit_code == 0 and res.stdout == ""
    assert jsonl(out.read_text()) == jsonl(run("--format", "jsonl", str(capture)).stdout)


@pytest.mark.parametrize(
    "extra",
    [[], ["--early", "--early-packets", "3", "--idle-timeout", "0.05"]],
    ids=["defaults", "early-short"],
)
def test_stream_equals_batch(capture: Path, extra: list[str]) -> None:
    batch = run("--format", "jsonl", *extra, str(capture))
    stream = run("--format", "jsonl", "--stream", *extra, str(capture))
    assert batch.exit_code == stream.exit_code == 0
    assert by_key(jsonl(batch.stdout)) == by_key(jsonl(stream.stdout))


def test_early_records(capture: Path) -> None:
    plain = jsonl(run("--format", "jsonl", "--early-packets", "3", str(capture)).stdout)
    early = jsonl(run("--format", "jsonl", "--early", "--early-packets", "3", str(capture)).stdout)
    assert not any(r["early"] for r in plain)
    extra = [r for r in early if r["early"]]
    assert extra and all(
        r["end_reason"] == "early" and r["c2s_packets"] + r["s2c_packets"] == 3 for r in extra
    )
    assert [r for r in early if not r["early"]] == plain


def test_timeouts_change_flows(capture: Path) -> None:
    default = jsonl(run("--format", "jsonl", str(capture)).stdout)
    short = jsonl(run("--format", "jsonl", "--idle-timeout", "0.001", str(capture)).stdout)
    assert len(short) > len(default)
    assert "idle" in {r["end_reason"] for r in short}


def test_missing_file_exit_3(tmp_path: Path) -> None:
    res = run(str(tmp_path / "nope.pcap"))
    assert res.exit_code == 3
    assert "capture.not_found" in res.stderr and "nope.pcap" in res.stderr


def test_directory_exit_3(tmp_path: Path) -> None:
    res = run(str(tmp_path))
    assert res.exit_code == 3 and "capture.is_directory" in res.stderr


def test_not_a_capture_exit_3(tmp_path: Path) -> None:
    bad = tmp_path / "x.pcap"
    bad.write_text("hello")
    res = run(str(bad))
    assert res.exit_code == 3 and "capture.bad_magic" in res.stderr


def test_one_bad_capture_among_good_ones(capture: Path, tmp_path: Path) -> None:
    res = run("--format", "jsonl", str(tmp_path / "gone.pcap"), str(capture))
    assert res.exit_code == 3 and "capture.not_found" in res.stderr
    rows = jsonl(res.stdout)
    assert rows and {r["capture"] for r in rows} == {capture.name}


def test_unknown_format_exit_2(capture: Path) -> None:
    res = run("--format", "xml", str(capture))
    assert res.exit_code == 2 and "xml" in res.stderr


def test_no_arguments_exit_2() -> None:
    res = run()
    assert res.exit_code == 2 and "CAPTURE" in res.stderr


def test_bad_option_value_exit_2(capture: Path) -> None:
    assert run("--idle-timeout", "0", str(capture)).exit_code == 2
    assert run("--max-flows", "0", str(capture)).exit_code == 2


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_multiple_captures_add_capture_column(capture: Path, second: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"m.{fmt}"
    res = run("--format", fmt, "--out", str(out), str(capture), str(second))
    assert res.exit_code == 0, res.output
    if fmt == "jsonl":
        rows = jsonl(out.read_text())
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
    else:
        table = pq.read_table(out)
        assert table.schema.field("capture").type == pa.string()
        rows = table.to_pylist()
    assert next(iter(rows[0])) == "capture"
    names = [r["capture"] for r in rows]
    n_first = len(batch_flows(str(capture), FlowConfig()).records)
    assert names == [capture.name] * n_first + [second.name] * (len(rows) - n_first)
    assert len(rows) - n_first == 2


def test_single_capture_has_no_capture_column(capture: Path) -> None:
    assert "capture" not in jsonl(run("--format", "jsonl", str(capture)).stdout)[0]


def test_summary_json(capture: Path, second: Path, tmp_path: Path) -> None:
    summary = tmp_path / "s.json"
    res = run("--format", "jsonl", "--summary-json", str(summary), str(capture), str(second))
    assert res.exit_code == 0, res.output
    got = json.loads(summary.read_text())
    assert list(got) == [str(capture), str(second)]
    first = got[str(capture)]
    ref = batch_flows(str(capture), FlowConfig()).summary.to_dict()
    assert {k: v for k, v in first.items() if k != "seconds"} == ref
    assert first["anomalies"] == {r: 1 for _n, _lt, _fr, r in MALFORMED[:3]}
    assert first["packets"] == first["ip_packets"] + first["non_ip"] + 3
    assert isinstance(first["seconds"], float) and first["seconds"] >= 0
    assert got[str(second)]["flows"] == 2 and got[str(second)]["anomalies"] == {}


@pytest.mark.parametrize("early", [[], ["--early"]], ids=["no-early", "early"])
def test_summary_json_same_for_stream_and_batch(capture: Path, tmp_path: Path, early: list[str]) -> None:
    """The summary does not depend on the path (nor on whether early records are printed)."""
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(capture.read_bytes()[:-7])
    summaries = []
    for mode in ([], ["--stream"]):
        out = tmp_path / f"s{len(mode)}.json"
        res = run(
            "--format", "jsonl", "--early-packets", "4", "--summary-json", str(out), *early, *mode, str(cut)
        )
        assert res.exit_code == 0, res.output
        body = json.loads(out.read_text())[str(cut)]
        body.pop("seconds")
        summaries.append(body)
    assert summaries[0]["anomalies"]["capture.truncated_record"] == 1  # the reader's, merged
    assert summaries[1]["anomalies"]["capture.truncated_record"] == 1
    assert summaries[0]["early_records"] == summaries[1]["early_records"] > 0
    assert summaries[0] == summaries[1]


def test_gzip_capture(capture: Path, tmp_path: Path) -> None:
    import gzip

    packed = tmp_path / "apps.pcapng.gz"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    a = run("--format", "jsonl", str(packed))
    assert a.exit_code == 0 and jsonl(a.stdout) == jsonl(run("--format", "jsonl", str(capture)).stdout)


def test_version_and_help() -> None:
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and "sluice" in res.stdout
    res = CliRunner().invoke(cli, ["flows", "--help"])
    assert res.exit_code == 0 and "--summary-json" in res.stdout


def test_parquet_of_a_capture_without_flows(tmp_path: Path) -> None:
    """No flows still gives a Parquet file: zero rows, the same typed columns."""
    arp = tmp_path / "arp.pcap"
    write_capture(arp, [(1.0, int(LinkType.ETHERNET), b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28))])
    out = tmp_path / "empty.parquet"
    res = run("--format", "parquet", "--out", str(out), str(arp))
    assert res.exit_code == 0, res.output
    assert out.exists(), "no Parquet file written for a capture without flows"
    table = pq.read_table(out)
    assert table.num_rows == 0 and tuple(table.schema.names) == EXPORT_COLUMNS
    assert table.schema.field("pkt_sizes").type == pa.list_(pa.int64())


@pytest.mark.parametrize("option", ["--out", "--summary-json"])
def test_unwritable_output_is_an_io_error(capture: Path, tmp_path: Path, option: str) -> None:
    """Exit code 3 and a message, not a traceback, when an output file cannot be created."""
    target = tmp_path / "no-such-dir" / "x.out"
    res = CliRunner().invoke(cli, ["flows", "--format", "jsonl", option, str(target), str(capture)])
    assert res.exit_code == 3, repr(res.exception)
    assert "no-such-dir" in res.stderr
