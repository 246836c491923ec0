"""Label files: which flows of a lab capture are which class and family.

Theory of operation: every lab session writes one capture (``<id>.pcap``) and, only after the
scenario proved that its traffic flowed, one label file (``<id>.labels.json``) beside it.  The label
file names the session (scenario, variant, parameters, seed, software and versions, addresses) and
lists every flow seen in the capture by its 5-tuple with the class and family of
``../shared/TAXONOMY.md``.  Flows that no rule of the scenario claims are listed under
``unlabeled`` and get no label.

The dataset builder reads label files with :func:`load_labels` and asks :class:`LabelIndex` (or
:func:`label_for`) for the label of each flow it builds from the capture.  Matching ignores the
direction of the 5-tuple; ICMP flows are matched by protocol and address pair (ports are 0).
"""

from __future__ import annotations

__all__ = [
    "LABEL_FORMAT",
    "TAXONOMY_CLASSES",
    "FiveTuple",
    "FlowLabel",
    "LabelIndex",
    "label_for",
    "load_label_file",
    "load_labels",
    "write_label_file",
]

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sluice.errors import ConfigError

LABEL_FORMAT = "sluice.lab.labels/1"
"""Value of the ``format`` key of every label file this version writes."""

LABEL_SUFFIX = ".labels.json"
"""File name suffix of label files (beside ``<id>.pcap``)."""

TAXONOMY_CLASSES = frozenset({"benign", "vpn", "proxy", "circumvention", "tunnel", "crypto", "unknown"})
"""The class names of ``TAXONOMY.md``."""

IPPROTO_ICMP = 1


class FiveTuple(NamedTuple):
    """A flow key as the dataset builder sees it (either direction)."""

    proto: int
    """IP protocol number (6 TCP, 17 UDP, 1 ICMP)."""
    src: str
    """Source address, text form."""
    sport: int
    """Source port (0 for ICMP)."""
    dst: str
    """Destination address, text form."""
    dport: int
    """Destination port (0 for ICMP)."""


@dataclass(frozen=True, slots=True)
class FlowLabel:
    """One labeled flow of a lab capture."""

    key: FiveTuple
    """5-tuple, oriented from the side that sent the first packet."""
    traffic_class: str
    """Class name from TAXONOMY.md (``vpn``, ``proxy`` ...)."""
    family: str
    """Family name from TAXONOMY.md (``openvpn``, ``socks`` ...)."""
    packets: int
    """Packets of the flow in the capture (both directions)."""
    bytes: int
    """IP bytes of the flow in the capture (both directions)."""
    first_ts: float
    """Capture time of the first packet."""
    last_ts: float
    """Capture time of the last packet."""
    rule: str
    """Name of the scenario rule that claimed the flow (``carrier``, ``dns`` ...)."""
    capture: str
    """File name of the capture the flow is in (relative to the label file)."""
    session_id: str
    """Identifier of the lab session (one capture per session)."""
    scenario: str
    """Scenario name (``openvpn``)."""
    variant: str
    """Scenario variant (``udp-static``)."""


def _norm_ip(value: object) -> str:
    """Text form of an address given as text, bytes or ``ipaddress`` object."""
    if isinstance(value, bytes | bytearray):
        return str(ipaddress.ip_address(bytes(value)))
    return str(ipaddress.ip_address(str(value)))


def _canon(key: Iterable[object]) -> tuple[int, str, int, str, int]:
    """Direction-free form of a 5-tuple (ports zeroed for ICMP)."""
    proto, src, sport, dst, dport = tuple(key)
    p = int(str(proto))
    a = (_norm_ip(src), int(str(sport)))
    b = (_norm_ip(dst), int(str(dport)))
    if p == IPPROTO_ICMP:
        a, b = (a[0], 0), (b[0], 0)
    lo, hi = sorted((a, b), key=lambda e: (ipaddress.ip_address(e[0]).packed, e[1]))
    return (p, lo[0], lo[1], hi[0], hi[1])


class LabelIndex:
    """Look-up of flow labels by 5-tuple in either direction.

    Args:
        labels: the labels to index (typically from :func:`load_labels`).

    Raises:
        ConfigError: two labels for the same 5-tuple disagree on class or family.
    """

    __slots__ = ("_by_key",)

    def __init__(self, labels: Iterable[FlowLabel]) -> None:
        self._by_key: dict[tuple[int, str, int, str, int], FlowLabel] = {}
        for lab in labels:
            k = _canon(lab.key)
            old = self._by_key.get(k)
            if old is not None and (old.traffic_class, old.family) != (
                lab.traffic_class,
                lab.family,
            ):
                raise ConfigError("labels", f"conflicting labels for flow {lab.key}")
            self._by_key.setdefault(k, lab)

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, five_tuple: Iterable[object]) -> FlowLabel | None:
        """The full label of ``five_tuple`` (either direction), or ``None``."""
        return self._by_key.get(_canon(five_tuple))

    def label_for(self, five_tuple: Iterable[object]) -> tuple[str, str] | None:
        """``(class, family)`` of the flow ``(proto, src, sport, dst, dport)``, or ``None``.

        Args:
            five_tuple: protocol number, source address, source port, destination address,
                destination port; addresses as text, packed bytes or ``ipaddress`` objects.

        Returns:
            The label of the flow in either direction, or ``None`` for a flow no scenario rule
            claimed (or one that is not in the indexed captures).
        """
        lab = self.get(five_tuple)
        return None if lab is None else (lab.traffic_class, lab.family)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> LabelIndex:
        """Index of every label in a label file or a directory of them."""
        return cls(load_labels(path))


def label_for(
    five_tuple: Iterable[object], labels: Iterable[FlowLabel] | LabelIndex
) -> tuple[str, str] | None:
    """``(class, family)`` of ``five_tuple`` among ``labels``, or ``None``.

    Build a :class:`LabelIndex` once and call its ``label_for`` when looking up many flows.
    """
    index = labels if isinstance(labels, LabelIndex) else LabelIndex(labels)
    return index.label_for(five_tuple)


def _flow_from_json(d: Mapping[str, Any], meta: Mapping[str, Any], where: str) -> FlowLabel:
    """One :class:`FlowLabel` from a ``flows`` entry of a label file."""
    try:
        key = FiveTuple(
            int(d["proto"]), _norm_ip(d["src"]), int(d["sport"]), _norm_ip(d["dst"]), int(d["dport"])
        )
        cls_ = str(d["class"])
        if cls_ not in TAXONOMY_CLASSES:
            raise ConfigError(where, f"class {cls_!r} is not a TAXONOMY.md class")
        return FlowLabel(
            key=key,
            traffic_class=cls_,
            family=str(d["family"]),
            packets=int(d["packets"]),
            bytes=int(d["bytes"]),
            first_ts=float(d["first_ts"]),
            last_ts=float(d["last_ts"]),
            rule=str(d.get("rule", "")),
            capture=str(meta["capture"]),
            session_id=str(meta["session_id"]),
            scenario=str(meta["scenario"]),
            variant=str(meta.get("variant", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(where, f"bad flow entry {d!r}: {exc}") from exc


def load_label_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed JSON of one label file, after checking its format.

    Raises:
        ConfigError: not a label file of a format this version reads.
        OSError: the file cannot be read.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(str(p), f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != LABEL_FORMAT:
        raise ConfigError(str(p), f"not a {LABEL_FORMAT} label file")
    if not doc.get("verified", {}).get("ok", False):
        raise ConfigError(str(p), "label file of an unverified session")
    return doc


def load_labels(path: str | os.PathLike[str]) -> list[FlowLabel]:
    """Every flow label in a label file, or in all ``*.labels.json`` under a directory.

    Args:
        path: a label file, or a directory searched recursively.

    Returns:
        The labels in file order (files sorted by path).

    Raises:
        ConfigError: a file is not a valid label file.
        OSError: a file cannot be read.
    """
    p = Path(path)
    files = sorted(p.rglob(f"*{LABEL_SUFFIX}")) if p.is_dir() else [p]
    out: list[FlowLabel] = []
    for f in files:
        doc = load_label_file(f)
        flows = doc.get("flows", [])
        if not isinstance(flows, list):
            raise ConfigError(str(f), "'flows' is not a list")
        out.extend(_flow_from_json(d, doc, str(f)) for d in flows)
    return out


def write_label_file(path: str | os.PathLike[str], doc: Mapping[str, Any]) -> None:
    """Write a label document atomically (temporary file, then rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(p)
