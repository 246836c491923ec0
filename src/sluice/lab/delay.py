"""A userspace delay line for the lab gateway (the kernel here has no netem).

Theory of operation: ``iptables -A FORWARD -j NFQUEUE --queue-num Q`` in the gateway namespace
hands every forwarded packet to this process (``python -m sluice.lab.delay``, run inside that
namespace).  The relay asks only for packet metadata (``COPY_META``: no payload is copied), files
each packet under its direction (it came in on the client-side interface: client→server, else
server→client), and gives the kernel its ACCEPT verdict once the packet's release time has come.
netfilterqueue 1.x allows a verdict after the callback returned; until then the kernel keeps the
packet in its queue.  One thread runs everything: ``select`` on the netlink socket with the time
to the next release as timeout, drain the socket, release what is due.

Release times (:class:`DelayLine`): ``arrival + delay[direction] + U(-jitter, +jitter)``,
never earlier than the arrival, and (unless ``reorder``) never earlier than the previous release
in the same direction, so packets of a direction — hence of every flow — leave in the order they
came.  A client-side tap (the lab captures on g0) then sees every server answer
``c2s + s2c`` after the request that caused it.

The rule has no ``--queue-bypass``: while the relay is not bound, the kernel drops forwarded
packets instead of passing them undelayed, and :meth:`sluice.lab.topology.Topology.check_delay`
fails the session when the relay is gone or lost packets.  The relay rewrites a small JSON stats
file (``--stats``) every second and when it stops.
"""

from __future__ import annotations

__all__ = ["DelayLine", "DelaySpec", "RelayStats", "main"]

import argparse
import contextlib
import errno
import heapq
import itertools
import json
import os
import random
import select
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Generic, TypeVar, cast

C2S, S2C = 0, 1
"""Directions: client→server (arrived on the client-side interface) and server→client."""
QUEUE_MAXLEN = 65535
"""Packets the kernel may hold for the relay (the default 1024 is < one BDP at 150 ms, 100 Mbit/s)."""
SOCK_RCVBUF = 32 * 1024 * 1024
"""Netlink receive buffer: a full one makes the kernel drop packets (counted as ``enobufs``)."""
STATS_EVERY_S = 1.0
NICE = -10
"""Scheduling priority change of the relay (the lab's programs share 2 vCPUs with it)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DelaySpec:
    """One-way delays of the two directions, and their jitter (milliseconds)."""

    c2s_ms: float
    """Delay of client→server packets."""
    s2c_ms: float
    """Delay of server→client packets."""
    jitter_ms: float = 0.0
    """Each packet's delay varies by up to ± this much (uniformly)."""
    reorder: bool = False
    """Let jitter reorder packets of a direction (off: release times never go backwards)."""

    def __post_init__(self) -> None:
        if min(self.c2s_ms, self.s2c_ms, self.jitter_ms) < 0:
            raise ValueError(f"negative delay in {self}")

    @property
    def rtt_ms(self) -> float:
        """Round-trip time the relay adds."""
        return self.c2s_ms + self.s2c_ms

    def delay_s(self, direction: int) -> float:
        """Configured one-way delay of ``direction``, seconds."""
        return (self.c2s_ms if direction == C2S else self.s2c_ms) / 1000.0


class DelayLine(Generic[T]):
    """Holds items until their release time (pure scheduling, no I/O; times in seconds).

    Args:
        spec: delays and jitter.
        rng: source of the jitter.
    """

    def __init__(self, spec: DelaySpec, rng: random.Random | None = None) -> None:
        self.spec = spec
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._heap: list[tuple[float, int, T]] = []  # seq breaks ties: items never compared
        self._seq = itertools.count()
        self._last = [float("-inf"), float("-inf")]

    def release_time(self, direction: int, now: float) -> float:
        """Release time of a packet of ``direction`` arriving at ``now`` (advances the state)."""
        t = now + self.spec.delay_s(direction)
        j = self.spec.jitter_ms / 1000.0
        if j > 0:
            t = max(now, t + self.rng.uniform(-j, j))
        if not self.spec.reorder:
            t = max(t, self._last[direction])
            self._last[direction] = t
        return t

    def push(self, item: T, direction: int, now: float) -> float:
        """Hold ``item``; returns its release time."""
        t = self.release_time(direction, now)
        heapq.heappush(self._heap, (t, next(self._seq), item))
        return t

    def next_release(self) -> float | None:
        """Earliest release time held, or ``None`` when empty."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[tuple[float, T]]:
        """Remove and return (release time, item) of everything due at ``now``, in release order."""
        heap, out = self._heap, []
        while heap and heap[0][0] <= now:
            t, _, item = heapq.heappop(heap)
            out.append((t, item))
        return out

    def drain(self) -> list[T]:
        """Remove and return everything held, in release order."""
        out = [item for _, _, item in sorted(self._heap, key=lambda h: h[:2])]
        self._heap.clear()
        return out

    def __len__(self) -> int:
        return len(self._heap)


@dataclass(slots=True)
class RelayStats:
    """Counters of a running relay (the JSON of its stats file)."""

    packets_c2s: int = 0
    packets_s2c: int = 0
    max_held: int = 0
    """Most packets held at once."""
    late_max_ms: float = 0.0
    """Worst lateness of a release behind its scheduled time (0 when none was over 1 ms)."""
    late_mean_ms: float = 0.0
    """Mean lateness of the releases."""
    late_over_1ms: int = 0
    """Releases more than 1 ms behind schedule."""
    enobufs: int = 0
    """Netlink overruns: the kernel dropped packets it could not queue to the relay."""
    errors: int = 0
    """Verdicts that failed."""
    queue_dropped: int = 0
    """Packets the kernel dropped because the queue was full (/proc nfnetlink_queue)."""
    user_dropped: int = 0
    """Packets the kernel could not hand to the relay (netlink buffer full)."""
    running: bool = True
    _late_sum_ms: float = 0.0
    _released: int = 0

    def released(self, late_ms: float) -> None:
        """Count one release ``late_ms`` behind its schedule."""
        self._released += 1
        self._late_sum_ms += late_ms
        if late_ms > 1.0:
            self.late_over_1ms += 1
            self.late_max_ms = max(self.late_max_ms, late_ms)

    def as_dict(self) -> dict[str, int | float | bool]:
        """The public counters."""
        self.late_mean_ms = round(self._late_sum_ms / max(self._released, 1), 3)
        self.late_max_ms = round(self.late_max_ms, 3)
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def read_kernel(self, queue: int) -> None:
        """Copy the kernel's drop counters of ``queue`` (in this network namespace)."""
        try:
            text = Path("/proc/net/netfilter/nfnetlink_queue").read_text()
        except OSError:
            return
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 7 and f[0] == str(queue):
                self.queue_dropped, self.user_dropped = int(f[5]), int(f[6])

    def lost(self) -> int:
        """Packets lost or not released properly, by any counter."""
        return self.enobufs + self.errors + self.queue_dropped + self.user_dropped

    def write(self, path: Path) -> None:
        """Replace ``path`` with the counters (atomic rename)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_dict()))
        os.replace(tmp, path)


class _CountingSocket:
    """What ``NetfilterQueue.run_socket`` reads from.

    Counts ENOBUFS instead of hiding it, and says EAGAIN after ``budget`` messages so that a
    flood of arrivals cannot hold up due releases.
    """

    def __init__(self, sock: socket.socket, stats: RelayStats, budget: int = 32) -> None:
        self.sock = sock
        self.stats = stats
        self.budget = budget
        self.left = budget

    def recv(self, n: int) -> bytes:
        if self.left <= 0:
            raise BlockingIOError(errno.EAGAIN, "read budget used")
        self.left -= 1
        try:
            return self.sock.recv(n)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.stats.enobufs += 1
            raise


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sluice.lab.delay", description=__doc__.split("\n")[0])
    ap.add_argument("--queue", type=int, required=True, help="NFQUEUE number")
    ap.add_argument("--client-if", default="g0", help="interface towards the client")
    ap.add_argument("--c2s-ms", type=float, required=True)
    ap.add_argument("--s2c-ms", type=float, required=True)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--reorder", action="store_true", help="jitter may reorder packets")
    ap.add_argument("--seed", type=int, default=None, help="seed of the jitter")
    ap.add_argument("--stats", type=Path, default=None, help="JSON counters file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the relay until SIGTERM/SIGINT; prints ``ready`` once bound to the queue."""
    from netfilterqueue import COPY_META, NetfilterQueue, Packet

    args = _parse(argv)
    spec = DelaySpec(args.c2s_ms, args.s2c_ms, args.jitter_ms, args.reorder)
    line: DelayLine[Packet] = DelayLine(spec, random.Random(args.seed))  # noqa: S311
    stats = RelayStats()
    client_ifindex = socket.if_nametoindex(args.client_if)
    stopping = False

    def on_packet(pkt: Packet) -> None:
        d = C2S if pkt.indev == client_ifindex else S2C
        if d == C2S:
            stats.packets_c2s += 1
        else:
            stats.packets_s2c += 1
        line.push(pkt, d, time.monotonic())

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.suppress(OSError):
        os.nice(NICE)  # every forwarded packet waits for this process: run it before the programs
    nfq = NetfilterQueue()
    nfq.bind(args.queue, on_packet, max_len=QUEUE_MAXLEN, mode=COPY_META, sock_len=SOCK_RCVBUF)
    sock = socket.fromfd(nfq.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW)
    sock.setblocking(False)
    reader = _CountingSocket(sock, stats)
    print(f"ready queue {args.queue} c2s {spec.c2s_ms} ms s2c {spec.s2c_ms} ms", flush=True)
    next_stats = 0.0
    try:
        while not stopping:
            now = time.monotonic()
            nxt = line.next_release()
            timeout = 0.2 if nxt is None else min(0.2, max(0.0, nxt - now))
            try:
                ready, _, _ = select.select([sock], [], [], timeout)
            except InterruptedError:
                continue
            if ready:
                reader.left = reader.budget
                try:
                    nfq.run_socket(cast(socket.socket, reader))  # duck-typed: needs .recv
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
            now = time.monotonic()
            stats.max_held = max(stats.max_held, len(line))
            for due, pkt in line.pop_due(now):
                stats.released((now - due) * 1000.0)
                try:
                    pkt.accept()
                except (OSError, RuntimeError):
                    stats.errors += 1
            if args.stats is not None and now >= next_stats:
                stats.read_kernel(args.queue)
                stats.write(args.stats)
                next_stats = now + STATS_EVERY_S
    finally:
        for pkt in line.drain():
            try:
                pkt.accept()
            except (OSError, RuntimeError):
                stats.errors += 1
        stats.read_kernel(args.queue)
        nfq.unbind()
        stats.running = False
        if args.stats is not None:
            stats.write(args.stats)
        print(f"stopped {json.dumps(stats.as_dict())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
