"""DNS decoder and encoder against dnspython-built messages and real captures.

dnspython (a real, independent DNS implementation) builds queries and responses with name
compression and EDNS options; sluice must read them field for field, and dnspython must read
what sluice encodes. The nDPI corpus supplies DNS messages sent by real resolvers and tools
(including tunnels and deliberately malformed ones); the name nDPI printed for each flow must be
one of the names sluice decodes; the captures are read with the project's own reader.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.wire.dns import (
    DnsClass,
    DnsMessage,
    DnsOpcode,
    DnsOptionCode,
    DnsQuestion,
    DnsRecord,
    DnsType,
    decode_dns,
    decode_dns_tcp,
    encode_dns,
    encode_dns_query,
    encode_dns_response,
    looks_like_dns,
    make_dns_record,
)
from tests.corpus.ndpi_out import read_ndpi_out
from tests.corpus_util import corpus_file, tcp_streams, udp_datagrams

# ------------------------------------------------------------------------ dnspython samples


def _dnspython_response() -> tuple[dns.message.Message, bytes]:
    """A compressed response with CNAME, AAAA, SOA, MX, TXT and EDNS options."""
    q = dns.message.make_query(
        "www.Example.com",
        "AAAA",
        use_edns=0,
        payload=1232,
        want_dnssec=True,
        options=[
            dns.edns.ECSOption("192.0.2.0", 24),
            dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678"),
        ],
    )
    q.id = 0x1234
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA | dns.flags.AD
    r.answer.append(dns.rrset.from_text("www.Example.com.", 300, "IN", "CNAME", "web.example.com."))
    r.answer.append(dns.rrset.from_text("web.example.com.", 60, "IN", "AAAA", "2001:db8::1"))
    r.answer.append(dns.rrset.from_text("web.example.com.", 60, "IN", "A", "192.0.2.7"))
    r.authority.append(
        dns.rrset.from_text(
            "example.com.", 3600, "IN", "SOA", "ns1.example.com. admin.example.com. 7 1 2 3 4"
        )
    )
    r.authority.append(dns.rrset.from_text("example.com.", 3600, "IN", "NS", "ns1.example.com."))
    r.additional.append(dns.rrset.from_text("example.com.", 300, "IN", "MX", "10 mail.example.com."))
    r.additional.append(dns.rrset.from_text("example.com.", 300, "IN", "TXT", '"v=spf1" " -all"'))
    r.additional.append(
        dns.rrset.from_text("_sip._tcp.example.com.", 300, "IN", "SRV", "0 5 5060 sip.example.com.")
    )
    r.additional.append(dns.rrset.from_text("7.2.0.192.in-addr.arpa.", 300, "IN", "PTR", "web.example.com."))
    return r, r.to_wire()


def _dnspython_value(rdata: dns.rdata.Rdata) -> str | None:
    """What sluice puts in ``DnsRecord.value``, read from dnspython's rdata object."""
    rdtype = rdata.rdtype
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        if rdata.rdclass & 0x7FFF not in (1, 254, 255):
            return None
        if hasattr(rdata, "address"):
            return str(rdata.address)
        return str(ipaddress.ip_address(rdata.data))  # type: ignore[attr-defined]  # UPDATE classes
    if rdtype in (dns.rdatatype.CNAME, dns.rdatatype.NS, dns.rdatatype.PTR):
        return str(rdata.target.to_text())  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.MX:
        return str(rdata.exchange.to_text())  # type: ignore[attr-defined]
    if rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")  # type: ignore[attr-defined]
    return None


def _assert_same(ours: DnsMessage, theirs: dns.message.Message) -> None:
    assert ours.id == theirs.id
    assert ours.flags == theirs.flags
    assert ours.qr == bool(theirs.flags & dns.flags.QR)
    assert ours.rd == bool(theirs.flags & dns.flags.RD)
    assert ours.opcode == theirs.opcode()
    assert ours.rcode == theirs.rcode() & 0xF
    assert ours.full_rcode == theirs.rcode()
    assert [(q.name, q.qtype, q.qclass) for q in ours.questions] == [
        (rr.name.to_text(), rr.rdtype, rr.rdclass) for rr in theirs.question
    ]
    for mine, section in (
        (ours.answers, theirs.answer),
        (ours.authority, theirs.authority),
        (ours.additional, theirs.additional),
    ):
        expected = [
            (rrset.name.to_text(), rrset.rdtype, rrset.rdclass, rrset.ttl, _dnspython_value(rd))
            for rrset in section
            for rd in rrset
        ]
        got = [(r.name, r.rtype, r.rclass, r.ttl, r.value) for r in mine if r.rtype != DnsType.OPT]
        assert got == expected
    if theirs.edns < 0:
        assert ours.edns is None
    else:
        assert ours.edns is not None
        assert ours.edns.version == theirs.edns
        assert ours.edns.udp_payload_size == theirs.payload
        assert ours.edns.dnssec_ok == bool(theirs.ednsflags & dns.flags.DO)
        assert ours.edns.options == tuple((o.otype, o.to_wire()) for o in theirs.options)


def test_dnspython_query_with_edns_options() -> None:
    q = dns.message.make_query(
        "mail.Example.org",
        "MX",
        use_edns=0,
        payload=4096,
        options=[dns.edns.ECSOption("2001:db8::", 56), dns.edns.GenericOption(dns.edns.OptionType.NSID, b"")],
    )
    ours = decode_dns(q.to_wire())
    _assert_same(ours, q)
    assert ours.query_name == "mail.Example.org"
    assert not ours.qr
    assert ours.opcode == DnsOpcode.QUERY
    assert ours.edns is not None
    assert [code for code, _ in ours.edns.options] == [
        DnsOptionCode.CLIENT_SUBNET,
        DnsOptionCode.NSID,
    ]


def test_dnspython_compressed_response() -> None:
    theirs, wire = _dnspython_response()
    assert wire.count(b"\x07example") < 9  # dnspython did compress the names
    ours = decode_dns(wire)
    _assert_same(ours, dns.message.from_wire(wire))
    assert ours.aa and ours.ad and ours.qr and not ours.tc
    assert ours.query_name == "www.Example.com"
    # NS/CNAME/SOA/PTR/MX rdata is self-contained: dnspython reads it outside the message.
    for rec in (*ours.answers, *ours.authority, *ours.additional):
        if rec.rtype in (DnsType.CNAME, DnsType.NS, DnsType.SOA, DnsType.PTR, DnsType.MX):
            assert b"\xc0" not in rec.rdata
            rd = dns.rdata.from_wire(
                dns.rdataclass.RdataClass(rec.rclass),
                dns.rdatatype.RdataType(rec.rtype),
                rec.rdata,
                0,
                len(rec.rdata),
            )
            assert rd == next(
                r for rs in (*theirs.answer, *theirs.authority, *theirs.additional)
                if rs.rdtype == rec.rtype for r in rs
            )  # fmt: skip


def test_reencoded_response_reads_the_same_in_dnspython_and_sluice() -> None:
    _, wire = _dnspython_response()
    ours = decode_dns(wire)
    again = encode_dns(ours)
    assert decode_dns(again) == ours
    _assert_same(ours, dns.message.from_wire(again))
    assert again.count(b"\x03www") == 1  # the answer's owner name points at the question


def test_encoded_query_and_response_read_by_dnspython() -> None:
    wire = encode_dns_query("Blocked.Example.NET", DnsType.AAAA, 0xBEEF, edns_payload_size=1232)
    q = dns.message.from_wire(wire)
    assert q.id == 0xBEEF
    assert q.question[0].name.to_text() == "Blocked.Example.NET."
    assert q.question[0].rdtype == dns.rdatatype.AAAA
    assert q.payload == 1232 and q.edns == 0
    assert q.flags & dns.flags.RD
    answers = [
        make_dns_record("Blocked.Example.NET", DnsType.CNAME, "sink.example.", ttl=30),
        make_dns_record("sink.example", DnsType.AAAA, "2001:db8::53", ttl=30),
        make_dns_record("sink.example", DnsType.A, "192.0.2.53", ttl=30),
        make_dns_record("sink.example", DnsType.MX, "mx.sink.example", preference=5),
        make_dns_record("sink.example", DnsType.TXT, "blocked by policy " + "x" * 300),
    ]
    resp = encode_dns_response(wire, answers, aa=True)
    r = dns.message.from_wire(resp)
    assert q.is_response(r) and r.edns == 0
    assert r.flags & dns.flags.AA
    got = [(rs.name.to_text(), rs.rdtype, _dnspython_value(rd)) for rs in r.answer for rd in rs]
    assert got == [(a.name, a.rtype, a.value) for a in answers]
    ours = decode_dns(resp)
    assert ours.answers == tuple(answers)
    assert ours.query_name == "Blocked.Example.NET"


def test_escaped_labels_match_dnspython_text_and_round_trip() -> None:
    name = dns.name.Name([b"a\x00b", b'x.y"', b"semi;@$()\\", b" \x7f\xff", b"c", b""])
    q = dns.message.make_query(name, "TXT")
    ours = decode_dns(q.to_wire())
    assert ours.questions[0].name == name.to_text() == r"a\000b.x\.y\".semi\;\@\$\(\)\\.\032\127\255.c."
    assert encode_dns(ours) == q.to_wire()


def test_rfc1035_compression_example() -> None:
    """RFC 1035 §4.1.4: F.ISI.ARPA, FOO.F.ISI.ARPA via a pointer, ARPA via a pointer, root."""
    header = struct.pack("!6H", 7, 0, 4, 0, 0, 0)
    q1 = b"\x01F\x03ISI\x04ARPA\x00" + b"\x00\x01\x00\x01"  # at offset 12
    q2 = b"\x03FOO\xc0\x0c" + b"\x00\x01\x00\x01"
    q3 = b"\xc0\x12" + b"\x00\x02\x00\x01"  # offset 18: ARPA
    q4 = b"\x00" + b"\x00\x02\x00\x01"
    msg = decode_dns(header + q1 + q2 + q3 + q4)
    assert [q.name for q in msg.questions] == ["F.ISI.ARPA.", "FOO.F.ISI.ARPA.", "ARPA.", "."]
    assert msg.questions[3] == DnsQuestion(".", DnsType.NS, 1)
    assert msg.query_name == "F.ISI.ARPA"


# ------------------------------------------------------------------------------ malformed


def _query_with_name(raw_name: bytes, prefix: bytes = b"") -> bytes:
    header = struct.pack("!6H", 1, 0x0100, 1 + bool(prefix), 0, 0, 0)
    return header + prefix + raw_name + b"\x00\x01\x00\x01"


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (_query_with_name(b"\xc0\x0c"), "dns.pointer_loop"),  # points at itself
        (_query_with_name(b"\x03abc\xc0\x20"), "dns.pointer_loop"),  # forward pointer
        # a pointer after a label in an earlier question, into the question after it
        (_query_with_name(b"\xc0\x0c", b"\x01a\xc0\x13\x00\x01\x00\x01"), "dns.pointer_loop"),
        (_query_with_name(b"\x40" + b"a" * 64 + b"\x00"), "dns.bad_label"),
        (_query_with_name(b"\x81a\x00"), "dns.bad_label"),
        (_query_with_name((b"\x3f" + b"a" * 63) * 4 + b"\x00"), "dns.name_too_long"),
        (_query_with_name(b"\x03www\x07example"), "dns.truncated"),
        (b"\x00\x01\x01\x00\x00\x01", "dns.truncated"),
    ],
)
def test_malformed_names(wire: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_dns(wire)
    assert err.value.reason == reason


def test_name_too_long_through_pointers() -> None:
    """Each name is short, but following the pointers builds one longer than 255 bytes."""
    label = b"\x3f" + b"a" * 63
    first = label * 3 + b"\x00"  # 193 bytes, valid
    header = struct.pack("!6H", 1, 0, 2, 0, 0, 0)
    second = label + b"\xc0\x0c"  # 64 + 193 > 255
    wire = header + first + b"\x00\x01\x00\x01" + second + b"\x00\x01\x00\x01"
    with pytest.raises(DecodeError) as err:
        decode_dns(wire)
    assert err.value.reason == "dns.name_too_long"


def test_bad_rdata_and_opt() -> None:
    q = encode_dns_query("example.com")
    resp = bytearray(encode_dns_response(q, [make_dns_record("example.com", DnsType.A, "1.2.3.4")]))
    resp[-6:-4] = b"\x00\x05"  # rdlength 5 for an A record
    resp += b"\x00"
    with pytest.raises(DecodeError) as err:
        decode_dns(bytes(resp))
    assert err.value.reason == "dns.bad_rdata"
    bad_opt = DnsRecord("example.com.", DnsType.OPT, 512, 0, b"", None)
    msg = decode_dns(q)
    wire = encode_dns(dataclasses.replace(msg, additional=(bad_opt,)))
    with pytest.raises(DecodeError) as err:
        decode_dns(wire)
    assert err.value.reason == "dns.bad_opt"


def test_address_records_are_class_specific() -> None:
    """A CHAOS-class A record holds a name and an address (RFC 1035 §3.4.1 is for IN only)."""
    rdata = b"\x04host\x07example\x00\x01\x02"
    rec = DnsRecord("host.example.", DnsType.A, DnsClass.CH, 60, rdata, None)
    wire = encode_dns_response(encode_dns_query("host.example", qclass=DnsClass.CH), [rec])
    assert decode_dns(wire).answers == (rec,)
    theirs = dns.message.from_wire(wire)
    assert theirs.answer[0][0].domain.to_text() == "host.example."
    mdns = make_dns_record("printer.local", DnsType.A, "192.0.2.5", rclass=0x8001)  # cache flush
    assert decode_dns(encode_dns_response(encode_dns_query("printer.local"), [mdns])).answers == (mdns,)
    with pytest.raises(DecodeError):
        make_dns_record("host.example", DnsType.A, "192.0.2.1", rclass=DnsClass.CH)


def test_every_strict_prefix_is_truncated() -> None:
    _, wire = _dnspython_response()
    for cut in range(len(wire)):
        with pytest.raises(DecodeError) as err:
            decode_dns(wire[:cut])
        assert err.value.reason == "dns.truncated", cut


def test_encoder_rejects_numbers_out_of_range() -> None:
    for args in (("a.example", 1, 0x10000), ("a.example", 70000, 1)):
        with pytest.raises(DecodeError) as err:
            encode_dns_query(*args)
        assert err.value.reason == "dns.bad_field"
    big = DnsRecord("a.", DnsType.NULL, 1, 0, bytes(70000), None)
    with pytest.raises(DecodeError) as err:
        encode_dns_response(encode_dns_query("a"), [big])
    assert err.value.reason == "dns.bad_field"


def test_encoder_rejects_bad_names() -> None:
    for name, reason in (
        ("a..b", "dns.bad_label"),
        ("x" * 64 + ".com", "dns.bad_label"),
        (".".join(["abcdefghi"] * 26), "dns.name_too_long"),
        ("bad\\999.com", "dns.bad_label"),
    ):
        with pytest.raises(DecodeError) as err:
            encode_dns_query(name)
        assert err.value.reason == reason, name


def test_utf8_labels_display_decoded_and_encode_back() -> None:
    wire = encode_dns_query("пример.рф")
    assert decode_dns(wire).query_name == "пример.рф"  # mDNS/LLMNR style UTF-8 labels (RFC 6762 §16)
    assert decode_dns(encode_dns_query("\\195\\040.x")).query_name == "\\195\\(.x"  # not UTF-8: dig escapes


# ------------------------------------------------------------------------------ DNS over TCP


def test_tcp_stream_ignores_incomplete_last_message() -> None:
    _, resp = _dnspython_response()
    msgs = [dns.message.make_query(f"host{i}.example.", "A").to_wire() for i in range(3)]
    msgs.append(resp)
    stream = b"".join(struct.pack("!H", len(m)) + m for m in msgs)
    decoded = decode_dns_tcp(stream)
    assert [m.query_name for m in decoded] == ["host0.example", "host1.example", "host2.example",
                                               "www.Example.com"]  # fmt: skip
    last = len(stream) - len(resp) - 2  # where the fourth message's length prefix starts
    for cut, complete in ((len(stream) - 1, 3), (last + 2, 3), (last + 1, 3), (last, 3),
                          (last - 1, 2), (2, 0), (0, 0)):  # fmt: skip
        assert len(decode_dns_tcp(stream[:cut])) == complete, cut
    assert decode_dns_tcp(b"") == [] and decode_dns_tcp(b"\x00") == []


def test_tcp_stream_error_offset_is_in_stream() -> None:
    good = encode_dns_query("a.example")
    bad = _query_with_name(b"\xc0\x0c")
    stream = struct.pack("!H", len(good)) + good + struct.pack("!H", len(bad)) + bad
    with pytest.raises(DecodeError) as err:
        decode_dns_tcp(stream)
    assert err.value.reason == "dns.pointer_loop"
    assert err.value.offset == 2 + len(good) + 2 + 12


# ------------------------------------------------------------------------------- looks_like


def test_looks_like_dns() -> None:
    _, resp = _dnspython_response()
    q = encode_dns_query("example.com")
    assert looks_like_dns(q) and looks_like_dns(resp)
    assert looks_like_dns(struct.pack("!H", len(q)) + q, tcp=True)
    assert not looks_like_dns(q, tcp=True)
    for other in (
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        bytes.fromhex("160301020001000200030397") + b"\x00" * 40,  # TLS ClientHello start
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        b"\x05\x01\x00",
        b"",
        q[:16],
    ):
        assert not looks_like_dns(other), other


# ------------------------------------------------------------------------- real captures


def _ndpi_hostnames(name: str) -> list[tuple[str, int, str, int, str]]:
    """(a, a port, b, b port, Hostname/SNI) of the TCP and UDP flows nDPI printed a name for."""
    return [
        (*f.a, *f.b, f.fields["Hostname/SNI"])
        for f in read_ndpi_out(corpus_file(f"{name}.out"))
        if f.l4 in ("TCP", "UDP") and "Hostname/SNI" in f.fields
    ]


def _unescape(name: str) -> bytes:
    out, i = bytearray(), 0
    while i < len(name):
        if name[i] == "\\" and name[i + 1 : i + 4].isdigit():
            out.append(int(name[i + 1 : i + 4]))
            i += 4
        elif name[i] == "\\":
            out.append(ord(name[i + 1]))
            i += 2
        else:
            out.append(ord(name[i]))
            i += 1
    return bytes(out)


def _fold(raw: bytes) -> str:
    """Lower-case, and replace what nDPI prints as '?' or '_' by '?'."""
    text = raw.decode("latin-1").lower()
    return "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "?" for c in text)


DNS_CAPTURES = [
    "dns.pcap",
    "dns-google-nsid.pcapng",
    "dns-invalid-chars.pcap",
    "dns-tunnel-iodine.pcap",
    "dns_ambiguous_names.pcap",
    "dns_exfiltration.pcap",
    "dns_fragmented.pcap",
    "dns_invert_query.pcapng",
    "dns_long_domainname.pcap",
    "bad-dns-traffic.pcap",
    "malformed_dns.pcap",
    "mullvad_dns.pcap",
    "http_connect.pcap",
]


def _flow_messages(path: Path) -> tuple[dict[frozenset[tuple[str, int]], list[DnsMessage]], int]:
    """DNS messages per flow (UDP and TCP port 53) and the number of payloads that failed."""
    flows: dict[frozenset[tuple[str, int]], list[DnsMessage]] = {}
    failed = 0
    for src, dst, payload in udp_datagrams(path):
        if 53 in (src[1], dst[1]) and payload:
            key = frozenset({src, dst})
            try:
                flows.setdefault(key, []).append(decode_dns(payload))
            except DecodeError:
                failed += 1
    for (a, aport, b, bport), stream in tcp_streams(path).items():
        if 53 in (aport, bport):
            key = frozenset({(a, aport), (b, bport)})
            flows.setdefault(key, []).extend(decode_dns_tcp(stream))
    return flows, failed


@pytest.mark.corpus
@pytest.mark.parametrize("name", DNS_CAPTURES)
def test_ndpi_hostnames_are_decoded_names(name: str) -> None:
    path = corpus_file(name)
    flows, _ = _flow_messages(path)
    checked = 0
    for a, aport, b, bport, host in _ndpi_hostnames(name):
        if 53 not in (aport, bport):
            continue
        msgs = flows[frozenset({(a, aport), (b, bport)})]
        names = {
            _fold(_unescape(n)[:-1])
            for m in msgs
            for n in [q.name for q in m.questions] + [r.name for r in m.answers]
        }
        wanted = _fold(host.encode("latin-1"))
        # nDPI keeps only the end of long names (tunnels, exfiltration).
        assert any(n == wanted or (len(wanted) > 60 and n.endswith(wanted)) for n in names), (
            host,
            names,
        )
        checked += 1
    assert checked


@pytest.mark.corpus
def test_corpus_details() -> None:
    flows, failed = _flow_messages(corpus_file("dns.pcap"))
    msgs = [m for ms in flows.values() for m in ms]
    whatsapp = [m for m in msgs if m.query_name == "e7.whatsapp.net" and m.qr]
    assert whatsapp and "169.45.219.235" in [r.value for r in whatsapp[0].answers]
    assert failed == 0
    # The inverse query carries its name in the answer section and no question.
    flows, failed = _flow_messages(corpus_file("dns_invert_query.pcapng"))
    (inverse,) = [m for ms in flows.values() for m in ms if not m.qr]
    assert inverse.opcode == DnsOpcode.IQUERY and inverse.query_name is None
    assert inverse.answers[0].name == "216.58.202.4."
    # DNS over TCP (RFC 7766) with large DNSSEC answers, next to UDP.
    flows, failed = _flow_messages(corpus_file("dns_fragmented.pcap"))
    tcp_keys = [k for k in flows if any(port == 53 for _, port in k) and len(flows[k]) >= 2]
    assert any(m.qr and len(m.answers) > 3 for k in tcp_keys for m in flows[k])


@pytest.mark.corpus
def test_malformed_corpus_messages_raise_decode_error_only() -> None:
    path = corpus_file("malformed_dns.pcap")
    reasons = set()
    for _, _, payload in udp_datagrams(path):
        try:
            decode_dns(payload)
        except DecodeError as exc:
            reasons.add(exc.reason)
    assert reasons == {"dns.name_too_long"}


@pytest.mark.corpus
def test_looks_like_dns_on_corpus() -> None:
    hits = misses = 0
    for name in DNS_CAPTURES:
        for src, dst, payload in udp_datagrams(corpus_file(name)):
            if not payload:
                continue
            if 53 in (src[1], dst[1]):
                try:
                    decode_dns(payload)
                except DecodeError:
                    continue
                hits += looks_like_dns(payload)
                misses += not looks_like_dns(payload)
    assert hits > 100 and misses <= hits // 50


# ------------------------------------------------------------------------------------ fuzz

_SAMPLES = [
    _dnspython_response()[1],
    encode_dns_query("www.example.com", DnsType.HTTPS, 9, edns_payload_size=1232),
    dns.message.make_query(dns.name.Name([b"\x00\xff", b"x", b""]), "A").to_wire(),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_SAMPLES), st.integers(min_value=0, max_value=400), st.binary(max_size=64))
@example(_SAMPLES[0], 12, b"\xc0\x0c")
@example(_SAMPLES[0], 12, b"\x3f" * 70)
def test_fuzz_prefix_plus_random(sample: bytes, cut: int, tail: bytes) -> None:
    data = sample[:cut] + tail
    try:
        msg = decode_dns(data)
    except DecodeError as exc:
        assert exc.reason.startswith("dns.")
    else:
        assert isinstance(msg, DnsMessage)
        assert decode_dns(memoryview(data)) == msg
        # Whatever decodes re-encodes to something that decodes to the same records.
        try:
            again = decode_dns(encode_dns(msg))
        except DecodeError as exc:  # names with pointers into garbage can exceed limits
            assert exc.reason in ("dns.name_too_long", "dns.bad_label")
        else:
            assert again.questions == msg.questions and again.answers == msg.answers
    looks_like_dns(data)
    looks_like_dns(data, tcp=True)
    try:
        decode_dns_tcp(data)
    except DecodeError as exc:
        assert exc.reason.startswith("dns.")


_labels = st.lists(st.binary(min_size=1, max_size=20), min_size=0, max_size=6)


def _name(labels: list[bytes]) -> str:
    return dns.name.Name([*labels, b""]).to_text()


_records = st.one_of(
    st.builds(
        lambda n, a: make_dns_record(n, DnsType.A, str(ipaddress.IPv4Address(a))),
        _labels.map(_name),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        lambda n, a: make_dns_record(n, DnsType.AAAA, str(ipaddress.IPv6Address(a))),
        _labels.map(_name),
        st.integers(0, 2**128 - 1),
    ),
    st.builds(
        lambda n, t, k: make_dns_record(n, k, t),
        _labels.map(_name),
        _labels.map(_name),
        st.sampled_from([DnsType.CNAME, DnsType.NS, DnsType.PTR, DnsType.MX]),
    ),
    st.builds(lambda n, t: make_dns_record(n, DnsType.TXT, t), _labels.map(_name), st.text()),
)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    _labels.map(_name),
    st.integers(0, 0xFFFF),
    st.lists(_records, max_size=5),
)
def test_encode_then_decode_is_identity(ident: int, qname: str, qtype: int, answers: list[DnsRecord]) -> None:
    query = encode_dns_query(qname, qtype, ident)
    resp = encode_dns_response(query, answers)
    msg = decode_dns(resp)
    assert msg.id == ident and msg.qr
    # names come back in display form (UTF-8 labels decoded), which encodes to the same wire
    assert msg.questions[0].qtype == qtype and msg.questions[0].qclass == 1
    assert encode_dns_query(msg.questions[0].name, qtype, ident) == query
    assert [(a.rtype, a.ttl, a.rdata) for a in msg.answers] == [(a.rtype, a.ttl, a.rdata) for a in answers]
    assert encode_dns(msg) == resp
    # dnspython agrees on the names.
    theirs = dns.message.from_wire(resp)
    assert theirs.question[0].name.to_text() == qname


def test_answers_only_skips_authority_and_additional() -> None:
    query = encode_dns_query("example.org", DnsType.A, 7, edns_payload_size=1232)
    resp = encode_dns_response(query, [make_dns_record("example.org", DnsType.A, "192.0.2.1")])
    full = decode_dns(resp)
    short = decode_dns(resp, answers_only=True)
    assert full.edns is not None and short.edns is None and short.additional == ()
    assert short.questions == full.questions and short.answers == full.answers
    assert short.trailing_bytes > 0
    # a damaged additional section no longer hides the question and the answers
    damaged = resp[:-3]
    with pytest.raises(DecodeError):
        decode_dns(damaged)
    assert decode_dns(damaged, answers_only=True).answers == full.answers
