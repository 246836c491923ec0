"""``--format eve`` against a schema written from Suricata's EVE documentation and an EVE consumer.

The schema below follows Suricata's "Eve JSON Format" documentation (common section; event types
flow, tls, dns, http, alert, drop). The consumer is ``suricatalog`` (PyPI): its ``EveLogHandler``
reads the file and its filters parse ``timestamp`` and select alerts as they do on Suricata's
own ``eve.json``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sluice.batch.flows import batch_flows
from sluice.cli.main import cli
from sluice.decisions.eve import decision_events
from sluice.flows.table import FlowConfig
from sluice.io.community_id import community_id
from sluice.io.eve import eve_flow_id, eve_timestamp, flow_events
from sluice.policy.model import Action, Decision, Mode

MIX = Path(__file__).parents[1] / "data" / "pcaps" / "mix40.pcap.gz"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d{4}")
EVENT_TYPES = {"flow", "tls", "dns", "http", "alert", "drop"}
SUB_OBJECT: dict[str, dict[str, tuple[type, bool]]] = {  # key -> (type, required) per event type
    "flow": {"pkts_toserver": (int, True), "pkts_toclient": (int, True), "bytes_toserver": (int, True),
             "bytes_toclient": (int, True), "start": (str, True), "end": (str, True), "age": (int, True),
             "state": (str, True), "reason": (str, True), "alerted": (bool, True)},
    "tls": {"sni": (str, False), "version": (str, False), "ja4": (str, False), "subject": (str, False),
            "issuerdn": (str, False), "client_alpns": (list, False), "cipher_suite": (str, False)},
    "dns": {"type": (str, True), "rrname": (str, True), "rrtype": (str, False), "rcode": (str, False),
            "answers": (list, False)},
    "http": {"hostname": (str, False), "url": (str, False), "http_method": (str, False),
             "http_user_agent": (str, False), "status": (int, False), "server": (str, False)},
    "alert": {"action": (str, True), "gid": (int, True), "signature_id": (int, True), "rev": (int, True),
              "signature": (str, True), "category": (str, True), "severity": (int, True),
              "metadata": (dict, False)},
    "drop": {"reason": (str, False)},
}  # fmt: skip


def check_eve(ev: dict[str, Any]) -> None:
    """Assert that one event follows the documented EVE layout."""
    assert TS.fullmatch(ev["timestamp"]), ev["timestamp"]
    assert isinstance(ev["flow_id"], int) and 0 < ev["flow_id"] < 2**53
    kind = ev["event_type"]
    assert kind in EVENT_TYPES
    ipaddress.ip_address(ev["src_ip"])
    ipaddress.ip_address(ev["dest_ip"])
    assert ev["proto"] in ("TCP", "UDP", "ICMP", "IPv6-ICMP", "SCTP") or ev["proto"].isdigit()
    if ev["proto"] in ("TCP", "UDP"):
        assert 0 <= ev["src_port"] <= 65535 and 0 <= ev["dest_port"] <= 65535
    if "community_id" in ev:
        assert re.fullmatch(r"1:[A-Za-z0-9+/]{27}=", ev["community_id"])
    sub = ev[kind]
    layout: dict[str, tuple[type, bool]] = SUB_OBJECT[kind]
    for key, (typ, required) in layout.items():
        if required:
            assert key in sub, (kind, key)
        if key in sub:
            assert isinstance(sub[key], typ), (kind, key, sub[key])
            assert sub[key] not in ("", None, -1), (kind, key)
    assert not set(sub) - set(layout), set(sub) - set(layout)
    if kind == "flow":
        assert TS.fullmatch(sub["start"]) and TS.fullmatch(sub["end"])
        assert sub["state"] in ("new", "established", "closed")
        assert sub["reason"] in ("timeout", "forced", "shutdown", "unknown")
    if kind == "alert":
        assert sub["action"] in ("allowed", "blocked") and 1 <= sub["severity"] <= 3
        assert all(isinstance(v, list) for v in sub["metadata"].values())


def test_timestamp_is_suricatas_format() -> None:
    assert eve_timestamp(1581109434.25819) == "2020-02-07T21:03:54.258190+0000"


@pytest.fixture(scope="module")
def mix_events() -> list[dict[str, Any]]:
    res = batch_flows(str(MIX), FlowConfig())
    return [ev for r in res.records for ev in flow_events(r, MIX.name)]


def test_flow_events_follow_the_schema(mix_events: list[dict[str, Any]]) -> None:
    kinds = {ev["event_type"] for ev in mix_events}
    assert {"flow", "tls", "dns", "http"} <= kinds
    for ev in mix_events:
        check_eve(ev)
    flows = [ev for ev in mix_events if ev["event_type"] == "flow"]
    assert len(flows) == 40
    tls = [ev["tls"] for ev in mix_events if ev["event_type"] == "tls"]
    assert any(t.get("version", "").startswith("TLS 1.") for t in tls)
    assert all(re.fullmatch(r"[tq]\d\d[di]\d{4}\w\w_[0-9a-f]{12}_[0-9a-f]{12}", t["ja4"]) for t in tls)


def test_events_of_one_flow_share_flow_id_and_community_id(mix_events: list[dict[str, Any]]) -> None:
    by_id: dict[int, set[str]] = {}
    for ev in mix_events:
        by_id.setdefault(ev["flow_id"], set()).add(ev["community_id"])
    assert len(by_id) == 40 and all(len(ids) == 1 for ids in by_id.values())
    ev = next(e for e in mix_events if e["event_type"] == "flow")
    proto = {"TCP": 6, "UDP": 17}[ev["proto"]]
    # both directions give the same Community ID, whichever end sluice calls the client
    assert ev["community_id"] == community_id(
        proto, ev["dest_ip"], ev["src_ip"], ev["dest_port"], ev["src_port"]
    )


def _decision(action: Action, enforced: bool, capture: str = "x.pcap") -> Decision:
    return Decision(
        time=1_700_000_000.5, flow_id=3, flow_key="tcp [2001:db8::1]:5000 > [2001:db8::2]:443",
        server_name="vpn.example", app="tls", rule="block-vpn", rule_index=0, action=action,
        mode=Mode.ENFORCE if enforced else Mode.SHADOW, enforced=enforced, verdict_class="vpn",
        family="wireguard", evidence=("wg.handshake: size=148",), capture=capture,
    )  # fmt: skip


def test_decision_events() -> None:
    alert, drop = decision_events(_decision(Action.BLOCK, True))
    check_eve(alert)
    check_eve(drop)
    assert alert["alert"]["action"] == "blocked" and alert["alert"]["severity"] == 1
    assert alert["src_ip"] == "2001:db8::1" and alert["dest_port"] == 443
    assert alert["flow_id"] == eve_flow_id("x.pcap", 3) == drop["flow_id"]
    assert alert["community_id"] == community_id(6, "2001:db8::1", "2001:db8::2", 5000, 443)
    (shadow,) = decision_events(_decision(Action.BLOCK, False))
    assert shadow["alert"]["action"] == "allowed" and shadow["alert"]["metadata"]["mode"] == ["shadow"]


def test_suricatalog_reads_the_output(tmp_path: Path, mix_events: list[dict[str, Any]]) -> None:
    """suricatalog's reader and filters take sluice's EVE as they take Suricata's."""
    log_mod = pytest.importorskip("suricatalog.log", reason="suricatalog (an EVE consumer) not installed")
    filt = pytest.importorskip("suricatalog.filter")
    parse_timestamp = pytest.importorskip("suricatalog.time").parse_timestamp

    eve = tmp_path / "eve.json"
    events = [*mix_events, *decision_events(_decision(Action.BLOCK, True))]
    eve.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    handler = log_mod.EveLogHandler()
    everything = list(handler.get_events(eve_files=[eve], data_filter=filt.AlwaysTrueFilter()))
    assert everything == events
    alerts_filter = filt.OnlyAlertsFilter()
    alerts_filter.timestamp = datetime(2000, 1, 1, tzinfo=UTC)
    alerts = list(handler.get_events(eve_files=[eve], data_filter=alerts_filter))
    assert [a["alert"]["signature"] for a in alerts] == ["SLUICE policy block-vpn: block vpn/wireguard"]
    for e in events:
        assert parse_timestamp(e["timestamp"]).year in (2023, *range(2000, 2030))


def test_cli_flows_eve_matches_the_writer(mix_events: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(cli, ["flows", str(MIX), "--format", "eve"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines == mix_events
