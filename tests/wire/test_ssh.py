"""SSH identification strings from the real OpenSSH client and from the nDPI corpus.

The installed ``ssh`` client connects to a loopback listener that records what it sends and
answers with lines before its own identification string; ``ssh -v`` reports how OpenSSH read
them, which must agree with sluice. The corpus supplies OpenSSH and Apache MINA SSHD banners
with nDPI's reading, read with the project's own capture reader.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
import subprocess
import threading

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sluice.errors import DecodeError
from sluice.wire.ssh import MAX_BANNER_BYTES, MAX_PREAMBLE_BYTES, SshBanner, try_decode_ssh_banner
from tests.corpus.ndpi_out import read_ndpi_out
from tests.corpus_util import corpus_file, first_payloads

SERVER_BYTES = (
    b"Welcome to the sluice lab\r\nUnauthorised access prohibited\nSSH-2.0-sluice_lab_1.0 lab comment\r\n"
)


def _run_openssh_client() -> tuple[bytes, str]:
    """Connect the real ``ssh`` client to a recording listener; return its bytes and -v log."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(SERVER_BYTES)
            # The client's identification line, then its binary KEXINIT packet.
            while b"\n" not in received or len(received) < received.index(b"\n") + 64:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received.extend(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        proc = subprocess.run(
            [
                "ssh", "-v", "-F", "/dev/null", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=5", "-p", str(port), "nobody@127.0.0.1", "true",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip
    finally:
        thread.join(15)
        listener.close()
    return bytes(received), proc.stderr


@pytest.fixture(scope="module")
def openssh() -> tuple[bytes, str, str]:
    if shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client installed")
    version = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False, timeout=10).stderr
    client_bytes, log = _run_openssh_client()
    return client_bytes, log, version


def test_openssh_client_banner(openssh: tuple[bytes, str, str]) -> None:
    client_bytes, _, version = openssh
    banner = try_decode_ssh_banner(client_bytes)
    assert isinstance(banner, SshBanner)
    assert banner.proto_version == "2.0"
    # "OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026" -> software and comments
    software, _, rest = version.strip().partition(" ")
    assert banner.software == software.rstrip(",")
    if "," in rest:  # distribution builds put their patch level after the space
        assert banner.comments == rest.split(",")[0]
    assert banner.raw == client_bytes[: banner.end_offset].decode().rstrip("\r\n")
    assert banner.preamble == ()
    # What follows is the binary packet protocol: length, padding length, SSH_MSG_KEXINIT (20).
    packet = client_bytes[banner.end_offset :]
    assert struct.unpack_from("!I", packet)[0] > 100 and packet[5] == 20


def test_server_lines_before_banner_read_like_openssh(openssh: tuple[bytes, str, str]) -> None:
    _, log, _ = openssh
    banner = try_decode_ssh_banner(SERVER_BYTES)
    assert banner is not None
    seen = re.search(r"Remote protocol version (\S+), remote software version (\S+)", log)
    assert seen is not None, log
    assert (banner.proto_version, banner.software) == (seen[1], seen[2])
    logged_lines = re.findall(r"kex_exchange_identification: banner line \d+: (.*)", log)
    assert list(banner.preamble) == logged_lines
    assert banner.comments == "lab comment"
    assert banner.end_offset == len(SERVER_BYTES)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11\r\n", ("2.0", "OpenSSH_8.2p1", "Ubuntu-4ubuntu0.11")),
        (b"SSH-2.0-APACHE-SSHD-2.5.0\r\n", ("2.0", "APACHE-SSHD-2.5.0", None)),
        (b"SSH-1.99-Cisco-1.25\r\n", ("1.99", "Cisco-1.25", None)),
        (b"SSH-2.0-dropbear_2022.83\n", ("2.0", "dropbear_2022.83", None)),
        (b"SSH-2.0-Go\r\n\x00\x00\x01\x14\x0a\x14", ("2.0", "Go", None)),
    ],
)  # fmt: skip
def test_known_banners(line: bytes, expected: tuple[str, str, str | None]) -> None:
    banner = try_decode_ssh_banner(line)
    assert banner is not None
    assert (banner.proto_version, banner.software, banner.comments) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"SSH",
        b"SSH-2.0-OpenSSH_9.2",  # line not finished
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00",
        b"\x00\x00\x00\x0cSSH-2.0-x\r\n",  # binary before the line
        b"hello\r\n",
        b"220 mail.example.com ESMTP\r\n",
    ],
)
def test_not_ssh_or_incomplete(data: bytes) -> None:
    assert try_decode_ssh_banner(data) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"SSH-2.0\r\n", "ssh.bad_banner"),
        (b"SSH--OpenSSH\r\n", "ssh.bad_banner"),
        (b"SSH-2.0-\r\n", "ssh.bad_banner"),
        (b"SSH-2.0- comment\r\n", "ssh.bad_banner"),
        (b"SSH-2.0-Open\x00SSH\r\n", "ssh.bad_banner"),
        (b"SSH-2.0-" + b"x" * 250 + b"\r\n", "ssh.banner_too_long"),
        (b"SSH-2.0-" + b"x" * 300, "ssh.banner_too_long"),
        (b"hello\r\nSSH-2.0-" + b"x" * 300, "ssh.banner_too_long"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        try_decode_ssh_banner(data)
    assert err.value.reason == reason


def test_limits() -> None:
    longest = b"SSH-2.0-" + b"x" * (MAX_BANNER_BYTES - 10) + b"\r\n"
    assert len(longest) == MAX_BANNER_BYTES
    assert try_decode_ssh_banner(longest) is not None
    assert try_decode_ssh_banner(longest[:-1]) is None  # the LF may still come
    with pytest.raises(DecodeError):
        try_decode_ssh_banner(longest[:-2] + b"xx")  # it cannot any more
    far = b"x" * 60 + b"\r\n"
    preamble = far * (MAX_PREAMBLE_BYTES // len(far) + 1)
    assert try_decode_ssh_banner(preamble + b"SSH-2.0-late\r\n") is None
    near = far * 10
    got = try_decode_ssh_banner(near + b"SSH-2.0-ok\r\n")
    assert got is not None and len(got.preamble) == 10


# ------------------------------------------------------------------------- real captures


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["ssh.pcap", "ssh_unidirectional.pcap"])
def test_corpus_matches_ndpi(name: str) -> None:
    firsts = first_payloads(corpus_file(name))
    checked = 0
    for flow in read_ndpi_out(corpus_file(f"{name}.out")):
        if flow.l4 != "TCP":
            continue
        client, server = flow.a, flow.b
        banners = {
            side: try_decode_ssh_banner(firsts[key])
            for side, key in (("client", (*client, *server)), ("server", (*server, *client)))
        }
        # nDPI prints the banners as "Hostname/SNI" (client) and "Server", but not always by
        # direction: in ssh.pcap the port-22 side sent OpenSSH_5.3, printed as the client's,
        # and in ssh_unidirectional.pcap the server's banner is the only one. Compare sets.
        wanted = {v for k in ("Hostname/SNI", "Server") if (v := flow.fields.get(k, "")).startswith("SSH-")}
        ours = {b.raw for b in banners.values() if b is not None}
        assert wanted and wanted <= ours, (wanted, ours)
        checked += len(wanted)
    assert checked


# ------------------------------------------------------------------------------------ fuzz

_SAMPLES = [
    SERVER_BYTES,
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\r\n\x00\x00\x05\xdc\x04\x14",
    b"SSH-2.0-APACHE-SSHD-2.5.0\r\n",
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_SAMPLES), st.integers(0, 120), st.binary(max_size=300))
@example(_SAMPLES[0], 0, b"x\nSSH-")
@example(_SAMPLES[1], 4, b"-\r\n")
def test_fuzz_prefix_plus_random(sample: bytes, cut: int, tail: bytes) -> None:
    data = sample[:cut] + tail
    try:
        banner = try_decode_ssh_banner(data)
    except DecodeError as exc:
        assert exc.reason in ("ssh.bad_banner", "ssh.banner_too_long")
    else:
        if banner is not None:
            assert banner.software and banner.proto_version
            assert data[banner.end_offset - 1 : banner.end_offset] == b"\n"
        assert try_decode_ssh_banner(memoryview(data)) == banner
