"""The lab's HTTP/3 client (aioquic): GET files over one QUIC connection, one JSON line per file.

Run inside a lab namespace as ``python -m sluice.lab.h3client URL_BASE --connect IP --cafile CA
FILE...``.  Each line of its output is ``{"name": f, "status": s, "size": n, "sha256": hex}``;
the scenario compares it with the site it served (Debian 12's curl has no HTTP/3).
``--gap S`` waits S seconds between requests (interactive-like); without it the requests are
sent at once on parallel streams (a page load).
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import hashlib
import json
import ssl
from typing import Any, cast
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from aioquic.tls import CipherSuite


class _Stream:
    def __init__(self, fut: asyncio.Future[_Stream]) -> None:
        self.fut = fut
        self.status = 0
        self.size = 0
        self.digest = hashlib.sha256()


class _H3Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.streams: dict[int, _Stream] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for ev in self.h3.handle_event(event):
            self._h3_event(ev)

    def _h3_event(self, ev: H3Event) -> None:
        st = self.streams.get(getattr(ev, "stream_id", -1))
        if st is None:
            return
        if isinstance(ev, HeadersReceived):
            st.status = int(dict(ev.headers).get(b":status", b"0"))
        elif isinstance(ev, DataReceived):
            st.size += len(ev.data)
            st.digest.update(ev.data)
        if getattr(ev, "stream_ended", False) and not st.fut.done():
            st.fut.set_result(st)

    async def get(self, authority: str, path: str) -> _Stream:
        sid = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) sluice-lab"),
            (b"accept", b"*/*"),
        ]
        self.h3.send_headers(sid, headers, end_stream=True)
        st = _Stream(asyncio.get_running_loop().create_future())
        self.streams[sid] = st
        self.transmit()
        return await st.fut


_SUITES = {
    "aes128": CipherSuite.AES_128_GCM_SHA256,
    "aes256": CipherSuite.AES_256_GCM_SHA384,
    "chacha20": CipherSuite.CHACHA20_POLY1305_SHA256,
}


async def _run(a: argparse.Namespace) -> None:
    u = urlparse(a.base)
    host = u.hostname or ""
    port = u.port or 443
    cfg = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=host,
        max_datagram_size=a.max_datagram_size,
        idle_timeout=a.idle_timeout,
    )
    if a.cipher:
        cfg.cipher_suites = [_SUITES[a.cipher]]
    if a.cafile:
        cfg.load_verify_locations(a.cafile)
    else:
        cfg.verify_mode = ssl.CERT_NONE
    authority = host if port == 443 else f"{host}:{port}"
    base = u.path.rstrip("/")
    async with connect(a.connect or host, port, configuration=cfg, create_protocol=_H3Client) as proto:
        client = cast(_H3Client, proto)

        async def one(name: str) -> None:
            st = await asyncio.wait_for(client.get(authority, f"{base}/{name}"), a.timeout)
            rec = {"name": name, "status": st.status, "size": st.size, "sha256": st.digest.hexdigest()}
            print(json.dumps(rec), flush=True)

        if a.gap > 0:
            for i, name in enumerate(a.files):
                if i:
                    await asyncio.sleep(a.gap)
                await one(name)
        else:
            await asyncio.gather(*(one(n) for n in a.files))


def main(argv: list[str] | None = None) -> None:
    """Fetch the files and print one JSON line per file."""
    ap = argparse.ArgumentParser(prog="sluice.lab.h3client")
    ap.add_argument("base", help="https://host:port/prefix")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--connect", help="address to connect to (instead of resolving host)")
    ap.add_argument("--cafile")
    ap.add_argument("--gap", type=float, default=0.0, help="seconds between requests")
    ap.add_argument("--cipher", choices=sorted(_SUITES))
    ap.add_argument("--max-datagram-size", type=int, default=1200)
    ap.add_argument("--idle-timeout", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    asyncio.run(_run(ap.parse_args(argv)))


if __name__ == "__main__":
    main()
