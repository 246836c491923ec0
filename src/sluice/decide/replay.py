"""Dry runs: captures replayed packet by packet through the Decider, on the capture's clock.

Theory of operation: :func:`replay_captures` feeds every packet of a capture to two consumers:

* a :class:`~sluice.decide.decider.Decider` set up as the gateway sets up its own (same flow
  table limits, same ``decide_after``, same register lookup and detectors): its decisions are
  what ``sluice gateway run`` would have decided, packet for packet;
* the spine's :class:`~sluice.flows.loop.PacketLoop` with the flow configuration of ``sluice
  flows``, whose final records go to the :class:`~sluice.decide.offline.OfflineStage`: the whole
  flow judged and decided once it ended, as ``sluice analyze`` judges it.

A packet the Decider decides on belongs to one flow of the loop, which joins the two: each flow
gets the gateway's decision (the first one made on its packets, or the one its packets were
marked by; None when none was) and the offline one, both with the loop's flow id (as ``sluice
flows`` and ``sluice analyze`` number flows). Nothing is enforced: every decision says ``enforced`` False.
"""

from __future__ import annotations

__all__ = ["replay_captures"]

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from sluice.decide.decider import Decider, DecisionHook
from sluice.decide.offline import OfflineStage
from sluice.decide.register import RegisterLookup
from sluice.detect.combiner import Combiner
from sluice.features.flow import EARLY_PACKETS
from sluice.flows.loop import PacketLoop
from sluice.flows.record import FlowRecord
from sluice.flows.table import FlowConfig
from sluice.io.capture import open_capture
from sluice.policy.model import Decision, Policy
from sluice.policy.replay import FlowOutcome, ReplayResult, count_rules

if TYPE_CHECKING:
    from sluice.detect.verdict import Verdict
    from sluice.registry.matcher import Match, Matcher


def replay_captures(
    policy: Policy,
    paths: Sequence[str],
    combiner: Combiner,
    *,
    register: RegisterLookup | Matcher | None = None,
    decide_after: int = EARLY_PACKETS,
    config: FlowConfig | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> ReplayResult:
    """What the gateway would decide on every flow of some captures, and the whole flows' decisions.

    Args:
        policy: the policy to try.
        paths: capture files.
        combiner: the detectors.
        register: the register (None: no flow has register matches).
        decide_after: the gateway's final checkpoint (as ``gateway run`` derives it from
            ``--packets``: :func:`~sluice.decide.stages.decide_after_for`).
        config: flow tracking of the offline stage (default: as ``sluice flows``).
        progress: called with (captures done, the next capture) before each capture (a progress
            bar).

    Returns:
        Decisions (``enforced`` is False for all: a dry run), flows and counts.

    Raises:
        CaptureError: a capture cannot be read.
    """
    lookup = (
        register if register is None or isinstance(register, RegisterLookup) else RegisterLookup(register)
    )
    res = ReplayResult()
    matched: Counter[int] = Counter()

    def count(rec: FlowRecord, verdict: Verdict | None, matches: list[Match], _d: Decision) -> None:
        matched.update(policy.matching_rules(rec, verdict, matches))

    for i, path in enumerate(paths):
        if progress is not None:
            progress(i, path)
        _replay_one(path, policy, combiner, lookup, decide_after, config or FlowConfig(), count, res)
    undecided = sum(1 for o in res.outcomes if o.inline is None)
    res.rules, res.by_action, res.by_stage = count_rules(policy, res.decisions, matched, undecided)
    return res


def _replay_one(
    path: str,
    policy: Policy,
    combiner: Combiner,
    lookup: RegisterLookup | None,
    decide_after: int,
    config: FlowConfig,
    count: DecisionHook,
    res: ReplayResult,
) -> None:
    name = os.path.basename(path)
    t0 = time.perf_counter()
    first = len(res.outcomes)
    decider = Decider(
        policy,
        lookup,
        combiner=combiner,
        decide_after=decide_after,
        capture=name,
        dry_run=True,
        on_decision=count,
    )
    loop = PacketLoop(config)
    offline = OfflineStage(policy, combiner, lookup, capture=name)
    inline: dict[int, Decision] = {}
    out: list[FlowRecord] = []
    early_at = config.early_packets

    def ended() -> None:
        for rec in out:
            for judged in offline.add(rec):
                _outcome(name, judged, inline, res)
        out.clear()

    with open_capture(path) as reader:
        for raw in reader:
            step = decider.step(raw)
            got = loop.step(raw, out)
            if got is not None:
                st = got[1]
                if st.count == early_at:  # as PacketLoop.process: the early record
                    out.append(st.record(True, "early"))
                    loop.summary.early_records += 1
                if step is not None and step.decision is not None:
                    d = replace(step.decision, flow_id=st.flow_id)  # ids as `sluice flows` has them
                    res.decisions.append(d)
                    inline.setdefault(st.flow_id, d)
                elif step is not None and step.earlier is not None and st.flow_id not in inline:
                    # marked by a decision made on an earlier flow with the same addresses and ports
                    inline[st.flow_id] = replace(step.earlier, flow_id=st.flow_id)
            if out:
                ended()
        loop.finish(out)
        loop.summary.merge_counts(reader.stats.anomalies)
    ended()
    for judged in offline.flush():
        _outcome(name, judged, inline, res)
    res.outcomes[first:] = sorted(res.outcomes[first:], key=lambda o: o.record.flow_id)
    res.runs[path] = {
        **loop.summary.to_dict(),
        "decisions": decider.stats.decisions,
        "seconds": round(time.perf_counter() - t0, 4),
    }


def _outcome(
    capture: str, judged: tuple[FlowRecord, Verdict, Decision], inline: dict[int, Decision], res: ReplayResult
) -> None:
    rec, verdict, off = judged
    res.outcomes.append(FlowOutcome(capture, rec, verdict, inline.pop(rec.flow_id, None), off))
