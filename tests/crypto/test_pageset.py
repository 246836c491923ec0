"""The labelled-page machinery of ``bench/crypto_pages.py``, on fixtures this test writes itself."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from sluice.crypto.pageset import (
    LabelledText,
    chunk_entries,
    confusion,
    parse_po,
    parse_translations,
    read_manifest,
    read_mo,
    split_of,
    text_sha256,
    write_manifest,
)
from sluice.crypto.scan import THRESHOLD, score_text

MANIFEST = Path(__file__).resolve().parents[2] / "bench" / "crypto_pages.tsv"

TRANSLATION = """Package: coinwallet
Description-md5: 0123456789abcdef0123456789abcdef
Description-en: Bitcoin wallet for the desktop
 A lightweight wallet for Bitcoin and Litecoin.
 .
 It keeps your seed phrase offline.

Package: kwallet-thing
Description-md5: fedcba9876543210fedcba9876543210
Description-en: password store
 Stores passwords in KWallet.
"""

PO = r"""# header
msgid ""
msgstr "Content-Type: text/plain; charset=UTF-8\n"

#: electrum/gui.py:10
msgid "Send"
msgstr "Отправить"

#: electrum/gui.py:11
msgid ""
"Your wallet \"seed\"\n"
"is shown here"
msgstr ""
"Сид-фраза вашего \"кошелька\"\n"
"показана здесь"

#, fuzzy
msgid "Fee"
msgstr "Комиссия"
"""


def _mo(pairs: list[tuple[str, str]]) -> bytes:
    """A little-endian GNU .mo catalogue (format revision 0)."""
    pairs = sorted(pairs)
    ids = [k.encode() for k, _ in pairs]
    strs = [v.encode() for _, v in pairs]
    n = len(pairs)
    table = 7 * 4
    data_at = table + 16 * n
    blob = b""
    id_tab, str_tab = [], []
    for s in ids:
        id_tab.append((len(s), data_at + len(blob)))
        blob += s + b"\0"
    for s in strs:
        str_tab.append((len(s), data_at + len(blob)))
        blob += s + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, n, table, table + 8 * n, 0, 0)
    return head + b"".join(struct.pack("<2I", *e) for e in id_tab + str_tab) + blob


def test_translation_file_gives_short_and_long_description() -> None:
    got = parse_translations(TRANSLATION)
    assert set(got) == {"coinwallet", "kwallet-thing"}
    md5, text = got["coinwallet"]
    assert md5 == "0123456789abcdef0123456789abcdef"
    assert (
        text == "Bitcoin wallet for the desktop\nA lightweight wallet for Bitcoin and Litecoin.\n\n"
        "It keeps your seed phrase offline."
    )


def test_po_entries_unescaped_header_and_fuzzy_skipped() -> None:
    assert parse_po(PO) == [
        ("Send", "Отправить"),
        ('Your wallet "seed"\nis shown here', 'Сид-фраза вашего "кошелька"\nпоказана здесь'),
    ]


def test_mo_catalogue_read_back() -> None:
    pairs = [("", "Content-Type: text/plain; charset=UTF-8\n"), ("Open", "Открыть"), ("Wallet", "Кошелёк")]
    assert read_mo(_mo(pairs)) == [("Open", "Открыть"), ("Wallet", "Кошелёк")]


def test_chunks_reach_the_minimum_and_drop_a_short_tail() -> None:
    chunks = chunk_entries(["a" * 40] * 10 + ["b" * 5], min_chars=100)
    assert [len(c) for c in chunks] == [122, 122, 122]
    assert chunk_entries(["x" * 60], min_chars=100) == ["x" * 60]
    assert chunk_entries(["x" * 40], min_chars=100) == []


def test_manifest_round_trip_and_split_is_checked(tmp_path: Path) -> None:
    rows = [
        LabelledText(
            f"t:{i}",
            "t",
            str(i),
            "crypto" if i % 3 == 0 else "other",
            i == 4,
            split_of(f"t:{i}"),
            text_sha256(str(i)),
        )
        for i in range(20)
    ]
    path = tmp_path / "m.tsv"
    assert write_manifest(reversed(rows), path) == 20
    assert sorted(read_manifest(path), key=lambda r: int(r.locator)) == rows
    assert {r.split for r in rows} == {"train", "test"}
    bad = path.read_text().replace("\ttrain\t", "\ttest\t", 1)
    path.write_text(bad)
    with pytest.raises(ValueError, match="split"):
        read_manifest(path)


def test_confusion_and_wilson_intervals() -> None:
    c = confusion(["crypto", "crypto", "other", "other", "crypto"], [True, False, True, False, True])
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 1)
    p, lo, hi = c.precision
    assert p == pytest.approx(2 / 3) and lo < p < hi
    assert c.recall[0] == pytest.approx(2 / 3)
    assert confusion(["other"], [False]).precision[1:] == (0.0, 1.0)


def test_scorer_on_a_self_written_labelled_fixture() -> None:
    """Hard negatives of the set's look-alike families (cryptography, KWallet, COIN-OR, accounting)."""
    labelled = [
        (
            "crypto",
            "Electrum is a light Bitcoin wallet: your seed phrase restores it; send BTC to any address.",
        ),
        ("crypto", "Майнинг Monero на процессоре: пул, хешрейт и выплаты XMR на кошелёк."),
        (
            "other",
            "Crypt::CBC implements cipher block chaining with any block cipher; keys come from a passphrase.",
        ),
        (
            "other",
            "KWallet stores passwords and other secrets for KDE applications in an encrypted wallet file.",
        ),
        (
            "other",
            "Clp (Coin-or linear programming) is an open-source linear programming solver written in C++.",
        ),
        ("other", "Ledger is a double-entry accounting system run entirely from the command line."),
    ]
    calls = [score_text(t).score >= THRESHOLD for _, t in labelled]
    c = confusion([lab for lab, _ in labelled], calls)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 0, 0, 4)


def test_project_manifest_is_well_formed() -> None:
    rows = read_manifest(MANIFEST)
    assert len({r.id for r in rows}) == len(rows) > 2000
    sources = {r.source for r in rows}
    assert sources == {"deb-desc-en", "deb-desc-ru", "po-en", "po-ru", "doc"}
    for src in sorted(sources - {"deb-desc-ru"}):
        for split in ("train", "test"):
            assert any(r.source == src and r.split == split and r.label == "crypto" for r in rows), (
                src,
                split,
            )
