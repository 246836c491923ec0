"""Live capture on real interfaces (needs root).

Most tests build a throwaway pair of network namespaces joined by a veth pair, run the capture
inside one of them in a subprocess (``ip netns exec NS python -c CAPTURE``, which writes JSON
lines), send real traffic from the other one (ping, UDP and TCP sockets, raw frames), and compare
what sluice captured with what tcpdump captured of the same frames at the same time.
The user-space BPF interpreter is checked against tcpdump reading real captures from
``../shared/corpus/ndpi``.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import CaptureError, ConfigError
from sluice.io import bpf
from sluice.io.live import LiveSource, compile_bpf, open_live, run_bpf
from sluice.io.source import LinkType, PacketSource, RawPacket

IS_ROOT = os.geteuid() == 0
HAVE_TOOLS = all(shutil.which(t) for t in ("ip", "tcpdump", "ping"))
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="live capture needs root (AF_PACKET, network namespaces); CI runs as root"
)
needs_lab = [
    pytest.mark.root,
    needs_root,
    pytest.mark.skipif(not HAVE_TOOLS, reason="needs ip (iproute2), tcpdump and ping"),
]
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
IP_A, IP_B = "10.77.0.1", "10.77.0.2"
_ids = itertools.count()
F = TypeVar("F", bound=Callable[..., None])

CAPTURE = r"""
import json, sys, threading, time
from sluice.errors import CaptureError, ConfigError
from sluice.io.live import LiveSource
args = json.loads(sys.argv[1])
stop = threading.Event()
def wait_eof():
    sys.stdin.read()
    stop.set()
threading.Thread(target=wait_eof, daemon=True).start()
def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
def err(exc):
    emit({"error": type(exc).__name__, "reason": getattr(exc, "reason", None),
          "option": getattr(exc, "option", None), "message": str(exc)})
try:
    src = LiveSource(args["iface"], stop=stop, **args["kw"])
except (CaptureError, ConfigError) as exc:
    err(exc)
    sys.exit(0)
emit({"ready": int(src.linktype)})
time.sleep(args.get("delay_s", 0))
try:
    with src:
        for p in src:
            emit({"ts": p.ts, "linktype": p.linktype, "data": p.data.hex(),
                  "wirelen": p.wirelen, "interface": p.interface})
except CaptureError as exc:
    err(exc)
emit({"stats": src.stats.anomalies, "bytes_read": src.stats.bytes_read})
"""

SEND = r"""
import json, socket, sys, time
for act in json.loads(sys.argv[1]):
    kind = act[0]
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(act[4] if len(act) > 4 else 1):
            s.sendto(bytes.fromhex(act[3]), (act[1], act[2]))
        s.close()
    elif kind == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((act[1], act[2]))
        except OSError:
            pass
        s.close()
    elif kind == "raw":
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.bind((act[1], 0))
        s.send(bytes.fromhex(act[2]))
        s.close()
    elif kind == "sleep":
        time.sleep(act[1])
"""

TUN = r"""
import fcntl, os, struct, subprocess, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"tn0", 0x0001 | 0x1000))  # TUNSETIFF TUN|NO_PI
subprocess.run(["ip", "addr", "add", "10.78.0.1/24", "dev", "tn0"], check=True)
subprocess.run(["ip", "link", "set", "tn0", "up"], check=True)
print("ready", flush=True)
for line in sys.stdin:
    os.write(fd, bytes.fromhex(line.strip()))
"""


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class Lab:
    """Two namespaces ``a`` and ``b`` joined by veth ``va`` (10.77.0.1) -- ``vb`` (10.77.0.2)."""

    a: str
    b: str
    mac_a: bytes
    mac_b: bytes


def _mac(ns: str, dev: str) -> bytes:
    info = json.loads(_run("ip", "-n", ns, "-j", "link", "show", "dev", dev))
    return bytes.fromhex(info[0]["address"].replace(":", ""))


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = f"sluice-live-{os.getpid()}-{next(_ids)}"
    a, b = f"{tag}-a", f"{tag}-b"
    try:
        for ns in (a, b):
            _run("ip", "netns", "add", ns)
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
        _run("ip", "-n", a, "addr", "add", f"{IP_A}/24", "dev", "va")
        _run("ip", "-n", b, "addr", "add", f"{IP_B}/24", "dev", "vb")
        _run("ip", "-n", a, "link", "set", "va", "up")
        _run("ip", "-n", b, "link", "set", "vb", "up")
        yield Lab(a, b, _mac(a, "va"), _mac(b, "vb"))
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


class Proc:
    """A subprocess in a namespace whose first output line signals readiness."""

    def __init__(self, ns: str, argv: list[str], ready_on_stderr: bool = False) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stream = self.proc.stderr if ready_on_stderr else self.proc.stdout
        assert stream is not None
        self.first, self.rest = self._first_line(stream.fileno())
        self.on_stderr = ready_on_stderr

    def _first_line(self, fd: int) -> tuple[str, bytes]:
        buf = b""
        deadline = time.monotonic() + 20
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.proc.kill()
                self.proc.communicate()
                raise AssertionError("subprocess did not become ready")
            chunk = os.read(fd, 65536)
            if not chunk:
                _out, err = self.proc.communicate()
                raise AssertionError(f"subprocess exited early: {err.decode()}")
            buf += chunk
        line, rest = buf.split(b"\n", 1)
        return line.decode(), rest

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = 20) -> tuple[str, str]:
        """Close stdin, wait, and return (stdout, stderr) after the first line."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        if self.on_stderr:
            return out.decode(), (self.rest + err).decode()
        return (self.rest + out).decode(), err.decode()

    def kill(self) -> None:
        """Kill the process if it still runs and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@dataclass
class Captured:
    ready: dict[str, Any]
    packets: list[RawPacket]
    tail: dict[str, Any]


class Capture(Proc):
    """sluice's LiveSource running in a namespace; stops when stdin closes."""

    def __init__(self, ns: str, iface: str, delay_s: float = 0, **kw: Any) -> None:
        kw.setdefault("duration_s", 30)
        args = json.dumps({"iface": iface, "kw": kw, "delay_s": delay_s})
        super().__init__(ns, [sys.executable, "-c", CAPTURE, args])
        self.ready: dict[str, Any] = json.loads(self.first)

    def result(self) -> Captured:
        out, err = self.finish()
        lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        assert lines, f"capture printed nothing: {err}"
        packets = [
            RawPacket(d["ts"], d["linktype"], bytes.fromhex(d["data"]), d["wirelen"], 0)
            for d in lines[:-1]
            if "ts" in d
        ]
        return Captured(self.ready, packets, lines[-1])


class Tcpdump(Proc):
    """tcpdump writing a nanosecond pcap, as the reference for bytes and timestamps."""

    def __init__(self, ns: str, iface: str, path: Path, count: int, expr: str) -> None:
        argv = ["tcpdump", "-i", iface, "-p", "-U", "-nn", "-s", "0"]
        argv += ["--time-stamp-precision=nano", "-w", str(path), "-c", str(count), expr]
        super().__init__(ns, argv, ready_on_stderr=True)
        assert "listening on" in self.first, self.first
        self.path = path

    def packets(self) -> list[tuple[float, bytes, int]]:
        self.finish()
        return read_pcap(self.path.read_bytes())


def read_pcap(blob: bytes) -> list[tuple[float, bytes, int]]:
    """(ts, data, wirelen) of each record of a classic pcap file."""
    magic = blob[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    scale = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    out, pos = [], 24
    while pos + 16 <= len(blob):
        sec, frac, caplen, wirelen = struct.unpack_from(endian + "IIII", blob, pos)
        out.append((sec + frac * scale, blob[pos + 16 : pos + 16 + caplen], wirelen))
        pos += 16 + caplen
    return out


def pcap_linktype(blob: bytes) -> int:
    endian = "<" if blob[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    return int(struct.unpack_from(endian + "I", blob, 20)[0])


def send(ns: str, *actions: list[Any]) -> None:
    argv = ["ip", "netns", "exec", ns, sys.executable, "-c", SEND, json.dumps(actions)]
    subprocess.run(argv, check=True, timeout=60)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(v) for v in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet with a valid header checksum (UDP checksum 0: none)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + udp


def udp_fields(frame: bytes, l3: int = 14) -> tuple[str, str, int, int, bytes]:
    """(src, dst, sport, dport, payload) of an untagged IPv4/UDP frame."""
    ihl = (frame[l3] & 0x0F) * 4
    assert frame[l3 + 9] == 17
    sport, dport, length = struct.unpack_from("!HHH", frame, l3 + ihl)
    src = socket.inet_ntoa(frame[l3 + 12 : l3 + 16])
    dst = socket.inet_ntoa(frame[l3 + 16 : l3 + 20])
    return src, dst, sport, dport, frame[l3 + ihl + 8 : l3 + ihl + length]


# --- live capture between namespaces -----------------------------------------------------------


def _lab_test(fn: F) -> F:
    """Mark a test that builds namespaces: root, iproute2/tcpdump/ping, 120 s at most."""
    for mark in [*needs_lab, pytest.mark.timeout(120)]:
        fn = cast(F, mark(fn))
    return fn


@_lab_test
def test_filter_keeps_only_matching_frames_with_kernel_bytes_and_time(lab: Lab, tmp_path: Path) -> None:
    ref = Tcpdump(lab.b, "vb", tmp_path / "ref.pcap", 3, "udp port 5555")
    cap = Capture(lab.b, "vb", bpf_filter="udp port 5555")
    try:
        assert cap.ready == {"ready": LinkType.ETHERNET}
        t0 = time.time()
        send(
            lab.a,
            ["udp", IP_B, 5555, b"sluice-live-1".hex()],
            ["udp", IP_B, 5556, b"other port".hex()],
            ["tcp", IP_B, 5555],
            ["udp", IP_B, 5555, b"sluice-live-2".hex()],
        )
        subprocess.run(["ip", "netns", "exec", lab.a, "ping", "-c", "1", "-W", "2", IP_B], check=True)
        send(lab.a, ["udp", IP_B, 5555, (b"x" * 1400).hex()])
        reference = ref.packets()
        t1 = time.time()
        got = cap.result()
    finally:
        cap.kill()
        ref.kill()
    assert got.tail == {"stats": {}, "bytes_read": sum(len(p.data) for p in got.packets)}
    payloads = [udp_fields(p.data)[4] for p in got.packets]
    assert payloads == [b"sluice-live-1", b"sluice-live-2", b"x" * 1400]
    for pkt in got.packets:
        assert pkt.linktype == LinkType.ETHERNET
        assert pkt.data[:6] == lab.mac_b and pkt.data[6:12] == lab.mac_a
        assert pkt.data[12:14] == b"\x08\x00"
        assert udp_fields(pkt.data)[:2] == (IP_A, IP_B)
        assert udp_fields(pkt.data)[3] == 5555
        assert pkt.wirelen == len(pkt.data)
        assert t0 - 0.01 <= pkt.ts <= t1 + 0.01
    # tcpdump (libpcap, TPACKET_V3 ring) saw the same bytes with the same kernel timestamps.
    assert [(d, w) for _, d, w in reference] == [(p.data, p.wirelen) for p in got.packets]
    for (ts, _, _), pkt in zip(reference, got.packets, strict=True):
        assert abs(ts - pkt.ts) < 2e-6


@_lab_test
def test_both_directions_are_captured(lab: Lab) -> None:
    cap = Capture(lab.b, "vb", bpf_filter="icmp")
    try:
        cmd = ["ip", "netns", "exec", lab.a, "ping", "-c", "2", "-i", "0.2", "-W", "2", IP_B]
        subprocess.run(cmd, check=True, capture_output=True)
        got = cap.result()
    finally:
        cap.kill()
    # echo request in (dst = vb), echo reply out (src = vb), twice
    assert [p.data[34] for p in got.packets] == [8, 0, 8, 0]
    assert [p.data[:6] == lab.mac_b for p in got.packets] == [True, False, True, False]
    assert [p.data[6:12] == lab.mac_b for p in got.packets] == [False, True, False, True]
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(got.packets))


def _vlan_frame(lab: Lab, tpid: int, vid: int, pcp: int, payload: bytes) -> bytes:
    ip = ipv4_udp(IP_A, IP_B, 4444, 5555, payload)
    tag = struct.pack("!HH", tpid, (pcp << 13) | vid) if tpid else b""
    return lab.mac_b + lab.mac_a + tag + b"\x08\x00" + ip


@_lab_test
def test_vlan_tag_stripped_by_kernel_is_reinserted(lab: Lab, tmp_path: Path) -> None:
    frames = [
        _vlan_frame(lab, 0x8100, 100, 5, b"vlan 100"),
        _vlan_frame(lab, 0x8100, 200, 0, b"vlan 200"),
        _vlan_frame(lab, 0, 0, 0, b"untagged"),
        _vlan_frame(lab, 0x88A8, 300, 1, b"802.1ad 300"),
    ]
    ref = Tcpdump(lab.b, "vb", tmp_path / "ref.pcap", len(frames), "not arp and not icmp")
    kernel = Capture(lab.b, "vb", bpf_filter="udp port 5555")  # kernel filter, untagged view
    user = Capture(lab.b, "vb", bpf_filter="vlan 100 and udp port 5555")  # user-space filter
    try:
        send(lab.a, *(["raw", "va", f.hex()] for f in frames))
        reference = ref.packets()
        got_kernel = kernel.result()
        got_user = user.result()
    finally:
        for p in (kernel, user, ref):
            p.kill()
    assert [p.data for p in got_kernel.packets] == frames
    assert [p.wirelen for p in got_kernel.packets] == [len(f) for f in frames]
    assert [p.data for p in got_user.packets] == frames[:1]
    # libpcap puts the tags back the same way
    assert [d for _, d, _ in reference] == frames
    for (ts, _, _), pkt in zip(reference, got_kernel.packets, strict=True):
        assert abs(ts - pkt.ts) < 2e-6


@_lab_test
def test_loopback_frames_are_seen_once(lab: Lab) -> None:
    cap = Capture(lab.b, "lo", bpf_filter="udp port 5555")
    try:
        send(lab.b, ["udp", "127.0.0.1", 5555, b"lo-1".hex()], ["udp", "127.0.0.1", 5555, b"2".hex()])
        got = cap.result()
    finally:
        cap.kill()
    assert [udp_fields(p.data)[4] for p in got.packets] == [b"lo-1", b"2"]
    assert all(p.data[:14] == bytes(12) + b"\x08\x00" for p in got.packets)
    assert got.ready == {"ready": LinkType.ETHERNET}


@_lab_test
def test_tun_device_gives_raw_ip(lab: Lab) -> None:
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun")
    tun = Proc(lab.b, [sys.executable, "-c", TUN])
    cap = Capture(lab.b, "tn0", bpf_filter="udp or icmp")
    try:
        assert cap.ready == {"ready": LinkType.RAW}
        packet = ipv4_udp("10.78.0.2", "10.78.0.1", 4444, 5555, b"through tun")
        tun.write(packet.hex() + "\n")
        time.sleep(0.3)
        got = cap.result()
    finally:
        cap.kill()
        tun.kill()
    assert [p.linktype for p in got.packets] == [LinkType.RAW, LinkType.RAW]
    assert got.packets[0].data == packet
    # the kernel's answer goes out through tn0: ICMP port unreachable quoting our packet
    reply = got.packets[1].data
    assert reply[9] == 1 and reply[20:22] == b"\x03\x03"
    assert reply[28:56] == packet[:28]


@_lab_test
def test_promiscuous_mode_lasts_while_open(lab: Lab) -> None:
    def promiscuity() -> int:
        info = json.loads(_run("ip", "-n", lab.b, "-d", "-j", "link", "show", "dev", "vb"))
        return int(info[0]["promiscuity"])

    assert promiscuity() == 0
    cap = Capture(lab.b, "vb", promiscuous=True, bpf_filter="udp port 5555")
    try:
        assert promiscuity() == 1
        cap.result()
    finally:
        cap.kill()
    assert promiscuity() == 0


@_lab_test
def test_kernel_drops_are_counted(lab: Lab) -> None:
    sent = 12000
    # the reader sleeps 1.5 s: 12000 * 1.4 kB does not fit in the 4 MiB socket buffer
    cap = Capture(lab.b, "vb", delay_s=1.5, bpf_filter="udp port 5555")
    try:
        send(lab.a, ["udp", IP_B, 5555, bytes(1400).hex(), sent])
        time.sleep(2.0)
        got = cap.result()
    finally:
        cap.kill()
    drops = got.tail["stats"].get("capture.kernel_drops", 0)
    assert drops > 0
    assert 0 < len(got.packets) < sent
    assert len(got.packets) + drops <= sent


@_lab_test
def test_interface_down_at_open_then_up(lab: Lab) -> None:
    _run("ip", "-n", lab.b, "link", "set", "vb", "down")
    cap = Capture(lab.b, "vb", bpf_filter="udp port 5555")
    try:
        time.sleep(0.3)
        _run("ip", "-n", lab.b, "link", "set", "vb", "up")
        send(lab.a, ["udp", IP_B, 5555, b"after up".hex()])
        got = cap.result()
    finally:
        cap.kill()
    assert [udp_fields(p.data)[4] for p in got.packets] == [b"after up"]
    assert got.tail["stats"] == {"capture.interface_down": 1}


@_lab_test
def test_interface_deleted_during_capture(lab: Lab) -> None:
    cap = Capture(lab.b, "vb", bpf_filter="udp port 5555")
    try:
        _run("ip", "-n", lab.a, "link", "del", "va")
        out, _ = cap.finish()
    finally:
        cap.kill()
    error = json.loads(out.splitlines()[0])
    assert error["reason"] == "capture.interface_gone"


@_lab_test
def test_errors_in_namespace(lab: Lab) -> None:
    missing = Capture(lab.b, "va")  # va lives in the other namespace
    bad_filter = Capture(lab.b, "vb", bpf_filter="udp port 99999")
    for p in (missing, bad_filter):
        p.kill()
    assert missing.ready["error"] == "CaptureError"
    assert missing.ready["reason"] == "capture.no_such_interface"
    assert bad_filter.ready["error"] == "ConfigError"
    assert bad_filter.ready["option"] == "bpf_filter"
    assert "illegal port number 99999" in bad_filter.ready["message"]


# --- in-process capture on loopback (root namespace) -------------------------------------------


@pytest.fixture
def udp_port() -> Iterator[tuple[socket.socket, int]]:
    """A bound UDP socket on 127.0.0.1, so no one else uses the port during the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock, sock.getsockname()[1]
    sock.close()


def _send_udp(port: int, payloads: list[bytes], delay_s: float = 0.1) -> threading.Thread:
    def run() -> None:
        time.sleep(delay_s)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in payloads:
                s.sendto(p, ("127.0.0.1", port))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.root
@needs_root
def test_max_packets_snaplen_and_protocol(udp_port: tuple[socket.socket, int]) -> None:
    _, port = udp_port
    src: PacketSource
    with open_live("lo", bpf_filter=f"udp port {port}", max_packets=2, snaplen=50, duration_s=10) as src:
        sender = _send_udp(port, [b"a" * 100, b"b" * 100, b"c" * 100])
        got = list(src)
        sender.join()
    assert [(len(p.data), p.wirelen) for p in got] == [(50, 142), (50, 142)]
    assert [p.data[42:50] for p in got] == [b"a" * 8, b"b" * 8]
    assert src.stats.bytes_read == 100
    assert isinstance(src, LiveSource) and src._sock is None


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("how", ["duration", "stop", "close"])
def test_capture_ends_on_time(how: str, udp_port: tuple[socket.socket, int]) -> None:
    stop = threading.Event()
    src = LiveSource(
        "lo",
        bpf_filter=f"udp port {udp_port[1]}",
        timeout_s=0.1,
        duration_s=0.4 if how == "duration" else 30,
        stop=stop,
    )
    timer = threading.Timer(0.4, stop.set if how == "stop" else src.close)
    start = time.monotonic()
    if how != "duration":
        timer.start()
    try:
        assert list(src) == []
    finally:
        timer.cancel()
        src.close()
    assert 0.39 <= time.monotonic() - start < 1.5
    assert src._sock is None


@pytest.mark.root
@needs_root
def test_close_in_the_iterating_thread(udp_port: tuple[socket.socket, int]) -> None:
    src = LiveSource("lo", bpf_filter=f"udp port {udp_port[1]}", duration_s=10)
    sender = _send_udp(udp_port[1], [b"one", b"two"], delay_s=0.05)
    it = iter(src)
    first = next(it)
    src.close()  # while the generator is suspended: closes at once
    sender.join()
    assert src._sock is None
    assert first.data.endswith(b"one")
    assert list(it) == []


@pytest.mark.root
@needs_root
def test_missing_interface_and_bad_filter() -> None:
    for name in ("sluice-nx0", "x" * 20, "", "a/b"):
        with pytest.raises(CaptureError) as info:
            LiveSource(name)
        assert info.value.reason == "capture.no_such_interface"
        assert info.value.path == name
    with pytest.raises(ConfigError) as cinfo:
        LiveSource("lo", bpf_filter="udp and and")
    assert cinfo.value.option == "bpf_filter"
    assert "syntax error" in str(cinfo.value)


@pytest.mark.root
@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_permission_denied_without_cap_net_raw() -> None:
    code = (
        "from sluice.io.live import LiveSource\nfrom sluice.errors import CaptureError\n"
        "try:\n LiveSource('lo')\nexcept CaptureError as e:\n print(e.reason)\n"
    )
    # root without CAP_NET_RAW in its bounding set: what a non-root user gets
    argv = ["setpriv", "--bounding-set=-net_raw", "--", sys.executable, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "capture.permission_denied"


# --- argument checks and BPF without root ------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "option"),
    [
        ({"snaplen": 0}, "snaplen"),
        ({"snaplen": 262145}, "snaplen"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_packets": -1}, "max_packets"),
        ({"duration_s": float("nan")}, "duration_s"),
    ],
)
def test_bad_arguments(kw: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigError) as info:
        LiveSource("lo", **kw)
    assert info.value.option == option


def test_missing_tcpdump_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(bpf, "TCPDUMP_FALLBACK_PATH", str(tmp_path))  # the compiler's module
    with pytest.raises(ConfigError) as info:
        compile_bpf("udp", LinkType.ETHERNET)
    assert info.value.option == "bpf_filter"
    assert "tcpdump is not installed" in str(info.value)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_compile_bpf_matches_tcpdump_listing() -> None:
    prog = compile_bpf("udp port 53", LinkType.ETHERNET, snaplen=1500)
    assert prog[-2:] == ((6, 0, 0, 1500), (6, 0, 0, 0))
    assert prog[0] == (0x28, 0, 0, 12)  # ldh [12]: the ethertype
    raw = compile_bpf("udp", LinkType.RAW)
    assert raw[0] == (0x30, 0, 0, 0)  # ldb [0]: the IP version nibble
    with pytest.raises(ConfigError, match="no VLAN support for Raw IP"):
        compile_bpf("vlan", LinkType.RAW)


# Filters whose result tcpdump -r computes with libpcap's own bpf_filter on the same file.
ORACLE_FILTERS = [
    "udp",
    "tcp port 443",
    "vlan",
    "vlan and tcp",
    "ip6",
    "icmp or arp",
    "tcp[tcpflags] & tcp-syn != 0",
    "len > 200 and ip[8] < 64",
    "ip[2:2] % 7 = 3",
    "ether[0] & 1 = 1",
    "net 10.0.0.0/8 or net 192.168.0.0/16",
    "portrange 1000-2000",
    "greater 1000",
    "vlan and udp port 4789",
]


@pytest.mark.corpus
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
@pytest.mark.parametrize(
    "name",
    ["bot.pcap", "vxlan.pcap", "4in4tunnel.pcap", "443-chrome.pcap", "tls_change_cipher.pcap"],
)
def test_userland_bpf_agrees_with_libpcap(name: str, tmp_path: Path) -> None:
    path = SHARED / "corpus" / "ndpi" / name
    if not path.exists():
        pytest.skip(f"../shared not present: {path}")
    blob = path.read_bytes()
    assert pcap_linktype(blob) == LinkType.ETHERNET
    records = read_pcap(blob)
    for expr in ORACLE_FILTERS:
        out = tmp_path / "match.pcap"
        subprocess.run(["tcpdump", "-r", str(path), "-w", str(out), expr], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        expected = [(d, w) for _, d, w in read_pcap(out.read_bytes())]
        prog = compile_bpf(expr, LinkType.ETHERNET)
        mine = [(d, w) for _, d, w in records if run_bpf(prog, d, w)]
        assert mine == expected, expr


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFF),
            st.integers(0, 255),
            st.integers(0, 255),
            st.integers(0, 0xFFFFFFFF),
        ),
        max_size=40,
    ),
    st.binary(max_size=200),
    st.integers(0, 70000),
)
def test_run_bpf_never_raises(program: list[tuple[int, int, int, int]], data: bytes, wirelen: int) -> None:
    result = run_bpf(program, data, wirelen)
    assert 0 <= result <= 0xFFFFFFFF
