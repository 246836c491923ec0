"""Evaluate the mirror name stage on the register's own mirror families, held out by family.

Families come from the real RKN dumps in ``../shared/registry-data`` (:mod:`sluice.mirrors.families`);
names that must not come out are the Tranco top 10k (``../shared/domain-lists``).  Two folds by
family: the name model is fitted on one fold's families (and on Tranco ranks 10,001-100,000 and
the Cloudflare Radar list, minus the top 10k, as negatives) and judged on the other's, then the
other way round, so every family is judged by a model that never saw it.

Per family, from one seed: recall = share of the family's other members scored above *every*
Tranco top-10k name (against that seed), with a Wilson 95 % interval.  Reported for

* ``name``: the name stage alone;
* ``name+addr``: plus shared addresses with the seed or with a name-found member (the dump's
  addresses stand for what traffic would show; the Tranco names carry no addresses here, so this
  column is optimistic about them);
* ``substring``: baseline "the seed's stem is a substring of the name";
* ``dnstwist``: baseline "the name is among dnstwist-style permutations of the seed".

The popular-names guard, through the proposal path (``find_candidates`` + ``proposals_for``, as
``sluice mirrors propose`` runs them): a stress test in which every Tranco top-10k name is seen on
an address of its own that the seed also resolved to, presenting a certificate whose SANs name
the seed (a CDN edge shared with the blocked site, the worst case), for each family's seed (and,
in the sibling protocol, its known siblings).  Counted: the top-10k names proposed without the
guard, with it (``--popular`` = the Tranco file, top 10,000: must be 0), and refused.

Usage: ``python bench/eval_mirrors.py [--json out.json] [--write-model]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import ahocorasick  # type: ignore[import-not-found]
import numpy as np

from sluice.mirrors.brand import brand_stem
from sluice.mirrors.discover import find_candidates
from sluice.mirrors.families import Family, find_families, read_rkn_rows, split_by_family
from sluice.mirrors.namescore import NameModel
from sluice.mirrors.permute import fuzz_dnstwist
from sluice.mirrors.popular import PopularList, load_popular
from sluice.mirrors.propose import proposals_for
from sluice.mirrors.stems import core, name_parts
from sluice.registry.impact import TrafficCert
from sluice.stats import wilson

SHARED = Path(__file__).resolve().parents[2] / "shared"
DUMPS = ("registry-data/zi_dump_2016-06-13.csv", "registry-data/zi_dump_2018-05-05_PARTIAL.csv")
TRANCO = "domain-lists/tranco_top100k.csv"
RADAR = "domain-lists/cloudflare_radar_top100k_2026-04-27.csv"
TOP = 10_000
_HOSTLIKE = re.compile(r"(?:\d+[-.]){3}\d+")


def read_list(path: Path) -> list[str]:
    out = []
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        n = ln.strip().split(",")[-1].strip().lower()
        if n and n != "domain" and "." in n:
            out.append(n)
    return out


def load(shared: Path) -> tuple[list[Family], list[str], list[str]]:
    rows = read_rkn_rows([shared / d for d in DUMPS])
    fams = [
        f
        for f in find_families(rows)
        if sum(bool(_HOSTLIKE.search(m)) for m in f.members) < len(f.members) / 2
    ]
    tranco = read_list(shared / TRANCO)
    radar = read_list(shared / RADAR)
    top = tranco[:TOP]
    topset = set(top)
    blocked = {m for f in fams for m in f.members}
    train_neg = [n for n in dict.fromkeys(tranco[TOP:] + radar) if n not in topset and n not in blocked]
    top = [n for n in top if n not in blocked]
    return fams, top, train_neg


def scores_for(model: NameModel, fams: list[Family], observed: list[str]) -> dict[str, dict[str, float]]:
    """stem -> observed name -> best name score against that stem."""
    index = model.index([f.seed for f in fams])
    hits = index.query_table(observed)
    p = model.score_hits(hits)
    out: dict[str, dict[str, float]] = {}
    for stem, name, s in zip(hits.stem_names, hits.observed, p.tolist(), strict=True):
        d = out.setdefault(stem, {})
        d[name] = max(d.get(name, 0.0), s)
    return out


def with_addresses(fam: Family, name_scores: dict[str, float]) -> dict[str, float]:
    """Name scores raised by shared addresses: with the seed (0.9), with a name-found member (0.7)."""
    seed_addr = set(fam.addresses.get(fam.seed, ()))
    strong = {m for m, s in name_scores.items() if s >= 0.5}
    strong_addr = {a for m in strong for a in fam.addresses.get(m, ())}
    out = dict(name_scores)
    for m in fam.others:
        addrs = set(fam.addresses.get(m, ()))
        bonus = 0.9 if addrs & seed_addr else (0.7 if addrs & strong_addr else 0.0)
        if bonus:
            out[m] = max(out.get(m, 0.0), bonus)
    return out


def mean_ci(values: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the mean over families (seeded)."""
    rng = np.random.default_rng(14)
    v = np.asarray(values)
    means = v[rng.integers(0, len(v), size=(rounds, len(v)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def sibling_split(f: Family) -> tuple[list[str], list[str]]:
    """The family's other members split in two by a hash of the name: the ones the register
    already lists under the seed's decision (known) and the new ones to find (judged)."""
    known: list[str] = []
    judged: list[str] = []
    for m in f.others:
        h = int.from_bytes(hashlib.sha256(m.encode()).digest()[:4], "big")
        (known if h % 2 == 0 else judged).append(m)
    return known, judged


def with_siblings(model: NameModel, fams: list[Family], top: list[str]) -> dict[str, dict[str, object]]:
    """Shared-decision linkage: the seed's decision already lists half of the family (known);
    their names join the seed in the index and their addresses join the seed's, and the other
    half (judged) is searched for among the judged names and the top 10k."""
    split = {f.key: sibling_split(f) for f in fams}
    seeds_of = {f.key: [f.seed, *split[f.key][0]] for f in fams}
    stem_fams: dict[str, set[str]] = {}
    for key, seeds in seeds_of.items():
        for sd in seeds:
            stem_fams.setdefault(brand_stem(sd), set()).add(key)
    index = model.index([sd for seeds in seeds_of.values() for sd in seeds])
    judged_all = sorted({m for _, judged in split.values() for m in judged})
    hits = index.query_table(judged_all + top)
    best: dict[str, dict[str, float]] = {f.key: {} for f in fams}
    for stem, name, sc in zip(hits.stem_names, hits.observed, model.score_hits(hits).tolist(), strict=True):
        for key in stem_fams.get(stem, ()):
            d = best[key]
            d[name] = max(d.get(name, 0.0), sc)
    topset = set(top)
    texts = {n: _text(n) for n in judged_all + top}
    out: dict[str, dict[str, object]] = {}
    for f in fams:
        known, judged = split[f.key]
        sc = best[f.key]
        neg_max = max((v for n, v in sc.items() if n in topset), default=0.0)
        anchors = {a for m in (f.seed, *known) for a in f.addresses.get(m, ())}
        strong = {a for m, v in sc.items() if v >= 0.5 and m not in topset for a in f.addresses.get(m, ())}
        sc_addr = dict(sc)
        for m in judged:
            addrs = set(f.addresses.get(m, ()))
            bonus = 0.9 if addrs & anchors else (0.7 if addrs & strong else 0.0)
            sc_addr[m] = max(sc_addr.get(m, 0.0), bonus)
        sub = substring_any([f.seed, *known], judged, texts)
        k_sub = 0 if substring_any([f.seed, *known], top, texts) else len(sub)
        n = max(len(judged), 1)
        k_name, _ = recall(judged, sc, neg_max)
        k_addr, _ = recall(judged, sc_addr, neg_max)
        out[f.key] = {
            "sib_known": len(known),
            "sib_judged": len(judged),
            "sib_name": k_name / n,
            "sib_name_ci": wilson(k_name, n),
            "sib_name+addr": k_addr / n,
            "sib_name+addr_ci": wilson(k_addr, n),
            "sib_substring": k_sub / n,
            "sib_top10k_max_score": round(neg_max, 3),
            "sib_top10k_names_0.5": sorted(x for x, v in sc.items() if x in topset and v >= 0.5),
        }
    return out


def popular_guard(
    model: NameModel, seed_groups: list[list[str]], top: list[str], popular: PopularList
) -> dict[str, dict[str, list[str]]]:
    """The stress test of the guard (module docstring) for a fold's families at once: every
    top-10k name on an address of its own that every family's seed also resolved to, with a
    certificate naming the seeds (and every other seed on the addresses of the top names that
    its name hits); then ``proposals_for`` at the default ``--propose-min-score``
    (0.8) and at 0.5.  Returns, per operating point, the top-10k names proposed without the
    guard (``unguarded``), with it (``proposed``), and refused by it."""
    main = [g[0] for g in seed_groups]
    seeds = [sd for g in seed_groups for sd in g]
    addrs = {n: {f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"} for i, n in enumerate(top)}
    every = {a for x in addrs.values() for a in x}
    certs = {n: {TrafficCert(f"CN={n}", "CN=stress CA", tuple(sorted({n, *main})))} for n in top}
    # the other seeds (decision siblings) share the addresses of the top names they hit by name:
    # for them, the rest would only add candidates with no name score (at most 0.616, see notes)
    by_stem: dict[str, set[str]] = {}
    for h in model.index(seeds).query(top):
        by_stem.setdefault(h.stem, set()).update(addrs[h.observed])
    seed_addr = {sd: by_stem.get(brand_stem(sd), set()) for sd in seeds} | dict.fromkeys(main, every)
    cands = find_candidates(seeds, addrs, model=model, seed_addresses=seed_addr, certs=certs)
    topset = set(top)
    out = {}
    for ms in (0.8, 0.5):
        bare = proposals_for(cands, min_score=ms)
        guarded = proposals_for(cands, min_score=ms, popular=popular)
        out[f"min_score {ms}"] = {
            "unguarded": sorted(p.indicator for p in bare.proposed if p.indicator in topset),
            "proposed": sorted(p.indicator for p in guarded.proposed if p.indicator in topset),
            "refused": sorted(r.domain for r in guarded.refused if r.domain in topset),
        }
    return out


def _text(name: str) -> str:
    parts = name_parts(name)
    return "".join(core(x) for x in (*parts.subdomains, parts.label))


def substring_any(seeds: list[str], names: list[str], texts: dict[str, str]) -> set[str]:
    """Baseline with several seeds: names containing any seed's stem (3+ letters)."""
    stems = {st for st in map(brand_stem, seeds) if len(st) >= 3}
    if not stems:
        return set()
    auto = ahocorasick.Automaton()
    for st in stems:
        auto.add_word(st, st)
    auto.make_automaton()
    return {n for n in names if next(auto.iter(texts[n]), None) is not None}


def recall(members: list[str], scores: dict[str, float], neg_max: float) -> tuple[int, int]:
    return sum(1 for m in members if scores.get(m, 0.0) > neg_max), len(members)


def substring_rule(seed: str, names: list[str]) -> set[str]:
    stem = brand_stem(seed)
    if len(stem) < 3:
        return set()
    out = set()
    for n in names:
        parts = name_parts(n)
        text = "".join(core(x) for x in (*parts.subdomains, parts.label))
        if stem in text:
            out.add(n)
    return out


def evaluate(shared: Path) -> dict[str, object]:
    t0 = time.perf_counter()
    fams, top, train_neg = load(shared)
    popular = load_popular(shared / TRANCO, top=TOP)
    guard: dict[str, dict[str, set[str]]] = {}
    folds = split_by_family(fams, 2)
    per_family: list[dict[str, object]] = []
    models = []
    leak_name: set[str] = set()
    for k in (0, 1):
        test, train = folds[k], folds[1 - k]
        model = NameModel().fit([f.seed for f in train], [f.others for f in train], train_neg)
        models.append(model.to_json())
        observed = sorted({m for f in test for m in f.others} | set(top))
        by_stem = scores_for(model, test, observed)
        topset = set(top)
        siblings = with_siblings(model, test, top)
        for protocol, groups in (
            ("one seed", [[f.seed] for f in test]),
            ("seed + siblings", [[f.seed, *sibling_split(f)[0]] for f in test]),
        ):
            for point, got in popular_guard(model, groups, top, popular).items():
                g = guard.setdefault(f"{protocol}, {point}", {})
                for k2, v2 in got.items():
                    g.setdefault(k2, set()).update(v2)
        for f in test:
            stem = brand_stem(f.seed)
            sc = by_stem.get(stem, {})
            neg = [s for n, s in sc.items() if n in topset]
            neg_max = max(neg, default=0.0)
            leak_name.update(n for n, s in sc.items() if n in topset and s >= 0.5)
            k_name, n = recall(f.others, sc, neg_max)
            sc_addr = with_addresses(f, sc)
            k_addr, _ = recall(f.others, sc_addr, neg_max)
            sub = substring_rule(f.seed, f.others + top)
            sub_fp = len(sub & topset)
            k_sub = 0 if sub_fp else len(sub & set(f.others))
            twist = set(fuzz_dnstwist(f.seed))
            tw_fp = len(twist & topset)
            k_tw = 0 if tw_fp else len(twist & set(f.others))
            sib = siblings[f.key]
            per_family.append(
                {
                    "fold": k,
                    "seed": f.seed,
                    "decision": f.decision,
                    "members": n,
                    "name": k_name / n,
                    "name_ci": wilson(k_name, n),
                    "name+addr": k_addr / n,
                    "name+addr_ci": wilson(k_addr, n),
                    "substring": k_sub / n,
                    "substring_flagged": len(sub & set(f.others)) / n,
                    "substring_top10k_fp": sub_fp,
                    "dnstwist": k_tw / n,
                    "dnstwist_top10k_fp": tw_fp,
                    "top10k_max_score": round(neg_max, 3),
                    **sib,
                }
            )
    cols = (
        "name", "name+addr", "substring", "substring_flagged", "dnstwist",
        "sib_name", "sib_name+addr", "sib_substring",
    )  # fmt: skip
    summary = {
        c: {
            "mean": float(np.mean([r[c] for r in per_family])),
            "mean_ci": mean_ci([float(r[c]) for r in per_family]),  # type: ignore[arg-type]
            "min": float(np.min([r[c] for r in per_family])),
            "families_below_50": sum(1 for r in per_family if float(r[c]) < 0.5),  # type: ignore[arg-type,misc]
        }
        for c in cols
    }
    return {
        "families": len(fams),
        "members": sum(len(f.others) for f in fams),
        "top10k": len(top),
        "train_negatives": len(train_neg),
        "summary": summary,
        "top10k_names_scoring_0.5_or_more": sorted(leak_name),
        "popular_guard": {p: {k: sorted(v) for k, v in g.items()} for p, g in guard.items()},
        "per_family": per_family,
        "models": models,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--write-model", action="store_true", help="fit on all families, write the shipped model")
    args = ap.parse_args()
    if not all((args.shared / d).exists() for d in (*DUMPS, TRANCO, RADAR)):
        print(f"skipped: the register dumps and top lists are not in {args.shared}", file=sys.stderr)
        sys.exit(0)
    res: dict[str, Any] = evaluate(args.shared)
    print(f"{res['families']} families, {res['members']} held-out members, {res['top10k']} top-10k names")
    head = ("seed", "n", "name", "95% CI", "+addr", "substr", "(flag)", "twist", "sib", "sib+a", "sibsub")
    print(f"{head[0]:<28} {head[1]:>4} {head[2]:>6} {head[3]:>13} " + " ".join(f"{h:>6}" for h in head[4:]))
    for r in sorted(res["per_family"], key=lambda r: r["name"]):
        lo, hi = r["name_ci"]
        print(
            f"{r['seed'][:28]:<28} {r['members']:>4} {r['name']:>6.1%} [{lo:>5.1%},{hi:>5.1%}] "
            f"{r['name+addr']:>6.1%} {r['substring']:>6.1%} "
            f"{r['substring_flagged']:>6.1%} {r['dnstwist']:>6.1%} "
            f"{r['sib_name']:>6.1%} {r['sib_name+addr']:>6.1%} {r['sib_substring']:>6.1%}"
        )
    for c, s in res["summary"].items():
        lo, hi = s["mean_ci"]
        print(
            f"{c:<18} mean {s['mean']:.1%} [{lo:.1%}, {hi:.1%}]  min {s['min']:.1%}  "
            f"families below 50%: {s['families_below_50']}"
        )
    print("top-10k names scoring >= 0.5 against a held-out seed:", res["top10k_names_scoring_0.5_or_more"])
    sib = sorted({n for r in res["per_family"] for n in r["sib_top10k_names_0.5"]})
    print("... against a seed and its decision siblings:", sib)
    print("popular guard (stress: every top-10k name on an address of the seed, certificate naming it):")
    guard: dict[str, dict[str, list[str]]] = res["popular_guard"]
    for protocol, g in guard.items():
        print(
            f"  {protocol}: top-10k names proposed: {len(g['proposed'])}; refused: {len(g['refused'])}; "
            f"proposed without the guard: {len(g['unguarded'])} {g['unguarded'][:8]}"
        )
    print(f"{res['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, ensure_ascii=False))
    if args.write_model:
        fams, _, train_neg = load(args.shared)
        model = NameModel().fit([f.seed for f in fams], [f.others for f in fams], train_neg)
        out = Path(__file__).resolve().parents[1] / "src/sluice/mirrors/name_model.json"
        model.save(out)
        print("wrote", out)


if __name__ == "__main__":
    main()
