"""Speed of the mirror name stage: 1 M observed names against a register of ~1.2 M entries.

The register: every host name of the real RKN dumps in ``../shared/registry-data`` (when
present) topped up to ``--entries`` with synthetic names (brand-like labels with counters and
mirror words on rotating TLDs, seeded).  Observed names: the Tranco and Radar lists (when
present), mirror-style variants of register names and random names, to ``--observed``.
Timed (wall and process CPU, with the load average: the machine is shared): building the index
(stems, automata, deletion table, counter shapes), querying (hits, as columns), scoring hits with
the shipped name model.  In the same run, on the same input: a plain dict baseline (every
observed name looked up once in a dict of the register's names: exact names only) and dnstwist's
own permutation generation per seed (when the ``dnstwist`` package is installed), extrapolated
to every register stem; the ratios are printed.

Usage: ``python bench/bench_mirrors.py [--entries 1200000] [--observed 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import string
import time
from pathlib import Path

from sluice.mirrors.families import read_rkn_rows
from sluice.mirrors.namescore import default_model
from sluice.mirrors.permute import fuzz_dnstwist

SHARED = Path(__file__).resolve().parents[2] / "shared"
_SYL = [
    "bet", "fon", "win", "star", "lux", "play", "king", "gold", "max", "zen", "ola", "kin", "mar", "ton",
    "ru", "vip", "top", "club", "spin", "ace", "del", "ora", "vel", "nix", "pro", "tek", "sol", "tor",
]  # fmt: skip
_TLDS = ["com", "ru", "net", "org", "win", "top", "xyz", "site", "online", "club", "info", "pro", "su"]


def _brand(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 4)))


def register_names(n: int, rng: random.Random, shared: Path) -> list[str]:
    names: dict[str, None] = {}
    dumps = [
        shared / "registry-data" / f for f in ("zi_dump_2016-06-13.csv", "zi_dump_2018-05-05_PARTIAL.csv")
    ]
    if all(d.exists() for d in dumps):
        for r in read_rkn_rows(dumps):
            names.setdefault(r.full)
    while len(names) < n:
        b = _brand(rng)
        for _ in range(rng.randint(1, 30)):
            k = rng.random()
            lab = (
                f"{b}{rng.randint(1, 999)}"
                if k < 0.4
                else (f"{b}-zerkalo{rng.randint(1, 99)}" if k < 0.6 else b)
            )
            names.setdefault(f"{lab}.{rng.choice(_TLDS)}")
    return list(names)[:n]


def observed_names(n: int, register: list[str], rng: random.Random, shared: Path) -> list[str]:
    out: dict[str, None] = {}
    for f in ("tranco_top100k.csv", "cloudflare_radar_top100k_2026-04-27.csv"):
        p = shared / "domain-lists" / f
        if p.exists():
            for ln in p.read_text(errors="replace").splitlines():
                d = ln.strip().split(",")[-1]
                if "." in d:
                    out.setdefault(d)
    while len(out) < n * 0.6:
        base = rng.choice(register).split(".")
        lab = base[-2] if len(base) > 1 else base[0]
        pre, post = rng.choice(["", "10", "new-", "m."]), rng.choice(["", "-mirror", "7"])
        out.setdefault(f"{pre}{lab}{post}.{rng.choice(_TLDS)}")
    while len(out) < n:
        lab = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 14)))
        out.setdefault(f"{lab}.{rng.choice(_TLDS)}")
    return list(out)[:n]


class _Clock:
    """Wall and process CPU seconds between laps."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        out = (round(w - self.wall, 2), round(c - self.cpu, 2))
        self.wall, self.cpu = w, c
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=1_200_000)
    ap.add_argument("--observed", type=int, default=1_000_000)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = random.Random(14)
    reg = register_names(args.entries, rng, args.shared)
    obs = observed_names(args.observed, reg, rng, args.shared)
    model = default_model()
    model.index(["warm.ru", "warm1.ru"]).query(["warmup.ru", "warm2.ru"])  # compile the kernels first
    load_before = os.getloadavg()[0]
    clock = _Clock()
    index = model.index(reg)
    build = clock.lap()
    hits = index.query_table(obs)
    query = clock.lap()
    scores = model.score_hits(hits)
    score = clock.lap()
    total = (build[0] + query[0] + score[0], build[1] + query[1] + score[1])
    # plain dict baseline on the same input: the register's names in a dict, every observed name
    # looked up once (exact names only: the floor of any one-Python-step-per-name method)
    clock = _Clock()
    plain = dict.fromkeys(reg)
    found = sum(1 for o in obs if o in plain)
    dict_t = clock.lap()
    res: dict[str, object] = {
        "register_entries": len(reg),
        "stems": len(index),
        "observed": len(obs),
        "hits": len(hits),
        "observed_with_hit": len(set(hits.obs.tolist())),
        "hits_score_0.5": int((scores >= 0.5).sum()),
        "build_s": build,
        "query_s": query,
        "score_s": score,
        "total_s": total,
        "plain_dict_s": dict_t,
        "plain_dict_exact_found": found,
        "ratio_total_to_plain_dict_wall": round(total[0] / max(dict_t[0], 1e-9), 1),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "cpus": os.cpu_count(),
        "load_1min_before_after": (round(load_before, 2), round(os.getloadavg()[0], 2)),
        "note": "seconds are (wall, process CPU)",
    }
    seeds = ["fonbet.ru", "joycasino.com", "baltbet.ru", "marathonbet.com", "grani.ru"]
    t = time.perf_counter()
    n_ours = sum(len(fuzz_dnstwist(s)) for s in seeds)
    res["sluice_fuzz_dnstwist_ms_per_seed"] = round((time.perf_counter() - t) * 1000 / len(seeds), 2)
    res["sluice_fuzz_dnstwist_names_per_seed"] = n_ours // len(seeds)
    try:
        import dnstwist  # type: ignore[import-untyped]

        t = time.perf_counter()
        n_tw = 0
        for s in seeds:
            f = dnstwist.Fuzzer(s)
            f.generate()
            n_tw += len(f.domains)
        per_seed = (time.perf_counter() - t) / len(seeds)
        res["dnstwist_ms_per_seed"] = round(per_seed * 1000, 2)
        res["dnstwist_names_per_seed"] = n_tw // len(seeds)
        # generating dnstwist's permutations of every register stem, before comparing anything
        res["dnstwist_generation_for_all_stems_s"] = round(per_seed * len(index), 1)
        res["ratio_dnstwist_generation_to_total_wall"] = round(per_seed * len(index) / total[0], 1)
    except ImportError:
        res["dnstwist"] = "not installed"
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
