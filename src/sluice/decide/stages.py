"""The stages of the decision path, and when a connection reaches its checkpoints.

Theory of operation: the inline gateway must decide a connection on its first packets, and a dry
run must decide it on the same packets to show what the gateway would do. A connection is looked
at on a packet that is a **checkpoint** (:func:`checkpoint`):

* the first payload of either direction: names (TLS/QUIC SNI, HTTP Host, DNS query) and the
  layers 1-2 (fingerprints, fully-encrypted test) are found there;
* the **final** checkpoint: ``decide_after`` packets seen, the connection ending (TCP FIN/RST),
  or a DNS question with its answer (nothing more will come).

What is decided where is named by :class:`Stage`: ``settled`` (no verdict could change the
policy's answer), ``fingerprint`` (a fingerprint finding on a first payload), ``final`` (every
layer, the model included, at the final checkpoint). The ``offline`` stage is not inline at all:
it judges the whole flow once it ended (counters by volume, the packets past the gateway's
window) and is what only an offline analysis can say.
"""

from __future__ import annotations

__all__ = ["INLINE_STAGES", "Stage", "checkpoint", "decide_after_for"]

import enum

from sluice.features.flow import EARLY_PACKETS
from sluice.flows.table import FlowState
from sluice.wire.packet import Packet
from sluice.wire.transport import TcpFlags

_ENDING = TcpFlags.FIN | TcpFlags.RST


class Stage(enum.StrEnum):
    """Where in the decision path a decision was made (public output: ``Decision.stage``)."""

    SETTLED = "settled"
    """The name or the exhausted inspectors settle the policy's answer; no verdict needed."""
    FINGERPRINT = "fingerprint"
    """A fingerprint finding on a first payload."""
    FINAL = "final"
    """Every layer at the final checkpoint (N packets, FIN/RST, DNS answer)."""
    OFFLINE = "offline"
    """The whole flow, after it ended: not something an inline gateway can decide."""


INLINE_STAGES = (Stage.SETTLED, Stage.FINGERPRINT, Stage.FINAL)
"""The stages the inline gateway decides at."""


def decide_after_for(queued_packets: int) -> int:
    """The ``decide_after`` of a gateway the kernel queues ``queued_packets`` of each connection to.

    Two packets are kept in hand (the decision must be set before the kernel stops queueing), and
    no more than the model's features read (:data:`~sluice.features.flow.EARLY_PACKETS`).
    """
    return max(1, min(queued_packets - 2, EARLY_PACKETS))


def checkpoint(st: FlowState, d: int, pkt: Packet, decide_after: int) -> tuple[bool, bool] | None:
    """Whether this packet is a checkpoint of its connection: ``(final, named)``, else None.

    Args:
        st: the connection's state, this packet accounted.
        d: the packet's direction (0: client to server).
        pkt: the packet.
        decide_after: the final checkpoint's packet count.

    Returns:
        None when nothing can be decided on this packet; else whether it is the final checkpoint
        and whether the server name is known (or the inspectors have nothing more to find).
    """
    insp = st.inspector
    meta = insp.meta if insp is not None else None
    final = st.count >= decide_after or bool(pkt.tcp_flags & _ENDING)
    if meta is not None and meta.app == "dns" and st.packets[1] and st.packets[0]:
        final = True  # a DNS question and its answer: nothing more will come
    # the first payload of either direction: where names and the layers 1-2 are found
    first_payload = bool(pkt.payload) and st.payload_bytes[d] == len(pkt.payload)
    if not (final or first_payload):
        return None
    named = (meta is not None and bool(meta.server_name)) or (insp is not None and insp.done)
    return final, named
