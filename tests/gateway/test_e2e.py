"""End to end in namespaces: curl -> gateway (sluice on NFQUEUE) -> Python HTTPS server (root only)."""

from __future__ import annotations

import datetime as dt
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sluice.decisions import read_decisions
from sluice.registry import import_files, open_store
from tests.gateway.conftest import PY, SRV_IP, Topo, need_gateway_env, sh, wait_port

BLOCKED, ALLOWED = "blocked.example", "fine.example"
BLOCKED_IP = "10.231.2.3"

SERVER = """
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def finish_request(self, request, client_address):  # TLS handshake in the thread, not in accept
        request.settimeout(5)
        super().finish_request(ctx.wrap_socket(request, server_side=True), client_address)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
S(("0.0.0.0", 443), H).serve_forever()
"""

POLICY = """
[[rule]]
name = "register-block"
action = "block"
mode = "{mode}"
register = true
"""


def _cert(d: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    c, k = d / "cert.pem", d / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return c, k


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_gateway_env()
    d = tmp_path_factory.mktemp("gw")
    cert, key = _cert(d)
    (d / "server.py").write_text(SERVER)
    (d / "list.txt").write_text(f"{BLOCKED}\n")
    (d / "ips.txt").write_text(f"{BLOCKED_IP}\n")
    db = d / "register.sqlite"
    store = open_store(db)
    try:
        import_files(store, [d / "list.txt"], "domains", source="test-list")
        import_files(store, [d / "ips.txt"], "cidrs", source="test-ips")
    finally:
        store.close()
    for mode in ("enforce", "shadow"):
        (d / f"{mode}.toml").write_text(POLICY.format(mode=mode))
    return {"dir": d, "cert": cert, "key": key, "server": d / "server.py", "db": db}


@pytest.fixture
def server(topo: Topo, material: dict[str, Path]) -> Iterator[Topo]:
    p = subprocess.Popen(
        topo.ex(topo.srv, PY, str(material["server"]), str(material["cert"]), str(material["key"])),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(topo, topo.srv, 443)
        yield topo
    finally:
        p.kill()
        p.wait(5)


def _gateway(
    topo: Topo, material: dict[str, Path], log: Path, *, mode: str, bypass: bool, policy: Path | None = None
) -> subprocess.Popen[str]:
    args = [
        PY,
        "-m",
        "sluice.cli.gateway",
        "run",
        "--queue",
        "3",
        "--policy",
        str(policy or material["dir"] / f"{mode}.toml"),
    ]
    args += ["--register", str(material["db"]), "--log", str(log)]
    if bypass:
        args.append("--queue-bypass")
    p = subprocess.Popen(topo.ex(topo.gw, *args), stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert p.stderr is not None
    end = time.monotonic() + 15
    while time.monotonic() < end:
        line = p.stderr.readline()
        if "ready on queue" in line:
            return p
        if not line and p.poll() is not None:
            break
    p.kill()
    raise AssertionError(f"gateway did not start: {p.stderr.read()}")


def _stop(p: subprocess.Popen[str]) -> str:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return err


def _curl(topo: Topo, name: str, timeout: float = 2, ip: str = SRV_IP) -> str:
    """The HTTP status curl got ("000" when the connection failed)."""
    return _curl_run(topo, name, timeout, ip).stdout.strip()


def _curl_run(
    topo: Topo, name: str, timeout: float = 2, ip: str = SRV_IP
) -> subprocess.CompletedProcess[str]:
    return sh(
        *topo.ex(topo.cli, "curl", "-k", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout)),
        "--resolve",
        f"{name}:443:{ip}",
        f"https://{name}/",
        check=False,
    )


def _decisions(log: Path) -> list[dict[str, object]]:
    return [d.to_dict() for d in read_decisions(log)]


def test_registered_sni_blocked_other_passes(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "log"
    gw = _gateway(server, material, log, mode="enforce", bypass=True)
    try:
        assert _curl(server, ALLOWED) == "200"
        assert _curl(server, BLOCKED) == "000"
        assert _curl(server, ALLOWED) == "200"
    finally:
        err = _stop(gw)
    decs = _decisions(log)
    by_name = {(d["server_name"], d["action"]) for d in decs}
    assert (BLOCKED, "block") in by_name and (ALLOWED, "allow") in by_name, (decs, err)
    block = next(d for d in decs if d["server_name"] == BLOCKED)
    assert block["enforced"] is True and block["rule"] == "register-block" and block["app"] == "tls"
    reg = block["register"]
    assert isinstance(reg, list) and reg[0]["source"] == "test-list" and reg[0]["indicator"] == BLOCKED
    assert block["capture"] == "nfqueue:3"


def test_shadow_mode_passes_and_logs(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "log"
    gw = _gateway(server, material, log, mode="shadow", bypass=True)
    try:
        assert _curl(server, BLOCKED) == "200"
    finally:
        _stop(gw)
    decs = [d for d in _decisions(log) if d["server_name"] == BLOCKED]
    assert len(decs) == 1
    assert decs[0]["action"] == "block" and decs[0]["mode"] == "shadow" and decs[0]["enforced"] is False


@pytest.mark.parametrize("bypass", [True, False], ids=["fail-open", "fail-closed"])
def test_gateway_killed(server: Topo, material: dict[str, Path], tmp_path: Path, bypass: bool) -> None:
    gw = _gateway(server, material, tmp_path / "log", mode="enforce", bypass=bypass)
    try:
        assert _curl(server, ALLOWED) == "200"
    finally:
        gw.kill()
        gw.communicate(timeout=5)
    # rules stay; nobody listens on the queue now
    assert _curl(server, ALLOWED) == ("200" if bypass else "000")


def test_registered_address_blocked(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    sh(*server.ex(server.srv, "ip", "addr", "add", f"{BLOCKED_IP}/24", "dev", "s0"))
    gw = _gateway(server, material, tmp_path / "log", mode="enforce", bypass=True)
    try:
        assert _curl(server, ALLOWED, ip=BLOCKED_IP) == "000"
        assert _curl(server, ALLOWED) == "200"
    finally:
        _stop(gw)
    (d,) = [d for d in _decisions(tmp_path / "log") if d["action"] == "block"]
    reg = d["register"]
    assert isinstance(reg, list) and reg[0]["kind"] == "ip" and reg[0]["query"] == BLOCKED_IP


def test_reset_refuses_at_once(server: Topo, material: dict[str, Path], tmp_path: Path) -> None:
    pol = tmp_path / "reset.toml"
    pol.write_text(POLICY.format(mode="enforce").replace('"block"', '"reset"'))
    gw = _gateway(server, material, tmp_path / "log", mode="enforce", bypass=True, policy=pol)
    try:
        t0 = time.monotonic()
        res = _curl_run(server, BLOCKED, timeout=5)
        took = time.monotonic() - t0
        assert _curl(server, ALLOWED) == "200"
    finally:
        _stop(gw)
    # a TCP RST ends the handshake at once (curl: 35 TLS connect error / 56 recv failure), no timeout
    assert res.returncode in (35, 56) and took < 2, (res.returncode, took)


def test_sighup_reloads_policy_for_new_connections(
    server: Topo, material: dict[str, Path], tmp_path: Path
) -> None:
    pol = tmp_path / "policy.toml"
    pol.write_text(POLICY.format(mode="shadow"))
    gw = _gateway(server, material, tmp_path / "log", mode="shadow", bypass=True, policy=pol)
    try:
        assert _curl(server, BLOCKED) == "200"
        pol.write_text(POLICY.format(mode="enforce"))
        gw.send_signal(signal.SIGHUP)
        assert gw.stderr is not None
        line = ""
        for _ in range(20):  # loaded in the background, applied before the next queued packet
            assert _curl(server, ALLOWED) == "200"
            if select.select([gw.stderr], [], [], 0.25)[0]:
                line = gw.stderr.readline()
                break
        assert "reloaded policy" in line, line
        assert _curl(server, BLOCKED) == "000"
    finally:
        _stop(gw)
    modes = [d["mode"] for d in _decisions(tmp_path / "log") if d["server_name"] == BLOCKED]
    assert modes == ["shadow", "enforce"]
