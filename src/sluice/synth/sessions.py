"""Session builders: whole TCP connections and UDP exchanges as timestamped frames.

Theory of operation
-------------------
A session is built eagerly into a list of ``(ts, frame)`` pairs as seen by a capture point next
to the client (a gateway on the client's access link): a client packet is captured when it is
sent, a server packet one round-trip time after the client packet it answers.

:class:`TcpSession` keeps real TCP state: initial sequence numbers, a three-way handshake with
MSS / SACK-permitted / timestamps / window-scale options, data split into MSS-sized segments
with correct sequence and cumulative acknowledgment numbers, a slow-start congestion window
(10 segments initially, +1 per acknowledged segment, capped by the receive window) and pacing
at a configured rate, delayed ACKs (every second segment and at the end of each message),
optional out-of-order delivery of one message's segments (the receiver then sends immediate
duplicate ACKs, as RFC 5681 §4.2 requires), and a FIN or RST close.

:class:`UdpExchange` sends one datagram per call, optionally fragmented at the IP layer.

How the IP packet reaches the wire is a :class:`Framing`: Ethernet (optionally VLAN/QinQ/MPLS,
the default), raw IP, Linux cooked captures, BSD loopback, or a tunnel (GRE, VXLAN, GTP-U,
IP-in-IP/6in4, Teredo) around another framing.
"""

from __future__ import annotations

__all__ = [
    "EthernetFraming",
    "Frame",
    "Framing",
    "LinuxSllFraming",
    "NullFraming",
    "RawIpFraming",
    "TcpSession",
    "TunnelFraming",
    "UdpExchange",
]

import random
import struct
from collections import deque
from collections.abc import Sequence
from typing import Literal, Protocol

from sluice.synth._rand import seeded
from sluice.synth.packets import (
    GTPU_PORT,
    TEREDO_PORT,
    VXLAN_PORT,
    EtherType,
    IpProto,
    SllPacketType,
    TcpFlag,
    bsd_null,
    ethernet,
    gre,
    gtpu,
    ip_bytes,
    ipv4,
    ipv4_fragments,
    ipv6,
    ipv6_fragments,
    linux_sll,
    linux_sll2,
    mac_bytes,
    tcp,
    teredo,
    udp,
    vxlan,
)
from sluice.wire.frame import LinkType

Frame = tuple[float, bytes]
"""One captured frame: timestamp in seconds and the link-layer bytes."""

# plain ints: IntFlag arithmetic is slow in the per-segment path
_SYN, _FIN, _RST = int(TcpFlag.SYN), int(TcpFlag.FIN), int(TcpFlag.RST)
_ACK, _PSH = int(TcpFlag.ACK), int(TcpFlag.PSH)

ACK_DELAY_S = 0.00002
"""Time between receiving a segment and the capture of the client's ACK for it."""


def _ethertype(packet: bytes) -> int:
    return EtherType.IPV6 if packet[0] >> 4 == 6 else EtherType.IPV4


class Framing(Protocol):
    """Turns an IP packet into the frame a capture would hold."""

    @property
    def linktype(self) -> int:
        """Link type of the frames produced (:class:`LinkType`)."""
        ...

    def __call__(self, packet: bytes, from_client: bool) -> bytes:
        """Frame one IPv4 or IPv6 ``packet`` sent by the client (``True``) or the server."""
        ...


class EthernetFraming:
    """Ethernet II framing between the client's MAC and the server-side router's MAC.

    Args:
        client_mac: MAC of the client.
        server_mac: MAC of the next hop toward the server.
        vlans: 802.1Q tag values, outermost first (QinQ with two or more).
        mpls: MPLS label stack, top first.
    """

    linktype: int = LinkType.ETHERNET

    def __init__(
        self,
        client_mac: str | bytes = "02:00:00:00:00:01",
        server_mac: str | bytes = "02:00:00:00:00:02",
        *,
        vlans: tuple[int, ...] = (),
        mpls: tuple[int, ...] = (),
    ) -> None:
        self.client_mac = mac_bytes(client_mac)
        self.server_mac = mac_bytes(server_mac)
        self.vlans = vlans
        self.mpls = mpls
        self._prefix: dict[tuple[bool, int], bytes] = {}
        for fc in (True, False):
            for et in (EtherType.IPV4, EtherType.IPV6):
                src, dst = (self.client_mac, self.server_mac) if fc else (self.server_mac, self.client_mac)
                self._prefix[(fc, et)] = ethernet(src, dst, et, b"", vlans, mpls)

    def __call__(self, packet: bytes, from_client: bool) -> bytes:
        return self._prefix[(from_client, _ethertype(packet))] + packet


class RawIpFraming:
    """No link layer: the frame is the IP packet (LINKTYPE_RAW)."""

    linktype: int = LinkType.RAW

    def __call__(self, packet: bytes, from_client: bool) -> bytes:
        return packet


class LinuxSllFraming:
    """Linux cooked capture framing (``any`` interface), version 1 or 2.

    Args:
        version: 1 (LINKTYPE_LINUX_SLL) or 2 (LINKTYPE_LINUX_SLL2).
        client_mac: the capturing host's MAC (packets from the client are outgoing).
        server_mac: the peer MAC recorded on incoming packets.
        ifindex: interface index for SLL2.
    """

    def __init__(
        self,
        version: Literal[1, 2] = 1,
        *,
        client_mac: str | bytes = "02:00:00:00:00:01",
        server_mac: str | bytes = "02:00:00:00:00:02",
        ifindex: int = 2,
    ) -> None:
        self.version = version
        self.linktype: int = LinkType.LINUX_SLL if version == 1 else LinkType.LINUX_SLL2
        self.client_mac = mac_bytes(client_mac)
        self.server_mac = mac_bytes(server_mac)
        self.ifindex = ifindex

    def __call__(self, packet: bytes, from_client: bool) -> bytes:
        ptype = SllPacketType.OUTGOING if from_client else SllPacketType.HOST
        addr = self.client_mac if from_client else self.server_mac
        if self.version == 1:
            return linux_sll(_ethertype(packet), packet, pkttype=ptype, addr=addr)
        return linux_sll2(_ethertype(packet), packet, ifindex=self.ifindex, pkttype=ptype, addr=addr)


class NullFraming:
    """BSD loopback framing (LINKTYPE_NULL, host byte order; AF_INET6 = 30 as on macOS)."""

    linktype: int = LinkType.NULL

    def __call__(self, packet: bytes, from_client: bool) -> bytes:
        return bsd_null(30 if packet[0] >> 4 == 6 else 2, packet)


TunnelKind = Literal["gre", "vxlan", "gtpu", "ipip", "teredo"]


class TunnelFraming:
    """Encapsulates the session's IP packets in a tunnel between two outer endpoints.

    Args:
        outer: framing of the outer packets.
        kind: ``gre`` (inner IP in GRE), ``vxlan`` (inner Ethernet in UDP 4789), ``gtpu``
            (inner IP in GTP-U, UDP 2152), ``ipip`` (IP-in-IP / 6in4, protocol 4 or 41) or
            ``teredo`` (inner IPv6 in UDP 3544).
        outer_client: outer address on the client side.
        outer_server: outer address on the server side.
        key: GRE key (``gre``), VNI (``vxlan``) or TEID (``gtpu``).
        sport: UDP source port of the outer datagrams (UDP-based tunnels).
    """

    def __init__(
        self,
        outer: Framing,
        kind: TunnelKind,
        outer_client: str,
        outer_server: str,
        *,
        key: int | None = None,
        sport: int = 49152,
    ) -> None:
        self.outer = outer
        self.kind: TunnelKind = kind
        self.outer_client = outer_client
        self.outer_server = outer_server
        self.key = key
        self.sport = sport
        self._oc = ip_bytes(outer_client)
        self._os = ip_bytes(outer_server)
        self._inner_eth = EthernetFraming("02:00:00:00:01:01", "02:00:00:00:01:02")
        self._ident = 0

    @property
    def linktype(self) -> int:
        """Link type of the outer framing."""
        return self.outer.linktype

    def _outer_ip(self, proto: int, payload: bytes, from_client: bool) -> bytes:
        src, dst = (self._oc, self._os) if from_client else (self._os, self._oc)
        self._ident = (self._ident + 1) & 0xFFFF
        if len(src) == 4:
            return ipv4(src, dst, proto, payload, ident=self._ident, df=False)
        return ipv6(src, dst, proto, payload)

    def _outer_udp(self, dport: int, payload: bytes, from_client: bool) -> bytes:
        src, dst = (self._oc, self._os) if from_client else (self._os, self._oc)
        sp, dp = (self.sport, dport) if from_client else (dport, self.sport)
        dgram = udp(sp, dp, payload, src_ip=src, dst_ip=dst)
        return self._outer_ip(IpProto.UDP, dgram, from_client)

    def __call__(self, packet: bytes, from_client: bool) -> bytes:
        if self.kind == "gre":
            outer = self._outer_ip(IpProto.GRE, gre(_ethertype(packet), packet, self.key), from_client)
        elif self.kind == "vxlan":
            inner = vxlan(self.key or 0, self._inner_eth(packet, from_client))
            outer = self._outer_udp(VXLAN_PORT, inner, from_client)
        elif self.kind == "gtpu":
            outer = self._outer_udp(GTPU_PORT, gtpu(self.key or 0, packet), from_client)
        elif self.kind == "teredo":
            if packet[0] >> 4 != 6:
                raise ValueError("Teredo carries IPv6 only")
            outer = self._outer_udp(TEREDO_PORT, teredo(packet), from_client)
        else:
            proto = IpProto.IPV6 if packet[0] >> 4 == 6 else IpProto.IPIP
            outer = self._outer_ip(proto, packet, from_client)
        return self.outer(outer, from_client)


class _Session:
    """Addresses, framing, IP header state and frame bookkeeping shared by TCP and UDP."""

    proto: int = 0

    def __init__(
        self,
        client: tuple[str, int],
        server: tuple[str, int],
        *,
        start_ts: float,
        rtt_s: float,
        framing: Framing | None,
        rng: random.Random | None,
        server_ttl: int,
    ) -> None:
        if rtt_s < 0:
            raise ValueError(f"rtt_s must be non-negative, got {rtt_s}")
        self.client = client
        """Client ``(ip, port)``."""
        self.server = server
        """Server ``(ip, port)``."""
        self.start_ts = start_ts
        """Time of the first packet."""
        self.rtt_s = rtt_s
        """Round-trip time between the capture point and the server."""
        self.framing: Framing = framing if framing is not None else EthernetFraming()
        """How packets are framed."""
        self.rng = rng if rng is not None else seeded(f"{client}{server}{start_ts}")
        self._c = ip_bytes(client[0])
        self._s = ip_bytes(server[0])
        if len(self._c) != len(self._s):
            raise ValueError("client and server address families differ")
        self._v6 = len(self._c) == 16
        self._ttl = {True: 64, False: server_ttl}
        self._ident = {True: self.rng.randrange(1 << 16), False: self.rng.randrange(1 << 16)}
        self._frames: list[tuple[float, int, bytes]] = []
        self._sorted = True
        self.t = start_ts
        """Time of the latest packet emitted so far."""
        self.packets_c2s = 0
        """Packets sent by the client."""
        self.packets_s2c = 0
        """Packets sent by the server."""
        self.bytes_c2s = 0
        """Transport payload bytes sent by the client."""
        self.bytes_s2c = 0
        """Transport payload bytes sent by the server."""

    @property
    def linktype(self) -> int:
        """Link type of the frames."""
        return self.framing.linktype

    @property
    def ip_version(self) -> int:
        """4 or 6."""
        return 6 if self._v6 else 4

    def _ip(self, from_client: bool, l4: bytes, *, df: bool = True) -> bytes:
        src, dst = (self._c, self._s) if from_client else (self._s, self._c)
        if self._v6:
            return ipv6(src, dst, self.proto, l4, hop_limit=self._ttl[from_client])
        ident = self._ident[from_client]
        self._ident[from_client] = (ident + 1) & 0xFFFF
        return ipv4(src, dst, self.proto, l4, ttl=self._ttl[from_client], ident=ident, df=df)

    def _add(self, ts: float, from_client: bool, packet: bytes, payload_len: int) -> None:
        frame = self.framing(packet, from_client)
        if self._frames and ts < self._frames[-1][0]:
            self._sorted = False
        self._frames.append((ts, len(self._frames), frame))
        self.t = max(self.t, ts)
        if from_client:
            self.packets_c2s += 1
            self.bytes_c2s += payload_len
        else:
            self.packets_s2c += 1
            self.bytes_s2c += payload_len

    @property
    def packets(self) -> list[Frame]:
        """All frames so far as ``(ts, frame)``, in timestamp order."""
        if not self._sorted:
            self._frames.sort()
            self._sorted = True
        return [(ts, fr) for ts, _, fr in self._frames]

    @property
    def packet_count(self) -> int:
        """Number of frames so far."""
        return len(self._frames)

    @property
    def end_ts(self) -> float:
        """Time of the latest frame."""
        return self.t


class TcpSession(_Session):
    """A TCP connection built segment by segment.

    Args:
        client: client ``(ip, port)``.
        server: server ``(ip, port)``.
        start_ts: time of the SYN.
        rtt_s: round-trip time between the capture point (near the client) and the server.
        mss: maximum segment size announced by both sides (payload per segment is ``mss``
            minus 12 when timestamps are on).
        framing: link-layer framing (default Ethernet).
        rng: random source for ISNs and IP identifiers (default seeded from the arguments).
        rate_bps: pacing rate of data segments (bits per second).
        window: receive window in bytes (announced with window scale 7).
        timestamps: use the TCP timestamps option (RFC 7323).
        server_ttl: TTL/hop limit of the server's packets as seen at the capture point.
        think_s: gap between receiving a message and sending the answer.
    """

    proto = IpProto.TCP

    def __init__(
        self,
        client: tuple[str, int],
        server: tuple[str, int],
        *,
        start_ts: float,
        rtt_s: float = 0.03,
        mss: int = 1460,
        framing: Framing | None = None,
        rng: random.Random | None = None,
        rate_bps: float = 100e6,
        window: int = 1 << 20,
        timestamps: bool = True,
        server_ttl: int = 52,
        think_s: float = 0.0005,
    ) -> None:
        super().__init__(
            client,
            server,
            start_ts=start_ts,
            rtt_s=rtt_s,
            framing=framing,
            rng=rng,
            server_ttl=server_ttl,
        )
        if not 64 <= mss <= 65495:
            raise ValueError(f"mss out of range: {mss}")
        self.mss = mss
        self.rate_bps = rate_bps
        self.window = window
        self.timestamps = timestamps
        self.think_s = think_s
        self.state: Literal["new", "open", "closed"] = "new"
        """Connection state: ``new`` until the handshake, ``closed`` after FIN or RST."""
        self._isn = {True: self.rng.randrange(1 << 32), False: self.rng.randrange(1 << 32)}
        self._next = dict(self._isn)  # next sequence number to send, per side
        self._ts_base = {True: self.rng.randrange(1 << 31), False: self.rng.randrange(1 << 31)}
        self._last_dir: bool | None = None
        self._last_data_end = start_ts

    # -- low level -------------------------------------------------------------------------

    def _tsopt(self, from_client: bool, ts: float) -> bytes:
        if not self.timestamps:
            return b""
        el = max(ts - self.start_ts, 0.0)
        val = (self._ts_base[from_client] + int(el * 1000)) & 0xFFFFFFFF
        echo = (self._ts_base[not from_client] + int(max(el - self.rtt_s / 2, 0) * 1000)) & (0xFFFFFFFF)
        return struct.pack("!BBBBII", 1, 1, 8, 10, val, echo)

    def _segment(
        self,
        ts: float,
        from_client: bool,
        flags: int,
        seq: int,
        ack: int,
        payload: bytes = b"",
        options: bytes | None = None,
        window: int | None = None,
    ) -> None:
        sport, dport = (self.client[1], self.server[1]) if from_client else (self.server[1], self.client[1])
        src, dst = (self._c, self._s) if from_client else (self._s, self._c)
        opts = self._tsopt(from_client, ts) if options is None else options
        win = min(self.window >> 7, 0xFFFF) if window is None else window
        seg = tcp(sport, dport, seq, ack, flags, payload, src_ip=src, dst_ip=dst, window=win, options=opts)
        self._add(ts, from_client, self._ip(from_client, seg), len(payload))

    def _syn_options(self, from_client: bool, ts: float) -> bytes:
        mss = struct.pack("!BBH", 2, 4, self.mss)
        if not self.timestamps:
            return mss + b"\x01\x03\x03\x07\x01\x01\x04\x02"  # NOP WS=7, NOP NOP SACK-perm
        el = max(ts - self.start_ts, 0.0)
        val = (self._ts_base[from_client] + int(el * 1000)) & 0xFFFFFFFF
        echo = 0 if from_client else self._ts_base[True]
        return mss + struct.pack("!BBBBII", 4, 2, 8, 10, val, echo) + b"\x01\x03\x03\x07"

    def _payload_per_segment(self) -> int:
        return self.mss - (12 if self.timestamps else 0)

    # -- public ----------------------------------------------------------------------------

    def open(self) -> None:
        """Emit the three-way handshake (done automatically by the first send).

        Raises:
            ValueError: the connection is not new.
        """
        if self.state != "new":
            raise ValueError(f"cannot open a connection in state {self.state}")
        t0 = self.start_ts
        c_isn, s_isn = self._isn[True], self._isn[False]
        win_syn = min(self.window, 0xFFFF)
        self._segment(t0, True, _SYN, c_isn, 0, options=self._syn_options(True, t0), window=win_syn)
        t1 = t0 + self.rtt_s
        self._segment(
            t1,
            False,
            _SYN | _ACK,
            s_isn,
            c_isn + 1,
            options=self._syn_options(False, t1),
            window=win_syn,
        )
        self._next = {True: c_isn + 1, False: s_isn + 1}
        self._segment(t1 + ACK_DELAY_S, True, _ACK, c_isn + 1, s_isn + 1)
        self.state = "open"
        self._last_dir = True
        self._last_data_end = t1 + ACK_DELAY_S

    def _start_time(self, from_client: bool, delay_s: float | None) -> float:
        if delay_s is not None:
            return self.t + delay_s
        if from_client:
            return self.t + self.think_s
        if self._last_dir:
            # the server answers after the last client packet reached it and came back
            return max(self.t, self._last_data_end + self.rtt_s) + self.think_s
        return self.t + self.think_s

    def client_send(
        self, payload: bytes, *, order: Sequence[int] | None = None, delay_s: float | None = None
    ) -> None:
        """Send ``payload`` from client to server, split into segments, with the server's ACKs.

        Args:
            payload: application bytes (may be empty to do nothing).
            order: optional permutation of segment indices giving the order in which the
                segments reach the capture point (out-of-order delivery).
            delay_s: time after the latest packet at which sending starts (default: a short
                think time).

        Raises:
            ValueError: the connection is closed or ``order`` is not a permutation.
        """
        self._send(True, payload, order, delay_s)

    def server_send(
        self, payload: bytes, *, order: Sequence[int] | None = None, delay_s: float | None = None
    ) -> None:
        """Send ``payload`` from server to client with the client's ACKs (see client_send).

        Raises:
            ValueError: the connection is closed or ``order`` is not a permutation.
        """
        self._send(False, payload, order, delay_s)

    def _send(
        self,
        from_client: bool,
        payload: bytes,
        order: Sequence[int] | None,
        delay_s: float | None,
    ) -> None:
        if self.state == "new":
            self.open()
        if self.state == "closed":
            raise ValueError("connection is closed")
        if not payload:
            return
        step = self._payload_per_segment()
        view = memoryview(payload)
        segs = [bytes(view[i : i + step]) for i in range(0, len(payload), step)]
        idx = list(range(len(segs))) if order is None else list(order)
        if sorted(idx) != list(range(len(segs))):
            raise ValueError(f"order must be a permutation of range({len(segs)})")
        base = self._next[from_client]
        peer_next = self._next[not from_client]
        offsets = [i * step for i in range(len(segs))]
        t = self._start_time(from_client, delay_s)
        rwnd = max(self.window // step, 2)
        acks: deque[tuple[float, int]] = deque()
        acked = 0
        received: set[int] = set()
        contiguous = 0
        unacked = 0
        ack_times: list[tuple[float, int]] = []
        for n, i in enumerate(idx):
            if n:
                t += len(segs[i]) * 8 / self.rate_bps
            while True:
                while acks and acks[0][0] <= t:
                    acked = max(acked, acks.popleft()[1])
                cwnd = min(10 + acked, rwnd)
                if n < acked + cwnd or not acks:
                    break
                t = acks[0][0]
            last = n == len(idx) - 1
            flags = _ACK | _PSH if last else _ACK
            self._segment(t, from_client, flags, base + offsets[i], peer_next, segs[i])
            received.add(i)
            while contiguous in received:
                contiguous += 1
            unacked += 1
            in_order = contiguous == n + 1
            if unacked >= 2 or last or not in_order:
                unacked = 0
                # the receiver's ACK as seen at the capture point
                t_ack = t + (ACK_DELAY_S if not from_client else self.rtt_s)
                ack_to = len(payload) if contiguous == len(segs) else offsets[contiguous]
                ack_times.append((t_ack, base + ack_to))
                # when the sender may use it
                acks.append((t_ack + (self.rtt_s if not from_client else 0.0), contiguous))
        for t_ack, ack_no in ack_times:
            self._segment(t_ack, not from_client, _ACK, peer_next, ack_no)
        self._next[from_client] = base + len(payload)
        self._last_dir = from_client
        self._last_data_end = t

    def close(self, initiator: Literal["client", "server"] = "client") -> None:
        """Close with a FIN exchange (FIN, FIN-ACK, ACK).

        Raises:
            ValueError: the connection was never opened or is already closed.
        """
        if self.state != "open":
            raise ValueError(f"cannot close a connection in state {self.state}")
        a = initiator == "client"
        t = self._start_time(a, None)
        fa, fb = self._next[a], self._next[not a]
        self._segment(t, a, _FIN | _ACK, fa, fb)
        t2 = t + (self.rtt_s if a else ACK_DELAY_S)
        self._segment(t2, not a, _FIN | _ACK, fb, fa + 1)
        t3 = t2 + (ACK_DELAY_S if a else self.rtt_s)
        self._segment(t3, a, _ACK, fa + 1, fb + 1)
        self._next = {a: fa + 1, not a: fb + 1}
        self.state = "closed"

    def reset(self, from_client: bool = True) -> None:
        """Abort with an RST from one side.

        Raises:
            ValueError: the connection is not open.
        """
        if self.state != "open":
            raise ValueError(f"cannot reset a connection in state {self.state}")
        t = self._start_time(from_client, None)
        seq, ack = self._next[from_client], self._next[not from_client]
        self._segment(t, from_client, _RST | _ACK, seq, ack, options=b"")
        self.state = "closed"


class UdpExchange(_Session):
    """UDP datagrams between a client and a server, one per call.

    Args:
        client: client ``(ip, port)``.
        server: server ``(ip, port)``.
        start_ts: time of the first datagram.
        rtt_s: round-trip time between the capture point and the server.
        framing: link-layer framing (default Ethernet).
        rng: random source for IP identifiers.
        mtu: fragment datagrams whose IP packet exceeds this size (``None``: never).
        server_ttl: TTL/hop limit of the server's packets.
        think_s: gap between receiving a datagram and answering it.
    """

    proto = IpProto.UDP

    def __init__(
        self,
        client: tuple[str, int],
        server: tuple[str, int],
        *,
        start_ts: float,
        rtt_s: float = 0.03,
        framing: Framing | None = None,
        rng: random.Random | None = None,
        mtu: int | None = None,
        server_ttl: int = 52,
        think_s: float = 0.0002,
    ) -> None:
        super().__init__(
            client,
            server,
            start_ts=start_ts,
            rtt_s=rtt_s,
            framing=framing,
            rng=rng,
            server_ttl=server_ttl,
        )
        self.mtu = mtu
        self.think_s = think_s
        self._last_dir: bool | None = None
        self._last_client_ts = start_ts

    def send(self, from_client: bool, payload: bytes, *, at: float | None = None) -> float:
        """Send one datagram; returns its capture time.

        Args:
            from_client: direction.
            payload: UDP payload.
            at: explicit capture time (default: after the latest packet, one RTT after the
                last client datagram for a server answer).
        """
        if at is None:
            if self._last_dir is None:
                at = self.start_ts
            elif not from_client and self._last_dir:
                at = max(self.t, self._last_client_ts + self.rtt_s) + self.think_s
            else:
                at = self.t + self.think_s
        src, dst = (self._c, self._s) if from_client else (self._s, self._c)
        sport, dport = (self.client[1], self.server[1]) if from_client else (self.server[1], self.client[1])
        dgram = udp(sport, dport, payload, src_ip=src, dst_ip=dst)
        hdr = 40 if self._v6 else 20
        if self.mtu is not None and len(dgram) + hdr > self.mtu:
            if self._v6:
                ident = self.rng.randrange(1 << 32)
                frags = ipv6_fragments(
                    src,
                    dst,
                    IpProto.UDP,
                    dgram,
                    mtu=self.mtu,
                    ident=ident,
                    hop_limit=self._ttl[from_client],
                )
            else:
                ident = self._ident[from_client]
                self._ident[from_client] = (ident + 1) & 0xFFFF
                frags = ipv4_fragments(
                    src,
                    dst,
                    IpProto.UDP,
                    dgram,
                    mtu=self.mtu,
                    ident=ident,
                    ttl=self._ttl[from_client],
                )
            for k, frag in enumerate(frags):
                self._add(at + k * 1e-6, from_client, frag, len(payload) if k == 0 else 0)
        else:
            self._add(at, from_client, self._ip(from_client, dgram, df=False), len(payload))
        self._last_dir = from_client
        if from_client:
            self._last_client_ts = at
        return at

    def client_send(self, payload: bytes, *, at: float | None = None) -> float:
        """Send a datagram from the client; returns its capture time."""
        return self.send(True, payload, at=at)

    def server_send(self, payload: bytes, *, at: float | None = None) -> float:
        """Send a datagram from the server; returns its capture time."""
        return self.send(False, payload, at=at)
