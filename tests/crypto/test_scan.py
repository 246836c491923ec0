"""``sluice crypto scan``: page scores with evidence, and one JSONL object per address and per page."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sluice.cli.crypto import crypto
from sluice.crypto.scan import score_text

RU_PAGE = (
    "Купить USDT без верификации — P2P-торговля и обменник криптовалюты. Биржа Garantex, вывод на карту. "
    "Пополните кошелёк: TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t (TRC20). Курс BTC и ETH обновляется."
)
EN_FORUM = (
    "Anyone tried the new mining pool? My hashrate dropped after switching miners. XMR payouts go to "
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)
OTHER = (
    "The river flooded the old mill in spring. Volunteers stacked sandbags along the bank while the "
    "council argued about the budget for a new bridge. Commit 3f2a9c1e0b7d4a5f6e8c9b0a1d2e3f4a5b6c7d8e."
)


def test_russian_exchange_page_and_english_mining_forum_are_crypto() -> None:
    for text in (RU_PAGE, EN_FORUM):
        page = score_text(text)
        assert page.label == "crypto" and page.score >= 0.5
        assert any(e["kind"] == "address" for e in page.evidence)
    kinds = {(e["kind"], e["what"]) for e in score_text(RU_PAGE).evidence}
    assert ("brand", "Garantex") in kinds and ("ticker", "USDT") in kinds


def test_ordinary_text_is_other() -> None:
    page = score_text(OTHER)
    assert page.label == "other" and page.score < 0.2 and not page.addresses


def test_cli_jsonl(tmp_path: Path) -> None:
    a, b = tmp_path / "a.html", tmp_path / "b.txt"
    a.write_text(RU_PAGE, encoding="utf-8")
    b.write_text(OTHER, encoding="utf-8")
    res = CliRunner().invoke(crypto, ["scan", str(a), str(b), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    addr = [r for r in rows if r["kind"] == "address"]
    assert len(addr) == 1 and addr[0]["chain"] == "tron" and addr[0]["checksum"] == "verified"
    assert RU_PAGE[addr[0]["offset"] :].startswith(addr[0]["address"])
    pages = {Path(r["file"]).name: r for r in rows if r["kind"] == "page"}
    assert pages["a.html"]["label"] == "crypto" and pages["b.txt"]["label"] == "other"
    res = CliRunner().invoke(crypto, ["scan", str(tmp_path / "missing.txt")])
    assert res.exit_code == 3
