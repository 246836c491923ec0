"""End to end: HTTP/3 (QUIC v1) through the gateway, blocked by the SNI of the client's Initial.

caddy (quic-go) serves two names in the server namespace; the client is aioquic
(:mod:`sluice.lab.h3client`). The register lists one of the names. Root only; skipped without
caddy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.decisions import read_decisions
from sluice.lab.pki import LabCA
from tests.gateway.conftest import PY, SRV_IP, Topo, sh
from tests.gateway.helpers import make_register, start_gateway, stop_gateway

BLOCKED, ALLOWED = "blocked.example", "fine.example"
POLICY = '[[rule]]\nname = "register-block"\naction = "block"\nregister = true\n'


def _wait_udp(topo: Topo, port: int) -> None:
    for _ in range(200):
        if sh(*topo.ex(topo.srv, "ss", "-Hlun", f"sport = :{port}"), check=False).stdout.strip():
            return
        subprocess.run(["sleep", "0.05"], check=False)
    raise AssertionError(f"nothing listens on udp/{port}")


@pytest.fixture
def h3_server(topo: Topo, tmp_path: Path) -> Iterator[Topo]:
    if shutil.which("caddy") is None:
        pytest.skip("caddy not installed (scripts/lab-packages.txt)")
    ca = LabCA(tmp_path / "pki")
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<p>hello over HTTP/3</p>\n")
    sites = ""
    for name in (BLOCKED, ALLOWED):
        cert = ca.issue(name)
        sites += f"https://{name}:443 {{\n  bind {SRV_IP}\n  tls {cert.cert} {cert.key}\n  root * {www}\n"
        sites += "  file_server\n}\n"
    home = tmp_path / "caddy-home"
    home.mkdir()
    conf = tmp_path / "Caddyfile"
    conf.write_text(
        "{\n  admin off\n  auto_https off\n  storage file_system " + str(home) + "\n"
        "  servers {\n    protocols h1 h2 h3\n  }\n}\n" + sites
    )
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "PATH": "/usr/bin:/bin",
    }
    envs = [f"{k}={v}" for k, v in env.items()]
    p = subprocess.Popen(
        topo.ex(topo.srv, "env", *envs, "caddy", "run", "--config", str(conf), "--adapter", "caddyfile"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_udp(topo, 443)
        yield topo
    finally:
        p.kill()
        p.wait(5)


def _h3(topo: Topo, name: str) -> subprocess.CompletedProcess[str]:
    argv = [PY, "-m", "sluice.lab.h3client", f"https://{name}", "index.html", "--connect", SRV_IP]
    argv += ["--timeout", "3", "--idle-timeout", "3"]
    return subprocess.run(topo.ex(topo.cli, *argv), capture_output=True, text=True, timeout=30, check=False)


def test_quic_to_a_registered_name_is_blocked(h3_server: Topo, tmp_path: Path) -> None:
    db = make_register(tmp_path, [(f"{BLOCKED}\n", "domains", "test-list")])
    (tmp_path / "policy.toml").write_text(POLICY)
    log = tmp_path / "log"
    args = ["--queue", "4", "--policy", str(tmp_path / "policy.toml"), "--register", str(db)]
    gw = start_gateway(h3_server, [*args, "--log", str(log), "--queue-bypass"])
    try:
        ok = _h3(h3_server, ALLOWED)
        blocked = _h3(h3_server, BLOCKED)
        again = _h3(h3_server, ALLOWED)
    finally:
        err = stop_gateway(gw)
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[0])["status"] == 200, (ok.stderr, err)
    assert again.returncode == 0, again.stderr
    assert blocked.returncode != 0 and not blocked.stdout.strip(), blocked.stdout
    decs = {(d.server_name, d.app, d.action.value) for d in read_decisions(log)}
    assert (BLOCKED, "quic", "block") in decs and (ALLOWED, "quic", "allow") in decs, decs
