"""The lab's WebRTC-like peers: STUN binding (RFC 5389) and a steady two-way RTP-like UDP stream.

Run inside a lab namespace as ``python -m sluice.lab.rtp serve --bind IP --stun-port P
--media-port M --seed S --kind audio|video --log F`` and ``python -m sluice.lab.rtp call
--connect IP ...`` with the same seed and kind.  The caller asks the STUN port for its mapped
address, sends an ICE-like binding check to the media port, then both ends send RTP packets
(audio: every 20 ms, 60-200 bytes; video: every 5 ms, 800-1200 bytes) with RTCP reports and
periodic STUN consent checks on the same socket, until the caller sends an RTCP BYE and the
server answers with one.  Payloads are derived from (seed, direction, sequence number), so each
receiver checks every packet byte for byte; both ends print or log one JSON line of counts.
"""

from __future__ import annotations

__all__ = ["main", "payload"]

import argparse
import hashlib
import json
import os
import select
import socket
import struct
import time
from typing import Any

MAGIC = 0x2112A442
_KINDS = {"audio": (0.020, 60, 200, 111), "video": (0.005, 800, 1200, 96)}


def payload(seed: int, direction: str, seq: int, kind: str) -> bytes:
    """The payload of packet ``seq`` sent in ``direction`` (``up`` or ``down``)."""
    _, lo, hi, _ = _KINDS[kind]
    h = hashlib.shake_128(f"{seed}/{direction}/{seq}".encode())
    size = lo + int.from_bytes(h.digest(2), "big") % (hi - lo + 1)
    return h.digest(2 + size)[2:]


def _stun_request(txid: bytes) -> bytes:
    return struct.pack("!HHI", 0x0001, 0, MAGIC) + txid


def _stun_response(req: bytes, addr: tuple[str, int]) -> bytes:
    port = addr[1] ^ (MAGIC >> 16)
    ip = struct.unpack("!I", socket.inet_aton(addr[0]))[0] ^ MAGIC
    attr = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, port, ip)
    return struct.pack("!HHI", 0x0101, len(attr), MAGIC) + req[8:20] + attr


def _mapped(resp: bytes) -> tuple[str, int] | None:
    if len(resp) < 32 or resp[:2] != b"\x01\x01":
        return None
    *_, xport, xip = struct.unpack("!HHBBHI", resp[20:32])
    return socket.inet_ntoa(struct.pack("!I", xip ^ MAGIC)), xport ^ (MAGIC >> 16)


def _is_stun(data: bytes) -> bool:
    return len(data) >= 20 and data[0] < 2 and struct.unpack("!I", data[4:8])[0] == MAGIC


def _rtp(kind: str, seq: int, ssrc: int, ts: int, body: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, _KINDS[kind][3], seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + body


def _rtcp(pt: int, ssrc: int) -> bytes:
    if pt == 203:  # BYE
        return struct.pack("!BBHI", 0x81, 203, 1, ssrc)
    return struct.pack("!BBHI", 0x80, 200, 6, ssrc) + os.urandom(20)  # SR without report blocks


class _Rx:
    def __init__(self, seed: int, direction: str, kind: str) -> None:
        self.seed, self.direction, self.kind = seed, direction, kind
        self.ok = self.bad = self.nbytes = self.rtcp = self.stun = 0
        self.wraps = 0
        self.last = -1

    def take(self, data: bytes) -> None:
        if len(data) >= 2 and 200 <= data[1] <= 204:
            self.rtcp += 1
            return
        if len(data) < 12 or data[0] != 0x80:
            self.bad += 1
            return
        seq16 = struct.unpack("!H", data[2:4])[0]
        seq = seq16 + (self.wraps << 16)
        if self.last >= 0 and seq < self.last - 30000:
            self.wraps += 1
            seq += 1 << 16
        self.last = max(self.last, seq)
        if data[12:] == payload(self.seed, self.direction, seq, self.kind):
            self.ok += 1
            self.nbytes += len(data) - 12
        else:
            self.bad += 1


def _serve(a: argparse.Namespace) -> None:
    stun = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stun.bind((a.bind, a.stun_port))
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind((a.bind, a.media_port))
    interval = _KINDS[a.kind][0]
    logf = open(a.log, "a", encoding="utf-8")  # noqa: SIM115 (lives until exit)
    print(f"listening on {a.bind}:{a.stun_port}+{a.media_port}", flush=True)
    ssrc = int.from_bytes(os.urandom(4), "big")
    peer: tuple[str, int] | None = None
    rx = _Rx(a.seed, "up", a.kind)
    sent = 0
    nxt = time.monotonic()
    stun_answers = 0
    while True:
        wait = max(0.0, nxt - time.monotonic()) if peer else 1.0
        ready, _, _ = select.select([stun, media], [], [], wait)
        for sock in ready:
            data, addr = sock.recvfrom(4096)
            if _is_stun(data):
                sock.sendto(_stun_response(data, addr), addr)
                stun_answers += 1
                if sock is media:
                    rx.stun += 1
                continue
            if sock is not media:
                continue
            if len(data) >= 2 and data[1] == 203 and peer is not None:
                media.sendto(_rtcp(203, ssrc), addr)
                rec = {
                    "client": addr[0],
                    "rx_ok": rx.ok,
                    "rx_bad": rx.bad,
                    "rx_bytes": rx.nbytes,
                    "rx_rtcp": rx.rtcp,
                    "rx_stun": rx.stun,
                    "stun_answers": stun_answers,
                    "tx": sent,
                }
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                peer, rx, sent, stun_answers = None, _Rx(a.seed, "up", a.kind), 0, 0
                continue
            if peer is None:
                peer, nxt = addr, time.monotonic()
            rx.take(data)
        if peer is not None and time.monotonic() >= nxt:
            body = payload(a.seed, "down", sent, a.kind)
            media.sendto(_rtp(a.kind, sent, ssrc, int(sent * interval * 48000), body), peer)
            sent += 1
            if sent % int(1 / interval) == 0:
                media.sendto(_rtcp(200, ssrc), peer)
            nxt += interval


def _call(a: argparse.Namespace) -> dict[str, Any]:
    interval = _KINDS[a.kind][0]
    out: dict[str, Any] = {"stun_ok": 0}
    stun = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stun.settimeout(0.5)
    stun.connect((a.connect, a.stun_port))  # so getsockname() is the address the server sees
    for _ in range(a.stun_requests):
        for _try in range(4):
            stun.send(_stun_request(os.urandom(12)))
            try:
                resp = stun.recv(2048)
            except TimeoutError:
                continue
            m = _mapped(resp)
            if m is not None and m == stun.getsockname():
                out["stun_ok"] += 1
            out["mapped"] = f"{m[0]}:{m[1]}" if m else None
            break
    stun.close()
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.connect((a.connect, a.media_port))
    media.settimeout(1.0)
    media.send(_stun_request(os.urandom(12)))  # ICE connectivity check
    out["ice_check_ok"] = _is_stun(media.recv(2048))
    ssrc = int.from_bytes(os.urandom(4), "big")
    rx = _Rx(a.seed, "down", a.kind)
    sent = 0
    t0 = nxt = time.monotonic()
    next_consent = t0 + a.consent_s
    media.setblocking(False)
    while time.monotonic() < t0 + a.duration:
        now = time.monotonic()
        if now >= nxt:
            body = payload(a.seed, "up", sent, a.kind)
            media.send(_rtp(a.kind, sent, ssrc, int(sent * interval * 48000), body))
            sent += 1
            if sent % int(1 / interval) == 0:
                media.send(_rtcp(200, ssrc))
            nxt += interval
        if now >= next_consent:
            media.send(_stun_request(os.urandom(12)))
            next_consent += a.consent_s
        ready, _, _ = select.select([media], [], [], max(0.0, min(nxt, next_consent) - time.monotonic()))
        while ready:
            try:
                data = media.recv(4096)
            except BlockingIOError:
                break
            if _is_stun(data):
                rx.stun += 1
            else:
                rx.take(data)
    media.setblocking(True)
    media.settimeout(0.5)
    bye = False
    for _ in range(6):
        media.send(_rtcp(203, ssrc))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                data = media.recv(4096)
            except TimeoutError:
                break
            if len(data) >= 2 and data[1] == 203:
                bye = True
                break
            if _is_stun(data):
                rx.stun += 1
            else:
                rx.take(data)
        if bye:
            break
    out |= {"tx": sent, "rx_ok": rx.ok, "rx_bad": rx.bad, "rx_bytes": rx.nbytes, "rx_rtcp": rx.rtcp}
    out |= {"consent_answers": rx.stun, "bye_ack": bye}
    return out


def main(argv: list[str] | None = None) -> None:
    """Serve until killed, or make one call and print its counts."""
    ap = argparse.ArgumentParser(prog="sluice.lab.rtp")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--bind", required=True)
    sv.add_argument("--log", required=True)
    cl = sub.add_parser("call")
    cl.add_argument("--connect", required=True)
    cl.add_argument("--duration", type=float, default=3.0)
    cl.add_argument("--stun-requests", type=int, default=1)
    cl.add_argument("--consent-s", type=float, default=2.0)
    for sp in (sv, cl):
        sp.add_argument("--stun-port", type=int, required=True)
        sp.add_argument("--media-port", type=int, required=True)
        sp.add_argument("--seed", type=int, required=True)
        sp.add_argument("--kind", choices=sorted(_KINDS), default="audio")
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        _serve(a)
    else:
        print(json.dumps(_call(a)), flush=True)


if __name__ == "__main__":
    main()
