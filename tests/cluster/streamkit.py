"""Real processes for the decision-stream tests: nats-server, a PostgreSQL that can be stopped and
started again, ``sluice publish`` and ``sluice collect``, and counts of what a store holds."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sluice.decisions import read_decisions
from sluice.decisions.store import is_postgres_url, store_files
from sluice.policy.model import Action, Decision, Mode
from tests.registry.conftest import PgServer

BASE_TS = 1_780_000_000.0
"""Decision times start here (2026-05-28 UTC); 30 s apart, so a few thousand span two days."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 180.0, every: float = 0.2) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Nats:
    """A ``nats-server -js`` process on a free port with its file store in ``d``."""

    def __init__(self, d: Path) -> None:
        exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.path.exists(exe):
            pytest.skip("nats-server not installed (apt install nats-server)")
        self.exe, self.dir, self.port = exe, d, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = [self.exe, "-js", "-sd", str(self.dir), "-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for("nats-server to listen", up, 60, 0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


class Pg(PgServer):
    """A throwaway PostgreSQL server that a test can stop and start again (same data, port)."""

    def halt(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
        )

    def resume(self) -> None:
        opts = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off"
        log = os.path.join(self.dir, "log")
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", self.data, "-o", opts, "-w", "-l", log, "start"],
            check=True,
            capture_output=True,
        )


def decision(i: int) -> Decision:
    """Decision ``i`` of a test gateway (flow_id = i, so counts can check every one is there)."""
    return Decision(
        time=BASE_TS + 30.0 * i,
        flow_id=i,
        flow_key=f"tcp 10.0.{i // 250 % 250}.{i % 250 + 1}:{40000 + i % 20000} > 192.0.2.{i % 200 + 1}:443",
        server_name=f"h{i}.example",
        app="tls",
        rule="block-register" if i % 3 == 0 else "(default)",
        rule_index=0 if i % 3 == 0 else -1,
        action=Action.BLOCK if i % 3 == 0 else Action.ALLOW,
        mode=Mode.ENFORCE,
        enforced=i % 3 == 0,
    )


def sluice(args: list[str], out: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m sluice ARGS`` with stdout and stderr into ``out``."""
    fh = open(out, "ab")  # noqa: SIM115 - the process owns it
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sluice", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    finally:
        fh.close()


def flow_ids(store: str | Path) -> list[int]:
    """flow_id of every decision the store holds, through the reader ``sluice decisions`` uses
    (0 rows while a PostgreSQL store is down)."""
    try:
        return [d.flow_id for d in read_decisions(store)]
    except OSError:
        return []


def stored_keys(store: str | Path) -> list[str]:
    """Every key the store holds, one entry per stored row (so duplicates would show)."""
    if is_postgres_url(store):
        import psycopg

        try:
            with psycopg.connect(str(store)) as conn:
                return [r[0] for r in conn.execute("SELECT key FROM stream_decisions")]
        except psycopg.Error:
            return []
    import pyarrow.parquet as pq

    return [
        k for p in store_files(store) for k in pq.read_table(p, columns=["key"]).column("key").to_pylist()
    ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Nats]:
    """A ``nats-server -js`` for one test."""
    n = Nats(tmp_path / "js")
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def pg() -> Iterator[Pg]:
    """A PostgreSQL server for one test."""
    pytest.importorskip("psycopg")
    server = Pg()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["parquet", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the collector stores: a Parquet directory, or a database on a real PostgreSQL."""
    if request.param == "parquet":
        return str(tmp_path / "store")
    server: Pg = request.getfixturevalue("pg")
    return server.new_database()


def collect_args(nats: Nats, store: str, *extra: str) -> list[str]:
    """``sluice collect`` arguments with short batches, ack wait and retries (a test's pace)."""
    return [
        "collect",
        "--nats",
        nats.url,
        "--store",
        store,
        "--flush-s",
        "0.3",
        "--flush-rows",
        "500",
        "--ack-wait",
        "4",
        "--retry-max",
        "2",
        *extra,
    ]
