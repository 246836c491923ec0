"""The gateway's userspace delay relay: scheduling (pure) and real namespaces (root)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.lab.capture import Capture
from sluice.lab.delay import C2S, S2C, DelayLine, DelaySpec
from sluice.lab.runner import (
    NO_DELAY_PROBABILITY,
    RTT_MAX_MS,
    RTT_MIN_MS,
    NetConditions,
    draw_conditions,
    run_session,
)
from sluice.lab.scenario import FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.topology import DELAY_QUEUE, Addressing, LabError, Topology

# -- scheduling, no root ------------------------------------------------------------------------


def test_fixed_delays_per_direction() -> None:
    line: DelayLine[str] = DelayLine(DelaySpec(30.0, 10.0))
    assert line.push("a", C2S, 1.0) == pytest.approx(1.030)
    assert line.push("b", S2C, 1.001) == pytest.approx(1.011)
    assert line.push("c", C2S, 1.002) == pytest.approx(1.032)
    assert line.next_release() == pytest.approx(1.011)
    assert line.pop_due(1.010) == []
    assert [x for _, x in line.pop_due(1.031)] == ["b", "a"]
    assert len(line) == 1
    assert line.drain() == ["c"]
    assert line.next_release() is None
    assert DelaySpec(30.0, 10.0).rtt_ms == 40.0


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        DelaySpec(-1.0, 5.0)


_arrivals = st.lists(st.tuples(st.floats(0.0, 0.05), st.sampled_from((C2S, S2C))), min_size=1, max_size=200)


def _run(spec: DelaySpec, gaps: list[tuple[float, int]], seed: int) -> list[tuple[float, int, float]]:
    line: DelayLine[int] = DelayLine(spec, random.Random(seed))
    now = 0.0
    out: list[tuple[float, int, float]] = []
    for gap, d in gaps:
        now += gap
        out.append((now, d, line.push(len(out), d, now)))
    return out


@settings(max_examples=200, deadline=None)
@given(
    gaps=_arrivals,
    c2s=st.floats(0.0, 150.0),
    s2c=st.floats(0.0, 150.0),
    jitter=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**32),
)
def test_jitter_is_bounded_and_never_reorders_a_direction(
    gaps: list[tuple[float, int]], c2s: float, s2c: float, jitter: float, seed: int
) -> None:
    spec = DelaySpec(c2s, s2c, jitter)
    eps = 1e-9
    last = {C2S: -1.0, S2C: -1.0}
    for arrival, d, release in _run(spec, gaps, seed):
        delay, j = spec.delay_s(d), jitter / 1000
        assert arrival + max(delay - j, 0.0) - eps <= release <= arrival + delay + j + eps
        assert release >= last[d] - eps  # order kept within the direction (hence every flow)
        last[d] = release


@settings(max_examples=100, deadline=None)
@given(gaps=_arrivals, jitter=st.floats(0.0, 20.0), seed=st.integers(0, 2**32))
def test_reorder_mode_keeps_the_bounds(gaps: list[tuple[float, int]], jitter: float, seed: int) -> None:
    spec = DelaySpec(40.0, 20.0, jitter, reorder=True)
    for arrival, d, release in _run(spec, gaps, seed):
        delay, j = spec.delay_s(d), jitter / 1000
        assert arrival + max(delay - j, 0.0) - 1e-9 <= release <= arrival + delay + j + 1e-9


def test_reorder_mode_does_reorder() -> None:
    out = _run(DelaySpec(20.0, 20.0, 10.0, reorder=True), [(0.0001, C2S)] * 200, 1)
    releases = [r for _, _, r in out]
    assert releases != sorted(releases)


@settings(max_examples=50, deadline=None)
@given(gaps=_arrivals, seed=st.integers(0, 2**32))
def test_pop_due_releases_in_time_order(gaps: list[tuple[float, int]], seed: int) -> None:
    line: DelayLine[int] = DelayLine(DelaySpec(5.0, 50.0, 3.0), random.Random(seed))
    now = 0.0
    released: list[float] = []
    for i, (gap, d) in enumerate(gaps):
        now += gap
        line.push(i, d, now)
        released += [t for t, _ in line.pop_due(now)]
        assert all(t <= now for t in released)
    released += [t for t, _ in line.pop_due(now + 1.0)]
    assert released == sorted(released) and len(released) == len(gaps)


def test_runner_rtt_draws() -> None:
    draws = [draw_conditions(random.Random(f"t/{i}")) for i in range(4000)]
    zero = [n for n in draws if n.rtt_ms == 0]
    assert abs(len(zero) / len(draws) - NO_DELAY_PROBABILITY) < 0.03
    rest = [n for n in draws if n.rtt_ms > 0]
    assert all(RTT_MIN_MS - 0.2 <= n.rtt_ms <= RTT_MAX_MS + 0.2 for n in rest)
    assert all(0.25 <= n.c2s_ms / n.rtt_ms <= 0.75 for n in rest if n.rtt_ms >= 10)
    assert all(n.jitter_ms <= 0.05 * min(n.c2s_ms, n.s2c_ms) + 0.01 for n in rest)
    # log-uniform: about as many sessions under 12 ms as over it
    assert 0.4 < sum(n.rtt_ms < 12.2 for n in rest) / len(rest) < 0.6
    assert max(n.rtt_ms for n in rest) > 140
    assert all(draw_conditions(random.Random(i), 40.0).rtt_ms <= 40.2 for i in range(300))


# -- real namespaces, root ----------------------------------------------------------------------


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the delay relay needs root (network namespaces, iptables NFQUEUE)")
    for prog in ("ip", "iptables", "tcpdump", "curl", "ping", "tshark"):
        if subprocess.run(
            ["sh", "-c", f"command -v {prog} || test -x /usr/sbin/{prog}"], capture_output=True, check=False
        ).returncode:
            pytest.skip(f"{prog} not installed (sluice lab install)")
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        pytest.skip("python netfilterqueue not installed")


def _ping_avg_ms(topo: Topology, n: int = 5) -> float:
    r = topo.run("client", ["ping", "-c", str(n), "-i", "0.2", "-W", "2", topo.addr.server_ip], check=False)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def _rules(topo: Topology) -> str:
    return topo.run("gateway", ["iptables", "-w", "-S", "FORWARD"]).stdout


@pytest.mark.root
def test_delay_rtt_bulk_transfer_capture_and_teardown(tmp_path: Path) -> None:
    _need_root()
    www = tmp_path / "www"
    www.mkdir()
    data = random.Random(5).randbytes(3_000_000)
    (www / "bulk.bin").write_bytes(data)
    topo = Topology(tmp_path, Addressing.default())
    with topo:
        assert _ping_avg_ms(topo, 3) < 20  # no relay: the lab's own sub-ms RTT
        topo.delay(40.0, 40.0)
        assert f"--queue-num {DELAY_QUEUE}" in _rules(topo) and "bypass" not in _rules(topo)
        rtt = _ping_avg_ms(topo)
        assert 75.0 <= rtt < 400.0
        cap = Capture(topo, tmp_path / "d.pcap")
        cap.start()
        topo.spawn(
            "server",
            "httpd",
            [
                "python3",
                "-m",
                "http.server",
                "--bind",
                topo.addr.server_ip,
                "--directory",
                str(www),
                "8080",
            ],
        )
        topo.wait_port("server", 8080)
        out = tmp_path / "got.bin"
        t0 = time.monotonic()
        r = topo.run(
            "client",
            [
                "curl",
                "-sS",
                "--max-time",
                "60",
                "-o",
                str(out),
                f"http://{topo.addr.server_ip}:8080/bulk.bin",
            ],
            check=False,
            timeout=70,
        )
        secs = time.monotonic() - t0
        stats = cap.stop()
        assert r.returncode == 0, r.stderr
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert secs > 0.08 * 3  # handshake, request, a few windows: at least a few RTTs
        topo.check_delay()
        relay = topo._delay
        assert relay is not None and relay.alive()
        assert stats.dropped == 0
    # capture: every SYN -> SYN/ACK gap at the client-side tap is at least the configured RTT
    t = subprocess.run(
        [
            "tshark",
            "-r",
            str(tmp_path / "d.pcap"),
            "-Y",
            "tcp.flags.syn==1 && tcp.flags.ack==1",
            "-T",
            "fields",
            "-e",
            "tcp.analysis.ack_rtt",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    gaps = [float(x) for x in t.stdout.split()]
    assert gaps and all(g >= 0.079 for g in gaps), gaps
    # torn down with the topology: no relay process, no namespace (so no rule)
    assert relay.popen.poll() is not None
    assert not Path(f"/proc/{relay.popen.pid}").exists()
    assert not Path("/run/netns", topo.ns["gateway"]).exists()
    final = json.loads((tmp_path / "delay-stats.json").read_text())
    assert final["running"] is False
    assert [final[k] for k in ("enobufs", "errors", "queue_dropped", "user_dropped")] == [0, 0, 0, 0]
    assert final["packets_s2c"] > 2000


@pytest.mark.root
def test_killed_relay_blocks_traffic_instead_of_bypassing(tmp_path: Path) -> None:
    _need_root()
    with Topology(tmp_path, Addressing.default()) as topo:
        topo.delay(10.0, 10.0)
        assert _ping_avg_ms(topo, 2) >= 18.0
        assert topo._delay is not None
        os.killpg(topo._delay.popen.pid, signal.SIGKILL)
        topo._delay.popen.wait(timeout=5)
        r = topo.run("client", ["ping", "-c", "2", "-W", "1", topo.addr.server_ip], check=False)
        assert r.returncode != 0, r.stdout  # dropped, not passed without delay
        with pytest.raises(LabError, match="delay_died"):
            topo.check_delay()


class _Web(Scenario):
    """Plain HTTP; with ``kill`` its delay relay dies in the middle of the session."""

    kill: ClassVar[bool] = False
    name = "test-web"
    summary = "test"
    traffic_class = "benign"
    family = "http"
    programs: ClassVar[dict[str, str]] = {"curl": "curl"}

    def run(self, s: Session, variant: str) -> Outcome:
        log = s.start_httpd(s.addr.server_ip, 8080)
        rep = s.web_traffic(f"http://{s.addr.server_ip}:8080", bulk=False, timeout=5)
        proc = s.topo._delay
        if self.kill and proc is not None:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        out = Outcome([FlowRule("web", 6, s.addr.server_ip, 8080, "benign", "http")], ["curl"])
        verify_web(rep, out, log, [s.addr.client_ip])
        return out


class _KillRelay(_Web):
    kill = True


@pytest.mark.root
def test_session_with_a_dead_relay_fails_and_writes_no_label(tmp_path: Path) -> None:
    _need_root()
    rep = run_session(
        _KillRelay(), 0, seed=1, out=tmp_path, duration_s=1.0, conditions=NetConditions(20.0, 20.0, 0.0)
    )
    assert rep.status == "failed" and "delay_died" in rep.message, rep
    assert not list(tmp_path.rglob("*.labels.json")) and not list(tmp_path.rglob("*.pcap"))
    ok = run_session(
        _Web(), 0, seed=1, out=tmp_path, duration_s=1.0, conditions=NetConditions(20.0, 30.0, 1.0)
    )
    assert ok.status == "ok", ok
    assert ok.labels is not None
    doc = json.loads(ok.labels.read_text())
    assert doc["params"]["rtt_ms"] == 50.0
    assert (doc["params"]["delay_c2s_ms"], doc["params"]["delay_s2c_ms"]) == (20.0, 30.0)
    relay = doc["verified"]["delay_relay"]
    assert relay["running"] is False and relay["enobufs"] == 0 and relay["packets_s2c"] > 0
