"""``sluice registry proposals`` and ``impact`` / ``import --preview`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.cli.registry import registry
from sluice.registry.model import Kind, Proposal
from sluice.registry.proposals import propose
from sluice.registry.stores import SqliteStore

from .test_impact import CLOUD, network, write_log


def _run(db: Path, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(registry, ["--db", str(db), *args])
    return res.exit_code, res.stdout, res.stderr


def _seed(db: Path) -> list[int]:
    st = SqliteStore(db, create=True)
    try:
        return [
            propose(
                st, Proposal(Kind.DOMAIN, f"gate{i}.examplevpn.net", "vpn-services", "endpoint", {"n": i})
            )
            for i in range(3)
        ]
    finally:
        st.close()


def test_proposals_commands(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    a, b, c = _seed(db)
    code, out, _ = _run(db, "proposals", "list", "--format", "json")
    assert code == 0 and [p["id"] for p in json.loads(out)] == [c, b, a]
    code, out, _ = _run(db, "proposals", "accept", str(a), str(b), "--reviewer", "alice", "--reason", "seen")
    assert code == 0 and f"#{a}: accepted (import #" in out
    code, out, _ = _run(
        db, "proposals", "reject", str(b), str(c), "--reviewer", "bob", "--reason", "no", "--json"
    )
    got = {o["id"]: o for o in json.loads(out)}
    assert (
        code == 0
        and not got[b]["changed"]
        and got[b]["state"] == "accepted"
        and got[c]["state"] == "rejected"
    )
    code, out, _ = _run(db, "proposals", "list", "--state", "accepted")
    assert code == 0 and out.count("accepted by alice") == 2 and "gate2" not in out
    code, out, _ = _run(db, "proposals", "show", str(a))
    assert (
        code == 0 and '"n": 0' in out and "accepted by alice  seen" in out and "proposals:vpn-services" in out
    )
    code, out, _ = _run(db, "check", "--json", "gate0.examplevpn.net")
    assert json.loads(out)[0]["matches"][0]["basis_text"] == [
        f"review by alice: seen / proposal #{a} / " + _today()
    ]
    code, _, err = _run(db, "proposals", "accept", "999", "--reviewer", "x", "--reason", "y")
    assert code == 2 and "registry.no_proposal" in err
    code, _, err = _run(db, "proposals", "list", "--state", "open")
    assert code == 2 and "registry.bad_state" in err
    code, _, _ = _run(db, "proposals", "accept", str(a), "--reason", "y")  # no reviewer
    assert code == 2


def _today() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).date().isoformat()


def test_impact_and_import_preview(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    log = write_log(tmp_path / "flows.jsonl", "jsonl")
    _, truth = network()
    code, out, _ = _run(
        db, "impact", CLOUD, "--flows", str(log), "--own", "*.messenger.example", "--format", "json"
    )
    assert code == 0
    [e] = json.loads(out)["entries"]
    assert e["collateral_flows"] == truth.collateral_flows and e["collateral_names"] == len(
        truth.collateral_names
    )
    code, out, _ = _run(db, "impact", CLOUD, "--flows", str(log), "--own", "*.messenger.example")
    assert code == 0 and "play.gamenet.example" in out and "collateral 213 flows" in out
    cidrs = tmp_path / "list.txt"
    cidrs.write_text(f"{CLOUD}\n")
    code, out, _ = _run(
        db,
        "import",
        str(cidrs),
        "--format",
        "cidrs",
        "--preview",
        "--flows",
        str(log),
        "--own",
        "*.messenger.example",
    )
    assert code == 0 and "voice.talkapp.example" in out
    assert not db.exists()  # a preview writes nothing, opens no store
    code, _, _ = _run(db, "import", str(cidrs), "--preview")
    assert code == 2
    code, _, err = _run(db, "impact", "bad name!", "--flows", str(log))
    assert code == 2 and "registry.bad_indicator" in err
    code, _, err = _run(db, "impact", CLOUD, "--flows", str(tmp_path / "none.jsonl"))
    assert code == 3 and "registry.io_error" in err


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_entry_and_own_parsing_fuzz(text: str) -> None:
    """Whatever a person types as an entry or own name: a result or a usage error, never a crash."""
    from sluice.registry._traffic import Traffic
    from sluice.registry.impact import parse_entry, preview_impact
    from sluice.registry.model import RegistryError

    try:
        entry = parse_entry(text)
    except RegistryError as exc:
        assert exc.reason == "registry.bad_indicator"
    else:
        assert preview_impact([entry], Traffic()).entries[0].flows == 0
    try:
        preview_impact([], Traffic(), own=[text])
    except RegistryError as exc:
        assert exc.reason == "registry.bad_indicator"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(
                ["server", "client", "sni", "dns_query", "dns_answers", "app", "c2s_bytes", "early"]
            ),
            st.one_of(
                st.text(max_size=20), st.integers(), st.none(), st.lists(st.text(max_size=16), max_size=3)
            ),
        ),
        max_size=8,
    )
)
def test_flow_log_rows_fuzz(rows: list[dict[str, object]]) -> None:
    """Any JSON object rows: read (unusable ones skipped), never a crash."""
    import tempfile

    from sluice.registry._traffic import read_traffic

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows) or "{}\n")
        t = read_traffic([p])
        assert len(t.flows) + t.skipped <= max(len(rows), 1)
