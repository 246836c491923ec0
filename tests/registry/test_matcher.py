"""Matcher semantics, batch = single = a plain-Python reference, on real lists and dumps."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.registry.importers import parse_files
from sluice.registry.matcher import Matcher, MatchReason
from sluice.registry.model import basis_to_json
from sluice.registry.names import BadIndicator, canon_host

from .conftest import SHARED, shared_file

B = basis_to_json(())

ROWS = [
    ("a", "domain", "example.com", B),
    ("a", "domain", "www.only.example", B),
    ("a", "domain-mask", "*.mask.example", B),
    ("b", "domain-mask", "*.example.com", B),
    ("a", "domain", "xn--e1afmkfd.xn--p1ai", B),
    ("a", "url", "http://example.org/page?x=1", B),
    ("a", "ip", "192.0.2.1", B),
    ("a", "subnet", "192.0.2.0/24", B),
    ("b", "subnet", "192.0.0.0/16", B),
    ("a", "ip", "2001:db8::1", B),
    ("a", "subnet", "2001:db8::/32", B),
    ("a", "subnet", "::/0", B),
]


@pytest.fixture(scope="module")
def small() -> Matcher:
    return Matcher(ROWS)


def _hits(m: Matcher, q: str) -> list[tuple[str, str, str]]:
    return [(r.reason.code, r.entry.kind.value, r.entry.indicator) for r in m.match(q)]


def test_host_semantics(small: Matcher) -> None:
    assert _hits(small, "example.com") == [
        ("domain.exact", "domain", "example.com"),
        ("domain.mask", "domain-mask", "*.example.com"),
    ]
    assert _hits(small, "WWW.Example.COM.") == [
        ("domain.www", "domain", "example.com"),
        ("domain.mask", "domain-mask", "*.example.com"),
    ]
    assert _hits(small, "a.b.example.com") == [("domain.mask", "domain-mask", "*.example.com")]
    assert _hits(small, "only.example") == []  # an entry www.X does not block X
    assert _hits(small, "www.only.example") == [("domain.exact", "domain", "www.only.example")]
    assert _hits(small, "mask.example") == [("domain.mask", "domain-mask", "*.mask.example")]
    assert _hits(small, "notmask.example") == []
    assert _hits(small, "Пример.РФ") == [("domain.exact", "domain", "xn--e1afmkfd.xn--p1ai")]
    assert _hits(small, "www.пример.рф.")[0][0] == "domain.www"
    assert _hits(small, "") == [] and _hits(small, "bad name") == []


def test_url_and_ip_semantics(small: Matcher) -> None:
    assert _hits(small, "HTTP://Example.org:80/page?x=1#frag") == [
        ("url.exact", "url", "http://example.org/page?x=1")
    ]
    assert _hits(small, "http://example.org/other") == []
    assert [h[0] for h in _hits(small, "https://www.example.com/x")] == ["domain.www", "domain.mask"]
    assert _hits(small, "192.0.2.1") == [
        ("ip.exact", "ip", "192.0.2.1"),
        ("ip.subnet", "subnet", "192.0.2.0/24"),
        ("ip.subnet", "subnet", "192.0.0.0/16"),
    ]
    assert _hits(small, "192.0.3.1") == [("ip.subnet", "subnet", "192.0.0.0/16")]
    assert _hits(small, "198.51.100.1") == []
    assert [h[2] for h in _hits(small, "2001:0db8:0:0::1")] == ["2001:db8::1", "2001:db8::/32", "::/0"]
    assert [h[2] for h in _hits(small, "fe80::1")] == ["::/0"]
    assert _hits(small, "http://192.0.2.1/x")[0][2] == "192.0.2.1"


def test_batch_inputs_agree(small: Matcher) -> None:
    names = ["example.com", "x.mask.example", "nothing.test", "www.example.com", "пример.рф"]
    ref = small.match_hosts(names)
    as_set = {(int(q), int(e), int(r)) for q, e, r in zip(ref.query, ref.entry, ref.reason, strict=True)}
    for other in (
        np.array(names, dtype=object),
        np.array(names),
        pa.array(names),
        pa.chunked_array([names[:2], names[2:]]),
        [n.encode() for n in names],
    ):
        got = small.match_hosts(other)
        assert {
            (int(q), int(e), int(r)) for q, e, r in zip(got.query, got.entry, got.reason, strict=True)
        } == as_set
    ascii_names = [n for n in names if n.isascii()]
    got = small.match_hosts(np.array(ascii_names, dtype="S"))
    assert got.hit().tolist() == [True, True, False, True]
    assert ref.hit().tolist() == [True, True, False, True, True]


def test_ip_batch_uint32(small: Matcher) -> None:
    ips = np.array([int(ipaddress.ip_address(x)) for x in ("192.0.2.1", "10.0.0.1", "192.0.9.9")], np.uint32)
    got = small.match_ips(ips)
    assert got.hit().tolist() == [True, False, True]
    assert sorted(int(r) for r in got.reason) == [MatchReason.IP] + [MatchReason.SUBNET] * 3


# -- against a plain-Python reference on real data --


class Reference:
    """The obvious implementation: dicts and a walk over parent names; a list of networks."""

    def __init__(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.exact: dict[str, set[int]] = {}
        self.mask: dict[str, set[int]] = {}
        self.nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
        for i, (_, kind, ind, _) in enumerate(rows):
            if kind == "domain":
                self.exact.setdefault(ind, set()).add(i)
            elif kind == "domain-mask":
                self.mask.setdefault(ind[2:], set()).add(i)
            elif kind in ("ip", "subnet"):
                self.nets.append((ipaddress.ip_network(ind), i))

    def host(self, name: str) -> set[tuple[int, int]]:
        try:
            n = canon_host(name)
        except BadIndicator:
            return set()
        out = {(e, 1) for e in self.exact.get(n, ())}
        if n.startswith("www."):
            out |= {(e, 2) for e in self.exact.get(n[4:], ())}
        labels = n.split(".")
        for i in range(len(labels)):
            out |= {(e, 3) for e in self.mask.get(".".join(labels[i:]), ())}
        return out

    def ip(self, addr: str) -> set[int]:
        a = ipaddress.ip_address(addr)
        return {i for net, i in self.nets if a.version == net.version and a in net}


@pytest.fixture(scope="module")
def real() -> tuple[Matcher, Reference, list[tuple[str, str, str, str]]]:
    rows: list[tuple[str, str, str, str]] = []
    for name in (
        "zi_dump_2016-06-13.csv",
        "hagezi_fake_adblock_2022-07-24.txt",
        "hagezi_fake_hosts_2022-07-24.txt",
        "refilter_domains_all.lst",
        "spamhaus_drop_2024-02-27_via_SecOps.txt",
    ):
        res = parse_files([shared_file(name)], source=name)
        rows += [(name, k, i, basis_to_json(tuple(b))) for (k, i), (_, b) in res.entries.items()]
    return Matcher(rows), Reference(rows), rows


def test_real_names_batch_single_reference_agree(
    real: tuple[Matcher, Reference, list[tuple[str, str, str, str]]],
) -> None:
    m, ref, rows = real
    names = [i for _, k, i, _ in rows if k == "domain"][::7]
    names += ["www." + n for n in names[::3]] + ["Sub." + n.upper() + "." for n in names[::5]]
    names += [i[2:] for _, k, i, _ in rows if k == "domain-mask"][::3]
    tranco = SHARED / "domain-lists" / "tranco_top100k.csv"
    if tranco.is_file():
        names += tranco.read_text().split()[:20000]
    batch = m.match_hosts(names)
    got: list[set[tuple[int, int]]] = [set() for _ in names]
    for q, e, r in zip(batch.query, batch.entry, batch.reason, strict=True):
        got[int(q)].add((int(e), int(r)))
    mismatches = [n for n, g in zip(names, got, strict=True) if g != ref.host(n)]
    assert mismatches == []
    assert batch.hit().sum() > len(names) // 3
    for n in names[::97]:
        assert {(e, int(r)) for e, r in m.host_hits(n)} == ref.host(n)


def test_real_ips_reference_agree(
    real: tuple[Matcher, Reference, list[tuple[str, str, str, str]]],
) -> None:
    m, ref, _ = real
    rng = np.random.default_rng(7)
    addrs = [str(ipaddress.IPv4Address(int(x))) for x in rng.integers(0, 2**32, 3000)]
    addrs += [str(net.network_address + 1) for net, _ in ref.nets[::5]]
    got = m.match_ips(addrs)
    sets: list[set[int]] = [set() for _ in addrs]
    for q, e in zip(got.query, got.entry, strict=True):
        sets[int(q)].add(int(e))
    assert [s == ref.ip(a) for s, a in zip(sets, addrs, strict=True)] == [True] * len(addrs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abcwx.-_WЯ\u00e9", max_size=20), max_size=20))
def test_batch_equals_reference_on_random_names(names: list[str]) -> None:
    rows = [
        ("s", "domain", "ab.cw", B),
        ("s", "domain-mask", "*.w.x", B),
        ("s", "domain", "xn--b-pka.ab", B),
        ("s", "domain-mask", "*.c", B),
    ]
    m, ref = Matcher(rows), Reference(rows)
    batch = m.match_hosts(names)
    got: list[set[tuple[int, int]]] = [set() for _ in names]
    for q, e, r in zip(batch.query, batch.entry, batch.reason, strict=True):
        got[int(q)].add((int(e), int(r)))
    assert got == [ref.host(n) for n in names]


def test_from_store_and_memory(tmp_path: Path) -> None:
    from sluice.registry.stores import SqliteStore
    from sluice.registry.sync import import_files

    st_ = SqliteStore(tmp_path / "r.db", create=True)
    import_files(st_, [shared_file("hagezi_fake_adblock_2022-07-24.txt")])  # source: its '! Title:'
    m = Matcher.from_store(st_)
    st_.close()
    assert len(m) == 7355 and 0 < m.nbytes < 5_000_000
    assert m.match("x.10xcryptotrade.uk")[0].entry.source == "hagezis-fake-dns-blocklist"


def test_url_path_is_case_sensitive() -> None:
    """The canonical form keeps a URL's path and query as written, so the match is exact (the
    matcher used to fold case: ``/Path`` entries never matched, ``/PATH`` matched ``/path``)."""
    m = Matcher([("s", "url", "http://x.example/Path", "[]"), ("s", "url", "http://x.example/low", "[]")])
    assert [x.entry.indicator for x in m.match("http://X.example/Path")] == ["http://x.example/Path"]
    assert m.match("http://x.example/path") == []
    assert m.match("http://x.example/LOW") == []
    assert [x.entry.indicator for x in m.match("http://x.example/low")] == ["http://x.example/low"]
