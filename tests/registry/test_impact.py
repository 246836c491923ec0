"""Collateral-impact preview, with the 2018 case: a messenger on a few addresses of a cloud /15.

The flow log is written by sluice's own flow-log writers (JSONL, CSV, Parquet) from flow records
of a seeded, made-up network; its ground truth (which service each flow belongs to) is kept
beside it, and the preview's numbers are checked against that truth.  A small capture made with
the project's packet writer checks the capture path (sluice's own flow table).
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from sluice.flows.record import AppMeta, FlowRecord
from sluice.io.flowlog import open_flow_writer
from sluice.registry.impact import NAME_LEVEL_ADVICE, parse_entry, preview_impact, read_traffic, shared_lookup
from sluice.registry.model import Kind, RegistryError

CLOUD = "18.196.0.0/15"
"""AWS EC2 eu-central-1: one of the ranges of the 2018 blocking (a /15 of a cloud provider)."""
RESOLVER = "10.0.0.53"
MESSENGER = ("api.messenger.example", "media.messenger.example", "web.messenger.example")
MESSENGER_ADDRS = ("18.196.10.1", "18.196.10.2", "18.197.3.77")
# unrelated services living in the same /15: (name, addresses, flows, tls?)
TENANTS = (
    ("play.gamenet.example", ("18.196.40.10", "18.196.40.11"), 60, True),
    ("matchmaking.gamenet.example", ("18.196.40.12",), 25, True),
    ("voice.talkapp.example", ("18.197.8.1", "18.197.8.2"), 45, False),  # UDP media, no SNI
    ("updates.osvendor.example", ("18.196.200.5",), 30, True),
    ("shop.example", ("18.197.100.9",), 20, True),
    ("api.banking.example", ("18.197.100.10",), 15, True),
    ("cdn.news.example", ("18.196.77.1", "18.196.10.200"), 18, True),
)
OUTSIDE = (("www.example.org", ("93.184.216.34",), 40, True), ("search.example", ("192.0.2.80",), 30, True))
MESSENGER_FLOWS = 90


@dataclass(frozen=True, slots=True)
class Truth:
    """What the made-up network holds."""

    flows_in_cloud: int
    messenger_flows: int
    collateral_flows: int
    collateral_names: frozenset[str]
    collateral_clients: int
    clients_in_cloud: int


def _record(i: int, client: str, server: str, port: int, proto: int, meta: AppMeta, size: int) -> FlowRecord:
    return FlowRecord(
        flow_id=i,
        early=False,
        end_reason="idle",
        ip_version=4,
        client=client,
        client_port=40000 + i % 20000,
        server=server,
        server_port=port,
        proto=proto,
        vlans=(),
        tunnels="",
        first_ts=1_525_000_000.0 + i,
        last_ts=1_525_000_001.0 + i,
        c2s_packets=5,
        s2c_packets=7,
        c2s_bytes=size // 4,
        s2c_bytes=size - size // 4,
        c2s_payload_bytes=0,
        s2c_payload_bytes=0,
        c2s_tcp_flags=0,
        s2c_tcp_flags=0,
        pkt_sizes=(),
        pkt_dirs=(),
        pkt_iats=(),
        c2s_entropy=-1.0,
        c2s_printable=-1.0,
        s2c_entropy=-1.0,
        s2c_printable=-1.0,
        c2s_first_payload_len=0,
        c2s_head="",
        s2c_head="",
        meta=meta,
    )


@cache
def network() -> tuple[tuple[FlowRecord, ...], Truth]:
    """Flow records of the made-up network (seeded) and their truth."""
    rng = random.Random(2018)
    clients = [f"10.0.1.{i}" for i in range(1, 61)]
    recs: list[FlowRecord] = []
    coll_clients: set[str] = set()
    cloud_clients: set[str] = set()
    # a DNS answer for every name once per client that uses it (passive DNS)
    services = [(n, MESSENGER_ADDRS, MESSENGER_FLOWS, True) for n in MESSENGER[:1]]
    plan: list[tuple[str, tuple[str, ...], bool, bool]] = []  # name, addrs, tls, is messenger
    for _ in range(MESSENGER_FLOWS):
        plan.append((rng.choice(MESSENGER), MESSENGER_ADDRS, True, True))
    for name, tenant_addrs, n, tls in (*TENANTS, *OUTSIDE):
        plan += [(name, tuple(tenant_addrs), tls, False)] * n
    rng.shuffle(plan)
    resolved: set[tuple[str, str]] = set()
    for name, addrs, tls, is_msgr in plan:
        client = rng.choice(clients)
        if (client, name) not in resolved:
            resolved.add((client, name))
            meta = AppMeta(app="dns", dns_query=name, dns_qtype=1, dns_rcode=0, dns_answers=addrs)
            recs.append(_record(len(recs), client, RESOLVER, 53, 17, meta, 180))
        server = rng.choice(addrs)
        if tls:
            meta = AppMeta(app="tls", sni=name, tls_versions=(0x0304,))
            recs.append(_record(len(recs), client, server, 443, 6, meta, rng.randrange(2_000, 400_000)))
        else:
            recs.append(
                _record(len(recs), client, server, 3478, 17, AppMeta(), rng.randrange(50_000, 900_000))
            )
        if ipaddress.ip_address(server) in ipaddress.ip_network(CLOUD):
            cloud_clients.add(client)
            if not is_msgr:
                coll_clients.add(client)
    del services
    n_tenant = sum(n for _, _, n, _ in TENANTS)
    truth = Truth(
        flows_in_cloud=MESSENGER_FLOWS + n_tenant,
        messenger_flows=MESSENGER_FLOWS,
        collateral_flows=n_tenant,
        collateral_names=frozenset(n for n, *_ in TENANTS),
        collateral_clients=len(coll_clients),
        clients_in_cloud=len(cloud_clients),
    )
    return tuple(recs), truth


def write_log(path: Path, fmt: str) -> Path:
    recs, _ = network()
    if fmt == "parquet":
        w = open_flow_writer("parquet", None, str(path))
        w.write(recs)
        w.close()
    else:
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = open_flow_writer(fmt, fh, None)
            w.write(recs)
            w.close()
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_2018_case_cloud_subnet(tmp_path: Path, fmt: str) -> None:
    _, truth = network()
    traffic = read_traffic([write_log(tmp_path / f"flows.{fmt}", fmt)])
    lookup = shared_lookup()
    report = preview_impact([parse_entry(CLOUD)], traffic, own=["*.messenger.example"], shared=lookup)
    [imp] = report.entries
    assert (imp.kind, imp.indicator) == (Kind.SUBNET, CLOUD)
    assert imp.flows == truth.flows_in_cloud
    assert imp.own_flows == truth.messenger_flows
    assert imp.collateral_flows == truth.collateral_flows
    assert imp.collateral_clients == truth.collateral_clients and imp.clients == truth.clients_in_cloud
    assert imp.collateral_share == pytest.approx(truth.collateral_flows / truth.flows_in_cloud)
    assert imp.collateral_share > 0.6
    assert {n.name for n in imp.names if not n.own} == truth.collateral_names
    assert {n.name for n in imp.names if n.own} == set(MESSENGER)
    voice = next(n for n in imp.names if n.name == "voice.talkapp.example")
    assert voice.flows == 0 and set(voice.addresses) == {"18.197.8.1", "18.197.8.2"}  # known by DNS only
    assert imp.unnamed_flows == 0  # the voice flows' addresses are named by DNS answers
    assert "www.example.org" not in {n.name for n in imp.names}
    if lookup is not None:
        [aws] = imp.shared
        assert "Amazon" in aws["operator"] and aws["cidr"] == CLOUD and aws["source"]
        assert imp.advice.startswith(NAME_LEVEL_ADVICE)


def test_2018_case_names_instead(tmp_path: Path) -> None:
    """The messenger's names, not its addresses: nothing else is hit (by name or address)."""
    _, truth = network()
    traffic = read_traffic([write_log(tmp_path / "flows.jsonl", "jsonl")])
    report = preview_impact(
        [parse_entry("*.messenger.example"), parse_entry("18.196.10.1")], traffic, shared=shared_lookup()
    )
    mask, one = report.entries
    assert mask.addresses == 3 and mask.collateral_flows == 0 and mask.own_flows == truth.messenger_flows
    assert mask.name_flows > truth.messenger_flows  # its DNS queries too
    assert mask.advice.endswith("no collateral seen in this traffic")
    # one messenger address: own names are the mask of the same preview; nothing else is there
    assert one.collateral_flows == 0 and 0 < one.own_flows < truth.messenger_flows


def test_unnamed_and_no_own_names(tmp_path: Path) -> None:
    traffic = read_traffic([write_log(tmp_path / "flows.jsonl", "jsonl")])
    [imp] = preview_impact([parse_entry("18.197.8.0/24")], traffic).entries
    # no own names given for an address entry: every flow there is collateral
    assert imp.collateral_share == 1.0 and imp.names[0].name == "voice.talkapp.example"
    assert not preview_impact([parse_entry("203.0.113.0/24")], traffic).entries[0].flows


def test_shared_lookup_flags_cloudflare_and_aws() -> None:
    lookup = shared_lookup()
    if lookup is None:
        pytest.skip("sluice.services.catalogue not present")
    from sluice.registry._traffic import Traffic, TrafficFlow

    t = Traffic(flows=[TrafficFlow("10.0.0.1", "104.16.1.1", "site.example", 100)])
    t.link("104.16.1.1", "site.example")
    report = preview_impact(
        [
            parse_entry("104.16.1.1"),
            parse_entry("18.196.0.7"),
            parse_entry("site.example"),
            parse_entry("192.0.2.1"),
        ],
        t,
        shared=lookup,
    )
    cf, aws, name, plain = report.entries
    assert cf.shared[0]["operator"] == "Cloudflare" and cf.advice.startswith(NAME_LEVEL_ADVICE)
    assert "Amazon" in aws.shared[0]["operator"] and aws.advice.startswith(NAME_LEVEL_ADVICE)
    assert name.shared and "by name, never by address" in name.advice
    assert plain.shared == [] and NAME_LEVEL_ADVICE not in plain.advice


def test_capture_path(tmp_path: Path) -> None:
    """A capture goes through sluice's flow table: SNI links names to the server address."""
    from sluice.io.pcap_writer import open_writer
    from sluice.synth.flows import FlowSpec, build_flow
    from sluice.synth.payloads import PayloadPool

    pool = PayloadPool(3, variants=1, filler_size=1 << 16)
    frames: list[tuple[float, bytes]] = []
    hosts = [("api.messenger.example", "18.196.10.1"), ("play.gamenet.example", "18.196.40.10")] * 2
    for i, (host, ip) in enumerate(hosts):
        spec = FlowSpec(
            i, "https", 100.0 + i, (f"10.0.1.{i + 1}", 40000 + i), (ip, 443), host, 0.02, (3000,), "1.3", i
        )
        frames += build_flow(spec, pool)[0]
    cap = tmp_path / "c.pcap"
    with open_writer(cap, "pcap") as w:
        for ts, frame in sorted(frames, key=lambda x: x[0]):
            w.write(ts, frame)
    traffic = read_traffic([cap])
    assert len(traffic.flows) == 4
    [imp] = preview_impact([parse_entry(CLOUD)], traffic, own=["*.messenger.example"]).entries
    assert Counter((n.name, n.own, n.flows) for n in imp.names) == Counter(
        [("api.messenger.example", True, 2), ("play.gamenet.example", False, 2)]
    )
    assert imp.collateral_share == 0.5 and imp.clients == 4


def test_bad_traffic(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a flow log")
    with pytest.raises(RegistryError) as err:
        read_traffic([junk])
    assert err.value.reason == "registry.bad_traffic"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"server": "1.2.3.4"}\n{"server": \n')
    with pytest.raises(RegistryError, match="line 2"):
        read_traffic([broken])
    with pytest.raises(RegistryError) as err:
        read_traffic([tmp_path / "missing.jsonl"])
    assert err.value.reason == "registry.io_error"
    with pytest.raises(RegistryError) as err:
        preview_impact(
            [parse_entry(CLOUD)], read_traffic([write_log(tmp_path / "f.jsonl", "jsonl")]), own=["1.2.3.4"]
        )
    assert err.value.reason == "registry.bad_indicator"
