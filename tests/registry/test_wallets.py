"""Issue 17: the ``wallet`` register kind — canonical form, both importers (SQLite and a real
PostgreSQL server), history, ``registry check``, content matching, refusals that leave the store
unchanged, fuzzing, and exports that leave wallets out.

Every address is made here with :mod:`sluice.crypto`'s encoders from seeded random payloads, or
is one of the published test vectors of ``tests/crypto/test_addresses.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.cli.registry import registry
from sluice.crypto.codecs import b58encode, eip55, ton_decode, ton_encode
from sluice.crypto.synth import SYNTH_CHAINS, random_address
from sluice.registry.exports import EXPORT_TARGETS, export_entries
from sluice.registry.importers import detect_format, parse_files
from sluice.registry.importers._common import ParseResult
from sluice.registry.importers.wallets import SDN_TICKERS, SDN_UNSUPPORTED
from sluice.registry.matcher import Matcher, MatchReason
from sluice.registry.model import AuditAction, Entry, Kind, LegalBasis, Proposal, RegistryError
from sluice.registry.names import BadIndicator
from sluice.registry.proposals import canonical_proposal as canonical
from sluice.registry.stores import RegistryStore, SqliteStore
from sluice.registry.sync import import_files
from sluice.registry.wallets import CHAIN_PREFIX, canon_wallet, entry_checksum

from .test_refusals import snapshot

GENESIS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"  # Bitcoin's genesis coinbase address
BIP173_P2WPKH = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
EIP55_VECTOR = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's first test vector
XMR_VECTOR = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
TRON_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
TON_VECTOR = "EQCD39VS5jcptHL8vMjEXrzGaRcCVYto7HUn4bpAOg8xqB2N"
CASH_VECTOR = "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a"

_ALPHABETS = {
    "bech32": "qpzry9x8gf2tvdw0s3jn54khce6mua7l",
    "hex": "0123456789abcdef",
    "b58": "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
    "ton": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
}


def addresses(n: int, seed: str, chains: tuple[str, ...] = SYNTH_CHAINS) -> list[tuple[str, str]]:
    """``n`` random valid (chain, address) pairs, round robin over ``chains``."""
    rnd = random.Random(seed)
    return [(c, random_address(c, rnd)) for c in (chains[i % len(chains)] for i in range(n))]


def mutate(chain: str, addr: str, rnd: random.Random) -> str:
    """``addr`` with one character changed so that its checksum fails (checked)."""
    if chain == "ethereum":
        alphabet, start = _ALPHABETS["hex"], 2
    elif chain in ("bitcoin-cash",) or addr.lower().startswith(("bc1", "ltc1")):
        alphabet, start = _ALPHABETS["bech32"], addr.index(":") + 1 if ":" in addr else 4
    elif chain == "ton":
        alphabet, start = _ALPHABETS["ton"], 2
    else:
        alphabet, start = _ALPHABETS["b58"], 1
    for _ in range(100):
        i = rnd.randrange(start, len(addr))
        if addr[i].lower() not in alphabet.lower():
            continue
        bad = addr[:i] + rnd.choice([c for c in alphabet if c != addr[i]]) + addr[i + 1 :]
        try:
            canon_wallet(bad, chain)
        except BadIndicator:
            return bad
    raise AssertionError(f"no failing mutation of {addr}")


def num(addr: str) -> str:
    """A decision number of its own for each address (stable when rows move)."""
    return str(int(hashlib.sha256(addr.encode()).hexdigest()[:5], 16))


def basis_of(addr: str) -> LegalBasis:
    """The decision :func:`csv_text` writes for ``addr``."""
    return LegalBasis("Court", num(addr), f"2024-05-{1 + int(num(addr)) % 28:02d}")


def csv_text(rows: list[tuple[str, str]], header: str = "chain,address,authority,number,date") -> str:
    lines = ["# wallets made by sluice.crypto.synth", header]
    for chain, addr in rows:
        b = basis_of(addr)
        lines.append(f"{CHAIN_PREFIX.get(chain, chain)},{addr},{b.authority},{b.number},{b.date}")
    return "\n".join(lines) + "\n"


TICKER = {"bitcoin": "XBT", "ethereum": "ETH", "monero": "XMR", "litecoin": "LTC", "tron": "TRX"}


def sdn_text(rows: list[tuple[str, str]], per_line: int = 3) -> str:
    """SDN-style lines: ``ent_num,"NAME",...,"remarks with Digital Currency Address - T a; ..."``
    (the entity number is :func:`num` of the line's first address)."""
    out = ["ent_num,SDN_Name,SDN_Type,Remarks", '1,"NOBODY","individual","DOB 1970; no address"']
    for j in range(0, len(rows), per_line):
        items = "; ".join(f"Digital Currency Address - {TICKER[c]} {a}" for c, a in rows[j : j + per_line])
        out.append(f'{num(rows[j][1])},"ENTITY {j}","entity","Website example.org; alt. {items}."')
    return "\n".join(out) + "\n"


SDN_CHAINS = tuple(TICKER)


# -- canonical form ---------------------------------------------------------------------------


def test_canonical_forms() -> None:
    assert canon_wallet(GENESIS).indicator == f"btc:{GENESIS}"
    assert canon_wallet(f"XBT:{GENESIS}").indicator == f"btc:{GENESIS}"
    assert canon_wallet(BIP173_P2WPKH.upper(), "bitcoin").indicator == f"btc:{BIP173_P2WPKH}"
    w = canon_wallet(EIP55_VECTOR.lower(), "eth")
    assert w.indicator == f"eth:{EIP55_VECTOR}" and w.checksum == "unchecksummed"
    assert w.display.endswith("(unchecksummed)")
    assert canon_wallet(EIP55_VECTOR).checksum == "verified" and canon_wallet(EIP55_VECTOR).display == ""
    assert canon_wallet(CASH_VECTOR).indicator == "bch:" + CASH_VECTOR.split(":")[1]
    assert (
        canon_wallet("bch:" + CASH_VECTOR.split(":")[1].upper()).indicator
        == "bch:" + CASH_VECTOR.split(":")[1]
    )
    assert canon_wallet(XMR_VECTOR, "xmr").indicator == f"xmr:{XMR_VECTOR}"
    assert canon_wallet(TRON_USDT, "USDT-TRC20").indicator == f"trx:{TRON_USDT}"
    # TON: the non-bounceable and base64 spellings of one account are one entry
    _flags, wc, acct = ton_decode(TON_VECTOR)
    non_bounce = ton_encode(wc, acct, bounceable=False)
    assert non_bounce != TON_VECTOR
    assert canon_wallet(non_bounce).indicator == canon_wallet(TON_VECTOR).indicator == f"ton:{TON_VECTOR}"


def test_refused_forms() -> None:
    sol = b58encode(bytes(range(1, 33)))
    with pytest.raises(BadIndicator) as e:
        canon_wallet(sol)  # no checksum: only with its chain named
    assert e.value.reason == "wallet.needs_chain"
    with pytest.raises(BadIndicator) as e:
        canon_wallet(EIP55_VECTOR.lower())
    assert e.value.reason == "wallet.needs_chain"
    assert canon_wallet(f"sol:{sol}").checksum == "none"
    assert canon_wallet(f"sol:{sol}").display.endswith("(no checksum)")
    assert entry_checksum(f"sol:{sol}") == "none"
    cases = {
        GENESIS[:-1] + "b": "base58check.checksum",
        f"eth:{GENESIS}": "ethereum.format",
        f"doge:{GENESIS}": "chain.mismatch",
        f"foo:{GENESIS}": "chain.unknown",
        EIP55_VECTOR[:3] + EIP55_VECTOR[3].swapcase() + EIP55_VECTOR[4:]: "ethereum.eip55",
    }
    for text, reason in cases.items():
        with pytest.raises(BadIndicator) as e:
            canon_wallet(text)
        assert e.value.reason == reason, text
    with pytest.raises(BadIndicator) as e:
        canon_wallet(GENESIS, "FOO")
    assert e.value.reason == "chain.unknown"
    with pytest.raises(BadIndicator) as e:
        canon_wallet(f"btc:{GENESIS}", "eth")
    assert e.value.reason == "chain.mismatch"


@pytest.mark.parametrize("chain", SYNTH_CHAINS)
def test_every_generated_address_has_one_canonical_form(chain: str) -> None:
    rnd = random.Random(f"canon/{chain}")
    for _ in range(50):
        addr = random_address(chain, rnd)
        w = canon_wallet(addr, chain)
        assert w.indicator.startswith(CHAIN_PREFIX[chain] + ":")
        assert canon_wallet(w.indicator).indicator == w.indicator  # idempotent
        if chain == "ethereum":
            assert canon_wallet(addr.lower(), chain).indicator == w.indicator
        if chain == "solana":  # no checksum: any 32-byte Base58 string is one
            continue
        mutated = mutate(chain, addr, rnd)
        with pytest.raises(BadIndicator):
            canon_wallet(mutated, chain)


# -- importers ------------------------------------------------------------------------------------


def test_formats_are_detected(tmp_path: Path) -> None:
    rows = addresses(10, "detect", SDN_CHAINS)
    assert detect_format(csv_text(rows).encode()) == "wallets"
    assert detect_format(("\ufeff" + csv_text(rows)).encode()) == "wallets"
    assert detect_format(sdn_text(rows).encode()) == "sdn"
    assert detect_format(b"example.com\nexample.org\n") == "domains"


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def test_import_both_formats_history_and_check(store: RegistryStore, tmp_path: Path) -> None:
    rows = addresses(40, "import", SYNTH_CHAINS)
    csv1 = _write(tmp_path, "court-wallets.csv", csv_text(rows))
    s = import_files(store, [csv1], source="court")
    assert (s.fmt, s.rows, s.added, len(s.rejected)) == ("wallets", 40, 40, 0)
    stored = {e.indicator: e for e in store.entries("court")}
    assert all(e.kind is Kind.WALLET for e in stored.values())
    assert {canon_wallet(a, c).indicator for c, a in rows} == set(stored)
    first_chain, first_addr = rows[0]
    ind = canon_wallet(first_addr, first_chain).indicator
    assert stored[ind].basis == (basis_of(first_addr),)
    sol = next(canon_wallet(a, c).indicator for c, a in rows if c == "solana")
    assert stored[sol].display.endswith("(no checksum)")

    sdn_rows = addresses(30, "sdn", SDN_CHAINS)
    sdn = _write(tmp_path, "sdn.csv", sdn_text(sdn_rows))
    s2 = import_files(store, [sdn], source="ofac")
    assert (s2.fmt, s2.rows, s2.added, len(s2.rejected)) == ("sdn", 30, 30, 0)
    e0 = store.lookup(canon_wallet(sdn_rows[0][1], sdn_rows[0][0]).indicator)
    assert [(e.source, e.basis) for e in e0] == [("ofac", (LegalBasis("ofac", num(sdn_rows[0][1]), ""),))]

    # the next court list: one address gone, one decision changed, one new
    new = addresses(1, "import-new", ("monero",))
    rows2 = [rows[0], *rows[2:], *new]
    b0 = basis_of(rows[0][1])
    text2 = csv_text(rows2).replace(f",{rows[0][1]},Court,{b0.number},", f",{rows[0][1]},Court,{b0.number}a,")
    s3 = import_files(store, [_write(tmp_path, "court-wallets.csv", text2)], source="court")
    assert (s3.added, s3.removed, s3.changed) == (1, 1, 1)
    gone = canon_wallet(rows[1][1], rows[1][0]).indicator
    assert [ev.action for ev in store.history(gone)] == [AuditAction.ADDED, AuditAction.REMOVED]
    ev = store.history(ind)
    assert [e.action for e in ev] == [AuditAction.ADDED, AuditAction.CHANGED]
    assert ev[1].old_basis == (b0,)
    assert ev[1].new_basis == (LegalBasis("Court", b0.number + "a", b0.date),)
    assert store.lookup(gone) == []

    # content matching over the store's entries
    m = Matcher.from_store(store)
    assert m.n_wallets == 40 + 30  # 40 - 1 + 1 court, 30 ofac
    assert [x.entry.source for x in m.match(rows[0][1])] == ["court"]
    assert m.match(gone) == []
    assert m.match("example.com") == []


def test_registry_check_cli(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    rows = [
        ("bitcoin", GENESIS),
        ("ethereum", EIP55_VECTOR.lower()),
        ("monero", XMR_VECTOR),
        ("ton", TON_VECTOR),
    ]
    p = _write(tmp_path, "w.csv", csv_text(rows))
    res = CliRunner().invoke(registry, ["import", "--register", str(db), "--source", "w", "--json", str(p)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["added"] == 4
    _flags, wc, acct = ton_decode(TON_VECTOR)
    queries = [GENESIS, f"btc:{GENESIS}", EIP55_VECTOR, ton_encode(wc, acct, bounceable=False), "example.com"]
    res = CliRunner().invoke(
        registry, ["check", "--register", str(db), "--json", "--fail-on-findings", *queries]
    )
    assert res.exit_code == 1
    got = json.loads(res.stdout)
    assert [len(r["matches"]) for r in got] == [1, 1, 1, 1, 0]
    btc = got[0]["matches"][0]
    assert (btc["reason"], btc["kind"], btc["indicator"], btc["checksum"]) == (
        "wallet.exact",
        "wallet",
        f"btc:{GENESIS}",
        "verified",
    )
    assert btc["basis_text"] == [str(basis_of(GENESIS))]
    eth = got[2]["matches"][0]
    assert eth["indicator"] == f"eth:{EIP55_VECTOR}" and eth["checksum"] == "unchecksummed"
    assert eth["shown"].endswith("(unchecksummed)")
    res = CliRunner().invoke(registry, ["--db", str(db), "check", f"eth:{EIP55_VECTOR}", "xmr:" + XMR_VECTOR])
    assert res.exit_code == 0 and "wallet.exact" in res.stdout and "[w]" in res.stdout
    res = CliRunner().invoke(registry, ["--db", str(db), "history", "--json", f"btc:{GENESIS}"])
    h = json.loads(res.stdout)
    assert res.exit_code == 0 and h["indicator"] == f"btc:{GENESIS}"
    assert [e["action"] for e in h["events"]] == ["added"] and h["current"][0]["kind"] == "wallet"
    res = CliRunner().invoke(registry, ["--db", str(db), "history", "btc:" + GENESIS[:-1] + "b"])
    assert res.exit_code == 2 and "registry.bad_indicator" in res.stderr
    res = CliRunner().invoke(registry, ["--db", str(db), "stats", "--json"])
    assert json.loads(res.stdout)["entries"]["w"] == {"wallet": 4}


def test_sdn_ticker_mapping(tmp_path: Path) -> None:
    eth_usdt = "0x" + eip55(bytes(range(20)).hex())
    lines = [
        f"Digital Currency Address - XBT {GENESIS}; Digital Currency Address - USDT {TRON_USDT};",
        f"Digital Currency Address - USDT {eth_usdt}; Digital Currency Address - ETH {EIP55_VECTOR}.",
        f"Digital Currency Address - XMR {XMR_VECTOR}",
        f"Digital Currency Address - TRX {TRON_USDT}",
        f"alt. Digital Currency Address - LTC {random_address('litecoin', random.Random(1))}",
    ]
    res = parse_files([_write(tmp_path, "s.txt", "\n".join(lines) + "\n")], "sdn", source="ofac")
    got = {k[1] for k in res.entries}
    assert got == {
        f"btc:{GENESIS}",
        f"trx:{TRON_USDT}",
        f"eth:{eth_usdt}",
        f"eth:{EIP55_VECTOR}",
        f"xmr:{XMR_VECTOR}",
        canon_wallet(random_address("litecoin", random.Random(1)), "ltc").indicator,
    }
    assert res.rows == 7 and res.rejected == []
    assert {"XBT", "ETH", "XMR", "LTC", "USDT", "TRX"} <= set(SDN_TICKERS)
    assert not set(SDN_TICKERS) & SDN_UNSUPPORTED


def test_sdn_unsupported_and_unknown_tickers(tmp_path: Path) -> None:
    rows = addresses(40, "sdn-tickers", SDN_CHAINS)
    text = sdn_text(rows) + '2,"X","entity","Digital Currency Address - ZEC t1Zcashaddressxyz"\n'
    res = parse_files([_write(tmp_path, "a.txt", text)], "sdn", source="o")
    assert [r.reason for r in res.rejected] == ["sdn.unsupported_chain"]
    text2 = sdn_text(rows) + "Digital Currency Address - FOO 1abc\n"
    res = parse_files([_write(tmp_path, "b.txt", text2)], "sdn", source="o")
    assert [r.reason for r in res.rejected] == ["sdn.unknown_ticker"]


def test_deliberate_leave_out_holds_back_nothing_but_a_bad_row_does(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    rows = addresses(40, "holdback", SDN_CHAINS)
    import_files(sqlite_store, [_write(tmp_path, "s.txt", sdn_text(rows, 1))], source="o")
    # the next list drops one address and adds a ZEC one: the drop goes through
    zec = '9,"Z","entity","Digital Currency Address - ZEC t1Zcashaddressxyz"\n'
    s = import_files(sqlite_store, [_write(tmp_path, "s.txt", sdn_text(rows[1:], 1) + zec)], source="o")
    assert (s.removed, s.held) == (1, 0)
    # a checksum-invalid row holds back the next removal
    bad = f'9,"Z","entity","Digital Currency Address - XBT {mutate("bitcoin", GENESIS, random.Random(2))}"\n'
    s = import_files(sqlite_store, [_write(tmp_path, "s.txt", sdn_text(rows[2:], 1) + bad)], source="o")
    assert (s.removed, s.held) == (0, 1)
    assert s.rejected[0].reason == "sdn.base58check.checksum"


# -- refusals: nothing changes --------------------------------------------------------------------


def _refused(store: RegistryStore, path: Path, reason: str, fmt: str = "auto", **kw: object) -> None:
    before = snapshot(store)
    with pytest.raises(RegistryError) as info:
        import_files(store, [path], fmt, **kw)  # type: ignore[arg-type]
    assert info.value.reason == reason, info.value
    assert snapshot(store) == before


def test_refusals_leave_the_store_unchanged(store: RegistryStore, tmp_path: Path) -> None:
    rnd = random.Random("refusals")
    rows = addresses(40, "refusals")
    import_files(store, [_write(tmp_path, "base.csv", csv_text(rows))], source="w")
    import_files(
        store, [_write(tmp_path, "base-sdn.txt", sdn_text(addresses(20, "r-sdn", SDN_CHAINS)))], source="s"
    )
    # checksum-invalid: most rows
    bad = [(c, mutate(c, a, rnd)) if i % 3 else (c, a) for i, (c, a) in enumerate(rows) if c != "solana"]
    _refused(store, _write(tmp_path, "bad.csv", csv_text(bad)), "registry.damaged", source="w")
    bad_sdn = [
        (c, mutate(c, a, rnd)) if i % 3 else (c, a)
        for i, (c, a) in enumerate(addresses(20, "r-sdn", SDN_CHAINS))
    ]
    _refused(store, _write(tmp_path, "bad.txt", sdn_text(bad_sdn)), "registry.damaged", source="s")
    # unknown tickers and chains
    unknown = (
        sdn_text(addresses(20, "r-sdn", SDN_CHAINS)).replace("- XBT ", "- QQQ ").replace("- ETH ", "- ETX ")
    )
    _refused(store, _write(tmp_path, "unk.txt", unknown), "registry.damaged", source="s")
    unk_csv = csv_text(rows).replace("\nbtc,", "\nbitcoinz,").replace("\neth,", "\nether,")
    _refused(store, _write(tmp_path, "unk.csv", unk_csv), "registry.damaged", source="w")
    # mixed garbage: valid rows between random junk lines
    junk = []
    for c, a in rows:
        junk.append(f"{CHAIN_PREFIX[c]},{a},Court")
        noise = "".join(rnd.choice("abc,;: 0x\"'\t1LMQ") for _ in range(rnd.randrange(1, 60)))
        junk.append(rnd.choice([noise, f"btc,{noise}", f"{noise},{a},x", f"eth,{a[:20]}"]))
    garbage = "chain,address,authority\n" + "\n".join(junk) + "\n"
    _refused(store, _write(tmp_path, "junk.csv", garbage), "registry.damaged", source="w")
    sdn_junk = "\n".join(
        f"Digital Currency Address - XBT {a[: rnd.randrange(len(a))]}{rnd.choice(['', ';', 'x1'])}"
        for _, a in addresses(20, "r-sdn-junk", ("bitcoin",))
    )
    sdn_junk = sdn_text(addresses(20, "r-sdn", SDN_CHAINS)) + sdn_junk + "\n"
    _refused(store, _write(tmp_path, "junk.txt", sdn_junk), "registry.damaged", source="s")
    # no header, a bad header, a cut last line, a cut SDN item
    _refused(store, _write(tmp_path, "nohead.csv", "btc,x\n"), "registry.bad_format", "wallets", source="w")
    head_bad = csv_text(rows, header="chain,address,comment")
    _refused(store, _write(tmp_path, "h.csv", head_bad), "registry.bad_format", source="w")
    cut = csv_text(rows)
    _refused(
        store, _write(tmp_path, "cut.csv", cut[: cut.rindex(",2024") - 9]), "registry.truncated", source="w"
    )
    cut_sdn = sdn_text(addresses(20, "r-sdn", SDN_CHAINS)).rstrip("\n")
    _refused(store, _write(tmp_path, "cut.txt", cut_sdn[:-12]), "registry.truncated", source="s")
    # a file with no wallet at all
    _refused(
        store, _write(tmp_path, "none.txt", "Digital currency address list\n"), "registry.empty_input", "sdn"
    )
    assert len(list(store.entries())) == 60


# -- hypothesis: both importers give a result or a RegistryError, and a refusal changes nothing ---

_VALID = addresses(60, "fuzz")
_VALID_SDN = addresses(60, "fuzz-sdn", SDN_CHAINS)
_line = st.one_of(
    st.sampled_from(csv_text(_VALID).splitlines()[1:]),
    st.sampled_from(sdn_text(_VALID_SDN).splitlines()),
    st.text(max_size=120),
    st.builds(
        lambda c, a: f"{c},{a}",
        st.sampled_from([*CHAIN_PREFIX.values(), "xbt", "zzz", ""]),
        st.text(max_size=60),
    ),
    st.builds(
        lambda t, a: f"Digital Currency Address - {t} {a};",
        st.sampled_from([*SDN_TICKERS, *SDN_UNSUPPORTED, "FOO", ""]),
        st.text(max_size=60),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(_line, max_size=40),
    fmt=st.sampled_from(["wallets", "sdn", "auto"]),
    tail=st.binary(max_size=40),
    newline=st.booleans(),
)
def test_fuzz_importers_only_raise_registry_error(
    tmp_path: Path, lines: list[str], fmt: str, tail: bytes, newline: bool
) -> None:
    body = ("\n".join(lines) + ("\n" if newline else "")).encode("utf-8", "surrogatepass") + tail
    p = tmp_path / "fz.txt"
    p.write_bytes(body)
    try:
        res = parse_files([p], fmt, source="fz")
    except RegistryError as exc:
        assert exc.reason.startswith("registry.")
        return
    assert isinstance(res, ParseResult)
    if res.fmt not in ("wallets", "sdn"):  # auto: the bytes looked like another list
        assert fmt == "auto"
        return
    for kind, ind in res.entries:
        assert kind == "wallet" and canon_wallet(ind).indicator == ind


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line, max_size=40), fmt=st.sampled_from(["wallets", "sdn"]))
def test_fuzz_refused_import_changes_nothing(
    sqlite_store: SqliteStore, tmp_path: Path, lines: list[str], fmt: str
) -> None:
    if not sqlite_store.imports():
        import_files(sqlite_store, [_write(tmp_path, "seed.csv", csv_text(_VALID[:30]))], source="fz")
    p = _write(tmp_path, "fz.txt", "chain,address\n" * (fmt == "wallets") + "\n".join(lines) + "\n")
    before = snapshot(sqlite_store)
    try:
        s = import_files(sqlite_store, [p], fmt, source="fz")
    except RegistryError as exc:
        assert exc.reason.startswith("registry.")
        assert snapshot(sqlite_store) == before
    else:
        assert len(sqlite_store.source_state("fz")) == s.entries + s.held


# -- content matching -----------------------------------------------------------------------------


def _matcher(rows: list[tuple[str, str]], source: str = "court") -> Matcher:
    return Matcher(
        (source, "wallet", canon_wallet(a, c).indicator, '[["Court", "1", "2024-01-01"]]') for c, a in rows
    )


def test_find_wallets_in_content() -> None:
    listed = addresses(20, "content-listed", tuple(c for c in SYNTH_CHAINS if c != "solana"))
    other = addresses(20, "content-other", tuple(c for c in SYNTH_CHAINS if c != "solana"))
    m = _matcher(listed)
    rnd = random.Random("content")
    parts, want = [], []
    for (c, a), (_, b) in zip(listed, other, strict=True):
        shown = a.lower() if c == "ethereum" else a
        parts.append(f"pay to {shown} please; ")
        want.append((c, shown))
        parts.append(f"or {b}, or {mutate(c, a, rnd)}\n")
    text = "".join(parts)
    hits = m.find_wallets(text)
    assert [(h.address.chain, h.address.address) for h in hits] == want
    for h in hits:
        assert text[h.offset : h.offset + len(h.address.address)] == h.address.address
        assert [x.reason for x in h.matches] == [MatchReason.WALLET]
        assert h.matches[0].entry.basis == (LegalBasis("Court", "1", "2024-01-01"),)
    in_bytes = m.find_wallets(("Привет " + text).encode("utf-8"))
    assert len(in_bytes) == len(want)
    assert Matcher([("x", "domain", "example.com", "[]")]).find_wallets(text) == []


def test_ton_and_cashaddr_spellings_match_in_content() -> None:
    _flags, wc, acct = ton_decode(TON_VECTOR)
    m = _matcher([("ton", TON_VECTOR), ("bitcoin-cash", CASH_VECTOR)])
    text = (
        f"send TON to {ton_encode(wc, acct, bounceable=False)} or BCH to {CASH_VECTOR.split(':')[1].upper()}"
    )
    hits = m.find_wallets(text)
    assert [h.matches[0].entry.indicator for h in hits] == [
        f"ton:{TON_VECTOR}",
        "bch:" + CASH_VECTOR.split(":")[1],
    ]


def test_solana_entries_match_only_next_to_its_name() -> None:
    sol = b58encode(bytes(range(1, 33)))
    m = _matcher([("solana", sol)])
    assert m.find_wallets(f"token {sol}") == []
    (hit,) = m.find_wallets(f"Solana wallet: {sol}")
    assert hit.matches[0].entry.indicator == f"sol:{sol}"
    assert m.match(sol)[0].entry.display.endswith("(no checksum)")


# -- exports skip wallets -------------------------------------------------------------------------

MIXED = [
    Entry(Kind.DOMAIN, "example.com", "t"),
    Entry(Kind.IP, "192.0.2.1", "t"),
    Entry(Kind.URL, "http://example.org/x", "t"),
    *[Entry(Kind.WALLET, canon_wallet(a, c).indicator, "t") for c, a in addresses(12, "export")],
]


@pytest.mark.parametrize("target", EXPORT_TARGETS)
def test_exports_skip_wallets(target: str) -> None:
    out = export_entries(MIXED, target)
    assert out.skipped["wallet.not_network_indicator"] == 12
    assert not any("wallet" in k for k in out.written)
    for e in MIXED[3:]:
        assert e.indicator.split(":", 1)[1] not in out.text
    # a register of wallets alone exports nothing but the target's frame
    only = export_entries(MIXED[3:], target)
    assert only.written in ({}, {"ip/subnet (merged v4)": 0}) or sum(only.written.values()) == 0


def test_export_cli_counts_skipped_wallets(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    p = _write(tmp_path, "w.csv", csv_text(addresses(10, "export-cli")))
    assert (
        CliRunner().invoke(registry, ["import", "--register", str(db), "--source", "w", str(p)]).exit_code
        == 0
    )
    out = tmp_path / "out.rpz"
    res = CliRunner().invoke(
        registry, ["export", "--register", str(db), "--to", "rpz", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0
    assert json.loads(res.stdout)["skipped"] == {"wallet.not_network_indicator": 10}


# -- proposals of wallets are canonical like the rest -----------------------------------------------


def test_wallet_proposal_is_canonical() -> None:
    p = canonical(Proposal(Kind.WALLET, f"ETH:{EIP55_VECTOR.lower()}", "crypto-scan", "seen on a page"))
    assert p.indicator == f"eth:{EIP55_VECTOR}"
    with pytest.raises(RegistryError) as e:
        canonical(Proposal(Kind.WALLET, GENESIS[:-1] + "b", "crypto-scan", "seen"))
    assert e.value.reason == "registry.bad_indicator"
