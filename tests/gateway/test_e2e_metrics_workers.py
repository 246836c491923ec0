"""The metrics endpoint of a gateway with two workers (root only): the parent adds up what each
worker sends over its pipe, and the sums agree with the decisions the workers logged."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.decisions import read_decisions
from tests.gateway import test_e2e_workers as W
from tests.gateway.conftest import Topo, need_gateway_env, sh
from tests.gateway.helpers import SERVER, https_server, make_cert, make_register, start_gateway, stop_gateway
from tests.gateway.test_e2e_metrics import _fetch, _samples

pytest.importorskip("prometheus_client", reason="pip install 'sluice[gateway]'")

PORT = 9108
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_gateway_env()
    d = tmp_path_factory.mktemp("gwmw")
    cert, key = make_cert(d)
    (d / "server.py").write_text(SERVER)
    db = make_register(d, [(f"{W.BLOCKED}\n", "domains", "test-list")])
    return {"dir": d, "cert": cert, "key": key, "server": d / "server.py", "db": db}


@pytest.fixture
def server(topo: Topo, material: dict[str, Path]) -> Iterator[Topo]:
    for ip in W.SERVER_IPS:
        sh(*topo.ex(topo.srv, "ip", "addr", "add", f"{ip}/24", "dev", "s0"))
    with https_server(topo, material["server"], material["cert"], material["key"]):
        yield topo


def _decided(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for (name, labels), v in m.items():
        if name == "sluice_gateway_decisions_total":
            action = dict(labels)["action"]
            out[action] = out.get(action, 0) + v
    return out


def test_two_workers_metrics_add_up(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    pol = tmp_path / "enforce.toml"
    pol.write_text(W.POLICY.format(mode="enforce"))
    log = tmp_path / "log"
    args = [
        "--queue",
        str(W.QUEUE),
        "--workers",
        "2",
        "--policy",
        str(pol),
        "--register",
        str(material["db"]),
    ]
    args += ["--log", str(log), "--no-detect", "--fsync", "never", "--metrics", str(PORT)]
    gw = start_gateway(server, args)
    try:
        status, body = _fetch(server, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["ready"] and health["workers"] == 2, health
        assert health["register_entries"] == 1 and health["register_version"] >= 1
        ok = W._curl_all(server, W.ALLOWED)
        blocked = W._curl_all(server, W.BLOCKED, limit=3)
        assert ok == ["200"] * len(W.SERVER_IPS) and blocked == ["000"] * len(W.SERVER_IPS)
        want = {"allow": len(W.SERVER_IPS), "block": len(W.SERVER_IPS)}
        end = time.monotonic() + DEADLINE_S  # each worker sends its counters every second
        while True:
            status, text = _fetch(server, "/metrics")
            m = _samples(text)
            if _decided(m) == want or time.monotonic() > end:
                break
            time.sleep(0.5)
    finally:
        err = stop_gateway(gw)
    assert status == 200 and _decided(m) == want, (text, err)
    decs = list(read_decisions(log))
    assert len(decs) == 2 * len(W.SERVER_IPS)
    assert {d.capture for d in decs} == {f"nfqueue:{W.QUEUE}", f"nfqueue:{W.QUEUE + 1}"}  # both decided
    assert m[("sluice_gateway_decision_latency_seconds_count", ())] == len(decs)
    assert m[("sluice_register_entries", (("kind", "domain"), ("proposed", "false")))] == 1
    assert m[("sluice_gateway_ready", ())] == 1
    final = W._stats(err)["stats"]
    assert isinstance(final, dict) and final["decisions"] == len(decs)
    assert m[("sluice_gateway_packets_total", ())] <= final["packets"]
    assert (
        "sluice_nfqueue_dropped_packets_total",
        (("queue", str(W.QUEUE + 1)), ("reason", "queue_full")),
    ) in m
