"""Video-like streaming over HTTPS: HLS playlists with paced segments, or one server-paced live response.

A player fetches a playlist, fills its buffer with a few segments at once, then fetches one segment
per segment duration: a steady, long, one-way flow of similar-sized bursts.  A live stream is one
long chunked response the server paces.  Every segment and the whole live stream are checked by
digest on the client, the live stream also in the server's log.
"""

from __future__ import annotations

__all__ = ["Streaming"]

import hashlib
from typing import ClassVar

from sluice.lab.bulkd import paced_digest
from sluice.lab.httpd import read_server_log
from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session
from sluice.lab.scenarios.longtail import bulkd_argv, shaped_bps, start_nginx_custom


class Streaming(Scenario):
    """Video-like streaming over HTTPS: an HLS playlist and paced segments, or one paced live response."""

    name = "streaming"
    summary = "HLS-like segments at a steady pace (nginx) or a server-paced chunked live stream (Python)"
    traffic_class = "benign"
    family = "tls"
    programs: ClassVar[dict[str, str]] = {"nginx": "nginx-light"}
    variants = ("hls-nginx", "live-python", "hls-nginx-h2")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        name = s.hostname()
        cert = s.ca.issue(name)
        port = s.port("port", 443, 0.8)
        kbit = s.choose("bitrate_kbit", (300, 800, 1500, 3000, 6000))
        kbit = int(min(kbit, shaped_bps(s) / 125 * 0.5))
        curl = ["curl", "-sS", "--cacert", str(s.ca.cert), "--resolve", f"{name}:{port}:{a.server_ip}"]
        base = f"https://{name}:{port}"
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "tls")],
            software=["nginx" if variant.startswith("hls") else "python3", "curl"],
        )
        s.identify(stack="curl-openssl", impl="nginx" if variant.startswith("hls") else "python-http.server")
        if variant.startswith("hls"):
            seg_s = min(s.choose("segment_s", (1, 2, 4)), max(1, int(s.duration_s)))
            n = max(4, int(s.duration_s / seg_s) + 3)
            buffer = min(n - 2, s.rng.randrange(1, 4))
            s.params |= {"segments": n, "buffered": buffer}
            media = s.workdir / "www" / "media"
            media.mkdir(parents=True, exist_ok=True)
            digests = {}
            lines = [
                "#EXTM3U",
                "#EXT-X-VERSION:3",
                f"#EXT-X-TARGETDURATION:{seg_s}",
                "#EXT-X-MEDIA-SEQUENCE:0",
            ]
            for i in range(n):
                size = int(kbit * 125 * seg_s * s.rng.uniform(0.7, 1.3))
                data = s.rng.randbytes(size)
                (media / f"seg{i:05d}.ts").write_bytes(data)
                digests[f"seg{i:05d}.ts"] = hashlib.sha256(data).hexdigest()
                lines += [f"#EXTINF:{seg_s}.000,", f"seg{i:05d}.ts"]
            (media / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
            h2 = variant.endswith("h2")
            curl += ["--http2"] if h2 else ["--http1.1"]
            start_nginx_custom(
                s, port, (cert.cert, cert.key), "location /media/ { add_header Cache-Control max-age=60; }"
            )
            dl = s.workdir / "dl"
            dl.mkdir()
            names = list(digests)

            def fetch(files: list[str], rate: str | None) -> None:
                argv = [*curl, "--max-time", str(int(len(files) * seg_s + 30))]
                if rate:
                    argv += ["--rate", rate]
                for f in files:
                    argv += ["-o", str(dl / f), f"{base}/media/{f}"]
                s.topo.run("client", argv, check=False, timeout=len(files) * seg_s + 40)

            fetch(["index.m3u8", *names[:buffer]], None)
            fetch(names[buffer:], f"{60 // seg_s}/m")
            ok = sum(
                1
                for f, d in digests.items()
                if (dl / f).exists() and hashlib.sha256((dl / f).read_bytes()).hexdigest() == d
            )
            got_pl = (dl / "index.m3u8").exists()
            out.checks |= {"segments_ok": ok, "segments": n, "playlist_ok": got_pl}
            total = sum((media / f).stat().st_size for f in names)
            if ok != n or not got_pl:
                out.problems.append(f"{ok} of {n} segments verified (playlist {got_pl})")
        else:
            chunk = s.choose("chunk_bytes", (1316 * 7, 16384, 65536))
            interval_ms = max(10, int(chunk * 8 / kbit))
            total = chunk * max(4, int(s.duration_s * 1000 / interval_ms))
            seed = s.rng.randrange(1 << 30)
            log = s.workdir / "bulkd.jsonl"
            s.topo.spawn(
                "server",
                "bulkd",
                bulkd_argv(s, port, log, cert.cert, cert.key),
            )
            s.topo.wait_port("server", port)
            dest = s.workdir / "live.ts"
            t = total / chunk * interval_ms / 1000
            url = f"{base}/live/{seed}/{total}/{chunk}/{interval_ms}"
            s.topo.run(
                "client",
                [*curl, "--max-time", str(int(t + 30)), "-o", str(dest), url],
                check=False,
                timeout=t + 40,
            )
            want = paced_digest(seed, total, chunk)
            ok_c = dest.exists() and hashlib.sha256(dest.read_bytes()).hexdigest() == want
            recs = [x for x in read_server_log(log) if x.get("client") == a.client_ip]
            ok_s = any(x.get("sha256") == want for x in recs)
            out.checks |= {"stream_ok": ok_c, "server_sent_ok": ok_s, "chunks": total // chunk}
            if not (ok_c and ok_s):
                out.problems.append(f"live stream: client digest ok {ok_c}, server log ok {ok_s}")
        out.checks["payload_bytes"] = total
        out.carried_bytes = total
        return out
