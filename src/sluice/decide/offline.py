"""The offline stage: a whole flow judged once it ended, what no inline gateway can decide.

Theory of operation: the inline stages (:class:`~sluice.decide.stages.Stage`) see a connection's
first packets. Some verdicts need more: counters over the whole flow (SSH port forwarding told
from a terminal by volume), the shape after a TLS handshake (bursts up to packet 31), or a flow
too short to reach any inline checkpoint. :class:`OfflineStage` judges each *final* record (and
its early record, as ``sluice analyze`` does) with the combiner and decides it with the policy,
stage ``offline``, at the flow's last packet. Records are judged in batches of
:data:`BATCH_FLOWS` so the model predicts many rows at once.
"""

from __future__ import annotations

__all__ = ["BATCH_FLOWS", "OfflineStage"]

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from sluice.decide.register import RegisterLookup
from sluice.decide.stages import Stage
from sluice.detect.combiner import Combiner
from sluice.detect.verdict import Verdict
from sluice.flows.record import FlowRecord
from sluice.policy.model import Decision, Policy

if TYPE_CHECKING:
    from sluice.registry.matcher import Match

BATCH_FLOWS = 2048
"""Ended flows judged together."""


class OfflineStage:
    """Whole-flow decisions of ended flows, in the order they ended.

    Args:
        policy: the policy.
        combiner: the detectors.
        register: the register lookup (None: no matches).
        capture: recorded in every decision.
    """

    def __init__(
        self, policy: Policy, combiner: Combiner, register: RegisterLookup | None = None, *, capture: str = ""
    ) -> None:
        self.policy = policy
        self.combiner = combiner
        self.register = register
        self.capture = capture
        self._early: dict[int, FlowRecord] = {}
        self._pending: list[FlowRecord] = []

    def add(self, rec: FlowRecord) -> Iterator[tuple[FlowRecord, Verdict, Decision]]:
        """Take one record (early records wait for their final one); yields what got judged."""
        if rec.early:
            self._early[rec.flow_id] = rec
            return
        self._pending.append(rec)
        if len(self._pending) >= BATCH_FLOWS:
            yield from self.flush()

    def flush(self) -> Iterator[tuple[FlowRecord, Verdict, Decision]]:
        """Judge and decide every final record taken so far."""
        finals, self._pending = self._pending, []
        if not finals:
            return
        early = [e for r in finals if (e := self._early.pop(r.flow_id, None)) is not None]
        for rec, verdict in self.combiner.judge_all(early + finals):
            matches = self.register.for_flow(rec) if self.register is not None else []
            yield rec, verdict, self.decide(rec, verdict, matches)

    def decide(self, rec: FlowRecord, verdict: Verdict, matches: Sequence[Match]) -> Decision:
        """The whole flow's decision (a dry run: nothing enforced)."""
        return self.policy.decide(
            rec,
            verdict,
            matches,
            now=rec.first_ts,
            dry_run=True,
            capture=self.capture,
            stage=Stage.OFFLINE.value,
            decided_at=rec.packets - 1,
        )
