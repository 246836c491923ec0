"""The lab's WebSocket peers (``websockets``): a chat-like server and a client with think times.

Run inside a lab namespace as ``python -m sluice.lab.wsecho serve --bind IP --port N --log F
[--cert C --key K]`` and ``python -m sluice.lab.wsecho client URL --connect IP --seed S
--duration D [--cafile CA] [--lib aiohttp]``; the client is ``websockets``'s, or with ``--lib
aiohttp`` aiohttp's (another implementation of the framing, masking, deflate and pings, holding
the same conversation).  The client sends small text messages with think times and
occasional bursts; the server answers each one and pushes notifications of its own.  At the end
the client sends ``bye`` and waits for ``bye-ack`` (everything the server sent before it has then
arrived).  Both sides print one JSON line with the number and SHA-256 of the messages they sent
and received (``bye``/``bye-ack`` left out), so the scenario can check both directions.
"""

from __future__ import annotations

__all__ = ["Tally", "main"]

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import secrets
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

BYE = "bye"
BYE_ACK = "bye-ack"


@dataclass(slots=True)
class Tally:
    """Count and running digest of messages one way."""

    n: int = 0
    nbytes: int = 0
    h: Any = field(default_factory=hashlib.sha256)

    def add(self, msg: str | bytes) -> None:
        """Count ``msg``."""
        data = msg.encode() if isinstance(msg, str) else msg
        self.n += 1
        self.nbytes += len(data)
        self.h.update(len(data).to_bytes(4, "big") + data)

    def json(self, prefix: str) -> dict[str, Any]:
        """``{prefix}_n``, ``{prefix}_bytes``, ``{prefix}_sha256``."""
        return {f"{prefix}_n": self.n, f"{prefix}_bytes": self.nbytes, f"{prefix}_sha256": self.h.hexdigest()}


def _payload(rng: random.Random, lo: int, hi: int) -> str:
    body = secrets.token_hex(rng.randrange(lo, hi) // 2 + 1)
    kind = rng.choice(("msg", "update", "typing", "presence", "ack"))
    return json.dumps({"t": kind, "ts": round(time.time(), 3), "body": body})


async def _serve(a: argparse.Namespace) -> None:
    logf = open(a.log, "a", encoding="utf-8")  # noqa: SIM115 (lives until exit)

    async def handler(ws: ServerConnection) -> None:
        rng = random.Random()  # noqa: S311 (variety, not secrecy)
        rx, tx = Tally(), Tally()
        done = asyncio.Event()

        async def pusher() -> None:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), rng.uniform(0.2, 1.5))
                if done.is_set():
                    break
                for _ in range(rng.choice((1, 1, 1, 2, 5))):
                    msg = _payload(rng, 16, 300)
                    tx.add(msg)
                    await ws.send(msg)

        task = asyncio.create_task(pusher())
        try:
            async for msg in ws:
                if msg == BYE:
                    done.set()
                    await task  # finishes the push it is in, so the tally matches what was sent
                    await ws.send(BYE_ACK)
                    break
                rx.add(msg)
                if rng.random() < 0.7:
                    reply = _payload(rng, 8, 200)
                    tx.add(reply)
                    await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            bye = done.is_set()
            done.set()
            task.cancel()
            addr = ws.remote_address
            rec = {"client": addr[0] if addr else "", "bye": bye, **rx.json("rx"), **tx.json("tx")}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()

    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    compression = None if a.no_compression else "deflate"
    async with serve(handler, a.bind, a.port, ssl=ctx, compression=compression, ping_interval=None):
        print(f"listening on {a.bind}:{a.port}", flush=True)
        await stop


class _Peer(Protocol):
    """What the conversation needs of a client connection: send text, iterate over text."""

    async def send(self, msg: str) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


async def _converse(ws: _Peer, a: argparse.Namespace) -> dict[str, Any]:
    """The client's side of one session: messages with think times and bursts, then bye."""
    rng = random.Random(a.seed)  # noqa: S311
    rx, tx = Tally(), Tally()
    got_ack = asyncio.Event()

    async def reader() -> None:
        async for msg in ws:
            if msg == BYE_ACK:
                got_ack.set()
                return
            rx.add(msg)

    rtask = asyncio.create_task(reader())
    t_end = time.monotonic() + a.duration
    bursts = 0
    while time.monotonic() < t_end or tx.n < 3:
        if rng.random() < a.burst_p:
            bursts += 1
            for _ in range(rng.randrange(5, 30)):
                msg = _payload(rng, 16, 400)
                tx.add(msg)
                await ws.send(msg)
                await asyncio.sleep(rng.uniform(0.0, 0.02))
        else:
            msg = _payload(rng, 16, 400)
            tx.add(msg)
            await ws.send(msg)
        await asyncio.sleep(rng.uniform(a.think_min, a.think_max))
    await ws.send(BYE)
    await asyncio.wait_for(got_ack.wait(), 15)
    await rtask
    return {"bursts": bursts, **tx.json("tx"), **rx.json("rx")}


def _client_tls(a: argparse.Namespace) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=a.cafile) if a.url.startswith("wss:") else None


async def _client(a: argparse.Namespace) -> dict[str, Any]:
    compression = None if a.no_compression else "deflate"
    ping = a.ping_interval if a.ping_interval > 0 else None
    async with connect(
        a.url,
        ssl=_client_tls(a),
        host=a.connect,
        compression=compression,
        ping_interval=ping,
        open_timeout=10,
    ) as ws:
        return await _converse(ws, a)


class _AiohttpPeer:
    """aiohttp's client WebSocket as a :class:`_Peer` (its messages are typed frames)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, msg: str) -> None:
        await self.ws.send_str(msg)

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        import aiohttp

        async for m in self.ws:
            if m.type == aiohttp.WSMsgType.TEXT:
                yield m.data
            elif m.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return


async def _client_aiohttp(a: argparse.Namespace) -> dict[str, Any]:
    """The same session from aiohttp's WebSocket client (its own framing, deflate and pings)."""
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

    class Pinned(AbstractResolver):  # the URL names the host; --connect says where it is
        async def resolve(
            self, host: str, port: int = 0, family: int = socket.AF_INET
        ) -> list[ResolveResult]:
            return [
                ResolveResult(
                    hostname=host,
                    host=a.connect,
                    port=port,
                    family=family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]

        async def close(self) -> None:
            return None

    connector = aiohttp.TCPConnector(resolver=Pinned())
    ping = a.ping_interval if a.ping_interval > 0 else None
    async with (
        aiohttp.ClientSession(connector=connector) as sess,
        sess.ws_connect(
            a.url,
            ssl=_client_tls(a) or False,
            compress=0 if a.no_compression else 15,
            heartbeat=ping,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10),
        ) as ws,
    ):
        return await _converse(_AiohttpPeer(ws), a)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM, or run one client session and print its tally."""
    ap = argparse.ArgumentParser(prog="sluice.lab.wsecho")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--bind", required=True)
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--log", required=True)
    sv.add_argument("--cert")
    sv.add_argument("--key")
    sv.add_argument("--no-compression", action="store_true")
    cl = sub.add_parser("client")
    cl.add_argument("url")
    cl.add_argument("--connect", required=True, help="server address (the URL names the host)")
    cl.add_argument("--cafile")
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--duration", type=float, default=3.0)
    cl.add_argument("--think-min", type=float, default=0.1)
    cl.add_argument("--think-max", type=float, default=1.0)
    cl.add_argument("--burst-p", type=float, default=0.1)
    cl.add_argument("--ping-interval", type=float, default=20.0)
    cl.add_argument("--no-compression", action="store_true")
    cl.add_argument("--lib", choices=("websockets", "aiohttp"), default="websockets", help="client library")
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        asyncio.run(_serve(a))
    else:
        run = _client_aiohttp if a.lib == "aiohttp" else _client
        print(json.dumps(asyncio.run(run(a))), flush=True)


if __name__ == "__main__":
    main()
