"""RKN XML dumps: the 2016 register re-encoded as dump.xml by ElementTree, block types, bombs."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from sluice.registry.importers import detect_format, parse_files
from sluice.registry.importers.rkn_csv import split_urls
from sluice.registry.importers.rkn_xml import parse_rkn_xml
from sluice.registry.model import RegistryError

from .conftest import shared_file

NS = "http://rsoc.ru"


def _register(contents: list[dict[str, Any]]) -> bytes:
    ET.register_namespace("reg", NS)
    root = ET.Element(
        f"{{{NS}}}register", {"updateTime": "2016-06-13T15:04:00+03:00", "formatVersion": "2.3"}
    )
    for i, c in enumerate(contents):
        attrs = {"id": str(i + 1), "includeTime": "2016-01-01T00:00:00", "entryType": "1"}
        if c.get("blockType"):
            attrs["blockType"] = str(c["blockType"])
        el = ET.SubElement(root, "content", attrs)
        org, number, date = c["decision"]
        ET.SubElement(el, "decision", {"date": date, "number": number, "org": org})
        for tag in ("url", "domain", "ip", "ipv6", "ipSubnet", "ipv6Subnet"):
            for v in c.get(tag, []):
                ET.SubElement(el, tag).text = v
    return bytes(ET.tostring(root, encoding="windows-1251", xml_declaration=True))


def _from_csv_2016() -> bytes:
    text = shared_file("zi_dump_2016-06-13.csv").read_bytes().decode("cp1251")
    contents: list[dict[str, Any]] = []
    for row in csv.reader(io.StringIO(text.split("\n", 1)[1]), delimiter=";"):
        ips = [x.strip() for x in row[0].split("|") if x.strip()]
        contents.append(
            {
                "decision": (row[3].strip(), row[4].strip(), row[5].strip()),
                "url": split_urls(row[2]),
                "domain": [row[1].strip()] if row[1].strip() else [],
                "ip": [x for x in ips if ":" not in x],
                "ipv6": [x for x in ips if ":" in x],
            }
        )
    return _register(contents)


def test_xml_dump_gives_the_same_register_as_the_csv(tmp_path: object) -> None:
    data = _from_csv_2016()
    assert detect_format(data, "dump.xml") == "rkn-xml"
    xml_res = parse_rkn_xml(data, "dump.xml")
    csv_res = parse_files([shared_file("zi_dump_2016-06-13.csv")])
    assert xml_res.rows == 30663 and xml_res.rejected == []
    assert xml_res.entries == csv_res.entries
    assert xml_res.dump_time == "2016-06-13T15:04:00+03:00"


def test_block_types() -> None:
    data = _register(
        [
            {
                "blockType": "domain",
                "decision": ("суд", "1", "2020-01-01"),
                "domain": ["пример.рф"],
                "url": ["http://пример.рф/x"],
                "ip": ["1.1.1.1"],
            },
            {
                "blockType": "domain-mask",
                "decision": ("МВД", "2", "2020-01-02"),
                "domain": ["*.mask.example"],
            },
            {"blockType": "domain-mask", "decision": ("МВД", "3", "2020-01-02"), "domain": ["bare.example"]},
            {
                "blockType": "ip",
                "decision": ("Роскомнадзор", "4", "2018-04-16"),
                "domain": ["ignored.example"],
                "ipSubnet": ["149.154.160.0/20"],
                "ipv6Subnet": ["2001:67c:4e8::/48"],
                "ipv6": ["2001:0db8:0000:0000:0000:0000:0000:0001"],
            },
            {
                "decision": ("ФНС", "5", "2020-01-03"),
                "url": ["https://secure.example/p"],
                "domain": ["secure.example"],
                "ip": ["2.2.2.2"],
            },
        ]
    )
    res = parse_rkn_xml(data, "dump.xml")
    assert res.rows == 5 and res.rejected == []
    assert set(res.entries) == {
        ("domain", "xn--e1afmkfd.xn--p1ai"),
        ("domain-mask", "*.mask.example"),
        ("domain-mask", "*.bare.example"),
        ("subnet", "149.154.160.0/20"),
        ("subnet", "2001:67c:4e8::/48"),
        ("ip", "2001:db8::1"),
        ("domain", "secure.example"),
    }


def test_unknown_block_type_rejected_with_line() -> None:
    data = _register(
        [
            {"blockType": "teleport", "decision": ("суд", "1", "2020-01-01"), "domain": ["a.example"]},
            {"decision": ("суд", "1", "2020-01-01"), "domain": ["b.example"]},
        ]
    )
    res = parse_rkn_xml(data, "dump.xml")
    assert [r.reason for r in res.rejected] == ["rkn_xml.bad_block_type"]
    assert res.rejected[0].line > 1


@pytest.mark.parametrize("cut", [100, 200, 1000, -30, -1])
def test_truncated_xml_refused(cut: int) -> None:
    data = _register(
        [{"decision": ("суд", str(i), "2020-01-01"), "domain": [f"d{i}.example"]} for i in range(40)]
    )
    with pytest.raises(RegistryError) as err:
        parse_rkn_xml(data[:cut], "dump.xml")
    assert err.value.reason in ("registry.truncated", "registry.damaged")


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<reg:register xmlns:reg="http://rsoc.ru"><content><domain>&lol9;</domain></content></reg:register>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<reg:register xmlns:reg="http://rsoc.ru"><content><domain>&x;</domain></content></reg:register>
"""


@pytest.mark.parametrize("doc", [BOMB, XXE])
def test_entity_declarations_refused(doc: bytes) -> None:
    with pytest.raises(RegistryError) as err:
        parse_rkn_xml(doc, "bomb.xml")
    assert err.value.reason == "registry.xml_entities"


def test_wrong_root_refused() -> None:
    with pytest.raises(RegistryError) as err:
        parse_rkn_xml(b"<?xml version='1.0'?><html><body/></html>", "x.xml")
    assert err.value.reason == "registry.rkn_xml.bad_root"
