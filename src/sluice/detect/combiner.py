"""The combiner: the layers' opinions turned into one verdict per flow, as early as evidence allows.

Theory of operation: a flow is judged first on its *early* record (the first ``early_packets``
packets, what an inline gateway has when it must decide) and, when that does not yield a
finding, on its final record (up to 32 packets of sequence, whole-flow counters). At each stage:

1. a **fingerprint** finding (layer 1) decides: it is deterministic and carries its own evidence;
   a benign fingerprint (an SSH terminal) decides too, unless a later stage finds more;
2. otherwise the **model** (layer 3), when one is loaded, proposes a class and family with
   ``P(not benign)``; the **fully-encrypted test** (layer 2) agreeing raises the confidence
   (noisy-or), disagreeing is listed as evidence against. A family in ``needs_fingerprint``
   (protocols that cannot run without the cleartext structure a fingerprint reads: IKE/ESP,
   WireGuard's messages, a SOCKS or HTTP proxy request, a VXLAN header, ICMP) is not a finding
   on the model's word alone: the model proposing it where its fingerprint found nothing is
   listed as evidence (``model.unconfirmed``) and the flow goes on to step 3;
3. otherwise the FET alone makes a ``circumvention`` verdict without a family, unless the model
   vetoes it: with ``fet_veto`` set and a model loaded, a flow the model calls benign with
   ``P(benign) >= fet_veto`` stays benign, and its verdict lists the FET's result and the veto
   as evidence;
4. otherwise, when the model's ``P(not benign)`` lies in ``[uncertain_from, threshold)``, the
   verdict is ``unknown``: the model leans towards a finding without the evidence to make one,
   and says which features leaned (``model.uncertain``); an operator's policy does not act on
   it by default, and a reviewer can look;
5. otherwise the application protocol the inspectors recognised makes a ``benign`` verdict
   (``tls``, ``quic``, ``http``, ``dns`` …); a flow with nothing recognised is ``unknown``.

``decided_at`` is the packet index at which the deciding evidence was complete: a fingerprint's
own index, the last packet the model's features read, or the last packet of the flow for
whole-flow counters. Verdicts only propose: nothing here touches the register or an enforcer.

Last, the verdict names the **service** the flow belongs to when its names or address match the
service catalogue (:mod:`sluice.detect._service_names` gives the rules: a name alone makes a
finding below a fingerprint's confidence; an address in shared infrastructure never names alone).
"""

from __future__ import annotations

__all__ = [
    "COMBINER_VERSION",
    "DEFAULT_FET_VETO",
    "DEFAULT_UNCERTAIN_FROM",
    "NEEDS_FINGERPRINT",
    "Combiner",
    "FlowScorer",
    "Opinion",
]

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sluice.detect._service_names import name_service
from sluice.detect.fet import FetDetector, FetResult
from sluice.detect.fingerprints import FingerprintDetector, RuleMatch
from sluice.detect.verdict import DEFAULT_FET_VETO, DETECTABLE_CLASSES, Evidence, Verdict, flow_key_text
from sluice.errors import ConfigError
from sluice.features.view import FlowView
from sluice.flows.record import FlowRecord
from sluice.services.catalogue import Catalogue
from sluice.services.catalogue_toml import default_catalogue

COMBINER_VERSION = "5"
"""Version of the combination rules (2: the model's veto of FET-only findings; 3: families that
need their fingerprint; 4: ``unknown`` where the model is uncertain; 5: verdicts name the catalogue
service)."""

DEFAULT_UNCERTAIN_FROM: float | None = 0.35
"""``P(not benign)`` from which (up to the model's threshold) a flow is ``unknown``, not benign.

Chosen before the held-out evaluation was run (issue 11), as "about half-way to the threshold":
not tuned on any result. ``sluice model evaluate`` counts the unknowns per held-out stack."""

NEEDS_FINGERPRINT: frozenset[tuple[str, str]] = frozenset(
    {
        ("vpn", "ipsec"),
        ("vpn", "wireguard"),
        ("proxy", "socks"),
        ("proxy", "http-proxy"),
        ("tunnel", "vxlan"),
        ("tunnel", "icmp-tunnel"),
    }
)
"""(class, family) the model alone may not call: each protocol has a cleartext structure (a
header, a handshake, a request line, the IP protocol) its fingerprint rule reads, so a flow
without it is not that protocol whatever its shape. Families a fingerprint covers only in part
(OpenVPN's static-key mode, DNS and HTTP tunnels of other shapes) and those no rule covers
(Shadowsocks, VMess, Trojan, obfs4 ...) stay the model's."""

_BENIGN_APPS = {
    "tls": "tls",
    "quic": "quic",
    "gquic": "quic",
    "http": "http",
    "dns": "dns",
    "ssh": "app:ssh",
    "socks": "",
    "": "",
}


@dataclass(frozen=True, slots=True)
class Opinion:
    """What a trained model says about one record."""

    p_finding: float
    """Probability that the flow is not benign."""
    label: str
    """Most likely class."""
    family: str
    """Most likely family."""
    threshold: float
    """``p_finding`` at or above which the model calls a finding."""
    decided_at: int
    """Last packet index the model's features read."""
    digest: str
    """The model's digest."""
    version: str
    """The model's version string."""
    evidence: tuple[Evidence, ...]
    """The features that weighed most, with their values."""


class FlowScorer(Protocol):
    """A trained model as the combiner uses it."""

    def opinions(self, records: Sequence[FlowRecord]) -> list[Opinion]:
        """One opinion per record."""
        ...


def _decisive(m: RuleMatch | None) -> bool:
    """Whether a fingerprint match decides the verdict whatever the model says (a finding)."""
    return m is not None and m.label in DETECTABLE_CLASSES


def _noisy_or(*ps: float) -> float:
    q = 1.0
    for p in ps:
        q *= 1.0 - p
    return 1.0 - q


def _by_model(
    flow_id: int,
    key: str,
    label: str,
    family: str,
    confidence: float,
    decided_at: int,
    op: Opinion,
    evidence: Sequence[Evidence],
) -> Verdict:
    """A verdict the model decided (a finding, an uncertain flow, or a benign one)."""
    return Verdict(
        flow_id,
        key,
        label,
        family,
        confidence,
        decided_at,
        "combiner:model",
        COMBINER_VERSION,
        score=op.p_finding,
        threshold=op.threshold,
        model_digest=op.digest,
        evidence=tuple(evidence),
    )


class Combiner:
    """One verdict per flow from fingerprints, the fully-encrypted test and a model.

    Args:
        model: a trained model (layer 3), or None for layers 1-2 only.
        fingerprints: the fingerprint detector (default: all rules).
        fet: the fully-encrypted test (default parameters).
        use_fet: let the FET alone make a verdict (step 3).
        fet_veto: the model's ``P(benign)`` at or above which it vetoes a finding of the FET
            alone (step 3); None or 1.0: no veto. Without a model nothing is vetoed.
        needs_fingerprint: (class, family) pairs the model alone may not call (step 2);
            empty: the model may call any family it knows.
        uncertain_from: the model's ``P(not benign)`` from which a flow it does not call a
            finding is ``unknown`` (step 4); None: never.
        catalogue: the service catalogue verdicts name services from (default: the packaged one,
            loaded once per process).
        name_services: look flows up in the catalogue at all (False: never name a service).

    Raises:
        ConfigError: ``fet_veto`` outside (0, 1].
    """

    def __init__(
        self,
        model: FlowScorer | None = None,
        *,
        fingerprints: FingerprintDetector | None = None,
        fet: FetDetector | None = None,
        use_fet: bool = True,
        fet_veto: float | None = DEFAULT_FET_VETO,
        needs_fingerprint: frozenset[tuple[str, str]] = NEEDS_FINGERPRINT,
        uncertain_from: float | None = DEFAULT_UNCERTAIN_FROM,
        catalogue: Catalogue | None = None,
        name_services: bool = True,
    ) -> None:
        if fet_veto is not None and not 0 < fet_veto <= 1:
            raise ConfigError("combiner.fet_veto", f"{fet_veto} is not in (0, 1]")
        if uncertain_from is not None and not 0 < uncertain_from <= 1:
            raise ConfigError("combiner.uncertain_from", f"{uncertain_from} is not in (0, 1]")
        self.uncertain_from = uncertain_from
        self.model = model
        self.fingerprints = (fingerprints or FingerprintDetector()).fit()
        self.fet = (fet or FetDetector()).fit()
        self.use_fet = use_fet
        self.fet_veto = fet_veto
        self.needs_fingerprint = needs_fingerprint
        self.catalogue = (catalogue or default_catalogue()) if name_services else None

    def judge_all(self, records: Sequence[FlowRecord]) -> list[tuple[FlowRecord, Verdict]]:
        """Verdicts of every flow in a run's records (final records, early ones paired by id).

        Returns:
            (final record, verdict) in the order of the final records.
        """
        early = {r.flow_id: r for r in records if r.early}
        finals = [r for r in records if not r.early]
        if self.model is None:
            # nothing to gather for a model: each flow is judged as soon as it is looked at, so
            # its views die with it (a whole batch's views kept alive made the garbage collector
            # walk the heap once more per bench run: ~0.15 s, more than any rule costs)
            return [(rec, self.judge(rec, early.get(rec.flow_id))) for rec in finals]
        early_list = [early[r.flow_id] for r in finals if r.flow_id in early]
        looked = {(r.flow_id, r.early): self._look(r) for r in early_list + finals}
        opinions: dict[tuple[int, bool], Opinion] = {}
        # the model is asked only where its opinion can change the verdict
        batch = [r for r in early_list + finals if not _decisive(looked[(r.flow_id, r.early)][1])]
        for rec, op in zip(batch, self.model.opinions(batch), strict=True):
            opinions[(rec.flow_id, rec.early)] = op
        out = []
        for rec in finals:
            out.append((rec, self.judge(rec, early.get(rec.flow_id), opinions, looked)))
        return out

    def judge(
        self,
        final: FlowRecord,
        early: FlowRecord | None = None,
        opinions: dict[tuple[int, bool], Opinion] | None = None,
        looked: dict[tuple[int, bool], tuple[FlowView, RuleMatch | None]] | None = None,
    ) -> Verdict:
        """The verdict of one flow (its early record first, when it has one), naming its service.

        ``opinions`` and ``looked`` (each record's view and best fingerprint match) are what
        :meth:`judge_all` computed in bulk; without them they are computed here.
        """
        verdict = self._judge(final, early, opinions, looked or {})
        if self.catalogue is not None:
            verdict = name_service(verdict, final, self.catalogue)
        return verdict

    def _judge(
        self,
        final: FlowRecord,
        early: FlowRecord | None,
        opinions: dict[tuple[int, bool], Opinion] | None,
        looked: dict[tuple[int, bool], tuple[FlowView, RuleMatch | None]],
    ) -> Verdict:
        stages = [r for r in (early, final) if r is not None]
        verdict: Verdict | None = None
        for rec in stages:
            view, m = looked.get((rec.flow_id, rec.early)) or self._look(rec)
            op = None
            if opinions is not None:
                op = opinions.get((rec.flow_id, rec.early))
            elif self.model is not None and not _decisive(m):
                op = self.model.opinions([rec])[0]
            verdict = self._stage(rec, final, op, view, m)
            if verdict.is_finding:
                return verdict
        assert verdict is not None
        return verdict

    def _look(self, rec: FlowRecord) -> tuple[FlowView, RuleMatch | None]:
        view = FlowView(rec)
        return view, self.fingerprints.best(view)

    def _stage(
        self, rec: FlowRecord, final: FlowRecord, op: Opinion | None, view: FlowView, m: RuleMatch | None
    ) -> Verdict:
        key = flow_key_text(final)
        if m is not None and (_decisive(m) or op is None or op.p_finding < op.threshold):
            return self._from_match(key, rec, m)
        fet = self.fet.result(rec, view)
        idx0 = view.first_payload_index(0)
        if op is not None and op.p_finding >= op.threshold and not self._unconfirmed(op):
            return self._from_model(key, final.flow_id, op, fet, idx0)
        if m is not None:
            return self._from_match(key, rec, m)
        if self.use_fet and fet.fully_encrypted and not self._vetoed(op):
            ev = self.fet.evidence(fet, idx0)
            return Verdict(
                final.flow_id,
                key,
                "circumvention",
                "",
                self.fet.confidence,
                idx0,
                "combiner:fet",
                COMBINER_VERSION,
                score=1.0,
                threshold=0.5,
                evidence=ev,
            )
        if self._uncertain(op):
            assert op is not None
            return self._unknown(key, final.flow_id, op, fet, idx0)
        return self._benign(key, rec, final, op, fet, idx0)

    def _uncertain(self, op: Opinion | None) -> bool:
        """Whether the model leans towards a finding without making one."""
        if op is None or self.uncertain_from is None:
            return False
        return self.uncertain_from <= op.p_finding < op.threshold

    def _unknown(self, key: str, flow_id: int, op: Opinion, fet: FetResult, idx0: int) -> Verdict:
        evidence = [
            Evidence(
                "model.uncertain",
                "model.p_finding",
                f"{op.p_finding:.3f} ({op.label}/{op.family} most likely)",
                f"[{self.uncertain_from:g}, {op.threshold:g})",
                0.0,
                "the model leans towards a finding but not enough to make one",
                op.decided_at,
            ),
            *op.evidence,
        ]
        evidence += self._fet_against(fet, op, idx0)
        return _by_model(flow_id, key, "unknown", "", op.p_finding, op.decided_at, op, evidence)

    def _unconfirmed(self, op: Opinion) -> bool:
        """Whether the model proposes a family its fingerprint must confirm (and did not)."""
        return (op.label, op.family) in self.needs_fingerprint

    def _vetoed(self, op: Opinion | None) -> bool:
        """Whether the model is sure enough of a benign flow to overrule the FET alone."""
        if op is None or self.fet_veto is None or self.fet_veto >= 1:
            return False
        return 1.0 - op.p_finding >= self.fet_veto

    def _fet_against(self, fet: FetResult, op: Opinion | None, idx0: int) -> list[Evidence]:
        """The FET's part of a benign verdict: its exemptions, or its finding and why it lost."""
        if not fet.applicable:
            return []
        if not fet.fully_encrypted:
            return [
                Evidence(
                    "fet.exempt",
                    "c2s_head",
                    ", ".join(fet.exemptions),
                    "no exemption",
                    0.0,
                    "the first payload is not fully encrypted",
                    idx0,
                )
            ]
        out = [self.fet.evidence(fet, idx0)[0]]
        if self.use_fet and op is not None and self._vetoed(op):
            out.append(
                Evidence(
                    "fet.vetoed",
                    "model.p_benign",
                    f"{1.0 - op.p_finding:.3f}",
                    f">= {self.fet_veto:g}",
                    -self.fet.confidence,
                    "the FET alone found the flow fully encrypted; the model is sure it is benign",
                    max(op.decided_at, idx0),
                )
            )
        return out

    def _from_match(self, key: str, rec: FlowRecord, m: RuleMatch) -> Verdict:
        return Verdict(
            rec.flow_id,
            key,
            m.label,
            m.family,
            m.confidence,
            m.decided_at,
            f"combiner:fingerprint:{m.rule}",
            COMBINER_VERSION,
            score=m.confidence,
            threshold=self.fingerprints.threshold,
            evidence=m.evidence,
        )

    def _from_model(self, key: str, flow_id: int, op: Opinion, fet: FetResult, idx0: int) -> Verdict:
        conf = op.p_finding
        evidence = list(op.evidence)
        if fet.applicable:
            fet_ev = self.fet.evidence(fet, idx0)
            if fet.fully_encrypted:
                conf = _noisy_or(conf, self.fet.confidence * 0.5)
                evidence.append(fet_ev[0])
            else:
                held = ", ".join(fet.exemptions)
                evidence.append(
                    Evidence(
                        "fet.exempt",
                        "c2s_head",
                        held,
                        "no exemption",
                        0.0,
                        "the first payload is not fully encrypted",
                        idx0,
                    )
                )
        decided = max(op.decided_at, idx0)
        return _by_model(flow_id, key, op.label, op.family, conf, decided, op, evidence)

    def _benign(
        self, key: str, rec: FlowRecord, final: FlowRecord, op: Opinion | None, fet: FetResult, idx0: int
    ) -> Verdict:
        app = rec.meta.app or final.meta.app
        evidence: list[Evidence] = []
        if op is not None and op.p_finding >= op.threshold:  # a family its fingerprint must confirm
            evidence.append(
                Evidence(
                    "model.unconfirmed",
                    "model.family",
                    f"{op.label}/{op.family} ({op.p_finding:.3f})",
                    f"its {op.family} fingerprint",
                    0.0,
                    f"the model proposed {op.family}; the protocol's cleartext structure is not there",
                    op.decided_at,
                )
            )
        elif op is not None:
            evidence.append(
                Evidence(
                    "model.benign",
                    "model.p_finding",
                    f"{op.p_finding:.3f}",
                    f"< {op.threshold:.3f}",
                    -(1 - op.p_finding),
                    "the model finds nothing",
                    op.decided_at,
                )
            )
        evidence += self._fet_against(fet, op, idx0)
        if app:
            family = _BENIGN_APPS.get(app, app)
            evidence.insert(
                0,
                Evidence(
                    "app.protocol",
                    "app",
                    app,
                    "a protocol with no finding",
                    0.6,
                    f"the inspectors recognised {app} and no layer found more",
                    idx0,
                ),
            )
            return Verdict(
                final.flow_id,
                key,
                "benign",
                family,
                0.6,
                max(idx0, 0),
                "combiner:protocol",
                COMBINER_VERSION,
                score=op.p_finding if op else 0.0,
                threshold=op.threshold if op else 0.0,
                model_digest=op.digest if op else "",
                evidence=tuple(evidence),
            )
        seen = final.packets
        if op is not None and seen >= 2 and final.c2s_payload_bytes + final.s2c_payload_bytes > 0:
            return _by_model(final.flow_id, key, "benign", "", 1 - op.p_finding, op.decided_at, op, evidence)
        evidence.insert(
            0,
            Evidence(
                "combiner.too_little",
                "packets",
                str(seen),
                "a recognised protocol or finding",
                0.0,
                "too little seen to decide",
                -1,
            ),
        )
        return Verdict(
            final.flow_id, key, "unknown", "", 0.0, -1, "combiner", COMBINER_VERSION, evidence=tuple(evidence)
        )
