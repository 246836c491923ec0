"""The benign long-tail scenarios once each for real (root): WebSocket, uploads, mail, streaming, WebRTC."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.lab import lab
from sluice.lab import load_labels
from sluice.lab.registry import all_scenarios
from sluice.lab.topology import active_topologies

pytestmark = pytest.mark.root

# scenario:variant -> (stack, impl) the session must record
CASES = {
    "websocket:wss-nginx": ("python-websockets", "nginx"),
    "websocket:wss-nginx-aiohttp": ("python-aiohttp", "nginx"),
    "bulk-transfer:put-python": ("curl-openssl", "python-http.server"),
    "smtp-submission:starttls-swaks": ("swaks-openssl", "aiosmtpd"),
    "imap:imaps-imaplib": ("python-imaplib", "dovecot"),
    "streaming:hls-nginx": ("curl-openssl", "nginx"),
    "webrtc-media:audio": ("python-rtp", "python-rtp"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_longtail_scenario(case: str, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces); run the tests as root")
    for prog in ("ip", "tcpdump", "curl"):
        if shutil.which(prog, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.skip(f"{prog} not installed (sluice lab install)")
    name = case.split(":")[0]
    sc = all_scenarios()[name]
    missing = sc.missing()
    if missing:
        pytest.skip(f"{name}: not installed: {', '.join(missing)} (sluice lab install)")
    pytest.importorskip("websockets", reason="the lab extra is not installed (pip install -e .[lab])")
    pytest.importorskip("aiosmtpd", reason="the lab extra is not installed (pip install -e .[lab])")
    args = ["run", case, "-n", "1", "-s", "11", "-o", str(tmp_path), "--duration", "1.5", "--json"]
    r = CliRunner().invoke(lab, args)
    reports = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert r.exit_code == 0, r.output
    assert [rep["status"] for rep in reports] == ["ok"], reports
    assert not active_topologies()
    doc = json.loads(Path(reports[0]["labels"]).read_text())
    assert doc["verified"]["ok"] is True and doc["verified"]["tcpdump_dropped"] == 0
    assert (doc["params"]["stack"], doc["params"]["impl"]) == CASES[case]
    assert doc["class"] == "benign" and doc["family"] == sc.family
    labels = load_labels(Path(reports[0]["labels"]))
    assert labels and all(lb.traffic_class == "benign" for lb in labels)
    assert sc.family in {lb.family for lb in labels}
