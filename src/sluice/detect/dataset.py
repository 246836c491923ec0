"""Labeled flows for training and evaluating the model: lab datasets and nDPI's benign flows.

A dataset is a Parquet flow table with the columns of ``sluice lab dataset`` (flow record fields
plus ``capture``, ``session_id``, ``scenario``, ``variant``, ``label_class``, ``label_family``).
:func:`build_ndpi_benign` writes the same columns for the flows of nDPI's test captures that nDPI
calls benign, so the model sees benign traffic other than the lab's few clients.

Splits must be by group (a lab session or an nDPI capture file), never by flow: the flows of one
session share keys, certificates and timing, and a split by flow would measure memory.
"""

from __future__ import annotations

__all__ = [
    "HTTPS_SHAPED",
    "KEEPS_SHAPE",
    "NOT_TRAINED",
    "LabeledFlows",
    "build_ndpi_benign",
    "group_folds",
    "load_labeled",
    "trainable",
]

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sluice.detect.fingerprints import FingerprintDetector
from sluice.detect.verdict import DETECTABLE_CLASSES
from sluice.features.flow import opens_with_tls_handshake, record_from_row
from sluice.features.view import FlowView
from sluice.flows.record import FlowRecord

NOT_TRAINED = ("tunnel/ssh",)
"""Labels the model is not trained on: SSH used for forwarding looks like an SSH terminal in its
first packets (the fingerprint rule tells them apart by volume, at the flow's end)."""
HTTPS_SHAPED = "carrying plain HTTP inside TLS"
"""Why a finding is not trained on although its label is: a carrier that opens with a TLS
handshake (a TLS relay, Trojan, VLESS over TLS) and carries plain HTTP *is* HTTPS between the
client and the relay, packet for packet; only where the relay sends it next differs. A model
taught to call such flows findings learns to call HTTPS a finding (issue 11: curl to a Python
HTTPS server was called stunnel). These flows are scored and reported apart; what carries them
to a verdict is evidence outside the flow's shape (register, certificate, endpoint)."""
KEEPS_SHAPE = ("circumvention/tor",)
"""TLS carriers whose own framing shows through TLS whatever they carry (Tor's fixed-size cells):
trained on even when they carry plain HTTP. So is every ``vpn``: a VPN over TLS (AnyConnect's
CSTP) carries packets, not a byte stream, and the inner connection's handshakes and
acknowledgements show as small records of their own."""


@dataclass
class LabeledFlows:
    """Flow records with their labels and split groups (parallel lists)."""

    records: list[FlowRecord] = field(default_factory=list)
    """The final flow records."""
    labels: list[str] = field(default_factory=list)
    """``class/family`` per flow (``benign/dns`` …)."""
    groups: list[str] = field(default_factory=list)
    """Split group per flow: ``<dataset>:<session or capture>``."""
    configs: list[str] = field(default_factory=list)
    """``scenario/variant`` per flow (``ndpi/<capture>`` for nDPI flows)."""
    sources: list[str] = field(default_factory=list)
    """``lab`` or ``ndpi``."""
    stacks: list[str] = field(default_factory=list)
    """Client stack that made the flow (``curl-openssl``, ``chromium`` …; ``ndpi`` for nDPI's)."""
    impls: list[str] = field(default_factory=list)
    """Implementation that carried it (``shadowsocks-libev``, ``v2ray`` …; the server for
    direct benign traffic; ``ndpi`` for nDPI's)."""
    inners: list[str] = field(default_factory=list)
    """What a carrier fetched through itself (``http``, ``https``); ``""`` without a carrier.
    May be left empty: no flow is then :meth:`https_shaped`."""
    digest: str = ""
    """sha256 over the input files' bytes, in order."""

    def subset(self, idx: Sequence[int] | npt.NDArray[np.intp]) -> LabeledFlows:
        """The flows at ``idx``."""
        ix = [int(i) for i in idx]
        return LabeledFlows(
            [self.records[i] for i in ix],
            [self.labels[i] for i in ix],
            [self.groups[i] for i in ix],
            [self.configs[i] for i in ix],
            [self.sources[i] for i in ix],
            [self.stacks[i] for i in ix],
            [self.impls[i] for i in ix],
            [self.inners[i] for i in ix] if self.inners else [],
            self.digest,
        )

    def https_shaped(self) -> npt.NDArray[np.bool_]:
        """Per flow: a finding with the shape of HTTPS (see :data:`HTTPS_SHAPED`)."""
        inners = self.inners or [""] * len(self.records)
        return np.asarray(
            [
                inner == "http"
                and _is_finding(lab)
                and lab not in KEEPS_SHAPE
                and not lab.startswith("vpn/")
                and opens_with_tls_handshake(rec)
                for rec, lab, inner in zip(self.records, self.labels, inners, strict=True)
            ],
            dtype=bool,
        )

    def counts(self) -> dict[str, int]:
        """Flows per label."""
        return dict(sorted(Counter(self.labels).items()))


def load_labeled(paths: Sequence[str | Path]) -> LabeledFlows:
    """Labeled final flows of Parquet datasets (unlabeled and early rows dropped).

    Raises:
        OSError: a file cannot be read.
    """
    import pyarrow.parquet as pq

    out = LabeledFlows()
    h = hashlib.sha256()
    for path in paths:
        p = Path(path)
        h.update(p.read_bytes())
        for row in pq.read_table(p).to_pylist():
            cls = row.get("label_class") or ""
            if not cls or row.get("early"):
                continue
            fam = row.get("label_family") or ""
            scenario = row.get("scenario") or ""
            source = "ndpi" if scenario == "ndpi" else "lab"
            out.records.append(record_from_row(row))
            out.labels.append(f"{cls}/{fam}")
            out.groups.append(f"{p.stem}:{row.get('session_id') or row.get('capture')}")
            out.configs.append(f"{scenario}/{row.get('variant') or ''}")
            out.sources.append(source)
            out.stacks.append(str(row.get("stack") or source))
            out.impls.append(str(row.get("impl") or (source if source == "ndpi" else scenario)))
            # datasets written before the column: carriers fetched plain HTTP then
            out.inners.append(
                str(row.get("inner") or ("http" if source == "lab" and cls != "benign" else ""))
            )
    out.digest = h.hexdigest()
    return out


def trainable(data: LabeledFlows) -> npt.NDArray[np.intp]:
    """Indices of the flows a model may be trained on: labels not in :data:`NOT_TRAINED`, flows
    not :data:`HTTPS_SHAPED`."""
    shaped = data.https_shaped()
    return np.asarray(
        [i for i, lab in enumerate(data.labels) if lab not in NOT_TRAINED and not shaped[i]], dtype=np.intp
    )


def _is_finding(label: str) -> bool:
    return label.split("/")[0] in DETECTABLE_CLASSES


def group_folds(groups: Sequence[str], k: int, seed: int = 0) -> list[npt.NDArray[np.intp]]:
    """Test indices of ``k`` folds with whole groups in each.

    A group's fold is a hash of its name (and ``seed``), not its place in a shuffled list: adding
    a dataset leaves every other group in its fold. With a shuffle, 24 new benign sessions moved
    the cross-validated Shadowsocks recall from 99 % to 91 % by regrouping what trained with what.
    """

    def fold(group: str) -> int:
        digest = hashlib.blake2b(f"{seed}/{group}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % k

    fold_of = {g: fold(g) for g in set(groups)}
    assign = np.asarray([fold_of[g] for g in groups], dtype=np.intp)
    return [np.flatnonzero(assign == f) for f in range(k)]


def build_ndpi_benign(corpus: str | Path, out: str | Path) -> dict[str, int]:
    """Write the flows of nDPI's captures that nDPI calls benign as a labeled Parquet dataset.

    A flow is kept when nDPI's expected output lists it (joined by endpoints), names a benign
    protocol, the capture's name does not say it carries something else
    (:data:`~sluice.detect.ndpi.NAMED_CAPTURES`), it is not encapsulated, and no fingerprint
    finds a VPN, proxy, tunnel or circumvention protocol in it (nDPI calls IP-in-IP, VXLAN,
    some Tor and DNS-tunnel flows benign by their inner protocol).

    Returns:
        Counts: captures read, flows kept, flows dropped by reason.
    """
    from sluice.batch.flows import batch_flows
    from sluice.detect.ndpi import NAMED_CAPTURES, read_ndpi_out
    from sluice.errors import CaptureError
    from sluice.io.flowlog import open_flow_writer

    fp = FingerprintDetector().fit()
    counts: Counter[str] = Counter()
    writer = open_flow_writer("parquet", None, str(out))
    try:
        for cap in sorted(Path(corpus).iterdir()):
            ref = cap.with_name(cap.name + ".out")
            if cap.suffix not in (".pcap", ".pcapng") or not ref.exists() or cap.name in NAMED_CAPTURES:
                continue
            peer = {f.endpoints: f for f in read_ndpi_out(ref)}
            try:
                records = [r for r in batch_flows(str(cap)).records if not r.early]
            except CaptureError:
                counts["capture_error"] += 1
                continue
            counts["captures"] += 1
            for r in records:
                f = peer.get(frozenset(((r.client, r.client_port), (r.server, r.server_port))))
                reason = _ndpi_drop_reason(r, f.label if f else None, fp)
                if reason:
                    counts[f"dropped.{reason}"] += 1
                    continue
                assert f is not None
                extra = {
                    "capture": cap.name,
                    "session_id": cap.name,
                    "scenario": "ndpi",
                    "variant": cap.stem,
                    "label_class": "benign",
                    "label_family": f.family or "ndpi",
                }
                writer.write([r], extra)
                counts["flows"] += 1
    finally:
        writer.close()
    return dict(sorted(counts.items()))


def _ndpi_drop_reason(rec: FlowRecord, label: str | None, fp: FingerprintDetector) -> str:
    if label is None:
        return "not_in_ndpi"
    if label != "benign":
        return "not_benign"
    if rec.tunnels:
        return "encapsulated"
    m = fp.best(FlowView(rec))
    if m is not None and m.label in DETECTABLE_CLASSES:
        return "fingerprint"
    return ""
