"""Operator lists (real files from ../shared) and damaged input of every kind."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from sluice.registry.importers import detect_format, parse_files
from sluice.registry.importers._input import MAX_LINE_CHARS
from sluice.registry.importers.lists import parse_list
from sluice.registry.model import LegalBasis, RegistryError

from .conftest import shared_file


@pytest.mark.parametrize(
    ("name", "fmt", "rows", "kinds"),
    [
        ("hagezi_fake_hosts_2022-07-24.txt", "hosts", 14043, {"domain": 14043}),
        ("hagezi_fake_adblock_2022-07-24.txt", "adblock", 7355, {"domain-mask": 7355}),
        ("refilter_domains_all.lst", "domains", 86140, {"domain": 86133, "ip": 7}),
        ("refilter_ipsum.lst", "cidrs", 30746, {"ip": 24494, "subnet": 6232}),
        ("spamhaus_drop_2024-02-27_via_SecOps.txt", "cidrs", 989, {"subnet": 989}),
        ("zi_nxdomain_2020-02-16.txt", "domains", 37845, {"domain": 37845}),
        ("ut1/bitcoin_domains", "domains", 1419, {"domain": 1394, "ip": 25}),
    ],
)
def test_real_lists(name: str, fmt: str, rows: int, kinds: dict[str, int]) -> None:
    path = shared_file(name)
    assert detect_format(path.read_bytes()[:65536], str(path)) == fmt
    res = parse_files([path], source="test")
    assert res.fmt == fmt and res.rows == rows and res.rejected == []
    assert Counter(k for k, _ in res.entries) == kinds


def test_hosts_declared_count_detects_truncation(tmp_path: Path) -> None:
    data = shared_file("hagezi_fake_hosts_2022-07-24.txt").read_bytes()
    cut = tmp_path / "hosts.txt"
    cut.write_bytes(data[: data.index(b"\n", len(data) // 2) + 1])
    with pytest.raises(RegistryError) as err:
        parse_files([cut])
    assert err.value.reason == "registry.truncated" and "declares 14043" in err.value.detail


def test_drop_with_sbl_comments() -> None:
    data = (
        b"; Spamhaus DROP List 2024/02/27 - (c) 2024 The Spamhaus Project\n"
        b"; Last-Modified: Tue, 27 Feb 2024 10:12:54 GMT\n"
        b"1.10.16.0/20 ; SBL256894\n1.19.0.0/16 ; SBL434604\n"
    )
    assert detect_format(data, "drop.txt") == "drop"
    res = parse_list(data, "drop", "drop.txt")
    assert res.dump_time == "Tue, 27 Feb 2024 10:12:54 GMT"
    assert list(res.entries[("subnet", "1.10.16.0/20")][1]) == [LegalBasis("Spamhaus DROP", "SBL256894")]


def test_hosts_semantics() -> None:
    data = (
        b"127.0.0.1 localhost\n::1 ip6-localhost ip6-loopback\n"
        b"0.0.0.0 Ads.Example.COM tracker.example # two names\n"
        b"0.0.0.0\n"
        b"not-an-ip bad.example\n"
    )
    res = parse_list(data, "hosts", "hosts")
    assert set(res.entries) == {("domain", "ads.example.com"), ("domain", "tracker.example")}
    assert [(r.line, r.reason) for r in res.rejected] == [
        (4, "hosts.hosts.no_name"),
        (5, "hosts.ip.bad_address"),
    ]


def test_adblock_semantics() -> None:
    data = b"[Adblock Plus 2.0]\n! c\n||a.example^\n@@||b.example^\n||c.example^$third-party\n##.ad\n"
    res = parse_list(data, "adblock", "list.txt")
    assert set(res.entries) == {("domain-mask", "*.a.example")}
    assert [r.reason for r in res.rejected] == [
        "adblock.exception_rule",
        "adblock.unsupported_options",
        "adblock.unsupported_rule",
    ]


# -- damaged input: refused before anything changes --


def test_binary_garbage_refused(tmp_path: Path) -> None:
    p = tmp_path / "dump.csv"
    p.write_bytes(os.urandom(4096) + b"\x00" + os.urandom(100))
    with pytest.raises(RegistryError) as err:
        parse_files([p])
    assert err.value.reason == "registry.binary_input"


def test_utf16_refused_as_binary(tmp_path: Path) -> None:
    p = tmp_path / "domains.txt"
    p.write_bytes("example.com\nпример.рф\n".encode("utf-16"))
    with pytest.raises(RegistryError) as err:
        parse_files([p], "domains")
    assert err.value.reason == "registry.binary_input"


def test_wrong_encoding_refused(tmp_path: Path) -> None:
    p = tmp_path / "domains.txt"
    p.write_bytes("example.com\nпример.рф\n".encode("cp1251"))
    with pytest.raises(RegistryError) as err:
        parse_files([p], "domains")
    assert err.value.reason == "registry.bad_encoding"


def test_ten_gigabyte_file_refused_without_reading(tmp_path: Path) -> None:
    p = tmp_path / "huge.csv"
    with open(p, "wb") as fh:  # sparse: no disk used
        fh.truncate(10 * 1024**3)
    with pytest.raises(RegistryError) as err:
        parse_files([p])
    assert err.value.reason == "registry.too_large"


def test_ten_gigabyte_line_refused(tmp_path: Path) -> None:
    """A 10 GB line is refused by size; a line over the line limit is rejected unparsed."""
    p = tmp_path / "domains.txt"
    more = b"".join(b"n%d.example\n" % i for i in range(30))  # 1 rejected row in 32: under 5 %
    p.write_bytes(b"a.example\n" + b"b" * (MAX_LINE_CHARS + 10) + b"\nc.example\n" + more)
    res = parse_files([p], "domains")
    assert [r.reason for r in res.rejected] == ["domains.line_too_long"]
    assert {("domain", "a.example"), ("domain", "c.example")} <= set(res.entries)
    p.write_bytes(b"a.example\n" + b"b" * (MAX_LINE_CHARS + 10))
    with pytest.raises(RegistryError) as err:
        parse_files([p], "domains")
    assert err.value.reason == "registry.truncated"


def test_mostly_garbage_text_refused_as_damaged(tmp_path: Path) -> None:
    p = tmp_path / "domains.txt"
    p.write_text("".join(f"not a domain {i}\n" for i in range(100)) + "ok.example\n")
    with pytest.raises(RegistryError) as err:
        parse_files([p], "domains")
    assert err.value.reason == "registry.damaged"


def test_empty_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "empty.txt"
    p.write_text("# nothing\n")
    with pytest.raises(RegistryError) as err:
        parse_files([p], "domains")
    assert err.value.reason == "registry.empty_input"
    with pytest.raises(RegistryError) as err:
        parse_files([tmp_path / "missing.txt"])
    assert err.value.reason == "registry.not_found"
    with pytest.raises(RegistryError) as err:
        parse_files([tmp_path])
    assert err.value.reason == "registry.io_error"
