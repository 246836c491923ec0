"""TLS dissector on real handshakes made in memory by Python's ssl module and by aioquic.

A self-signed certificate (two DNS names in its subjectAltName) is made with ``cryptography``;
a client and a server ``SSLContext`` then run full TLS 1.2 and TLS 1.3 handshakes through
``MemoryBIO`` pairs, and every byte each side wrote is kept. aioquic's TLS engine gives the
bare handshake bytes of a QUIC CRYPTO stream.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aioquic import tls as aioquic_tls
from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported, not in __all__
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.wire.ja4 import ja4
from sluice.wire.reassembly import StreamReassembler
from sluice.wire.tls import (
    MAX_RECORD_LENGTH,
    ContentType,
    ExtensionType,
    HandshakeMessage,
    HandshakeType,
    TlsCertificate,
    TlsClientHello,
    TlsHandshakeReader,
    TlsServerHello,
    decode_certificate,
    decode_client_hello,
    decode_server_hello,
    is_grease,
    looks_like_tls_client_hello,
)
from sluice.wire.x509 import X509Summary, decode_x509

HOSTNAME = "sluice.test"
SAN = ("sluice.test", "www.sluice.test")
NOT_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2034, 1, 1, tzinfo=UTC)
SUBJECT = "C=US, O=Sluice Test, CN=sluice.test"


@dataclass(frozen=True)
class Pki:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_file: Path
    key_file: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Transcript:
    client: bytes
    server: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sluice Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x51_1CE)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in SAN]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("pki")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(cert, key, cert_file, key_file)


def _handshake(pki: Pki, version: ssl.TLSVersion, *, trust: bool = True) -> Transcript:
    """Run a client/server handshake in memory; return what each side sent."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.cert_file, pki.key_file)
    server_ctx.set_alpn_protocols(["h2"])
    server_ctx.maximum_version = version
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trust:
        client_ctx.load_verify_locations(pki.cert_file)
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])
    client_ctx.maximum_version = version
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=HOSTNAME)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    sent_c, sent_s = bytearray(), bytearray()

    def flush() -> None:
        sent_c.extend(chunk := c_out.read())
        s_in.write(chunk)
        sent_s.extend(chunk := s_out.read())
        c_in.write(chunk)

    pending = [client, server]
    for _ in range(10):
        for end in list(pending):
            try:
                end.do_handshake()
                pending.remove(end)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:  # refused (untrusted certificate): keep what was sent
                flush()
                return Transcript(bytes(sent_c), bytes(sent_s))
            flush()
        if not pending:
            break
    assert not pending
    client.write(b"GET / HTTP/1.1\r\n\r\n")  # application data after the handshake
    flush()
    return Transcript(bytes(sent_c), bytes(sent_s))


@pytest.fixture(scope="module")
def tls12(pki: Pki) -> Transcript:
    return _handshake(pki, ssl.TLSVersion.TLSv1_2)


@pytest.fixture(scope="module")
def tls13(pki: Pki) -> Transcript:
    return _handshake(pki, ssl.TLSVersion.TLSv1_3)


def _messages(stream: bytes) -> list[HandshakeMessage]:
    return TlsHandshakeReader().feed(stream)


def _types(messages: list[HandshakeMessage]) -> list[int]:
    return [m.msg_type for m in messages]


# --------------------------------------------------------------------------- ClientHello


@pytest.mark.parametrize("which", ["tls12", "tls13"])
def test_client_hello_fields(which: str, request: pytest.FixtureRequest) -> None:
    transcript: Transcript = request.getfixturevalue(which)
    assert looks_like_tls_client_hello(transcript.client)
    assert not looks_like_tls_client_hello(transcript.server)
    assert not looks_like_tls_client_hello(b"GET / HTTP/1.1\r\n")
    first = _messages(transcript.client)[0]
    assert first.msg_type == HandshakeType.CLIENT_HELLO
    hello = decode_client_hello(first.body)
    assert hello.legacy_version == 0x0303
    assert hello.sni == HOSTNAME
    assert hello.alpn == ("h2", "http/1.1")
    assert len(hello.random) == 32
    assert hello.compression_methods == b"\0"
    types = [t for t, _ in hello.extensions]
    assert ExtensionType.SERVER_NAME in types
    assert ExtensionType.APPLICATION_LAYER_PROTOCOL_NEGOTIATION in types
    assert hello.signature_algorithms and hello.supported_groups
    assert 0xC02F in hello.cipher_suites or 0xC02B in hello.cipher_suites
    assert not hello.ech and not hello.esni and hello.quic_transport_parameters is None
    fingerprint = ja4(hello)
    assert fingerprint[:4] == ("t13d" if which == "tls13" else "t12d")
    assert fingerprint[8:10] == "h2"
    if which == "tls13":
        assert 0x0304 in hello.supported_versions
        assert 0x1301 in hello.cipher_suites
        assert hello.key_share_groups


def test_client_hello_extensions_round_trip_to_the_wire(tls13: Transcript) -> None:
    body = _messages(tls13.client)[0].body
    hello = decode_client_hello(body)
    wire = b"".join(t.to_bytes(2, "big") + len(b).to_bytes(2, "big") + b for t, b in hello.extensions)
    assert body.endswith(len(wire).to_bytes(2, "big") + wire)
    assert hello.extension(ExtensionType.SERVER_NAME) == dict(hello.extensions)[0]


# --------------------------------------------------------------------------- server side


def test_tls13_server_stream_stops_after_server_hello(tls13: Transcript) -> None:
    reader = TlsHandshakeReader()
    messages = reader.feed(tls13.server)
    assert _types(messages) == [HandshakeType.SERVER_HELLO]
    assert reader.done and reader.error is None
    hello = decode_server_hello(messages[0].body)
    client = decode_client_hello(_messages(tls13.client)[0].body)
    assert hello.selected_version == 0x0304 == hello.negotiated_version
    assert hello.version == 0x0303
    assert hello.cipher_suite in client.cipher_suites
    assert hello.key_share_group in client.key_share_groups
    assert hello.session_id == client.session_id  # middlebox compatibility echo
    assert not hello.hello_retry_request
    assert hello.alpn is None  # TLS 1.3 sends ALPN in EncryptedExtensions


def test_tls12_server_flight(tls12: Transcript, pki: Pki) -> None:
    reader = TlsHandshakeReader()
    messages = reader.feed(tls12.server)
    assert _types(messages) == [
        HandshakeType.SERVER_HELLO,
        HandshakeType.CERTIFICATE,
        HandshakeType.SERVER_KEY_EXCHANGE,
        HandshakeType.SERVER_HELLO_DONE,
        HandshakeType.NEW_SESSION_TICKET,  # RFC 5077 §3.3: sent just before ChangeCipherSpec
    ]
    assert reader.done  # stopped at ChangeCipherSpec
    assert reader.record_version == 0x0303
    hello = decode_server_hello(messages[0].body)
    assert hello.selected_version is None
    assert hello.negotiated_version == 0x0303
    assert hello.alpn == "h2"
    cert = decode_certificate(messages[1].body)
    assert cert.certificates == (pki.der,)
    assert cert.subject == SUBJECT
    assert cert.issuer == SUBJECT
    assert cert.san == SAN
    assert cert.not_before == int(NOT_BEFORE.timestamp())
    assert cert.not_after == int(NOT_AFTER.timestamp())


def test_tls12_client_stream_stops_at_change_cipher_spec(tls12: Transcript) -> None:
    reader = TlsHandshakeReader()
    assert _types(reader.feed(tls12.client)) == [
        HandshakeType.CLIENT_HELLO,
        HandshakeType.CLIENT_KEY_EXCHANGE,
    ]
    assert reader.done
    assert reader.feed(b"\x17\x03\x03\x00\x01x") == []


def test_rejected_certificate_gives_a_fatal_alert(pki: Pki) -> None:
    refused = _handshake(pki, ssl.TLSVersion.TLSv1_2, trust=False)
    reader = TlsHandshakeReader()
    assert _types(reader.feed(refused.client)) == [HandshakeType.CLIENT_HELLO]
    assert reader.done
    assert reader.alerts == [(2, 48)]  # fatal unknown_ca (RFC 8446 §6.2)


# --------------------------------------------------------------------------- stream framing


def _shuffled_segments(stream: bytes, seed: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    cuts = sorted({0, len(stream), *(rng.randrange(1, len(stream)) for _ in range(40))})
    segments = [(a, stream[a:b]) for a, b in itertools.pairwise(cuts)]
    segments += [(a, stream[a : a + 50]) for a, _ in rng.sample(segments, 5)]  # overlaps
    rng.shuffle(segments)
    return segments


@pytest.mark.parametrize("which", ["tls12", "tls13"])
@pytest.mark.parametrize("side", ["client", "server"])
def test_one_chunk_byte_by_byte_and_reassembled_agree(
    which: str, side: str, request: pytest.FixtureRequest
) -> None:
    stream: bytes = getattr(request.getfixturevalue(which), side)
    whole = _messages(stream)
    assert whole
    reader = TlsHandshakeReader()
    bytewise = [m for i in range(len(stream)) for m in reader.feed(stream[i : i + 1])]
    assert bytewise == whole
    for seed in range(3):
        reassembler, reader = StreamReassembler(), TlsHandshakeReader()
        got = [
            m
            for off, seg in _shuffled_segments(stream, seed)
            for m in reader.feed(reassembler.feed(off, seg))
        ]
        assert got == whole


def test_handshake_message_split_over_records(tls12: Transcript) -> None:
    """Re-frame the server flight one handshake byte per record (RFC 8446 §5.1 allows it)."""
    flight = b"".join(
        m.msg_type.to_bytes(1, "big") + len(m.body).to_bytes(3, "big") + m.body
        for m in _messages(tls12.server)
    )
    records = b"".join(b"\x16\x03\x03\x00\x01" + flight[i : i + 1] for i in range(len(flight)))
    assert _messages(records) == _messages(tls12.server)


def test_quic_crypto_stream_without_record_layer(pki: Pki) -> None:
    """aioquic's TLS 1.3 engine: the CRYPTO stream of the Initial and Handshake levels."""
    client = aioquic_tls.Context(is_client=True, alpn_protocols=["h3"], server_name=HOSTNAME)
    client.handshake_extensions = [(ExtensionType.QUIC_TRANSPORT_PARAMETERS, b"\x01\x02\x43\x21")]
    server = aioquic_tls.Context(is_client=False, alpn_protocols=["h3"])
    server.certificate = pki.cert
    server.certificate_private_key = pki.key
    server.handshake_extensions = [(ExtensionType.QUIC_TRANSPORT_PARAMETERS, b"\x01\x02\x43\x21")]
    c_out = {e: Buffer(capacity=16384) for e in aioquic_tls.Epoch}
    s_out = {e: Buffer(capacity=16384) for e in aioquic_tls.Epoch}
    client.handle_message(b"", c_out)
    initial = c_out[aioquic_tls.Epoch.INITIAL].data
    server.handle_message(initial, s_out)

    reader = TlsHandshakeReader(record_layer=False)
    bytewise = [m for i in range(len(initial)) for m in reader.feed(initial[i : i + 1])]
    (msg,) = bytewise
    hello = decode_client_hello(msg.body)
    assert hello.sni == HOSTNAME and hello.alpn == ("h3",)
    assert hello.quic_transport_parameters == b"\x01\x02\x43\x21"
    assert ja4(hello, "q").startswith("q13d")

    (sh,) = TlsHandshakeReader(record_layer=False).feed(s_out[aioquic_tls.Epoch.INITIAL].data)
    assert decode_server_hello(sh.body).selected_version == 0x0304
    flight = TlsHandshakeReader(record_layer=False).feed(s_out[aioquic_tls.Epoch.HANDSHAKE].data)
    assert _types(flight) == [
        HandshakeType.ENCRYPTED_EXTENSIONS,
        HandshakeType.CERTIFICATE,
        HandshakeType.CERTIFICATE_VERIFY,
        HandshakeType.FINISHED,
    ]
    cert = decode_certificate(flight[1].body, tls13=True)
    assert cert.certificates == (pki.der,)
    assert (cert.subject, cert.issuer, cert.san) == (SUBJECT, SUBJECT, SAN)
    assert cert.request_context == b""


# --------------------------------------------------------------------------- errors


def test_not_tls_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as exc:
        TlsHandshakeReader().feed(b"GET / HTTP/1.1\r\n\r\n")
    assert exc.value.reason == "tls.bad_content_type"
    with pytest.raises(DecodeError) as exc:
        TlsHandshakeReader().feed(b"\x16\x07\x01\x00\x05hello")
    assert exc.value.reason == "tls.bad_record_version"
    with pytest.raises(DecodeError) as exc:
        TlsHandshakeReader().feed(b"\x16\x03\x01\xff\xff")
    assert exc.value.reason == "tls.record_overflow"


def test_error_after_a_message_is_raised_on_the_next_feed(tls13: Transcript) -> None:
    record_len = 5 + int.from_bytes(tls13.client[3:5], "big")
    reader = TlsHandshakeReader()
    messages = reader.feed(tls13.client[:record_len] + b"\x99garbage")
    assert _types(messages) == [HandshakeType.CLIENT_HELLO]
    assert reader.done and reader.error is not None
    with pytest.raises(DecodeError) as exc:
        reader.feed(b"more")
    assert exc.value.reason == "tls.bad_content_type"
    assert reader.feed(b"more") == []


def test_handshake_larger_than_the_buffer_is_refused(tls12: Transcript) -> None:
    reader = TlsHandshakeReader(max_buffer=256)  # the Certificate message is larger
    assert _types(reader.feed(tls12.server)) == [HandshakeType.SERVER_HELLO]
    assert reader.error is not None and reader.error.reason == "tls.handshake_too_long"
    with pytest.raises(DecodeError):
        reader.feed(b"\x16")
    assert reader.buffered_bytes == 0


def test_interleaved_content_inside_a_handshake_message(tls13: Transcript) -> None:
    half = tls13.client[:100]
    split = b"\x16\x03\x01\x00\x5f" + half[5:] + b"\x15\x03\x03\x00\x02\x02\x28"
    with pytest.raises(DecodeError) as exc:
        TlsHandshakeReader().feed(split)
    assert exc.value.reason == "tls.interleaved_handshake"


def test_malformed_extensions(tls13: Transcript) -> None:
    body = bytearray(_messages(tls13.client)[0].body)
    hello = decode_client_hello(bytes(body))
    sni_body = hello.extension(ExtensionType.SERVER_NAME)
    assert sni_body is not None
    at = bytes(body).index(sni_body)
    body[at + 1] ^= 0x40  # list length no longer matches the extension length
    with pytest.raises(DecodeError) as exc:
        decode_client_hello(bytes(body))
    assert exc.value.reason == "tls.bad_extension"
    with pytest.raises(DecodeError) as exc:
        decode_client_hello(_messages(tls13.client)[0].body + b"\0")
    assert exc.value.reason == "tls.trailing_data"


def _cert_body(*ders: bytes) -> bytes:
    chain = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    return len(chain).to_bytes(3, "big") + chain


def test_truncated_certificate_is_a_decode_error(pki: Pki) -> None:
    der = pki.der
    for cut in range(len(der)):
        with pytest.raises(DecodeError) as exc:
            decode_x509(der[:cut])
        assert exc.value.layer == "x509"


def test_bad_string_in_certificate_is_a_decode_error(pki: Pki) -> None:
    der = pki.der.replace(b"Sluice Test", b"\xffluice Test")
    with pytest.raises(DecodeError) as exc:
        decode_certificate(_cert_body(der))
    assert exc.value.reason == "x509.bad_string"


def test_x509_summary_matches_cryptography(pki: Pki) -> None:
    summary = decode_x509(pki.der)
    assert summary == X509Summary(
        serial=0x51_1CE,
        issuer=SUBJECT,
        subject=SUBJECT,
        issuer_rdns=(("2.5.4.6", "US"), ("2.5.4.10", "Sluice Test"), ("2.5.4.3", HOSTNAME)),
        subject_rdns=(("2.5.4.6", "US"), ("2.5.4.10", "Sluice Test"), ("2.5.4.3", HOSTNAME)),
        not_before=int(pki.cert.not_valid_before_utc.timestamp()),
        not_after=int(pki.cert.not_valid_after_utc.timestamp()),
        san=SAN,
    )
    empty = decode_certificate(_cert_body())
    assert empty == TlsCertificate((), None, None, (), None, None)


def test_grease_values() -> None:
    assert [v for v in range(0x10000) if is_grease(v)] == [0x0A0A + 0x1010 * i for i in range(16)]


# --------------------------------------------------------------------------- fuzz


def _fuzz_input(sample: bytes, cut: int, tail: bytes) -> bytes:
    return sample[: cut % (len(sample) + 1)] + tail


_cut = st.integers(0, 1 << 16)
_tail = st.binary(max_size=48)


@settings(max_examples=300, deadline=None)
@given(cut=_cut, tail=_tail)
def test_fuzz_client_hello(tls13: Transcript, cut: int, tail: bytes) -> None:
    body = _messages(tls13.client)[0].body
    with contextlib.suppress(DecodeError):
        assert isinstance(decode_client_hello(_fuzz_input(body, cut, tail)), TlsClientHello)


@settings(max_examples=200, deadline=None)
@given(cut=_cut, tail=_tail)
def test_fuzz_server_hello(tls12: Transcript, cut: int, tail: bytes) -> None:
    body = _messages(tls12.server)[0].body
    with contextlib.suppress(DecodeError):
        assert isinstance(decode_server_hello(_fuzz_input(body, cut, tail)), TlsServerHello)


@settings(max_examples=300, deadline=None)
@given(cut=_cut, tail=_tail)
def test_fuzz_certificate(tls12: Transcript, cut: int, tail: bytes) -> None:
    body = _messages(tls12.server)[1].body
    with contextlib.suppress(DecodeError):
        assert isinstance(decode_certificate(_fuzz_input(body, cut, tail)), TlsCertificate)


@settings(max_examples=300, deadline=None)
@given(cut=_cut, tail=_tail, flip=st.integers(0, 1 << 16))
def test_fuzz_x509(pki: Pki, cut: int, tail: bytes, flip: int) -> None:
    der = bytearray(pki.der)
    der[flip % len(der)] ^= 0xFF  # one corrupted byte anywhere, then cut and extend
    with contextlib.suppress(DecodeError):
        assert isinstance(decode_x509(_fuzz_input(bytes(der), cut, tail)), X509Summary)


@settings(max_examples=200, deadline=None)
@given(cut=_cut, tail=_tail, chunk=st.integers(1, 600), record_layer=st.booleans())
def test_fuzz_reader(tls12: Transcript, cut: int, tail: bytes, chunk: int, record_layer: bool) -> None:
    data = _fuzz_input(tls12.client, cut, tail)
    reader = TlsHandshakeReader(record_layer=record_layer, max_buffer=4096)
    for i in range(0, len(data), chunk):
        try:
            messages = reader.feed(data[i : i + chunk])
        except DecodeError:
            assert reader.done and reader.error is not None
            continue
        assert all(isinstance(m, HandshakeMessage) for m in messages)
    assert reader.buffered_bytes <= 4096 + 5 + MAX_RECORD_LENGTH


def test_content_types_are_the_rfc_values() -> None:
    assert [int(c) for c in ContentType] == [20, 21, 22, 23, 24]
