"""How many labeled flows of the crypto lab sessions sluice's fingerprints name right (issue 17).

For every flow of a session's capture (``sluice.batch.flows.batch_flows``) that the label file
labels, the strongest fingerprint match (``sluice.detect.fingerprints.match_record``) is compared
with the label:

* **right**: class ``crypto`` and the label's family;
* **right (protocol)**: a Litecoin flow on regtest named ``bitcoin`` by the Bitcoin-protocol rule
  *with* its ``bitcoin.regtest_magic`` evidence. Regtest's network magic ``fabfb5da`` is the same
  in Bitcoin, Litecoin and Dogecoin, and the version message's user agent (byte 105 on) is
  beyond the bytes a flow record keeps, so the framing cannot name the coin there; the
  ``testnet`` variant, with Litecoin's own magic, is where the family itself is checked.

``python -m sluice.lab.crypto_eval DIR`` prints per-scenario and per-variant counts as JSON.
"""

from __future__ import annotations

__all__ = ["FlowResult", "evaluate_session", "summarize"]

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sluice.batch.flows import batch_flows
from sluice.detect.fingerprints import match_record
from sluice.lab.labels import LABEL_SUFFIX, LabelIndex, load_label_file, load_labels


@dataclass(frozen=True, slots=True)
class FlowResult:
    """One labeled flow and what the fingerprints said."""

    scenario: str
    variant: str
    session: str
    family: str
    """The label's family."""
    carrier: str
    """The scenario rule that labeled the flow (``rlpx``, ``discv4`` …)."""
    rule: str
    """Strongest rule that fired ('' for none)."""
    named: str
    """``class/family`` it named ('' for none)."""
    right: bool
    """Class crypto and the label's family."""
    right_protocol: bool
    """Right, or the regtest-magic case (see the module doc)."""


def evaluate_session(labels_path: Path) -> list[FlowResult]:
    """Fingerprint results for every labeled flow of one session."""
    doc = load_label_file(labels_path)
    index = LabelIndex(load_labels(labels_path))
    pcap = labels_path.with_name(labels_path.name.removesuffix(LABEL_SUFFIX) + ".pcap")
    out: list[FlowResult] = []
    for rec in batch_flows(str(pcap)).records:
        lab = index.get((rec.proto, rec.client, rec.client_port, rec.server, rec.server_port))
        if lab is None:
            continue
        matches = match_record(rec)
        top = matches[0] if matches else None
        right = top is not None and top.label == "crypto" and top.family == lab.family
        regtest = (
            top is not None
            and lab.family == "litecoin"
            and top.rule == "bitcoin-p2p"
            and top.family == "bitcoin"
            and any(e.code == "bitcoin.regtest_magic" for e in top.evidence)
        )
        out.append(
            FlowResult(
                scenario=str(doc["scenario"]),
                variant=str(doc["variant"]),
                session=str(doc["session_id"]),
                family=lab.family,
                carrier=lab.rule,
                rule=top.rule if top else "",
                named=f"{top.label}/{top.family}" if top else "",
                right=right,
                right_protocol=right or regtest,
            )
        )
    return out


def summarize(
    results: Iterable[FlowResult],
) -> dict[str, dict[str, int | float | dict[str, int] | dict[str, str]]]:
    """Counts by ``scenario:variant``: flows, right, right (protocol), recall, what was named."""
    by: dict[str, list[FlowResult]] = {}
    for r in results:
        by.setdefault(f"{r.scenario}:{r.variant}", []).append(r)
    out: dict[str, dict[str, int | float | dict[str, int] | dict[str, str]]] = {}
    for key, rs in sorted(by.items()):
        named: dict[str, int] = {}
        for r in rs:
            named[r.named or "none"] = named.get(r.named or "none", 0) + 1
        right = sum(r.right for r in rs)
        proto = sum(r.right_protocol for r in rs)
        carriers: dict[str, int] = {}
        for r in rs:
            carriers[r.carrier] = carriers.get(r.carrier, 0) + 1
        by_carrier = {c: sum(r.right for r in rs if r.carrier == c) for c in sorted(carriers)}
        out[key] = {
            "sessions": len({r.session for r in rs}),
            "flows": len(rs),
            "right": right,
            "right_protocol": proto,
            "recall": round(right / len(rs), 4),
            "recall_protocol": round(proto / len(rs), 4),
            "named": named,
            "right_by_rule": {c: f"{by_carrier[c]}/{carriers[c]}" for c in sorted(carriers)},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results: list[FlowResult] = []
    for d in args:
        for f in sorted(Path(d).rglob(f"*{LABEL_SUFFIX}")):
            results += evaluate_session(f)
    print(json.dumps(summarize(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
