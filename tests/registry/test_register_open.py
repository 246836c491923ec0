"""Safe register defaults and one ``--register`` vocabulary (issue 18).

Opening a register that does not exist is an error everywhere except ``registry init`` and
``registry import``: nothing is created, the exit code is 2 and the message names the path and
the two commands that make one.  ``--register`` (or ``$SLUICE_REGISTRY``) works after the
subcommand on every command; ``--db`` and ``$SLUICE_REGISTRY_DB`` still work, said once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.registry import registry
from sluice.registry.model import RegisterNotFound, RegistryError
from sluice.registry.stores import SqliteStore, open_store

from .conftest import PgServer

SLUICE = [sys.executable, "-c", "from sluice.cli.main import main; main()"]
REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 600


def _sluice(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_REGISTRY")}
    e.update(env or {})
    return subprocess.run(
        [*SLUICE, *args], capture_output=True, text=True, env=e, cwd=cwd, timeout=CHILD_TIMEOUT_S, check=False
    )


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in ("SLUICE_REGISTRY", "SLUICE_REGISTRY_DB"):
        monkeypatch.delenv(k, raising=False)
    yield


def _missing_said(err: str, path: Path | str) -> bool:
    return (
        "registry.no_register" in err
        and str(path) in err
        and "sluice registry init" in err
        and "sluice registry import" in err
    )


# -- the store ------------------------------------------------------------------------------------


def test_store_never_creates_unless_asked(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    with pytest.raises(RegisterNotFound) as err:
        open_store(db)
    assert err.value.reason == "registry.no_register" and isinstance(err.value, RegistryError)
    assert not db.exists()
    db.touch()  # an empty file (or another database) is not a register either, and stays as it was
    with pytest.raises(RegisterNotFound):
        SqliteStore(db)
    assert db.stat().st_size == 0
    open_store(db, create=True).close()
    st = open_store(db)
    assert st.stats() == {}
    st.close()


def test_postgres_database_without_register_is_refused(pg_server: PgServer) -> None:
    url = pg_server.new_database()
    with pytest.raises(RegisterNotFound):
        open_store(url)
    import psycopg

    with psycopg.connect(url) as conn:  # nothing was created in it
        assert conn.execute("SELECT to_regclass('meta')").fetchone() == (None,)
    open_store(url, create=True).close()
    open_store(url).close()


# -- the registry commands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["stats"],
        ["check", "example.com"],
        ["history", "example.com"],
        ["export", "--to", "hosts"],
        ["proposals", "list"],
        ["proposals", "show", "1"],
        ["proposals", "accept", "1", "--reviewer", "r", "--reason", "x"],
        ["sources", "list"],
        ["sources", "remove", "x"],
        ["sources", "rename", "a", "b"],
        ["source", "add", "x", "http://127.0.0.1:9/x.txt", "--format", "domains"],
        ["fetch"],
    ],
)
def test_registry_commands_refuse_a_missing_register(tmp_path: Path, args: list[str], no_env: None) -> None:
    db = tmp_path / "typo.db"
    res = CliRunner().invoke(registry, [*args, "--register", str(db)])
    assert res.exit_code == 2, res.output
    assert _missing_said(res.stderr, db)
    assert not db.exists()


def test_default_register_is_not_created(tmp_path: Path) -> None:
    got = _sluice("registry", "stats", cwd=tmp_path)
    assert got.returncode == 2 and _missing_said(got.stderr, "sluice-registry.db")
    assert list(tmp_path.iterdir()) == []


def test_init_and_import_create(tmp_path: Path, no_env: None) -> None:
    r = CliRunner()
    db = tmp_path / "new.db"
    res = r.invoke(registry, ["init", "--register", str(db)])
    assert res.exit_code == 0 and "created" in res.stdout and db.exists()
    res = r.invoke(registry, ["init", "--register", str(db)])
    assert res.exit_code == 0 and "already" in res.stdout
    lst = tmp_path / "l.txt"
    lst.write_text("blocked.example\n")
    other = tmp_path / "other.db"
    res = r.invoke(registry, ["import", "--register", str(other), "--source", "l", "--dry-run", str(lst)])
    assert res.exit_code == 0 and "would change: 1 added" in res.stdout
    assert not other.exists()  # a dry run creates nothing
    res = r.invoke(registry, ["import", "--register", str(other), "--source", "l", str(lst)])
    assert res.exit_code == 0 and other.exists()


# -- one vocabulary ---------------------------------------------------------------------------------


def test_register_after_the_subcommand_and_from_the_environment(tmp_path: Path, no_env: None) -> None:
    db = tmp_path / "r.db"
    lst = tmp_path / "l.txt"
    lst.write_text("blocked.example\n")
    assert _sluice("registry", "import", "--register", str(db), "--source", "l", str(lst)).returncode == 0
    for args, env in (
        (["registry", "check", "--register", str(db), "blocked.example"], {}),
        (["registry", "--register", str(db), "check", "blocked.example"], {}),
        (["registry", "check", "blocked.example"], {"SLUICE_REGISTRY": str(db)}),
    ):
        got = _sluice(*args, env=env)
        assert got.returncode == 0 and "blocked.example: 1 entry" in got.stdout, (args, got.stderr)
        assert "deprecated" not in got.stderr
    # the old names still work, and say so once
    got = _sluice("registry", "--db", str(db), "check", "--db", str(db), "blocked.example")
    assert got.returncode == 0 and "1 entry" in got.stdout
    assert got.stderr.count("--db is deprecated, use --register") == 1
    got = _sluice("registry", "check", "blocked.example", env={"SLUICE_REGISTRY_DB": str(db)})
    assert got.returncode == 0 and "1 entry" in got.stdout
    assert "$SLUICE_REGISTRY_DB is deprecated" in got.stderr
    # --register wins over the environment
    got = _sluice(
        "registry",
        "check",
        "--register",
        str(db),
        "blocked.example",
        env={"SLUICE_REGISTRY": str(tmp_path / "x")},
    )
    assert got.returncode == 0


def _policy_file() -> str:
    p = REPO / "src" / "sluice" / "policy"
    return str(sorted(p.glob("*.toml"))[0])


def test_other_commands_refuse_a_missing_register(tmp_path: Path) -> None:
    """analyze (also from $SLUICE_REGISTRY), policy test, crypto scan, mirrors and services propose,
    gateway run, serve: exit 2, the path named, nothing created."""
    pcap = REPO / "examples" / "demo.pcapng"
    if not pcap.is_file():
        pytest.skip("examples/demo.pcapng absent")
    db = tmp_path / "typo.db"
    page = tmp_path / "page.txt"
    page.write_text("send to 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa\n")
    runs = {
        "analyze": (["analyze", str(pcap), "--no-model", "--register", str(db)], {}),
        "analyze-env": (["analyze", str(pcap), "--no-model"], {"SLUICE_REGISTRY": str(db)}),
        "policy": (["policy", "test", _policy_file(), str(pcap), "--no-model", "--register", str(db)], {}),
        "crypto": (["crypto", "scan", str(page), "--register", str(db)], {}),
        "crypto-old": (["crypto", "scan", str(page), "--db", str(db)], {}),
        "gateway": (
            [
                "gateway",
                "run",
                "--policy",
                _policy_file(),
                "--register",
                str(db),
                "--no-setup",
                "--no-detect",
            ],
            {},
        ),
    }
    for what, (args, env) in runs.items():
        got = _sluice(*args, env=env)
        assert got.returncode == 2, (what, got.returncode, got.stderr[-2000:])
        assert "registry.no_register" in got.stderr or "no register here" in got.stderr, (what, got.stderr)
        assert str(db) in got.stderr, what
        assert not db.exists(), what


def _ready_line(args: list[str], env: dict[str, str] | None = None) -> str:
    """Start ``gateway run --no-setup`` on a queue of its own; its ready line (then SIGTERM)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_REGISTRY")}
    e.update(env or {})
    p = subprocess.Popen([*SLUICE, *args], stderr=subprocess.PIPE, text=True, env=e)
    try:
        assert p.stderr is not None
        return p.stderr.readline()  # blocks until the gateway says it is ready (or fails)
    finally:
        p.terminate()
        p.communicate(timeout=CHILD_TIMEOUT_S)


@pytest.mark.skipif(os.geteuid() != 0, reason="binding an NFQUEUE queue needs root (CI runs as root)")
def test_gateway_ready_line_and_empty_register(tmp_path: Path) -> None:
    pytest.importorskip("netfilterqueue")
    db = tmp_path / "r.db"
    lst = tmp_path / "l.txt"
    lst.write_text("blocked.example\n10.1.2.0/24\n")
    assert _sluice("registry", "import", "--register", str(db), "--source", "l", str(lst)).returncode == 0
    base = ["gateway", "run", "--policy", _policy_file(), "--no-setup", "--no-detect", "--queue", "4711"]
    line = _ready_line([*base, "--register", str(db)])
    assert "ready on queue 4711" in line and "register 2 entries (domain 1, subnet 1), version 1" in line, (
        line
    )
    # from a signed snapshot: the snapshot's version
    keys = [tmp_path / "k.pem", tmp_path / "k.pub"]
    assert (
        _sluice(
            "registry", "snapshot", "keygen", "--private", str(keys[0]), "--public", str(keys[1])
        ).returncode
        == 0
    )
    snap = tmp_path / "r.snap"
    got = _sluice(
        "registry", "snapshot", "publish", "--register", str(db), "--key", str(keys[0]), "--out", str(snap)
    )
    assert got.returncode == 0, got.stderr
    from_snapshot = [*base, "--register-snapshot", str(snap), "--snapshot-key", str(keys[1])]
    line = _ready_line(from_snapshot)
    assert "register 2 entries (domain 1, subnet 1), version " in line and "version ?" not in line, line
    # $SLUICE_REGISTRY names the register of other commands: the snapshot still wins (it was
    # refused as "excludes --register"); an explicit --register beside it is refused
    line = _ready_line(from_snapshot, env={"SLUICE_REGISTRY": str(tmp_path / "other.db")})
    assert "register 2 entries (domain 1, subnet 1), version " in line, line
    got = _sluice(*from_snapshot, "--register", str(db))
    assert got.returncode == 2 and "excludes --register" in got.stderr, got.stderr
    # an empty register is refused unless asked for
    empty = tmp_path / "empty.db"
    assert _sluice("registry", "init", "--register", str(empty)).returncode == 0
    got = _sluice(*base, "--register", str(empty))
    assert got.returncode == 2 and "has no entries" in got.stderr and "--allow-empty-register" in got.stderr
    line = _ready_line([*base, "--register", str(empty), "--allow-empty-register"])
    assert "register 0 entries (none), version 0" in line, line
