"""Read nDPI's expected outputs (``*.out`` in ``../shared/corpus/ndpi``) for comparison tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
NDPI = SHARED / "corpus" / "ndpi"

_FLOW = re.compile(
    r"^\s*\d+\s+(?P<l4>TCP|UDP|ICMP|ICMPV6|\S+)\s+(?P<a>\S+)\s+(?:<->|->)\s+(?P<b>\S+)\s+(?P<rest>\[.*)$"
)
_FIELD = re.compile(r"\[(?P<k>[^:\]]+): (?P<v>[^\]]*)\]")


@dataclass(frozen=True)
class NdpiFlow:
    l4: str
    a: tuple[str, int]
    b: tuple[str, int]
    proto: str
    hostname: str
    vlan: str
    fields: dict[str, str]

    @property
    def endpoints(self) -> frozenset[tuple[str, int]]:
        return frozenset((self.a, self.b))


def _endpoint(text: str) -> tuple[str, int]:
    if text.startswith("["):
        addr, _, port = text[1:].partition("]:")
        return addr, int(port or 0)
    if text.count(":") == 1:
        addr, port = text.split(":")
        return addr, int(port)
    return text, 0


def read_ndpi_out(path: Path) -> list[NdpiFlow]:
    flows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _FLOW.match(line)
        if not m:
            continue
        fields = {f.group("k"): f.group("v") for f in _FIELD.finditer(m.group("rest"))}
        flows.append(NdpiFlow(
            m.group("l4"), _endpoint(m.group("a")), _endpoint(m.group("b")),
            fields.get("proto", ""), fields.get("Hostname/SNI", ""), fields.get("VLAN", ""), fields,
        ))
    return flows


def captures() -> list[Path]:
    return sorted(p for p in NDPI.glob("*.pcap*") if not p.name.endswith(".out"))
