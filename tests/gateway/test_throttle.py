"""End to end: a throttle rule limits a real HTTPS download through the gateway (root only).

curl (client namespace) -> gateway namespace (``python -m sluice.cli.gateway run``: NFQUEUE, the
conntrack mark, the HTB shaper on g0/g1) -> Python HTTPS server (server namespace).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.decisions import read_decisions
from tests.gateway.conftest import PY, SRV_IP, Topo, need_gateway_env, sh
from tests.gateway.helpers import SERVER, https_server, make_cert, start_gateway, stop_gateway

SLOW, FAST = "slow.example", "fast.example"
TOLERANCE = 0.20
"""The measured rate must be within this fraction of the configured one."""

POLICY = """
[[rule]]
name = "slow"
action = "throttle"
rate_kbit = {rate}
sni = "{slow}"
{more}
"""

OTHER = """
[[rule]]
name = "other"
action = "throttle"
rate_kbit = 1000
sni = "other.example"
"""


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need_gateway_env()
    d = tmp_path_factory.mktemp("throttle")
    cert, key = make_cert(d)
    (d / "server.py").write_text(SERVER)
    return {"dir": d, "cert": cert, "key": key, "server": d / "server.py"}


@pytest.fixture
def server(topo: Topo, material: dict[str, Path]) -> Iterator[Topo]:
    with https_server(topo, material["server"], material["cert"], material["key"]):
        yield topo


def _download(topo: Topo, name: str, size: int, timeout: float = 20) -> float:
    """Download ``size`` bytes over HTTPS from ``name``; curl's average rate in bytes/s."""
    res = sh(
        *topo.ex(topo.cli, "curl", "-k", "-s", "-o", "/dev/null", "-m", str(timeout)),
        "-w",
        "%{http_code} %{size_download} %{speed_download}",
        "--resolve",
        f"{name}:443:{SRV_IP}",
        f"https://{name}/bytes/{size}",
        check=False,
        timeout=timeout + 5,
    )
    code, got, speed = res.stdout.split()
    assert (res.returncode, code, int(got)) == (0, "200", size), res
    return float(speed)


def _tc(topo: Topo, *args: str) -> str:
    return sh(*topo.ex(topo.gw, "tc", *args)).stdout


def _gateway_args(policy: Path, log: Path, *more: str) -> list[str]:
    return [
        "--queue",
        "5",
        "--policy",
        str(policy),
        "--log",
        str(log),
        "--no-detect",
        "--queue-bypass",
        *more,
    ]


def test_throttled_name_gets_the_configured_rate(server: Topo, tmp_path: Path) -> None:
    rate_kbit, size = 4000, 2_000_000
    pol = tmp_path / "policy.toml"
    pol.write_text(POLICY.format(rate=rate_kbit, slow=SLOW, more=""))
    lines: list[str] = []
    gw = start_gateway(server, _gateway_args(pol, tmp_path / "log"), lines=lines)
    try:
        # the gateway's first decision loads its JIT-compiled kernels (~0.3 s, the ClientHello is
        # retransmitted meanwhile): not part of the rate
        _download(server, FAST, 1000)
        slow = _download(server, SLOW, size)
        fast = _download(server, FAST, size)
        shaped = _tc(server, "-s", "class", "show", "dev", "g0")  # downloads leave by g0
    finally:
        err = stop_gateway(gw)
    early = "".join(lines)
    # no --shape-dev: every interface that is up, loopback excepted
    assert "sluice gateway: shaping g0, g1 (no --shape-dev)" in early or "shaping g1, g0" in early, early
    assert "'slow' 4000 kbit/s" in early
    want = rate_kbit * 1000 / 8
    print(
        f"throttled at {rate_kbit} kbit/s: {slow * 8 / 1000:.0f} kbit/s; unthrottled: {fast * 8 / 1000:.0f}"
    )
    assert abs(slow - want) <= TOLERANCE * want, (slow, want, err)
    assert fast > 3 * want, (fast, want)
    # the download went through the rule's class (class 0: 51ce:4), HTTP headers and TLS included
    sent = int(shaped.split("class htb 51ce:4 ")[1].split("Sent ")[1].split()[0])
    assert size < sent < 1.2 * size, shaped
    decs = {d.server_name: d for d in read_decisions(tmp_path / "log")}
    assert decs[SLOW].action.value == "throttle" and decs[SLOW].rate_kbit == rate_kbit
    assert decs[FAST].action.value == "allow"

    # the shaper stays when the gateway exits; teardown --shape-dev removes it with the rules
    assert "htb 51ce:" in _tc(server, "qdisc", "show", "dev", "g1")
    down = sh(
        *server.ex(server.gw, PY, "-m", "sluice.cli.gateway", "teardown"),
        "--shape-dev",
        "g0",
        "--shape-dev",
        "g1",
        check=False,
    )
    assert down.returncode == 0, down.stderr
    for dev in ("g0", "g1"):
        assert _tc(server, "qdisc", "show", "dev", dev).startswith("qdisc noqueue 0: root")
    assert "SLUICE" not in sh(*server.ex(server.gw, "iptables-save", "-t", "filter")).stdout


def test_sighup_reinstalls_the_shaper_for_the_new_policy(server: Topo, tmp_path: Path) -> None:
    pol = tmp_path / "policy.toml"
    pol.write_text(POLICY.format(rate=4000, slow=SLOW, more=""))
    args = _gateway_args(pol, tmp_path / "log", "--shape-dev", "g0", "--shape-dev", "g1")
    gw = start_gateway(server, args)
    try:
        assert "rate 4Mbit" in _tc(server, "class", "show", "dev", "g0")
        pol.write_text(POLICY.format(rate=8000, slow=SLOW, more=OTHER))
        gw.send_signal(signal.SIGHUP)
        assert gw.stderr is not None
        fd, said = gw.stderr.fileno(), ""  # raw reads: the text stream's buffer would hide lines from select
        for _ in range(20):  # loaded in the background, applied before the next queued packet
            _download(server, FAST, 1000)
            while select.select([fd], [], [], 0.25)[0] and (chunk := os.read(fd, 65536)):
                said += chunk.decode()
            if "shaper on" in said:
                break
        assert "reloaded policy" in said and "'slow' 8000 kbit/s, 'other' 1000 kbit/s" in said, said
        for dev in ("g0", "g1"):
            classes = _tc(server, "class", "show", "dev", dev)
            assert "51ce:4 " in classes and "rate 8Mbit" in classes and "51ce:5 " in classes, classes
        slow = _download(server, SLOW, 2_500_000)
    finally:
        err = stop_gateway(gw)
    want = 8000 * 1000 / 8
    print(f"throttled at 8000 kbit/s after SIGHUP: {slow * 8 / 1000:.0f} kbit/s")
    assert abs(slow - want) <= TOLERANCE * want, (slow, want, err)
    sh(
        *server.ex(
            server.gw, PY, "-m", "sluice.cli.gateway", "teardown", "--shape-dev", "g0", "--shape-dev", "g1"
        )
    )
    assert not subprocess.run(
        server.ex(server.gw, "tc", "class", "show", "dev", "g0"), capture_output=True
    ).stdout
