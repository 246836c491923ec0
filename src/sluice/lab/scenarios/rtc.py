"""WebRTC-like media: a STUN binding exchange, then a steady two-way RTP-like UDP stream.

Peers are :mod:`sluice.lab.rtp` (a small Python STUN responder and RTP sender/receiver, packets
every 20 ms for audio or 5 ms for video, RTCP reports and STUN consent checks on the media
socket).  Every packet is checked byte for byte by its receiver; the session counts when each
side got all that the other sent.
"""

from __future__ import annotations

__all__ = ["WebRtcMedia"]

import json
from typing import ClassVar

from sluice.lab.httpd import read_server_log
from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session


class WebRtcMedia(Scenario):
    """STUN binding requests, then bidirectional RTP-like audio or video over UDP."""

    name = "webrtc-media"
    summary = "STUN binding + steady two-way RTP-like UDP (20 ms audio / 5 ms video), Python peers"
    traffic_class = "benign"
    family = "app:webrtc"
    programs: ClassVar[dict[str, str]] = {"python3": "python3"}  # the peers are sluice.lab.rtp
    variants = ("audio", "video")

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        stun_port = s.port("stun_port", 3478, 0.7)
        media_port = s.rng.randrange(10000, 60000)
        if media_port == stun_port:
            media_port += 1
        s.params["media_port"] = media_port
        seed = s.rng.randrange(1 << 30)
        log = s.workdir / "rtp-server.jsonl"
        common = ["--stun-port", str(stun_port), "--media-port", str(media_port)]
        common += ["--seed", str(seed), "--kind", variant]
        s.topo.spawn(
            "server",
            "rtp",
            [s.python, "-m", "sluice.lab.rtp", "serve", "--bind", a.server_ip, "--log", str(log), *common],
        )
        s.topo.wait_port("server", media_port, "udp")
        s.identify(stack="python-rtp", impl="python-rtp")
        duration = max(s.duration_s, 1.0)
        argv = [s.python, "-m", "sluice.lab.rtp", "call", "--connect", a.server_ip, *common]
        argv += ["--duration", str(duration), "--stun-requests", str(s.rng.randrange(1, 4))]
        argv += ["--consent-s", str(s.choose("consent_s", (0.5, 1.0, 2.5, 5.0)))]
        r = s.topo.run("client", argv, timeout=duration + 30)
        cli = next(json.loads(x) for x in reversed(r.stdout.splitlines()) if x.startswith("{"))
        recs = [x for x in read_server_log(log) if x.get("client") == a.client_ip]
        out = Outcome(
            rules=[
                FlowRule("stun", PROTO["udp"], a.server_ip, stun_port, "benign", "app:stun", carrier=False),
                FlowRule("carrier", PROTO["udp"], a.server_ip, media_port, "benign", "app:webrtc"),
            ],
            software=["python3"],
        )
        out.checks |= {f"client_{k}": v for k, v in cli.items() if isinstance(v, int | bool)}
        if len(recs) != 1:
            out.problems.append(f"server logged {len(recs)} calls from the client, expected 1")
            return out
        srv = recs[0]
        out.checks |= {f"server_{k}": v for k, v in srv.items() if isinstance(v, int)}
        if cli["stun_ok"] < 1 or not cli["ice_check_ok"]:
            out.problems.append(
                f"STUN: {cli['stun_ok']} mapped addresses right, ICE check {cli['ice_check_ok']}"
            )
        if srv["rx_ok"] != cli["tx"] or srv["rx_bad"]:
            out.problems.append(
                f"server verified {srv['rx_ok']} of {cli['tx']} packets ({srv['rx_bad']} bad)"
            )
        if cli["rx_ok"] != srv["tx"] or cli["rx_bad"] or not cli["bye_ack"]:
            out.problems.append(
                f"client verified {cli['rx_ok']} of {srv['tx']} ({cli['rx_bad']} bad, bye {cli['bye_ack']})"
            )
        out.carried_bytes = int(srv["rx_bytes"]) + int(cli["rx_bytes"])
        return out
