"""Hostile input: a prefix of a real sample plus random bytes gives a result or a clean refusal,
and a refused import changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.registry.importers import parse_files
from sluice.registry.importers._common import ParseResult
from sluice.registry.model import RegistryError
from sluice.registry.stores import SqliteStore
from sluice.registry.sync import import_files

from .conftest import REGISTRY_DATA

XML_SAMPLE = (
    '<?xml version="1.0" encoding="windows-1251"?>\n<reg:register xmlns:reg="http://rsoc.ru" '
    'updateTime="2016-06-13T15:04:00+03:00"><content id="1" blockType="domain">'
    '<decision date="2013-05-23" number="2-1687/2013" org="суд"/><domain>пример.рф</domain>'
    '</content><content id="2"><decision date="2014" number="1" org="ФНС"/>'
    "<url><![CDATA[http://a.example/x]]></url><ip>1.2.3.4</ip></content></reg:register>\n"
).encode("cp1251")
RPZ_SAMPLE = (
    b"$TTL 60\n@ SOA ns. admin. (1 2 3 4 5)\n NS ns.\n$ORIGIN rpz.example.\n"
    b"a.example CNAME .\n*.b.example CNAME .\n32.4.3.2.1.rpz-ip CNAME .\n"
    b"128.1.zz.db8.2001.rpz-ip CNAME .\n"
)


def _sample(name: str, n: int = 6000) -> bytes:
    p = REGISTRY_DATA / name
    if not p.is_file():
        pytest.skip(f"../shared not present: {p}")
    return p.read_bytes()[:n]


CASES = {
    "rkn-csv": lambda: _sample("zi_dump_2016-06-13.csv"),
    "hosts": lambda: _sample("hagezi_fake_hosts_2022-07-24.txt"),
    "rkn-xml": lambda: XML_SAMPLE,
    "rpz": lambda: RPZ_SAMPLE,
}


def _check(fmt: str, data: bytes, tmp: Path) -> None:
    p = tmp / "input"
    p.write_bytes(data)
    try:
        res = parse_files([p], fmt)
    except RegistryError as exc:
        assert exc.reason.startswith("registry.")
        return
    assert isinstance(res, ParseResult)
    assert all(r.reason and r.line >= 1 for r in res.rejected)


@pytest.mark.parametrize("fmt", sorted(CASES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=6000), tail=st.binary(max_size=300))
def test_prefix_plus_random_bytes(fmt: str, cut: int, tail: bytes, tmp_path: Path) -> None:
    data = CASES[fmt]()
    _check(fmt, data[:cut] + tail, tmp_path)
    _check("auto", data[:cut] + tail, tmp_path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=6000), tail=st.binary(max_size=200))
def test_refused_import_changes_nothing(cut: int, tail: bytes, tmp_path: Path) -> None:
    data = _sample("zi_dump_2016-06-13.csv")
    good = tmp_path / "dump.csv"
    good.write_bytes(data[: data.rindex(b"\n") + 1])
    store = SqliteStore(tmp_path / f"r{cut}.db", create=True)
    try:
        import_files(store, [good])
        before = store.source_state("rkn")
        bad = tmp_path / "bad.csv"
        bad.write_bytes(data[:cut] + tail)
        try:
            s = import_files(store, [bad], "rkn-csv")
        except RegistryError:
            assert store.source_state("rkn") == before
        else:
            assert len(store.source_state("rkn")) == s.entries
    finally:
        store.close()
