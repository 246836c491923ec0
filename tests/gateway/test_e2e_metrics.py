"""The metrics endpoint of a real gateway (NFQUEUE in namespaces, root only), scraped over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.registry import import_files, open_store
from tests.gateway.conftest import PY, Topo, need_gateway_env, sh
from tests.gateway.helpers import SERVER, https_server, make_cert, start_gateway, stop_gateway
from tests.gateway.test_e2e import ALLOWED, BLOCK_WAIT, BLOCKED, BLOCKED_IP, POLICY, _curl

pytest.importorskip("prometheus_client", reason="pip install 'sluice[gateway]'")
from prometheus_client.parser import text_string_to_metric_families

PORT = 9108
FETCH = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
sys.stdout.write(f"{status}\\n{body.decode()}")
"""


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_gateway_env()
    d = tmp_path_factory.mktemp("gwm")
    cert, key = make_cert(d)
    (d / "server.py").write_text(SERVER)
    (d / "enforce.toml").write_text(POLICY.format(mode="enforce"))
    db = d / "register.sqlite"
    store = open_store(db, create=True)
    try:
        for name, text, fmt in (("names", f"{BLOCKED}\n", "domains"), ("ips", f"{BLOCKED_IP}\n", "cidrs")):
            (d / name).write_text(text)
            import_files(store, [d / name], fmt, source=f"test-{name}")
    finally:
        store.close()
    return {"dir": d, "cert": cert, "key": key, "server": d / "server.py", "db": db}


@pytest.fixture
def server(topo: Topo, material: dict[str, Path]) -> Iterator[Topo]:
    with https_server(topo, material["server"], material["cert"], material["key"]):
        yield topo


def _fetch(topo: Topo, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/path from inside the gateway's namespace."""
    out = sh(*topo.ex(topo.gw, PY, "-c", FETCH, f"http://127.0.0.1:{PORT}{path}"), timeout=60).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_a_running_gateway(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    args = [
        "--queue",
        "3",
        "--policy",
        str(material["dir"] / "enforce.toml"),
        "--register",
        str(material["db"]),
    ]
    args += ["--log", str(tmp_path / "log"), "--metrics", str(PORT)]
    lines: list[str] = []
    gw = start_gateway(server, args, lines=lines)
    try:
        assert any(f"metrics on http://127.0.0.1:{PORT}/metrics" in line for line in lines), lines
        status, body = _fetch(server, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["ok"] and health["ready"], health
        assert (
            health["register_loaded"] and health["register_entries"] == 2 and health["mode"] == "fail-closed"
        )
        assert _curl(server, ALLOWED) == "200"
        assert _curl(server, BLOCKED, BLOCK_WAIT) == "000"
        status, text = _fetch(server, "/metrics")
        assert status == 200
    finally:
        err = stop_gateway(gw)
    m = _samples(text)
    blocks = m.get(
        ("sluice_gateway_decisions_total", (("action", "block"), ("class", ""), ("mode", "enforce")))
    )
    allows = sum(
        v
        for (name, labels), v in m.items()
        if name == "sluice_gateway_decisions_total" and ("action", "allow") in labels
    )
    assert blocks is not None and blocks >= 1 and allows >= 1, (text, err)
    final = json.loads(err.strip().splitlines()[-1])["stats"]
    decisions = sum(v for (name, _), v in m.items() if name == "sluice_gateway_decisions_total")
    assert decisions <= final["decisions"]  # scraped before the gateway stopped
    assert m[("sluice_gateway_decision_latency_seconds_count", ())] == decisions
    assert m[("sluice_gateway_packets_total", ())] > 0
    assert m[("sluice_register_entries", (("kind", "domain"), ("proposed", "false")))] == 1
    assert m[("sluice_register_entries", (("kind", "ip"), ("proposed", "false")))] == 1
    assert m[("sluice_register_version", ())] >= 1  # the newest import id
    assert m[("sluice_gateway_ready", ())] == 1
    # the kernel's counters of queue 3, read in the gateway's namespace
    assert ("sluice_nfqueue_dropped_packets_total", (("queue", "3"), ("reason", "queue_full"))) in m
    assert m[("sluice_nfqueue_rule_packets_total", ())] >= m[("sluice_gateway_packets_total", ())]
    assert ("sluice_gateway_unserved_packets_total", (("mode", "fail-closed"),)) in m


def test_metrics_port_in_use_is_refused_before_the_rules(server: Topo, material: dict[str, Path]) -> None:
    blocker = subprocess.Popen(
        server.ex(
            server.gw,
            PY,
            "-c",
            f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{PORT}));"
            " s.listen(); print('bound', flush=True); time.sleep(120)",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert blocker.stdout is not None and blocker.stdout.readline().strip() == "bound"
        cmd = [
            PY,
            "-m",
            "sluice.cli.gateway",
            "run",
            "--queue",
            "3",
            "--policy",
            str(material["dir"] / "enforce.toml"),
        ]
        res = sh(*server.ex(server.gw, *cmd, "--metrics", str(PORT)), check=False, timeout=120)
        assert res.returncode == 3 and "cannot serve metrics" in res.stderr, res.stderr
        rules = sh(*server.ex(server.gw, "iptables-save"), check=False).stdout
        assert "SLUICE" not in rules  # refused before anything was installed
    finally:
        blocker.kill()
        blocker.communicate(timeout=10)


def test_ready_is_told_to_systemd(
    server: Topo, material: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Type=notify: READY=1 arrives on $NOTIFY_SOCKET once the queue is bound (not before)."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(60)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        lines: list[str] = []
        gw = start_gateway(
            server, ["--queue", "3", "--policy", str(material["dir"] / "enforce.toml")], lines=lines
        )
        try:
            assert s.recv(100) == b"READY=1"
            assert "ready on queue 3" in lines[-1]
            assert _curl(server, ALLOWED) == "200"
        finally:
            stop_gateway(gw)
