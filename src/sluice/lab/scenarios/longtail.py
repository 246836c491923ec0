"""The benign long tail: long-lived WebSockets and big rate-limited transfers over HTTPS.

A detector that learnt benign traffic from short page loads sees these as odd: one connection
that stays up with small messages both ways (like a tunnel's keepalives and interactive use),
tens of megabytes in one direction (like a VPN's bulk), a steady paced stream.  Every session
checks its bytes end to end (digests on both sides, server logs).
"""

from __future__ import annotations

__all__ = ["BigTransfer", "WebSocket", "bulkd_argv", "last_json", "shaped_bps", "start_nginx_custom"]

import hashlib
import json
from pathlib import Path
from typing import ClassVar

from sluice.lab.httpd import read_server_log
from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session
from sluice.lab.scenarios.web import run_nginx
from sluice.lab.topology import LabError

_MB = 1_000_000


def start_nginx_custom(s: Session, port: int, tls: tuple[Path, Path] | None, body: str) -> Path:
    """Start nginx on the server with one ``server`` block holding ``body``; returns its JSON log."""
    ssl = "" if tls is None else f" ssl http2; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}"
    http = "keepalive_timeout 65; client_max_body_size 0;"
    return run_nginx(s, port, f"{s.addr.server_ip}:{port}{ssl}", body, http=http)


def last_json(text: str) -> dict[str, object]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            rec = json.loads(line)
            if isinstance(rec, dict):
                return rec
    raise LabError("lab.no_result", text[-300:])


def bulkd_argv(s: Session, port: int, log: Path, cert: Path, key: Path) -> list[str]:
    """Command line of :mod:`sluice.lab.bulkd` on the server address over TLS."""
    return [
        s.python,
        "-m",
        "sluice.lab.bulkd",
        "--bind",
        s.addr.server_ip,
        "--port",
        str(port),
        "--log",
        str(log),
        "--cert",
        str(cert),
        "--key",
        str(key),
    ]


def shaped_bps(s: Session) -> float:
    """Bytes per second the gateway lets through (inf when not shaped)."""
    kbit = s.params.get("shaping_kbit")
    return kbit * 125 if isinstance(kbit, int) else float("inf")


class WebSocket(Scenario):
    """One long-lived WebSocket: small messages both ways with think times and bursts."""

    name = "websocket"
    summary = (
        "long-lived WebSocket (ws/wss, python websockets or nginx in front; client websockets or "
        "aiohttp), chat-like messages"
    )
    traffic_class = "benign"
    family = "tls"
    programs: ClassVar[dict[str, str]] = {"nginx": "nginx-light"}
    # the client is websockets' unless the variant names aiohttp's (last: older seeds keep theirs)
    variants = ("wss-python", "ws-python", "wss-nginx", "ws-nginx", "wss-nginx-aiohttp", "ws-python-aiohttp")

    def run(self, s: Session, variant: str) -> Outcome:
        scheme, front, *lib = variant.split("-")
        client_lib = lib[0] if lib else "websockets"
        a = s.addr
        tls = scheme == "wss"
        name = s.hostname()
        port = s.port("port", 443 if tls else 80, 0.6)
        compression = s.choose("compression", (True, False))
        nocomp = [] if compression else ["--no-compression"]
        log = s.workdir / "ws-server.jsonl"
        srv = [s.python, "-m", "sluice.lab.wsecho", "serve", "--log", str(log), *nocomp]
        path = s.choose("path", ("/ws", "/socket", "/live", "/api/stream", "/cable", "/socket.io/"))
        if front == "nginx":
            back = s.rng.randrange(20000, 30000)
            s.topo.spawn("server", "wsecho", [*srv, "--bind", "127.0.0.1", "--port", str(back)])
            s.topo.wait_port("server", back)
            cert = s.ca.issue(name) if tls else None
            start_nginx_custom(
                s,
                port,
                None if cert is None else (cert.cert, cert.key),
                f"""location {path} {{ proxy_pass http://127.0.0.1:{back}; proxy_http_version 1.1;
  proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";
  proxy_read_timeout 600s; }}""",
            )
            clients = ["127.0.0.1"]
            impl, software = "nginx", ["nginx", "python3"]
        else:
            tls_args = []
            if tls:
                cert = s.ca.issue(name)
                tls_args = ["--cert", str(cert.cert), "--key", str(cert.key)]
            s.topo.spawn("server", "wsecho", [*srv, "--bind", a.server_ip, "--port", str(port), *tls_args])
            s.topo.wait_port("server", port)
            clients = [a.client_ip]
            impl, software = "python-websockets", ["python3"]
        s.identify(stack=f"python-{client_lib}", impl=impl)
        think = s.choose("think_s", ((0.05, 0.4), (0.2, 1.0), (0.5, 2.0)))
        burst_p = s.choose("burst_p", (0.05, 0.1, 0.2))
        ping = s.choose("ping_interval", (0, 5, 10, 20))
        duration = max(s.duration_s, 2.0)
        argv = [
            s.python,
            "-m",
            "sluice.lab.wsecho",
            "client",
            f"{scheme}://{name}:{port}{path}",
            "--connect",
            a.server_ip,
            "--seed",
            str(s.rng.randrange(1 << 30)),
            "--duration",
            str(duration),
            "--think-min",
            str(think[0]),
            "--think-max",
            str(think[1]),
            "--burst-p",
            str(burst_p),
            "--ping-interval",
            str(ping),
            "--lib",
            client_lib,
            *nocomp,
        ]
        if tls:
            argv += ["--cafile", str(s.ca.cert)]
        r = s.topo.run("client", argv, timeout=duration + 40)
        cli = last_json(r.stdout)
        recs = read_server_log(log)
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "tls" if tls else "http")],
            software=software,
        )
        out.checks |= {f"client_{k}": v for k, v in cli.items() if isinstance(v, int)}
        if len(recs) != 1:
            out.problems.append(f"server logged {len(recs)} WebSocket sessions, expected 1")
            return out
        srv_rec = recs[0]
        out.checks["server_rx_n"] = srv_rec["rx_n"]
        out.checks["server_tx_n"] = srv_rec["tx_n"]
        if srv_rec.get("client") not in clients:
            out.problems.append(f"server saw the session from {srv_rec.get('client')}, not {clients}")
        if (cli["tx_n"], cli["tx_sha256"]) != (srv_rec["rx_n"], srv_rec["rx_sha256"]):
            out.problems.append(
                f"client sent {cli['tx_n']} messages, server got {srv_rec['rx_n']} (or digests)"
            )
        if (cli["rx_n"], cli["rx_sha256"]) != (srv_rec["tx_n"], srv_rec["tx_sha256"]):
            out.problems.append(
                f"server sent {srv_rec['tx_n']} messages, client got {cli['rx_n']} (or digests)"
            )
        tx_b, rx_b = cli["tx_bytes"], cli["rx_bytes"]
        assert isinstance(tx_b, int) and isinstance(rx_b, int)
        # permessage-deflate may shrink the messages on the wire; count them only uncompressed
        out.carried_bytes = 0 if compression else tx_b + rx_b
        return out


class BigTransfer(Scenario):
    """Tens of megabytes up (PUT/POST) or down over HTTPS, often rate-limited, checksummed."""

    name = "bulk-transfer"
    summary = "HTTPS uploads (PUT/POST, nginx WebDAV or Python) and long rate-limited downloads"
    traffic_class = "benign"
    family = "tls"
    programs: ClassVar[dict[str, str]] = {"nginx": "nginx-light"}
    variants = ("put-nginx", "post-python", "download-nginx", "put-python", "download-python")

    def run(self, s: Session, variant: str) -> Outcome:
        kind, server = variant.split("-")
        a = s.addr
        name = s.hostname()
        cert = s.ca.issue(name)
        port = s.port("port", 443, 0.7)
        size = s.rng.randrange(8, 48) * _MB + s.rng.randrange(_MB)
        dur = max(s.duration_s, 1.0) * s.rng.uniform(0.8, 1.6)
        # keep a session under ~25 s on a shaped gateway
        size = int(min(size, max(2 * _MB, shaped_bps(s) * 0.6 * 20)))
        rate = int(size / dur)
        limited = s.rng.random() < 0.8
        s.params["bytes"] = size
        s.params["rate_limit_Bps"] = rate if limited else 0
        data = s.rng.randbytes(size)
        digest = hashlib.sha256(data).hexdigest()
        kind_name = s.choose("file_kind", ("backup", "video", "photos", "dataset", "build"))
        fname = f"{kind_name}-{s.rng.randrange(1000)}"
        timeout = 30 + size / min(rate if limited else 1e12, shaped_bps(s) * 0.8)
        curl = ["curl", "-sS", "--max-time", str(int(timeout)), "--cacert", str(s.ca.cert)]
        curl += ["--resolve", f"{name}:{port}:{a.server_ip}", s.choose("http", ("--http1.1", "--http2"))]
        if server == "python" and curl[-1] == "--http2":
            curl[-1] = "--http1.1"
            s.params["http"] = "--http1.1"
        if limited:
            curl += ["--limit-rate", str(rate)]
        base = f"https://{name}:{port}"
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "tls")],
            software=["nginx" if server == "nginx" else "python3", "curl"],
        )
        s.identify(stack="curl-openssl", impl="nginx" if server == "nginx" else "python-http.server")
        if kind == "download":
            (s.site.root / f"{fname}.bin").write_bytes(data)
            if server == "nginx":
                srv_rate = s.choose("server_limit_rate", (0, rate))
                lr = f"limit_rate {srv_rate};" if srv_rate else ""
                log = start_nginx_custom(s, port, (cert.cert, cert.key), f"location / {{ {lr} }}")
            else:
                log = s.start_httpd(a.server_ip, port, tls=(cert.cert, cert.key))
            dest = s.workdir / "download.bin"
            r = s.topo.run(
                "client", [*curl, "-o", str(dest), f"{base}/{fname}.bin"], check=False, timeout=timeout + 5
            )
            got = dest.read_bytes() if dest.exists() else b""
            ok = hashlib.sha256(got).hexdigest() == digest
            served = [
                x for x in read_server_log(log) if x.get("status") == 200 and x.get("client") == a.client_ip
            ]
            out.checks |= {"download_ok": ok, "server_requests_via_carrier": len(served)}
            if not ok:
                out.problems.append(f"download: got {len(got)} of {size} bytes: {r.stderr.strip()[-200:]}")
            if not served:
                out.problems.append("server did not log the download")
        else:
            src = s.workdir / "upload.bin"
            src.write_bytes(data)
            method = "PUT" if kind == "put" else "POST"
            up = ["-T", str(src)] if method == "PUT" else ["--data-binary", f"@{src}"]
            if server == "nginx":
                up_dir = s.workdir / "www" / "up"
                up_dir.mkdir(parents=True, exist_ok=True)
                log = start_nginx_custom(
                    s,
                    port,
                    (cert.cert, cert.key),
                    "location /up/ { dav_methods PUT; create_full_put_path on; dav_access user:rw; }",
                )
            else:
                log = s.workdir / "bulkd.jsonl"
                s.topo.spawn(
                    "server",
                    "bulkd",
                    bulkd_argv(s, port, log, cert.cert, cert.key),
                )
                s.topo.wait_port("server", port)
            ctype = s.choose("content_type", ("application/octet-stream", "video/mp4", "application/zip"))
            r = s.topo.run(
                "client",
                [
                    *curl,
                    "-H",
                    f"Content-Type: {ctype}",
                    *up,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    f"{base}/up/{fname}",
                ],
                check=False,
                timeout=timeout + 5,
            )
            recs = [x for x in read_server_log(log) if x.get("client") == a.client_ip]
            if server == "nginx":
                stored = s.site.root / "up" / fname
                ok = stored.exists() and hashlib.sha256(stored.read_bytes()).hexdigest() == digest
            else:
                ok = any(x.get("sha256") == digest and x.get("bytes") == size for x in recs)
            out.checks |= {
                "upload_ok": ok,
                "http_status": r.stdout.strip()[-3:],
                "server_requests_via_carrier": len(recs),
            }
            if not ok:
                out.problems.append(
                    f"upload of {size} bytes not stored intact (curl: {r.stdout[-3:]} {r.stderr[-200:]})"
                )
        out.checks["payload_bytes"] = size
        out.carried_bytes = size
        return out
