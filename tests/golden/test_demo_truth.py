"""The bundled demo capture against the ground truth its generator wrote (``demo.truth.json``).

Every flow the synthesizer built must come out as one sluice flow with the same endpoints,
packet counts per direction and application facts.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from sluice.batch.flows import batch_flows
from sluice.flows.record import FlowRecord
from sluice.wire.quic import quic_version_name

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.pcapng"


def _ep(addr: str, port: int) -> tuple[str, int]:
    return str(ipaddress.ip_address(addr)), port


@pytest.fixture(scope="module")
def flows() -> dict[frozenset[tuple[str, int]], FlowRecord]:
    records = [r for r in batch_flows(str(DEMO), strict=True).records if not r.early]
    return {frozenset((_ep(r.client, r.client_port), _ep(r.server, r.server_port))): r for r in records}


def _truth() -> list[dict[str, Any]]:
    flows: list[dict[str, Any]] = json.loads((ROOT / "examples" / "demo.truth.json").read_text())["flows"]
    return flows


@pytest.mark.parametrize("t", _truth(), ids=lambda t: f"{t['flow_id']}-{t['kind']}")
def test_demo_flow_matches_truth(flows, t) -> None:  # type: ignore[no-untyped-def]
    key = frozenset((_ep(t["client_ip"], t["client_port"]), _ep(t["server_ip"], t["server_port"])))
    r = flows[key]
    assert (r.client, r.client_port) == _ep(t["client_ip"], t["client_port"])
    assert (r.c2s_packets, r.s2c_packets) == (t["packets_c2s"], t["packets_s2c"])
    m = r.meta
    if t.get("sni"):
        assert m.sni == t["sni"]
    if t.get("alpn"):
        assert list(m.alpn) == t["alpn"]
    if t.get("quic_version"):
        assert m.quic_version == quic_version_name(t["quic_version"])
    if t.get("dns_qname"):
        assert m.dns_query == t["dns_qname"]
        assert m.dns_qtype == t["dns_qtype"]
        if t.get("dns_rcode") is not None:
            assert m.dns_rcode == t["dns_rcode"]
    if t.get("http_host"):
        assert (m.http_method, m.http_host) == (t["http_method"], t["http_host"])
    if t.get("http_status"):
        assert m.http_status == t["http_status"]
    if t.get("ssh_client_banner"):
        assert m.ssh_client == t["ssh_client_banner"]
        assert m.ssh_server == t["ssh_server_banner"]
    if t.get("socks_target"):
        assert m.socks_target == t["socks_target"]
    if t.get("tunnel"):  # the truth says "ipip" for any IP-in-IP; sluice names 6in4/4in6/6in6
        kind = r.tunnels.split(":", 1)[0].split("/", 1)[0]
        assert kind == t["tunnel"] or (t["tunnel"] == "ipip" and kind in ("6in4", "4in6", "6in6"))
    if t.get("vlans"):
        assert list(r.vlans) == t["vlans"]
