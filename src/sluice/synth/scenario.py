"""Traffic mixes: many concurrent flows of many kinds, merged in timestamp order.

Theory of operation
-------------------
:func:`generate` first plans ``n_flows`` flows (kind drawn from the mix, start times from a
Poisson arrival process, client, server, server name, RTT, response sizes), all from one
``seeded(seed)``. When ``min_packets`` is given it estimates the packet count of the plan
and scales every response size by one factor so that the estimate meets the budget.

Flows are then built lazily, in start order, when the merge reaches their start time: the
returned :class:`Scenario` keeps a heap of the next frame of every active flow and yields frames
in global timestamp order, so memory holds only the flows in progress. If the built flows fall
short of ``min_packets``, more flows are planned after the last one until the budget is met.

Real TLS and QUIC handshakes come from a :class:`~sluice.synth.payloads.PayloadPool` (a few per
server name, reused with other 5-tuples); bulk data is random filler in TLS records or QUIC
short-header packets. Plans, sizes, addresses, timings and all non-cryptographic bytes are a
function of the seed; handshake bytes come from OpenSSL/aioquic randomness unless a saved pool
is passed in.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MIX", "Scenario", "generate"]

import dataclasses
import heapq
import math
import random
from collections.abc import Iterator, Mapping, Sequence

from sluice.errors import ConfigError
from sluice.synth._rand import seeded
from sluice.synth.flows import (
    BUILDERS,
    DEFAULT_DOMAINS,
    QUIC_DOMAINS,
    FlowSpec,
    build_flow,
    client_mac,
    ephemeral_port,
    estimate_packets,
    server_address,
)
from sluice.synth.payloads import PayloadPool
from sluice.synth.sessions import EthernetFraming, Frame
from sluice.synth.truth import GroundTruth
from sluice.wire.frame import LinkType

DEFAULT_MIX: dict[str, float] = {
    "https": 0.30,
    "tls_bulk": 0.02,
    "quic": 0.15,
    "dns": 0.36,
    "dns_tcp": 0.02,
    "http": 0.10,
    "ssh": 0.03,
    "socks5": 0.02,
}
"""Share of flows per kind when the caller gives no mix."""

GATEWAY_MAC = b"\x02\x00\x5e\x00\x00\x01"
"""MAC of the router every client talks to."""
RESOLVER_V4 = "10.0.0.53"
"""The clients' DNS resolver (IPv4)."""
RESOLVER_V6 = "fd00:5::53"
"""The clients' DNS resolver (IPv6)."""
SOCKS_PROXY = "198.51.100.10"
"""The SOCKS5 proxy some clients use."""
DEFAULT_START_TS = 1_720_000_000.0
"""Default time of the first flow (2024-07-03)."""
MIN_SIZE_SCALE = 0.02
"""Smallest factor a packet budget may apply to response sizes."""
MAX_EXTRA_FLOWS_FACTOR = 100
"""Top-up flows allowed, as a multiple of ``n_flows``, before giving up on ``min_packets``."""


def _lognormal(rng: random.Random, median: float, sigma: float, cap: float) -> int:
    return int(min(rng.lognormvariate(math.log(median), sigma), cap))


class _Planner:
    """Draws flow specs from the mix, deterministically from one random source."""

    def __init__(
        self,
        rng: random.Random,
        mix: Mapping[str, float],
        *,
        start_ts: float,
        flows_per_s: float,
        ipv6_fraction: float,
        vlan_fraction: float,
        domains: Sequence[str],
        n_clients: int,
    ) -> None:
        self.rng = rng
        self.kinds = list(mix)
        total = sum(mix.values())
        acc = 0.0
        self.cum: list[float] = []
        for k in self.kinds:
            acc += mix[k] / total
            self.cum.append(acc)
        self.t = start_ts
        self.flows_per_s = flows_per_s
        self.ipv6_fraction = ipv6_fraction
        self.vlan_fraction = vlan_fraction
        self.domains = list(domains)
        self.quic_domains = [d for d in self.domains if d in QUIC_DOMAINS] or self.domains[:12]
        self.n_clients = n_clients
        self.used: set[tuple[str, int, str, int, str]] = set()
        self._framings: dict[tuple[str, tuple[int, ...]], EthernetFraming] = {}

    def _client_ip(self, i: int, v6: bool) -> str:
        if v6:
            return f"fd00:5::{i + 0x100:x}"
        return f"10.{1 + i // 62500}.{(i // 250) % 250}.{i % 250 + 2}"

    def _sizes(self, kind: str) -> tuple[int, ...]:
        r = self.rng
        if kind == "https":
            return tuple(_lognormal(r, 15000, 1.5, 2e6) + 200 for _ in range(r.randrange(1, 9)))
        if kind == "tls_bulk":
            return (_lognormal(r, 2e6, 0.8, 3e7),)
        if kind == "quic":
            return (_lognormal(r, 30000, 1.5, 5e6),)
        if kind == "http":
            return tuple(_lognormal(r, 8000, 1.2, 1e6) + 100 for _ in range(r.randrange(1, 4)))
        if kind == "ssh":
            return (_lognormal(r, 1e6, 1.0, 2e7),) if r.random() < 0.2 else ()
        if kind == "socks5":
            return (_lognormal(r, 20000, 1.5, 2e6),)
        if kind == "dns_tcp":
            return (r.randrange(600, 3000),)
        return ()

    def _variant(self, kind: str) -> str:
        r = self.rng.random()
        if kind in ("https", "tls_bulk", "socks5"):
            return "1.2" if r < 0.2 else "1.3"
        if kind == "quic":
            return "2" if r < 0.1 else "1"
        if kind == "dns":
            return "A" if r < 0.62 else "AAAA" if r < 0.95 else "TXT"
        if kind == "dns_tcp":
            return "TXT" if r < 0.5 else "A"
        return ""

    def plan(self, flow_id: int, scale: float) -> FlowSpec:
        r = self.rng
        self.t += r.expovariate(self.flows_per_s)
        kind = self.kinds[min(self._bisect(r.random()), len(self.kinds) - 1)]
        v6 = r.random() < self.ipv6_fraction
        cidx = r.randrange(self.n_clients)
        cip = self._client_ip(cidx, v6)
        host = r.choice(self.quic_domains if kind == "quic" else self.domains)
        if kind in ("dns", "dns_tcp"):
            server = (RESOLVER_V6 if v6 else RESOLVER_V4, 53)
        elif kind == "socks5":
            server = (SOCKS_PROXY, 1080)
            cip = self._client_ip(cidx, False)
        else:
            port = {"http": 80, "ssh": 22}.get(kind, 443)
            server = (server_address(host, 6 if v6 else 4), port)
        transport = "udp" if kind in ("dns", "quic") else "tcp"
        while True:
            cport = ephemeral_port(r)
            key = (cip, cport, server[0], server[1], transport)
            if key not in self.used:
                self.used.add(key)
                break
        vlans: tuple[int, ...] = (r.randrange(2, 4000),) if r.random() < self.vlan_fraction else ()
        fkey = (cip, vlans)
        framing = self._framings.get(fkey)
        if framing is None:
            framing = EthernetFraming(client_mac(cip), GATEWAY_MAC, vlans=vlans)
            self._framings[fkey] = framing
        sizes = self._sizes(kind)
        if scale != 1.0:
            sizes = tuple(max(int(s * scale), 64) for s in sizes)
        return FlowSpec(
            flow_id=flow_id,
            kind=kind,
            start_ts=self.t,
            client=(cip, cport),
            server=server,
            host=host,
            rtt_s=min(max(r.lognormvariate(math.log(0.03), 0.6), 0.002), 0.4),
            sizes=sizes,
            variant=self._variant(kind),
            seed=r.randrange(1 << 62),
            framing=framing,
            rate_bps=r.choice((20e6, 50e6, 100e6, 300e6)),
            reorder=transport == "tcp" and r.random() < 0.02,
        )

    def _bisect(self, x: float) -> int:
        lo, hi = 0, len(self.cum)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cum[mid] <= x:
                lo = mid + 1
            else:
                hi = mid
        return lo


def _check_mix(mix: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(mix) - set(BUILDERS))
    if unknown:
        raise ConfigError("mix", f"unknown kinds {unknown}; known: {sorted(BUILDERS)}")
    if any(not math.isfinite(w) or w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ConfigError("mix", "weights must be finite, non-negative and not all zero")
    return {k: float(w) for k, w in mix.items() if w > 0}


class Scenario(Iterator[Frame]):
    """The frames of a generated mix in timestamp order, and their ground truth.

    Iterate to get ``(ts, frame)`` pairs (Ethernet frames). :attr:`truth` grows as flows are
    built and is complete once iteration ends.
    """

    linktype: int = LinkType.ETHERNET
    """Link type of every frame."""

    def __init__(
        self,
        planner: _Planner,
        specs: list[FlowSpec],
        pool: PayloadPool,
        *,
        min_packets: int,
        scale: float,
        meta: dict[str, object],
    ) -> None:
        self.pool = pool
        """The payload pool (save it with ``to_json`` to reproduce handshake bytes)."""
        self.truth = GroundTruth(meta=dict(meta))
        """One :class:`~sluice.synth.truth.FlowTruth` per built flow."""
        self.packets_built = 0
        """Frames of all flows built so far."""
        self._planner = planner
        self._specs = specs
        self._min_packets = min_packets
        self._scale = scale
        self._it = self._run()

    def __next__(self) -> Frame:
        return next(self._it)

    def _plans(self) -> Iterator[FlowSpec]:
        yield from self._specs
        self._specs = []
        fid = len(self.truth)
        limit = fid * (1 + MAX_EXTRA_FLOWS_FACTOR)
        while self.packets_built < self._min_packets and fid < limit:
            yield self._planner.plan(fid, self._scale)
            fid += 1

    def _run(self) -> Iterator[Frame]:
        heap: list[tuple[float, int, int]] = []
        active: dict[int, list[Frame]] = {}
        plans = self._plans()
        nxt = next(plans, None)
        while True:
            while nxt is not None and (not heap or nxt.start_ts <= heap[0][0]):
                frames, truth = build_flow(nxt, self.pool)
                self.truth.append(truth)
                self.packets_built += len(frames)
                active[nxt.flow_id] = frames
                heapq.heappush(heap, (frames[0][0], nxt.flow_id, 0))
                nxt = next(plans, None)
            if not heap:
                break
            _, fid, i = heap[0]
            frames = active[fid]
            yield frames[i]
            if i + 1 < len(frames):
                heapq.heapreplace(heap, (frames[i + 1][0], fid, i + 1))
            else:
                heapq.heappop(heap)
                del active[fid]
        self.truth.meta["flows"] = len(self.truth)
        self.truth.meta["packets"] = self.packets_built
        self.truth.meta["handshakes_made"] = self.pool.handshakes_made


def generate(
    n_flows: int,
    seed: int,
    *,
    mix: Mapping[str, float] | None = None,
    min_packets: int = 0,
    start_ts: float = DEFAULT_START_TS,
    flows_per_s: float = 200.0,
    ipv6_fraction: float = 0.15,
    vlan_fraction: float = 0.0,
    domains: Sequence[str] | None = None,
    n_clients: int | None = None,
    pool: PayloadPool | None = None,
) -> Scenario:
    """Generate a realistic traffic mix as Ethernet frames in timestamp order.

    Args:
        n_flows: number of flows to plan (more are added if ``min_packets`` needs them).
        seed: seed of every random choice.
        mix: share of flows per kind (keys of :data:`sluice.synth.flows.BUILDERS`:
            ``https``, ``tls_bulk``, ``quic``, ``dns``, ``dns_tcp``, ``http``, ``ssh``,
            ``socks5``); default :data:`DEFAULT_MIX`.
        min_packets: packet budget: response sizes are scaled to meet it and flows added
            until the capture has at least this many frames (0: no budget, sizes as drawn).
        start_ts: time of the first flow's arrival process.
        flows_per_s: mean rate of new flows.
        ipv6_fraction: share of flows over IPv6.
        vlan_fraction: share of flows with an 802.1Q tag.
        domains: server names to use (default :data:`~sluice.synth.flows.DEFAULT_DOMAINS`).
        n_clients: number of client hosts (default ``max(8, n_flows // 25)``).
        pool: payload pool to draw handshakes from (default a new one seeded with ``seed``).

    Returns:
        A :class:`Scenario`: iterate it for ``(ts, frame)``; its ``truth`` is the
        :class:`~sluice.synth.truth.GroundTruth`.

    Raises:
        ConfigError: ``mix`` names an unknown kind or has invalid weights, or another
            parameter is out of range.
    """
    if n_flows < 1:
        raise ConfigError("n_flows", f"must be at least 1, got {n_flows}")
    if flows_per_s <= 0:
        raise ConfigError("flows_per_s", f"must be positive, got {flows_per_s}")
    for name, frac in (("ipv6_fraction", ipv6_fraction), ("vlan_fraction", vlan_fraction)):
        if not 0 <= frac <= 1:
            raise ConfigError(name, f"must be within [0, 1], got {frac}")
    weights = _check_mix(DEFAULT_MIX if mix is None else mix)
    doms = list(domains) if domains is not None else list(DEFAULT_DOMAINS)
    if not doms:
        raise ConfigError("domains", "need at least one server name")
    rng = seeded(seed)
    planner = _Planner(
        rng,
        weights,
        start_ts=start_ts,
        flows_per_s=flows_per_s,
        ipv6_fraction=ipv6_fraction,
        vlan_fraction=vlan_fraction,
        domains=doms,
        n_clients=n_clients or max(8, n_flows // 25),
    )
    specs = [planner.plan(i, 1.0) for i in range(n_flows)]
    scale = 1.0
    if min_packets > 0:
        fixed = var = 0.0
        for s in specs:
            f, v = estimate_packets(s.kind, s.sizes)
            fixed += f
            var += v
        if var > 0:
            scale = max((min_packets * 1.02 - fixed) / var, MIN_SIZE_SCALE)
            specs = [
                dataclasses.replace(s, sizes=tuple(max(int(x * scale), 64) for x in s.sizes)) for s in specs
            ]
    meta: dict[str, object] = {
        "generator": "sluice.synth.scenario.generate",
        "seed": seed,
        "n_flows": n_flows,
        "min_packets": min_packets,
        "mix": weights,
        "size_scale": scale,
        "start_ts": start_ts,
        "linktype": int(LinkType.ETHERNET),
    }
    return Scenario(
        planner,
        specs,
        pool if pool is not None else PayloadPool(seed),
        min_packets=min_packets,
        scale=scale,
        meta=meta,
    )
