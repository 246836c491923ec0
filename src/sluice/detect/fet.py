"""Layer 2: the fully-encrypted test (FET) the Great Firewall applies, as one detector.

Theory of operation: Wu et al., "How the Great Firewall of China Detects and Blocks Fully
Encrypted Traffic" (USENIX Security 2023), §4 and Algorithm 1. The GFW looks at the first data
packet a client sends on a TCP connection and lets the connection be (*exempts* it) when any of
these holds:

* **Ex1** the average number of set bits per byte is <= 3.4 or >= 4.6 (random bytes average 4);
* **Ex2** the first 6 bytes are printable ASCII (0x20–0x7e);
* **Ex3** more than 50 % of the bytes are printable;
* **Ex4** more than 20 contiguous bytes are printable;
* **Ex5** the payload starts like TLS (``[16-17] 03 [00-09]``) or HTTP (a method and a space).

A payload no exemption covers is *fully encrypted*. sluice applies the test to the record's
first client payload: Ex2, Ex4, Ex5 and Ex1 read the first 64 bytes kept in ``c2s_head`` (Ex1 is
then an estimate: for random data its standard error is 0.18 bits, so about 0.07 % of truly random
payloads longer than 64 bytes are exempted by chance); Ex3 uses the record's printable fraction of
the whole payload, which also counts TAB/CR/LF as printable. The GFW only ever blocked a sample
(about 26 %) of such connections and only to some destinations; this detector applies the rule
to every flow, which is what its false positives are measured against.
"""

from __future__ import annotations

__all__ = ["FET_VERSION", "FetDetector", "FetResult", "fet_test"]

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from sluice.detect._base import check_is_fitted, constructor_params
from sluice.detect.verdict import Evidence, Verdict, flow_key_text
from sluice.errors import ConfigError
from sluice.features.view import FlowView
from sluice.flows.record import FlowRecord

FET_VERSION = "1"
"""Version of this implementation of the test."""

_TLS = re.compile(rb"^[\x16\x17]\x03[\x00-\x09]")
_HTTP = re.compile(rb"^(GET|PUT|POST|HEAD|DELETE|OPTIONS|PATCH|CONNECT|TRACE) ")


_PRINTABLE_BYTES = bytes(range(0x20, 0x7F))


_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]+")


def _longest_printable_run(data: bytes) -> int:
    return max((len(m) for m in _PRINTABLE_RUN.findall(data)), default=0)


@dataclass(frozen=True, slots=True)
class FetResult:
    """The test's result on one first payload."""

    applicable: bool
    """False when the flow has no client payload (or is not of a tested transport)."""
    fully_encrypted: bool
    """True when no exemption holds."""
    popcount: float
    """Average set bits per byte (of the bytes kept)."""
    first_printable: bool
    """Ex2: the first bytes are printable."""
    printable_fraction: float
    """Ex3's input: fraction of printable bytes of the whole payload."""
    printable_run: int
    """Ex4's input: longest run of printable bytes (of the bytes kept)."""
    protocol: str
    """Ex5: ``tls`` or ``http`` when the payload starts like one, else empty."""
    exemptions: tuple[str, ...]
    """The exemptions that hold (``ex1`` … ``ex5``)."""


_NOT_TESTED = FetResult(False, False, 0.0, False, 0.0, 0, "", ())
"""The result of every flow the test does not apply to (one object: results are immutable)."""


def fet_test(
    rec: FlowRecord,
    *,
    view: FlowView | None = None,
    popcount_low: float = 3.4,
    popcount_high: float = 4.6,
    prefix_len: int = 6,
    printable_fraction: float = 0.5,
    printable_run: int = 20,
    transports: tuple[int, ...] = (6,),
    require_handshake: bool = True,
) -> FetResult:
    """Run the fully-encrypted test on a record's first client payload.

    With ``require_handshake`` a TCP flow is tested only when its client's SYN was seen (as the
    GFW does): a capture that starts mid-connection has no *first* payload to test.
    """
    head = (view or FlowView(rec)).head(0)
    if rec.proto not in transports or not head:
        return _NOT_TESTED
    if require_handshake and rec.proto == 6 and not rec.c2s_tcp_flags & 0x02:
        return _NOT_TESTED
    # the mean of the bytes' popcounts: an exact integer sum over the length, rounded once
    # (as numpy's mean of the per-byte table gives; the sum is exact in float64 there too)
    pop = int.from_bytes(head, "big").bit_count() / len(head)
    # all bytes of the prefix printable: deleting the printable ones leaves nothing
    first = len(head) >= prefix_len and not head[:prefix_len].translate(None, _PRINTABLE_BYTES)
    frac = rec.c2s_printable if rec.c2s_printable >= 0 else 0.0
    run = _longest_printable_run(head)
    proto = "tls" if _TLS.match(head) else "http" if _HTTP.match(head) else ""
    ex = []
    if pop <= popcount_low or pop >= popcount_high:
        ex.append("ex1")
    if first:
        ex.append("ex2")
    if frac > printable_fraction:
        ex.append("ex3")
    if run > printable_run:
        ex.append("ex4")
    if proto:
        ex.append("ex5")
    return FetResult(True, not ex, pop, first, frac, run, proto, tuple(ex))


class FetDetector:
    """The fully-encrypted test as a detector (fit/score_samples/decision_function/predict/explain).

    Args:
        popcount_low: Ex1 lower bound (bits per byte).
        popcount_high: Ex1 upper bound.
        prefix_len: Ex2's number of leading bytes.
        printable_fraction: Ex3's fraction.
        printable_run: Ex4's run length.
        transports: IP protocols tested (the GFW: TCP only).
        require_handshake: test TCP flows only when the client's SYN was seen.
        confidence: confidence of a fully-encrypted verdict (the test alone names no family).
    """

    name = "fet"

    def __init__(
        self,
        *,
        popcount_low: float = 3.4,
        popcount_high: float = 4.6,
        prefix_len: int = 6,
        printable_fraction: float = 0.5,
        printable_run: int = 20,
        transports: tuple[int, ...] = (6,),
        require_handshake: bool = True,
        confidence: float = 0.6,
    ) -> None:
        self.popcount_low = popcount_low
        self.popcount_high = popcount_high
        self.prefix_len = prefix_len
        self.printable_fraction = printable_fraction
        self.printable_run = printable_run
        self.transports = transports
        self.require_handshake = require_handshake
        self.confidence = confidence

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments."""
        return constructor_params(self)

    def fit(self, X: Sequence[FlowRecord] | None = None, y: object = None) -> Self:
        """Check the parameters (the test learns nothing).

        Raises:
            ConfigError: bounds out of order or out of range.
        """
        if not 0 <= self.popcount_low < 4 < self.popcount_high <= 8:
            raise ConfigError("fet.popcount", "need 0 <= popcount_low < 4 < popcount_high <= 8")
        if not 0 < self.printable_fraction < 1 or self.prefix_len < 1 or self.printable_run < 1:
            raise ConfigError("fet.printable", "fractions in (0, 1), lengths >= 1")
        if not 0 < self.confidence <= 1:
            raise ConfigError("fet.confidence", f"{self.confidence} is not in (0, 1]")
        self.threshold_: float | None = 0.5
        return self

    def result(self, rec: FlowRecord, view: FlowView | None = None) -> FetResult:
        """The test on one record (``view``: its view, when already built)."""
        check_is_fitted(self, "threshold_")
        return fet_test(
            rec,
            view=view,
            popcount_low=self.popcount_low,
            popcount_high=self.popcount_high,
            prefix_len=self.prefix_len,
            printable_fraction=self.printable_fraction,
            printable_run=self.printable_run,
            transports=self.transports,
            require_handshake=self.require_handshake,
        )

    def score_samples(self, X: Sequence[FlowRecord]) -> npt.NDArray[np.float64]:
        """1.0 for fully encrypted, 0.0 otherwise; shape ``(n,)``."""
        return np.array([float(self.result(r).fully_encrypted) for r in X])

    def decision_function(self, X: Sequence[FlowRecord]) -> npt.NDArray[np.float64]:
        """Score minus ``threshold_`` (0.5), shape ``(n,)``."""
        check_is_fitted(self, "threshold_")
        assert self.threshold_ is not None
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Sequence[FlowRecord]) -> npt.NDArray[np.str_]:
        """``circumvention`` for fully-encrypted flows, ``unknown`` otherwise."""
        return np.array([v.label for v in self.explain(X)], dtype=np.str_)

    def evidence(self, res: FetResult, packet: int) -> tuple[Evidence, ...]:
        """The test's evidence: every exemption with its observed value."""
        lo, hi = self.popcount_low, self.popcount_high
        rows = [
            ("ex1", "popcount", f"{res.popcount:.2f} bits/byte", f"exempt if <= {lo} or >= {hi}"),
            (
                "ex2",
                "c2s_head[:6]",
                "printable" if res.first_printable else "not printable",
                f"exempt if the first {self.prefix_len} bytes are printable",
            ),
            (
                "ex3",
                "c2s_printable",
                f"{res.printable_fraction:.0%}",
                f"exempt if > {self.printable_fraction:.0%} printable",
            ),
            ("ex4", "printable_run", res.printable_run, f"exempt if > {self.printable_run} in a row"),
            ("ex5", "c2s_head", res.protocol or "neither", "exempt if it starts like TLS or HTTP"),
        ]
        out = []
        for code, feature, observed, reference in rows:
            held = code in res.exemptions
            out.append(
                Evidence(
                    f"fet.{code}",
                    feature,
                    str(observed),
                    reference,
                    0.0 if held else self.confidence / 5,
                    "exemption holds: not fully encrypted" if held else "exemption does not hold",
                    packet,
                )
            )
        if res.fully_encrypted:
            out.insert(
                0,
                Evidence(
                    "fet.fully_encrypted",
                    "c2s_head",
                    "no exemption holds",
                    "any of ex1-ex5",
                    self.confidence,
                    "the first client payload looks uniformly random (Wu et al. 2023)",
                    packet,
                ),
            )
        return tuple(out)

    def explain(self, X: Sequence[FlowRecord]) -> list[Verdict]:
        """One verdict per record: ``circumvention`` when fully encrypted, else ``unknown``."""
        out = []
        for rec in X:
            res = self.result(rec)
            idx = FlowView(rec).first_payload_index(0)
            evidence = self.evidence(res, idx) if res.applicable else ()
            label = "circumvention" if res.fully_encrypted else "unknown"
            conf = self.confidence if res.fully_encrypted else 0.0
            out.append(
                Verdict(
                    rec.flow_id,
                    flow_key_text(rec),
                    label,
                    "",
                    conf,
                    idx if res.applicable else -1,
                    self.name,
                    FET_VERSION,
                    score=float(res.fully_encrypted),
                    threshold=0.5,
                    evidence=evidence,
                )
            )
        return out
