"""SOCKS handshakes from real clients (curl, PySocks) and from the nDPI corpus.

curl and PySocks talk to a minimal SOCKS server on loopback, written here with its own framing
(RFC 1928, RFC 1929, SOCKS 4/4A), which records every byte. The client bytes are the real
clients'; the server bytes are checked against the corpus too, where real proxies answered
curl, including the pipelined handshakes optimistic clients send.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable

import pytest
import socks  # type: ignore[import-untyped]  # PySocks
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.wire.http import try_decode_http_request, try_decode_http_response
from sluice.wire.socks import (
    Socks4Reply,
    Socks4ReplyCode,
    Socks4Request,
    Socks5Greeting,
    Socks5MethodSelection,
    Socks5Reply,
    Socks5ReplyCode,
    Socks5Request,
    SocksAddressType,
    SocksAuthMethod,
    SocksCommand,
    SocksMessage,
    socks_target,
    try_decode_socks,
)
from tests.corpus_util import corpus_file, tcp_payloads

# ------------------------------------------------------------------ recording SOCKS server


class _SocksServer:
    """Serves one SOCKS4/4a/5 handshake (granting it), reads the tunnelled HTTP head, closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.client_payloads: list[bytes] = []
        self.server_bytes = bytearray()
        self.tunnelled = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _recv(self, conn: socket.socket, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = conn.recv(n - len(out))
            if not chunk:
                raise ConnectionError("client closed")
            self.client_payloads.append(chunk)
            out += chunk
        return bytes(out)

    def _send(self, conn: socket.socket, data: bytes) -> None:
        self.server_bytes += data
        conn.sendall(data)

    def _until_nul(self, conn: socket.socket) -> bytes:
        out = b""
        while not out.endswith(b"\x00"):
            out += self._recv(conn, 1)
        return out

    def _serve(self, conn: socket.socket) -> None:
        version = self._recv(conn, 1)[0]
        if version == 4:
            head = self._recv(conn, 7)
            self._until_nul(conn)
            if head[3:6] == b"\x00\x00\x00" and head[6]:
                self._until_nul(conn)
            self._send(conn, b"\x00\x5a" + head[1:7])
        else:
            methods = self._recv(conn, self._recv(conn, 1)[0])
            if SocksAuthMethod.USERNAME_PASSWORD in methods:
                self._send(conn, b"\x05\x02")
                _, ulen = self._recv(conn, 2)
                self._recv(conn, ulen)
                self._recv(conn, self._recv(conn, 1)[0])
                self._send(conn, b"\x01\x00")
            else:
                self._send(conn, b"\x05\x00")
            _, _, _, atyp = self._recv(conn, 4)
            size = {1: 4, 4: 16}.get(atyp) or self._recv(conn, 1)[0]
            self._recv(conn, size + 2)
            self._send(conn, b"\x05\x00\x00\x01\x7f\x00\x00\x01\x1f\x90")
        conn.settimeout(3)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in self.tunnelled:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                self.tunnelled += chunk

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        with conn, contextlib.suppress(ConnectionError, OSError):
            conn.settimeout(10)
            self._serve(conn)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


def _with_server(client: Callable[[int], None]) -> _SocksServer:
    server = _SocksServer()
    try:
        client(server.port)
    finally:
        server.close()
    return server


def _curl(*args: str) -> Callable[[int], None]:
    def run(port: int) -> None:
        subprocess.run(
            ["curl", "-s", "-m", "5", *[a.replace("PORT", str(port)) for a in args]],
            capture_output=True,
            timeout=30,
            check=False,
        )

    return run


def _pysocks(kind: int, host: str, *, rdns: bool, user: str | None = None) -> Callable[[int], None]:
    def run(port: int) -> None:
        s = socks.socksocket()
        s.settimeout(5)
        s.set_proxy(kind, "127.0.0.1", port, rdns=rdns, username=user, password="pw" if user else None)
        try:
            s.connect((host, 80))
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        finally:
            s.close()

    return run


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")

CLIENTS = [
    pytest.param(_curl("--socks5-hostname", "127.0.0.1:PORT", "http://blocked.example/"),
                 "blocked.example:80", SocksAddressType.DOMAIN, id="curl-socks5h", marks=needs_curl),
    pytest.param(_curl("--socks5", "127.0.0.1:PORT", "http://192.0.2.10:8080/"),
                 "192.0.2.10:8080", SocksAddressType.IPV4, id="curl-socks5", marks=needs_curl),
    pytest.param(_curl("-x", "socks5h://alice:secret@127.0.0.1:PORT", "http://[2001:db8::7]/"),
                 "[2001:db8::7]:80", SocksAddressType.IPV6, id="curl-socks5-auth-v6",
                 marks=needs_curl),
    pytest.param(_curl("--socks4", "127.0.0.1:PORT", "http://192.0.2.10/"),
                 "192.0.2.10:80", None, id="curl-socks4", marks=needs_curl),
    pytest.param(_curl("--socks4a", "127.0.0.1:PORT", "http://blocked.example/"),
                 "blocked.example:80", None, id="curl-socks4a", marks=needs_curl),
    pytest.param(_pysocks(socks.SOCKS5, "blocked.example", rdns=True, user="bob"),
                 "blocked.example:80", SocksAddressType.DOMAIN, id="pysocks-socks5-auth"),
    pytest.param(_pysocks(socks.SOCKS5, "192.0.2.99", rdns=False),
                 "192.0.2.99:80", SocksAddressType.IPV4, id="pysocks-socks5"),
    pytest.param(_pysocks(socks.SOCKS4, "blocked.example", rdns=True, user="uid"),
                 "blocked.example:80", None, id="pysocks-socks4a"),
    pytest.param(_pysocks(socks.SOCKS4, "192.0.2.99", rdns=False),
                 "192.0.2.99:80", None, id="pysocks-socks4"),
]  # fmt: skip


@pytest.mark.parametrize(("client", "target", "atyp"), CLIENTS)
def test_real_clients(client: Callable[[int], None], target: str, atyp: SocksAddressType | None) -> None:
    server = _with_server(client)
    payloads = server.client_payloads
    assert payloads, "client sent nothing"
    assert socks_target(payloads) == target
    # Message by message, as a stateless decoder sees them.
    stream = b"".join(payloads)
    first = try_decode_socks(stream, from_client=True)
    if atyp is None:
        assert isinstance(first, Socks4Request) and first.target == target
        assert first.command == SocksCommand.CONNECT
        handshake = first.size
        reply = try_decode_socks(bytes(server.server_bytes), from_client=False)
        assert isinstance(reply, Socks4Reply) and reply.code == Socks4ReplyCode.GRANTED
    else:
        assert isinstance(first, Socks5Greeting) and first.methods
        selection = try_decode_socks(bytes(server.server_bytes), from_client=False)
        assert isinstance(selection, Socks5MethodSelection)
        pos = first.size
        if selection.method == SocksAuthMethod.USERNAME_PASSWORD:
            pos += 3 + stream[pos + 1] + stream[pos + 2 + stream[pos + 1]]
        request = try_decode_socks(stream[pos:], from_client=True)
        assert isinstance(request, Socks5Request)
        assert (request.target, request.address_type) == (target, atyp)
        handshake = pos + request.size
        reply_bytes = bytes(server.server_bytes[-10:])
        reply = try_decode_socks(reply_bytes, from_client=False)
        assert isinstance(reply, Socks5Reply) and reply.code == Socks5ReplyCode.SUCCEEDED
        assert (reply.host, reply.port) == ("127.0.0.1", 8080)
    # The tunnelled HTTP request follows the handshake and names the same host.
    assert stream[handshake:] == b""  # the server read exactly the handshake
    req = try_decode_http_request(bytes(server.tunnelled))
    assert req is not None and req.host is not None
    assert target.rsplit(":", 1)[0].strip("[]") == req.host


def test_pipelined_and_split_forms() -> None:
    greeting = b"\x05\x02\x00\x02"
    auth = b"\x01\x05alice\x06secret"
    request = b"\x05\x01\x00\x03\x0fblocked.example\x01\xbb"
    # Every way of cutting the client stream into payloads gives the same target.
    stream = greeting + auth + request
    for cut in range(1, len(stream)):
        assert socks_target([stream[:cut], stream[cut:]]) == "blocked.example:443"
        assert socks_target([stream[:cut]]) is None
    msg = try_decode_socks(stream, from_client=True)
    assert msg == Socks5Greeting((0, 2), 4)
    # Greeting followed directly by a request (optimistic clients, as in socks.pcap).
    msg = try_decode_socks(b"\x05\x01\x00" + request, from_client=True)
    assert msg == Socks5Greeting((0,), 3)
    # A request followed by early data is still a request.
    msg = try_decode_socks(request + b"\x16\x03\x01", from_client=True)
    assert isinstance(msg, Socks5Request) and msg.size == len(request)
    # Server: method selection pipelined with the reply.
    reply = b"\x05\x00\x00\x04" + bytes(16) + b"\x00\x00"
    assert try_decode_socks(b"\x05\x00" + reply, from_client=False) == Socks5MethodSelection(0, 2)
    got = try_decode_socks(reply, from_client=False)
    assert got == Socks5Reply(0, SocksAddressType.IPV6, "::", 0, 22)
    udp = b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"
    assert socks_target([b"\x05\x01\x00", udp]) is None
    assert try_decode_socks(udp, from_client=True) == Socks5Request(3, 1, "0.0.0.0", 0, 10)


@pytest.mark.parametrize(
    ("data", "from_client", "expected"),
    [
        (b"", True, None),
        (b"\x05", True, None),
        (b"\x05\x00", True, None),  # no methods
        (b"\x05\x03\x00", True, None),  # greeting not complete
        (b"\x05\x01\x00\x03\x0fblocked", True, None),  # request not complete
        (b"\x05\x01\x00\x07", True, None),  # neither a greeting nor a request
        (b"\x04\x03\x00\x50\x01\x02\x03\x04\x00", True, None),  # SOCKS4 has no UDP
        (b"\x04\x01\x00\x50\x01\x02\x03\x04uid", True, None),  # user id not finished
        (b"GET / HTTP/1.1\r\n\r\n", True, None),
        (b"\x16\x03\x01\x00\x10", True, None),
        (b"\x00\x10\x00\x50\x01\x02\x03\x04", False, None),  # SOCKS4 code out of range
        (b"\x00\x5a\x00\x50\x01\x02\x03", False, None),  # SOCKS4 reply not complete
        (b"\x05", False, None),
        (b"\x05\x00\x00\x09\x00", False, None),  # unknown address type
        (b"\x05\x00\x00\x03\x07exam", False, None),  # reply not complete
        (b"HTTP/1.1 200 OK\r\n", False, None),
        (b"\x05\x02\x01", False, Socks5MethodSelection(2, 2)),  # then a partial auth status
    ],
)
def test_not_socks_or_incomplete(data: bytes, from_client: bool, expected: SocksMessage | None) -> None:
    assert try_decode_socks(data, from_client=from_client) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x04\x01\x00\x50\x01\x02\x03\x04" + b"u" * 300, "socks.user_id_too_long"),
        (b"\x04\x01\x00\x50\x00\x00\x00\x01\x00" + b"d" * 300, "socks.domain_too_long"),
        (b"\x04\x01\x00\x50\x00\x00\x00\x01\x00\x00", "socks.bad_domain"),
        (b"\x05\x01\x00\x03\x00\x00\x50", "socks.bad_domain"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        try_decode_socks(data, from_client=True)
    assert err.value.reason == reason


def test_socks_target_malformed_after_greeting() -> None:
    with pytest.raises(DecodeError) as err:
        socks_target([b"\x05\x01\x00", b"\x05\x09\x00\x01\x01\x02\x03\x04\x00\x50"])
    assert err.value.reason == "socks.bad_command"
    with pytest.raises(DecodeError) as err:
        socks_target([b"\x05\x01\x00", b"\x05\x01\x07\x01\x01\x02\x03\x04\x00\x50"])
    assert err.value.reason == "socks.bad_reserved"
    assert socks_target([b"\x05\x01\x01", b"\x01\x00\x00"]) is None  # GSSAPI: not followed
    assert socks_target([b"GET / HTTP/1.1\r\n"]) is None and socks_target([]) is None


# ------------------------------------------------------------------------- real captures


@pytest.mark.corpus
def test_corpus_handshakes() -> None:
    flows = tcp_payloads(corpus_file("socks.pcap"))
    targets: dict[int, str | None] = {}
    for (_, sport, _, dport), payloads in flows.items():
        if dport not in (1080, 21477):
            continue
        target = socks_target(payloads)
        targets[sport] = target
        stream = b"".join(payloads)
        # Walk the handshake message by message; the HTTP request after it names the target.
        pos = 0
        while (msg := try_decode_socks(stream[pos:], from_client=True)) is not None:
            pos += msg.size
            if isinstance(msg, Socks4Request | Socks5Request):
                break
        req = try_decode_http_request(stream[pos:])
        assert req is not None and target is not None
        if not target.split(":")[0].replace(".", "").isdigit():  # a name, not an address
            assert target == f"{req.host}:80"
    assert targets == {
        53533: "93.184.216.119:80",  # SOCKS4 (curl 7.24)
        53534: "www.example.com:80",  # SOCKS4a
        53535: "93.184.216.119:80",  # SOCKS5, greeting + request in one stream
        1637: "www.google.com:80",  # SOCKS5, greeting and request pipelined
    }
    replies = []
    for (_, sport, _, _), payloads in flows.items():
        if sport in (1080, 21477):
            stream = b"".join(payloads)
            pos, msgs = 0, []
            while (msg := try_decode_socks(stream[pos:], from_client=False)) is not None:
                msgs.append(msg)
                pos += msg.size
            resp = try_decode_http_response(stream[pos:])
            assert resp is not None and resp.status in (200, 302)
            replies.append(tuple(type(m).__name__ for m in msgs))
    assert sorted(replies) == sorted(
        [
            ("Socks4Reply",),
            ("Socks4Reply",),
            ("Socks5MethodSelection", "Socks5Reply"),
            ("Socks5MethodSelection", "Socks5Reply"),
        ]
    )


# ------------------------------------------------------------------------------------ fuzz

_CLIENT_SAMPLES = [
    b"\x05\x02\x00\x02\x01\x05alice\x06secret\x05\x01\x00\x03\x0fblocked.example\x01\xbb",
    b"\x05\x01\x00\x05\x01\x00\x04" + bytes(range(16)) + b"\x00\x50GET",
    b"\x04\x01\x00\x50\x00\x00\x00\x01uid\x00www.example.com\x00GET",
    b"\x04\x02\x00\x50\x5d\xb8\xd8\x77\x00",
]
_SERVER_SAMPLES = [
    b"\x05\x02\x01\x00",
    b"\x05\x00\x05\x00\x00\x03\x07example\x1f\x90HTTP",
    b"\x00\x5a\xdf\xb2\x0a\xb4\x9c\xf9HTTP",
]


def _check(got: SocksMessage | None, data: bytes) -> None:
    if got is not None:
        assert 0 < got.size <= len(data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([(s, True) for s in _CLIENT_SAMPLES] + [(s, False) for s in _SERVER_SAMPLES]),
    st.integers(0, 60),
    st.binary(max_size=300),
)
@example((_CLIENT_SAMPLES[0], True), 4, b"\x01\x00")
@example((_CLIENT_SAMPLES[2], True), 8, b"\x01" * 260)
def test_fuzz_prefix_plus_random(sample: tuple[bytes, bool], cut: int, tail: bytes) -> None:
    data = sample[0][:cut] + tail
    try:
        got = try_decode_socks(data, from_client=sample[1])
    except DecodeError as exc:
        assert exc.reason.startswith("socks.")
    else:
        _check(got, data)
        assert try_decode_socks(memoryview(data), from_client=sample[1]) == got
    try:
        target = socks_target([data[:7], data[7:]])
    except DecodeError as exc:
        assert exc.reason.startswith("socks.")
    else:
        assert target is None or ":" in target
