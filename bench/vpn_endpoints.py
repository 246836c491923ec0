"""Distinct VPN server endpoints sluice finds vs nDPI, on nDPI's own captures.

    python bench/vpn_endpoints.py [--corpus ../shared/corpus/ndpi] [--no-model] [--json out.json]
                                  [--benign] [--only NAME ...] [--without RULE ...]

For every capture MANIFEST.tsv files under category ``vpn``, the flows are judged as ``sluice
analyze`` judges them (:func:`sluice.detect.service.analyze_captures`, the shipped model unless
``--no-model``), and two sets of **server endpoints** ``(address, port, proto)`` are compared:

* sluice's: the server side of every flow whose verdict class is ``vpn``, ``circumvention`` or
  ``tunnel``;
* nDPI's: both ends of every ``.out`` line whose protocol TAXONOMY.md maps to ``vpn`` — the
  server side is the one sluice's record of the same flow calls server (by the two endpoints and
  the transport), else the ``.out`` line's second endpoint (nDPI prints the client first).

Endpoints, not flows: one VPN server with twelve reconnects is one thing to block, and both
tools' flow boundaries differ (timeouts, retransmissions). ``--benign`` runs the same judging over
every capture *outside* ``vpn``/``tunnel``/``circumvention``/``proxy`` and lists the flows sluice
calls ``vpn``/``circumvention``/``tunnel`` where nDPI's class is ``benign``: false alarms, or
findings nDPI does not make, each to be looked at. ``--json`` writes both tables for a diff
between two runs; ``--without`` leaves fingerprint rules out, so the same code measures the
"before" of a rule change (``--without warp nebula ...``).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sluice.detect.combiner import Combiner
from sluice.detect.fingerprints import RULE_NAMES, FingerprintDetector
from sluice.detect.ndpi import NdpiFlow, read_ndpi_out
from sluice.detect.service import FlowVerdict, analyze_captures

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "ndpi"
FINDING_CLASSES = frozenset({"vpn", "circumvention", "tunnel"})
"""Verdict classes that count as sluice naming a VPN-like endpoint."""
NOT_BENIGN_CATEGORIES = frozenset({"vpn", "tunnel", "circumvention", "proxy"})
"""MANIFEST categories whose captures are about the traffic sluice looks for."""
_NDPI_ALIASES = frozenset({"PrivateInternetAccess"})
"""nDPI names TAXONOMY.md lists under another spelling (``PIA``)."""
_L4 = {"TCP": 6, "UDP": 17, "ICMP": 1, "ESP": 50, "AH": 51, "GRE": 47, "ICMPV6": 58}

Endpoint = tuple[str, int, int]
"""(server address, server port, IP protocol)."""


@dataclass
class CaptureRow:
    """One capture's endpoint sets."""

    name: str
    ndpi: set[Endpoint] = field(default_factory=set)
    sluice: set[Endpoint] = field(default_factory=set)
    families: dict[str, str] = field(default_factory=dict)
    """sluice endpoint (text) -> the verdicts' ``class/family`` there."""

    def to_dict(self) -> dict[str, object]:
        return {
            "ndpi": sorted(map(list, self.ndpi)),
            "sluice": sorted(map(list, self.sluice)),
            "families": self.families,
        }


def manifest(corpus: Path) -> dict[str, str]:
    """Capture file name -> MANIFEST category."""
    with (corpus / "MANIFEST.tsv").open(encoding="utf-8") as f:
        return {row["file"]: row["category"] for row in csv.DictReader(f, delimiter="\t")}


def _ep_text(ep: Endpoint) -> str:
    return f"{ep[0]}:{ep[1]}/{ep[2]}"


def _ndpi_server(flow: NdpiFlow, by_pair: dict[tuple[frozenset[tuple[str, int]], int], Endpoint]) -> Endpoint:
    proto = _L4.get(flow.l4.upper(), 0)
    got = by_pair.get((flow.endpoints, proto))
    if got is not None:
        return got
    return (flow.b[0], flow.b[1], proto)


def judge(paths: Iterable[Path], combiner: Combiner) -> dict[str, list[FlowVerdict]]:
    """Verdicts of every flow, by capture file name."""
    out: dict[str, list[FlowVerdict]] = {}
    for path in paths:
        result = analyze_captures([str(path)], combiner, workers=1)
        out[path.name] = result.flows
    return out


def endpoint_rows(corpus: Path, verdicts: dict[str, list[FlowVerdict]]) -> list[CaptureRow]:
    """Per capture: nDPI's and sluice's VPN server endpoints."""
    rows = []
    for name, flows in verdicts.items():
        row = CaptureRow(name)
        by_pair: dict[tuple[frozenset[tuple[str, int]], int], Endpoint] = {}
        for fv in flows:  # the first flow of a pair names its server (a pair split by a timeout
            r = fv.record  # may be seen the other way round the second time)
            pair = (frozenset({(r.client, r.client_port), (r.server, r.server_port)}), r.proto)
            by_pair.setdefault(pair, (r.server, r.server_port, r.proto))
        for fv in flows:
            r = fv.record
            server = by_pair[(frozenset({(r.client, r.client_port), (r.server, r.server_port)}), r.proto)]
            if fv.verdict.label in FINDING_CLASSES:
                row.sluice.add(server)
                fam = f"{fv.verdict.label}/{fv.verdict.family or '-'}"
                row.families.setdefault(_ep_text(server), fam)
        out_file = corpus / f"{name}.out"
        if out_file.exists():
            for flow in read_ndpi_out(out_file):
                if flow.label == "vpn" or _NDPI_ALIASES.intersection(re.split(r"[./:]", flow.proto)):
                    row.ndpi.add(_ndpi_server(flow, by_pair))
        rows.append(row)
    return rows


def benign_alarms(corpus: Path, verdicts: dict[str, list[FlowVerdict]]) -> list[dict[str, object]]:
    """Flows sluice flags where nDPI's class for the same flow is benign (or nDPI has no line)."""
    alarms: list[dict[str, object]] = []
    for name, flows in verdicts.items():
        out_file = corpus / f"{name}.out"
        peer = {}
        if out_file.exists():
            peer = {(f.endpoints, _L4.get(f.l4.upper(), 0)): f for f in read_ndpi_out(out_file)}
        for fv in flows:
            v, r = fv.verdict, fv.record
            if v.label not in FINDING_CLASSES:
                continue
            pair = frozenset({(r.client, r.client_port), (r.server, r.server_port)})
            f = peer.get((pair, r.proto))
            if f is not None and f.label != "benign":
                continue
            alarms.append(
                {
                    "capture": name,
                    "flow": f"{r.client}:{r.client_port} > {r.server}:{r.server_port}/{r.proto}",
                    "sluice": f"{v.label}/{v.family or '-'}",
                    "detector": v.detector,
                    "evidence": v.evidence[0].code if v.evidence else "",
                    "ndpi": f.proto if f is not None else "(no line)",
                }
            )
    return alarms


def print_table(rows: list[CaptureRow]) -> None:
    """The per-capture table and the totals."""
    print(f"{'capture':32} {'nDPI':>5} {'sluice':>6} {'both':>5} {'nDPI only':>9} {'sluice only':>11}")
    tot = [0, 0, 0, 0, 0]
    for row in sorted(rows, key=lambda r: r.name):
        both = row.ndpi & row.sluice
        vals = [len(row.ndpi), len(row.sluice), len(both), len(row.ndpi - both), len(row.sluice - both)]
        tot = [a + b for a, b in zip(tot, vals, strict=True)]
        print(f"{row.name:32} {vals[0]:5} {vals[1]:6} {vals[2]:5} {vals[3]:9} {vals[4]:11}")
        for ep in sorted(row.ndpi - both):
            print(f"{'':34}nDPI only:   {_ep_text(ep)}")
        for ep in sorted(row.sluice - both):
            print(f"{'':34}sluice only: {_ep_text(ep)} ({row.families.get(_ep_text(ep), '')})")
    print(f"{'TOTAL':32} {tot[0]:5} {tot[1]:6} {tot[2]:5} {tot[3]:9} {tot[4]:11}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--no-model", action="store_true", help="layers 1-2 only (fingerprints and FET)")
    ap.add_argument("--benign", action="store_true", help="also count alarms on the other captures")
    ap.add_argument("--only", nargs="*", default=None, help="capture names to run (default: all vpn)")
    ap.add_argument("--without", nargs="*", default=(), help="fingerprint rules to leave out (a 'before')")
    ap.add_argument("--json", type=Path, default=None, help="write the tables to this file")
    args = ap.parse_args(argv)
    if not (args.corpus / "MANIFEST.tsv").exists():
        print(f"no corpus at {args.corpus}", file=sys.stderr)
        return 3
    unknown = set(args.without) - set(RULE_NAMES)
    if unknown:
        print(f"unknown rules {sorted(unknown)}; known: {list(RULE_NAMES)}", file=sys.stderr)
        return 2
    fingerprints = FingerprintDetector(rules=tuple(n for n in RULE_NAMES if n not in args.without))
    if args.no_model:
        combiner = Combiner(None, fingerprints=fingerprints)
    else:
        from sluice.detect.model import DEFAULT_MODEL_DIR, ModelScorer, load_model

        combiner = Combiner(ModelScorer(load_model(DEFAULT_MODEL_DIR)[0]), fingerprints=fingerprints)
    cats = manifest(args.corpus)
    vpn = [args.corpus / n for n, c in sorted(cats.items()) if c == "vpn" and (args.corpus / n).exists()]
    if args.only:
        vpn = [p for p in vpn if p.name in args.only]
    rows = endpoint_rows(args.corpus, judge(vpn, combiner))
    print_table(rows)
    report: dict[str, object] = {"endpoints": {r.name: r.to_dict() for r in rows}}
    if args.benign:
        others = [
            args.corpus / n
            for n, c in sorted(cats.items())
            if c not in NOT_BENIGN_CATEGORIES and (args.corpus / n).exists()
        ]
        alarms = benign_alarms(args.corpus, judge(others, combiner))
        print(
            f"\nflows flagged vpn/circumvention/tunnel in {len(others)} other captures"
            " where nDPI says benign:"
        )
        for a in alarms:
            print(f"  {a['capture']:34} {a['flow']:52} {a['sluice']:28} {a['evidence']:28} nDPI {a['ndpi']}")
        print(f"TOTAL {len(alarms)}")
        report["benign_alarms"] = alarms
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
