"""Dask scale-out: ``sluice analyze`` of the benchmark capture split into files, on 1 and 2 workers.

Usage::

    python bench/bench_cluster.py [--files 4] [--repeat 2] [--capture bench/data/bench.pcap]

The capture (made by ``bench/make_capture.py`` if missing) is cut into ``--files`` files of equal
packet counts with ``editcap -c`` (a flow may straddle two files: this measures throughput, the
identity with a serial run is ``tests/cluster``'s job), kept in ``bench/data/split/``. Each run
starts a LocalCluster of N one-thread worker processes (started before the clock), then times
:func:`sluice.cluster.analyze_on_cluster` over the files with the shipped model. The serial
baseline is :func:`sluice.detect.service.analyze_captures` in this process. Efficiency with N
workers = T(1 worker) / (N × T(N workers)).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def split(capture: Path, files: int) -> list[str]:
    out = HERE / "data" / "split"
    out.mkdir(parents=True, exist_ok=True)
    have = sorted(out.glob(f"part{files}_*.pcap"))
    if len(have) == files:
        return [str(p) for p in have]
    info = subprocess.run(["capinfos", "-c", "-M", str(capture)], capture_output=True, text=True, check=True)
    packets = int(info.stdout.split(":")[-1].strip().replace(",", ""))
    for p in out.glob(f"part{files}_*"):
        p.unlink()
    per = -(-packets // files)
    subprocess.run(["editcap", "-c", str(per), str(capture), str(out / f"part{files}.pcap")], check=True)
    return [str(p) for p in sorted(out.glob(f"part{files}_*.pcap"))]


def run_cluster(paths: list[str], workers: int, repeat: int) -> tuple[list[float], int]:
    from sluice.cluster import analyze_on_cluster, open_client
    from sluice.detect.combiner import DEFAULT_FET_VETO

    times = []
    rows = 0
    with open_client(f"local:{workers}") as client:
        client.wait_for_workers(workers)
        # warm each worker (imports, numba, model load) on a small file, outside the clock
        with tempfile.TemporaryDirectory() as d:
            analyze_on_cluster(client, paths[:1] * workers, detector=(None, False, DEFAULT_FET_VETO),
                               register=None, shard_dir=d, shard_bytes=0)  # fmt: skip
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                res, _run = analyze_on_cluster(client, paths, detector=(None, False, DEFAULT_FET_VETO),
                                               register=None, shard_dir=d, shard_bytes=0)  # fmt: skip
                times.append(time.perf_counter() - t0)
                rows = len(res.flows)
    return times, rows


def run_serial(paths: list[str]) -> tuple[float, int]:
    from sluice.cli._detect import load_combiner
    from sluice.detect.service import analyze_captures

    combiner = load_combiner(None, False)
    analyze_captures(paths[:1], combiner)  # warm
    t0 = time.perf_counter()
    res = analyze_captures(paths, combiner, workers=1)
    return time.perf_counter() - t0, len(res.flows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--capture", type=Path, default=HERE / "data" / "bench.pcap")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if not args.capture.exists():
        make = [sys.executable, str(HERE / "make_capture.py"), "--out", str(args.capture)]
        subprocess.run(make, check=True)
    paths = split(args.capture, args.files)
    serial, rows0 = run_serial(paths)
    result: dict[str, object] = {"files": len(paths), "bytes": sum(os.path.getsize(p) for p in paths)}
    result["serial_s"] = round(serial, 2)
    med = {}
    for n in (1, 2):
        times, rows = run_cluster(paths, n, args.repeat)
        assert rows == rows0, (rows, rows0)
        med[n] = statistics.median(times)
        result[f"workers_{n}_s"] = [round(t, 2) for t in times]
    result["rows"] = rows0
    result["speedup_2"] = round(med[1] / med[2], 3)
    result["efficiency_2"] = round(med[1] / (2 * med[2]), 3)
    result["overhead_1_vs_serial"] = round(med[1] / serial, 3)
    result["loadavg"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
