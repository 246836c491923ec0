"""RKN CSV dumps: the real 2016 and 2018 dumps, kind inference, splitting, truncation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sluice.registry.importers import parse_files
from sluice.registry.importers.rkn_csv import parse_rkn_csv, split_urls
from sluice.registry.model import LegalBasis, RegistryError
from sluice.registry.stores import SqliteStore
from sluice.registry.sync import import_files

from .conftest import shared_file

HEADER = "Updated: 2024-01-01 00:00:00 +0000\n"


def _parse(*rows: str) -> dict[tuple[str, str], tuple[str, dict[LegalBasis, None]]]:
    data = (HEADER + "".join(r + "\n" for r in rows)).encode("cp1251")
    res = parse_rkn_csv(data, "dump.csv")
    assert not res.rejected, res.rejected
    return res.entries


def test_2016_dump_complete() -> None:
    res = parse_files([shared_file("zi_dump_2016-06-13.csv")])
    assert res.fmt == "rkn-csv"
    assert res.rows == 30663
    assert res.rejected == []
    assert res.dump_time == "2016-06-13 12:04:00 +0000"
    kinds = Counter(k for k, _ in res.entries)
    assert kinds == {"url": 25378, "domain": 3814, "ip": 78}
    # Cyrillic domains are stored as punycode and shown in Unicode
    url = ("url", "http://xn--76-8kcaef8fsao.xn--p1ai/")
    assert res.entries[url][0] == "http://76автобар.рф/"
    # one URL with "|" in its query string stays one URL
    assert any("RF_|_Magnity" in ind for _, ind in res.entries)


def test_2018_partial_dump_is_refused_as_truncated() -> None:
    with pytest.raises(RegistryError) as err:
        parse_files([shared_file("zi_dump_2018-05-05_PARTIAL.csv")])
    assert err.value.reason == "registry.truncated"
    assert "4 KiB" in err.value.detail


def test_2018_dump_complete_lines_give_masks_and_subnets(tmp_path: Path) -> None:
    data = shared_file("zi_dump_2018-05-05_PARTIAL.csv").read_bytes()
    whole = tmp_path / "dump.csv"
    whole.write_bytes(data[: data.rindex(b"\n") + 1])
    res = parse_files([whole])
    assert res.rows == 32796 and res.rejected == []
    kinds = Counter(k for k, _ in res.entries)
    assert kinds["domain-mask"] == 3852  # 3,906 rows, some masks repeated
    assert kinds["subnet"] == 73
    assert ("subnet", "103.246.200.0/22") in res.entries
    masks = {v[0] for (k, _), v in res.entries.items() if k == "domain-mask"}
    assert "*.1хбет-рабочее-зеркало.рус" in masks


def test_cut_at_line_end_is_refused_as_row_drop(tmp_path: Path) -> None:
    data = shared_file("zi_dump_2016-06-13.csv").read_bytes()
    store = SqliteStore(tmp_path / "r.db", create=True)
    full = tmp_path / "dump.csv"
    full.write_bytes(data)
    import_files(store, [full])
    cut_at = data.index(b"\n", 4096 * 200) + 1  # a cut that happens to fall on a line end
    full.write_bytes(data[:cut_at])
    with pytest.raises(RegistryError) as err:
        import_files(store, [full])
    assert err.value.reason == "registry.row_drop"
    assert store.imports()[0].rows == 30663
    store.close()


def test_split_parts_equal_whole(tmp_path: Path) -> None:
    data = shared_file("zi_dump_2016-06-13.csv").read_bytes()
    mid = data.index(b"\n", len(data) // 2) + 1
    (tmp_path / "dump-00.csv").write_bytes(data[:mid])
    (tmp_path / "dump-01.csv").write_bytes(data[mid:])
    parts = parse_files([tmp_path / "dump-00.csv", tmp_path / "dump-01.csv"])
    whole = parse_files([shared_file("zi_dump_2016-06-13.csv")])
    assert parts.rows == whole.rows and parts.entries == whole.entries


def test_kind_inference() -> None:
    e = _parse(
        "1.1.1.1;a.example;http://a.example/x | https://b.example/y;суд;1;2020-01-01",
        "2.2.2.2;c.example;;суд;2;2020-01-01",
        "3.3.3.3 | 3.3.3.4|2001:db8:0:0:0:0:0:1;;;суд;3;2020-01-01",
        "4.4.4.4;*.Mask.Example;https://www.mask.example/;МВД;4;2020-01-01",
        "103.246.200.0/22;;;Роскомнадзор;5;2017-04-28",
        "5.5.5.5;d.example;newcamd525://srv.example:4001;Мосгорсуд;6;2015-10-19",
        "6.6.6.6;xn--e1afmkfd.xn--p1ai;https://пример.рф/;суд;7;2020-01-01",
    )
    assert set(e) == {
        ("url", "http://a.example/x"),
        ("domain", "b.example"),
        ("domain", "c.example"),
        ("ip", "3.3.3.3"),
        ("ip", "3.3.3.4"),
        ("ip", "2001:db8::1"),
        ("domain-mask", "*.mask.example"),
        ("subnet", "103.246.200.0/22"),
        ("domain", "srv.example"),
        ("domain", "xn--e1afmkfd.xn--p1ai"),
    }
    assert e[("domain", "xn--e1afmkfd.xn--p1ai")][0] == "пример.рф"
    assert list(e[("subnet", "103.246.200.0/22")][1]) == [LegalBasis("Роскомнадзор", "5", "2017-04-28")]


def test_repeated_indicator_keeps_every_decision() -> None:
    e = _parse("1.1.1.1;;;суд;1;2020-01-01", "1.1.1.1;;;ФНС;2;2021-01-01", "1.1.1.1;;;суд;1;2020-01-01")
    assert list(e[("ip", "1.1.1.1")][1]) == [
        LegalBasis("суд", "1", "2020-01-01"),
        LegalBasis("ФНС", "2", "2021-01-01"),
    ]


def test_url_splitting() -> None:
    assert split_urls("http://a/ | http://b/|https://c/") == ["http://a/", "http://b/", "https://c/"]
    assert split_urls("http://a/?x=1|_2") == ["http://a/?x=1|_2"]
    assert split_urls("  ") == []


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("1.2.3.999;;;суд;1;2020-01-01", "rkn_csv.ip.bad_address"),
        ("1.1.1.1;bad name.com;;суд;1;2020-01-01", "rkn_csv.name.bad_label"),
        ("1.1.1.1;;ftp//broken;суд;1;2020-01-01", "rkn_csv.url.bad_syntax"),
        (";;;суд;1;2020-01-01", "rkn_csv.empty_record"),
        ("1.1.1.1;;;суд;2020-01-01", "rkn_csv.bad_field_count"),
        ("1.1.1.1;;;суд;1;yesterday", "rkn_csv.bad_date"),
    ],
)
def test_rejected_rows_have_line_and_reason(row: str, reason: str) -> None:
    good = "2.2.2.2;;;суд;1;2020-01-01"
    data = (HEADER + good + "\n" + row + "\n" + good + "\n").encode("cp1251")
    res = parse_rkn_csv(data, "d.csv")
    assert res.rows == 3
    assert [(r.line, r.reason) for r in res.rejected] == [(3, reason)]


def test_missing_header_refused() -> None:
    with pytest.raises(RegistryError) as err:
        parse_rkn_csv("1.1.1.1;;;суд;1;2020-01-01\n".encode("cp1251"), "d.csv")
    assert err.value.reason == "registry.rkn_csv.no_header"


def test_last_line_cut_mid_field_refused() -> None:
    data = (HEADER + "1.1.1.1;;;суд;1;2020-01-01\n2.2.2.2;a.example;http://a.exa").encode("cp1251")
    with pytest.raises(RegistryError) as err:
        parse_rkn_csv(data, "d.csv")
    assert err.value.reason == "registry.truncated"


def test_unterminated_but_complete_last_line_accepted() -> None:
    data = (HEADER + "1.1.1.1;;;суд;1;2020-01-01").encode("cp1251")
    assert parse_rkn_csv(data, "d.csv").rows == 1


def test_utf8_dump_accepted() -> None:
    data = (HEADER + "1.1.1.1;пример.рф;;суд;1;2020-01-01\n").encode("utf-8")
    res = parse_rkn_csv(data, "d.csv")
    assert ("domain", "xn--e1afmkfd.xn--p1ai") in res.entries
