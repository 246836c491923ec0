"""Benchmark of the register: import, database size, matcher memory, lookups per second.

Builds a synthetic RKN CSV dump of N entries (default 1.2 M, the seeds' "~1.2 million blocked
sites") with the shapes of the real dumps: domains (ASCII and Cyrillic, hyphenated labels,
2-4 labels), ``*.`` masks, http URLs with paths and queries, https URLs (domain blocks), IPv4
addresses and subnets, IPv6 addresses and subnets, decisions from the real dumps' authorities.
Then, in one run:

* import time (wall and CPU: the machine may be shared) of the dump into a fresh SQLite
  register (parse + sync + one transaction), and of the same dump again (nothing changes);
* database size on disk;
* matcher build time and memory (array bytes, and the process's RSS growth);
* host-name lookups per second, batch (Python list in; Arrow array in; median of 5 runs, range
  shown) and single, against a plain-Python baseline (dict of names + walk over parent names);
* IPv4 lookups per second, batch (uint32 array) and single, against a plain-Python baseline
  (per-prefix dicts of networks, longest first).

Usage: ``python bench/bench_registry.py [--entries 1200000] [--queries 1000000]``.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from sluice.registry.matcher import Matcher
from sluice.registry.names import canon_host
from sluice.registry.stores import SqliteStore
from sluice.registry.sync import import_files

AUTHORITIES = [
    ("суд", "2-1687/2013", "2013-05-23"),
    ("ФНС", "2-6-27/2016-02-12-22-АИ", "2016-04-11"),
    ("Генпрокуратура", "27-31-2015/Ид4082-15", "2015-12-04"),
    ("Роскомнадзор", "9-Restricting", "2017-04-28"),
    ("МВД", "3/187709556434", "2018-04-25"),
    ("Мосгорсуд", "3-0384/2015", "2015-10-19"),
    ("ФСКН", "2/1/11-40462", "2015-07-14"),
]
WORDS = [
    "kupit",
    "spajs",
    "casino",
    "forum",
    "online",
    "zerkalo",
    "bet",
    "vulkan",
    "mix",
    "porno",
    "kazino",
    "azino",
    "777",
    "tv",
    "film",
    "kino",
    "sol",
    "shop",
    "top",
    "best",
    "win",
    "club",
]
CYR = ["казино", "купить", "зеркало", "бк", "ставки", "медсправки", "автобар", "рабочее"]
TLDS = ["ru"] * 30 + ["com"] * 25 + ["net", "org", "info", "biz", "xyz", "top", "su", "club"] * 4
TLDS += ["online", "site", "pro", "io", "cc", "me", "to", "рф"]  # ~1 % IDN, as the real dumps


def _label(rng: random.Random) -> str:
    n = rng.randint(1, 3)
    base = "-".join(rng.choice(WORDS) for _ in range(n))
    return f"{base}{rng.randint(0, 99999)}" if rng.random() < 0.7 else base + rng.choice(WORDS)


def _domain(rng: random.Random) -> str:
    tld = rng.choice(TLDS)
    if tld == "рф" or rng.random() < 0.003:
        first = f"{rng.choice(CYR)}-{rng.choice(CYR)}{rng.randint(0, 9999)}"
    else:
        first = _label(rng)
    parts = [first, tld]
    r = rng.random()
    if r < 0.25:
        parts.insert(0, rng.choice(["www", "m", "mirror", "forum", _label(rng)]))
    elif r < 0.30:
        parts[0:0] = [_label(rng), rng.choice(["www", "cdn"])]
    return ".".join(parts)


def build_dump(path: Path, n: int, seed: int = 1) -> tuple[list[str], list[int]]:
    """Write an RKN CSV of ``n`` rows (one entry each); return its host names and IPv4s."""
    rng = random.Random(seed)
    hosts: list[str] = []
    ip4s: list[int] = []
    with open(path, "w", encoding="cp1251", newline="\n") as fh:
        fh.write("Updated: 2024-06-01 12:00:00 +0000\n")
        for i in range(n):
            a, num, date = AUTHORITIES[i % len(AUTHORITIES)]
            ip = f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            r = rng.random()
            if r < 0.50:  # domain (https or no URL)
                d = _domain(rng)
                hosts.append(d)
                url = f"https://{d}/" if rng.random() < 0.3 else ""
                row = f"{ip};{d};{url};{a};{num};{date}"
            elif r < 0.58:  # mask
                d = _domain(rng)
                hosts.append(d)
                row = f"{ip};*.{d};;{a};{num};{date}"
            elif r < 0.83:  # http URL
                d = _domain(rng)
                path_ = "/".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
                q = f"?id={rng.randint(1, 10**6)}" if rng.random() < 0.4 else ""
                row = f"{ip};{d};http://{d}/{path_}{q};{a};{num};{date}"
            elif r < 0.93:  # IPv4 address
                ip4s.append(int(ipaddress.IPv4Address(ip)))
                row = f"{ip};;;{a};{num};{date}"
            elif r < 0.97:  # IPv4 subnet
                plen = rng.choice([16, 18, 20, 22, 23, 24, 24, 24, 27])
                net = ipaddress.IPv4Network(f"{ip}/{plen}", strict=False)
                ip4s.append(int(net.network_address) + 1)
                row = f"{net};;;{a};{num};{date}"
            elif r < 0.99:  # IPv6 address (full or compressed)
                v6 = ipaddress.IPv6Address(rng.getrandbits(128))
                row = f"{v6.exploded if rng.random() < 0.5 else v6.compressed};;;{a};{num};{date}"
            else:  # IPv6 subnet
                net6 = ipaddress.IPv6Network((rng.getrandbits(128), rng.choice([32, 48, 64])), strict=False)
                row = f"{net6};;;{a};{num};{date}"
            fh.write(row + "\n")
    return hosts, ip4s


class Baseline:
    """Plain Python: a dict of names (exact and mask) and per-prefix dicts of networks."""

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.exact: dict[str, list[int]] = {}
        self.mask: dict[str, list[int]] = {}
        self.nets: dict[int, dict[int, list[int]]] = {}
        for i, (_, kind, ind, _) in enumerate(rows):
            if kind == "domain":
                self.exact.setdefault(ind, []).append(i)
            elif kind == "domain-mask":
                self.mask.setdefault(ind[2:], []).append(i)
            elif kind in ("ip", "subnet") and ":" not in ind:
                net = ipaddress.IPv4Network(ind)
                self.nets.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), []).append(i)
        self.plens = sorted(self.nets, reverse=True)

    def host(self, name: str) -> list[int]:
        n = name.lower().rstrip(".")
        out = list(self.exact.get(n, ()))
        if n.startswith("www."):
            out += self.exact.get(n[4:], ())
        while True:
            out += self.mask.get(n, ())
            dot = n.find(".")
            if dot < 0:
                return out
            n = n[dot + 1 :]

    def ip(self, addr: int) -> list[int]:
        out: list[int] = []
        for p in self.plens:
            out += self.nets[p].get(addr & ((0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF), ())
        return out


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rate(n: int, fn: object) -> float:
    assert callable(fn)
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_200_000)
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--single", type=int, default=200_000)
    args = ap.parse_args()
    print(f"sluice registry benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        dump = Path(tmp) / "dump.csv"
        t = time.perf_counter()
        hosts, ip4s = build_dump(dump, args.entries)
        print(
            f"built dump: {args.entries:,} rows, {dump.stat().st_size / 1e6:.1f} MB "
            f"in {time.perf_counter() - t:.1f} s"
        )
        # compiled kernels load from numba's cache (compiled there on the very first run): not
        # part of an import, so warmed up on a small dump first and timed apart
        small = Path(tmp) / "small.csv"
        build_dump(small, 2000, seed=9)
        t = time.perf_counter()
        warm = SqliteStore(Path(tmp) / "warm.db", create=True)
        import_files(warm, [small])
        Matcher.from_store(warm).match_hosts(["warm.up"])
        warm.close()
        print(f"warm-up (kernels from numba's cache or compiled): {time.perf_counter() - t:.1f} s")
        store = SqliteStore(Path(tmp) / "reg.db", create=True)
        t, c = time.perf_counter(), time.process_time()
        s = import_files(store, [dump])
        t_import, c_import = time.perf_counter() - t, time.process_time() - c
        print(
            f"import: {s.entries:,} entries ({s.rows:,} rows, {len(s.rejected)} rejected) "
            f"in {t_import:.2f} s (CPU {c_import:.2f} s)  [target <= 10 s]"
        )
        t, c = time.perf_counter(), time.process_time()
        s2 = import_files(store, [dump])
        print(
            f"re-import (no change, {s2.unchanged:,} unchanged): {time.perf_counter() - t:.2f} s"
            f" (CPU {time.process_time() - c:.2f} s)"
        )
        db_size = sum(p.stat().st_size for p in Path(tmp).glob("reg.db*"))
        print(f"database size: {db_size / 1e6:.1f} MB (entries + audit + imports, SQLite WAL)")
        rows = list(store.rows())
        store.close()
        gc.collect()
        rss0 = _rss()
        t = time.perf_counter()
        m = Matcher(rows)
        t_build = time.perf_counter() - t
        gc.collect()
        print(
            f"matcher: built in {t_build:.2f} s, arrays {m.nbytes / 1e6:.1f} MB, "
            f"RSS growth {(_rss() - rss0) / 1e6:.1f} MB"
        )
        base = Baseline(rows)

        rng = random.Random(2)
        nq = args.queries
        queries: list[str] = []
        for _ in range(nq):
            r = rng.random()
            if r < 0.3:
                h = rng.choice(hosts)
                queries.append(rng.choice(["", "www.", "api.", "x.y."]) + h)
            else:
                queries.append(_domain(rng))
        queries = [canon_host(q) for q in queries]  # the engine passes canonical names
        m.match_hosts(queries[:100])
        m.host_hits("warm.up")
        runs = sorted(_rate(nq, lambda: m.match_hosts(queries)) for _ in range(5))
        r_batch = runs[2]
        arrow = pa.array(queries)
        m.match_hosts(arrow[:10])
        runs_arrow = sorted(_rate(nq, lambda: m.match_hosts(arrow)) for _ in range(5))
        r_arrow = runs_arrow[2]
        hits = int(m.match_hosts(queries).hit().sum())
        ns = min(args.single, nq)
        r_single = _rate(ns, lambda: [m.host_hits(q) for q in queries[:ns]])
        r_base = _rate(nq, lambda: [base.host(q) for q in queries])
        print(f"host lookups ({nq:,} names, {hits / nq:.0%} hit):")
        print(
            f"  batch (list of str): {r_batch / 1e6:6.2f} M/s  = {r_batch / r_base:5.1f}x baseline"
            f"  [target >= 1 M/s]  (5 runs: {runs[0] / 1e6:.2f}-{runs[-1] / 1e6:.2f})"
        )
        print(
            f"  batch (Arrow array): {r_arrow / 1e6:6.2f} M/s  = {r_arrow / r_base:5.1f}x baseline"
            f"  (5 runs: {runs_arrow[0] / 1e6:.2f}-{runs_arrow[-1] / 1e6:.2f})"
        )
        print(f"  single (host_hits):  {r_single / 1e6:6.2f} M/s  = {r_single / r_base:5.2f}x baseline")
        print(f"  baseline dict walk:  {r_base / 1e6:6.2f} M/s")

        nprng = np.random.default_rng(3)
        known = np.asarray(ip4s, np.uint32)
        qip = np.where(
            nprng.random(nq) < 0.3, nprng.choice(known, nq), nprng.integers(0, 2**32, nq, dtype=np.uint64)
        ).astype(np.uint32)
        m.match_ips(qip[:10])
        r_ipb = _rate(nq, lambda: m.match_ips(qip))
        qlist = [str(ipaddress.IPv4Address(int(x))) for x in qip[:ns]]
        r_ips = _rate(ns, lambda: [m.match_ips([q]) for q in qlist])
        qint = qip.tolist()
        r_ipbase = _rate(nq, lambda: [base.ip(q) for q in qint])
        print(f"IPv4 lookups ({nq:,} addresses, {len(base.plens)} prefix lengths):")
        print(f"  batch (uint32):      {r_ipb / 1e6:6.2f} M/s  = {r_ipb / r_ipbase:5.1f}x baseline")
        print(f"  single (str):        {r_ips / 1e6:6.2f} M/s  = {r_ips / r_ipbase:5.2f}x baseline")
        print(f"  baseline dicts:      {r_ipbase / 1e6:6.2f} M/s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
