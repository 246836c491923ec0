"""``registry check`` answered by indexed store lookups (:mod:`sluice.registry.check`) agrees with
the compiled matcher, and starts without numba, numpy, pyarrow or pandas.

The reference is what ``registry check`` printed before it went to the store: the matcher built
from the whole register (:meth:`Matcher.from_store`), each match as ``match_dict`` gives it,
wallets with their stored display form.  Both are asked the same queries - every entry, its
``www.`` form, names below and above it, addresses inside, at the edges of and next to every
network, URLs on those hosts - and must give the same list, order included.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from sluice.registry.check import match_dict, store_matches
from sluice.registry.matcher import Matcher
from sluice.registry.model import Kind
from sluice.registry.stores import RegistryStore, SqliteStore
from sluice.registry.sync import import_files

from .conftest import REGISTRY_DATA

GENESIS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
BIP173 = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
EIP55 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def _by_matcher(store: RegistryStore, matcher: Matcher, item: str) -> list[dict[str, Any]]:
    """What ``registry check`` answered before (the matcher over the whole register)."""
    ms = matcher.match(item)
    shown: dict[tuple[str, str], str] = {}
    if any(m.entry.kind is Kind.WALLET for m in ms):
        for e in store.lookup(ms[0].entry.indicator):
            shown[(e.source, e.indicator)] = e.display
    return [match_dict(m, shown.get((m.entry.source, m.entry.indicator), "")) for m in ms]


def _by_store(store: RegistryStore, item: str, source: str | None = None) -> list[dict[str, Any]]:
    return [match_dict(m, s) for m, s in store_matches(store, item, source)]


def _queries(store: RegistryStore, rng: random.Random, limit: int) -> list[str]:
    """Queries around the register's entries (at most ``limit`` entries looked at, chosen by seed)."""
    rows = sorted({(k, i) for _, k, i, _ in store.rows()})
    if len(rows) > limit:
        rows = sorted(rng.sample(rows, limit))
    out: list[str] = []
    for kind, ind in rows:
        if kind in ("domain", "domain-mask"):
            name = ind.removeprefix("*.")
            labels = name.split(".")
            out += [name, "www." + name, "x1." + name, "a.b." + name, ".".join(labels[1:]) or name]
            out += [name.upper() + ".", "http://" + name + "/p?q=1", "https://www." + name + ":443/"]
        elif kind == "url":
            out += [ind, ind.upper().replace("HTTP", "http", 1)]
        elif kind in ("ip", "subnet"):
            net = ipaddress.ip_network(ind)
            first, last = int(net.network_address), int(net.broadcast_address)
            top = (1 << net.max_prefixlen) - 1
            for a in {first, last, (first + last) // 2, max(first - 1, 0), min(last + 1, top)}:
                addr = str(ipaddress.ip_address(a) if net.version == 4 else ipaddress.IPv6Address(a))
                out.append(addr)
            if net.version == 4:
                out.append(f"http://{net.network_address}/x")
        elif kind == "wallet":
            out += [ind, ind.split(":", 1)[1]]
    out += ["", " ", "not a name!", "http://", "::1", "fe80::1%eth0", "999.1.1.1", "www.", "a..b"]
    return out


def _compare(store: RegistryStore, queries: Iterable[str], source: str | None = None) -> int:
    matcher = Matcher.from_store(store, source)
    n = hits = 0
    for q in queries:
        want = _by_matcher(store, matcher, q)
        assert _by_store(store, q, source) == want, q
        n += 1
        hits += bool(want)
    assert hits, "no query matched: the comparison tested nothing"
    return n


def _built(tmp: Path) -> list[Path]:
    """Lists of every kind, two sources sharing entries (ties are ordered by source)."""
    rkn = tmp / "dump.csv"
    rows = [
        "10.0.0.0/8 | 10.1.2.3;;;суд;1;2020-01-01",
        "192.0.2.0/24 | 2001:db8::/32 | 2001:db8::5;пример.рф;http://пример.рф/путь;суд;2;2020-01-02",
        ";*.mask.example;;ФНС;3;2020-01-03",
        ";www.only-www.example;https://Shop.Example:443/a?b=1#frag;суд;4;2020-01-04",
        ";shared.example;http://198.51.100.7/x | http://case.example/Path?Q=A;суд;5;2020-01-05",
        "198.51.100.0/25;xn--e1afmkfd.xn--p1ai;;суд;6;2020-01-06",
    ]
    text = "Updated: 2020-01-07 00:00:00 +0000\n" + "".join(r + "\n" for r in rows)
    rkn.write_bytes(text.encode("cp1251"))
    lst = tmp / "list.txt"
    lst.write_text("shared.example\nmask.example\nsub.mask.example\nwww.example.org\nexample.org\nfaß.de\n")
    adb = tmp / "adblock.txt"
    adb.write_text("||shared.example^\n||deep.sub.mask.example^\n||mask.example^\n")
    cidrs = tmp / "cidrs.txt"
    cidrs.write_text("10.0.0.0/8\n10.1.0.0/16\n10.1.2.3\n2001:db8::/48\n::ffff:10.1.2.3\n")
    wallets = tmp / "wallets.csv"
    wallets.write_text(f"chain,address\nbitcoin,{GENESIS}\nbitcoin,{BIP173}\nethereum,{EIP55.lower()}\n")
    return [rkn, lst, adb, cidrs, wallets]


def _import_built(store: RegistryStore, tmp: Path) -> None:
    rkn, lst, adb, cidrs, wallets = _built(tmp)
    import_files(store, [adb], "adblock", source="a-adblock")
    import_files(store, [cidrs], "cidrs", source="b-cidrs")
    import_files(store, [lst], "domains", source="c-list")
    import_files(store, [rkn], "rkn-csv", source="d-rkn")
    import_files(store, [wallets], "wallets", source="e-wallets")


def test_built_register_agrees(store: RegistryStore, tmp_path: Path) -> None:
    """Every kind and rule, ties between sources, on SQLite and PostgreSQL."""
    _import_built(store, tmp_path)
    kinds = {k for _, k, _, _ in store.rows()}
    assert kinds == {k.value for k in Kind}, kinds  # the register holds every kind
    extra = [
        "deep.sub.mask.example",
        "x.www.only-www.example",
        "only-www.example",
        "Пример.РФ.",
        "http://пример.рф/путь",
        "https://shop.example/a?b=1",
        "http://198.51.100.7/x",
        "faß.de",
        "10.1.2.3",
        "::ffff:10.1.2.3",
        "2001:db8::5",
        "2001:db8:1::1",
        "bitcoin:" + GENESIS,
        "eth:" + EIP55,
        EIP55.lower(),
    ]
    rng = random.Random(18)
    n = _compare(store, [*_queries(store, rng, 10_000), *extra])
    assert n > 100
    by_source = _compare(store, [*_queries(store, rng, 10_000), *extra], source="c-list")
    assert by_source == n
    for query in ("http://case.example/Path?Q=A", "http://CASE.example:80/Path?Q=A#f"):
        assert [m["reason"] for m in _by_store(store, query)] == ["url.exact"]
    assert _by_store(store, "http://case.example/path?q=a") == []  # a path is case-sensitive
    tie = [m["source"] for m in _by_store(store, "a.mask.example") if m["indicator"] == "*.mask.example"]
    assert tie == ["a-adblock", "d-rkn"]  # one entry in two sources: by source


def test_real_register_agrees(tmp_path: Path) -> None:
    """The shared real lists (domains, adblock masks, hosts, address lists, DROP) in one register."""
    files = [
        ("hagezi_fake_adblock_2022-07-24.txt", "adblock"),
        ("hagezi_fake_hosts_2022-07-24.txt", "hosts"),
        ("refilter_domains_all.lst", "domains"),
        ("refilter_ipsum.lst", "cidrs"),
        ("spamhaus_drop_2024-02-27_via_SecOps.txt", "drop"),
        ("ut1/bitcoin_domains", "domains"),
        ("ut1/gambling_domains", "domains"),
    ]
    missing = [name for name, _ in files if not (REGISTRY_DATA / name).is_file()]
    if missing:
        pytest.skip(f"../shared/registry-data not present (missing {', '.join(missing)})")
    store = SqliteStore(tmp_path / "real.db", create=True)
    try:
        for name, fmt in files:
            import_files(store, [REGISTRY_DATA / name], fmt, source=name.replace("/", "-"))
        assert sum(sum(k.values()) for k in store.stats().values()) > 100_000
        n = _compare(store, _queries(store, random.Random(13), 3000))
        assert n > 10_000
    finally:
        store.close()


def test_check_loads_no_heavy_module(tmp_path: Path) -> None:
    """``sluice registry check`` (the command, in a fresh interpreter) imports neither numba, numpy,
    pyarrow nor pandas, and still finds entries of every kind it looks up."""
    st = SqliteStore(tmp_path / "r.db", create=True)
    try:
        _import_built(st, tmp_path)
    finally:
        st.close()
    items = ["a.b.sub.mask.example", "10.1.2.3", "http://пример.рф/путь", GENESIS]
    cmd = [sys.executable, "-X", "importtime", "-m", "sluice", "registry", "check", "--json"]
    res = subprocess.run(
        [*cmd, "--register", str(tmp_path / "r.db"), *items],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")
    }
    assert "sluice.registry.check" in imported  # what -X importtime lists is what was loaded
    heavy = sorted(m for m in imported if m.split(".")[0] in ("numba", "numpy", "pyarrow", "pandas"))
    assert heavy == []
    answers = json.loads(res.stdout)
    assert [a["query"] for a in answers] == items
    assert all(a["matches"] for a in answers), answers
