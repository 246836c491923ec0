"""DNS messages: decoder, DNS-over-TCP framing and a small encoder.

Theory of operation
-------------------
A DNS message (RFC 1035 §4.1) is a 12-byte header followed by four sections of variable-length
entries. Names (§3.1, §4.1.4) are sequences of length-prefixed labels, possibly ending in a
two-byte *pointer* to an earlier name in the same message. :func:`decode_dns` walks the whole
message once:

* Names are followed through pointers only *backwards*: every pointer must point strictly before
  the previous jump target (or before itself for the first jump), so a chain cannot loop and a
  forward pointer is rejected (``dns.pointer_loop``); the number of jumps is also capped.
* Labels longer than 63 bytes or using the reserved 0x40/0x80 label types are ``dns.bad_label``;
  a name longer than 255 bytes in uncompressed wire form is ``dns.name_too_long``
  (RFC 1035 §2.3.4); any read past the end is ``dns.truncated``.
* Names are returned in presentation form as on the wire (case kept), absolute (trailing dot),
  with the escapes dig and dnspython use: ``"().;\\@$`` get a backslash, bytes outside printable
  ASCII become ``\\DDD``.
* ``rdata`` is kept as bytes. For the RFC 1035 types whose rdata holds compressible names (NS,
  CNAME, SOA, PTR, MX) those names are expanded, so ``rdata`` stands alone outside the message.
  ``value`` is the decoded A/AAAA address (RFC 3596), CNAME/NS/PTR/DNAME target, MX exchange or
  joined TXT strings, else ``None``.
* An OPT pseudo-record (RFC 6891 §6.1) in the additional section is also summarised as
  :class:`DnsEdns`; its options are kept as ``(code, bytes)``.

DNS over TCP (RFC 1035 §4.2.2, RFC 7766) prefixes each message with a two-byte length;
:func:`decode_dns_tcp` splits a reassembled stream and ignores an incomplete last message.
The encoder (:func:`encode_dns`) compresses owner and question names and writes ``rdata`` as given.
"""

from __future__ import annotations

__all__ = [
    "MAX_NAME_WIRE_BYTES",
    "MAX_POINTER_HOPS",
    "DnsClass",
    "DnsEdns",
    "DnsMessage",
    "DnsOpcode",
    "DnsOptionCode",
    "DnsQuestion",
    "DnsRcode",
    "DnsRecord",
    "DnsType",
    "decode_dns",
    "decode_dns_tcp",
    "encode_dns",
    "encode_dns_query",
    "encode_dns_response",
    "looks_like_dns",
    "make_dns_record",
]

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from sluice.errors import DecodeError

MAX_NAME_WIRE_BYTES = 255
"""Longest name in uncompressed wire form, root byte included (RFC 1035 §2.3.4)."""
MAX_LABEL_BYTES = 63
"""Longest label (RFC 1035 §2.3.4)."""
MAX_POINTER_HOPS = 64
"""Most compression pointers followed while reading one name."""
HEADER_BYTES = 12
"""Size of the fixed message header (RFC 1035 §4.1.1)."""


class DnsType(IntEnum):
    """Common resource record types (IANA DNS parameters)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    NULL = 10
    PTR = 12
    HINFO = 13
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    NAPTR = 35
    DNAME = 39
    OPT = 41
    DS = 43
    SSHFP = 44
    RRSIG = 46
    NSEC = 47
    DNSKEY = 48
    NSEC3 = 50
    TLSA = 52
    SVCB = 64
    HTTPS = 65
    SPF = 99
    TKEY = 249
    TSIG = 250
    IXFR = 251
    AXFR = 252
    ANY = 255
    URI = 256
    CAA = 257


class DnsClass(IntEnum):
    """Resource record classes (RFC 1035 §3.2.4, RFC 2136)."""

    IN = 1
    CH = 3
    HS = 4
    NONE = 254
    ANY = 255


class DnsOpcode(IntEnum):
    """Header opcodes (RFC 1035 §4.1.1, RFC 1996, RFC 2136, RFC 8490)."""

    QUERY = 0
    IQUERY = 1
    STATUS = 2
    NOTIFY = 4
    UPDATE = 5
    DSO = 6


class DnsRcode(IntEnum):
    """Response codes (RFC 1035 §4.1.1, RFC 2136, RFC 6891 for values above 15)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    YXDOMAIN = 6
    YXRRSET = 7
    NXRRSET = 8
    NOTAUTH = 9
    NOTZONE = 10
    BADVERS = 16


class DnsOptionCode(IntEnum):
    """EDNS(0) option codes (IANA DNS EDNS0 option codes)."""

    NSID = 3
    CLIENT_SUBNET = 8
    EXPIRE = 9
    COOKIE = 10
    TCP_KEEPALIVE = 11
    PADDING = 12
    CHAIN = 13
    KEY_TAG = 14
    EXTENDED_ERROR = 15


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    """One entry of the question section (RFC 1035 §4.1.2)."""

    name: str
    """Queried name in presentation form, absolute (``"www.example.com."``)."""
    qtype: int
    """Query type (:class:`DnsType` value)."""
    qclass: int
    """Query class (:class:`DnsClass` value; mDNS sets the top bit for unicast replies)."""


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record (RFC 1035 §4.1.3)."""

    name: str
    """Owner name in presentation form, absolute."""
    rtype: int
    """Record type (:class:`DnsType` value)."""
    rclass: int
    """Record class; for OPT the requester's UDP payload size (RFC 6891 §6.1.2)."""
    ttl: int
    """Time to live in seconds; for OPT the extended rcode, version and flags."""
    rdata: bytes
    """Record data; names inside NS/CNAME/SOA/PTR/MX rdata are expanded (no pointers)."""
    value: str | None
    """A/AAAA address, CNAME/NS/PTR/DNAME target, MX exchange, joined TXT text, else None."""


@dataclass(frozen=True, slots=True)
class DnsEdns:
    """The OPT pseudo-record of a message, decoded (RFC 6891 §6.1.3)."""

    udp_payload_size: int
    """Largest UDP payload the sender can reassemble."""
    extended_rcode: int
    """Upper eight bits of the 12-bit response code."""
    version: int
    """EDNS version (0)."""
    dnssec_ok: bool
    """The DO bit (RFC 3225)."""
    options: tuple[tuple[int, bytes], ...]
    """Options as ``(code, data)`` in wire order (:class:`DnsOptionCode` for known codes)."""


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """A decoded DNS message (RFC 1035 §4.1)."""

    id: int
    """Transaction ID."""
    qr: bool
    """True for a response."""
    opcode: int
    """Kind of query (:class:`DnsOpcode` value)."""
    aa: bool
    """Authoritative answer."""
    tc: bool
    """Truncated (the answer did not fit in the transport)."""
    rd: bool
    """Recursion desired."""
    ra: bool
    """Recursion available."""
    z: bool
    """The reserved header bit (must be zero)."""
    ad: bool
    """Authentic data (RFC 4035 §3.2.3)."""
    cd: bool
    """Checking disabled (RFC 4035 §3.2.2)."""
    rcode: int
    """Four-bit header response code (:class:`DnsRcode` value); see :attr:`full_rcode`."""
    questions: tuple[DnsQuestion, ...]
    """Question section."""
    answers: tuple[DnsRecord, ...]
    """Answer section."""
    authority: tuple[DnsRecord, ...]
    """Authority section."""
    additional: tuple[DnsRecord, ...]
    """Additional section (including any OPT record)."""
    edns: DnsEdns | None = None
    """The OPT record of the additional section, decoded; None without EDNS."""
    trailing_bytes: int = 0
    """Bytes left after the last section (zero in well-formed messages)."""

    @property
    def query_name(self) -> str | None:
        """The first question's name without the trailing dot (root is ``""``); None if none."""
        if not self.questions:
            return None
        return self.questions[0].name[:-1]

    @property
    def full_rcode(self) -> int:
        """The 12-bit response code, including the EDNS extended bits (RFC 6891 §6.1.3)."""
        ext = self.edns.extended_rcode if self.edns is not None else 0
        return (ext << 4) | self.rcode

    @property
    def flags(self) -> int:
        """The 16-bit flags word of the header."""
        return (
            (self.qr << 15)
            | ((self.opcode & 0xF) << 11)
            | (self.aa << 10)
            | (self.tc << 9)
            | (self.rd << 8)
            | (self.ra << 7)
            | (self.z << 6)
            | (self.ad << 5)
            | (self.cd << 4)
            | (self.rcode & 0xF)
        )


# --- names -------------------------------------------------------------------------------

_SPECIAL = b'"().;\\@$'
_BYTE_TEXT = tuple(
    "\\" + chr(b) if b in _SPECIAL else (chr(b) if 0x21 <= b <= 0x7E else f"\\{b:03d}") for b in range(256)
)
_PLAIN_BYTES = bytes(b for b in range(0x21, 0x7F) if b not in _SPECIAL)
_NAME_TYPES = frozenset({DnsType.NS, DnsType.CNAME, DnsType.PTR, DnsType.DNAME})
# Empty rdata is how RFC 2136 §2.4/§2.5 UPDATE prerequisites and deletions (class ANY or NONE)
# and RFC 1035 §6.4 inverse queries carry records of these types.
_ADDRESS_TYPES = frozenset({DnsType.A, DnsType.AAAA})
# IN, and NONE/ANY as RFC 2136 UPDATE uses them; mDNS sets the top bit (cache flush).
_ADDRESS_CLASSES = frozenset({DnsClass.IN, DnsClass.NONE, DnsClass.ANY})
_EMPTY_OK = frozenset({DnsType.A, DnsType.AAAA, DnsType.MX, DnsType.SOA, *_NAME_TYPES})


def _label_text(label: bytes) -> str:
    """Text of one label: ASCII as is; UTF-8 text (mDNS, LLMNR: RFC 6762 §16) decoded; anything
    else, and dots, backslashes and control bytes, escaped as dig does (``\\DDD``)."""
    if not label.translate(None, _PLAIN_BYTES):
        return label.decode("ascii")
    if max(label) >= 0x80:
        try:
            text = label.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        # spaces are kept: mDNS instance names ("Luca’s iMac", RFC 6763 §4.3) are full of them
        if (
            text
            and all(ch.isprintable() or ch == " " for ch in text)
            and not any(ch in text for ch in '.\\()";$@')
        ):
            return text
    return "".join([_BYTE_TEXT[b] for b in label])


def _labels_text(labels: list[bytes]) -> str:
    if not labels:
        return "."
    if not b"".join(labels).translate(None, _PLAIN_BYTES):
        return b".".join(labels).decode("ascii") + "."
    return ".".join([_label_text(lab) for lab in labels]) + "."


_Suffixes = dict[int, tuple[list[bytes], int]]
"""Names already read in one message: label offset -> (labels from there, their wire bytes)."""


def _read_labels(data: bytes, pos: int, seen: _Suffixes) -> tuple[list[bytes], int]:
    """Read the name at ``pos``; return its labels and the offset just after it.

    Every label read is remembered in ``seen`` with the rest of its name, so a pointer to a
    name read before costs one lookup. Those suffixes passed the same pointer checks (with a
    limit at most their offset), so reusing them keeps the loop protection.
    """
    n = len(data)
    labels: list[bytes] = []
    starts: list[int] = []
    wire_len = 1
    after = -1
    limit = pos
    hops = 0
    while True:
        if after >= 0:
            known = seen.get(pos)
            if known is not None:
                wire_len += known[1]
                if wire_len > MAX_NAME_WIRE_BYTES:
                    raise DecodeError("dns.name_too_long", pos)
                labels += known[0]
                break
        if pos >= n:
            raise DecodeError("dns.truncated", pos, "name runs past the end")
        length = data[pos]
        if length == 0:
            if after < 0:
                after = pos + 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise DecodeError("dns.truncated", pos, "pointer cut off")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            hops += 1
            if target >= limit or hops > MAX_POINTER_HOPS:
                raise DecodeError("dns.pointer_loop", pos, f"pointer to {target}")
            if after < 0:
                after = pos + 2
            limit = pos = target
            continue
        if kind:
            raise DecodeError("dns.bad_label", pos, f"label type {kind:#x}")
        wire_len += length + 1
        if wire_len > MAX_NAME_WIRE_BYTES:
            raise DecodeError("dns.name_too_long", pos)
        end = pos + 1 + length
        if end > n:
            raise DecodeError("dns.truncated", pos, "label runs past the end")
        starts.append(pos)
        labels.append(data[pos + 1 : end])
        pos = end
    rest = wire_len - 1
    for i, start in enumerate(starts):
        if start not in seen:
            seen[start] = (labels[i:], rest)
        rest -= len(labels[i]) + 1
    return labels, after


def _labels_wire(labels: Sequence[bytes]) -> bytes:
    return b"".join([bytes((len(lab),)) + lab for lab in labels]) + b"\x00"


def _text_labels(name: str) -> list[bytes]:
    """Parse a presentation-form name (escapes allowed) into labels."""
    if name in ("", "."):
        return []
    labels: list[bytes] = []
    cur = bytearray()
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ch == "\\":
            digits = name[i + 1 : i + 4]
            if len(digits) == 3 and all(c in "0123456789" for c in digits):
                value = int(digits)
                if value > 255:
                    raise DecodeError("dns.bad_label", i, "escape above 255")
                cur.append(value)
                i += 4
                continue
            if i + 1 >= n:
                raise DecodeError("dns.bad_label", i, "dangling backslash")
            ch = name[i + 1]
            i += 1
        elif ch == ".":
            if not cur:
                raise DecodeError("dns.bad_label", i, "empty label")
            labels.append(bytes(cur))
            cur.clear()
            i += 1
            continue
        if ord(ch) > 0x7F:  # UTF-8 label text, as decoded from mDNS/LLMNR names
            cur += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        cur.append(ord(ch))
        i += 1
    if cur:
        labels.append(bytes(cur))
    if any(len(lab) > MAX_LABEL_BYTES for lab in labels):
        raise DecodeError("dns.bad_label", 0, "label longer than 63 bytes")
    if sum(len(lab) + 1 for lab in labels) + 1 > MAX_NAME_WIRE_BYTES:
        raise DecodeError("dns.name_too_long", 0)
    return labels


# --- decoding ------------------------------------------------------------------------------

_QUESTION = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")
_HEADER = struct.Struct("!6H")


def _txt_value(rdata: bytes, pos: int) -> str:
    parts: list[bytes] = []
    i = 0
    while i < len(rdata):
        end = i + 1 + rdata[i]
        if end > len(rdata):
            raise DecodeError("dns.bad_rdata", pos + i, "TXT string runs past rdata")
        parts.append(rdata[i + 1 : end])
        i = end
    return b"".join(parts).decode("utf-8", "backslashreplace")


def _decode_rdata(
    data: bytes, rtype: int, rclass: int, pos: int, end: int, seen: _Suffixes
) -> tuple[bytes, str | None]:
    """Decode the rdata in ``data[pos:end]``; return (self-contained rdata, value)."""
    size = end - pos
    if size == 0 and rtype in _EMPTY_OK:
        return b"", None
    if rtype in _ADDRESS_TYPES and (rclass & 0x7FFF) not in _ADDRESS_CLASSES:
        return data[pos:end], None  # A and AAAA are defined for class IN only (RFC 1035 §3.4)
    if rtype == DnsType.A:
        if size != 4:
            raise DecodeError("dns.bad_rdata", pos, f"A rdata of {size} bytes")
        return data[pos:end], ".".join([str(b) for b in data[pos:end]])
    if rtype == DnsType.AAAA:
        if size != 16:
            raise DecodeError("dns.bad_rdata", pos, f"AAAA rdata of {size} bytes")
        return data[pos:end], str(ipaddress.IPv6Address(data[pos:end]))
    if rtype in _NAME_TYPES or rtype == DnsType.MX:
        start = pos
        prefix = b""
        if rtype == DnsType.MX:
            if size < 3:
                raise DecodeError("dns.bad_rdata", pos, "MX rdata too short")
            prefix = data[pos : pos + 2]
            start = pos + 2
        labels, after = _read_labels(data, start, seen)
        if after != end:
            raise DecodeError("dns.bad_rdata", pos, "name does not fill rdata")
        return prefix + _labels_wire(labels), _labels_text(labels)
    if rtype == DnsType.SOA:
        mname, p = _read_labels(data, pos, seen)
        rname, p = _read_labels(data, p, seen)
        if end - p != 20:
            raise DecodeError("dns.bad_rdata", pos, "SOA rdata size")
        return _labels_wire(mname) + _labels_wire(rname) + data[p:end], None
    rdata = data[pos:end]
    if rtype == DnsType.TXT:
        return rdata, _txt_value(rdata, pos)
    return rdata, None


def _decode_edns(rec: DnsRecord, pos: int) -> DnsEdns:
    if rec.name != ".":
        raise DecodeError("dns.bad_opt", pos, "OPT owner is not the root")
    options: list[tuple[int, bytes]] = []
    rd = rec.rdata
    i = 0
    while i < len(rd):
        if i + 4 > len(rd):
            raise DecodeError("dns.bad_opt", pos, "option header cut off")
        code, length = _QUESTION.unpack_from(rd, i)
        if i + 4 + length > len(rd):
            raise DecodeError("dns.bad_opt", pos, "option runs past rdata")
        options.append((code, rd[i + 4 : i + 4 + length]))
        i += 4 + length
    return DnsEdns(
        udp_payload_size=rec.rclass,
        extended_rcode=rec.ttl >> 24,
        version=(rec.ttl >> 16) & 0xFF,
        dnssec_ok=bool(rec.ttl & 0x8000),
        options=tuple(options),
    )


def _decode_records(
    data: bytes, pos: int, count: int, seen: _Suffixes
) -> tuple[tuple[DnsRecord, ...], list[int], int]:
    records: list[DnsRecord] = []
    starts: list[int] = []
    n = len(data)
    for _ in range(count):
        starts.append(pos)
        labels, pos = _read_labels(data, pos, seen)
        if pos + 10 > n:
            raise DecodeError("dns.truncated", pos, "record header cut off")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
        pos += 10
        end = pos + rdlen
        if end > n:
            raise DecodeError("dns.truncated", pos, "rdata runs past the end")
        rdata, value = _decode_rdata(data, rtype, rclass, pos, end, seen)
        records.append(DnsRecord(_labels_text(labels), rtype, rclass, ttl, rdata, value))
        pos = end
    return tuple(records), starts, pos


def decode_dns(data: bytes | bytearray | memoryview, *, answers_only: bool = False) -> DnsMessage:
    """Decode one DNS message (RFC 1035 §4.1, RFC 3596, RFC 6891).

    Args:
        data: the message (a UDP payload, or one message of a TCP stream without its prefix).
        answers_only: stop after the answer section (authority, additional and EDNS are left
            empty and counted in ``trailing_bytes``): what flow inspection needs, at less cost,
            and a damaged additional section does not hide the question and answers.

    Returns:
        The decoded message.

    Raises:
        DecodeError: ``dns.truncated``, ``dns.pointer_loop``, ``dns.bad_label``,
            ``dns.name_too_long``, ``dns.bad_rdata`` or ``dns.bad_opt``.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    n = len(data)
    if n < HEADER_BYTES:
        raise DecodeError("dns.truncated", 0, f"{n} bytes, header needs 12")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data, 0)
    pos = HEADER_BYTES
    seen: _Suffixes = {}
    questions: list[DnsQuestion] = []
    for _ in range(qdcount):
        labels, pos = _read_labels(data, pos, seen)
        if pos + 4 > n:
            raise DecodeError("dns.truncated", pos, "question cut off")
        qtype, qclass = _QUESTION.unpack_from(data, pos)
        pos += 4
        questions.append(DnsQuestion(_labels_text(labels), qtype, qclass))
    answers, _, pos = _decode_records(data, pos, ancount, seen)
    if answers_only:
        nscount = arcount = 0
    authority, _, pos = _decode_records(data, pos, nscount, seen)
    additional, starts, pos = _decode_records(data, pos, arcount, seen)
    edns: DnsEdns | None = None
    for rec, start in zip(additional, starts, strict=True):
        if rec.rtype == DnsType.OPT:
            if edns is not None:
                raise DecodeError("dns.bad_opt", start, "second OPT record")
            edns = _decode_edns(rec, start)
    return DnsMessage(
        id=ident,
        qr=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        aa=bool(flags & 0x0400),
        tc=bool(flags & 0x0200),
        rd=bool(flags & 0x0100),
        ra=bool(flags & 0x0080),
        z=bool(flags & 0x0040),
        ad=bool(flags & 0x0020),
        cd=bool(flags & 0x0010),
        rcode=flags & 0xF,
        questions=tuple(questions),
        answers=answers,
        authority=authority,
        additional=additional,
        edns=edns,
        trailing_bytes=n - pos,
    )


def decode_dns_tcp(stream: bytes | bytearray | memoryview) -> list[DnsMessage]:
    """Decode the messages of a DNS-over-TCP byte stream (RFC 1035 §4.2.2).

    Args:
        stream: one direction of a TCP connection, reassembled, from its start.

    Returns:
        The complete messages in order; an incomplete last message is ignored.

    Raises:
        DecodeError: when a complete message does not decode (see :func:`decode_dns`).
    """
    data = bytes(stream)
    messages: list[DnsMessage] = []
    pos = 0
    while pos + 2 <= len(data):
        length = (data[pos] << 8) | data[pos + 1]
        if pos + 2 + length > len(data):
            break
        try:
            messages.append(decode_dns(data[pos + 2 : pos + 2 + length]))
        except DecodeError as exc:
            raise DecodeError(exc.reason, exc.offset + pos + 2, exc.detail) from None
        pos += 2 + length
    return messages


_VALID_OPCODES = frozenset(int(op) for op in DnsOpcode)


def looks_like_dns(payload: bytes | bytearray | memoryview, *, tcp: bool = False) -> bool:
    """Cheap header sanity check: could ``payload`` be a DNS message?

    Checks the length, opcode, question count (1..16), response code, that the counts fit in the
    payload and that the first name starts with a plain label. Never raises.

    Args:
        payload: a UDP payload, or the start of a TCP stream when ``tcp`` is true.
        tcp: skip (and sanity-check) the two-byte length prefix of DNS over TCP.

    Returns:
        True when the header is plausible; a full decode may still fail.
    """
    if tcp:
        if len(payload) < 2 + HEADER_BYTES + 5:
            return False
        if ((payload[0] << 8) | payload[1]) < HEADER_BYTES + 5:
            return False
        payload = payload[2:]
    if len(payload) < HEADER_BYTES + 5:
        return False
    flags = (payload[2] << 8) | payload[3]
    if (flags >> 11) & 0xF not in _VALID_OPCODES:
        return False
    if not (flags & 0x8000) and flags & 0x000F:
        return False
    if flags & 0xF > 10:
        return False
    qdcount = (payload[4] << 8) | payload[5]
    if not 1 <= qdcount <= 16:
        return False
    others = (
        ((payload[6] << 8) | payload[7])
        + ((payload[8] << 8) | payload[9])
        + ((payload[10] << 8) | payload[11])
    )
    if qdcount * 5 + others * 11 > len(payload) - HEADER_BYTES and not flags & 0x0200:
        return False
    return payload[12] <= MAX_LABEL_BYTES


# --- encoding ------------------------------------------------------------------------------


class _NameWriter:
    """Writes names with compression (RFC 1035 §4.1.4), case-sensitively."""

    __slots__ = ("buf", "offsets")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.offsets: dict[tuple[bytes, ...], int] = {}

    def name(self, text: str) -> None:
        labels = tuple(_text_labels(text))
        for i in range(len(labels)):
            suffix = labels[i:]
            known = self.offsets.get(suffix)
            if known is not None:
                self.buf += struct.pack("!H", 0xC000 | known)
                return
            if len(self.buf) < 0x4000:
                self.offsets[suffix] = len(self.buf)
            self.buf.append(len(labels[i]))
            self.buf += labels[i]
        self.buf.append(0)


def encode_dns(msg: DnsMessage) -> bytes:
    """Encode a message, compressing question and owner names.

    ``rdata`` is written as given and :attr:`DnsMessage.edns` is ignored (the OPT record in
    ``additional`` is what goes on the wire).

    Args:
        msg: the message.

    Returns:
        The wire bytes (without a TCP length prefix).

    Raises:
        DecodeError: ``dns.bad_label`` or ``dns.name_too_long`` for a name that cannot be
            encoded, ``dns.bad_field`` for a number that does not fit its field.
    """
    w = _NameWriter()
    try:
        w.buf += _HEADER.pack(
            msg.id,
            msg.flags,
            len(msg.questions),
            len(msg.answers),
            len(msg.authority),
            len(msg.additional),
        )
        for q in msg.questions:
            w.name(q.name)
            w.buf += _QUESTION.pack(q.qtype, q.qclass)
        for rec in (*msg.answers, *msg.authority, *msg.additional):
            w.name(rec.name)
            w.buf += _RR_FIXED.pack(rec.rtype, rec.rclass, rec.ttl, len(rec.rdata))
            w.buf += rec.rdata
    except struct.error as exc:
        raise DecodeError("dns.bad_field", len(w.buf), str(exc)) from None
    return bytes(w.buf)


def make_dns_record(
    name: str, rtype: int, value: str, *, ttl: int = 300, rclass: int = 1, preference: int = 10
) -> DnsRecord:
    """Build a record from its presentation value (A, AAAA, NS, CNAME, PTR, DNAME, MX, TXT).

    Args:
        name: owner name (made absolute).
        rtype: one of the types listed above.
        value: address, target name, MX exchange or TXT text (UTF-8, split in 255-byte strings).
        ttl: time to live in seconds.
        rclass: record class.
        preference: MX preference.

    Returns:
        The record, equal to what :func:`decode_dns` gives for it.

    Raises:
        DecodeError: ``dns.bad_rdata`` for an unsupported type or bad address, or a name error.
    """
    owner = _labels_text(_text_labels(name))
    if rtype in _ADDRESS_TYPES and (rclass & 0x7FFF) not in _ADDRESS_CLASSES:
        raise DecodeError("dns.bad_rdata", 0, "A and AAAA records are defined for class IN")
    try:
        if rtype == DnsType.A:
            addr = ipaddress.IPv4Address(value)
            return DnsRecord(owner, rtype, rclass, ttl, addr.packed, str(addr))
        if rtype == DnsType.AAAA:
            addr6 = ipaddress.IPv6Address(value)
            return DnsRecord(owner, rtype, rclass, ttl, addr6.packed, str(addr6))
    except ValueError as exc:
        raise DecodeError("dns.bad_rdata", 0, str(exc)) from None
    if rtype in _NAME_TYPES or rtype == DnsType.MX:
        labels = _text_labels(value)
        prefix = struct.pack("!H", preference) if rtype == DnsType.MX else b""
        return DnsRecord(owner, rtype, rclass, ttl, prefix + _labels_wire(labels), _labels_text(labels))
    if rtype == DnsType.TXT:
        raw = value.encode("utf-8")
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        rdata = b"".join(bytes((len(c),)) + c for c in chunks)
        return DnsRecord(owner, rtype, rclass, ttl, rdata, _txt_value(rdata, 0))
    raise DecodeError("dns.bad_rdata", 0, f"cannot build type {rtype} from text")


def encode_dns_query(
    name: str,
    qtype: int = DnsType.A,
    id: int = 0,
    *,
    qclass: int = DnsClass.IN,
    rd: bool = True,
    edns_payload_size: int | None = None,
) -> bytes:
    """Encode a standard query with one question.

    Args:
        name: the name to ask for (presentation form; relative names are made absolute).
        qtype: query type.
        id: transaction ID (0..65535).
        qclass: query class.
        rd: set the recursion-desired bit.
        edns_payload_size: add an EDNS(0) OPT record advertising this UDP payload size.

    Returns:
        The wire bytes.

    Raises:
        DecodeError: ``dns.bad_label`` or ``dns.name_too_long`` for a name that cannot be
            encoded, ``dns.bad_field`` for an ID, type or class out of range.
    """
    additional: tuple[DnsRecord, ...] = ()
    if edns_payload_size is not None:
        additional = (DnsRecord(".", DnsType.OPT, edns_payload_size, 0, b"", None),)
    msg = DnsMessage(
        id=id,
        qr=False,
        opcode=DnsOpcode.QUERY,
        aa=False,
        tc=False,
        rd=rd,
        ra=False,
        z=False,
        ad=False,
        cd=False,
        rcode=DnsRcode.NOERROR,
        questions=(DnsQuestion(name, qtype, qclass),),
        answers=(),
        authority=(),
        additional=additional,
    )
    return encode_dns(msg)


def encode_dns_response(
    query: DnsMessage | bytes,
    answers: Sequence[DnsRecord],
    *,
    rcode: int = DnsRcode.NOERROR,
    aa: bool = False,
    authority: Sequence[DnsRecord] = (),
    additional: Sequence[DnsRecord] = (),
    edns_payload_size: int = 1232,
) -> bytes:
    """Encode the response to ``query``: same ID, opcode, RD and CD bits and questions.

    When the query had EDNS and ``additional`` holds no OPT record, an OPT record advertising
    ``edns_payload_size`` is added (RFC 6891 §7).

    Args:
        query: the query, decoded or as wire bytes.
        answers: the answer records (see :func:`make_dns_record`).
        rcode: response code (0..15).
        aa: set the authoritative-answer bit.
        authority: authority section records.
        additional: additional section records.
        edns_payload_size: UDP payload size of the OPT record added for an EDNS query.

    Returns:
        The wire bytes.

    Raises:
        DecodeError: when ``query`` bytes do not decode, or a name cannot be encoded.
    """
    q = decode_dns(query) if isinstance(query, bytes) else query
    extra = tuple(additional)
    if q.edns is not None and not any(r.rtype == DnsType.OPT for r in extra):
        extra += (DnsRecord(".", DnsType.OPT, edns_payload_size, 0, b"", None),)
    msg = DnsMessage(
        id=q.id,
        qr=True,
        opcode=q.opcode,
        aa=aa,
        tc=False,
        rd=q.rd,
        ra=True,
        z=False,
        ad=False,
        cd=q.cd,
        rcode=rcode & 0xF,
        questions=q.questions,
        answers=tuple(answers),
        authority=tuple(authority),
        additional=extra,
    )
    return encode_dns(msg)
