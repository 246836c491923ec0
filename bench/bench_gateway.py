"""Benchmark of the inline gateway: throughput, new connections/s and added setup latency.

One run, one topology (client -- gateway -- server network namespaces, veth pairs, offloads on
as on a router), the same traffic in each mode:

* ``plain``: the gateway only forwards (no rules);
* ``sluice``: ``sluice gateway run`` with the shipped default policy (block what the register
  names, log what the detectors find), detectors on with the shipped model, a register of
  ``--entries`` synthetic domains, the first 12 packets of each connection queued;
* ``sluice-nodetect``: the same with ``--no-detect`` (register and name rules only);
* ``sluice-2w``, ``sluice-nodetect-2w``: the same with ``--workers 2`` (two processes, queues
  balanced by the kernel's hash of the addresses).

Measured in each mode:

* bulk TCP throughput: ``iperf3`` one stream, ``--seconds`` long;
* new HTTPS connections per second: ``wrk`` with ``Connection: close`` (every request a new TCP
  connection and TLS 1.3 handshake) against nginx, ``--seconds`` long; decisions per second from
  the gateway's decision log (``classified``). With ``--targets N`` (default 8) the server has
  N addresses and the client's new HTTPS connections are spread over them round-robin (DNAT in
  the client's namespace; wrk itself stays one thread): NFQUEUE's balance hashes addresses
  only, so one client-server pair would put every connection on one queue;
* connection-setup latency: ``--probes`` sequential HTTPS requests (new connection each, Python
  ``ssl``), time from ``connect()`` to the first response byte; median and p99, and what sluice
  adds to plain forwarding.

Ratios against ``plain`` are what to compare (the 2 cores are shared with the load generators,
the servers and other work on the machine). Needs root, iperf3, wrk, nginx, iptables and the
``gateway`` extra. Usage: ``python bench/bench_gateway.py [--seconds 5] [--probes 300]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sluice.decisions import read_decisions
from sluice.gateway.rules import teardown
from sluice.lab.pki import LabCA
from sluice.lab.topology import Addressing, Topology
from sluice.registry import import_files, open_store

NAME = "bench.example"
MODES: dict[str, list[str] | None] = {
    "plain": None,
    "sluice": [],
    "sluice-nodetect": ["--no-detect"],
    "sluice-fsync1": ["--fsync", "1"],
    "sluice-fsync1-2w": ["--fsync", "1", "--workers", "2"],
    "sluice-2w": ["--workers", "2"],
    "sluice-nodetect-2w": ["--no-detect", "--workers", "2"],
}
"""Gateway options per mode (None: no gateway)."""
POLICY = Path(__file__).resolve().parents[1] / "src" / "sluice" / "policy" / "default.toml"
PROBE = r"""
import socket, ssl, sys, time, json
host, ip, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
req = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
out = []
for _ in range(n):
    t0 = time.perf_counter()
    with socket.create_connection((ip, 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(req)
            s.recv(1)
    out.append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def _cert(d: Path) -> tuple[Path, Path]:
    issued = LabCA(d / "pki").issue(NAME)
    return issued.cert, issued.key


def _nginx_conf(d: Path, ips: list[str], cert: Path, key: Path) -> Path:
    conf = d / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{
    {" ".join(f"listen {ip}:443 ssl;" for ip in ips)}
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""
    )
    return conf


def _register(d: Path, entries: int) -> Path:
    rng = random.Random(7)
    names = {
        f"{''.join(rng.choices('abcdefghijklmnopqrstuvwxyz', k=rng.randrange(5, 14)))}.example"
        for _ in range(entries)
    }
    lst = d / "domains.txt"
    lst.write_text("\n".join(sorted(names)) + "\nblocked.example\n")
    db = d / "register.sqlite"
    store = open_store(db, create=True)
    try:
        import_files(store, [lst], "domains", source="bench")
    finally:
        store.close()
    return db


def _iperf(topo: Topology, ip: str, seconds: int) -> float:
    r = topo.run("client", ["iperf3", "-c", ip, "-t", str(seconds), "-J"], check=True, timeout=seconds + 30)
    doc = json.loads(r.stdout)
    return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9


def _wrk(topo: Topology, ip: str, seconds: int, conns: int) -> dict[str, float]:
    argv = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds}s", "--latency", "-H", "Connection: close"]
    argv += ["-H", f"Host: {NAME}", f"https://{ip}/"]
    r = topo.run("client", argv, check=True, timeout=seconds + 30)
    out = r.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "conns_per_s": rps,
        "errors": sum(int(x) for x in errs.groups()) if errs else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "wrk_p50_ms": _ms(lat.get("50", "0ms")),
        "wrk_p99_ms": _ms(lat.get("99", "0ms")),
    }


def _spread(topo: Topology, ip: str, ips: list[str]) -> None:
    """New HTTPS connections from the client to ``ip`` go round-robin to ``ips`` (DNAT in the
    client's namespace, so the gateway sees them as connections to different servers)."""
    for i, target in enumerate(ips):
        nth = ["-m", "statistic", "--mode", "nth", "--every", str(len(ips) - i), "--packet", "0"]
        argv = ["iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-d", ip, "-p", "tcp", "--dport", "443"]
        argv += [*(nth if i < len(ips) - 1 else []), "-j", "DNAT", "--to-destination", target]
        topo.run("client", argv, check=True)


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def _probe(topo: Topology, ip: str, n: int) -> list[float]:
    r = topo.run("client", [sys.executable, "-c", PROBE, NAME, ip, str(n)], check=True, timeout=n + 60)
    return [x * 1000 for x in json.loads(r.stdout)]


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _start_gateway(topo: Topology, log: Path, db: Path, extra: list[str]) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "sluice.cli.gateway", "run", "--queue", "7", "--policy", str(POLICY)]
    argv += ["--register", str(db), "--log", str(log), "--queue-bypass"]
    p = subprocess.Popen(topo.argv("gateway", argv + extra), stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    line = p.stderr.readline()
    if "ready on queue" not in line:
        p.kill()
        raise SystemExit(f"gateway did not start: {line}{p.stderr.read()}")
    return p


def _stop_gateway(topo: Topology, p: subprocess.Popen[str]) -> dict[str, Any]:
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    if p.returncode:
        print(f"gateway exited {p.returncode}: {err}", file=sys.stderr)
    teardown(netns=topo.ns["gateway"])
    for line in reversed(err.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line)["stats"])
    return {}


def _mode(topo: Topology, a: Addressing, args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"gbit_s": _iperf(topo, a.server_ip, args.seconds)}
    res["wrk_window"] = (time.time(), 0.0)
    res.update(_wrk(topo, a.server_ip, args.seconds, args.conns))
    res["wrk_window"] = (res["wrk_window"][0], time.time())
    probes = _probe(topo, a.server_ip, args.probes)
    res["setup_p50_ms"] = statistics.median(probes)
    res["setup_p99_ms"] = _pct(probes, 0.99)
    return res


def _engine_capacity(conns: int) -> dict[str, float]:
    """New connections/s one core of the engine alone decides (no kernel, no queue): TLS 1.3
    connections from the packet writer, 12 packets each as the kernel would queue them."""
    from sluice.cli._detect import load_combiner
    from sluice.gateway.engine import GatewayEngine
    from sluice.policy import load_policy
    from sluice.registry import Matcher
    from sluice.synth.payloads import tls_exchange
    from sluice.synth.sessions import RawIpFraming, TcpSession

    ex = tls_exchange(NAME, version="1.3", alpn=("http/1.1",))
    packets = []
    for i in range(conns):
        s = TcpSession(
            ("10.1.0.2", 10000 + i),
            ("10.2.0.2", 443),
            start_ts=1.0,
            rng=random.Random(i),
            framing=RawIpFraming(),
        )
        for from_client, data in ex.messages:
            (s.client_send if from_client else s.server_send)(data)
        s.close()
        packets.append([fr for _, fr in s.packets][:12])
    policy = load_policy(POLICY)
    matcher = Matcher([("bench", "domain", "blocked.example", "[]")])
    out = {}
    for label, detector in (
        ("engine_conns_per_s", load_combiner(None, False)),
        ("engine_conns_per_s_no_model", load_combiner(None, True)),
        ("engine_conns_per_s_no_detect", None),
    ):
        best = 0.0
        for _ in range(3):
            eng = GatewayEngine(policy, matcher, None, detector=detector)
            t0 = time.process_time()
            for conn in packets:
                for p in conn:
                    eng.handle(p)
            best = max(best, conns / (time.process_time() - t0))
        out[label] = best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=32, help="wrk concurrent connections (all wrk processes)")
    ap.add_argument("--targets", type=int, default=8, help="server addresses the connections are spread over")
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--entries", type=int, default=100_000, help="register size")
    ap.add_argument("--modes", default="plain,sluice,sluice-nodetect", help="comma-separated; plain first")
    args = ap.parse_args()
    engine = _engine_capacity(1000)
    print(
        "engine alone, one core (CPU time, best of 3): "
        + ", ".join(f"{k} {v:.0f}" for k, v in engine.items()),
        file=sys.stderr,
    )
    for tool in ("iperf3", "wrk", "nginx", "iptables", "ethtool"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} not found (scripts/install.sh --test installs it)")
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, netfilter)")
    d = Path(tempfile.mkdtemp(prefix="sluice-bench-gw-"))
    d.chmod(0o755)
    cert, key = _cert(d)
    t0 = time.perf_counter()
    db = _register(d, args.entries)
    print(f"register: {args.entries} domains imported in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    a = Addressing.default()
    results: dict[str, dict[str, Any]] = {}
    with Topology(d, a) as topo:
        for ns, dev in (("client", "c0"), ("gateway", "g0"), ("gateway", "g1"), ("server", "s0")):
            topo.run(
                ns,  # type: ignore[arg-type]
                ["ethtool", "-K", dev, "tso", "on", "gso", "on", "gro", "on", "tx", "on"],
                check=False,
            )
        ips = [a.server_ip] + [f"{a.server_ip.rsplit('.', 1)[0]}.{100 + i}" for i in range(1, args.targets)]
        for ip in ips[1:]:
            topo.run("server", ["ip", "addr", "add", f"{ip}/24", "dev", "s0"], check=True)
        if len(ips) > 1:
            _spread(topo, a.server_ip, ips)
        topo.spawn("server", "iperf3", ["iperf3", "-s"])
        topo.spawn(
            "server",
            "nginx",
            ["nginx", "-c", str(_nginx_conf(d, ips, cert, key)), "-g", "daemon off;"],
        )
        topo.wait_port("server", 5201)
        topo.wait_port("server", 443)
        for mode in args.modes.split(","):
            extra = MODES[mode]
            print(f"mode {mode} ...", file=sys.stderr)
            gw = _start_gateway(topo, d / mode, db, extra) if extra is not None else None
            t_mode = time.monotonic()
            res = _mode(topo, a, args)
            res["mode_wall_s"] = time.monotonic() - t_mode
            if gw is not None:
                stats = _stop_gateway(topo, gw)
                res["decisions"] = stats.get("decisions", 0)
                lo, hi = res["wrk_window"]
                during = [x for x in read_decisions(d / mode) if lo <= x.time <= hi]
                res["classified_per_s"] = len(during) / (hi - lo)
                res["wrk_decisions_by_rule"] = dict(Counter(f"{x.rule}:{x.verdict_class}" for x in during))
                res["wrk_decisions_by_queue"] = dict(sorted(Counter(x.capture for x in during).items()))
                res["by_stage"] = stats.get("by_stage", {})
                res["queued_packets"] = stats.get("packets", 0)
                res["detector_seconds"] = stats.get("detector_seconds", 0)
                res["gateway_cpu_s"] = stats.get("cpu_seconds", 0)  # all workers, while serving
            results[mode] = res
    shutil.rmtree(d, ignore_errors=True)
    _report(results, args, engine)


def _report(results: dict[str, dict[str, Any]], args: argparse.Namespace, engine: dict[str, float]) -> None:
    base = results["plain"]
    print(
        f"# bench_gateway {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, {platform.release()}, {args.seconds} s per measure, "
        f"wrk {args.conns} conns spread over {args.targets} server addresses, {args.probes} probes, "
        f"register {args.entries} domains"
    )
    print(
        "| mode | iperf3 Gbit/s | vs plain | HTTPS new conns/s | vs plain | wrk p50 / p99 ms "
        "| setup p50 / p99 ms | added p50 / p99 ms | decisions/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(
            f"| {mode} | {r['gbit_s']:.2f} | {r['gbit_s'] / base['gbit_s']:.2f} | {r['conns_per_s']:.0f} "
            f"| {r['conns_per_s'] / base['conns_per_s']:.2f} | {r['wrk_p50_ms']:.1f} / {r['wrk_p99_ms']:.1f} "
            f"| {r['setup_p50_ms']:.2f} / {r['setup_p99_ms']:.2f} "
            f"| {r['setup_p50_ms'] - base['setup_p50_ms']:+.2f} "
            f"/ {r['setup_p99_ms'] - base['setup_p99_ms']:+.2f} "
            f"| {r.get('classified_per_s', 0):.0f} |"
        )
    for mode, r in results.items():
        if "gateway_cpu_s" in r:
            print(
                f"- {mode}: gateway CPU {r['gateway_cpu_s']:.1f} s in {r['mode_wall_s']:.1f} s "
                f"({r['gateway_cpu_s'] / r['mode_wall_s']:.2f} cores); decisions during wrk per queue "
                f"{r['wrk_decisions_by_queue']}"
            )
    print(
        f"\nEngine alone (one core, CPU time, TLS 1.3 connections, 12 queued packets each): "
        f"{engine['engine_conns_per_s']:.0f} new connections/s with detectors and model, "
        f"{engine['engine_conns_per_s_no_model']:.0f} with layers 1-2, "
        f"{engine['engine_conns_per_s_no_detect']:.0f} without detectors."
    )
    print(json.dumps(results, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
