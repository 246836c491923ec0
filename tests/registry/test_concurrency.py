"""Issue 19: imports of one source by several real processes at once, and ``kill -9`` mid-import.

Every child is a real ``python`` process with its own connection.  The children of a race first
say they are ready (a file each), then all wait on one gate file, so that they parse and sync
at the same moment; no test depends on how long anything takes.  Afterwards the register must
be the state of the last committed import's full file, and the audit, replayed import by import,
must give after each import exactly the state that import's file describes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

from sluice.registry.importers import parse_files
from sluice.registry.stores import RegistryStore, SqliteStore, open_store
from sluice.registry.sync import import_files

from .conftest import PgServer

CHILD_TIMEOUT_S = 600
"""Generous: four children on a loaded 2-core machine."""

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from sluice.registry.model import RegistryError
from sluice.registry.stores import open_store
from sluice.registry.sync import import_files

db, path, ready, gate = sys.argv[1:5]
store = open_store(db)
Path(ready).touch()
deadline = time.monotonic() + 600
while not os.path.exists(gate):
    if time.monotonic() > deadline:
        sys.exit(9)
    time.sleep(0.002)
try:
    s = import_files(store, [path], "domains", source="race", force=True)
except RegistryError as exc:
    print(json.dumps({"error": exc.reason, "detail": exc.detail}))
    sys.exit(3)
print(json.dumps({"import_id": s.import_id, "added": s.added, "removed": s.removed}))
"""

POOL = [f"host{i}.zone{i % 97}.example" for i in range(24000)]


def _version(tmp: Path, n: int) -> Path:
    """A list of 60 % of the pool, different for each ``n`` (seeded)."""
    rnd = random.Random(1900 + n)
    names = rnd.sample(POOL, int(len(POOL) * 0.6))
    p = tmp / f"v{n}.txt"
    p.write_text("".join(x + "\n" for x in names), encoding="utf-8")
    return p


def _keys(path: Path) -> set[tuple[str, str]]:
    return {k for k in parse_files([path], "domains", source="race").entries}


def _state(store: RegistryStore, source: str) -> set[tuple[str, str]]:
    return {(k, i) for _, k, i, _ in store.rows(source)}


def check_history(store: RegistryStore, source: str, files: dict[str, set[tuple[str, str]]]) -> None:
    """Replay the audit import by import: each import leaves exactly its file's entries."""
    sql = cast(Any, store)
    imports = sql._all(
        "SELECT id, path, entries, added, removed FROM imports WHERE source = ? ORDER BY id", (source,)
    )
    audit = sql._all(
        "SELECT import_id, action, kind, indicator FROM audit WHERE source = ? ORDER BY id", (source,)
    )
    state: set[tuple[str, str]] = set()
    at = 0
    for imp_id, path, entries, added, removed in imports:
        n_add = n_rem = 0
        while at < len(audit) and audit[at][0] == imp_id:
            _, action, kind, ind = audit[at]
            if action == "added":
                assert (kind, ind) not in state
                state.add((kind, ind))
                n_add += 1
            else:
                assert action == "removed" and (kind, ind) in state
                state.remove((kind, ind))
                n_rem += 1
            at += 1
        assert (n_add, n_rem) == (int(added), int(removed)), imp_id
        assert len(state) == int(entries), imp_id
        assert state == files[str(path)], f"import {imp_id} of {path}"
    assert at == len(audit), "audit rows of no import"
    assert state == _state(store, source)


def _race(db: str, tmp: Path, versions: list[Path], rnd_name: str) -> list[dict[str, Any]]:
    gate = tmp / f"gate-{rnd_name}"
    procs = []
    for i, v in enumerate(versions):
        ready = tmp / f"ready-{rnd_name}-{i}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, db, str(v), str(ready), str(gate)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
        )
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not all(r.exists() for r, _ in procs):  # readiness, not timing
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs]
        assert time.monotonic() < deadline, "children never became ready"
        time.sleep(0.01)
    gate.touch()
    out = []
    for _, p in procs:
        so, se = p.communicate(timeout=CHILD_TIMEOUT_S)
        assert p.returncode == 0, (p.returncode, so.decode(), se.decode()[-3000:])
        out.append(json.loads(so))
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_imports_of_one_source(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        db = str(tmp_path / "race.db")
    else:
        pytest.importorskip("psycopg")
        server: PgServer = request.getfixturevalue("pg_server")
        db = server.new_database()
    open_store(db, create=True).close()
    versions = [_version(tmp_path, n) for n in range(4)]
    files = {str(v): _keys(v) for v in versions}
    for rnd in range(3):  # several races, each on the state the previous one left
        _race(db, tmp_path, versions, str(rnd))
        store = open_store(db)
        try:
            last = store.imports("race", limit=1)[0]
            assert _state(store, "race") == files[last.path]
            check_history(store, "race", files)
        finally:
            store.close()


KILL_CHILD = r"""
import sys
from sluice.registry.stores import open_store
from sluice.registry.sync import import_files
store = open_store(sys.argv[1])
import_files(store, [sys.argv[2]], "domains", source="race", force=True)
print("done")
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_mid_import_leaves_before_or_after(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        db = str(tmp_path / "kill.db")
    else:
        pytest.importorskip("psycopg")
        server: PgServer = request.getfixturevalue("pg_server")
        db = server.new_database()
    versions = [_version(tmp_path, n) for n in range(2)]
    files = {str(v): _keys(v) for v in versions}
    store = open_store(db, create=True)
    try:
        import_files(store, [versions[0]], "domains", source="race")
    finally:
        store.close()
    # how long a whole child takes here, to spread the kills over it (no assertion on it)
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", KILL_CHILD, db, str(versions[1])], check=True, timeout=CHILD_TIMEOUT_S
    )
    whole = time.monotonic() - t0
    for k, frac in enumerate((0.5, 0.7, 0.8, 0.9, 0.95, 1.0)):
        target = versions[k % 2]
        store = open_store(db)
        before = _state(store, "race")
        store.close()
        p = subprocess.Popen(
            [sys.executable, "-c", KILL_CHILD, db, str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            p.wait(timeout=whole * frac)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=CHILD_TIMEOUT_S)
        store = open_store(db)
        try:
            after = _state(store, "race")
            assert after in (before, files[str(target)])
            check_history(store, "race", files)
            if isinstance(store, SqliteStore):
                assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            store.close()
