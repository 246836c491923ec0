"""HTTP/3 page loads, bulk downloads and small requests: caddy (quic-go) server, aioquic client.

Debian 12's curl has no HTTP/3 and ngtcp2's client fails against caddy, so the client is
:mod:`sluice.lab.h3client` (aioquic, a dependency of sluice's test extra).  The ``altsvc`` variant
first loads the page over TLS/TCP with curl (HTTP/2), reads caddy's ``Alt-Svc: h3`` header and then
switches to HTTP/3, as a browser does; ``direct`` starts on QUIC.
"""

from __future__ import annotations

__all__ = ["Http3"]

import hashlib
import json
import time
from pathlib import Path
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web
from sluice.lab.traffic import TrafficReport, plan_mix


def _caddy_log_to_lab(caddy_log: Path, lab_log: Path) -> dict[str, int]:
    """Rewrite caddy's JSON access log in the lab server's format; count requests per protocol."""
    protos: dict[str, int] = {}
    lines = []
    for line in caddy_log.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        req = rec.get("request")
        if not isinstance(req, dict):
            continue
        proto = str(req.get("proto", ""))
        protos[proto] = protos.get(proto, 0) + 1
        lines.append(
            json.dumps(
                {
                    "client": req.get("remote_ip"),
                    "port": int(req.get("remote_port") or 0),
                    "path": req.get("uri"),
                    "status": rec.get("status"),
                    "bytes": rec.get("size"),
                    "proto": proto,
                }
            )
        )
    lab_log.write_text("\n".join(lines) + "\n")
    return protos


class Http3(Scenario):
    """HTTP/3 over QUIC v1 to caddy, with a random payload mix."""

    name = "http3"
    summary = "HTTP/3 (QUIC v1): caddy 2.6 server, aioquic client; direct or via Alt-Svc from HTTP/2"
    traffic_class = "benign"
    family = "quic"
    programs: ClassVar[dict[str, str]] = {"caddy": "caddy"}
    variants = ("direct", "altsvc")

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo, w = s.addr, s.topo, s.workdir
        name = s.hostname()
        cert = s.ca.issue(name)
        port = s.port("port", 443, 0.7)
        cipher = s.choose("quic_cipher", ("", "aes128", "aes256", "chacha20"))
        dgram = s.choose("max_datagram_size", (1200, 1252, 1350))
        caddy_log = w / "caddy-access.log"
        xdg = w / "caddy-home"
        xdg.mkdir()
        caddyfile = s.file(
            "Caddyfile",
            f"""{{
  admin off
  auto_https off
  storage file_system {xdg}
  servers {{
    protocols h1 h2 h3
  }}
}}
https://{name}:{port} {{
  bind {a.server_ip}
  tls {cert.cert} {cert.key}
  root * {s.site.root}
  file_server
  log {{
    output file {caddy_log}
    format json
  }}
}}
""",
        )
        env = {"HOME": str(xdg), "XDG_DATA_HOME": str(xdg), "XDG_CONFIG_HOME": str(xdg)}
        topo.spawn(
            "server", "caddy", ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"], env=env
        )
        topo.wait_port("server", port, "udp")
        topo.wait_port("server", port, "tcp")
        base = f"https://{name}:{port}"
        rep = TrafficReport()
        software = ["caddy", "python3"]
        altsvc_ok = False
        if variant == "altsvc":
            r = topo.run(
                "client",
                [
                    "curl",
                    "-sS",
                    "--http2",
                    "--cacert",
                    str(s.ca.cert),
                    "--resolve",
                    f"{name}:{port}:{a.server_ip}",
                    "-D",
                    "-",
                    "-o",
                    str(w / "index-h2.html"),
                    f"{base}/index.html",
                ],
            )
            alt = [ln for ln in r.stdout.splitlines() if ln.lower().startswith("alt-svc:")]
            s.params["alt_svc"] = alt[0].split(":", 1)[1].strip() if alt else None
            data = (w / "index-h2.html").read_bytes()
            h2_ok = hashlib.sha256(data).hexdigest() == s.site.files["index.html"][1]
            altsvc_ok = bool(alt) and "h3" in alt[0] and h2_ok
            software.append("curl")
        actions = plan_mix(s.rng, s.site, s.duration_s)
        s.params["mix"] = [act.kind for act in actions]
        h3 = [
            s.python,
            "-m",
            "sluice.lab.h3client",
            base,
            "--connect",
            a.server_ip,
            "--cafile",
            str(s.ca.cert),
            "--max-datagram-size",
            str(dgram),
        ]
        if cipher:
            h3 += ["--cipher", cipher]
        for act in actions:
            if act.kind == "idle":
                time.sleep(act.pause_s)
                continue
            gap = ["--gap", f"{act.pause_s:.3f}"] if act.kind == "interactive" else []
            r = topo.run("client", [*h3, *gap, *act.files], check=False, timeout=40)
            got = {}
            for line in r.stdout.splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    got[rec["name"]] = rec
            for fname in act.files:
                size, digest = s.site.files[fname]
                rec = got.get(fname)
                if rec and rec["status"] == 200 and rec["size"] == size and rec["sha256"] == digest:
                    rep.ok += 1
                    rep.bytes_ok += size
                    rep.files_ok.append(fname)
                else:
                    rep.failed += 1
                    rep.errors.append(f"{act.kind} {fname}: {rec} {r.stderr.strip()[-160:]}")
        time.sleep(0.3)  # caddy writes its access log after the response
        lab_log = w / "caddy-requests.jsonl"
        protos = _caddy_log_to_lab(caddy_log, lab_log)
        out = Outcome(
            rules=[
                FlowRule("carrier", PROTO["udp"], a.server_ip, port, "benign", "quic"),
                FlowRule("altsvc", PROTO["tcp"], a.server_ip, port, "benign", "tls", carrier=False),
            ],
            software=software,
        )
        out.checks["requests_by_proto"] = [f"{k}={v}" for k, v in sorted(protos.items())]
        h3_requests = protos.get("HTTP/3.0", 0)
        out.checks["h3_requests"] = h3_requests
        verify_web(rep, out, lab_log, [a.client_ip])
        if h3_requests < rep.ok:
            out.problems.append(f"caddy saw {h3_requests} HTTP/3 requests, client verified {rep.ok}")
        if variant == "altsvc":
            out.checks["altsvc_h2_page_ok"] = altsvc_ok
            if not altsvc_ok:
                out.problems.append(f"HTTP/2 page load without h3 Alt-Svc or with wrong bytes: {alt}")
        return out
