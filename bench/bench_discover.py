"""Benchmark: service discovery over 1 M analysis rows, against a plain-dict and a pyarrow baseline.

    python bench/bench_discover.py [--rows 1000000] [--seed 0]

Writes a Parquet table of made-up ``sluice analyze`` rows (the columns discovery reads; 2 % of the
flows go to 300 made-up providers of 2-6 endpoints each, sharing a certificate or a domain; a fifth
are DNS answers; the rest is ordinary HTTPS to 50 000 servers), then times in one run on the same
file:

- ``sluice``: :func:`sluice.services.discover.read_flows` + :func:`discover` (endpoints, links,
  groups);
- ``dict``: the floor for any Python implementation: one pass of plain ``dict`` counting of flows
  and findings per endpoint over the same columns (no names, no certificates, no grouping);
- ``pyarrow``: ``Table.group_by`` on (server, port, proto) counting flows and findings (C++).

Machines here are shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any


def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    providers = []
    for p in range(300):
        eps = [
            (f"45.{p // 200}.{p % 200}.{rng.randrange(1, 250)}", rng.choice((443, 1194, 51820)))
            for _ in range(rng.randrange(2, 7))
        ]
        providers.append((f"prov{p}.example", eps))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        r = rng.random()
        client = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        base = {"client": client, "first_ts": 1.7e9 + i, "last_ts": 1.7e9 + i + 5}
        if r < 0.02:
            dom, eps = rng.choice(providers)
            server, port = rng.choice(eps)
            rows.append(
                {
                    **base,
                    "server": server,
                    "server_port": port,
                    "proto": 6 if port == 443 else 17,
                    "class": "vpn",
                    "family": "openvpn" if port != 51820 else "wireguard",
                    "sni": f"s{rng.randrange(9)}.{dom}" if port == 443 else "",
                    "cert_subject": f"CN=*.{dom}" if port != 51820 else "",
                    "cert_san": [f"*.{dom}"] if port != 51820 else [],
                    "evidence": '[{"code":"openvpn.client_reset"}]',
                }
            )
        elif r < 0.22:
            rows.append(
                {
                    **base,
                    "server": "192.0.2.53",
                    "server_port": 53,
                    "proto": 17,
                    "class": "benign",
                    "family": "dns",
                    "dns_query": f"www{rng.randrange(50000)}.example.com",
                    "dns_answers": [f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(256)}"],
                    "evidence": "[]",
                }
            )
        else:
            k = rng.randrange(50000)
            rows.append(
                {
                    **base,
                    "server": f"198.{18 + k % 2}.{(k >> 8) % 256}.{k % 256}",
                    "server_port": 443,
                    "proto": 6,
                    "class": "benign",
                    "family": "tls",
                    "sni": f"www{k}.example.com",
                    "cert_subject": f"CN=www{k}.example.com",
                    "cert_san": [f"www{k}.example.com"],
                    "evidence": "[]",
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from sluice.services.discover import discover, read_flows

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        t0 = time.perf_counter()
        pq.write_table(pa.Table.from_pylist(make_rows(args.rows, args.seed)), path)
        made = time.perf_counter() - t0

        t0 = time.perf_counter()
        flows = read_flows([str(path)])
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        groups = discover(flows)
        t_sluice = time.perf_counter() - t0 + t_read

        t0 = time.perf_counter()
        table = pq.read_table(path, columns=["server", "server_port", "proto", "class"])
        cols = [table.column(c).to_pylist() for c in ("server", "server_port", "proto", "class")]
        counts: dict[tuple[Any, Any, Any], list[int]] = {}
        for s, p, pr, c in zip(*cols, strict=True):
            e = counts.get((s, p, pr))
            if e is None:
                e = counts[(s, p, pr)] = [0, 0]
            e[0] += 1
            e[1] += c != "benign"
        t_dict = time.perf_counter() - t0

        t0 = time.perf_counter()
        table = pq.read_table(path, columns=["server", "server_port", "proto", "class"])
        table = table.append_column("finding", pc.cast(pc.not_equal(table["class"], "benign"), pa.int64()))
        grouped = table.group_by(["server", "server_port", "proto"]).aggregate(
            [("finding", "sum"), ("finding", "count")]
        )
        t_arrow = time.perf_counter() - t0

    machine = f"{platform.node()}, {platform.processor() or platform.machine()}"
    print(f"## Service discovery, {args.rows:,} rows ({date.today()}, {machine})")
    print(f"made the input in {made:.1f} s; {len(groups)} candidate services, {len(counts):,} endpoints")
    print()
    print("| what | seconds | rows/s | ratio to sluice |")
    print("|---|---|---|---|")
    for name, t in (
        ("sluice read_flows + discover (grouping, names, certificates)", t_sluice),
        (f"  of which read_flows (Parquet to columns) {t_read:.2f} s", t_read),
        ("plain dict: flows and findings per endpoint", t_dict),
        ("pyarrow group_by: flows and findings per endpoint", t_arrow),
    ):
        print(f"| {name} | {t:.2f} | {args.rows / t:,.0f} | {t / t_sluice:.2f} |")
    assert grouped.num_rows == len(counts)


if __name__ == "__main__":
    main()
