"""Signed register snapshots: publish, verify, and every way a bad one is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.registry import import_files, open_store
from sluice.registry.snapshot import (
    SnapshotError,
    generate_key,
    load_private_key,
    load_public_key,
    publish_snapshot,
    read_snapshot,
    snapshot_rows,
)

SLUICE = str(Path(sys.executable).with_name("sluice"))


@pytest.fixture
def register(tmp_path: Path) -> Path:
    db = tmp_path / "reg.sqlite"
    store = open_store(db, create=True)
    try:
        (tmp_path / "a.txt").write_text("blocked.example\n*.mask.example\nбанк.рф\n")
        (tmp_path / "b.txt").write_text("10.0.0.0/8\n192.0.2.7\n")
        import_files(store, [tmp_path / "a.txt"], "domains", source="list-a")
        import_files(store, [tmp_path / "b.txt"], "cidrs", source="list-b")
    finally:
        store.close()
    return db


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    priv, pub = tmp_path / "snap.key", tmp_path / "snap.pub"
    generate_key(priv, pub)
    assert priv.stat().st_mode & 0o077 == 0
    return priv, pub


def test_round_trip_gives_the_stores_rows(register: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "reg.snap"
    store = open_store(register)
    try:
        header = publish_snapshot(store, out, load_private_key(keys[0]))
        version, entries, proposals = snapshot_rows(store)
    finally:
        store.close()
    snap = read_snapshot(out, load_public_key(keys[1]))
    assert snap.header == header and header.version == version == 2
    assert snap.entries == entries and snap.proposals == proposals and len(entries) == 5
    matcher, proposed = snap.matchers()
    assert len(matcher) == 5 and len(proposed) == 0
    assert [m.entry.source for m in matcher.match_host("www.blocked.example")] == ["list-a"]


@pytest.mark.parametrize("cut", [1, 64, 65, 200, -1])
def test_truncated_is_refused(register: Path, keys: tuple[Path, Path], tmp_path: Path, cut: int) -> None:
    out = tmp_path / "reg.snap"
    store = open_store(register)
    try:
        publish_snapshot(store, out, load_private_key(keys[0]))
    finally:
        store.close()
    data = out.read_bytes()
    (tmp_path / "cut.snap").write_bytes(data[:cut])
    with pytest.raises(SnapshotError) as exc:
        read_snapshot(tmp_path / "cut.snap", load_public_key(keys[1]))
    assert exc.value.reason in ("snapshot.truncated", "snapshot.bad_signature")


def test_altered_other_key_and_stale_are_refused(
    register: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "reg.snap"
    store = open_store(register)
    try:
        publish_snapshot(store, out, load_private_key(keys[0]))
    finally:
        store.close()
    pub = load_public_key(keys[1])
    data = bytearray(out.read_bytes())
    for pos in (0, 30, len(data) // 2, len(data) - 70, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        (tmp_path / "bad.snap").write_bytes(bytes(bad))
        with pytest.raises(SnapshotError) as exc:
            read_snapshot(tmp_path / "bad.snap", pub)
        assert exc.value.reason in ("snapshot.bad_magic", "snapshot.truncated", "snapshot.bad_signature"), pos
    generate_key(tmp_path / "other.key", tmp_path / "other.pub")
    with pytest.raises(SnapshotError) as exc:
        read_snapshot(out, load_public_key(tmp_path / "other.pub"))
    assert exc.value.reason == "snapshot.bad_signature"
    with pytest.raises(SnapshotError) as exc:
        read_snapshot(out, pub, min_version=3)
    assert exc.value.reason == "snapshot.stale"
    with pytest.raises(SnapshotError) as exc:
        read_snapshot(out, pub, limit=100)
    assert exc.value.reason == "snapshot.too_large"


def test_cli_publish_and_verify(register: Path, tmp_path: Path) -> None:
    priv, pub, out = tmp_path / "k", tmp_path / "k.pub", tmp_path / "s.snap"
    run = subprocess.run(
        [SLUICE, "registry", "snapshot", "keygen", "--private", str(priv), "--public", str(pub)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [SLUICE, "registry", "--db", f"{register}", "snapshot", "publish", "--key", f"{priv}", "--out", out],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and "5 entries" in run.stdout, run.stderr
    ok = subprocess.run(
        [SLUICE, "registry", "snapshot", "verify", str(out), "--public", str(pub), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0 and '"version": 2' in ok.stdout
    out.write_bytes(out.read_bytes()[:-10])
    bad = subprocess.run(
        [SLUICE, "registry", "snapshot", "verify", str(out), "--public", str(pub)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 3 and "snapshot.bad_signature" in bad.stderr
