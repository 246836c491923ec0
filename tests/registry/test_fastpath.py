"""The compiled paths equal the Python ones they replace: the RKN CSV scanner against the Python
parser (every line through ``fast=False``), the sorted-key diff, the batched name matcher against
the single lookup."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.registry.importers.rkn_csv import parse_rkn_csv
from sluice.registry.matcher import Matcher
from sluice.registry.model import RegistryError, basis_to_json
from sluice.registry.names import _punycode, _punycode_compiled

from .conftest import shared_file

HEADER = "Updated: 2024-01-01 00:00:00 +0000\n"

IPS = ["1.2.3.4", "01.2.3.4", "1.2.3.4/24", "1.2.3.4/32", "1.2.3.4/0", "1.2.3.4/33", "1.2.3.4/024",
       "256.1.1.1", "1.2.3", "1.2.3.4 | 5.6.7.8", "2001:db8::1", "2001:DB8:0:0:0:0:0:1/64",
       "::ffff:1.2.3.4", "::ffff:102:304", "1::2::3", "::", "::/0", "fe80::1%eth0", " 1.2.3.4", "",
       "10.0.0.0/8", "1.2.3.4/", "1.2.3.4.5", "2001:db8::/129", "2001:db8::/064", "1:2:3:4:5:6:7::",
       "1:2:3:4:5:6:7:8:9", ":1::2", "1::2:"]  # fmt: skip
DOMAINS = ["", "a.example", "A.Example.", "*.x.com", "*.", "*x.com", "*.X.Com.", "a..b", "a.b..",
           "1.2.3.4", "a.b.1", "пример.рф", "xn--e1afmkfd.xn--p1ai", "a_b.c", "a b.c", " a.b", "-a.b",
           "a" * 64 + ".com", "*.a.1", ".", "www.a-b.c.", "*.*.a", "ДОМЕН.РФ"]  # fmt: skip
URLS = ["", "http://a.example/x", "https://a.example/", "http://A.example/x", "http://a.example",
        "https://a.example", "http://a.example./x?y=1", "http://a.example/#f", "http://a.example/p#q",
        "http://1.2.3.4/x", "http://a.example:80/x", "https://a.b/x | http://c.d/",
        "http://a.example/x|_y", "ftp://a.b/", "http://", "https://", "http://a..b/",
        "newcamd525://srv.example:4001", "http://пример.рф/путь", "HTTP://a.b/", "http://a.b/ x",
        "http://a.b/~!$%&'()*+,-./:=?@[]^_`{}", "http://" + "a" * 64 + ".com/"]  # fmt: skip
BASES = ["суд;1;2020-01-01", "ФНС; 2-6 ;2016-04-11", "суд;1;yesterday", "суд;1; 2020-01-01 ",
         ";;2020-01-01", "МВД;3/1;2018-04-25"]  # fmt: skip
ODD = ["", "   ", "1.1.1.1;;;суд;2020-01-01", '"1.1.1.1";a.b;"http://x/;y";суд;1;2020-01-01', "a;b;c;d;e;f;g"]


def _outcome(data: bytes, fast: bool) -> object:
    try:
        r = parse_rkn_csv(data, "d.csv", fast=fast)
    except RegistryError as exc:
        return ("refused", exc.reason, exc.detail)
    entries = {k: (v[0], list(v[1])) for k, v in r.entries.items()}
    return (r.rows, entries, [(x.line, x.reason, x.text) for x in r.rejected], r.dump_time)


def _same(data: bytes) -> None:
    assert _outcome(data, True) == _outcome(data, False)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(
                st.sampled_from(IPS), st.sampled_from(DOMAINS), st.sampled_from(URLS), st.sampled_from(BASES)
            ),
            st.sampled_from(ODD),
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from(["cp1251", "utf-8", "utf-8-sig"]),
    st.integers(min_value=0, max_value=3),
)
def test_scanner_equals_python_parser(rows: list[object], eol: str, enc: str, cut: int) -> None:
    lines = [";".join(r) if isinstance(r, tuple) else str(r) for r in rows]
    lines += lines[: len(lines) // 3]  # repeated indicators: decisions merged in row order
    text = HEADER.replace("\n", eol) + "".join(x + eol for x in lines)
    if cut:
        text = text[: -cut * 7]
    data = text.encode(enc, errors="replace")
    _same(data)


def test_scanner_equals_python_parser_random_addresses() -> None:
    rng = random.Random(11)
    alphabet = "0123456789abcdefABCDEF:./"
    rows = []
    for _ in range(3000):
        if rng.random() < 0.5:
            v = rng.getrandbits(128) & rng.choice(
                [(1 << 128) - 1, (1 << 64) - 1, 0xFFFFFFFF, (0xFFFF << 32) | 0xFFFF]
            )
            addr = f"{v >> 112:x}:{(v >> 96) & 0xFFFF:x}::{v & 0xFFFF:x}" if rng.random() < 0.5 else str(v)
            rows.append(addr + rng.choice(["", "/64", "/128", "/0", "/7"]))
        else:
            rows.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 42))))
    _same((HEADER + "".join(f"{r};;;суд;1;2020-01-01\n" for r in rows)).encode("cp1251"))


@pytest.mark.parametrize("name", ["zi_dump_2016-06-13.csv", "zi_dump_2018-05-05_PARTIAL.csv"])
def test_scanner_equals_python_parser_on_real_dumps(name: str) -> None:
    data = shared_file(name).read_bytes()
    _same(data)  # the 2018 one: refused as truncated both ways
    _same(data[: data.rindex(b"\n") + 1])


def test_punycode_equals_stdlib() -> None:
    rng = random.Random(3)
    pool = [chr(c) for c in range(0x410, 0x460)] + list("abz09-") + ["é", "ß", "中", "\U0001f600", "\u0301"]
    for _ in range(3000):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))
        assert _punycode_compiled(s) == s.encode("punycode").decode("ascii")
        assert _punycode(s) == s.encode("punycode").decode("ascii")  # stdlib first, then compiled


def test_batch_names_equal_single_lookups() -> None:
    """Many names per batch (the batched kernel's block boundaries), in the single lookup's order."""
    rng = random.Random(5)
    words = ["a", "b", "www", "shop", "xn--e1afmkfd", "x-y", "q_1"]
    names = {".".join(rng.choice(words) for _ in range(rng.randint(1, 4))) for _ in range(3000)}
    rows = [("s", "domain" if rng.random() < 0.7 else "domain-mask", n, basis_to_json(())) for n in names]
    rows = [(s, k, "*." + n if k == "domain-mask" else n, b) for s, k, n, b in rows]
    m = Matcher(rows)
    queries = []
    for _ in range(20000):
        q = ".".join(rng.choice(words) for _ in range(rng.randint(1, 130 if rng.random() < 0.01 else 6)))
        queries.append(
            rng.choice(["", "WWW.", "www.", "a.", ".", "é.", "a..", "-"]) + q + rng.choice(["", "."])
        )
    batch = m.match_hosts(queries)
    got: list[list[tuple[int, int]]] = [[] for _ in queries]
    for q, e, r in zip(batch.query.tolist(), batch.entry.tolist(), batch.reason.tolist(), strict=True):
        got[q].append((e, r))
    want = [[(e, int(r)) for e, r in m.host_hits(q)] for q in queries]
    assert got == want
    assert sum(map(len, got)) > 1000
