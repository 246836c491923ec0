"""The ``registry`` click group, run through click's CliRunner on the real dumps."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sluice.cli.registry import registry

from .conftest import shared_file


def _run(db: Path, *args: str) -> tuple[int, str, str]:
    """``sluice registry CMD --register DB ARGS`` (the register after the subcommand)."""
    res = CliRunner().invoke(registry, [*args[:1], "--register", str(db), *args[1:]])
    return res.exit_code, res.stdout, res.stderr


def test_import_check_history_export_stats(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    code, out, _ = _run(db, "import", str(shared_file("zi_dump_2016-06-13.csv")))
    assert code == 0 and "30663 rows" in out and "29270 added" in out
    code, out, _ = _run(db, "import", "--json", str(shared_file("zi_dump_2016-06-13.csv")))
    assert code == 0 and json.loads(out)["unchanged"] == 29270
    code, out, _ = _run(
        db, "import", "--source", "fake", str(shared_file("hagezi_fake_adblock_2022-07-24.txt"))
    )
    assert code == 0
    code, out, _ = _run(
        db, "check", "www.iserver1.tv", "x.10xcryptotrade.uk", "8.8.8.8", "http://76автобар.рф/"
    )
    assert code == 0
    assert "domain.www" in out and "Мосгорсуд" in out and "8.8.8.8: no entry" in out
    assert "url.exact" in out and "76автобар.рф" in out
    code, out, _ = _run(db, "check", "--json", "--fail-on-findings", "iserver1.tv")
    assert code == 1 and json.loads(out)[0]["matches"][0]["basis"][0]["date"] == "2015-10-19"
    code, out, _ = _run(db, "history", "--json", "iserver1.tv")
    h = json.loads(out)
    assert code == 0 and [e["action"] for e in h["events"]] == ["added"]
    assert h["current"][0]["source"] == "rkn"
    out_file = tmp_path / "blocked.rpz"
    code, out, _ = _run(db, "export", "--to", "rpz", "--out", str(out_file), "--json")
    assert code == 0 and json.loads(out)["written"]["domain"] == 3814
    assert out_file.read_text().count("CNAME") > 3814
    code, out, _ = _run(db, "stats", "--json")
    assert code == 0 and json.loads(out)["entries"]["fake"] == {"domain-mask": 7355}


def test_exit_codes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    code, _, err = _run(db, "import", str(tmp_path / "missing.csv"))
    assert code == 3 and "no such file" in err
    code, _, err = _run(db, "import", str(shared_file("zi_dump_2018-05-05_PARTIAL.csv")))
    assert code == 3 and "registry.truncated" in err
    code, out, _ = _run(db, "import", "--json", str(shared_file("zi_dump_2018-05-05_PARTIAL.csv")))
    assert code == 3 and json.loads(out)["error"] == "registry.truncated"
    code, _, _ = _run(db, "import", "--format", "nope", "x")
    assert code == 2
    code, _, _ = _run(db, "export", "--to", "iptables")
    assert code == 2
    code, _, err = _run(db, "history", "bad name!")
    assert code == 2 and "registry.bad_indicator" in err
    code, _, err = _run(tmp_path / "no" / "such" / "dir.db", "stats")
    assert code == 2 and "registry.no_register" in err and "sluice registry init" in err
    (tmp_path / "notes.txt").write_text("not a database\n" * 200)
    code, _, err = _run(tmp_path / "notes.txt", "stats")
    assert code == 3 and "registry.store_unavailable" in err
    code, _, err = _run(db, "export", "--to", "hosts", "--out", str(tmp_path / "no" / "x"))
    assert code == 3
