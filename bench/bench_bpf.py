"""``--filter EXPR`` on files: sluice's libpcap filter against tcpdump on the same capture.

Usage::

    python bench/bench_bpf.py [--capture bench/data/bench.pcap] [--expr 'tcp port 443' ...]

Per expression, in the same run: ``tcpdump -r FILE -w OUT EXPR`` (the peer, and the count oracle);
the packets of the file matched by :class:`sluice.io.bpf.PacketFilter` with libpcap
(``pcap_offline_filter`` through ctypes) and with the Python interpreter of tcpdump's program
(on the first ``--python-packets`` packets, scaled); :func:`sluice.io.bpf.filtered_captures`
(the filtered copy: libpcap's ``pcap_loop``/``pcap_dump`` for a file it reads whole); and
``sluice flows --filter`` end to end against ``tcpdump -r -w`` then ``sluice flows`` on its
output. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sluice.io.bpf import PacketFilter, filtered_captures
from sluice.io.capture import open_capture

SLUICE = str(Path(sys.executable).with_name("sluice"))


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _count(path: str) -> int:
    with open_capture(path) as reader:
        return sum(1 for _ in reader)


def _match(path: str, pf: PacketFilter, limit: int | None) -> tuple[int, int, float]:
    """Packets read, kept and seconds spent in ``matches`` (reading excluded)."""
    read = kept = 0
    spent = 0.0
    with open_capture(path) as reader:
        for p in reader:
            t0 = time.perf_counter()
            kept += pf.matches(p.linktype, p.data, p.wirelen)
            spent += time.perf_counter() - t0
            read += 1
            if limit is not None and read >= limit:
                break
    return read, kept, spent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--capture", default="bench/data/bench.pcap")
    ap.add_argument("--expr", action="append", default=None)
    ap.add_argument("--python-packets", type=int, default=200_000)
    args = ap.parse_args(argv)
    exprs = args.expr or ["tcp port 443", "udp port 53"]
    print(
        f"capture {args.capture}: {os.path.getsize(args.capture) / 1e6:.0f} MB, load {os.getloadavg()[0]:.1f}"
    )
    print(
        "| expression | packets kept (tcpdump = sluice) | tcpdump -r -w s | libpcap match µs/pkt | "
        "Python match µs/pkt | filtered copy s | flows --filter s | tcpdump + flows s | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for expr in exprs:
        with tempfile.TemporaryDirectory(prefix="bench-bpf-") as tmp:
            ref = os.path.join(tmp, "ref.pcap")
            t_td = _wall(["tcpdump", "-r", args.capture, "-w", ref, expr])
            want = _count(ref)
            n, kept, t_lib = _match(args.capture, PacketFilter(expr), None)
            pn, _, t_py = _match(args.capture, PacketFilter(expr, use_libpcap=False), args.python_packets)
            t0 = time.perf_counter()
            with filtered_captures([args.capture], expr) as (rep,):
                t_copy = time.perf_counter() - t0
                copied = _count(rep.filtered_path)
                assert copied == want == kept, (rep.engine, copied, want, kept)
            t_sluice = _wall(
                [SLUICE, "flows", "--no-progress", "--format", "jsonl", "--filter", expr, args.capture]
            )
            t_peer = t_td + _wall([SLUICE, "flows", "--no-progress", "--format", "jsonl", ref])
        print(f"| `{expr}` | {want:,} of {n:,} | {t_td:.1f} | {1e6 * t_lib / n:.2f} | "
              f"{1e6 * t_py / pn:.2f} | "
              f"{t_copy:.1f} | {t_sluice:.1f} | {t_peer:.1f} | {t_sluice / t_peer:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
