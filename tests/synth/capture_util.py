"""Test helpers: write sessions to a capture, run tshark on it and return its fields."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from sluice.io.pcap_writer import PcapngWriter
from sluice.synth.sessions import TcpSession, UdpExchange

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

CHECKSUM_PREFS = (
    "ip.check_checksum:TRUE",
    "tcp.check_checksum:TRUE",
    "udp.check_checksum:TRUE",
)


def tshark_fields(
    path: Path,
    fields: Sequence[str],
    *,
    display_filter: str | None = None,
    prefs: Sequence[str] = CHECKSUM_PREFS,
    two_pass: bool = False,
) -> list[dict[str, str]]:
    """One dict per frame: field name -> value (several occurrences joined by ``,``)."""
    cmd = ["tshark", "-n", "-r", str(path)]
    for p in prefs:
        cmd += ["-o", p]
    if two_pass:
        cmd.append("-2")
    if display_filter:
        cmd += ["-Y", display_filter]
    cmd += ["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = line.split("\t")
        rows.append(dict(zip(fields, values, strict=True)))
    return rows


def write_sessions(path: Path, sessions: Sequence[TcpSession | UdpExchange]) -> None:
    """One pcapng interface per link type (ns timestamps), frames merged in time order."""
    with path.open("wb") as fh, PcapngWriter(fh) as w:
        ifaces: dict[int, int] = {}
        frames = []
        for s in sessions:
            if s.linktype not in ifaces:
                ifaces[s.linktype] = w.add_interface(s.linktype, tsresol_exp=9)
            frames += [(ts, ifaces[s.linktype], fr) for ts, fr in s.packets]
        for ts, iface, fr in sorted(frames, key=lambda x: x[0]):
            w.write(iface, ts, fr)
