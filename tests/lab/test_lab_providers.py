"""The vpn-providers scenario: its plan of servers (no root), and one real session (root)."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.lab import lab
from sluice.lab import LabelIndex, load_labels
from sluice.lab.flowsum import summarize_capture
from sluice.lab.registry import all_scenarios
from sluice.lab.scenario import Session
from sluice.lab.scenarios.providers import _KINDS, _PROVIDERS, VpnProviders, _Nets
from sluice.lab.topology import Addressing, Topology, active_topologies

ENDPOINT = re.compile(r"^(\d+\.\d+\.\d+\.\d+):(\d+)/(tcp|udp)$")
TRANSPORT = {6: "tcp", 17: "udp"}


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces); run the tests as root")
    for prog in ("ip", "tcpdump", "curl"):
        r = subprocess.run(
            ["sh", "-c", f"command -v {prog} || test -x /usr/sbin/{prog}"], capture_output=True, check=False
        )
        if r.returncode != 0:
            pytest.skip(f"{prog} not installed (sluice lab install)")


@pytest.mark.parametrize("variant", ["default", "nat"])
def test_plan_gives_every_provider_its_servers_and_protocols(tmp_path: Path, variant: str) -> None:
    """The plan alone (no namespaces): servers, protocols, addresses and ports for many seeds."""
    scen = VpnProviders()
    for seed in range(12):
        rng = random.Random(f"plan/{seed}")
        s = Session(Topology(tmp_path / f"{variant}{seed}", Addressing.random(rng)), rng, 3.0)
        s.workdir.mkdir()
        nets = _Nets(s)
        count = 0
        for spec in _PROVIDERS:
            p = scen._provider(s, spec, nets)
            count = scen._plan_endpoints(s, p, nets, variant == "nat", count)
            lo, hi = spec.servers
            assert lo <= len(p.servers) <= hi
            assert {ep.kind for ep in p.endpoints} == set(spec.kinds), (seed, spec.name)
            assert {ep.name for ep in p.endpoints} == {name for name, _, _ in p.servers}
            assert all(name.endswith(f".{spec.name}.test") for name, _, _ in p.servers)
            labels = [ep.label for ep in p.endpoints]
            assert len(set(labels)) == len(labels)
            net = ipaddress.ip_network(f"{p.prefix}.0/24")
            for ep in p.endpoints:
                m = ENDPOINT.match(ep.label)
                assert m and ipaddress.ip_address(m.group(1)) in net
                assert m.group(3) == _KINDS[ep.kind][0]
            backends = [(ep.listen_ip, ep.transport, ep.listen_port) for ep in p.endpoints]
            assert len(set(backends)) == len(backends)
            if variant == "nat":
                assert len({ep.public_ip for ep in p.endpoints}) <= 2
                assert all(ep.listen_ip.startswith("10.") for ep in p.endpoints)
            else:
                assert all(ep.listen_ip == ep.public_ip for ep in p.endpoints)
        corvid = p
        assert sum(ep.kind == "stunnel" for ep in corvid.endpoints) >= 2
        assert s.params["acme_vpn_key_type"] and "corvid_secure_stunnel_port" in s.params


@pytest.mark.root
@pytest.mark.slow
def test_vpn_providers_session(tmp_path: Path) -> None:
    _need_root()
    sc = all_scenarios()["vpn-providers"]
    missing = sc.missing()
    if missing:
        pytest.skip(f"vpn-providers: not installed: {', '.join(missing)} (sluice lab install)")
    r = CliRunner().invoke(
        lab, ["run", "vpn-providers:default", "-n", "1", "-s", "11", "-o", str(tmp_path), "--json"]
    )
    reports = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert r.exit_code == 0, r.output
    assert [rep["status"] for rep in reports] == ["ok"], reports
    assert not active_topologies()
    pcap, labels_path = Path(reports[0]["capture"]), Path(reports[0]["labels"])
    doc = json.loads(labels_path.read_text())
    assert doc["verified"]["ok"] is True and doc["verified"]["tcpdump_dropped"] == 0
    checks = doc["verified"]["checks"]
    assert checks["transfers_failed"] == 0 and checks["transfers_ok"] >= checks["visits"]
    assert checks["server_requests_via_carrier"] >= checks["transfers_ok"]
    assert checks["benign_transfers_ok"] >= 1
    params = doc["params"]
    assert params["stack"] and params["impl"]
    providers = params["providers"]
    assert set(providers) == {"acme-vpn", "boreal-net", "corvid-secure"}

    # ground truth: endpoint -> (provider, family)
    truth: dict[str, tuple[str, str]] = {}
    for name, prov in providers.items():
        assert 2 <= len(prov["names"]) <= 4
        assert all(n.endswith(f".{name}.test") for n in prov["names"])
        for srv in prov["servers"]:
            assert ENDPOINT.match(srv["endpoint"]), srv
            truth[srv["endpoint"]] = (name, srv["family"])
        assert set(prov["endpoints"]) == {srv["endpoint"] for srv in prov["servers"]}
        if name == "boreal-net":
            assert prov["cert_sha256"] is None
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", prov["cert_sha256"])
    benign = params["benign"]["endpoints"]

    # every TCP/UDP flow of the capture is labeled: the provider's family, or benign
    idx = LabelIndex(load_labels(labels_path))
    for fl in summarize_capture(pcap).flows:
        k = fl.key
        if k.proto not in TRANSPORT:
            continue  # ICMP port unreachable after a client left: listed as unlabeled
        label = idx.label_for(k)
        assert label is not None, k
        ep = f"{k.dst}:{k.dport}/{TRANSPORT[k.proto]}"
        if ep in truth:
            assert label[1] == truth[ep][1], (ep, label)
        else:
            assert ep in benign and label[0] == "benign", (ep, label)
    assert all(u["proto"] == 1 for u in doc["unlabeled"]), doc["unlabeled"]
    rules = {f["rule"] for f in doc["flows"]}
    assert {f"carrier:{n}" for n in providers} <= rules

    # sluice's own flow table: every endpoint has flows, certificates link a provider's endpoints
    out = subprocess.run(
        [sys.executable, "-m", "sluice", "flows", str(pcap), "--format", "jsonl"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    seen: dict[str, int] = defaultdict(int)
    cert_eps: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["proto"] not in TRANSPORT:
            continue
        ep = f"{row['server']}:{row['server_port']}/{TRANSPORT[row['proto']]}"
        seen[ep] += 1
        if ep in truth:
            prov = truth[ep][0]
            if row["sni"]:
                assert row["sni"].endswith(f".{prov}.test"), row["sni"]
            if row["cert_subject"] or row["cert_san"]:
                assert row["cert_san"] == [f"*.{prov}.test"], row["cert_san"]
                cert_eps[prov].add(ep)
    assert all(seen[ep] >= 1 for ep in truth), {ep: seen[ep] for ep in truth}
    assert len(cert_eps["corvid-secure"]) >= 2, cert_eps
    assert all(seen[ep] >= 1 for ep in benign)

    # discovery on the session: every pair of provider endpoints grouped right, nothing benign
    from sluice.services.discover import discover, pair_agreement, read_flows

    groups = [[e.key for e in g.endpoints] for g in discover(read_flows([str(pcap)]), min_findings=1)]
    right, pairs = pair_agreement(groups, {ep: prov for ep, (prov, _) in truth.items()})
    assert right == pairs, groups
    assert not {ep for g in groups for ep in g} & set(benign), groups
