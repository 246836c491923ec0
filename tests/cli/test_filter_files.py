"""``--filter EXPR`` on capture files, with tcpdump as the oracle (``tcpdump -r FILE -w OUT EXPR``).

The packets a filter keeps are counted against tcpdump's on every capture of the shared nDPI
corpus, by both engines of :class:`sluice.io.bpf.PacketFilter` (libpcap through ctypes, and the
program ``tcpdump -ddd`` prints run by :func:`sluice.io.bpf.run_bpf`); then ``flows``,
``analyze`` and ``policy test`` with ``--filter`` are compared with the same commands on the file
tcpdump wrote.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.errors import ConfigError
from sluice.io.bpf import PacketFilter, filtered_captures
from sluice.io.capture import open_capture
from sluice.io.source import LinkType
from tests.corpus.ndpi_out import NDPI

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.pcapng"
EXPRS = ("port 443 or udp port 53", "vlan or ip6 or icmp or (tcp[tcpflags] & tcp-syn != 0)")
"""Expressions tried on every corpus capture: ports, link-layer and header-field tests."""
SAMPLES = (
    "443-chrome.pcap",
    "bad-dns-traffic.pcap",
    "quic-33.pcapng",
    "tor.pcap",
    "ookla.pcap",
    "dns-exf.pcap",
)
"""Captures the commands are compared on (those of them that exist)."""

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")


def _corpus() -> list[Path]:
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing")
    return sorted(p for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng"))


def _tcpdump(src: Path, expr: str, out: Path) -> int | None:
    """Packets tcpdump keeps (it writes them to ``out``); None when tcpdump cannot read ``src``."""
    res = subprocess.run(
        ["tcpdump", "-r", str(src), "-w", str(out), expr],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if res.returncode != 0:
        return None
    with open_capture(out) as reader:
        return sum(1 for _ in reader)


def _kept(pf: PacketFilter, path: Path) -> int:
    with open_capture(path) as reader:
        return sum(pf.matches(p.linktype, p.data, p.wirelen) for p in reader)


@pytest.mark.corpus
@pytest.mark.slow
@needs_tcpdump
def test_packet_counts_match_tcpdump_on_the_corpus(tmp_path: Path) -> None:
    caps = _corpus()
    engines = {expr: (PacketFilter(expr), PacketFilter(expr, use_libpcap=False)) for expr in EXPRS}
    assert engines[EXPRS[0]][0].engine == "libpcap"
    compared = kept_any = 0
    for cap in caps:
        for expr, (lib, py) in engines.items():
            want = _tcpdump(cap, expr, tmp_path / "out.pcap")
            if want is None:  # a capture tcpdump refuses (damaged): nothing to compare
                continue
            assert (_kept(lib, cap), _kept(py, cap)) == (want, want), (cap.name, expr)
            compared += 1
            kept_any += want > 0
    assert compared >= len(caps) and kept_any > len(caps) // 2


def test_bad_expression_is_refused_before_reading() -> None:
    with pytest.raises(ConfigError, match="syntax error"):
        PacketFilter("tcp port")
    with pytest.raises(ConfigError, match="empty"):
        PacketFilter("  ")
    res = CliRunner().invoke(cli, ["flows", "--no-progress", "--filter", "tcp port", str(DEMO)])
    assert res.exit_code == 2 and "syntax error" in res.stderr and res.stdout == ""
    res = CliRunner().invoke(cli, ["analyze", "--no-model", "--filter", "port 99999", str(DEMO)])
    assert res.exit_code == 2 and "port" in res.stderr
    res = CliRunner().invoke(cli, ["flows", "--cluster", "local:1", "--filter", "udp", str(DEMO)])
    assert res.exit_code == 2


def test_both_link_types_of_one_pcapng_are_filtered() -> None:
    """The demo has an Ethernet and a raw-IP interface (tcpdump -r refuses such a file): each gets
    its own program, and both engines agree packet by packet."""
    lib, py = PacketFilter("udp port 53"), PacketFilter("udp port 53", use_libpcap=False)
    seen: dict[int, int] = {}
    with open_capture(DEMO) as reader:
        for p in reader:
            got = lib.matches(p.linktype, p.data, p.wirelen)
            assert got == py.matches(p.linktype, p.data, p.wirelen)
            seen[p.linktype] = seen.get(p.linktype, 0) + got
    assert seen.get(LinkType.ETHERNET, 0) > 0 and seen.get(LinkType.RAW, 0) > 0
    with filtered_captures([str(DEMO)], "udp port 53") as (rep,):
        assert Path(rep.filtered_path).name == DEMO.name and rep.engine == "sluice"
        assert rep.packets_read is not None  # sluice's reader counts what it read
        assert rep.packets_kept == sum(seen.values()) < rep.packets_read
        with open_capture(rep.filtered_path) as reader:
            assert sum(1 for _ in reader) == rep.packets_kept
    assert not Path(rep.filtered_path).exists()


@pytest.mark.corpus
def test_libpcap_copies_what_it_reads_whole() -> None:
    cap = NDPI / "tor.pcap"
    if not cap.exists():
        pytest.skip(f"../shared not present: {cap} missing")
    with filtered_captures([str(cap)], "tcp") as (rep,):
        assert rep.engine == "libpcap" and rep.packets_kept is None
        with open_capture(rep.filtered_path) as reader:
            kept = [p for p in reader]
    with open_capture(cap) as reader:
        want = [p for p in reader if p.data[23:24] == b"\x06"]  # Ethernet + IPv4, protocol TCP
    assert [(p.ts, p.data, p.wirelen) for p in kept] == [(p.ts, p.data, p.wirelen) for p in want]


def _rows(args: list[str]) -> list[dict[str, Any]]:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines()]


def _flows_key(r: dict[str, Any]) -> tuple[Any, ...]:
    keep = ("flow_id", "client", "client_port", "server", "server_port", "proto", "c2s_packets",
            "s2c_packets", "c2s_bytes", "s2c_bytes", "app", "server_name", "ja4")  # fmt: skip
    return tuple(r[k] for k in keep)


@pytest.mark.corpus
@needs_tcpdump
@pytest.mark.parametrize("stream", [False, True], ids=["batch", "stream"])
def test_flows_filter_equals_flows_of_tcpdump_output(tmp_path: Path, stream: bool) -> None:
    caps = [p for p in _corpus() if p.name in SAMPLES]
    assert caps, f"none of {SAMPLES} in {NDPI}"
    expr = EXPRS[0]
    flows = 0
    for cap in caps:
        ref = tmp_path / cap.name
        if _tcpdump(cap, expr, ref) is None:
            continue
        opts = ["flows", "--no-progress", "--format", "jsonl", *(["--stream"] if stream else [])]
        got = _rows([*opts, "--filter", expr, str(cap)])
        want = _rows([*opts, str(ref)])
        assert [_flows_key(r) for r in got] == [_flows_key(r) for r in want], cap.name
        # gzip: libpcap cannot read it, so sluice's reader filters (the other engine), alike
        gz = tmp_path / (cap.name + ".gz")
        gz.write_bytes(gzip.compress(cap.read_bytes(), mtime=0))
        got_gz = _rows([*opts, "--filter", expr, str(gz)])
        assert [_flows_key(r) for r in got_gz] == [_flows_key(r) for r in want], cap.name
        flows += len(got)
    assert flows > 10


@pytest.mark.corpus
@needs_tcpdump
def test_analyze_and_policy_test_filter_equal_tcpdump_output(tmp_path: Path) -> None:
    cap = NDPI / "tor.pcap"
    if not cap.exists():
        pytest.skip(f"../shared not present: {cap} missing")
    expr = "tcp and not port 80"
    ref = tmp_path / cap.name
    assert _tcpdump(cap, expr, ref)

    def verdicts(path: Path, *filt: str) -> list[tuple[Any, ...]]:
        rows = _rows(["analyze", "--no-progress", "--format", "jsonl", *filt, str(path)])
        return [(r["capture"], r["flow_id"], r["server"], r["class"], r["family"]) for r in rows]

    got = verdicts(cap, "--filter", expr)
    assert got == verdicts(ref) and got
    assert all(port != 80 for port in (r["server_port"] for r in _rows(
        ["analyze", "--no-progress", "--json", "--filter", expr, str(cap)])))  # fmt: skip

    pol = tmp_path / "policy.toml"
    pol.write_text(CliRunner().invoke(cli, ["policy", "show-default"]).stdout)

    def decided(path: Path, *filt: str) -> list[tuple[Any, ...]]:
        rows = _rows(["policy", "test", str(pol), str(path), "--no-model", "--no-progress", "--json", *filt])
        return [(r["capture"], r["flow_id"], r["flow_key"], r["rule"], r["action"]) for r in rows]

    got = decided(cap, "--filter", expr)
    assert got == decided(ref) and got
