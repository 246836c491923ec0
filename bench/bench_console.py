"""Console load benchmark: paged API queries and pages over a large register and decision log.

Builds (once, in --dir) a register of --entries domain entries (one import through the
register's own service) and a decision log of --decisions decisions, starts ``sluice serve`` as
a separate process, waits until the decision index holds every decision, then times sequential
requests (one client, keep-alive) and prints p50/p95/max per query.

    .venv/bin/python bench/bench_console.py --entries 1200000 --decisions 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sluice.decisions import DecisionLog
from sluice.policy.model import Action, Decision, Mode
from sluice.registry.service import import_paths

PASSWORD = "benchmark password"


def build(d: Path, entries: int, decisions: int) -> None:
    reg = d / "register.db"
    if not reg.exists():
        t = time.perf_counter()
        lst = d / "list.txt"
        with open(lst, "w") as fh:
            for i in range(entries):
                fh.write(f"n{i:07d}.site{i % 977}.example\n")
        import_paths(str(reg), [lst], "domains", source="bench")
        print(f"register: {entries} entries imported in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    log = d / "decisions"
    if not log.exists():
        t = time.perf_counter()
        actions = [Action.ALLOW] * 6 + [Action.BLOCK, Action.LOG, Action.RESET, Action.THROTTLE]
        rnd = random.Random(7)
        t0 = time.time() - 7 * 86400
        with DecisionLog(log, fsync="never") as w:
            for i in range(decisions):
                a = actions[rnd.randrange(len(actions))]
                w.write(
                    Decision(
                        time=t0 + i * 7 * 86400 / decisions,
                        flow_id=i,
                        flow_key=f"tcp 10.{i % 200}.{i % 250}.{i % 13 + 1}:{40000 + i % 20000}"
                        f" > 203.0.113.{i % 250}:443",
                        server_name=f"n{rnd.randrange(entries):07d}.site{i % 977}.example",
                        app="tls",
                        rule="register-block" if a is Action.BLOCK else "default",
                        rule_index=0,
                        action=a,
                        mode=Mode.ENFORCE,
                        enforced=True,
                        rate_kbit=512 if a is Action.THROTTLE else 0,
                        verdict_class=("vpn", "proxy", "benign", "benign", "tunnel")[i % 5],
                        family=("wireguard", "socks", "tls", "dns", "gre")[i % 5],
                        evidence=("service.name: catalogue=corvid",) if i % 11 == 0 else (),
                    )
                )
        print(f"decision log: {decisions} written in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(c: httpx.Client, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = c.get(url)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{url}: {r.status_code} {r.text[:300]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/sluice-bench-console")
    ap.add_argument("--entries", type=int, default=1_200_000)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--n", type=int, default=100, help="requests per query")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    build(d, args.entries, args.decisions)
    sluice = str(Path(sys.executable).with_name("sluice"))
    common = [
        "--register",
        str(d / "register.db"),
        "--log",
        str(d / "decisions"),
        "--state",
        str(d / "state"),
        "--no-model",
    ]
    env = {**os.environ, "SLUICE_PASSWORD": PASSWORD}
    subprocess.run(
        [sluice, "serve", *common, "--add-user", "bench", "--role", "admin"], env=env, capture_output=True
    )
    port = free_port()
    srv = subprocess.Popen(
        [sluice, "serve", *common, "--bind", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=600) as c:
            t = time.perf_counter()
            while True:
                try:
                    if c.get("/api/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            r = c.post("/api/v1/session", json={"username": "bench", "password": PASSWORD})
            c.headers["X-CSRF-Token"] = r.json()["csrf"]
            token = c.post("/api/v1/tokens", json={"name": "bench"}).json()["token"]
            while c.get("/api/v1/decisions", params={"limit": 1, "since": "30d"}).status_code == 200:
                n = c.get("/api/v1/dashboard").json()["decisions"]
                if n >= args.decisions:
                    break
                time.sleep(2)
            print(
                f"server up and {args.decisions} decisions indexed after {time.perf_counter() - t:.1f} s",
                file=sys.stderr,
            )
            c.get("/api/v1/register/check", params={"item": "x.example"})  # builds the matcher once
            deep = c.get("/api/v1/decisions", params={"limit": 50, "action": "block"}).json()
            for _ in range(20):
                deep = c.get(
                    "/api/v1/decisions",
                    params={"limit": 50, "action": "block", "cursor": deep["next_cursor"]},
                ).json()
            walk = c.get("/api/v1/register/entries", params={"limit": 50, "source": "bench"}).json()
            for _ in range(20):
                walk = c.get(
                    "/api/v1/register/entries",
                    params={"limit": 50, "source": "bench", "cursor": walk["next_cursor"]},
                ).json()
            api = {
                "GET /api/v1/register/entries?q=<prefix>": "/api/v1/register/entries?limit=50&q=n01234",
                "GET /api/v1/register/entries (page 21, keyset)": "/api/v1/register/entries?limit=50"
                f"&source=bench&cursor={walk['next_cursor']}",
                "GET /api/v1/register/check": "/api/v1/register/check?item=www.n0123456.site345.example",
                "GET /api/v1/decisions (latest 50)": "/api/v1/decisions?limit=50",
                "GET /api/v1/decisions?action=block (page 21)": "/api/v1/decisions?limit=50&action=block"
                f"&cursor={deep['next_cursor']}",
                "GET /api/v1/decisions?name=site345.example": "/api/v1/decisions?limit=50"
                "&name=site345.example",
                "GET /api/v1/decisions?client=10.7.7.8&since=3d": "/api/v1/decisions?limit=50"
                "&client=10.7.7.8&since=3d",
                "GET /api/v1/decisions?class=vpn&family=wireguard": "/api/v1/decisions?limit=50"
                "&class=vpn&family=wireguard",
            }
            pages = {
                "page /register?q=<prefix>": "/register?q=n0999",
                "page /decisions?action=block": "/decisions?action=block",
                "page /decisions?name=...": "/decisions?name=site12.example",
                "page / (dashboard; counts recomputed in the background)": "/",
            }
            print(
                f"| query ({args.entries} entries, {args.decisions} decisions) | p50 ms | p95 ms | max ms |"
            )
            print("|---|---|---|---|")
            tc = httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {token}"})
            for label, url in api.items():
                ms = timed(tc, url, args.n)
                q = statistics.quantiles(ms, n=20)
                print(f"| {label} | {statistics.median(ms):.1f} | {q[18]:.1f} | {max(ms):.1f} |")
            for label, url in pages.items():
                ms = timed(c, url, args.n)
                q = statistics.quantiles(ms, n=20)
                print(f"| {label} | {statistics.median(ms):.1f} | {q[18]:.1f} | {max(ms):.1f} |")
            t = time.perf_counter()
            c.get("/api/v1/dashboard", params={})
            tc.close()
    finally:
        srv.terminate()
        srv.wait(timeout=30)


if __name__ == "__main__":
    main()
