"""Real QUIC + HTTP/3 exchanges from aioquic (see :mod:`sluice.synth.payloads`)."""

from __future__ import annotations

__all__ = [
    "QUIC_V1",
    "QUIC_V2",
    "QuicExchange",
    "quic_exchange",
    "quic_short_packet",
    "quic_with_new_ids",
]

import base64
import random
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sluice.synth._rand import seeded
from sluice.synth._tls import credentials

if TYPE_CHECKING:  # aioquic is imported when QUIC is used (it is an optional dependency)
    from aioquic.h3.connection import H3Connection
    from aioquic.quic.connection import QuicConnection

# ---------------------------------------------------------------------------------------------
# QUIC


@dataclass(frozen=True, slots=True)
class QuicExchange:
    """A real QUIC connection with one HTTP/3 request and response, datagram by datagram."""

    sni: str | None
    """Server name in the client's Initial."""
    alpn: str
    """ALPN protocol offered and selected (``h3``)."""
    version: int
    """QUIC version of the long headers (1 or 0x6b3343cf)."""
    datagrams: tuple[tuple[bool, float, bytes], ...]
    """``(from_client, time since the first datagram, bytes)`` in capture order."""
    client_cid: bytes
    """Connection ID the client chose for itself (DCID of server-to-client packets)."""
    server_cid: bytes
    """Connection ID the server chose for itself (DCID of client-to-server packets)."""

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable form (bytes as base64)."""
        return {
            "sni": self.sni,
            "alpn": self.alpn,
            "version": self.version,
            "datagrams": [[c, t, base64.b64encode(d).decode()] for c, t, d in self.datagrams],
            "client_cid": self.client_cid.hex(),
            "server_cid": self.server_cid.hex(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> QuicExchange:
        """Inverse of :meth:`to_json`."""
        dgs = obj["datagrams"]
        assert isinstance(dgs, list)
        sni = obj["sni"]
        return cls(
            sni=str(sni) if sni is not None else None,
            alpn=str(obj["alpn"]),
            version=int(str(obj["version"])),
            datagrams=tuple((bool(c), float(t), base64.b64decode(str(d))) for c, t, d in dgs),
            client_cid=bytes.fromhex(str(obj["client_cid"])),
            server_cid=bytes.fromhex(str(obj["server_cid"])),
        )


QUIC_V1 = 0x00000001
"""QUIC version 1 (RFC 9000)."""
QUIC_V2 = 0x6B3343CF
"""QUIC version 2 (RFC 9369)."""


def _h3_request(h3: H3Connection, quic: QuicConnection, host: str, path: str) -> None:
    sid = quic.get_next_available_stream_id()
    h3.send_headers(
        sid,
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", host.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101"),
            (b"accept", b"*/*"),
        ],
        end_stream=True,
    )


def quic_exchange(
    sni: str | None,
    *,
    version: int = QUIC_V1,
    path: str = "/",
    response_size: int = 2000,
    rtt_s: float = 0.03,
) -> QuicExchange:
    """Run a real QUIC + HTTP/3 exchange between two aioquic ends on a simulated clock.

    Args:
        sni: server name (also the ``:authority``).
        version: :data:`QUIC_V1` or :data:`QUIC_V2`.
        path: request path.
        response_size: body bytes of the response.
        rtt_s: simulated round-trip time (the capture point is next to the client).

    Returns:
        The recorded datagrams in capture order.

    Raises:
        RuntimeError: the exchange did not complete (a bug: both ends are ours).
        ImportError: aioquic is not installed (``pip install sluice[test]``).
    """
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic import events as qe
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    creds = credentials()
    ccfg = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        server_name=sni,
        supported_versions=[version],
        verify_mode=ssl.CERT_NONE,
    )
    client = QuicConnection(configuration=ccfg)
    now = 0.0
    client.connect(("192.0.2.1", 443), now=now)
    log: list[tuple[float, bool, bytes]] = []
    inflight: list[tuple[float, bool, bytes]] = []  # (arrival, to_client, data)

    def pump(conn: QuicConnection, from_client: bool, t: float) -> None:
        for data, _ in conn.datagrams_to_send(now=t):
            if from_client:
                log.append((t, True, data))
                inflight.append((t + rtt_s / 2, False, data))
            else:
                log.append((t + rtt_s / 2, False, data))
                inflight.append((t + rtt_s / 2, True, data))

    pump(client, True, now)
    initial = log[0][2]
    odcid = initial[6 : 6 + initial[5]]  # long header: flags, version, DCID length, DCID
    scfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"], supported_versions=[version])
    scfg.certificate = creds.leaf
    scfg.certificate_chain = [creds.ca]
    scfg.private_key = creds.key
    server = QuicConnection(configuration=scfg, original_destination_connection_id=odcid)
    h3c, h3s = H3Connection(client), H3Connection(server)
    ends = {True: (client, h3c), False: (server, h3s)}
    body = seeded(response_size).randbytes(response_size)
    done = False
    for _ in range(400):
        times = [a for a, _, _ in inflight]
        times += [tm for c, _ in ends.values() if (tm := c.get_timer()) is not None]
        if not times or (done and not inflight):
            break
        now = min(times)
        due = sorted((x for x in inflight if x[0] <= now), key=lambda x: x[0])
        for item in due:
            inflight.remove(item)
            conn = ends[item[1]][0]
            peer = ("192.0.2.1", 443) if item[1] else ("192.0.2.2", 50000)
            conn.receive_datagram(item[2], peer, now=now)
        for is_client, (conn, h3) in ends.items():
            tm = conn.get_timer()
            if tm is not None and tm <= now:
                conn.handle_timer(now=now)
            while (ev := conn.next_event()) is not None:
                if isinstance(ev, qe.HandshakeCompleted) and is_client:
                    _h3_request(h3, conn, sni or "192.0.2.1", path)
                for hev in h3.handle_event(ev):
                    if isinstance(hev, HeadersReceived) and not is_client:
                        h3.send_headers(
                            hev.stream_id,
                            [(b":status", b"200"), (b"content-length", str(len(body)).encode())],
                        )
                        h3.send_data(hev.stream_id, body, end_stream=True)
                    elif isinstance(hev, DataReceived) and is_client and hev.stream_ended:
                        done = True
        for is_client, (conn, _) in ends.items():
            pump(conn, is_client, now)
    if not done:  # pragma: no cover - both ends are ours
        raise RuntimeError("QUIC exchange did not complete")
    log.sort(key=lambda x: x[0])
    t0 = log[0][0]
    return QuicExchange(
        sni=sni,
        alpn="h3",
        version=version,
        datagrams=tuple((c, t - t0, d) for t, c, d in log),
        client_cid=client.host_cid,
        server_cid=server.host_cid,
    )


def _varint_end(data: bytes, pos: int) -> tuple[int, int]:
    """Value and end offset of the QUIC variable-length integer at ``pos`` (RFC 9000 §16)."""
    n = 1 << (data[pos] >> 6)
    return int.from_bytes(data[pos : pos + n], "big") & ((1 << (8 * n - 2)) - 1), pos + n


def _long_type(first: int, version: int) -> str:
    bits = (first & 0x30) >> 4
    if version == QUIC_V2:  # RFC 9369 §3.2
        return ("retry", "initial", "0rtt", "handshake")[bits]
    return ("initial", "0rtt", "handshake", "retry")[bits]


def quic_with_new_ids(qx: QuicExchange, rng: random.Random) -> QuicExchange:
    """The same exchange under fresh connection IDs, so that pooled exchanges stay distinct.

    Every connection ID in a packet header is replaced. Initial packets, whose keys derive
    from the client's first destination ID (RFC 9001 §5.2), are decrypted with the old keys,
    get the IDs inside the ClientHello's transport parameters replaced, and are encrypted
    again with keys derived from the new ID, so anyone can still decrypt them (tshark does).
    Handshake and 1-RTT packets keep their protected payload; only holders of the TLS secrets
    could tell that their authentication tags no longer match the rewritten headers.

    Args:
        qx: an exchange recorded by :func:`quic_exchange`.
        rng: source of the new IDs.

    Returns:
        The rewritten exchange (same sizes and timing).

    Raises:
        ImportError: aioquic is not installed.
    """
    from aioquic.quic.crypto import CryptoPair

    first = qx.datagrams[0][2]
    odcid = first[6 : 6 + first[5]]
    ids = {
        odcid: rng.randbytes(len(odcid)),
        qx.client_cid: rng.randbytes(len(qx.client_cid)),
        qx.server_cid: rng.randbytes(len(qx.server_cid)),
    }
    old, new = CryptoPair(), CryptoPair()
    old.setup_initial(odcid, is_client=True, version=qx.version)
    new.setup_initial(ids[odcid], is_client=True, version=qx.version)
    out = []
    for from_client, t, data in qx.datagrams:
        rebuilt = bytearray()
        off = 0
        while off < len(data):
            if not data[off] & 0x80:  # short header: the rest of the datagram
                cid = data[off + 1 : off + 1 + len(qx.client_cid)]
                rebuilt += data[off : off + 1] + ids.get(cid, cid)
                rebuilt += data[off + 1 + len(cid) :]
                break
            version = int.from_bytes(data[off + 1 : off + 5], "big")
            dl = data[off + 5]
            dcid = data[off + 6 : off + 6 + dl]
            sl = data[off + 6 + dl]
            scid = data[off + 7 + dl : off + 7 + dl + sl]
            pos = off + 7 + dl + sl
            kind = _long_type(data[off], version)
            if kind == "initial":
                tlen, pos = _varint_end(data, pos)
                pos += tlen
            length, pn_off = _varint_end(data, pos)
            end = pn_off + length
            head = data[off : off + 6] + ids.get(dcid, dcid) + bytes([sl]) + ids.get(scid, scid)
            if kind != "initial":
                rebuilt += head + data[off + 7 + dl + sl : end]
            else:
                ctx_old = old.send if from_client else old.recv
                ctx_new = new.send if from_client else new.recv
                plain, payload, pn, _ = ctx_old.decrypt_packet(data[off:end], pn_off - off, 0)
                for a, b in ids.items():
                    payload = payload.replace(a, b)
                plain = plain[:1] + head[1:] + plain[len(head) :]  # plain[0] is unmasked
                rebuilt += ctx_new.encrypt_packet(plain, payload, pn)
            off = end
        out.append((from_client, t, bytes(rebuilt)))
    return QuicExchange(
        sni=qx.sni,
        alpn=qx.alpn,
        version=qx.version,
        datagrams=tuple(out),
        client_cid=ids[qx.client_cid],
        server_cid=ids[qx.server_cid],
    )


def quic_short_packet(dcid: bytes, size: int, rng: random.Random, filler: bytes) -> bytes:
    """A 1-RTT (short header) QUIC packet of ``size`` bytes with protected random contents.

    Args:
        dcid: destination connection ID.
        size: total datagram size (at least ``len(dcid) + 21``: header, packet number, tag).
        rng: randomness for the protected first-byte bits and the filler offset.
        filler: random bytes standing in for ciphertext.
    """
    size = max(size, len(dcid) + 21)
    first = 0x40 | rng.randrange(0x40)  # fixed bit, protected spin/key-phase/PN-length bits
    n = size - 1 - len(dcid)
    off = rng.randrange(len(filler) - n)
    return bytes([first]) + dcid + filler[off : off + n]
