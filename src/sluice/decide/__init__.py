"""The Decider: one decision path for the inline gateway, the dry runs and analysis.

* :mod:`~sluice.decide.stages`: the stages (``settled``, ``fingerprint``, ``final``, and the
  ``offline`` one) and the checkpoints of a connection;
* :mod:`~sluice.decide.register`: the one cached register lookup (entries and proposals);
* :mod:`~sluice.decide.decider`: :class:`Decider`, packets in, decisions out (sans-IO: no clock,
  no files, no sockets);
* :mod:`~sluice.decide.offline`: the whole-flow stage only an offline analysis has;
* :mod:`~sluice.decide.replay`: dry runs of captures through both (``sluice policy test``,
  ``sluice analyze --decisions``).

The gateway (:mod:`sluice.gateway.engine`) is a :class:`Decider` plus NFQUEUE marks, so a dry run
shows what enforcement would do.
"""

from __future__ import annotations

from sluice.decide.decider import DECIDED_CACHE, MAX_PENDING, Decider, DeciderStats, DecisionHook, Step
from sluice.decide.offline import OfflineStage
from sluice.decide.register import MATCH_CACHE, RegisterLookup, open_register
from sluice.decide.replay import replay_captures
from sluice.decide.stages import INLINE_STAGES, Stage, checkpoint, decide_after_for

__all__ = [
    "DECIDED_CACHE",
    "INLINE_STAGES",
    "MATCH_CACHE",
    "MAX_PENDING",
    "Decider",
    "DeciderStats",
    "DecisionHook",
    "OfflineStage",
    "RegisterLookup",
    "Stage",
    "Step",
    "checkpoint",
    "decide_after_for",
    "open_register",
    "replay_captures",
]
