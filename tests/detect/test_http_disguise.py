"""simple-obfs's HTTP disguise: a GET whose first write carries the encrypted stream after its head."""

from __future__ import annotations

from sluice.detect import fingerprints as fp

from .conftest import lab_label, lab_records
from .test_vpn_variants import rnd, tcp_flow

HEAD = (
    b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/7.88.1\r\nUpgrade: websocket\r\n"
)
HEAD += b"Connection: Upgrade\r\nContent-Length: 512\r\n\r\n"


def _disguise(rec: object) -> list[fp.RuleMatch]:
    return [m for m in fp.match_record(rec) if m.rule == "http-disguise"]  # type: ignore[arg-type]


def test_made_up_get_with_an_encrypted_body_is_found() -> None:
    rec = tcp_flow(
        (0, HEAD + rnd(512, 1)), (1, b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + rnd(300, 2)), port=80
    )
    (m,) = _disguise(rec)
    assert (m.label, m.family) == ("circumvention", "shadowsocks") and m.decided_at == 3
    (e,) = m.evidence
    assert e.code == "http_disguise.binary_body" and "bits/byte" in e.observed and e.reason


def test_near_misses_are_not() -> None:
    plain = tcp_flow((0, HEAD), (1, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), port=80)
    assert not _disguise(plain)  # a GET is text
    post = HEAD.replace(b"GET ", b"POST ")
    assert not _disguise(tcp_flow((0, post + rnd(512, 3)), port=80))  # a POST may carry binary
    zeros = tcp_flow((0, HEAD + bytes(512)), port=80)
    assert not _disguise(zeros)  # binary but not encrypted: padding, an odd client
    tiny = tcp_flow((0, HEAD + rnd(8, 4)), port=80)
    assert not _disguise(tiny)  # a few stray bytes keep the request mostly text


def test_lab_captures() -> None:
    """The lab's simple-obfs HTTP session is found; its plain HTTP sessions are not."""
    for session, expect in (
        ("shadowsocks-plugin-obfs-http-s1-000", True),
        ("http-nginx-s1-000", False),
        ("http-python-s1-001", False),
        ("http-proxy-squid-forward-s1-000", False),
    ):
        hits = [bool(_disguise(r)) for r in lab_records(session) if lab_label(session, r)]
        assert hits and all(h == expect for h in hits), session
