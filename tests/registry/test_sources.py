"""Stable source names (declared in the list, never the dated file name) and ``registry sources``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.registry import registry
from sluice.registry.importers import declared_source, source_slug
from sluice.registry.model import AuditAction, RegistryError
from sluice.registry.sources import list_sources, remove_source, rename_source
from sluice.registry.stores import RegistryStore
from sluice.registry.sync import import_files

from .conftest import shared_file

HOSTS = "# Title: Example Fake Shops 2024-02-27\n# Version: 1\n0.0.0.0 a.example\n0.0.0.0 b.example\n"


def _run(db: Path, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(registry, [*args, "--register", str(db)])
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize(
    ("text", "fmt", "name"),
    [
        ("! Title: HaGeZi's Fake DNS Blocklist\n||x.example^\n", "adblock", "hagezis-fake-dns-blocklist"),
        (HOSTS, "hosts", "example-fake-shops"),
        (
            "; Spamhaus DROP List 2024/02/27 - (c) 2024 The Spamhaus Project\n1.10.16.0/20 ; SBL256894\n",
            "drop",
            "spamhaus-drop",
        ),
        ("; Spamhaus EDROP List 2024/02/27\n1.2.3.0/24 ; SBL1\n", "drop", "spamhaus-edrop"),
        (
            "$TTL 60\n@ SOA ns. root. 7 1 1 1 1\n$ORIGIN rpz.example.org.\nbad.example CNAME .\n",
            "rpz",
            "rpz.example.org",
        ),
        ("rpz.corp. 60 IN SOA ns. root. 7 1 1 1 1\nbad.example.rpz.corp. CNAME .\n", "rpz", "rpz.corp"),
        ("Updated: 2016-06-13 12:04:00 +0000\n", "rkn-csv", "rkn"),
        ("a.example\nb.example\n", "domains", ""),
        ("1.2.3.0/24\n", "cidrs", ""),
    ],
)
def test_declared_source(text: str, fmt: str, name: str) -> None:
    assert declared_source(text.encode(), fmt) == name


def test_slug_drops_dates() -> None:
    assert source_slug("List 2024-02-27") == source_slug("List 2024-03-01") == "list"
    assert source_slug("StevenBlack/hosts") == "stevenblack-hosts"


def test_dated_file_names_sync_one_source(store: RegistryStore, tmp_path: Path) -> None:
    """Yesterday's and today's copy of a list are one source: today's removes what went away."""
    old = tmp_path / "fake_2024-02-26.txt"
    old.write_text(HOSTS)
    new = tmp_path / "fake_2024-02-27.txt"
    new.write_text(HOSTS.replace("0.0.0.0 b.example\n", "0.0.0.0 c.example\n"))
    s1 = import_files(store, [old], "hosts")
    s2 = import_files(store, [new], "hosts")
    assert s1.source == s2.source == "example-fake-shops"
    assert (s2.added, s2.removed, s2.unchanged) == (1, 1, 1)


def test_no_declared_name_is_refused(store: RegistryStore, tmp_path: Path) -> None:
    p = tmp_path / "list_2024-02-27.txt"
    p.write_text("a.example\n")
    with pytest.raises(RegistryError) as err:
        import_files(store, [p], "domains")
    assert err.value.reason == "registry.no_source"
    assert "--source NAME" in str(err.value) and "# Title:" in str(err.value)
    assert store.stats() == {}


def test_rename_and_remove_are_audited(store: RegistryStore, tmp_path: Path) -> None:
    p = tmp_path / "l.txt"
    p.write_text("a.example\nb.example\n")
    import_files(store, [p], "domains", source="old-name")
    gained, lost = rename_source(store, "old-name", "new-name")
    assert (gained.added, lost.removed) == (2, 2)
    assert store.stats() == {"new-name": {"domain": 2}}
    acts = [(ev.action, ev.source, ev.import_id) for ev in store.history("a.example")]
    assert [(a, s) for a, s, _ in acts] == [
        (AuditAction.ADDED, "old-name"),
        (AuditAction.ADDED, "new-name"),
        (AuditAction.REMOVED, "old-name"),
    ]
    assert store.imports("new-name", 1)[0].path == "renamed from old-name"
    # the list's own name in its decisions follows, so the next import changes nothing
    (entry,) = store.lookup("a.example")
    assert entry.basis[0].authority == "new-name"
    again = import_files(store, [p], "domains", source="new-name")
    assert (again.added, again.removed, again.changed, again.unchanged) == (0, 0, 0, 2)
    with pytest.raises(RegistryError) as err:
        rename_source(store, "nope", "x")
    assert err.value.reason == "registry.unknown_source"
    import_files(store, [p], "domains", source="third")
    with pytest.raises(RegistryError) as err:
        rename_source(store, "new-name", "third")
    assert err.value.reason == "registry.source_exists"
    dry = remove_source(store, "new-name", dry_run=True)
    assert dry.removed == 2 and store.stats()["new-name"] == {"domain": 2}
    gone = remove_source(store, "new-name")
    assert gone.removed == 2 and "new-name" not in store.stats()
    last = store.history("b.example")[-1]
    assert (last.action, last.source) == (AuditAction.REMOVED, "new-name")
    assert [s["name"] for s in list_sources(store)] == ["third"]


def test_sources_cli(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    code, _, _ = _run(db, "import", str(shared_file("hagezi_fake_adblock_2022-07-24.txt")))
    assert code == 0
    code, out, _ = _run(db, "sources", "list")
    assert code == 0 and "hagezis-fake-dns-blocklist: 7355 entries (domain-mask 7355)" in out
    assert "hagezi_fake_adblock_2022-07-24.txt" in out  # the origin: the file of its last import
    code, out, _ = _run(db, "sources", "rename", "hagezis-fake-dns-blocklist", "hagezi-fake")
    assert code == 0 and "7355 entries" in out
    code, out, _ = _run(db, "sources", "list", "--json")
    (src,) = json.loads(out)
    assert (src["name"], src["total"], src["last_import"]["format"]) == ("hagezi-fake", 7355, "adblock")
    code, _, err = _run(db, "sources", "remove", "nope")
    assert code == 2 and "registry.unknown_source" in err
    code, out, _ = _run(db, "sources", "remove", "hagezi-fake")
    assert code == 0 and "removed (import #4) 7355 entries" in out
    code, out, _ = _run(db, "stats", "--json")
    assert json.loads(out)["entries"] == {}
    code, out, _ = _run(db, "history", "--json", "10xcryptotrade.uk")
    actions = [(e["action"], e["source"]) for e in json.loads(out)["events"]]
    assert actions == [
        ("added", "hagezis-fake-dns-blocklist"),
        ("added", "hagezi-fake"),
        ("removed", "hagezis-fake-dns-blocklist"),
        ("removed", "hagezi-fake"),
    ]
    # a list without a name in its header needs --source
    p = tmp_path / "spamhaus.txt"
    p.write_bytes(shared_file("spamhaus_drop_2024-02-27_via_SecOps.txt").read_bytes())
    code, _, err = _run(db, "import", str(p))
    assert code == 2 and "registry.no_source" in err
