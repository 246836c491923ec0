"""End to end: real OpenVPN and WireGuard sessions through the gateway, blocked or allowed by policy.

The lab's own scenarios (``sluice lab``) start the real programs in a client / gateway / server
topology; ``sluice gateway run`` sits on the gateway's FORWARD path with detectors on. Under a
policy that blocks the VPN class the tunnel never carries a byte and the decision log says why;
under the default policy (log what detectors find) the same session passes and is logged.
Root only (CI runs as root); skipped when a program is not installed.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sluice.decisions import read_decisions
from sluice.lab.scenario import Outcome, Scenario, Session
from sluice.lab.scenarios import SCENARIO_CLASSES
from sluice.lab.topology import Addressing, LabError, Topology
from sluice.lab.traffic import TrafficReport
from tests.gateway.conftest import need_gateway_env
from tests.gateway.helpers import stop_gateway

BLOCK_VPN = """
[[rule]]
name = "vpn-block"
class = ["vpn"]
action = "block"
"""
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "src" / "sluice" / "policy" / "default.toml"
WAIT_S = 6.0
"""Cap on the scenarios' waits: a blocked tunnel would otherwise wait 20 s to fail."""


class _Topology(Topology):
    def wait_log(self, name: str, pattern: str, timeout: float = 10) -> re.Match[str]:
        return super().wait_log(name, pattern, min(timeout, WAIT_S))


class _Session(Session):
    def web_traffic(
        self,
        base_url: str,
        curl_args: Sequence[str] = (),
        *,
        bulk: bool = True,
        timeout: float = 20,
    ) -> TrafficReport:
        return super().web_traffic(base_url, curl_args, bulk=bulk, timeout=min(timeout, WAIT_S))


def _scenario(name: str) -> Scenario:
    scen = next(c() for c in SCENARIO_CLASSES if c.name == name)
    missing = scen.missing()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/lab-packages.txt)")
    return scen


Run = tuple[Outcome | None, str, list[dict[str, Any]], str]
"""(outcome or None, error, decisions, gateway stderr)."""


def _run(tmp_path: Path, name: str, variant: str, policy_text: str) -> Run:
    """Run one lab session with the gateway on; (outcome or None, error, decisions, gateway stderr)."""
    need_gateway_env()
    scen = _scenario(name)
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    log = tmp_path / "decisions"
    work = tmp_path / "lab"
    work.mkdir()
    work.chmod(0o755)
    rng = random.Random(f"gateway-e2e/{name}/{variant}")
    topo = _Topology(work, Addressing.random(rng))
    outcome, error, err = None, "", ""
    with topo:
        argv = [sys.executable, "-m", "sluice.cli.gateway", "run", "--queue", "5", "--policy", str(policy)]
        argv += ["--log", str(log), "--queue-bypass"]
        gw = subprocess.Popen(topo.argv("gateway", argv), stderr=subprocess.PIPE, text=True)
        try:
            assert gw.stderr is not None
            line = gw.stderr.readline()
            assert "ready on queue 5" in line and "layers 1-3" in line, line
            try:
                outcome = scen.run(_Session(topo, rng, 1.0), variant)
            except LabError as exc:
                error = str(exc)
        finally:
            err = stop_gateway(gw, timeout=15)
    return outcome, error, [d.to_dict() for d in read_decisions(log)], err


VPNS = [
    ("wireguard", "default", "udp"),
    ("openvpn", "udp-pki-tlsauth", "udp"),
    ("openvpn", "tcp-pki-tlscrypt", "tcp"),
]


@pytest.mark.parametrize(("name", "variant", "proto"), VPNS, ids=[f"{n}-{v}" for n, v, _ in VPNS])
def test_vpn_blocked_under_a_blocking_policy(tmp_path: Path, name: str, variant: str, proto: str) -> None:
    outcome, error, decisions, err = _run(tmp_path, name, variant, BLOCK_VPN)
    ok = outcome is not None and not outcome.problems and not error
    assert not ok, f"the {name} session worked through a blocking gateway: {outcome}"
    blocks = [d for d in decisions if d["action"] == "block"]
    assert blocks, (decisions, err)
    d = blocks[0]
    assert (d["class"], d["family"], d["rule"], d["enforced"]) == ("vpn", name, "vpn-block", True), d
    assert d["flow_key"].startswith(proto) and d["evidence"], d


@pytest.mark.parametrize(("name", "variant", "proto"), VPNS, ids=[f"{n}-{v}" for n, v, _ in VPNS])
def test_vpn_allowed_and_logged_under_the_default_policy(
    tmp_path: Path, name: str, variant: str, proto: str
) -> None:
    outcome, error, decisions, err = _run(tmp_path, name, variant, DEFAULT_POLICY.read_text())
    assert outcome is not None and not error and not outcome.problems, (error, outcome, err)
    logged = [d for d in decisions if d["class"] == "vpn"]
    assert logged, (decisions, err)
    d = logged[0]
    assert (d["action"], d["family"], d["rule"]) == ("log", name, "findings-log"), d
    assert d["flow_key"].startswith(proto), d
