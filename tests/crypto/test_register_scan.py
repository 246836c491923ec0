"""``sluice crypto scan --db``: addresses found in pages that are register wallets, and the
validator's contract the register relies on (only ``AddressError``, whatever the input)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.cli.crypto import crypto
from sluice.cli.registry import registry
from sluice.crypto.addresses import CHAINS, validate
from sluice.crypto.codecs import AddressError
from sluice.crypto.synth import random_address, text_with

GENESIS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"


def _jsonl(out: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in out.splitlines() if ln.strip()]


@pytest.fixture
def register(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """A register with 6 wallets of a court list; 6 more addresses of the same chains not in it."""
    rnd = random.Random("scan-register")
    chains = ("bitcoin", "ethereum", "monero", "tron", "litecoin", "ton")
    listed = [random_address(c, rnd) for c in chains]
    unlisted = [random_address(c, rnd) for c in chains]
    rows = ["chain,address,authority,number"] + [
        f"{c},{a},Court,{i}" for i, (c, a) in enumerate(zip(chains, listed, strict=True))
    ]
    src = tmp_path / "court.csv"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    db = tmp_path / "r.db"
    res = CliRunner().invoke(registry, ["import", "--register", str(db), "--source", "court", str(src)])
    assert res.exit_code == 0, res.output
    return db, listed, unlisted


def test_scan_flags_register_wallets(tmp_path: Path, register: tuple[Path, list[str], list[str]]) -> None:
    db, listed, unlisted = register
    rnd = random.Random("scan-page")
    page = tmp_path / "page.html"
    body = [text_with(a, "x", rnd) for pair in zip(listed, unlisted, strict=True) for a in pair]
    page.write_text("<p>" + "</p><p>".join(body) + "</p>", encoding="utf-8")
    res = CliRunner().invoke(crypto, ["scan", "--db", str(db), "--format", "jsonl", str(page)])
    assert res.exit_code == 0, res.output
    rows = _jsonl(res.stdout)
    addrs = [r for r in rows if r["kind"] == "address"]
    assert [r["address"] for r in addrs] == [a for pair in zip(listed, unlisted, strict=True) for a in pair]
    flagged = {str(r["address"]): r["register"] for r in addrs}
    for a in listed:
        (hit,) = flagged[a]
        assert hit["source"] == "court" and hit["reason"] == "wallet.exact"
        assert hit["basis_text"][0].startswith("Court / ")
    assert all(flagged[a] == [] for a in unlisted)
    (pg,) = [r for r in rows if r["kind"] == "page"]
    assert pg["register"] == len(listed)
    table = CliRunner().invoke(crypto, ["scan", "--db", str(db), str(page)])
    assert table.exit_code == 0 and table.stdout.count("REGISTER [court]") == len(listed)


def test_scan_without_register_says_not_checked(tmp_path: Path) -> None:
    page = tmp_path / "p.txt"
    page.write_text(f"donate {GENESIS}\n", encoding="utf-8")
    no_env = {"SLUICE_REGISTRY": None, "SLUICE_REGISTRY_DB": None}
    res = CliRunner().invoke(crypto, ["scan", "--json", str(page)], env=no_env)
    rows = _jsonl(res.stdout)
    assert res.exit_code == 0 and rows[0]["register"] is None and rows[1]["register"] is None
    res = CliRunner().invoke(crypto, ["scan", "--db", str(tmp_path / "none.db"), str(page)])
    assert res.exit_code == 2 and "no register" in res.stderr
    assert not (tmp_path / "none.db").exists()  # never created by a scan


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=130), chain=st.sampled_from([None, *CHAINS, "xbt", "usdt-trc20", "foo"]))
def test_validate_raises_only_address_error(text: str, chain: str | None) -> None:
    try:
        a = validate(text, chain)
    except AddressError as exc:
        assert exc.reason
    else:
        assert a.chain in CHAINS


def test_empty_address_is_refused_with_a_reason() -> None:
    for chain in (None, *CHAINS):
        with pytest.raises(AddressError) as e:
            validate("  ", chain)
        assert e.value.reason == "address.empty"
