"""`sluice gateway run --workers 2` end to end in namespaces (root only): the kernel balances the
queued packets over two queues by address, each worker decides its share and logs it, SIGHUP
reloads both, a dead worker stops the gateway with a non-zero exit."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.decisions import read_decisions
from tests.gateway.conftest import Topo, need_gateway_env, sh
from tests.gateway.helpers import (
    SERVER,
    https_server,
    make_cert,
    make_register,
    start_gateway,
    stop_gateway,
)

BLOCKED, ALLOWED = "blocked.example", "fine.example"
SERVER_IPS = [f"10.231.2.{i}" for i in range(10, 26)]
"""The kernel hashes addresses only: 16 server addresses give both queues connections
(all on one queue: probability 2**-15)."""
QUEUE = 5
POLICY = """
[[rule]]
name = "register-block"
action = "block"
mode = "{mode}"
register = true
"""


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_gateway_env()
    d = tmp_path_factory.mktemp("gww")
    cert, key = make_cert(d)
    (d / "server.py").write_text(SERVER)
    db = make_register(d, [(f"{BLOCKED}\n", "domains", "test-list")])
    return {"dir": d, "cert": cert, "key": key, "server": d / "server.py", "db": db}


@pytest.fixture
def server(topo: Topo, material: dict[str, Path]) -> Iterator[Topo]:
    for ip in SERVER_IPS:
        sh(*topo.ex(topo.srv, "ip", "addr", "add", f"{ip}/24", "dev", "s0"))
    with https_server(topo, material["server"], material["cert"], material["key"]):
        yield topo


def _gateway(topo: Topo, material: dict[str, Path], policy: Path, log: Path) -> subprocess.Popen[str]:
    args = [
        "--queue",
        str(QUEUE),
        "--workers",
        "2",
        "--policy",
        str(policy),
        "--register",
        str(material["db"]),
    ]
    args += ["--log", str(log), "--queue-bypass", "--no-detect", "--fsync", "never", "--register-poll", "0"]
    return start_gateway(topo, args)


def _curl_all(topo: Topo, name: str, per_ip: int = 1, limit: float = 10) -> list[str]:
    """HTTP status of ``per_ip`` concurrent curls to ``name`` at every server address (``limit``:
    curl's time limit, long where the page must load on a loaded machine, short where a dropped
    connection is expected)."""
    curl = ["curl", "-k", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(limit)]
    procs = [
        subprocess.Popen(
            topo.ex(topo.cli, *curl, "--resolve", f"{name}:443:{ip}", f"https://{name}/"),
            stdout=subprocess.PIPE,
            text=True,
        )
        for ip in SERVER_IPS
        for _ in range(per_ip)
    ]
    return [p.communicate(timeout=20)[0].strip() for p in procs]


def _stats(err: str) -> dict[str, object]:
    line = next(x for x in reversed(err.splitlines()) if x.startswith("{"))
    return dict(json.loads(line))


def test_two_workers_block_and_pass_and_both_decide(
    server: Topo, material: dict[str, Path], tmp_path: Path
) -> None:
    pol = tmp_path / "enforce.toml"
    pol.write_text(POLICY.format(mode="enforce"))
    log = tmp_path / "log"
    gw = _gateway(server, material, pol, log)
    try:
        ok = _curl_all(server, ALLOWED, per_ip=2)
        blocked = _curl_all(server, BLOCKED, limit=3)
    finally:
        err = stop_gateway(gw)
    assert gw.returncode == 0, err
    assert ok == ["200"] * 2 * len(SERVER_IPS) and blocked == ["000"] * len(SERVER_IPS), err
    decs = list(read_decisions(log))
    assert sorted(p.name for p in log.iterdir() if p.is_dir()) == ["worker-0", "worker-1"]
    assert {(d.server_name, d.action.value, d.enforced) for d in decs} == {
        (ALLOWED, "allow", True),
        (BLOCKED, "block", True),
    }
    assert len(decs) == 3 * len(SERVER_IPS)  # every connection decided once, by one worker
    assert len({(d.capture, d.flow_key) for d in decs}) == len({d.flow_key for d in decs}) == len(decs)
    assert [d.time for d in decs] == sorted(d.time for d in decs)  # merged by time
    by_queue = {d.capture for d in decs}
    assert by_queue == {f"nfqueue:{QUEUE}", f"nfqueue:{QUEUE + 1}"}, by_queue
    # the hash is over the addresses: every connection to one server address went to one queue
    queue_of: dict[str, set[str]] = {}
    for d in decs:
        queue_of.setdefault(d.flow_key.split(" > ")[1].rsplit(":", 1)[0], set()).add(d.capture)
    assert all(len(q) == 1 for q in queue_of.values()), queue_of
    out = _stats(err)
    stats, workers = out["stats"], out["workers"]
    assert isinstance(stats, dict) and isinstance(workers, list) and len(workers) == 2
    assert stats["decisions"] == len(decs) == sum(w["decisions"] for w in workers)
    assert all(w["decisions"] > 0 and w["exit_code"] == 0 for w in workers), workers
    assert stats["packets"] == sum(w["packets"] for w in workers)
    assert stats["marked"]["0x200"] == sum(w["marked"].get("0x200", 0) for w in workers) > 0


def test_sighup_reloads_every_worker(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    pol = tmp_path / "policy.toml"
    pol.write_text(POLICY.format(mode="shadow"))
    log = tmp_path / "log"
    gw = _gateway(server, material, pol, log)
    assert gw.stderr is not None
    try:
        assert _curl_all(server, BLOCKED) == ["200"] * len(SERVER_IPS)  # shadow: passes
        pol.write_text(POLICY.format(mode="enforce"))
        gw.send_signal(signal.SIGHUP)
        lines: list[str] = []
        pipe = gw.stderr
        assert pipe is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(pipe.readline, "")), daemon=True)
        reader.start()  # a text pipe buffers lines select() no longer sees: read them all in a thread
        reloaded: set[str] = set()
        end = time.monotonic() + 20
        while len(reloaded) < 2 and time.monotonic() < end:
            _curl_all(server, ALLOWED)  # each worker applies the reload before its next packet
            reloaded = {x.split(":")[1].strip() for x in list(lines) if "reloaded policy" in x}
        assert reloaded == {"worker 0", "worker 1"}, reloaded
        assert _curl_all(server, BLOCKED, limit=3) == ["000"] * len(SERVER_IPS)
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(15)
        reader.join(5)
        gw.stderr.close()
    err = "".join(lines)
    assert gw.returncode == 0, err
    blocked = [d for d in read_decisions(log) if d.server_name == BLOCKED]
    assert {d.mode.value for d in blocked[: len(SERVER_IPS)]} == {"shadow"}
    enforced = blocked[len(SERVER_IPS) :]
    assert len(enforced) == len(SERVER_IPS) and all(d.mode.value == "enforce" for d in enforced)
    assert {d.capture for d in enforced} == {f"nfqueue:{QUEUE}", f"nfqueue:{QUEUE + 1}"}


def test_a_dead_worker_stops_the_gateway(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    pol = tmp_path / "enforce.toml"
    pol.write_text(POLICY.format(mode="enforce"))
    gw = _gateway(server, material, pol, tmp_path / "log")
    kids = sh("pgrep", "-P", str(_gateway_pid(gw))).stdout.split()
    assert len(kids) == 2, kids
    sh("kill", "-KILL", kids[1])
    try:
        gw.wait(timeout=15)
    finally:
        err = stop_gateway(gw)
    assert gw.returncode == 3, err
    assert "(queue 6" in err and "ended: killed by signal 9; stopping the others" in err, err
    out = _stats(err)
    workers = out["workers"]
    assert isinstance(workers, list) and [w["exit_code"] for w in workers] == [0, -9]
    # fail-open: nobody listens on either queue now, new connections pass undecided
    assert _curl_all(server, BLOCKED) == ["200"] * len(SERVER_IPS)


def _gateway_pid(gw: subprocess.Popen[str]) -> int:
    """The gateway's own pid (``gw`` is ``ip netns exec``, which execs it: the same process)."""
    return gw.pid
