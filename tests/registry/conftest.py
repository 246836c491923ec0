"""Fixtures of the register tests: the shared real data and a throwaway PostgreSQL server."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.registry.stores import RegistryStore, SqliteStore, open_store

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REGISTRY_DATA = SHARED / "registry-data"


def shared_file(name: str) -> Path:
    """A file of ../shared/registry-data, or skip the test when it is absent."""
    p = REGISTRY_DATA / name
    if not p.is_file():
        pytest.skip(f"../shared not present: {p}")
    return p


def _pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / tool).is_file():
            return str(d / tool)
    return None


class PgServer:
    """A PostgreSQL cluster in a temporary directory, reachable on a Unix socket only."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
        self.dir = tempfile.mkdtemp(prefix="sluice-pg-")
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
        self.port = 5400 + os.getpid() % 500
        self.pg_ctl = pg_ctl
        subprocess.run(
            [*self.prefix, initdb, "-D", self.data, "-A", "trust", "-U", self.user, "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        opts = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off"
        subprocess.run(
            [
                *self.prefix,
                pg_ctl,
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
        name = f"reg{self.n}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    pytest.importorskip("psycopg")
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RegistryStore]:
    """An empty register, on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        st: RegistryStore = SqliteStore(tmp_path / "reg.db", create=True)
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        st = open_store(server.new_database(), create=True)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    st = SqliteStore(tmp_path / "reg.db", create=True)
    try:
        yield st
    finally:
        st.close()
