"""A small Stratum v1 mining pool and a CPU miner for the lab (scrypt, Litecoin's proof of work).

Debian packages no Stratum pool or miner that works offline (``cpuminer``, ``cgminer``,
``bfgminer``, ``xmrig`` are not in bookworm) and PyPI's ``stratum`` (0.2.15, 2014) is a Python 2
Twisted library, so both ends are written here, after the Stratum v1 specification as the
Bitcoin/Litecoin pools and cpuminer use it:

* ``mining.subscribe`` → ``[[["mining.set_difficulty", id], ["mining.notify", id]], extranonce1,
  extranonce2_size]``; ``mining.authorize`` → ``true``;
* the pool pushes ``mining.set_difficulty`` and ``mining.notify`` (job id, previous hash in
  Stratum's word-swapped hex, coinbase parts 1 and 2, merkle branch, version, nbits, ntime,
  clean_jobs), a new job every few seconds;
* ``mining.submit`` (worker, job id, extranonce2, ntime, nonce) → ``true`` or an error
  (``[21, "Job not found"]``, ``[23, "Low difficulty share"]``, ``[22, "Duplicate share"]``).

The miner really hashes: coinbase = coinb1 + extranonce1 + extranonce2 + coinb2, merkle root from
the branch, an 80-byte header, scrypt(N=1024, r=1, p=1) against the share target (scrypt pools'
difficulty 1 = 65536 expected hashes); the pool recomputes every submitted share and accepts it
only when the hash meets the target. It is not a real coin's chain: the jobs are made up by the
pool (random previous hashes and coinbase outputs), so no block is ever found.

``python -m sluice.lab.stratum_pool serve --bind IP --port N --log FILE --difficulty D``
``python -m sluice.lab.stratum_pool mine --host IP --port N --user W --seconds S`` (prints a JSON
summary on its last line).
"""

from __future__ import annotations

__all__ = ["header", "main", "merkle_root", "scrypt_hash", "share_target"]

import argparse
import asyncio
import hashlib
import json
import random
import secrets
import struct
import sys
import time
from pathlib import Path
from typing import Any

DIFF1 = 0x0000FFFF << 208
"""Bitcoin's difficulty-1 target; scrypt pools' share difficulty d means DIFF1 * 65536 / d."""


def sha256d(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def scrypt_hash(hdr: bytes) -> int:
    """Litecoin's proof-of-work hash of an 80-byte header, as an integer (little-endian)."""
    return int.from_bytes(hashlib.scrypt(hdr, salt=hdr, n=1024, r=1, p=1, dklen=32), "little")


def share_target(difficulty: float) -> int:
    """Share target of a scrypt pool's difficulty (65536 × difficulty expected hashes)."""
    return min(int(DIFF1 * 65536 / difficulty), (1 << 256) - 1)


def swap4(b: bytes) -> bytes:
    """Reverse the bytes of every 4-byte word (Stratum's previous-hash encoding)."""
    return b"".join(b[i : i + 4][::-1] for i in range(0, len(b), 4))


def merkle_root(coinbase: bytes, branch: list[str]) -> bytes:
    root = sha256d(coinbase)
    for h in branch:
        root = sha256d(root + bytes.fromhex(h))
    return root


def header(job: list[Any], extranonce1: str, extranonce2: str, ntime: str, nonce: int) -> bytes:
    """The 80-byte block header of a ``mining.notify`` job with the miner's choices."""
    _job_id, prevhash, coinb1, coinb2, branch, version, nbits = job[:7]
    coinbase = bytes.fromhex(coinb1 + extranonce1 + extranonce2 + coinb2)
    return (
        struct.pack("<I", int(version, 16))
        + swap4(bytes.fromhex(prevhash))
        + merkle_root(coinbase, branch)
        + struct.pack("<I", int(ntime, 16))
        + struct.pack("<I", int(nbits, 16))
        + struct.pack("<I", nonce)
    )


def _dumps(obj: dict[str, Any], style: str) -> bytes:
    if style == "spaced":  # cpuminer / cgminer style: json.dumps defaults
        return (json.dumps(obj) + "\n").encode()
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class Pool:
    """The pool side: one instance serves every connection."""

    def __init__(self, log: Path, difficulty: float, job_interval: float, style: str, order: str) -> None:
        self.log = log.open("a", buffering=1)
        self.difficulty = difficulty
        self.job_interval = job_interval
        self.style = style
        self.order = order
        self.rng = random.Random(secrets.randbits(64))  # noqa: S311 (made-up jobs, not secrets)

    def event(self, **rec: Any) -> None:
        self.log.write(json.dumps({"t": round(time.time(), 4), **rec}) + "\n")

    def reply(self, msg_id: Any, result: Any, error: Any = None) -> bytes:
        if self.order == "result-first":  # ckpool style
            return _dumps({"result": result, "id": msg_id, "error": error}, self.style)
        return _dumps({"id": msg_id, "result": result, "error": error}, self.style)

    def new_job(self, n: int) -> list[Any]:
        rnd = self.rng.randbytes
        height = self.rng.randrange(2_000_000, 3_000_000)
        script = bytes([3]) + height.to_bytes(3, "little")
        coinb1 = (
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff"
            + f"{len(script) + 8 + 1:02x}"
            + script.hex()
        )
        coinb2 = "ffffffff01" + (self.rng.randrange(10**8, 10**9)).to_bytes(8, "little").hex() + "1976a914"
        coinb2 += rnd(20).hex() + "88ac00000000"
        branch = [rnd(32).hex() for _ in range(self.rng.randrange(0, 7))]
        return [
            f"{n:x}",
            swap4(rnd(32)).hex(),
            coinb1,
            coinb2,
            branch,
            "20000000",
            "1e0ffff0",
            f"{int(time.time()):08x}",
            True,
        ]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        extranonce1 = secrets.token_hex(4)
        jobs: dict[str, list[Any]] = {}
        seen: set[tuple[str, ...]] = set()
        authorized = asyncio.Event()
        counter = 0

        async def push_jobs() -> None:
            nonlocal counter
            await authorized.wait()
            writer.write(
                _dumps(
                    {"id": None, "method": "mining.set_difficulty", "params": [self.difficulty]}, self.style
                )
            )
            while True:
                counter += 1
                job = self.new_job(counter)
                job[8] = counter == 1 or self.rng.random() < 0.3
                if job[8]:
                    jobs.clear()
                jobs[job[0]] = job
                writer.write(_dumps({"id": None, "method": "mining.notify", "params": job}, self.style))
                await writer.drain()
                self.event(kind="job", peer=str(peer), job_id=job[0], clean=job[8])
                await asyncio.sleep(self.job_interval * self.rng.uniform(0.6, 1.4))

        pusher = asyncio.create_task(push_jobs())
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                method, params, msg_id = msg.get("method"), msg.get("params", []), msg.get("id")
                if method == "mining.subscribe":
                    sub = secrets.token_hex(8)
                    res = [[["mining.set_difficulty", sub], ["mining.notify", sub]], extranonce1, 4]
                    writer.write(self.reply(msg_id, res))
                    self.event(kind="subscribe", peer=str(peer), agent=params[0] if params else "")
                elif method == "mining.authorize":
                    writer.write(self.reply(msg_id, True))
                    self.event(kind="authorize", peer=str(peer), worker=params[0])
                    authorized.set()
                elif method == "mining.submit":
                    worker, job_id, en2, ntime, nonce = params
                    key = (job_id, en2, ntime, nonce)
                    job = jobs.get(job_id)
                    if job is None:
                        writer.write(self.reply(msg_id, None, [21, "Job not found", None]))
                        self.event(kind="share", ok=False, reason="stale", job_id=job_id)
                    elif key in seen:
                        writer.write(self.reply(msg_id, None, [22, "Duplicate share", None]))
                        self.event(kind="share", ok=False, reason="duplicate", job_id=job_id)
                    else:
                        seen.add(key)
                        h = scrypt_hash(header(job, extranonce1, en2, ntime, int(nonce, 16)))
                        ok = h <= share_target(self.difficulty)
                        err = None if ok else [23, "Low difficulty share", None]
                        writer.write(self.reply(msg_id, True if ok else None, err))
                        self.event(kind="share", ok=ok, worker=worker, job_id=job_id, hash=f"{h:064x}")
                else:
                    writer.write(self.reply(msg_id, None, [20, "Unknown method", None]))
                await writer.drain()
        except (ConnectionError, json.JSONDecodeError, ValueError) as exc:
            self.event(kind="error", peer=str(peer), error=repr(exc))
        finally:
            pusher.cancel()
            writer.close()
            self.event(kind="closed", peer=str(peer))


async def _serve(args: argparse.Namespace) -> None:
    pool = Pool(Path(args.log), args.difficulty, args.job_interval, args.style, args.order)
    server = await asyncio.start_server(pool.handle, args.bind, args.port)
    async with server:
        await server.serve_forever()


async def _mine(args: argparse.Namespace) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(args.host, args.port)
    sent = recv = 0
    stats = {"submitted": 0, "accepted": 0, "rejected": 0, "hashes": 0, "jobs": 0}
    msg_id = 0
    pending: dict[int, str] = {}
    state: dict[str, Any] = {"job": None, "difficulty": 1.0, "extranonce1": "", "en2_size": 4}
    got_job = asyncio.Event()

    async def send(method: str, params: list[Any]) -> int:
        nonlocal msg_id, sent
        msg_id += 1
        data = _dumps({"id": msg_id, "method": method, "params": params}, args.style)
        sent += len(data)
        writer.write(data)
        await writer.drain()
        pending[msg_id] = method
        return msg_id

    async def read_loop() -> None:
        nonlocal recv
        while line := await reader.readline():
            recv += len(line)
            msg = json.loads(line)
            if msg.get("method") == "mining.notify":
                state["job"] = msg["params"]
                stats["jobs"] += 1
                got_job.set()
            elif msg.get("method") == "mining.set_difficulty":
                state["difficulty"] = float(msg["params"][0])
            elif msg.get("id") in pending:
                method = pending.pop(msg["id"])
                if method == "mining.subscribe":
                    state["extranonce1"], state["en2_size"] = msg["result"][1], msg["result"][2]
                elif method == "mining.submit":
                    stats["accepted" if msg.get("result") is True else "rejected"] += 1

    reading = asyncio.create_task(read_loop())
    await send("mining.subscribe", [args.agent])
    await send("mining.authorize", [args.user, args.password])
    await asyncio.wait_for(got_job.wait(), 30)
    deadline = time.monotonic() + args.seconds
    en2_counter = 0
    hard_end = deadline + 2 * args.seconds
    while time.monotonic() < deadline or (
        stats["submitted"] < args.min_shares and time.monotonic() < hard_end
    ):
        job = state["job"]
        en2_counter += 1
        en2 = en2_counter.to_bytes(state["en2_size"], "big").hex()
        ntime = job[7]
        target = share_target(state["difficulty"])
        prefix = header(job, state["extranonce1"], en2, ntime, 0)[:76]
        nonce = 0
        # hash in slices so notifications are read between them
        while state["job"] is job and nonce < 0xFFFFFFFF:
            if time.monotonic() >= (deadline if stats["submitted"] >= args.min_shares else hard_end):
                break
            for _ in range(64):
                hdr = prefix + struct.pack("<I", nonce)
                stats["hashes"] += 1
                if scrypt_hash(hdr) <= target:
                    stats["submitted"] += 1
                    await send("mining.submit", [args.user, job[0], en2, ntime, f"{nonce:08x}"])
                nonce += 1
            await asyncio.sleep(0)
    # wait for the answers to the last submissions
    end = time.monotonic() + 10
    while any(m == "mining.submit" for m in pending.values()) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    writer.close()
    reading.cancel()
    return {**stats, "bytes_sent": sent, "bytes_received": recv, "extranonce1": state["extranonce1"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sluice.lab.stratum_pool")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--difficulty", type=float, default=0.03)
    s.add_argument("--job-interval", type=float, default=4.0)
    s.add_argument("--style", choices=("spaced", "compact"), default="compact")
    s.add_argument("--order", choices=("id-first", "result-first"), default="id-first")
    m = sub.add_parser("mine")
    m.add_argument("--host", required=True)
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--user", required=True)
    m.add_argument("--password", default="x")
    m.add_argument("--agent", default="sluice-lab-miner/1.0")
    m.add_argument("--seconds", type=float, default=8.0)
    m.add_argument(
        "--min-shares", type=int, default=3, help="keep mining past --seconds (up to 3x) until this many"
    )
    m.add_argument("--style", choices=("spaced", "compact"), default="spaced")
    args = p.parse_args(argv)
    if args.cmd == "serve":
        asyncio.run(_serve(args))
        return 0
    print(json.dumps(asyncio.run(_mine(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
