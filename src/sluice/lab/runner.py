"""Run lab sessions: topology, capture, scenario, verification, label file, teardown.

One session = one topology, one capture file, one label file.  Sessions are independent (their
own namespaces, work directory and interface names) and run in a thread pool.  On Ctrl-C or
SIGTERM every topology still up is torn down before the exception propagates.
"""

from __future__ import annotations

__all__ = [
    "NetConditions",
    "SessionReport",
    "draw_conditions",
    "interrupt_handlers",
    "run_lab",
    "run_session",
    "software_versions",
]

import contextlib
import hashlib
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import sluice
from sluice.errors import CaptureError
from sluice.lab.capture import CAPTURE_FILTER, Capture, CaptureStats
from sluice.lab.flowsum import ObservedFlow, summarize_capture
from sluice.lab.labels import LABEL_FORMAT, LABEL_SUFFIX, write_label_file
from sluice.lab.scenario import FlowRule, Outcome, Scenario, Session
from sluice.lab.topology import (
    LOSS_COUNTERS,
    Addressing,
    LabError,
    Topology,
    clean_stale,
    teardown_all,
)

COMMON_PROGRAMS = {"curl": "curl", "tcpdump": "tcpdump"}
SHAPING_PROBABILITY = 0.25
"""Share of sessions whose gateway gets a token-bucket rate limit."""
NO_DELAY_PROBABILITY = 0.15
"""Share of sessions without added round-trip time (the lab's own ~0.05 ms)."""
RTT_MIN_MS, RTT_MAX_MS = 1.0, 150.0
"""Range of the added round-trip time of the other sessions (log-uniform)."""
RTT_CAP_MS: dict[str, float] = {}
"""Lower RTT caps for scenarios whose carriers are too slow for ``RTT_MAX_MS`` (by name)."""
JITTER_PROBABILITY = 0.5
"""Share of delayed sessions with jitter (up to 5 % of the one-way delay, never reordering)."""

_stop = threading.Event()


@dataclass(frozen=True, slots=True)
class SessionReport:
    """Result of one session."""

    session_id: str
    """``<scenario>-<variant>-s<seed>-<index>``."""
    scenario: str
    """Scenario name."""
    variant: str
    """Variant that ran."""
    status: str
    """``ok``, ``failed`` or ``skipped``."""
    message: str
    """Why it failed or was skipped (empty when ok)."""
    capture: Path | None
    """Capture file (only when ok)."""
    labels: Path | None
    """Label file (only when ok)."""
    seconds: float
    """Wall time of the session."""
    packets: int
    """Packets in the capture."""
    capture_bytes: int
    """Size of the capture file."""


def software_versions(programs: Sequence[str], package_of: dict[str, str]) -> list[dict[str, str]]:
    """Name, Debian package and package version of each program."""
    out = []
    for prog in programs:
        if prog == "python3":
            out.append({"name": "python3", "package": "python3", "version": platform.python_version()})
            continue
        pkg = package_of.get(prog, prog)
        r = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True, check=False
        )
        out.append({"name": prog, "package": pkg, "version": r.stdout.strip() or "unknown"})
    return out


def _flow_json(fl: ObservedFlow, rule: FlowRule | None) -> dict[str, Any]:
    k = fl.key
    d: dict[str, Any] = {
        "proto": k.proto,
        "src": k.src,
        "sport": k.sport,
        "dst": k.dst,
        "dport": k.dport,
        "packets": fl.packets,
        "bytes": fl.bytes,
        "fwd_bytes": fl.fwd_bytes,
        "rev_bytes": fl.rev_bytes,
        "first_ts": fl.first_ts,
        "last_ts": fl.last_ts,
    }
    if rule is not None:
        d |= {"class": rule.traffic_class, "family": rule.family, "rule": rule.name}
    return d


def _label(
    flows: Sequence[ObservedFlow], rules: Sequence[FlowRule]
) -> list[tuple[ObservedFlow, FlowRule | None]]:
    return [(fl, next((r for r in rules if r.matches(fl.key)), None)) for fl in flows]


def _verify(outcome: Outcome, labeled: Sequence[tuple[ObservedFlow, FlowRule | None]]) -> list[str]:
    """Problems of the session: the scenario's own, plus the capture check of carrier bytes."""
    problems = list(outcome.problems)
    carrier = [fl for fl, r in labeled if r is not None and r.carrier]
    carried = sum(fl.bytes for fl in carrier)
    if not carrier:
        problems.append("no carrier flow in the capture")
    elif carried < outcome.carried_bytes:
        problems.append(f"carrier flows hold {carried} bytes < {outcome.carried_bytes} payload bytes")
    return problems


@dataclass(frozen=True, slots=True)
class NetConditions:
    """Delay the gateway adds to a session (all zero: none)."""

    c2s_ms: float
    """One-way delay client→server."""
    s2c_ms: float
    """One-way delay server→client."""
    jitter_ms: float
    """Bound of the per-packet variation of each one-way delay."""

    @property
    def rtt_ms(self) -> float:
        """Added round-trip time."""
        return round(self.c2s_ms + self.s2c_ms, 1)


def draw_conditions(rng: random.Random, max_rtt_ms: float = RTT_MAX_MS) -> NetConditions:
    """Round-trip time for a session: none with ``NO_DELAY_PROBABILITY``, else log-uniform.

    The RTT is log-uniform over [``RTT_MIN_MS``, ``max_rtt_ms``] (as many sessions at 1–10 ms as
    at 10–100 ms), split between the directions at a random share in [0.3, 0.7].
    """
    if rng.random() < NO_DELAY_PROBABILITY:
        return NetConditions(0.0, 0.0, 0.0)
    hi = max(RTT_MIN_MS, min(max_rtt_ms, RTT_MAX_MS))
    rtt = math.exp(rng.uniform(math.log(RTT_MIN_MS), math.log(hi)))
    c2s = round(rtt * rng.uniform(0.3, 0.7), 1)
    s2c = round(max(rtt - c2s, 0.1), 1)
    jitter = round(rng.uniform(0.0, 0.05) * min(c2s, s2c), 2) if rng.random() < JITTER_PROBABILITY else 0.0
    return NetConditions(c2s, s2c, jitter)


def _session_rng(seed: int, scenario: str, variant: str, index: int) -> random.Random:
    # variety for the lab, not secrecy: keys and passwords come from `secrets`
    return random.Random(f"sluice-lab/{seed}/{scenario}/{variant}/{index}")  # noqa: S311


def run_session(
    scen: Scenario,
    index: int,
    *,
    seed: int,
    out: Path,
    duration_s: float = 3.0,
    variant: str | None = None,
    conditions: NetConditions | None = None,
    pins: Mapping[str, str] | None = None,
) -> SessionReport:
    """Run one session of ``scen`` and write its capture and (if verified) its label file.

    Args:
        scen: the scenario.
        index: session number (chooses the variant unless ``variant`` is given).
        seed: run seed; with scenario, variant and index it seeds everything random.
        out: output directory; files go to ``out/<scenario>/``.
        duration_s: target length of the payload mix.
        variant: force this variant.
        conditions: force this delay instead of drawing one.
        pins: session parameters to fix (:attr:`Session.pins`).
    """
    variant = variant or scen.variants[index % len(scen.variants)]
    sid = f"{scen.name}-{variant}-s{seed}-{index:03d}"
    t0 = time.monotonic()

    def report(
        status: str, msg: str, cap: Path | None = None, lab: Path | None = None, packets: int = 0
    ) -> SessionReport:
        size = cap.stat().st_size if cap is not None and cap.exists() else 0
        return SessionReport(
            sid, scen.name, variant, status, msg, cap, lab, round(time.monotonic() - t0, 2), packets, size
        )

    missing = scen.missing()
    if missing:
        return report("skipped", f"not installed: {', '.join(missing)} (sluice lab install)")
    if _stop.is_set():
        return report("skipped", "interrupted")
    rng = _session_rng(seed, scen.name, variant, index)
    outdir = out / scen.name
    outdir.mkdir(parents=True, exist_ok=True)
    pcap = outdir / f"{sid}.pcap"
    labels_path = outdir / f"{sid}{LABEL_SUFFIX}"
    labels_path.unlink(missing_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"sluice-lab-{scen.name}-"))
    workdir.chmod(0o755)
    outcome: Outcome | None = None
    stats = CaptureStats(0, 0)
    relay: dict[str, int | float | bool] = {}
    error = ""
    started = time.time()
    topo = Topology(workdir, Addressing.random(rng))
    session = Session(topo, rng, duration_s, pins)
    try:
        with topo:
            if rng.random() < SHAPING_PROBABILITY:
                rate_kbit = rng.randrange(10_000, 200_000, 1000)
                session.params["shaping_kbit"] = rate_kbit
                topo.shape(rate_kbit)
            cap_ms = getattr(scen, "max_rtt_ms", RTT_CAP_MS.get(scen.name, RTT_MAX_MS))
            net = draw_conditions(rng, float(cap_ms)) if conditions is None else conditions
            session.params |= {
                "rtt_ms": net.rtt_ms,
                "delay_c2s_ms": net.c2s_ms,
                "delay_s2c_ms": net.s2c_ms,
                "jitter_ms": net.jitter_ms,
            }
            if net.rtt_ms > 0:
                topo.delay(net.c2s_ms, net.s2c_ms, net.jitter_ms, seed=rng.randrange(2**32))
            cap = Capture(topo, pcap)
            cap.start()
            try:
                outcome = scen.run(session, variant)
                time.sleep(0.2)
                topo.check_delay()
            finally:
                stats = cap.stop()
        relay = topo.delay_stats()  # final counters, written by the relay as it stopped
        if any(relay.get(k) for k in LOSS_COUNTERS):
            raise LabError("lab.delay_lost", f"delay relay lost packets: {relay}")
    except LabError as exc:
        error = str(exc)
    except Exception as exc:  # a scenario bug: keep the run going, report it
        error = f"internal: {exc!r} " + traceback.format_exc(limit=3)[-600:]
    try:
        summary = summarize_capture(pcap) if pcap.exists() else None
    except CaptureError as exc:
        error = error or str(exc)
        summary = None
    problems = [error] if error else []
    labeled: list[tuple[ObservedFlow, FlowRule | None]] = []
    if outcome is not None and summary is not None and not error:
        labeled = _label(summary.flows, outcome.rules)
        problems = _verify(outcome, labeled)
        if stats.dropped:
            problems.append(f"capture lost {stats.dropped} packets")
    if problems or outcome is None or summary is None:
        _keep_logs(workdir, out / "_failed" / sid)
        shutil.rmtree(workdir, ignore_errors=True)
        pcap.unlink(missing_ok=True)
        return report("failed", "; ".join(problems) or "no outcome")
    doc = {
        "format": LABEL_FORMAT,
        "session_id": sid,
        "capture": pcap.name,
        "capture_sha256": hashlib.sha256(pcap.read_bytes()).hexdigest(),
        "capture_filter": CAPTURE_FILTER,
        "capture_point": "gateway interface g0 (client side)",
        "scenario": scen.name,
        "variant": variant,
        "class": scen.traffic_class,
        "family": scen.family,
        "seed": seed,
        "session_index": index,
        "started": started,
        "duration_s": round(time.monotonic() - t0, 3),
        "params": session.params,
        "software": software_versions(outcome.software, {**COMMON_PROGRAMS, **scen.programs}),
        "sluice_version": sluice.__version__,
        "topology": {
            "client": topo.addr.client_ip,
            "gateway": [topo.addr.gw_client_ip, topo.addr.gw_server_ip],
            "server": topo.addr.server_ip,
        },
        "verified": {
            "ok": True,
            "checks": outcome.checks,
            "carrier_bytes": sum(fl.bytes for fl, r in labeled if r and r.carrier),
            "payload_bytes": outcome.carried_bytes,
            "tcpdump_captured": stats.captured,
            "tcpdump_dropped": stats.dropped,
            **({"delay_relay": relay} if relay else {}),
        },
        "flows": [_flow_json(fl, r) for fl, r in labeled if r is not None],
        "unlabeled": [_flow_json(fl, None) for fl, r in labeled if r is None],
        "other_packets": summary.other,
    }
    write_label_file(labels_path, doc)
    shutil.rmtree(workdir, ignore_errors=True)
    return report("ok", "", pcap, labels_path, summary.packets)


def _keep_logs(workdir: Path, dest: Path) -> None:
    """Copy the logs and configs of a failed session for inspection (no keys, no payload)."""
    with contextlib.suppress(OSError):
        dest.mkdir(parents=True, exist_ok=True)
        for f in workdir.rglob("*"):
            if (
                f.is_file()
                and f.suffix in (".log", ".conf", ".json", ".jsonl", ".yml", ".txt")
                and f.stat().st_size < 2_000_000
                and "www" not in f.parts
            ):
                shutil.copy2(f, dest / f.name)


@contextlib.contextmanager
def interrupt_handlers() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt in the main thread while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, _term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_lab(
    plan: Sequence[tuple[Scenario, str | None]],
    *,
    sessions: int,
    seed: int,
    out: Path,
    jobs: int = 1,
    duration_s: float = 3.0,
    progress: Callable[[SessionReport], None] | None = None,
    conditions: NetConditions | None = None,
    pins: Mapping[str, str] | None = None,
) -> list[SessionReport]:
    """Run ``sessions`` sessions of every (scenario, variant) in ``plan``.

    Tears every topology down on Ctrl-C/SIGTERM, then re-raises ``KeyboardInterrupt``.
    ``conditions`` forces one delay on every session (else each draws its own); ``pins`` fixes
    session parameters (:attr:`Session.pins`).
    """
    if os.geteuid() != 0:
        raise LabError("lab.not_root", "the lab needs root (network namespaces)")
    clean_stale()
    _stop.clear()
    out.mkdir(parents=True, exist_ok=True)
    work = [(sc, var, i) for sc, var in plan for i in range(sessions)]
    reports: list[SessionReport] = []

    def one(item: tuple[Scenario, str | None, int]) -> SessionReport:
        sc, var, i = item
        return run_session(
            sc, i, seed=seed, out=out, duration_s=duration_s, variant=var, conditions=conditions, pins=pins
        )

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    with interrupt_handlers():
        try:
            futures: list[Future[SessionReport]] = [pool.submit(one, w) for w in work]
            for fut in futures:
                rep = fut.result()
                reports.append(rep)
                if progress is not None:
                    progress(rep)
        except KeyboardInterrupt:
            _stop.set()
            teardown_all()
            pool.shutdown(wait=True, cancel_futures=True)
            teardown_all()
            print("sluice lab: interrupted, lab torn down", file=sys.stderr)
            raise
        finally:
            pool.shutdown(wait=True)
    return reports
