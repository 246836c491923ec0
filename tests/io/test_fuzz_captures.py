"""Mutated real captures through every reader (issue 19's audit, kept as a suite).

Real captures of the nDPI corpus (``../shared/corpus/ndpi``; the tests skip when it is absent) are
damaged five ways, each reproducible:

- ``E<p>``: Wireshark's ``editcap -E <p> --seed 19`` changes each packet byte with probability
  ``p`` (the file's structure stays valid; editcap's ``--seed`` makes the damage repeatable);
- ``flip``: a seeded byte flipper of our own (:func:`flip_bytes`) that also hits the record
  headers and pcapng blocks editcap leaves alone, so the readers' framing is fuzzed too;
- ``s<n>``: ``editcap -s <n>`` keeps the first ``n`` bytes of every packet (capture length
  below wire length, headers cut mid-field);
- ``cut``: the file cut at a seeded offset (a truncated last record);
- ``gz``: the ``E`` mutant with the highest probability, gzip-compressed and cut (a damaged
  stream on the decompressing paths).

All mutants go through ``sluice flows`` (the batch path), ``sluice flows --stream`` (the packet
loop, ``--strict`` on both so an internal error is a traceback, not a count), ``sluice flows
--stream -`` from a pipe, ``sluice analyze`` and ``sluice analyze --decisions`` (the gateway's
Decider, packet by packet), each in its own process, and the tests assert what the audit did:
no traceback, every packet counted and malformed ones counted by a dotted reason, batch and
stream agree row for row and in their summaries, every flow judged, and each process's peak
memory (``ru_maxrss`` of the command and its workers, read by a small probe process: see
:data:`PROBE`) within a generous bound of the same
command on the undamaged captures. Memory, never time, is asserted.

By default a fixed sample of captures × probabilities runs (about a minute of CPU on a loaded
two-core machine). A wider sweep: ``SLUICE_FUZZ_CAPTURES=all`` (every capture of the corpus) or a
comma-separated list of capture names; ``SLUICE_FUZZ_PROBABILITIES=0.001,0.01,0.3`` and
``SLUICE_FUZZ_SEED=N`` change the damage. A failure names the mutant; to reproduce it, run the
same ``editcap`` command (the seed is in the file name) or :func:`flip_bytes` with that seed.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.ndpi_out import NDPI, captures

WIDE = bool(os.environ.get("SLUICE_FUZZ_CAPTURES"))
pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (Wireshark) is needed"),
    # the shared fixture runs every command on every mutant before the first test: a wide sweep
    # takes hours on a loaded machine, the default sample minutes at worst
    pytest.mark.timeout(24 * 3600 if WIDE else 1800),
]

SLUICE = [sys.executable, "-m", "sluice"]
RUN_TIMEOUT_S = 3600
"""A watchdog only (a hung reader is a failure); nothing here measures time."""

SAMPLE = (
    "443-opvn.pcap",  # OpenVPN over TCP
    "openvpn.pcap:200",  # OpenVPN over UDP
    "wireguard.pcap",
    "ipsec_isakmp_esp.pcap:200",  # IKE, ESP in UDP
    "quic_q50.pcap",  # gQUIC
    "quic-29.pcap",
    "tls_ech.pcapng",  # pcapng, TLS
    "socks.pcap",
    "dns_fragmented.pcap",  # IP fragments
    "6in4tunnel.pcap",  # tunnels
    "pptp.pcap",  # GRE
)
"""The default sample: small captures (``name:N``: its first N packets, cut with ``editcap -r``)
covering the dissectors and both file formats."""
PROBABILITIES = (0.002, 0.02, 0.1)
SNAPLENS = (34, 60)
"""Inside the IPv4 header of an Ethernet frame; inside the transport header or first payload."""
DEFAULT_SEED = 19
FLIP_RATE = 0.003
"""Share of the bytes after the file header that :func:`flip_bytes` changes."""
RSS_SLACK_MIB = 300
"""Peak memory allowed above the same command on the undamaged captures."""
REASON = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
MIN_PACKETS = 10
"""Captures this long always show the strongest damage in their anomaly counts."""
GROUP = 60
"""Mutants per process in a wide sweep (a run of ``sluice`` reads many captures)."""


def flip_bytes(data: bytes, seed: int, rate: float = FLIP_RATE) -> bytes:
    """``data`` with a seeded ``rate`` of its bytes changed, the file header (24 bytes of pcap,
    the section header block of pcapng) left intact so the file is still recognised.

    Bytes are set to a random value, to 0x00 or to 0xFF (editcap's kinds of damage), anywhere
    after the header: record headers and pcapng block lengths included.
    """
    rng = random.Random(seed)
    keep = 24
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        (keep,) = struct.unpack("<I" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">I", data[4:8])
    out = bytearray(data)
    span = len(out) - keep
    for _ in range(max(1, int(span * rate))):
        i = keep + rng.randrange(span)
        out[i] = rng.choice((rng.randrange(256), 0x00, 0xFF))
    return bytes(out)


def _seed() -> int:
    return int(os.environ.get("SLUICE_FUZZ_SEED", DEFAULT_SEED))


def _probabilities() -> tuple[float, ...]:
    raw = os.environ.get("SLUICE_FUZZ_PROBABILITIES", "")
    return tuple(float(p) for p in raw.split(",") if p) or PROBABILITIES


def _sample(out: Path) -> list[Path]:
    """The captures to damage: corpus files, or their first packets copied into ``out``."""
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} (the nDPI corpus)")
    wanted = os.environ.get("SLUICE_FUZZ_CAPTURES", "")
    if wanted == "all":
        return captures()
    specs = [n.partition(":") for n in wanted.split(",") if n] or [n.partition(":") for n in SAMPLE]
    missing = [n for n, _, _ in specs if not (NDPI / n).exists()]
    if missing:
        pytest.skip(f"captures not in {NDPI}: {', '.join(missing)}")
    paths = []
    for name, _, head in specs:
        if head:
            paths.append(out / name)
            _editcap(["-r", str(NDPI / name), str(out / name), f"1-{int(head)}"])
        else:
            paths.append(NDPI / name)
    return paths


@dataclass(frozen=True, slots=True)
class Mutant:
    """One damaged capture."""

    path: Path
    """The damaged file."""
    original: Path
    """The capture it was made from."""
    kind: str
    """``E<p>``, ``flip``, ``s<n>``, ``cut`` or ``gz``."""


def _editcap(args: list[str]) -> None:
    r = subprocess.run(["editcap", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (args, r.stderr)


def make_mutants(originals: list[Path], out: Path, seed: int) -> list[Mutant]:
    """Every mutant of every capture, written under ``out``."""
    mutants = []
    probs = _probabilities()
    for k, orig in enumerate(originals):
        stem, ext = orig.name.split(".", 1)
        data = orig.read_bytes()
        for p in probs:
            path = out / f"{stem}.E{p}-seed{seed}.{ext}"
            _editcap(["-E", str(p), "--seed", str(seed), str(orig), str(path)])
            mutants.append(Mutant(path, orig, f"E{p}"))
        strongest = out / f"{stem}.E{max(probs)}-seed{seed}.{ext}"
        path = out / f"{stem}.flip-seed{seed + k}.{ext}"
        path.write_bytes(flip_bytes(data, seed + k))
        mutants.append(Mutant(path, orig, "flip"))
        for n in SNAPLENS:
            path = out / f"{stem}.s{n}.{ext}"
            _editcap(["-s", str(n), str(orig), str(path)])
            mutants.append(Mutant(path, orig, f"s{n}"))
        rng = random.Random(seed * 1000 + k)
        path = out / f"{stem}.cut-seed{seed * 1000 + k}.{ext}"
        path.write_bytes(data[: rng.randrange(len(data) // 4, len(data) - 1)])
        mutants.append(Mutant(path, orig, "cut"))
        packed = gzip.compress(strongest.read_bytes(), mtime=0)
        path = out / f"{stem}.gz-seed{seed}.{ext}.gz"
        path.write_bytes(packed[: rng.randrange(len(packed) // 2, len(packed) - 1)])
        mutants.append(Mutant(path, orig, "gz"))
    return mutants


@dataclass(frozen=True, slots=True)
class Run:
    """One finished ``sluice`` process."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    peak_mib: float
    """Peak resident memory of the process and the workers it waited for."""


PROBE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(f"\\npeak_kib={peak}\\n")
sys.exit(code)
"""
"""Runs a command and reports its peak RSS (KiB, workers included) as the last line of stderr.

A child's ``ru_maxrss`` also counts the memory of the process that started it, up to its exec
(Linux keeps the old address space's high-water mark; with vfork that is the parent's): measured
straight from pytest, a run after the sweep's rows were loaded showed the test process's 800 MiB.
Started from this small interpreter, the overcount is its own few MiB."""


def run_measured(args: list[str], stdin: Path | None = None) -> Run:
    """Run ``args`` to the end (through :data:`PROBE`) and measure its peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        src = stdin.open("rb") if stdin else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", PROBE, *args],
                stdin=src,
                stdout=out,
                stderr=err,
                start_new_session=True,  # the watchdog ends the probe and the command together
            )
        finally:
            if stdin:
                src.close()  # type: ignore[union-attr]
        watchdog = threading.Timer(RUN_TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            code = proc.wait()
        finally:
            watchdog.cancel()
        out.seek(0)
        err.seek(0)
        text = err.read().decode(errors="replace")
        body, _, last = text.rstrip("\n").rpartition("\n")
        tag, _, kib = last.partition("=")
        assert tag == "peak_kib" and kib.isdigit(), f"no peak reported (killed?): {text[-2000:]}"
        return Run(tuple(args), code, out.read().decode(), body, int(kib) / 1024)


def _groups(paths: list[Path]) -> Iterator[list[Path]]:
    for i in range(0, len(paths), GROUP):
        yield paths[i : i + GROUP]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one command did with all the mutants (several processes in a wide sweep)."""

    runs: tuple[Run, ...]
    rows: tuple[dict[str, Any], ...]
    summaries: dict[str, dict[str, Any]]

    @property
    def stderr(self) -> str:
        return "".join(r.stderr for r in self.runs)

    @property
    def peak_mib(self) -> float:
        return max(r.peak_mib for r in self.runs)


def run_command(command: list[str], paths: list[Path], tmp: Path, tag: str) -> Outcome:
    """``command`` over ``paths`` (in groups), rows from JSON lines, the flows summaries if asked."""
    runs: list[Run] = []
    rows: list[dict[str, Any]] = []
    summaries: dict[str, dict[str, Any]] = {}
    for g, group in enumerate(_groups(paths)):
        summary = tmp / f"{tag}-{g}.summary.json"
        extra = ["--summary-json", str(summary)] if command[0] == "flows" else []
        run = run_measured([*SLUICE, *command, "--format", "jsonl", *extra, *map(str, group)])
        runs.append(run)
        rows += [row for line in run.stdout.splitlines() if (row := _json(line)) is not None]
        if extra and summary.exists():
            summaries.update(_json(summary.read_text()) or {})
    return Outcome(tuple(runs), tuple(rows), summaries)


def _json(text: str) -> Any:
    """Parsed JSON, or None for text a crashed process cut short (its test says why)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Sweep:
    originals: list[Path]
    mutants: list[Mutant]
    clean_flows: Outcome
    batch: Outcome
    stream: Outcome
    analyze: Outcome
    decisions: Outcome
    clean_analyze: Outcome


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    tmp = tmp_path_factory.mktemp("fuzz")
    originals = _sample(tmp_path_factory.mktemp("heads"))
    mutants = make_mutants(originals, tmp, _seed())
    paths = [m.path for m in mutants]
    flows = ["flows", "--no-progress", "--strict"]
    return Sweep(
        originals,
        mutants,
        clean_flows=run_command(flows, originals, tmp, "clean"),
        batch=run_command(flows, paths, tmp, "batch"),
        stream=run_command([*flows, "--stream"], paths, tmp, "stream"),
        analyze=run_command(["analyze"], paths, tmp, "analyze"),
        decisions=run_command(["analyze", "--decisions"], paths, tmp, "decisions"),
        clean_analyze=run_command(["analyze", "--decisions"], originals, tmp, "clean-analyze"),
    )


def _by_key(rows: tuple[dict[str, Any], ...]) -> dict[tuple[str, bool, int], dict[str, Any]]:
    out = {(r["capture"], bool(r.get("early")), int(r["flow_id"])): r for r in rows}
    assert len(out) == len(rows), "two rows with one key"
    return out


def test_no_traceback_and_clean_exit(sweep: Sweep) -> None:
    """Every mutant keeps its file header: every command exits 0 and prints no traceback."""
    for name in ("batch", "stream", "analyze", "decisions"):
        outcome: Outcome = getattr(sweep, name)
        for run in outcome.runs:
            assert "Traceback" not in run.stderr, (name, run.stderr[-3000:])
            assert run.code == 0, (name, run.code, run.stderr[-3000:])


def test_every_packet_read_and_malformed_ones_counted(sweep: Sweep) -> None:
    """editcap keeps the records, so every packet is read; damage shows up as counted reasons."""
    clean = sweep.clean_flows.summaries
    got = sweep.batch.summaries
    assert set(got) == {str(m.path) for m in sweep.mutants}
    grew: Counter[str] = Counter()
    for m in sweep.mutants:
        s, c = got[str(m.path)], clean[str(m.original)]
        for reason, n in s["anomalies"].items():
            assert REASON.match(reason) and n > 0, (m.path.name, reason, n)
            assert not reason.startswith("internal."), (m.path.name, reason)
        assert s["packets"] >= s["ip_packets"] + s["non_ip"], m.path.name
        if m.kind.startswith(("E", "s")):
            assert s["packets"] == c["packets"], (m.path.name, s, c)
        elif m.kind == "cut":  # a cut in trailing blocks (pcapng statistics) loses no packet
            assert s["packets"] <= c["packets"], m.path.name
        if c["packets"] >= MIN_PACKETS and sum(s["anomalies"].values()) > sum(c["anomalies"].values()):
            grew[m.kind] += 1
    # the strongest byte damage and the smallest snap length show in every capture's counts
    # (a capture of a few packets may escape them)
    n = sum(clean[str(o)]["packets"] >= MIN_PACKETS for o in sweep.originals)
    assert grew[f"E{max(_probabilities())}"] == n, grew
    assert grew[f"s{min(SNAPLENS)}"] == n, grew
    assert n == 0 or grew["gz"] + grew["cut"] > 0, grew


def test_batch_and_stream_agree(sweep: Sweep) -> None:
    """Row for row and summary for summary (time aside), on every mutant."""
    batch, stream = _by_key(sweep.batch.rows), _by_key(sweep.stream.rows)
    assert batch.keys() == stream.keys()
    differ = [k for k in batch if batch[k] != stream[k]]
    assert not differ, differ[:5]
    for path, s in sweep.batch.summaries.items():
        t = sweep.stream.summaries[path]
        assert {k: v for k, v in s.items() if k != "seconds"} == {
            k: v for k, v in t.items() if k != "seconds"
        }, path
    assert len(batch) > 0


def test_a_piped_mutant_streams_like_the_file(sweep: Sweep, tmp_path: Path) -> None:
    """``--stream -``: the pipe a ``tcpdump -w - | sluice`` user has, on the most damaged mutants."""
    named = {r["capture"] for r in sweep.stream.rows}
    picks = [m for m in sweep.mutants if m.kind in ("flip", "gz") and m.path.name in named][:4]
    assert picks
    for m in picks:
        run = run_measured(
            [*SLUICE, "flows", "--no-progress", "--strict", "--stream", "--format", "jsonl", "-"],
            stdin=m.path,
        )
        assert run.code == 0 and "Traceback" not in run.stderr, (m.path.name, run.stderr[-2000:])
        piped = [json.loads(line) for line in run.stdout.splitlines()]
        filed = [
            {k: v for k, v in r.items() if k != "capture"}
            for r in sweep.stream.rows
            if r["capture"] == m.path.name
        ]
        assert piped == filed, m.path.name


def test_every_flow_judged(sweep: Sweep) -> None:
    """``analyze`` gives one row per final flow; ``--decisions`` one per flow as well."""
    finals = Counter(r["capture"] for r in sweep.batch.rows if not r.get("early"))
    assert Counter(r["capture"] for r in sweep.analyze.rows) == finals
    assert Counter(r["capture"] for r in sweep.decisions.rows) == finals


def test_memory_stays_bounded(sweep: Sweep) -> None:
    """Peak RSS of each command on the mutants stays within a generous margin of the clean run."""
    base_flows = sweep.clean_flows.peak_mib
    base_analyze = sweep.clean_analyze.peak_mib
    for name, base in (
        ("batch", base_flows),
        ("stream", base_flows),
        ("analyze", base_analyze),
        ("decisions", base_analyze),
    ):
        peak = getattr(sweep, name).peak_mib
        assert peak < base + RSS_SLACK_MIB, (name, round(base), round(peak))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flip_bytes_is_deterministic_and_keeps_the_header(seed: int) -> None:
    data = bytes(range(256)) * 40
    a, b = flip_bytes(data, seed), flip_bytes(data, seed)
    assert a == b and a[:24] == data[:24] and a != data
    assert flip_bytes(data, seed + 10) != a
    shb = (
        b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 28) + b"\x4d\x3c\x2b\x1a" + bytes(12) + struct.pack("<I", 28)
    )
    ng = shb + bytes(4000)
    assert flip_bytes(ng, seed, rate=0.5)[:28] == shb


def test_editcap_seed_repeats_the_damage(tmp_path: Path) -> None:
    """The suite's reproducibility rests on ``editcap --seed``; if a version ignored it, say so."""
    orig = _sample(tmp_path)[0]
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    for p in (a, b):
        _editcap(["-E", "0.05", "--seed", "7", str(orig), str(p)])
    assert a.read_bytes() == b.read_bytes() != orig.read_bytes()
