"""Where nDPI's expected outputs live (``../shared/corpus/ndpi``) and which captures have one.

Reading a ``.out`` file is the library's job: :func:`sluice.detect.ndpi.read_ndpi_out`.
"""

from __future__ import annotations

from pathlib import Path

from sluice.detect.ndpi import NdpiFlow, read_ndpi_out

__all__ = ["NDPI", "SHARED", "NdpiFlow", "captures", "read_ndpi_out"]

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
NDPI = SHARED / "corpus" / "ndpi"


def captures() -> list[Path]:
    return sorted(p for p in NDPI.glob("*.pcap*") if not p.name.endswith(".out"))
