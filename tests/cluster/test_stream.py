"""Decisions through NATS JetStream into PostgreSQL, with the shipper, the collector and the broker
killed midway (real processes): nothing lost, nothing stored twice."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.decisions.log import DecisionLog

pytest.importorskip("nats")
psycopg = pytest.importorskip("psycopg")
N = 3000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nats:
    def __init__(self, d: Path) -> None:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.path.exists(exe):
            pytest.skip("nats-server not installed (apt install nats-server)")
        self.exe, self.dir, self.port = exe, d, _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = [self.exe, "-js", "-sd", str(self.dir), "-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Nats]:
    n = Nats(tmp_path / "js")
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def store_url() -> Iterator[str]:
    from tests.registry.conftest import PgServer

    server = PgServer()
    try:
        yield server.new_database()
    finally:
        server.stop()


def _proc(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sluice.cluster.stream", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _count(url: str) -> tuple[int, int]:
    try:
        with psycopg.connect(url) as conn:
            n, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT record->>'n') FROM stream_decisions"
            ).fetchone()
            return int(n), int(distinct)
    except psycopg.Error:
        return 0, 0


@pytest.mark.slow
def test_kills_and_restarts_lose_nothing(nats_server: Nats, store_url: str, tmp_path: Path) -> None:
    log_dir, state = tmp_path / "log", tmp_path / "cursor.json"
    log = DecisionLog(log_dir, fsync="never")

    def write() -> None:  # a gateway deciding N flows over a few seconds, one rotation midway
        for i in range(N):
            log.write_dict(
                {"n": i, "action": "block" if i % 3 == 0 else "allow", "server_name": f"h{i}.example"}
            )
            if i == N // 2:
                log.rotate()
            if i % 100 == 0:
                time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    ship_args = ("ship", "--nats", nats_server.url, "--log", str(log_dir), "--producer", "gw1",
                 "--state", str(state), "--follow", "0.2")  # fmt: skip
    collect_args = ("collect", "--nats", nats_server.url, "--store", store_url)
    shipper, collector = _proc(*ship_args), _proc(*collect_args)
    procs = [shipper, collector]
    try:
        time.sleep(1.0)
        shipper.kill()  # SIGKILL midway: no chance to save anything
        shipper.wait()
        shipper = _proc(*ship_args)
        procs.append(shipper)
        end = time.monotonic() + 60
        while _count(store_url)[0] < N // 4 and time.monotonic() < end:
            time.sleep(0.1)
        collector.kill()  # SIGKILL between a commit and its acks, most likely
        collector.wait()
        nats_server.stop()  # the broker goes away and comes back with its file store
        time.sleep(1.0)
        nats_server.start()
        collector = _proc(*collect_args)
        procs.append(collector)
        writer.join()
        end = time.monotonic() + 120
        while _count(store_url)[1] < N and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(6.0)  # past ack_wait: any unacknowledged batch has come back by now
        total, distinct = _count(store_url)
        assert (total, distinct) == (N, N)
        with psycopg.connect(store_url) as conn:
            keys = conn.execute("SELECT count(DISTINCT key) FROM stream_decisions").fetchone()
        assert keys == (N,)
    finally:
        log.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
