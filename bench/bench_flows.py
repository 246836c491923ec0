"""Benchmark: flow extraction with metadata, sluice against NFStream and tshark, same input, one run.

    python bench/bench_flows.py [--capture bench/data/bench.pcap] [--skip-tshark] [--skip-nfstream]

Makes the capture with the project's own writer when it is missing (bench/make_capture.py),
then runs each tool in its own process (so peak memory is that process's own) and prints
packets/s, wall time, peak RSS and ratios to sluice's batch path as a Markdown table. Machines
here are shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

NFSTREAM_SNIPPET = """
import sys
from nfstream import NFStreamer
n = 0
names = 0
for flow in NFStreamer(source=sys.argv[1], n_dissections=20, statistical_analysis=False,
                       idle_timeout=120, active_timeout=1800):
    n += 1
    names += bool(flow.requested_server_name)
print(n, names)
"""

SLUICE_SNIPPET = """
import sys
from sluice.batch.flows import batch_flows
from sluice.flows.loop import PacketLoop
from sluice.io.capture import open_capture
if sys.argv[2] == "batch":
    res = batch_flows(sys.argv[1])
    recs = [r for r in res.records if not r.early]
else:
    loop = PacketLoop(); recs = []
    with open_capture(sys.argv[1]) as rd:
        for raw in rd:
            loop.process(raw, recs)
    loop.finish(recs)
    recs = [r for r in recs if not r.early]
print(len(recs), sum(1 for r in recs if r.meta.server_name))
"""


def run(cmd: list[str], stdout: int | None = subprocess.PIPE) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user + system, waited-for descendants included), peak RSS (KiB)
    of the child, and its stdout. CPU time is the steadier measure on a shared machine."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:3]} failed with {status}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out.strip()


def count_packets(path: Path) -> int:
    code = "import sys; from sluice.batch.index import index_capture; print(len(index_capture(sys.argv[1])))"
    return int(subprocess.check_output([PY, "-c", code, str(path)], text=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, default=ROOT / "bench/data/bench.pcap")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--flows", type=int, default=20_000)
    ap.add_argument("--skip-tshark", action="store_true")
    ap.add_argument("--skip-nfstream", action="store_true")
    ap.add_argument("--skip-stream", action="store_true")
    args = ap.parse_args()
    cap = args.capture
    if not cap.exists():
        cap.parent.mkdir(parents=True, exist_ok=True)
        subprocess.check_call(
            [
                PY,
                str(ROOT / "bench/make_capture.py"),
                "--packets",
                str(args.packets),
                "--flows",
                str(args.flows),
                "--out",
                str(cap),
            ]
        )
    n = count_packets(cap)
    # warm numba's on-disk cache so compile time is not measured
    run([PY, "-c", SLUICE_SNIPPET, str(cap), "batch"])
    rows: list[tuple[str, float, float, int, str]] = []
    s, cpu, rss, out = run([PY, "-c", SLUICE_SNIPPET, str(cap), "batch"])
    rows.append(("sluice batch (flows + SNI/QUIC/DNS/HTTP metadata)", s, cpu, rss, out))
    s, cpu, rss, out = run(
        [str(Path(PY).parent / "sluice"), "flows", str(cap), "--format", "jsonl", "--out", "/dev/null"]
    )
    rows.append(("`sluice flows --format jsonl` (CLI, end to end)", s, cpu, rss, out))
    if not args.skip_stream:
        s, cpu, rss, out = run([PY, "-c", SLUICE_SNIPPET, str(cap), "stream"])
        rows.append(("sluice streaming path", s, cpu, rss, out))
    if not args.skip_nfstream:
        s, cpu, rss, out = run([PY, "-c", NFSTREAM_SNIPPET, str(cap)])
        rows.append(("NFStream 6 (nDPI dissection, 20 packets)", s, cpu, rss, out))
    if not args.skip_tshark and shutil.which("tshark"):
        fields = [
            "ip.src",
            "ip.dst",
            "tcp.srcport",
            "tcp.dstport",
            "udp.srcport",
            "udp.dstport",
            "tls.handshake.extensions_server_name",
        ]
        cmd = ["tshark", "-n", "-r", str(cap), "-T", "fields"]
        for f in fields:
            cmd += ["-e", f]
        s, cpu, rss, out = run(cmd, stdout=subprocess.DEVNULL)
        rows.append(("tshark -T fields (5-tuple + SNI per packet)", s, cpu, rss, ""))
    base, base_cpu = n / rows[0][1], n / rows[0][2]
    print(
        f"\n### {date.today()} — {platform.node()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(f"Input: `{cap.name}`, {n:,} packets, {cap.stat().st_size / 1e6:.0f} MB\n")
    print(
        "| tool | wall s | packets/s | vs sluice batch | CPU s | packets/CPU-s | vs sluice (CPU) "
        "| peak RSS MiB | flows, named |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, s, cpu, rss, out in rows:
        pps, ppc = n / s, n / cpu
        print(
            f"| {name} | {s:.2f} | {pps:,.0f} | {pps / base:.2f}× | {cpu:.2f} | {ppc:,.0f} | "
            f"{ppc / base_cpu:.2f}× | {rss / 1024:.0f} | {out} |"
        )


if __name__ == "__main__":
    main()
