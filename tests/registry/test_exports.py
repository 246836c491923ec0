"""Exports checked by the real tools; RPZ round trip; nothing widened."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.registry.exports import export_entries
from sluice.registry.importers import parse_files
from sluice.registry.importers.rpz import parse_rpz, rpz_ip_trigger
from sluice.registry.model import Entry, Kind, LegalBasis
from sluice.registry.stores import SqliteStore
from sluice.registry.sync import import_files

from .conftest import shared_file

SMALL = [
    Entry(Kind.DOMAIN, "example.com", "t"),
    Entry(Kind.DOMAIN, "sub.mask.example", "t"),  # covered by the mask
    Entry(Kind.DOMAIN_MASK, "*.mask.example", "t"),
    Entry(Kind.DOMAIN_MASK, "*.deeper.mask.example", "t"),  # covered by the mask
    Entry(Kind.DOMAIN, "under_score.example", "t"),
    Entry(Kind.DOMAIN, "xn--e1afmkfd.xn--p1ai", "t"),
    Entry(Kind.URL, "http://example.org/a.b?c=(d)|e", "t"),
    Entry(Kind.IP, "192.0.2.1", "t"),
    Entry(Kind.SUBNET, "192.0.2.0/24", "t"),
    Entry(Kind.SUBNET, "198.51.100.0/25", "t"),
    Entry(Kind.SUBNET, "198.51.100.128/25", "t"),
    Entry(Kind.IP, "2001:db8::1", "t"),
    Entry(Kind.SUBNET, "2001:db8:1::/48", "t"),
]


@pytest.fixture(scope="module")
def real_entries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Entry]]:
    store = SqliteStore(tmp_path_factory.mktemp("reg") / "r.db", create=True)
    data = shared_file("zi_dump_2018-05-05_PARTIAL.csv").read_bytes()
    dump = tmp_path_factory.mktemp("d") / "dump.csv"
    dump.write_bytes(data[: data.rindex(b"\n") + 1])
    import_files(store, [dump])
    for name, source in (
        ("hagezi_fake_adblock_2022-07-24.txt", "hagezi-fake-adblock"),
        ("hagezi_fake_hosts_2022-07-24.txt", "hagezi-fake-hosts"),
        ("spamhaus_drop_2024-02-27_via_SecOps.txt", "spamhaus-drop"),  # this copy has no header
    ):
        import_files(store, [shared_file(name)], source=source)
    yield list(store.entries())
    store.close()


def _tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        pytest.skip(f"{name} not installed (apt: see docs/registry-notes.md)")
    return path


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _nft_check(path: Path) -> subprocess.CompletedProcess[str]:
    nft = _tool("nft")
    res = _run([nft, "-c", "-f", str(path)])
    if res.returncode != 0 and "Operation not permitted" in res.stderr:
        unshare = _tool("unshare")
        res = _run([unshare, "-rn", nft, "-c", "-f", str(path)])
    return res


@pytest.mark.parametrize("which", ["small", "real"])
def test_nft(which: str, real_entries: list[Entry], tmp_path: Path) -> None:
    entries = SMALL if which == "small" else real_entries
    out = export_entries(entries, "nft")
    p = tmp_path / "registry.nft"
    p.write_text(out.text)
    res = _nft_check(p)
    assert res.returncode == 0, res.stderr[-2000:]
    if which == "small":
        assert "198.51.100.0/24" in out.text  # two halves merged
        assert "192.0.2.1," not in out.text  # inside 192.0.2.0/24
        assert out.skipped["url.not_expressible"] == 1
    # the checker really checks: a bad element is refused
    p.write_text(out.text.replace("elements = {\n", "elements = {\n\t\t\t10.0.0.0/33,\n", 1))
    assert _nft_check(p).returncode != 0


@pytest.mark.parametrize("which", ["small", "real"])
def test_rpz_checkzone_and_round_trip(which: str, real_entries: list[Entry], tmp_path: Path) -> None:
    entries = SMALL if which == "small" else real_entries
    out = export_entries(entries, "rpz", origin="rpz.example")
    p = tmp_path / "db.rpz"
    p.write_text(out.text)
    res = _run([_tool("named-checkzone"), "rpz.example", str(p)])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    back = parse_rpz(p.read_bytes(), str(p), source="t")
    assert back.rejected == []
    names = {(k, i) for k, i in back.entries if k in ("domain", "domain-mask")}
    dom = {e.indicator for e in entries if e.kind is Kind.DOMAIN}
    masks = {e.indicator for e in entries if e.kind is Kind.DOMAIN_MASK}
    assert {i for k, i in names if k == "domain-mask"} <= masks
    assert {i for k, i in names if k == "domain"} <= dom
    if which == "small":
        assert names == {
            ("domain", "example.com"),
            ("domain-mask", "*.mask.example"),
            ("domain", "under_score.example"),
            ("domain", "xn--e1afmkfd.xn--p1ai"),
        }
        ips = {i for k, i in back.entries if k in ("ip", "subnet")}
        assert ips == {"192.0.2.0/24", "198.51.100.0/24", "2001:db8::1", "2001:db8:1::/48"}


def test_rpz_ip_triggers() -> None:
    assert rpz_ip_trigger("32.1.2.0.192") == (Kind.IP, "192.0.2.1")
    assert rpz_ip_trigger("24.0.2.0.192") == (Kind.SUBNET, "192.0.2.0/24")
    assert rpz_ip_trigger("128.1.zz.db8.2001") == (Kind.IP, "2001:db8::1")
    assert rpz_ip_trigger("48.zz.1.db8.2001") == (Kind.SUBNET, "2001:db8:1::/48")
    assert rpz_ip_trigger("128.1.zz") == (Kind.IP, "::1")


def test_rpz_zone_semantics() -> None:
    zone = b"""$TTL 60
@ IN SOA ns.example. admin.example. ( 7 3600 600
        86400 60 )
  IN NS ns.example.
$ORIGIN rpz.example.
bad.example CNAME .
*.bad.example CNAME .
data.example 300 IN A 10.0.0.1
ok.example CNAME rpz-passthru.
32.1.2.0.192.rpz-ip CNAME .
ns.example.rpz-nsdname CNAME .
other.zone. CNAME .
"""
    res = parse_rpz(zone, "z", source="rpz test")
    assert set(res.entries) == {
        ("domain-mask", "*.bad.example"),
        ("domain", "data.example"),
        ("ip", "192.0.2.1"),
    }
    assert [r.reason for r in res.rejected] == [
        "rpz.passthru_not_imported",
        "rpz.unsupported_trigger",
        "rpz.outside_origin",
    ]
    assert list(res.entries[("ip", "192.0.2.1")][1]) == [LegalBasis("rpz test")]


@pytest.mark.parametrize("which", ["small", "real"])
def test_unbound(which: str, real_entries: list[Entry], tmp_path: Path) -> None:
    out = export_entries(SMALL if which == "small" else real_entries, "unbound")
    inc = tmp_path / "sluice.conf"
    inc.write_text(out.text)
    conf = tmp_path / "unbound.conf"
    conf.write_text(
        f'server:\n\tchroot: ""\n\tusername: ""\n\tdirectory: "{tmp_path}"\n'
        f'\tpidfile: ""\n\tuse-syslog: no\ninclude: "{inc}"\n'
    )
    res = _run([_tool("unbound-checkconf"), str(conf)])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.mark.parametrize("which", ["small", "real"])
def test_dnsmasq(which: str, real_entries: list[Entry], tmp_path: Path) -> None:
    out = export_entries(SMALL if which == "small" else real_entries, "dnsmasq")
    p = tmp_path / "dnsmasq.conf"
    p.write_text(out.text)
    res = _run([_tool("dnsmasq"), "--test", f"--conf-file={p}"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "syntax check OK" in res.stderr


@pytest.mark.parametrize("which", ["small", "real"])
def test_squid(which: str, real_entries: list[Entry], tmp_path: Path) -> None:
    out = export_entries(SMALL if which == "small" else real_entries, "squid")
    inc = tmp_path / "sluice-acl.conf"
    inc.write_text(out.text)
    conf = tmp_path / "squid.conf"
    conf.write_text(
        f"http_port 127.0.0.1:3128\ninclude {inc}\nhttp_access deny all\n"
        f"pid_filename none\ncache_log /dev/null\n"
    )
    res = _run([_tool("squid"), "-k", "parse", "-f", str(conf)])
    assert res.returncode == 0, res.stderr[-2000:]
    problems = [ln for ln in res.stderr.splitlines() if "| WARNING" in ln or "| ERROR" in ln or "FATAL" in ln]
    # Squid cannot merge ten thousand URL regexes into one and says it checks them one by one
    benign = "optimisation of regular expressions failed"
    assert [ln for ln in problems if benign not in ln] == [], problems[:5]
    if which == "small":
        assert r"url_regex ^http://example\.org/a\.b\?c=\(d\)\|e$" in out.text


def test_hosts_round_trip(real_entries: list[Entry], tmp_path: Path) -> None:
    out = export_entries(real_entries, "hosts")
    p = tmp_path / "hosts"
    p.write_text(out.text)
    back = parse_files([p], "hosts")
    assert back.rejected == []
    names = {e.indicator for e in real_entries if e.kind is Kind.DOMAIN}
    masks = {e.indicator[2:] for e in real_entries if e.kind is Kind.DOMAIN_MASK}
    assert {i for _, i in back.entries} <= names | masks
