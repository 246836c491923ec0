"""Application-layer inspection of a flow's first payloads.

Theory of operation: one :class:`AppInspector` per flow receives the payloads of the flow's first
packets (both paths feed exactly the same packets). TCP payloads are put back in order per
direction with a bounded :class:`~sluice.wire.reassembly.StreamReassembler`; the first contiguous
bytes choose the protocol (TLS, HTTP, SSH, SOCKS, DNS over TCP), whose sans-IO dissector then
fills :class:`~sluice.flows.record.AppMeta`. UDP datagrams go to QUIC (Initial decryption,
ClientHello from CRYPTO frames in any order), gQUIC or DNS. The inspector sets ``done`` when it has
what it can get, so later packets cost nothing. Dissector errors propagate to the packet loop,
which counts them and calls :meth:`AppInspector.abort`.
"""

from __future__ import annotations

__all__ = ["AppInspector"]

from typing import Literal

from sluice.flows.record import AppMeta
from sluice.wire import dns, gquic, http, quic, socks, ssh, tls
from sluice.wire.ja4 import ja4
from sluice.wire.reassembly import StreamReassembler, tcp_relative
from sluice.wire.transport import TcpFlags

STREAM_LIMIT_BYTES = 65536
"""Bytes of each TCP direction kept for inspection."""
PLAIN_LIMIT_BYTES = 8192
"""Bytes of a non-TLS stream looked at (HTTP headers, banners, SOCKS)."""

_DNS_PORTS = frozenset((53, 5353, 5355))
_UNKNOWN, _TLS, _HTTP, _SSH, _SOCKS, _DNS, _GQUIC, _NONE = range(8)
_TLS_HANDSHAKE_CLIENT_HELLO = 1
_TLS_HANDSHAKE_SERVER_HELLO = 2
_TLS_HANDSHAKE_CERTIFICATE = 11


class _Direction:
    __slots__ = ("isn", "reasm", "stream", "tls")

    def __init__(self) -> None:
        self.isn: int | None = None
        self.reasm = StreamReassembler(max_bytes=STREAM_LIMIT_BYTES)
        self.stream = bytearray()
        self.tls: tls.TlsHandshakeReader | None = None


class AppInspector:
    """Find application metadata in the first payloads of one flow.

    Args:
        proto: IP protocol of the flow (6 TCP, 17 UDP; others are not inspected).
        client_port: the client's port.
        server_port: the server's port.
    """

    __slots__ = (
        "_dirs",
        "_heads",
        "_kind",
        "_quic",
        "_quic_dcid",
        "client_port",
        "done",
        "meta",
        "proto",
        "server_port",
    )

    def __init__(self, proto: int, client_port: int, server_port: int) -> None:
        self.proto = proto
        self.client_port = client_port
        self.server_port = server_port
        self.meta = AppMeta()
        self.done = proto not in (6, 17)
        self._kind = _UNKNOWN
        self._dirs: tuple[_Direction, _Direction] | None = None
        self._quic: quic.QuicClientHelloAssembler | None = None
        self._quic_dcid: bytes | None = None
        self._heads = [0, 0]

    def abort(self) -> None:
        """Stop inspecting (a dissector failed on this flow's payload)."""
        self.done = True

    def feed(self, d: int, payload: bytes, seq: int = 0, flags: int = 0) -> None:
        """Inspect one packet's payload.

        Args:
            d: direction, 0 client to server, 1 server to client.
            payload: the transport payload (may be empty for TCP control segments).
            seq: TCP sequence number.
            flags: TCP flags.

        Raises:
            DecodeError: from the protocol dissector.
        """
        if self.done:
            return
        if self.proto == 6:
            self._feed_tcp(d, payload, seq, flags)
        elif payload:
            self._feed_udp(d, payload)

    # -- TCP ----------------------------------------------------------------------------------

    def _feed_tcp(self, d: int, payload: bytes, seq: int, flags: int) -> None:
        if self._dirs is None:
            self._dirs = (_Direction(), _Direction())
        side = self._dirs[d]
        if side.isn is None:
            if flags & TcpFlags.SYN:
                side.isn = (seq + 1) & 0xFFFFFFFF
                return
            if not payload:
                return
            side.isn = seq
        if not payload:
            return
        new = side.reasm.feed(tcp_relative(seq, side.isn), payload)
        if not new:
            return
        if self._kind == _UNKNOWN:
            self._classify(d, new)
        if self._kind == _TLS:
            self._tls(d, side, new)
        elif self._kind in (_HTTP, _SSH, _SOCKS, _DNS):
            if len(side.stream) < PLAIN_LIMIT_BYTES:
                side.stream += new[: PLAIN_LIMIT_BYTES - len(side.stream)]
            self._plain(d)
        if side.reasm.overflowed:
            self.done = True

    def _classify(self, d: int, first: bytes) -> None:
        if tls.looks_like_tls_client_hello(first) or (d == 1 and first[:1] == b"\x16"):
            self._kind = _TLS
            self.meta.app = "tls"
        elif first.startswith(b"SSH-") or (d == 1 and b"SSH-" in first[:256]):
            self._kind = _SSH
            self.meta.app = "ssh"
        elif (d == 0 and http.try_decode_http_request(first[:16]) is not None) or _http_start(first):
            self._kind = _HTTP
            self.meta.app = "http"
        elif (self.server_port in _DNS_PORTS or self.client_port in _DNS_PORTS) and (
            dns.looks_like_dns(first, tcp=True)
        ):
            self._kind = _DNS
            self.meta.app = "dns"
        elif d == 0 and first[:1] in (b"\x04", b"\x05") and socks.try_decode_socks(first, True):
            self._kind = _SOCKS
            self.meta.app = "socks"
        else:
            self._kind = _NONE
            self.done = True

    def _tls(self, d: int, side: _Direction, new: bytes) -> None:
        if side.tls is None:
            side.tls = tls.TlsHandshakeReader()
        for msg in side.tls.feed(new):
            if msg.msg_type == _TLS_HANDSHAKE_CLIENT_HELLO and d == 0:
                self._client_hello(tls.decode_client_hello(msg.body), "t")
            elif msg.msg_type == _TLS_HANDSHAKE_SERVER_HELLO and d == 1:
                hello = tls.decode_server_hello(msg.body)
                self.meta.tls_version = hello.selected_version or hello.version
                self.meta.tls_cipher = hello.cipher_suite
            elif msg.msg_type == _TLS_HANDSHAKE_CERTIFICATE and d == 1:
                cert = tls.decode_certificate(msg.body)
                self.meta.cert_subject = cert.subject or ""
                self.meta.cert_issuer = cert.issuer or ""
                self.meta.cert_san = cert.san
        m = self.meta
        server_done = (
            m.cert_subject
            or m.tls_version == 0x0304
            or (self._dirs is not None and self._dirs[1].tls is not None and self._dirs[1].tls.done)
        )
        if m.ja4 and m.tls_version and server_done:
            self.done = True

    def _client_hello(self, hello: tls.TlsClientHello, transport: Literal["t", "q", "d"]) -> None:
        m = self.meta
        m.sni = hello.sni or ""
        m.alpn = hello.alpn
        m.tls_versions = hello.supported_versions or (hello.legacy_version,)
        m.ech = hello.ech
        m.ja4 = ja4(hello, transport)

    def _plain(self, d: int) -> None:
        assert self._dirs is not None
        client, server = bytes(self._dirs[0].stream), bytes(self._dirs[1].stream)
        m = self.meta
        if self._kind == _HTTP:
            self._http(client, server)
        elif self._kind == _SSH:
            for i, data in ((0, client), (1, server)):
                banner = ssh.try_decode_ssh_banner(data) if data else None
                if banner is not None:
                    if i == 0:
                        m.ssh_client = banner.raw
                    else:
                        m.ssh_server = banner.raw
            self.done = bool(m.ssh_client and m.ssh_server)
        elif self._kind == _SOCKS:
            if not m.socks_target and client:
                m.socks_target = socks.socks_target([client]) or ""
            offsets = socks.socks_tunnel_offsets(client, server) if m.socks_target else None
            if offsets is not None:
                self._enter_tunnel(offsets)
        elif self._kind == _DNS:
            for i, data in ((0, client), (1, server)):
                for msg in dns.decode_dns_tcp(data):
                    self._dns(i, msg)
            self.done = bool(m.dns_query and m.dns_rcode >= 0)

    def _http(self, client: bytes, server: bytes) -> None:
        m = self.meta
        if client and not m.http_method:
            req = http.try_decode_http_request(client)
            if req is not None and (req.complete or len(client) >= PLAIN_LIMIT_BYTES):
                m.http_method, m.http_host, m.http_url = req.method, req.host or "", req.url
                m.http_user_agent = req.user_agent or ""
                m.connect_target = req.connect_target or ""
                self._heads[0] = req.head_length
        if server and not m.http_status:
            resp = http.try_decode_http_response(server)
            if resp is not None and resp.complete:
                m.http_status, m.http_server = resp.status, resp.server or ""
                self._heads[1] = resp.head_length
        if m.connect_target and 200 <= m.http_status < 300:
            self._enter_tunnel((self._heads[0], self._heads[1]))
        else:
            self.done = bool(m.http_method and m.http_status)

    def _enter_tunnel(self, offsets: tuple[int, int]) -> None:
        """Inspect what a proxy relays (TLS after SOCKS or HTTP CONNECT) from these offsets."""
        assert self._dirs is not None
        client_rest = bytes(self._dirs[0].stream[offsets[0] :])
        if client_rest and not tls.looks_like_tls_client_hello(client_rest):
            self.done = True
            return
        self._kind = _TLS
        for d, off in enumerate(offsets):
            side = self._dirs[d]
            side.tls = tls.TlsHandshakeReader()
            rest = bytes(side.stream[off:])
            side.stream.clear()
            if rest:
                self._tls(d, side, rest)

    # -- UDP ----------------------------------------------------------------------------------

    def _feed_udp(self, d: int, payload: bytes) -> None:
        if self._kind == _UNKNOWN:
            dns_port = self.server_port in _DNS_PORTS or self.client_port in _DNS_PORTS
            if dns_port and (dns.looks_like_dns(payload) or _dns_answers_only(payload)):
                self._kind = _DNS  # before QUIC: a DNS id can look like a long header
                self.meta.app = "dns"
            elif quic.is_quic_long_header(payload):
                self._kind = _TLS
            elif d == 0 and _gquic_public_header(payload, self.server_port):
                self._kind = _GQUIC
            else:
                self._kind = _NONE
                self.done = True
                return
        if self._kind == _DNS:
            self._dns(d, dns.decode_dns(payload, answers_only=True))
            self.done = bool(self.meta.dns_query and self.meta.dns_rcode >= 0)
        elif self._kind == _TLS:
            self._quic_datagram(d, payload)
        elif self._kind == _GQUIC and d == 0:
            self._gquic(payload)

    def _gquic(self, payload: bytes) -> None:
        hello = gquic.decode_gquic(payload)
        m = self.meta
        m.app = "gquic"
        m.quic_version = hello.version
        m.sni = hello.sni or ""
        m.http_user_agent = hello.uaid or ""
        self.done = True

    def _quic_datagram(self, d: int, payload: bytes) -> None:
        if not quic.is_quic_long_header(payload):
            return
        if quic.is_gquic_version(int.from_bytes(payload[1:5], "big")):
            if d == 0:
                self._gquic(payload)
            return
        header = quic.decode_long_header(payload)
        m = self.meta
        if d == 1:
            if header.packet_type == quic.LongPacketType.RETRY:
                self._quic_dcid = header.scid  # keys of later client Initials (RFC 9001 §5.2)
            return  # server Initials add nothing the client's hello does not give
        packets = quic.decode_initials(payload, client_dcid=self._quic_dcid)
        if not packets:
            return
        m.app = "quic"
        if self._quic is None:
            self._quic = quic.QuicClientHelloAssembler()
            m.quic_version = quic.quic_version_name(packets[0].version)
        if self._quic_dcid is None:
            self._quic_dcid = packets[0].dcid
        for p in packets:
            self._quic.add(p)
        raw = self._quic.client_hello_bytes()
        if raw is not None:
            self._client_hello(tls.decode_client_hello(raw[4:]), "q")
            self.done = True

    def _dns(self, d: int, msg: dns.DnsMessage) -> None:
        m = self.meta
        if msg.questions and not m.dns_query:
            q = msg.questions[0]
            m.dns_query, m.dns_qtype = q.name.rstrip("."), q.qtype
        elif msg.answers and not m.dns_query:  # mDNS announcements, inverse queries: no question
            a = msg.answers[0]
            m.dns_query, m.dns_qtype = a.name.rstrip("."), a.rtype
        if msg.qr:
            m.dns_rcode = msg.rcode
            m.dns_answers = tuple(r.value for r in msg.answers if r.value is not None)[:16]


_METHODS = (
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    b"HTTP/1.",
)


def _dns_answers_only(payload: bytes) -> bool:
    """A DNS message with answers and no question (mDNS announcement, inverse query response)."""
    return (
        len(payload) >= 12
        and payload[4:6] == b"\x00\x00"
        and payload[6:8] != b"\x00\x00"
        and int.from_bytes(payload[6:8], "big") < 64
    )


def _gquic_public_header(payload: bytes, server_port: int) -> bool:
    """A gQUIC (Q024–Q043) client packet: public flags with the version bit, a Q0xx version."""
    return (
        len(payload) > 13
        and payload[0] & 0x01 == 0x01
        and payload[0] & 0x80 == 0
        and b"Q0" in payload[1:14]
        and server_port in (443, 80, 8443)
    )


def _http_start(data: bytes) -> bool:
    return data.startswith(_METHODS)
