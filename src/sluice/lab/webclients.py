"""Lab HTTPS clients that are not curl: Python libraries and hand-driven TLS command-line tools.

Run inside the lab's client namespace as
``python -m sluice.lab.webclients --lib LIB --cafile CA [--gap S] URL OUT [URL OUT ...]``: fetch
each URL in order (``--gap`` seconds apart) and write its body to OUT.  The caller checks the bytes.

Libraries (each is the TLS and HTTP stack that makes the traffic):

* ``urllib``: :mod:`urllib.request` over :mod:`ssl` (OpenSSL), HTTP/1.1, one connection per request.
* ``httpx``: httpx with h11 or (``--http2``) h2, one pooled connection.
* ``aiohttp``: aiohttp; a page's objects are fetched concurrently (several connections).
* ``curl-cffi``: curl-impersonate (BoringSSL) with ``--impersonate`` a browser's TLS and HTTP/2
  (``--http1``: HTTP/1.1 only, as a browser started with HTTP/2 disabled offers); ``--proxy``,
  ``--connect-to``, ``--resolve`` and ``--interface`` as curl's, so the browser-like stack can
  fetch through the lab's carriers too (:func:`sluice.lab.traffic.cffi_args`).
* ``openssl-cli`` / ``gnutls-cli``: ``openssl s_client`` or ``gnutls-cli`` started here; the GET
  requests are written to its stdin by hand (pipelined on one connection, the last one
  ``Connection: close``) and the responses are parsed from its stdout.
"""

from __future__ import annotations

__all__ = ["main", "split_responses"]

import argparse
import asyncio
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LIBS = ("urllib", "httpx", "aiohttp", "curl-cffi", "openssl-cli", "gnutls-cli")
_UA = "sluice-lab"


def _pairs(items: Sequence[str]) -> list[tuple[str, Path]]:
    if len(items) % 2:
        raise SystemExit("arguments are URL OUT pairs")
    return [(items[i], Path(items[i + 1])) for i in range(0, len(items), 2)]


def _urllib(jobs: list[tuple[str, Path]], a: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(cafile=a.cafile)
    for i, (url, out) in enumerate(jobs):
        if i:
            time.sleep(a.gap)
        with urllib.request.urlopen(url, context=ctx, timeout=a.timeout) as resp:  # noqa: S310 (https URLs)
            out.write_bytes(resp.read())


def _httpx(jobs: list[tuple[str, Path]], a: argparse.Namespace) -> None:
    import httpx

    ctx = ssl.create_default_context(cafile=a.cafile)
    with httpx.Client(verify=ctx, http2=a.http2, timeout=a.timeout) as cl:
        for i, (url, out) in enumerate(jobs):
            if i:
                time.sleep(a.gap)
            r = cl.get(url)
            r.raise_for_status()
            out.write_bytes(r.content)
            print(f"{url} {r.http_version}", file=sys.stdout)


async def _aiohttp_main(jobs: list[tuple[str, Path]], a: argparse.Namespace) -> None:
    import aiohttp

    ctx = ssl.create_default_context(cafile=a.cafile)
    timeout = aiohttp.ClientTimeout(total=a.timeout)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx, limit_per_host=a.connections), timeout=timeout
    ) as sess:

        async def one(url: str, out: Path) -> None:
            async with sess.get(url) as resp:
                resp.raise_for_status()
                out.write_bytes(await resp.read())

        if a.gap > 0:
            for i, (url, out) in enumerate(jobs):
                if i:
                    await asyncio.sleep(a.gap)
                await one(url, out)
        else:
            await asyncio.gather(*(one(url, out) for url, out in jobs))


def _connect_to(url: str, specs: Sequence[str], resolve: list[str]) -> str:
    """``url`` sent where curl's ``--connect-to HOST:PORT:HOST2:PORT2`` would send it.

    curl-cffi cannot pass that option, so the URL takes PORT2 and ``--resolve HOST:PORT2:HOST2``
    (added to ``resolve``) points the name at HOST2: the TLS handshake (SNI, certificate name)
    is the same; only the ``Host`` header, inside TLS, carries the other port.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for spec in specs:
        host, sport, to_host, to_port = spec.split(":")
        if host in ("", parts.hostname) and sport in ("", str(port)):
            to_port = to_port or str(port)
            entry = f"{parts.hostname}:{to_port}:{to_host or parts.hostname}"
            if entry not in resolve:
                resolve.append(entry)
            return parts._replace(netloc=f"{parts.hostname}:{to_port}").geturl()
    return url


def _curl_cffi(jobs: list[tuple[str, Path]], a: argparse.Namespace) -> None:
    from curl_cffi import CurlHttpVersion, CurlOpt, requests

    resolve = list(a.resolve)
    jobs = [(_connect_to(url, a.connect_to, resolve), out) for url, out in jobs]
    opts: dict[CurlOpt, Any] = {CurlOpt.RESOLVE: resolve} if resolve else {}
    if a.no_dns:
        # the Chrome and Firefox targets look up the name's HTTPS record (for ECH) and wait for the
        # answer before connecting: 5 s and more where no resolver answers, and the query leaves
        # outside the carrier. Every name is pinned by --resolve or left to the proxy: ask nobody.
        opts[CurlOpt.DNS_SERVERS] = "127.0.0.1:9"
    with requests.Session(
        impersonate=a.impersonate,
        verify=a.cafile,
        timeout=a.timeout,
        proxy=a.proxy,
        interface=a.interface,
        curl_options=opts,
        # HTTP/1.1 only: the ClientHello's ALPN then offers http/1.1 alone, as Chromium's does
        # with --disable-http2, and every request is a GET of its own after the handshake
        http_version=CurlHttpVersion.V1_1 if a.http1 else None,
    ) as sess:
        for i, (url, out) in enumerate(jobs):
            if i:
                time.sleep(a.gap)
            r = sess.get(url)
            r.raise_for_status()
            out.write_bytes(r.content)


def split_responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each HTTP/1.1 response in a pipelined byte stream, in order."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head = data[pos:end].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        pos = end + 4
        if "content-length" in fields:
            n = int(fields["content-length"])
            out.append((status, data[pos : pos + n]))
            pos += n
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                eol = data.find(b"\r\n", pos)
                size = int(data[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    pos = data.find(b"\r\n\r\n", pos - 2) + 4
                    break
                body += data[pos : pos + size]
                pos += size + 2
            out.append((status, bytes(body)))
        else:
            out.append((status, data[pos:]))
            pos = len(data)
    return out


def _tls_cli(jobs: list[tuple[str, Path]], a: argparse.Namespace) -> None:
    u = urlsplit(jobs[0][0])
    host, port = u.hostname or "", u.port or 443
    if a.lib == "openssl-cli":
        argv = ["openssl", "s_client", "-quiet", "-connect", f"{host}:{port}", "-servername", host]
        argv += ["-CAfile", a.cafile, "-verify_return_error", "-verify_hostname", host]
        argv += ["-alpn", "http/1.1"] if a.alpn else []
    else:
        argv = ["gnutls-cli", "--x509cafile", a.cafile, "-p", str(port), "--logfile", "/dev/null"]
        argv += ["--alpn", "http/1.1"] if a.alpn else []
        argv.append(host)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for i, (url, _) in enumerate(jobs):
            if i:
                time.sleep(a.gap)
            path = urlsplit(url).path or "/"
            last = "Connection: close\r\n" if i == len(jobs) - 1 else ""
            req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {_UA}\r\n{last}\r\n"
            proc.stdin.write(req.encode())
            proc.stdin.flush()
        data = proc.stdout.read()
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    for (_, out), (status, body) in zip(jobs, split_responses(data), strict=False):
        if status == 200:
            out.write_bytes(body)


def main(argv: list[str] | None = None) -> None:
    """Fetch the URLs; exit status 1 when a request failed (the files say which)."""
    ap = argparse.ArgumentParser(prog="sluice.lab.webclients")
    ap.add_argument("--lib", choices=LIBS, required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--gap", type=float, default=0.0, help="seconds between requests")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--http2", action="store_true", help="httpx: offer h2")
    ap.add_argument("--http1", action="store_true", help="curl-cffi: HTTP/1.1 only (no h2 in ALPN)")
    ap.add_argument("--impersonate", default="chrome", help="curl-cffi: browser to impersonate")
    ap.add_argument("--connections", type=int, default=6, help="aiohttp: connections per host")
    ap.add_argument("--alpn", action="store_true", help="openssl-cli/gnutls-cli: offer ALPN http/1.1")
    ap.add_argument("--proxy", help="curl-cffi: proxy URL (socks5h://, socks5://, http://)")
    ap.add_argument("--connect-to", action="append", default=[], help="curl-cffi: as curl's")
    ap.add_argument("--resolve", action="append", default=[], help="curl-cffi: as curl's")
    ap.add_argument("--interface", help="curl-cffi: as curl's")
    ap.add_argument(
        "--no-dns", action="store_true", help="curl-cffi: no DNS query (names come from --resolve)"
    )
    ap.add_argument("items", nargs="+", metavar="URL OUT")
    a = ap.parse_args(argv)
    jobs = _pairs(a.items)
    if a.lib == "urllib":
        _urllib(jobs, a)
    elif a.lib == "httpx":
        _httpx(jobs, a)
    elif a.lib == "aiohttp":
        asyncio.run(_aiohttp_main(jobs, a))
    elif a.lib == "curl-cffi":
        _curl_cffi(jobs, a)
    else:
        _tls_cli(jobs, a)


if __name__ == "__main__":
    main()
