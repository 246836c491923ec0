"""tcpdump on the gateway's client-facing link: the middlebox's view of a session."""

from __future__ import annotations

__all__ = ["CAPTURE_FILTER", "Capture", "CaptureStats"]

import re
import signal
from dataclasses import dataclass
from pathlib import Path

from sluice.lab.topology import LabError, Proc, Topology

CAPTURE_FILTER = "not arp"
"""BPF filter of lab captures (IPv6 is disabled in the lab namespaces)."""
BUFFER_KIB = 32768
"""tcpdump's capture buffer: veth bursts at Gbit/s overflow the default 2 MiB."""


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """What tcpdump said when it stopped."""

    captured: int
    """Packets written to the file."""
    dropped: int
    """Packets lost: dropped by the kernel, or matched by the filter but not written."""


class Capture:
    """A running tcpdump on gateway interface ``g0``, writing ``path``.

    Args:
        topo: the topology (must be up).
        path: capture file to write (classic pcap).
        iface: gateway interface to listen on.
    """

    def __init__(self, topo: Topology, path: Path, iface: str = "g0") -> None:
        self.topo = topo
        self.path = path
        self.iface = iface
        self._proc: Proc | None = None

    def start(self, timeout: float = 10) -> None:
        """Start tcpdump and wait until it listens.

        Raises:
            LabError: tcpdump did not start listening in time.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = self.topo.spawn(
            "gateway",
            "tcpdump",
            [
                "tcpdump",
                "-i",
                self.iface,
                "-n",
                "-s0",
                "--immediate-mode",
                "-B",
                str(BUFFER_KIB),
                "-Z",
                "root",
                "-w",
                str(self.path),
                CAPTURE_FILTER,
            ],
        )
        try:
            self.topo.wait_log("tcpdump", r"listening on", timeout=timeout)
        except LabError as exc:
            raise LabError("lab.capture_failed", str(exc)) from exc

    def stop(self) -> CaptureStats:
        """Stop tcpdump (it flushes the file) and return its counters."""
        if self._proc is None:
            return CaptureStats(0, 0)
        self._proc.stop(grace_s=5, sig=signal.SIGINT)
        text = self._proc.log.read_text(errors="replace")
        self._proc = None
        cap = re.search(r"(\d+) packets? captured", text)
        drop = re.search(r"(\d+) packets? dropped by kernel", text)
        recv = re.search(r"(\d+) packets? received by filter", text)
        n_cap = int(cap.group(1)) if cap else 0
        lost = int(drop.group(1)) if drop else 0
        if recv:
            lost = max(lost, int(recv.group(1)) - n_cap)
        return CaptureStats(n_cap, lost)
