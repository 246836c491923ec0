"""The gateway's metrics (no root): counters from real packets, parsed by prometheus_client's parser."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sluice.errors import ConfigError
from sluice.gateway.engine import GatewayEngine
from sluice.gateway.metrics import (
    LATENCY_BUCKETS_S,
    GatewayMonitor,
    MetricsServer,
    parse_address,
    read_nfqueue,
)
from sluice.gateway.reload import Reloader
from sluice.gateway.rules import RuleSet
from sluice.policy import load_policy
from sluice.registry import Matcher
from tests.gateway.test_engine import POLICY, _matcher, _tls_packets
from tests.gateway.test_reload import _wait

prometheus_client = pytest.importorskip("prometheus_client", reason="pip install 'sluice[gateway]'")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text -> {(sample name, sorted labels): value}, through prometheus_client's parser."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """An engine that decided three connections, its reloader, and the endpoint on a free port."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    engine = GatewayEngine(load_policy(policy), _matcher(), None, decide_after=10, capture="t")
    for n, sni in enumerate(("blocked.example", "fine.example", "other.example")):
        for p in _tls_packets(sni, port=50000 + n):
            engine.handle(p)
    reloader = Reloader(lambda: load_policy(policy), report=lambda _m: None)
    monitor = GatewayMonitor(RuleSet(7), ipv6=False, register_configured=True)
    monitor.note_register(engine.register or _matcher(), 41)
    server = MetricsServer(monitor, "127.0.0.1", 0)
    server.start()
    reloader.start()
    try:
        yield engine, reloader, monitor, server, policy
    finally:
        reloader.stop()
        server.stop()


def test_counters_of_real_decisions_in_the_exposition(served: Any) -> None:
    engine, reloader, monitor, server, _ = served
    host, port = server.address
    status, body = _get(f"http://{host}:{port}/healthz")
    assert status == 503 and json.loads(body)["ready"] is False  # nothing attached yet
    monitor.engine, monitor.reloader, monitor.ready = engine, reloader, True
    status, text = _get(f"http://{host}:{port}/metrics")
    assert status == 200
    m = parse(text)
    decided = {
        (lab["action"], lab["mode"], lab["class"]): v
        for (name, labels), v in m.items()
        if name == "sluice_gateway_decisions_total"
        for lab in [dict(labels)]
    }
    assert decided == {("block", "enforce", ""): 1.0, ("allow", "enforce", ""): 2.0}
    assert sum(decided.values()) == engine.stats.decisions == 3
    assert m[("sluice_gateway_decision_latency_seconds_count", ())] == 3
    assert m[("sluice_gateway_decision_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    buckets = [
        m[("sluice_gateway_decision_latency_seconds_bucket", (("le", repr(b)),))] for b in LATENCY_BUCKETS_S
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert 0 < m[("sluice_gateway_decision_latency_seconds_sum", ())] < 60
    assert m[("sluice_gateway_packets_total", ())] == engine.stats.packets > 0
    assert m[("sluice_register_entries", (("kind", "domain"), ("proposed", "false")))] == 1
    assert m[("sluice_register_entries", (("kind", "ip"), ("proposed", "false")))] == 1
    assert m[("sluice_register_entries", (("kind", "url"), ("proposed", "false")))] == 0
    assert m[("sluice_register_version", ())] == 41
    assert m[("sluice_gateway_ready", ())] == 1
    assert m[("sluice_gateway_reloads_total", (("result", "ok"),))] == 0
    status, body = _get(f"http://{host}:{port}/healthz")
    health = json.loads(body)
    assert status == 200 and health["ok"] and health["register_entries"] == 2, health
    assert health["register_version"] == 41 and health["mode"] == "fail-closed"
    assert _get(f"http://{host}:{port}/other")[0] == 404


def test_reload_failure_is_counted_and_unhealthy_until_a_good_one(served: Any) -> None:
    engine, reloader, monitor, server, policy = served
    monitor.engine, monitor.reloader, monitor.ready = engine, reloader, True
    host, port = server.address
    policy.write_text('[[rule]]\nname = "bad"\naction = "explode"\n')
    reloader.request()
    _wait(lambda: reloader.refused == 1)
    status, body = _get(f"http://{host}:{port}/healthz")
    health = json.loads(body)
    assert status == 503 and health["last_reload_ok"] is False and health["last_reload_error"], health
    m = parse(_get(f"http://{host}:{port}/metrics")[1])
    assert m[("sluice_gateway_reloads_total", (("result", "refused"),))] == 1
    policy.write_text(POLICY)
    reloader.request()
    _wait(lambda: reloader.loads == 1)
    assert reloader.apply(engine)
    m = parse(_get(f"http://{host}:{port}/metrics")[1])
    assert m[("sluice_gateway_reloads_total", (("result", "ok"),))] == 1
    status, body = _get(f"http://{host}:{port}/healthz")
    assert status == 200 and json.loads(body)["last_reload_ok"] is True


def test_a_bare_matcher_and_no_register() -> None:
    monitor = GatewayMonitor(RuleSet(1), register_configured=False)
    monitor.engine = GatewayEngine(load_policy_text(POLICY), Matcher([("s", "subnet", "10.0.0.0/8", "[]")]))
    monitor.ready = True
    assert monitor.health()["ok"] is True
    monitor.engine = GatewayEngine(load_policy_text(POLICY), None)
    assert monitor.health()["register_entries"] is None and monitor.health()["register_loaded"] is True
    monitor.register_configured = True
    assert monitor.health()["ok"] is False


def load_policy_text(text: str) -> Any:
    from sluice.policy import parse_policy

    return parse_policy(text, "<test>")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9108", ("127.0.0.1", 9108)),
        ("0.0.0.0:9108", ("0.0.0.0", 9108)),
        ("[::1]:9108", ("::1", 9108)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "::1:9108", "host:", "host:http", ":9108", "1.2.3.4:70000", "[::1]"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="metrics"):
        parse_address(text)


def test_read_nfqueue_format(tmp_path: Path) -> None:
    # the kernel's format (net/netfilter/nfnetlink_queue.c, seq_show): queue, portid, queued,
    # copy mode, copy range, queue_dropped, user_dropped, id sequence, 1
    f = tmp_path / "nfnetlink_queue"
    f.write_text("    3  12345     2 2 65531     7     1       40  1\n")
    assert list(read_nfqueue(str(f))) == [3]
    c = read_nfqueue(str(f))[3]
    assert (c.queue, c.queued, c.dropped, c.user_dropped) == (3, 2, 7, 1)
    assert read_nfqueue(str(tmp_path / "absent")) == {}


def test_cli_refuses_a_bad_metrics_address(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sluice.cli.main import cli

    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    res = CliRunner().invoke(cli, ["gateway", "run", "--policy", str(policy), "--metrics", "::1:9108"])
    assert res.exit_code == 2 and "--metrics" in res.output and "[V6]:PORT" in res.output, res.output
