"""The quick lab subset, for real: namespaces, real programs, captures, verified labels (root)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.lab import lab
from sluice.lab import LabelIndex, load_labels
from sluice.lab.flowsum import summarize_capture
from sluice.lab.registry import all_scenarios
from sluice.lab.topology import Addressing, LabError, Topology, active_topologies

pytestmark = pytest.mark.root

QUICK = [name for name, sc in all_scenarios().items() if sc.quick]
SESSIONS = {"openvpn": 2}  # session 0 is UDP + static key, session 1 TCP + PKI/tls-crypt


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces); run the tests as root")
    for prog in ("ip", "tcpdump", "curl"):
        if (
            subprocess.run(
                ["sh", "-c", f"command -v {prog} || test -x /usr/sbin/{prog}"],
                capture_output=True,
                check=False,
            ).returncode
            != 0
        ):
            pytest.skip(f"{prog} not installed (sluice lab install)")


@pytest.mark.parametrize("name", QUICK)
def test_quick_scenario(name: str, tmp_path: Path) -> None:
    _need_root()
    sc = all_scenarios()[name]
    missing = sc.missing()
    if missing:
        pytest.skip(f"{name}: not installed: {', '.join(missing)} (sluice lab install)")
    n = SESSIONS.get(name, 1)
    r = CliRunner().invoke(
        lab,
        [
            "run",
            name,
            "--sessions",
            str(n),
            "--seed",
            "7",
            "--out",
            str(tmp_path),
            "--duration",
            "1.5",
            "--jobs",
            "2",
            "--json",
        ],
    )
    reports = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert r.exit_code == 0, r.output
    assert [rep["status"] for rep in reports] == ["ok"] * n, reports
    assert not active_topologies()
    for rep in reports:
        pcap, labels_path = Path(rep["capture"]), Path(rep["labels"])
        assert pcap.stat().st_size > 1000
        doc = json.loads(labels_path.read_text())
        assert doc["verified"]["ok"] is True
        assert doc["verified"]["tcpdump_dropped"] == 0
        checks = doc["verified"]["checks"]
        if name == "dns":
            assert checks["answers_right"] >= 0.9 * checks["queries"] > 0
        else:
            assert checks["transfers_ok"] >= 1 and checks["server_requests_via_carrier"] >= 1
            assert doc["verified"]["carrier_bytes"] >= checks["payload_bytes"] > 0
        assert doc["software"] and all(s["version"] != "unknown" for s in doc["software"])
        assert doc["seed"] == 7 and doc["params"]
        labels = load_labels(labels_path)
        assert labels and {(lb.traffic_class, lb.family) for lb in labels} <= {
            (sc.traffic_class, f) for f in ("dns", "dot", "doh", sc.family)
        }
        # every flow the capture holds towards the server is labeled, in both directions
        idx = LabelIndex(labels)
        summary = summarize_capture(pcap)
        to_server = [f for f in summary.flows if doc["topology"]["server"] in (f.key.src, f.key.dst)]
        assert to_server
        for f in to_server:
            k = f.key
            assert idx.label_for(k) == idx.label_for((k.proto, k.dst, k.dport, k.src, k.sport))
            assert idx.label_for(k) is not None, k
    assert not any(Path("/run/netns").glob(f"sluice-{os.getpid()}-*"))


def test_topology_is_sealed_and_torn_down_on_error(tmp_path: Path) -> None:
    _need_root()
    topo = Topology(tmp_path, Addressing.default())
    with pytest.raises(RuntimeError, match="boom"), topo:
        r = topo.run("client", ["ping", "-c1", "-W1", "10.200.2.2"], check=False)
        assert r.returncode == 0, r.stdout
        out = topo.run("client", ["ping", "-c1", "-W1", "192.0.2.77"], check=False)
        assert out.returncode != 0  # nothing beyond the lab's two subnets
        topo.spawn("server", "sleeper", ["sleep", "60"])
        raise RuntimeError("boom")
    assert not Path("/run/netns", topo.ns["client"]).exists()
    assert all(not p.alive() for p in topo.procs)
    with pytest.raises(LabError, match="torn_down"):
        topo.run("client", ["true"])
