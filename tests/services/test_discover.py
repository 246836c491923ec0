"""Service discovery: endpoints from verdicts, grouped by certificate, domain, service and network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.errors import ConfigError
from sluice.services.discover import (
    DiscoveryInput,
    _from_rows,
    discover,
    endpoints,
    pair_agreement,
    read_flows,
    registrable,
)
from tests.corpus_util import corpus_file


def _row(
    server: str, port: int = 443, *, cls: str = "vpn", family: str = "openvpn", **kw: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "server": server,
        "server_port": port,
        "proto": kw.pop("proto", 17),
        "client": kw.pop("client", "10.0.0.2"),
        "class": cls,
        "family": family,
        "first_ts": kw.pop("t", 100.0),
        "last_ts": kw.pop("t1", 101.0),
        "evidence": [{"code": f"{family}.rule"}] if cls != "benign" else [],
    }
    row.update(kw)
    return row


def _rows(rows: list[dict[str, Any]]) -> DiscoveryInput:
    return _from_rows(rows)


def test_endpoint_folds_flows_names_clients_and_passive_dns() -> None:
    rows = [
        _row("198.51.100.7", client="10.0.0.2", sni="nl1.acme-vpn.test", proto=6),
        _row("198.51.100.7", client="10.0.0.3", proto=6, t=90.0, t1=200.0),
        _row("198.51.100.7", cls="benign", family="tls", proto=6),
        _row(
            "192.0.2.53",
            53,
            cls="benign",
            family="dns",
            dns_query="de2.acme-vpn.test.",
            dns_answers=["198.51.100.7"],
        ),
    ]
    eps = endpoints(_rows(rows))
    ep = eps[("198.51.100.7", 443, "tcp")]
    assert ep.flows == 3 and ep.findings == 2 and ep.clients == {"10.0.0.2", "10.0.0.3"}
    assert ep.names == {"nl1.acme-vpn.test", "de2.acme-vpn.test"}  # SNI and a DNS answer
    assert (ep.first_seen, ep.last_seen) == (90.0, 200.0)
    assert ep.key == "198.51.100.7:443/tcp" and ep.families == {"vpn/openvpn": 2}


def test_groups_by_certificate_domain_service_and_network() -> None:
    cert: dict[str, Any] = {
        "cert_subject": "CN=*.acme-vpn.test",
        "cert_issuer": "CN=Acme CA",
        "cert_san": ["*.acme-vpn.test"],
    }
    rows = [
        # acme: two OpenVPN-over-TLS servers share a certificate; a third only shares the domain
        *[_row("203.0.113.10", 443, proto=6, **cert) for _ in range(2)],
        *[_row("198.18.5.20", 1194, proto=6, **cert) for _ in range(2)],
        *[_row("198.18.9.9", 443, proto=6, sni="fr3.acme-vpn.test") for _ in range(2)],
        # boreal: WireGuard servers side by side, no names at all
        *[_row("192.0.2.10", 51820, family="wireguard") for _ in range(2)],
        *[_row("192.0.2.11", 51820, family="wireguard") for _ in range(2)],
        # a WireGuard server elsewhere: not linked to boreal
        *[_row("100.64.0.1", 51820, family="wireguard") for _ in range(2)],
        # the catalogue named this one
        *[_row("100.70.1.1", 41641, family="commercial:tailscale") for _ in range(2)],
        *[_row("100.99.1.1", 443, proto=6, family="commercial:tailscale") for _ in range(2)],
        # ordinary HTTPS: never a candidate
        *[
            _row("93.184.216.34", 443, cls="benign", family="tls", proto=6, sni="example.com")
            for _ in range(9)
        ],
    ]
    groups = discover(_rows(rows))
    found = sorted(sorted(e.key for e in g.endpoints) for g in groups)
    assert found == sorted(
        [
            ["198.18.5.20:1194/tcp", "198.18.9.9:443/tcp", "203.0.113.10:443/tcp"],
            ["192.0.2.10:51820/udp", "192.0.2.11:51820/udp"],
            ["100.64.0.1:51820/udp"],
            ["100.70.1.1:41641/udp", "100.99.1.1:443/tcp"],
        ]
    )
    acme = next(g for g in groups if len(g.endpoints) == 3)
    assert acme.domains == ["acme-vpn.test"] and acme.label() == "acme-vpn.test"
    assert any("share the certificate CN=*.acme-vpn.test" in x for x in acme.links)
    assert any("carry names under acme-vpn.test" in x for x in acme.links)
    ts = next(g for g in groups if g.service)
    assert ts.service == "tailscale" and "were named tailscale" in ts.links[0]
    assert all(json.dumps(g.to_dict()) for g in groups)


def test_thresholds_and_ignored_domains() -> None:
    one = [_row("203.0.113.1", 443, proto=6)]
    assert discover(_rows(one)) == []  # one finding flow is a guess
    assert len(discover(_rows(one), min_findings=1)) == 1
    mostly_benign = one + [_row("203.0.113.1", 443, cls="benign", family="tls", proto=6)] * 3
    assert discover(_rows(mostly_benign), min_findings=1) == []  # 1 of 4 flows
    fronted = [
        _row(ip, 443, proto=6, sni="www.popular.example") for ip in ("198.51.100.1", "203.0.113.9")
    ] * 2
    assert len(discover(_rows(fronted))) == 1
    assert len(discover(_rows(fronted), ignore_domains=["popular.example"])) == 2


def test_pair_agreement() -> None:
    truth = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    assert pair_agreement([["a1", "a2"], ["b1", "b2"]], truth) == (6, 6)
    assert pair_agreement([["a1", "a2", "b1", "b2"]], truth) == (2, 6)
    assert pair_agreement([["a1"]], truth) == (4, 6)  # nothing found: only the "apart" pairs are right


def test_registrable_domain() -> None:
    assert registrable("NL1.Acme-VPN.test.") == "acme-vpn.test"
    assert registrable("a.b.example.co.uk") == "example.co.uk"
    assert registrable("198.51.100.1") == "" and registrable("localhost") == ""


def test_reads_analysis_output_and_refuses_other_files(tmp_path: Path) -> None:
    rows = [_row("203.0.113.10", 443, proto=6, sni="x.acme-vpn.test") for _ in range(2)]
    jl = tmp_path / "a.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(read_flows([str(jl)])) == 2
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.Table.from_pylist([{**r, "evidence": json.dumps(r["evidence"])} for r in rows]),
        tmp_path / "a.parquet",
    )
    got = read_flows([str(tmp_path / "a.parquet")])
    assert [g.to_dict()["endpoints"][0]["evidence"] for g in discover(got)] == [{"openvpn.rule": 2}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"server": "x"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_flows([str(bad)])
    pq.write_table(pa.Table.from_pylist([{"a": 1}]), tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match="no column"):
        read_flows([str(tmp_path / "other.parquet")])
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ConfigError, match="not a Parquet"):
        read_flows([str(tmp_path / "junk.parquet")])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "server": st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1", "not-an-ip", ""]),
                "server_port": st.one_of(st.none(), st.integers(0, 65535)),
                "proto": st.sampled_from([6, 17, 50, None]),
                "class": st.sampled_from(["vpn", "benign", "proxy", None, ""]),
                "family": st.one_of(st.none(), st.text(max_size=20)),
                "sni": st.one_of(st.none(), st.text(max_size=30)),
                "cert_subject": st.one_of(st.none(), st.text(max_size=10)),
                "cert_san": st.one_of(st.none(), st.text(max_size=10), st.lists(st.text(max_size=5))),
                "dns_query": st.one_of(st.none(), st.text(max_size=20)),
                "dns_answers": st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=3)),
                "evidence": st.one_of(
                    st.none(),
                    st.text(max_size=10),
                    st.lists(st.dictionaries(st.text(max_size=4), st.text(max_size=4))),
                ),
            }
        ),
        max_size=30,
    )
)
@example(  # an evidence cell whose JSON is a number, an object or null (hypothesis found "1")
    rows=[
        {"server": "192.0.2.1", "server_port": 443, "proto": 6, "class": "vpn", "family": None, "sni": None,
         "cert_subject": None, "cert_san": None, "dns_query": None, "dns_answers": None, "evidence": ev}
        for ev in ("1", "{}", "null", '"x"', "[1, null]")
    ]
)  # fmt: skip
def test_any_rows_give_groups_or_nothing(rows: list[dict[str, Any]]) -> None:
    """Odd values (empty, missing, unparsable) never raise; every candidate endpoint is in one group."""
    groups = discover(_rows(rows), min_findings=1)
    keys = [e.key for g in groups for e in g.endpoints]
    assert len(keys) == len(set(keys))


def test_vpn_captures_of_the_ndpi_corpus() -> None:
    """Real captures: every VPN capture's server shows up, grouped with the evidence that named it."""
    caps = ["openvpn.pcap", "wireguard.pcap", "tailscale.pcap", "opera-vpn.pcapng", "tinc.pcap"]
    flows = read_flows([str(corpus_file(c)) for c in caps])
    groups = discover(flows, min_findings=1)
    fams = {f.split("/")[0] for g in groups for f in g.families}
    assert fams == {"vpn"}
    tinc = next(g for g in groups if "vpn/tinc" in g.families)
    assert all(e.server == "185.83.218.112" for e in tinc.endpoints) and len(tinc.endpoints) == 2
    benign = read_flows(
        [str(corpus_file(c)) for c in ("443-chrome.pcap", "google_ssl.pcap", "facebook.pcap")]
    )
    assert discover(benign) == []


def test_command_ranks_explains_and_proposes_into_the_review_queue(tmp_path: Path) -> None:
    """`sluice services discover` on analysis rows: ranked text and JSON; --propose puts the
    candidate's mask and addresses in the register's queue, each with its impact preview."""
    from click.testing import CliRunner

    from sluice.cli.discover import discover_command
    from sluice.registry.proposals import list_proposals
    from sluice.registry.stores import open_store

    cert: dict[str, Any] = {
        "cert_subject": "CN=*.acme-vpn.test",
        "cert_issuer": "CN=Acme CA",
        "cert_san": ["*.acme-vpn.test"],
    }
    rows = [_row("203.0.113.10", 443, proto=6, client=f"10.0.0.{i}", **cert) for i in range(3)]
    rows += [_row("198.18.5.20", 1194, proto=6, **cert) for _ in range(2)]
    rows += [_row("93.184.216.34", 443, cls="benign", family="tls", proto=6, sni="example.com")]
    jl = tmp_path / "a.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    got = runner.invoke(discover_command, [str(jl)])
    assert got.exit_code == 0, got.output
    assert "1 candidate services from 6 flows" in got.output and "1. acme-vpn.test" in got.output
    assert "share the certificate CN=*.acme-vpn.test" in got.output
    db = tmp_path / "reg.db"
    open_store(str(db), create=True).close()  # --propose needs a register that exists
    got = runner.invoke(discover_command, [str(jl), "--format", "json", "--propose", "--register", str(db)])
    assert got.exit_code == 0, got.output
    doc = json.loads(got.output)
    (cand,) = doc["candidates"]
    assert len(cand["proposals"]) == 3  # *.acme-vpn.test and two addresses
    store = open_store(str(db))
    try:
        props = {p.indicator: p for p in list_proposals(store)}
    finally:
        store.close()
    assert set(props) == {"*.acme-vpn.test", "203.0.113.10", "198.18.5.20"}
    p = props["203.0.113.10"]
    assert p.detector == "vpn-services"
    assert "5 finding flows (vpn/openvpn ×5) from 3 clients at 2 endpoints" in p.reason
    assert p.impact and p.evidence["candidate"]["service"] == "acme-vpn.test"  # type: ignore[index]
    again = runner.invoke(discover_command, [str(jl), "--format", "json", "--propose", "--register", str(db)])
    assert json.loads(again.output)["candidates"][0]["proposals"] == cand["proposals"]  # idempotent
    assert runner.invoke(discover_command, [str(jl), "--propose"]).exit_code == 2


def test_unrecognised_servers_join_by_certificate_or_name_and_lookups_are_not_servers() -> None:
    """A provider's server no detector recognised joins its group by certificate or name (its
    address is not proposed); a DNS lookup of a VPN's name makes the resolver no candidate."""
    from sluice.services.discover import proposals_for

    cert = {"cert_subject": "CN=*.corvid.test", "cert_issuer": "CN=Corvid CA", "cert_san": ["*.corvid.test"]}
    rows = [_row("198.18.24.55", 1194, proto=6, sni="a.corvid.test") for _ in range(2)]
    rows += [_row("198.18.24.60", 443, cls="benign", family="tls", proto=6, **cert)]  # stunnel, unseen
    rows += [_row("198.18.24.61", 443, cls="benign", family="tls", proto=6, sni="b.corvid.test")]
    rows += [_row("198.18.24.62", 0, cls="benign", family="", proto=1, sni="c.corvid.test")]  # ICMP
    rows += [
        _row("9.9.9.9", 53, family="commercial:mullvad", dns_query="www.mullvad.net", dns_answers=["1.2.3.4"])
        for _ in range(3)
    ]
    (g,) = discover(_rows(rows))
    keys = {e.key: e.linked_only for e in g.endpoints}
    assert keys == {
        "198.18.24.55:1194/tcp": False,
        "198.18.24.60:443/tcp": True,
        "198.18.24.61:443/tcp": True,
    }
    assert any("198.18.24.60:443/tcp carry names under corvid.test (0/1" in x for x in g.links)
    ips = {p.indicator for p in proposals_for(g) if p.kind.value == "ip"}
    assert ips == {"198.18.24.55"}
    # a name every site carries (here on 30 servers) pulls nothing
    many = rows[:2] + [
        _row(f"203.0.113.{i}", 443, cls="benign", family="tls", proto=6, sni=f"x{i}.corvid.test")
        for i in range(30)
    ]
    (g,) = discover(_rows(many))
    assert [e.key for e in g.endpoints] == ["198.18.24.55:1194/tcp"]
