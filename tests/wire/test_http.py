"""HTTP/1.x heads from real clients and servers, and from the nDPI corpus.

Requests come from the standard library's ``http.client`` and ``urllib`` talking through a small
recording TCP relay to a real ``http.server`` on loopback (or to the relay acting as a proxy);
responses are what that server sent. The corpus captures give requests and responses of curl,
browsers, Android apps and real servers, with nDPI's reading of host, URL, user agent, status,
content type and server to compare with, read with the project's own capture reader.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import select
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.wire.http import (
    ANOMALY_BARE_LF,
    ANOMALY_DUPLICATE_HOST,
    ANOMALY_HOST_MISMATCH,
    ANOMALY_LOOSE_REQUEST_LINE,
    ANOMALY_OBS_FOLD,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    HttpRequest,
    HttpResponse,
    split_authority,
    try_decode_http_request,
    try_decode_http_response,
)
from tests.corpus.ndpi_out import read_ndpi_out
from tests.corpus_util import corpus_file, first_payloads, tcp_streams

# ------------------------------------------------------------------- real client and server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Relay:
    """Accepts one TCP connection, relays it to ``upstream`` (if any) and records both ways.

    Without an upstream it acts as a proxy that answers ``reply`` to whatever it receives.
    """

    def __init__(self, upstream: tuple[str, int] | None, reply: bytes = b"") -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream = upstream
        self.reply = reply
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client, _ = self.listener.accept()
        with client:
            if self.upstream is None:
                while b"\r\n\r\n" not in self.c2s:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    self.c2s += chunk
                self.s2c += self.reply
                client.sendall(self.reply)
                return
            with socket.create_connection(self.upstream) as server:
                open_ends = {client: server, server: client}
                while open_ends:
                    ready, _, _ = select.select(list(open_ends), [], [], 5)
                    if not ready:
                        return
                    for sock in ready:
                        try:
                            chunk = sock.recv(65536)
                        except ConnectionResetError:  # a side that closed with data unread: its end
                            chunk = b""
                        peer = open_ends[sock]
                        if not chunk:
                            with contextlib.suppress(OSError):
                                peer.shutdown(socket.SHUT_WR)
                            del open_ends[sock]
                            continue
                        (self.c2s if sock is client else self.s2c).extend(chunk)
                        peer.sendall(chunk)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    (tmp_path / "index.html").write_text("<html><body>blocked?</body></html>")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        lambda *a: _QuietHandler(*a, directory=str(tmp_path)),
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_client_through_relay_to_http_server(web_server: tuple[str, int]) -> None:
    relay = _Relay(web_server)
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
    try:
        conn.request("GET", "/index.html?q=%C3%A9", headers={"User-Agent": "sluice-test/1.0"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
        relay.close()
    req = try_decode_http_request(bytes(relay.c2s))
    assert isinstance(req, HttpRequest)
    assert (req.method, req.target, req.version) == ("GET", "/index.html?q=%C3%A9", "HTTP/1.1")
    assert req.authority == f"127.0.0.1:{relay.port}" and req.host == "127.0.0.1"
    assert req.url == f"http://127.0.0.1:{relay.port}/index.html?q=%C3%A9"
    assert req.user_agent == "sluice-test/1.0" and req.connect_target is None
    assert req.complete and req.head_length == len(relay.c2s) and req.anomalies == ()
    assert req.header("ACCEPT-ENCODING") == "identity"
    got = try_decode_http_response(bytes(relay.s2c))
    assert isinstance(got, HttpResponse)
    handler = http.server.SimpleHTTPRequestHandler
    assert got.server == f"{handler.server_version} {handler.sys_version}" == resp.getheader("Server")
    assert (got.version, got.status, got.reason) == ("HTTP/1.0", 200, "OK")
    assert got.content_type == resp.getheader("Content-Type") == "text/html"
    assert got.complete and relay.s2c[got.head_length :] == body
    assert got.headers == tuple(resp.getheaders())


def test_404_response_and_post_request(web_server: tuple[str, int]) -> None:
    relay = _Relay(web_server)
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
    try:
        conn.request("POST", "/missing", body=b"a=1", headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
        relay.close()
    req = try_decode_http_request(bytes(relay.c2s))
    assert req is not None and req.method == "POST" and req.header("content-length") == "3"
    assert relay.c2s[req.head_length :] == b"a=1"
    got = try_decode_http_response(bytes(relay.s2c))
    assert got is not None and got.status == 501 == resp.status  # http.server has no do_POST
    assert got.reason == resp.reason and got.content_type == resp.getheader("Content-Type")


def test_urllib_through_a_proxy_sends_absolute_form() -> None:
    reply = b"HTTP/1.1 403 Forbidden\r\nServer: sluice-proxy\r\nContent-Length: 0\r\n\r\n"
    relay = _Relay(None, reply)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{relay.port}"})
    )
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open("http://Blocked.Example:8080/path/page?x=1", timeout=5)
        err.value.close()
    finally:
        relay.close()
    req = try_decode_http_request(bytes(relay.c2s))
    assert req is not None
    assert req.target == req.url == "http://Blocked.Example:8080/path/page?x=1"
    assert req.authority == "Blocked.Example:8080" and req.host == "Blocked.Example"
    assert req.header("Host") == "Blocked.Example:8080"
    assert req.user_agent is not None and req.user_agent.startswith("Python-urllib/")
    assert req.anomalies == ()
    got = try_decode_http_response(bytes(relay.s2c))
    assert got is not None and (got.status, got.server) == (403, "sluice-proxy")


def test_http_client_tunnel_sends_connect(web_server: tuple[str, int]) -> None:
    relay = _Relay(web_server)
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
    conn.set_tunnel("blocked.example", 443, headers={"User-Agent": "tunnel/2"})
    try:
        with pytest.raises(OSError, match="501"):
            conn.request("GET", "/")
    finally:
        conn.close()
        relay.close()
    req = try_decode_http_request(bytes(relay.c2s))
    assert req is not None and req.method == "CONNECT"
    assert req.connect_target == req.target == req.url == req.authority == "blocked.example:443"
    assert req.host == "blocked.example" and req.user_agent == "tunnel/2"
    got = try_decode_http_response(bytes(relay.s2c))
    assert got is not None and got.status == 501


# ---------------------------------------------------------------------- first segment only


def test_partial_heads() -> None:
    full = b"GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11)\r\nAccept: */*\r\n\r\n"
    req_line_end = full.index(b"\n") + 1
    for cut in range(len(full) + 1):
        got = try_decode_http_request(full[:cut])
        if cut < req_line_end:
            assert got is None, cut
            continue
        assert got is not None and got.complete == (cut == len(full)), cut
        # A half-received line is dropped, never reported cut short.
        assert got.host in (None, "example.com") and got.user_agent in (None, "Mozilla/5.0 (X11)")
        assert full[got.head_length - 1 : got.head_length] == b"\n"
    resp = b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n"
    for cut in range(len(resp) + 1):
        r = try_decode_http_response(resp[:cut])
        assert (r is None) == (cut < resp.index(b"\n") + 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"G",
        b"GET",
        b"get / HTTP/1.1\r\n\r\n",
        b"FOO / HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        b"RTSP/1.0 200 OK\r\n\r\n",
    ],
)
def test_not_http(data: bytes) -> None:
    assert try_decode_http_request(data) is None
    assert try_decode_http_response(data) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET /\r\n\r\n", "http.bad_request_line"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "http.bad_request_line"),
        (b"GET / HTTX/1.1\r\n\r\n", "http.bad_request_line"),
        (b"GET /\x00 HTTP/1.1\r\n\r\n", "http.bad_request_line"),
        (b"GET / HTTP/1.1\r\nHost example.com\r\n\r\n", "http.bad_header"),
        (b"GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", "http.bad_header"),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "http.bad_header"),
        (b"GET / HTTP/1.1\r\n folded\r\n\r\n", "http.bad_header"),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", "http.bad_header"),
        (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "http.bad_header"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1), "http.too_many_headers"),
        (b"GET / HTTP/1.1\r\nX: " + b"y" * MAX_HEAD_BYTES, "http.headers_too_long"),
        (b"GET /" + b"a" * MAX_HEAD_BYTES, "http.request_line_too_long"),
    ],
)
def test_malformed_requests(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        try_decode_http_request(data)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"HTTP/1.1 20 OK\r\n\r\n", "http.bad_status_line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "http.bad_status_line"),
        (b"HTTP/11 200 OK\r\n\r\n", "http.bad_status_line"),
        (b"HTTP/1.1 200 O\x00K\r\n\r\n", "http.bad_status_line"),
        (b"HTTP/1.1 200 OK\r\nServer\r\n\r\n", "http.bad_header"),
    ],
)
def test_malformed_responses(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        try_decode_http_response(data)
    assert err.value.reason == reason


def test_anomalies_and_lenient_forms() -> None:
    req = try_decode_http_request(
        b"GET   http://a.example/x  HTTP/1.1\nHost: b.example\nHost: c.example\nX-Long: one\n\ttwo\n\n"
    )
    assert req is not None and req.complete
    assert req.anomalies == (
        ANOMALY_BARE_LF,
        ANOMALY_LOOSE_REQUEST_LINE,
        ANOMALY_OBS_FOLD,
        ANOMALY_DUPLICATE_HOST,
        ANOMALY_HOST_MISMATCH,
    )
    assert req.host == "a.example" and req.url == "http://a.example/x"
    assert req.header("x-long") == "one two"
    resp = try_decode_http_response(b"HTTP/1.1 200\r\nServer:  nginx \r\n\r\n")
    assert resp is not None and (resp.reason, resp.server) == ("", "nginx")
    opts = try_decode_http_request(b"OPTIONS * HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n")
    assert opts is not None and opts.url == "*" and opts.host == "2001:db8::1"
    old = try_decode_http_request(b"GET /index.html HTTP/1.0\r\n\r\n")
    assert old is not None and old.host is None and old.url == "/index.html"
    for method in ("PROPFIND", "M-SEARCH", "PATCH", "PURGE"):
        got = try_decode_http_request(method.encode() + b" * HTTP/1.1\r\n\r\n")
        assert got is not None and got.method == method


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("example.com:8080", ("example.com", 8080)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("user:pw@example.com:21", ("example.com", 21)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("example.com:http", ("example.com:http", None)),
    ],
)
def test_split_authority(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_authority(authority) == expected


# ------------------------------------------------------------------------- real captures


HTTP_CAPTURES = [
    "http.pcapng",
    "http-lines-split.pcap",
    "http-manipulated.pcap",
    "http_asymmetric.pcapng",
    "http_auth.pcap",
    "http_connect.pcap",
    "http_on_sip_port.pcap",
    "http_origin_different_than_host.pcap",
    "http_ua_splitted_in_two_pkts.pcapng",
    "1kxun.pcap",
    "windowsupdate_over_http.pcap",
]


def _heads(stream: bytes, request: bool) -> Iterator[HttpRequest | HttpResponse]:
    """The heads of the messages on a keep-alive connection, while bodies can be skipped."""
    pos = 0
    while pos < len(stream):
        head = (try_decode_http_request if request else try_decode_http_response)(stream[pos:])
        if head is None:
            return
        yield head
        length = head.header("Content-Length")
        if not head.complete or head.header("Transfer-Encoding") or (length or "0") == "":
            return
        pos += head.head_length + int(length or "0")


@pytest.mark.corpus
@pytest.mark.parametrize("name", HTTP_CAPTURES)
def test_corpus_matches_ndpi(name: str) -> None:
    streams = tcp_streams(corpus_file(name))
    checked = 0
    for flow in read_ndpi_out(corpus_file(f"{name}.out")):
        if flow.l4 != "TCP":
            continue
        fields = flow.fields
        if "URL" not in fields and "StatusCode" not in fields:
            continue
        a, b = flow.a, flow.b
        c2s, s2c = streams.get((*a, *b), b""), streams.get((*b, *a), b"")
        # nDPI prints the last message it looked at on keep-alive connections: match any.
        if "URL" in fields:
            reqs = [r for r in _heads(c2s, True) if isinstance(r, HttpRequest)]
            assert reqs, (name, a, b)
            assert any(
                r.url.removeprefix("http://").lower().startswith(fields["URL"].lower())
                and r.host is not None
                and r.host.lower() == fields["Hostname/SNI"].lower()
                and (r.user_agent or "").startswith(fields.get("User-Agent", ""))
                for r in reqs
            ), (fields, reqs)
        if "StatusCode" in fields and s2c:
            # A capture may start in the middle of a response body (1kxun.pcap).
            start = s2c.find(b"HTTP/1.")
            resps = [r for r in _heads(s2c[start:], False) if isinstance(r, HttpResponse)]
            assert any(
                r.status == int(fields["StatusCode"])
                and ("Server" not in fields or r.server == fields["Server"])
                and (
                    "Content-Type" not in fields
                    or (r.content_type or "").split(";")[0] == fields["Content-Type"]
                )
                for r in resps
            ), (fields, resps)
        checked += 1
    assert checked


@pytest.mark.corpus
def test_corpus_first_segments() -> None:
    """With the first segment only: the head may be incomplete, never wrong."""
    path = corpus_file("http_ua_splitted_in_two_pkts.pcapng")
    streams, firsts = tcp_streams(path), first_payloads(path)
    ((key, first),) = [(k, v) for k, v in firsts.items() if v.startswith(b"GET ")]
    req = try_decode_http_request(first)
    assert req is not None and not req.complete
    assert req.user_agent is None  # nDPI printed the cut value "Mozil"; sluice waits
    whole = try_decode_http_request(streams[key])
    assert whole is not None and whole.complete and whole.user_agent is not None
    assert whole.user_agent.startswith("Mozil") and len(whole.user_agent) > 5
    assert whole.headers[: len(req.headers)] == req.headers
    manipulated = try_decode_http_request(
        tcp_streams(corpus_file("http-manipulated.pcap"))[("192.168.0.20", 33684, "192.168.0.7", 8080)]
    )
    assert manipulated is not None and manipulated.anomalies == (ANOMALY_LOOSE_REQUEST_LINE,)


@pytest.mark.corpus
def test_corpus_non_http_payloads_are_cheaply_rejected() -> None:
    """First payloads of TLS, SSH, DNS-over-TCP... flows are not HTTP and do not raise."""
    rejected = 0
    for name in ("443-chrome.pcap", "ssh.pcap", "dns_fragmented.pcap", "socks.pcap"):
        for payload in first_payloads(corpus_file(name)).values():
            assert try_decode_http_request(payload) is None, payload[:40]
            assert try_decode_http_response(payload) is None, payload[:40]
            rejected += 1
    assert rejected >= 8


# ------------------------------------------------------------------------------------ fuzz

_REQUEST = (
    b"GET /path?x=1 HTTP/1.1\r\nHost: www.example.com:8080\r\nUser-Agent: curl/8.0\r\n"
    b"Accept: */*\r\nX-Folded: a\r\n b\r\n\r\nbody"
)
_CONNECT = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
_RESPONSE = (
    b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://www.google.com/\r\n"
    b"Content-Type: text/html; charset=UTF-8\r\nServer: gws\r\nContent-Length: 219\r\n\r\n<html>"
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([_REQUEST, _CONNECT, _RESPONSE]), st.integers(0, 200), st.binary(max_size=80))
@example(_REQUEST, 16, b" \r\n")
@example(_RESPONSE, 13, b"\n\n")
def test_fuzz_prefix_plus_random(sample: bytes, cut: int, tail: bytes) -> None:
    data = sample[:cut] + tail
    for decode in (try_decode_http_request, try_decode_http_response):
        try:
            got = decode(data)
        except DecodeError as exc:
            assert exc.reason.startswith("http.")
        else:
            assert got is None or isinstance(got, HttpRequest | HttpResponse)
            if got is not None:
                assert 0 < got.head_length <= len(data)
            assert decode(memoryview(data)) == decode(bytearray(data)) == got


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"\r\n", b"\n", b":", b" ", b"\t", b"a", b"Host", b"\x80"]), max_size=40))
def test_fuzz_header_tokens(tokens: list[bytes]) -> None:
    data = b"GET / HTTP/1.1\r\n" + b"".join(tokens)
    try:
        req = try_decode_http_request(data)
    except DecodeError as exc:
        assert exc.reason in ("http.bad_header", "http.too_many_headers")
    else:
        assert req is not None
        assert all(name and ":" not in name for name, _ in req.headers)
