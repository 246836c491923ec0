"""Write the benchmark capture: a large Ethernet pcap of realistic mixed traffic plus its truth.

Usage::

    python bench/make_capture.py --packets 1000000 --flows 20000 --out bench/data/bench.pcap

The capture holds at least ``--packets`` frames and ``--flows`` flows (HTTPS/TLS, bulk TLS,
QUIC, DNS over UDP and TCP, plain HTTP, SSH, SOCKS5) in timestamp order; the ground truth goes
to ``<out stem>.truth.json`` (one FlowTruth per flow). ``--pool`` keeps the real TLS/QUIC
handshakes in a JSON file so that a second run with the same seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from sluice.io.pcap_writer import open_writer
from sluice.synth.payloads import PayloadPool
from sluice.synth.scenario import generate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000, help="minimum number of frames")
    ap.add_argument("--flows", type=int, default=20_000, help="minimum number of flows")
    ap.add_argument("--out", type=Path, default=Path("bench/data/bench.pcap"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--truth", type=Path, default=None, help="default: <out stem>.truth.json")
    ap.add_argument("--flows-per-s", type=float, default=250.0, help="mean flow arrival rate")
    ap.add_argument("--gzip", action="store_true", help="gzip the capture")
    ap.add_argument("--pool", type=Path, default=None, help="load/save real handshakes here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.packets < 1 or args.flows < 1:
        print("--packets and --flows must be positive", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    pool = None
    if args.pool is not None and args.pool.exists():
        pool = PayloadPool.from_json(json.loads(args.pool.read_text()))
    scenario = generate(
        args.flows,
        args.seed,
        min_packets=args.packets,
        flows_per_s=args.flows_per_s,
        pool=pool,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # write under a private name and rename at the end: readers never see a half-written
    # capture, and two concurrent runs cannot interleave their records
    tmp = args.out.with_name(f".{args.out.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with open_writer(tmp, "pcap", gzip=args.gzip, linktype=scenario.linktype) as w:
            for ts, frame in scenario:
                w.write(ts, frame)
                n += 1
        os.replace(tmp, args.out)
    finally:
        tmp.unlink(missing_ok=True)
    elapsed = time.perf_counter() - t0
    truth = scenario.truth
    truth.meta["elapsed_s"] = round(elapsed, 3)
    truth_path = args.truth or args.out.with_name(args.out.name.split(".")[0] + ".truth.json")
    tmp_truth = truth_path.with_name(f".{truth_path.name}.{os.getpid()}.tmp")
    truth.dump(tmp_truth)
    os.replace(tmp_truth, truth_path)
    if args.pool is not None:
        args.pool.write_text(json.dumps(scenario.pool.to_json()))
    kinds = Counter(f.kind for f in truth)
    apps = Counter(f.app for f in truth)
    summary = {
        "out": str(args.out),
        "truth": str(truth_path),
        "packets": n,
        "flows": len(truth),
        "bytes": args.out.stat().st_size,
        "elapsed_s": round(elapsed, 2),
        "packets_per_s": round(n / elapsed),
        "real_handshakes": scenario.pool.handshakes_made,
        "size_scale": round(float(truth.meta["size_scale"]), 4),
        "kinds": dict(sorted(kinds.items())),
    }
    print(json.dumps(summary, indent=2))
    missing = {"tls", "quic", "dns", "http"} - set(apps)
    if n < args.packets or len(truth) < args.flows or missing:
        print(f"capture does not meet the request (missing apps: {sorted(missing)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
