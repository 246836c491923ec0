"""Other implementations of the circumvention protocols, for real, with HTTPS inside the carrier (root)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner

from sluice.cli.lab import lab
from sluice.lab.registry import all_scenarios
from sluice.lab.scenario import Session
from sluice.lab.scenarios.impls import _ends, _impl
from sluice.lab.topology import active_topologies

T = TypeVar("T")

# scenario:variant -> params impl; one session each, inner HTTPS (TLS in the carrier's TLS)
CASES = {
    "shadowsocks-alt:v2ray": "v2ray",
    "shadowsocks-alt:pproxy": "pproxy",
    "trojan-alt:v2ray": "v2ray",
    "trojan-alt:pproxy": "pproxy",
    "tls-relay:socat": "socat",
    "tls-relay:haproxy": "haproxy",
    "socks-pproxy:auth": "pproxy",
    "http-proxy-pproxy:connect": "pproxy",
}


def test_variant_names_give_client_and_server_impl() -> None:
    assert _ends("v2ray") == ("v2ray", "v2ray")
    assert _ends("pproxy-gfw") == ("pproxy", "gfw")
    assert _impl("pproxy", "gfw") == "pproxy+trojan-gfw"
    assert _impl("libev", "libev") == "shadowsocks-libev"
    scen = all_scenarios()
    for name in ("shadowsocks-alt", "trojan-alt", "tls-relay"):
        assert all(len(v.split("-")) <= 2 for v in scen[name].variants)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces); run the tests as root")
    for prog in ("ip", "tcpdump", "curl"):
        r = subprocess.run(
            ["sh", "-c", f"command -v {prog} || test -x /usr/sbin/{prog}"], capture_output=True, check=False
        )
        if r.returncode != 0:
            pytest.skip(f"{prog} not installed (sluice lab install)")


@pytest.mark.root
def test_other_implementations_carry_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_root()
    scen = all_scenarios()
    missing = sorted({m for case in CASES for m in scen[case.split(":")[0]].missing()})
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (sluice lab install; pip install -e '.[lab]')")
    choose = Session.choose
    # half the sessions fetch with curl, half with curl-cffi impersonating a browser
    clients = itertools.cycle(("curl", "curl-cffi"))
    lock = threading.Lock()

    def https_inside(self: Session, key: str, options: Sequence[T]) -> T:
        if key in ("inner", "inner_client"):
            with lock:
                want = "https" if key == "inner" else next(clients)
            (pick,) = (o for o in options if o == want)
            self.params[key] = want
            return pick
        return choose(self, key, options)

    monkeypatch.setattr(Session, "choose", https_inside)
    r = CliRunner().invoke(
        lab,
        ["run", *CASES, "-n", "1", "-s", "11", "-o", str(tmp_path), "--duration", "1.5", "-j", "2", "--json"],
    )
    reports = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert r.exit_code == 0, r.output
    assert len(reports) == len(CASES)
    assert not active_topologies()
    seen_clients: set[str] = set()
    for rep in reports:
        case = f"{rep['scenario']}:{rep['variant']}"
        assert rep["status"] == "ok", rep
        doc = json.loads(Path(rep["labels"]).read_text())
        sc = scen[rep["scenario"]]
        assert doc["family"] == sc.family
        assert {f["family"] for f in doc["flows"]} == {sc.family}
        params = doc["params"]
        assert params["impl"] == CASES[case], case
        assert params["inner"] == "https" and params["inner_name"], case
        inner_client = params.get("inner_client", "curl")
        seen_clients.add(inner_client)
        if inner_client == "curl":
            assert params["stack"].startswith("curl-openssl"), case
        else:
            assert params["stack"].startswith(f"curl-cffi-{params['inner_browser']}"), case
            assert params["impersonate"].startswith(params["inner_browser"]), case
        checks = doc["verified"]["checks"]
        assert checks["transfers_ok"] >= 1 and checks["server_requests_via_carrier"] >= checks["transfers_ok"]
        assert doc["verified"]["carrier_bytes"] >= checks["payload_bytes"] > 0
    # the sessions took curl and curl-cffi in turn (the HTTP proxy, CONNECT to a name, keeps curl)
    assert seen_clients == {"curl", "curl-cffi"}, seen_clients
