"""Community ID flow hashing (Corelight's community-id-spec, version 1).

Theory of operation
-------------------
A Community ID names a bidirectional flow the same way in every tool that implements the spec
(Zeek, Suricata, Arkime, Elastic), so sluice's flows and decisions join with their logs. Version 1
is ``"1:" + base64(sha1(seed ‖ addr_a ‖ addr_b ‖ proto ‖ 0 ‖ port_a ‖ port_b))`` where

* ``seed`` is a 16-bit big-endian integer (0 unless the operator configures one);
* the endpoints are ordered so that ``(addr_a, port_a) < (addr_b, port_b)``, comparing the
  addresses' network bytes first, then the ports, so both directions give the same value;
* addresses are 4 or 16 network-order bytes, the protocol one byte, then one zero byte of padding;
* ports are 16-bit big-endian for TCP, UDP and SCTP. For ICMP and ICMPv6 the "ports" are the
  message type and, when the type has a counterpart (echo request and reply, neighbour
  solicitation and advertisement …), that counterpart, else the code; a type without a
  counterpart is one-way and its endpoints are not reordered;
* other protocols hash the addresses and protocol only.

This module writes the hash from the spec's text; the test suite checks it against the spec's
published baseline vectors and against the ``communityid`` package.
"""

from __future__ import annotations

__all__ = ["COMMUNITY_ID_VERSION", "PORT_PROTOCOLS", "community_id"]

import base64
import hashlib
import ipaddress
import struct

COMMUNITY_ID_VERSION = 1
"""Version of the community-id-spec this module implements."""

PORT_PROTOCOLS = frozenset({6, 17, 132})
"""TCP, UDP and SCTP: the protocols whose ports are hashed as ports."""

_ICMP, _ICMP6 = 1, 58
# type -> counterpart type (two-way ICMP exchanges), community-id-spec "ICMP" section
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
    130: 131, 131: 130, 144: 145, 145: 144, 146: 147, 147: 146,
}  # fmt: skip


def _addr_bytes(addr: str | bytes) -> bytes:
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"address of {len(addr)} bytes")
        return addr
    return ipaddress.ip_address(addr).packed


def community_id(
    proto: int,
    saddr: str | bytes,
    daddr: str | bytes,
    sport: int | None = None,
    dport: int | None = None,
    *,
    seed: int = 0,
) -> str:
    """The version 1 Community ID of a flow.

    Args:
        proto: IP protocol number.
        saddr: source address (text or 4/16 network-order bytes).
        daddr: destination address.
        sport: source port; for ICMP/ICMPv6 the message type. Ignored for protocols
            without ports.
        dport: destination port; for ICMP/ICMPv6 the message code.
        seed: 16-bit seed shared by the tools whose IDs must agree.

    Returns:
        ``"1:"`` followed by the base64 SHA-1 digest.

    Raises:
        ValueError: an address that is not IPv4 or IPv6, mixed families, a seed or port outside
            16 bits, or a port-carrying protocol without ports.
    """
    a, b = _addr_bytes(saddr), _addr_bytes(daddr)
    if len(a) != len(b):
        raise ValueError("source and destination addresses are of different families")
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"seed {seed} is not a 16-bit value")
    has_ports = proto in PORT_PROTOCOLS or proto in (_ICMP, _ICMP6)
    ports = b""
    if has_ports:
        if sport is None or dport is None:
            raise ValueError(f"protocol {proto} needs ports (type and code for ICMP)")
        if not (0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF):
            raise ValueError("ports must be 16-bit values")
        one_way = False
        if proto in (_ICMP, _ICMP6):
            pairs = _ICMP4_PAIRS if proto == _ICMP else _ICMP6_PAIRS
            if sport in pairs:
                dport = pairs[sport]
            else:
                one_way = True
        if not one_way and (a, sport) > (b, dport):
            a, b, sport, dport = b, a, dport, sport
        ports = struct.pack(">HH", sport, dport)
    elif (a, 0) > (b, 0):
        a, b = b, a
    data = struct.pack(">H", seed) + a + b + struct.pack(">BB", proto, 0) + ports
    digest = hashlib.sha1(data, usedforsecurity=False).digest()
    return f"{COMMUNITY_ID_VERSION}:{base64.b64encode(digest).decode('ascii')}"
