"""Benign HTTPS from other client stacks, for real (root): labels carry class, family, stack and server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.batch.flows import batch_flows
from sluice.cli.lab import lab
from sluice.lab import load_labels
from sluice.lab.registry import all_scenarios
from sluice.lab.scenarios.servers import SERVER_IMPLS
from sluice.lab.webclients import split_responses

pytestmark = pytest.mark.root

# variant -> stack it must report
CLI_AND_LIBS = {
    "clients:wget": "wget-gnutls",
    "clients:openssl-s_client": "openssl-s_client",
    "client-libs:httpx-h2": "python-httpx",
    "client-libs:node": "node-openssl",
}
BROWSERS = {"browsers:chromium-h2": "chromium", "browsers:firefox-h3": "firefox"}


def test_split_pipelined_responses() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\ntail"
    )
    assert split_responses(data) == [(200, b"abc"), (404, b""), (200, b"hello"), (200, b"tail")]


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces); run the tests as root")
    for prog in ("ip", "tcpdump", "curl"):
        probe = ["sh", "-c", f"command -v {prog} || test -x /usr/sbin/{prog}"]
        if subprocess.run(probe, capture_output=True, check=False).returncode:
            pytest.skip(f"{prog} not installed (sluice lab install)")


def _run(selection: dict[str, str], tmp_path: Path, sets: tuple[str, ...] = ()) -> list[dict[str, str]]:
    _need_root()
    scenarios = all_scenarios()
    for name in {sel.split(":")[0] for sel in selection}:
        missing = scenarios[name].missing()
        if missing:
            pytest.skip(f"{name}: not installed: {', '.join(missing)} (sluice lab install; pip .[lab])")
    opts = ["-n", "1", "--seed", "11", "--out", str(tmp_path), "--duration", "1.5", "--jobs", "2"]
    pins = [arg for kv in sets for arg in ("--set", kv)]
    r = CliRunner().invoke(lab, ["run", *selection, *opts, *pins, "--json"])
    reports = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert r.exit_code == 0, r.output
    assert [rep["status"] for rep in reports] == ["ok"] * len(selection), reports
    for rep, (sel, stack) in zip(reports, selection.items(), strict=True):
        doc = json.loads(Path(rep["labels"]).read_text())
        assert f"{doc['scenario']}:{doc['variant']}" == sel
        assert (doc["class"], doc["family"]) == ("benign", "tls")
        assert doc["params"]["stack"] == stack
        assert doc["params"]["impl"] in SERVER_IMPLS
        ver = doc["verified"]
        assert ver["ok"] and ver["carrier_bytes"] >= ver["payload_bytes"] > 0
        labels = load_labels(Path(rep["labels"]))
        assert labels and {lb.traffic_class for lb in labels} == {"benign"}
        assert {lb.family for lb in labels} <= {"tls", "quic"}
        assert not doc["unlabeled"], doc["unlabeled"]
    return reports


def test_client_stacks(tmp_path: Path) -> None:
    _run(CLI_AND_LIBS, tmp_path)


def test_a_browser_handshake_asking_for_http1_only(tmp_path: Path) -> None:
    """curl-cffi's Chrome with HTTP/2 off: the stack is Chrome's, every ClientHello offers
    http/1.1 alone (as Chromium's with --disable-http2), whatever the server offers."""
    [rep] = _run({"client-libs:curl-cffi-h1": "curl-cffi-chrome"}, tmp_path, ("browser=chrome",))
    doc = json.loads(Path(rep["labels"]).read_text())
    tls = [r for r in batch_flows(str(Path(rep["labels"]).parent / doc["capture"])).records if r.meta.alpn]
    assert tls and {r.meta.alpn for r in tls} == {("http/1.1",)}


@pytest.mark.slow
def test_browsers(tmp_path: Path) -> None:
    _run(BROWSERS, tmp_path)
