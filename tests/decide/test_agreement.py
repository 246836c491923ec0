"""The gateway and the dry run decide alike: the same decision per flow, packet for packet.

Every lab excerpt (``tests/detect/data/lab``: real programs in namespaces) and every capture of
nDPI's corpus (``../shared``) is fed to the inline gateway's engine (``GatewayEngine.handle``, as
the kernel would queue them, the capture's times) and replayed by ``sluice policy test``'s
service (:func:`sluice.decide.replay_captures`), under the shipped policy and under a policy of
class and family rules, with a register. Each decision must be the same in both: action, rule,
mode, class and family, stage and the packet it was made on. What only the whole flow decides
(the offline stage) is counted apart and never counted as agreement.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from sluice.decide import RegisterLookup, decide_after_for, replay_captures
from sluice.detect.combiner import Combiner
from sluice.detect.model import DEFAULT_MODEL_DIR, ModelScorer, load_model
from sluice.gateway.engine import GatewayEngine
from sluice.gateway.rules import DEFAULT_PACKETS
from sluice.io.capture import open_capture
from sluice.policy import Decision, Policy, default_policy, parse_policy
from sluice.registry import Matcher
from tests.corpus.ndpi_out import NDPI
from tests.detect.conftest import LAB, lab_index

CLASSES = """
[[rule]]
name = "wireguard-block"
class = ["vpn"]
family = ["wireguard"]
action = "block"

[[rule]]
name = "proxy-reset"
class = ["proxy"]
action = "reset"

[[rule]]
name = "register-block"
register = true
action = "block"

[[rule]]
name = "tls-names-shadow"
app = ["tls", "quic"]
host = ["*.google.com", "*.facebook.com"]
action = "block"
mode = "shadow"

[[rule]]
name = "findings-log"
class = ["vpn", "tunnel", "circumvention"]
min_confidence = 0.5
action = "log"
"""
DECIDE_AFTER = decide_after_for(DEFAULT_PACKETS)


@cache
def _model_combiner() -> Combiner:
    fitted, _ = load_model(DEFAULT_MODEL_DIR)
    return Combiner(ModelScorer(fitted))


@cache
def _policies() -> dict[str, Policy]:
    return {"default": default_policy(), "classes": parse_policy(CLASSES, "<classes>")}


@cache
def _register() -> RegisterLookup:
    """Names and addresses the captures reach (so register rules decide some flows)."""
    rows = [
        ("test", "domain-mask", "google.com", "[]"),
        ("test", "domain", "www.facebook.com", "[]"),
        ("test", "subnet", "10.0.0.0/8", "[]"),
        ("test", "ip", "8.8.8.8", "[]"),
        ("test", "subnet", "203.0.113.0/28", "[]"),
    ]
    return RegisterLookup(Matcher(rows))


Key = tuple[str, float]
Seen = tuple[str, str, str, str, str, str, int, tuple[str, ...]]


def _seen(d: Decision) -> Seen:
    return (
        d.action.value,
        d.rule,
        d.mode.value,
        d.verdict_class,
        d.family,
        d.stage,
        d.decided_at,
        tuple(r.indicator for r in d.register),
    )


def _gateway(path: Path, policy: Policy, combiner: Combiner) -> dict[Key, Seen]:
    eng = GatewayEngine(policy, _register(), None, detector=combiner, decide_after=DECIDE_AFTER)
    out: dict[Key, Seen] = {}
    with open_capture(path) as cap:
        for raw in cap:
            v = eng.handle(bytes(raw.data), raw.linktype, raw.ts)
            if v.decision is not None:
                out[(v.decision.flow_key, v.decision.time)] = _seen(v.decision)
    return out


def _agree(paths: list[Path], policy_name: str, combiner: Combiner) -> Counter[str]:
    policy = _policies()[policy_name]
    counts: Counter[str] = Counter()
    for path in paths:
        inline = _gateway(path, policy, combiner)
        res = replay_captures(policy, [str(path)], combiner, register=_register(), decide_after=DECIDE_AFTER)
        dry = {(d.flow_key, d.time): _seen(d) for d in res.decisions}
        assert not any(d.enforced for d in res.decisions)
        assert dry == inline, f"{path.name} under {policy_name}: the dry run and the gateway differ"
        made = {(d.flow_key, d.time) for d in res.decisions}
        assert {(o.inline.flow_key, o.inline.time) for o in res.outcomes if o.inline is not None} <= made
        counts["captures"] += 1
        counts["flows"] += len(res.outcomes)
        counts["decisions"] += len(inline)
        counts["undecided"] += sum(1 for o in res.outcomes if o.inline is None)
        for o in res.offline_only:
            counts["offline_only"] += 1
            if o.inline is None:
                counts[f"offline_only:undecided->{o.offline.rule}"] += 1
            else:
                counts[f"offline_only:{o.inline.rule}->{o.offline.rule}"] += 1
        for st in (s[5] for s in inline.values()):
            counts[f"stage:{st}"] += 1
        counts["non_default"] += sum(1 for s in inline.values() if s[1] != "(default)")
    return counts


@pytest.mark.parametrize("policy_name", ["default", "classes"])
def test_lab_captures_gateway_and_dry_run_agree(policy_name: str) -> None:
    paths = [LAB / f"{s}.pcap" for s in sorted(lab_index())]
    counts = _agree(paths, policy_name, _model_combiner())
    print(policy_name, dict(counts))
    assert counts["captures"] == len(lab_index()) and counts["decisions"] > 0
    assert counts["non_default"] > 0  # rules decided some flows, not only the default
    assert counts["stage:fingerprint"] > 0 and counts["stage:final"] > 0


@pytest.mark.corpus
@pytest.mark.parametrize("policy_name", ["default", "classes"])
def test_ndpi_corpus_gateway_and_dry_run_agree(policy_name: str) -> None:
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing (the nDPI corpus)")
    paths = sorted(p for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng"))
    counts = _agree(paths, policy_name, _model_combiner())
    print(policy_name, dict(counts))
    assert counts["captures"] == len(paths) and counts["decisions"] > 500
    assert counts["stage:fingerprint"] > 0 and counts["stage:final"] > 0
    # a rule reading verdicts comes first in "classes": nothing is settled by name there
    assert (counts["stage:settled"] > 0) == (policy_name == "default")
