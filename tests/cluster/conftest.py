"""A real Dask scheduler and two workers, each its own process (the ``dask`` CLIs); the stream
tests' broker, PostgreSQL and store fixtures (:mod:`tests.cluster.streamkit`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.streamkit import nats_server, pg, store

pytest.importorskip("distributed")
__all__ = ["nats_server", "pg", "store"]  # the stream tests' fixtures

DASK = str(Path(sys.executable).with_name("dask"))
BENCH = Path(__file__).resolve().parents[2] / "bench"
NDPI = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ndpi"


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="session")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a ``dask scheduler`` process with two ``dask worker`` processes attached."""
    from sluice.cluster import open_client

    d = tmp_path_factory.mktemp("dask")
    sfile = d / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    log = open(d / "dask.log", "wb")  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--scheduler-file", str(sfile), "--port", "0", "--dashboard-address", ":0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    ]
    try:
        deadline = time.monotonic() + 120
        while not sfile.exists() or not sfile.read_text().strip():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                pytest.fail("dask scheduler did not start: " + (d / "dask.log").read_text())
            time.sleep(0.2)
        address = json.loads(sfile.read_text())["address"]
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(d),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        with open_client(address) as client:
            client.wait_for_workers(2, timeout=180)
        yield address
    finally:
        _stop(procs)
        log.close()


@pytest.fixture(scope="session")
def bench_capture() -> Path:
    """``bench/data/bench.pcap``, written by ``bench/make_capture.py`` when missing."""
    path = BENCH / "data" / "bench.pcap"
    if not path.exists():
        subprocess.run([sys.executable, str(BENCH / "make_capture.py"), "--out", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def ndpi_captures() -> list[str]:
    """The shared nDPI corpus's captures (skipped when ../shared is absent)."""
    if not NDPI.is_dir():
        pytest.skip("the shared nDPI corpus is not here")
    paths = sorted(str(p) for p in NDPI.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))
    if not paths:
        pytest.skip("the shared nDPI corpus is empty")
    return paths
