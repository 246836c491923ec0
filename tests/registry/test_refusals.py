"""Issue 19: what the register refuses, it refuses before anything changes.

Each test sets up a register, takes a snapshot of it (entry rows and a checksum of them, import
and audit row counts), feeds it input that must be refused, and checks the reason code and that
the snapshot is the same afterwards.  Real dumps come from ``../shared/registry-data`` (the test
skips when absent); the damage is made from them in the test.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.registry.importers._input import MAX_REJECT_RATIO
from sluice.registry.model import RegistryError
from sluice.registry.stores import RegistryStore, SqliteStore
from sluice.registry.sync import BROADEST_V4_PREFIX, BROADEST_V6_PREFIX, import_files

from .conftest import REGISTRY_DATA, shared_file

SLUICE = [
    sys.executable,
    "-c",
    "from sluice.cli.registry import registry; registry(prog_name='sluice registry')",
]
"""``sluice registry`` in a real process (the group alone: other command groups stay out of it)."""
CHILD_TIMEOUT_S = 300
"""Generous: a loaded 2-core machine; a hang is what the timeout catches."""


def snapshot(store: RegistryStore) -> tuple[int, str, int, int]:
    """Entry count, sha256 of the sorted entry rows, import rows, audit rows."""
    rows = sorted(store.rows())
    h = hashlib.sha256()
    for r in rows:
        h.update("\x1f".join(r).encode("utf-8", "surrogatepass") + b"\n")
    sql = cast(Any, store)
    (n_imports,) = sql._all("SELECT COUNT(*) FROM imports")[0]
    (n_audit,) = sql._all("SELECT COUNT(*) FROM audit")[0]
    return len(rows), h.hexdigest(), int(n_imports), int(n_audit)


def refused(store: RegistryStore, path: Path, reason: str, fmt: str = "auto", **kw: Any) -> RegistryError:
    """Import ``path``, expect ``reason``, and check the register did not change."""
    before = snapshot(store)
    with pytest.raises(RegistryError) as info:
        import_files(store, [path], fmt, **kw)
    assert info.value.reason == reason, info.value
    assert snapshot(store) == before
    return info.value


def _dump_lines() -> tuple[bytes, list[bytes]]:
    """The 2016 RKN dump: its header line and its data lines (cp1251 bytes, no newline)."""
    data = shared_file("zi_dump_2016-06-13.csv").read_bytes()
    lines = data.split(b"\n")
    assert lines[-1] == b""
    return lines[0], lines[1:-1]


# -- 1. one read of each input: pipes and standard input ------------------------------------


def _cli(
    db: Path, *args: str, stdin: Any = None, input_: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*SLUICE, "--db", str(db), "import", "--json", *args],
        stdin=stdin,
        input=input_,
        capture_output=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize("arg", ["/dev/stdin", "-"])
def test_pipe_import_equals_file_import(tmp_path: Path, arg: str) -> None:
    import json

    dump = shared_file("zi_dump_2016-06-13.csv")
    digest = hashlib.sha256(dump.read_bytes()).hexdigest()
    cat = subprocess.Popen(["cat", str(dump)], stdout=subprocess.PIPE)
    assert cat.stdout is not None
    got = _cli(tmp_path / "pipe.db", arg, stdin=cat.stdout)
    cat.stdout.close()
    cat.wait(timeout=CHILD_TIMEOUT_S)
    assert got.returncode == 0, got.stderr.decode()
    s = json.loads(got.stdout)
    assert (s["source"], s["rows"], s["entries"], s["added"]) == ("rkn", 30663, 29270, 29270)
    store = SqliteStore(tmp_path / "pipe.db")
    try:
        assert store.imports()[0].sha256 == digest
        assert store.imports()[0].rows == 30663
    finally:
        store.close()


def test_dev_zero_and_endless_line_refused(tmp_path: Path) -> None:
    got = _cli(tmp_path / "z.db", "/dev/zero")
    assert got.returncode == 3 and b"registry.binary_input" in got.stderr
    got = _cli(tmp_path / "z.db", "-", input_=b"a" * (9 * 1024 * 1024))
    assert got.returncode == 3 and b"registry.line_too_long" in got.stderr, got.stderr
    assert not (tmp_path / "z.db").exists() or SqliteStore(tmp_path / "z.db").imports() == []


# -- 3. mixed encodings and mojibake ----------------------------------------------------------


def _mixed(lines: list[bytes], every: int = 2) -> bytes:
    """Every ``every``-th line re-encoded from cp1251 to UTF-8 (the audit's file)."""
    out = [ln.decode("cp1251").encode("utf-8") if i % every == 0 else ln for i, ln in enumerate(lines)]
    return b"\n".join(out) + b"\n"


def test_mixed_encodings_refused(store: RegistryStore, tmp_path: Path) -> None:
    header, lines = _dump_lines()
    full = tmp_path / "dump.csv"
    full.write_bytes(header + b"\n" + b"\n".join(lines) + b"\n")
    import_files(store, [full])
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(header + b"\n" + _mixed(lines))
    err = refused(store, mixed, "registry.mixed_encoding")
    assert "line" in err.detail
    # UTF-8 text that went through cp1251 once more: valid UTF-8, garbled words
    double = tmp_path / "double.csv"
    text = (header + b"\n" + b"\n".join(lines) + b"\n").decode("cp1251")
    double.write_bytes(text.encode("utf-8").decode("cp1251", "replace").encode("utf-8"))
    refused(store, double, "registry.mojibake")
    # one garbled decision among 30,663 rows is enough
    one = tmp_path / "one.csv"
    bad = lines[:]
    k = next(i for i, ln in enumerate(bad) if "суд".encode("cp1251") in ln)
    bad[k] = bad[k].decode("cp1251").encode("utf-8")
    one.write_bytes(header + b"\n" + b"\n".join(bad) + b"\n")
    refused(store, one, "registry.mixed_encoding")


def test_mojibake_in_a_list_refused(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    good = tmp_path / "names.txt"
    good.write_text("пример.рф\nexample.com\nмосква.рф\n", encoding="utf-8")
    import_files(sqlite_store, [good], "domains", source="n")
    bad = tmp_path / "names2.txt"
    bad.write_text(
        "пример.рф\nexample.com\n" + "москва.рф".encode().decode("cp1251") + "\n", encoding="utf-8"
    )
    refused(sqlite_store, bad, "registry.mojibake", "domains", source="n")
    latin = tmp_path / "names3.txt"
    latin.write_text("пример.рф\n" + "москва.рф".encode().decode("latin-1") + "\n", encoding="utf-8")
    refused(sqlite_store, latin, "registry.mojibake", "domains", source="n")


def test_real_url_with_utf8_bytes_still_imports(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    """The 2018 dump holds one URL written in UTF-8 inside the cp1251 file (adf.party): data, not damage."""
    data = shared_file("zi_dump_2018-05-05_PARTIAL.csv").read_bytes()
    cut = tmp_path / "dump2018.csv"
    cut.write_bytes(data[: data.rindex(b"\n") + 1])
    s = import_files(sqlite_store, [cut])
    assert (s.rows, s.entries) == (32796, 43104)


# -- 4. line-aligned truncation, rejected rows -----------------------------------------------


def test_dump_cut_at_a_line_boundary_refused(store: RegistryStore, tmp_path: Path) -> None:
    header, lines = _dump_lines()
    full = tmp_path / "dump.csv"
    full.write_bytes(header + b"\n" + b"\n".join(lines) + b"\n")
    import_files(store, [full])
    for keep in (0.86, 0.97, 0.999):  # 4,063 entries gone at 0.86; one row at 0.999
        cut = tmp_path / f"cut{keep}.csv"
        cut.write_bytes(header + b"\n" + b"\n".join(lines[: int(len(lines) * keep)]) + b"\n")
        err = refused(store, cut, "registry.truncated")
        assert "2016-06-13 12:04:00" in err.detail
    forced = import_files(store, [tmp_path / "cut0.97.csv"], force=True)
    assert forced.removed > 0


def test_older_dump_refused(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    data = shared_file("zi_dump_2018-05-05_PARTIAL.csv").read_bytes()
    newer = tmp_path / "dump2018.csv"
    newer.write_bytes(data[: data.rindex(b"\n") + 1])
    import_files(sqlite_store, [newer])
    err = refused(sqlite_store, shared_file("zi_dump_2016-06-13.csv"), "registry.stale_dump")
    assert "2018-05-05" in err.detail


def test_list_cut_at_a_line_boundary_refused(store: RegistryStore, tmp_path: Path) -> None:
    """No header to go by: the share of entries one import removes (see DEFAULT_MAX_REMOVED)."""
    lines = shared_file("refilter_domains_all.lst").read_bytes().split(b"\n")[:-1]
    full = tmp_path / "refilter.lst"
    full.write_bytes(b"\n".join(lines) + b"\n")
    import_files(store, [full], "domains", source="refilter")
    cut = tmp_path / "refilter-cut.lst"
    cut.write_bytes(b"\n".join(lines[: int(len(lines) * 0.9)]) + b"\n")
    refused(store, cut, "registry.mass_removal", "domains", source="refilter")
    # a real update: a few removed, a few added
    upd = tmp_path / "refilter-upd.lst"
    upd.write_bytes(b"\n".join([*lines[50:], b"new-one.example", b"new-two.example"]) + b"\n")
    s = import_files(store, [upd], "domains", source="refilter")
    assert (s.added, s.removed) == (2, 50)


def _garble(line: bytes, rnd: random.Random) -> bytes:
    """Damage the first three fields of a row so that no indicator of it survives."""
    f = line.split(b";")
    for i in (0, 1, 2):
        if f[i]:
            f[i] = bytes(rnd.choice(b"#%@!~^") for _ in f[i])
    if not f[0] and not f[1]:
        f[0] = b"#garbage#"
    return b";".join(f)


def test_rejected_rows_remove_nothing(store: RegistryStore, tmp_path: Path) -> None:
    header, lines = _dump_lines()
    full = tmp_path / "dump.csv"
    full.write_bytes(header + b"\n" + b"\n".join(lines) + b"\n")
    import_files(store, [full])
    before = set(store.rows("rkn"))
    rnd = random.Random(19)
    damaged = lines[:]
    hit = rnd.sample(range(len(lines)), int(len(lines) * 0.04))
    for i in hit:
        damaged[i] = _garble(lines[i], rnd)
    del damaged[-1]  # and one real removal in the same file: it waits as well
    bad = tmp_path / "garbage.csv"
    bad.write_bytes(header.replace(b"12:04", b"12:05") + b"\n" + b"\n".join(damaged) + b"\n")
    s = import_files(store, [bad])
    assert len(s.rejected) >= len(hit) * 0.9
    assert len(s.rejected) <= MAX_REJECT_RATIO * s.rows
    assert s.removed == 0 and s.held > 0
    assert before <= set(store.rows("rkn"))  # every entry, with every decision it had


# -- 5. entries that block everything --------------------------------------------------------


BROAD = [
    ("adblock", "[Adblock Plus 2.0]\n||example.org^\n||com^\n||example.net^\n"),
    ("domains", "example.org\n*.com\nexample.net\n"),
    ("domains", "example.org\n*.co.uk\nexample.net\n"),
    ("domains", "example.org\n*.рф\nexample.net\n"),
    ("cidrs", "192.0.2.0/24\n0.0.0.0/0\n198.51.100.0/24\n"),
    ("cidrs", "192.0.2.0/24\n::/0\n198.51.100.0/24\n"),
    ("cidrs", f"192.0.2.0/24\n8.0.0.0/{BROADEST_V4_PREFIX - 1}\n"),
    ("cidrs", f"192.0.2.0/24\n2001::/{BROADEST_V6_PREFIX - 1}\n"),
    (
        "rkn-csv",
        "Updated: 2020-01-01 00:00:00 +0000\n;*.com;;суд;1;2020-01-01\n;a.example;;суд;1;2020-01-01\n",
    ),
]


@pytest.mark.parametrize(("fmt", "text"), BROAD)
def test_entries_that_block_everything_refused(
    store: RegistryStore, tmp_path: Path, fmt: str, text: str
) -> None:
    seed = tmp_path / "seed.txt"
    seed.write_text("example.org\n", encoding="utf-8")
    import_files(store, [seed], "domains", source="other")
    p = tmp_path / "broad.txt"
    p.write_bytes(text.encode("cp1251" if fmt == "rkn-csv" else "utf-8"))
    err = refused(store, p, "registry.too_broad", fmt, source="x")
    assert "--force" in err.detail
    s = import_files(store, [p], fmt, source="x", force=True)
    assert s.added == s.entries


def test_narrow_enough_entries_pass(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    p = tmp_path / "ok.txt"
    p.write_text(
        f"*.example.com\n*.msk.example\n10.0.0.0/{BROADEST_V4_PREFIX}\n2001:db8::/{BROADEST_V6_PREFIX}\n",
        encoding="utf-8",
    )
    assert import_files(sqlite_store, [p], "domains", source="x").added == 4


def test_small_file_mostly_rejected_refused(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    p = tmp_path / "small.txt"
    rows = ["||ok-one.example^", "||ok-two.example^"] + [f"##.ad-{i}" for i in range(10)]
    p.write_text("[Adblock Plus 2.0]\n" + "\n".join(rows) + "\n", encoding="utf-8")
    refused(sqlite_store, p, "registry.damaged", "adblock", source="x")


# -- fuzzing: random bytes, random mixes of encodings ----------------------------------------


_CYR_LINES: list[bytes] = []


def _cyrillic_lines() -> list[bytes]:
    if not _CYR_LINES:
        p = REGISTRY_DATA / "zi_dump_2016-06-13.csv"
        if not p.is_file():
            pytest.skip(f"../shared not present: {p}")
        lines = p.read_bytes().split(b"\n")[1:-1]
        _CYR_LINES.extend([ln for ln in lines if any(b >= 0xC0 for b in ln.split(b";")[3])][:400])
    return _CYR_LINES


ENCODINGS = ("cp1251", "utf-8", "utf-8>cp1251>utf-8", "utf-8>latin-1>utf-8")


def _encode(line: bytes, how: str) -> bytes:
    text = line.decode("cp1251")
    if how == "cp1251":
        return line
    if how == "utf-8":
        return text.encode("utf-8")
    _, mid, _ = how.split(">")
    return text.encode("utf-8").decode(mid, errors="replace").encode("utf-8")


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    picks=st.lists(st.tuples(st.integers(0, 399), st.sampled_from(ENCODINGS)), min_size=2, max_size=60),
)
@example(picks=[(0, "cp1251"), (1, "utf-8")])
def test_fuzz_mixed_encodings_never_change_the_store(
    sqlite_store: SqliteStore, tmp_path: Path, picks: list[tuple[int, str]]
) -> None:
    lines = _cyrillic_lines()
    base = tmp_path / "base.csv"
    if not sqlite_store.imports():
        base.write_bytes(b"Updated: 2016-06-13 12:04:00 +0000\n" + b"\n".join(lines) + b"\n")
        import_files(sqlite_store, [base])
    rows = [_encode(lines[i % len(lines)], how) for i, how in picks]
    p = tmp_path / "mixed.csv"
    p.write_bytes(b"Updated: 2016-06-14 12:04:00 +0000\n" + b"\n".join(rows) + b"\n")
    before = snapshot(sqlite_store)
    try:
        import_files(sqlite_store, [p], "rkn-csv", force=True, dry_run=True)
    except RegistryError:
        assert snapshot(sqlite_store) == before
    else:
        assert snapshot(sqlite_store) == before  # a dry run
        assert {how for _, how in picks} in ({"cp1251"}, {"utf-8"})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), fmt=st.sampled_from(["auto", "rkn-csv", "domains", "adblock", "cidrs"]))
def test_fuzz_random_bytes_refused_or_synced(
    sqlite_store: SqliteStore, tmp_path: Path, data: bytes, fmt: str
) -> None:
    if not sqlite_store.imports():
        seed = tmp_path / "seed.txt"
        seed.write_text("".join(f"n{i}.example.org\n" for i in range(50)), encoding="utf-8")
        import_files(sqlite_store, [seed], "domains", source="fz")
    p = tmp_path / "fz.txt"
    p.write_bytes(data)
    before = snapshot(sqlite_store)
    try:
        import_files(sqlite_store, [p], fmt, source="fz")
    except RegistryError as exc:
        assert exc.reason.startswith("registry.")
        assert snapshot(sqlite_store) == before
