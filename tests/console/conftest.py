"""Fixtures of the console tests: a real server (uvicorn in a thread, a free port) over a real
register (SQLite, and PostgreSQL on a throwaway server), seeded with entries, proposals and a
decision log."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx
import uvicorn

from sluice.console.auth import Role
from sluice.console.service import Console, ConsoleConfig
from sluice.decisions import DecisionLog
from sluice.policy.model import Action, Decision, Mode, RegisterRef
from sluice.registry.model import Kind, Proposal
from sluice.registry.proposals import propose
from sluice.registry.service import import_paths
from sluice.registry.stores import open_store

ROOT = Path(__file__).resolve().parents[2]
DEMO_PCAP = ROOT / "examples" / "demo.pcapng"
PASSWORD = "correct horse battery staple"
USERS = {"ada": Role.ADMIN, "rita": Role.REVIEWER, "vic": Role.VIEWER}
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    """A running console."""

    url: str
    console: Console
    tmp: Path
    proposal_ids: list[int] = field(default_factory=list)

    @contextlib.contextmanager
    def client(self, user: str | None = None) -> Iterator[httpx.Client]:
        """An HTTP client, logged in as ``user`` (cookie + CSRF header) when given."""
        with httpx.Client(base_url=self.url, timeout=60) as c:
            if user:
                r = c.post("/api/v1/session", json={"username": user, "password": PASSWORD})
                assert r.status_code == 200, r.text
                c.headers["X-CSRF-Token"] = r.json()["csrf"]
            yield c

    def token(self, user: str, role: str | None = None) -> str:
        with self.client(user) as c:
            r = c.post("/api/v1/tokens", json={"name": f"{user}-script", "role": role})
            assert r.status_code == 201, r.text
            return str(r.json()["token"])


def seed_register(target: str, tmp: Path) -> list[int]:
    lst = tmp / "seed.txt"
    lst.write_text(
        "\n".join([*(f"site{i:03d}.example" for i in range(120)), "*.blocked.test", "198.51.100.0/24"]) + "\n"
    )
    import_paths(target, [lst], "domains", source="seed")
    store = open_store(target)
    try:
        ids = [
            propose(
                store,
                Proposal(
                    Kind.DOMAIN,
                    f"vpn{i}.provider.test",
                    "vpn-services",
                    f"endpoint {i} of a VPN",
                    {"flows": i},
                ),
            )
            for i in range(4)
        ]
    finally:
        store.close()
    return ids


def decision(i: int, **kw: Any) -> Decision:
    base: dict[str, Any] = {
        "time": T0 + i * 60,
        "flow_id": i,
        "flow_key": f"tcp 10.0.0.{i % 5 + 1}:{40000 + i} > 203.0.113.{i % 7}:443",
        "server_name": f"host{i % 10}.example.org",
        "app": "tls",
        "rule": "default",
        "rule_index": -1,
        "action": Action.ALLOW,
        "mode": Mode.ENFORCE,
        "enforced": True,
    }
    base.update(kw)
    return Decision(**base)


def seed_decisions(log_dir: Path) -> None:
    with DecisionLog(log_dir, fsync="never") as log:
        for i in range(200):
            if i % 4 == 0:
                log.write(
                    decision(
                        i,
                        action=Action.BLOCK,
                        rule="register-block",
                        rule_index=0,
                        server_name=f"site{i % 120:03d}.example",
                        register=(
                            RegisterRef(
                                f"site{i % 120:03d}.example",
                                "domain.exact",
                                "seed",
                                "domain",
                                f"site{i % 120:03d}.example",
                                ("seed",),
                            ),
                        ),
                    )
                )
            elif i % 4 == 1:
                log.write(
                    decision(
                        i,
                        action=Action.LOG,
                        rule="findings-log",
                        rule_index=1,
                        verdict_class="vpn",
                        family="wireguard",
                        confidence=0.97,
                        evidence=("wireguard.handshake: size=148",),
                    )
                )
            else:
                log.write(decision(i))


def start(cfg: ConsoleConfig, tmp: Path) -> Iterator[Live]:
    from sluice.console.app import create_app

    console = Console(cfg)
    for name, role in USERS.items():
        console.users.create(name, role, PASSWORD)
    app = create_app(cfg, console=console)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/api/v1/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    console.decisions.refresh()
    try:
        yield Live(url, console, tmp)
    finally:
        server.should_exit = True
        th.join(timeout=30)
        console.close()


class PgServer:
    """A throwaway PostgreSQL cluster on a Unix socket (a free port of its own, so that it can
    run beside the register tests' server)."""

    def __init__(self) -> None:
        from tests.registry.conftest import _pg_bin

        initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or self.pg_ctl is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
        self.dir = tempfile.mkdtemp(prefix="sluice-console-pg-")
        self.prefix: list[str] = []
        self.user = pwd.getpwuid(os.getuid()).pw_name
        if os.getuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and no 'postgres' user to run the server as")
            shutil.chown(self.dir, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
            self.user = "postgres"
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        subprocess.run(
            [*self.prefix, initdb, "-D", self.data, "-A", "trust", "-U", self.user, "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        opts = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off"
        subprocess.run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                self.data,
                "-o",
                opts,
                "-w",
                "-l",
                os.path.join(self.dir, "log"),
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self.n = 0

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{db}?host={self.dir}&port={self.port}"

    def new_database(self) -> str:
        import psycopg

        self.n += 1
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE console{self.n}")
        return self.url(f"console{self.n}")

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, str(self.pg_ctl), "-D", self.data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def console_pg() -> Iterator[PgServer]:
    pytest.importorskip("psycopg")
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    """A seeded console over SQLite and over PostgreSQL."""
    if request.param == "sqlite":
        target = str(tmp_path / "register.db")
    else:
        target = request.getfixturevalue("console_pg").new_database()
    yield from _seeded(target, tmp_path)


@pytest.fixture
def live_sqlite(tmp_path: Path) -> Iterator[Live]:
    """A seeded console over SQLite."""
    yield from _seeded(str(tmp_path / "register.db"), tmp_path)


def _seeded(target: str, tmp_path: Path) -> Iterator[Live]:
    ids = seed_register(target, tmp_path)
    seed_decisions(tmp_path / "decisions")
    cfg = ConsoleConfig(
        register=target, log_dir=str(tmp_path / "decisions"), state_dir=str(tmp_path / "state"), no_model=True
    )
    for lv in start(cfg, tmp_path):
        lv.proposal_ids = ids
        yield lv
