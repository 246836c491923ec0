"""Live capture from a Linux network interface, as a :class:`~sluice.io.source.PacketSource`.

Theory of operation
-------------------
One ``AF_PACKET``/``SOCK_RAW`` socket per source, bound to one interface with ``ETH_P_ALL``, so
the kernel hands over every frame the interface receives or sends, link-layer header included.
No libpcap and no extra Python dependency; ``tcpdump`` is used only as a filter compiler.

Opening (:class:`LiveSource` does all of it in ``__init__``, so every error is raised there):

1. ``socket(AF_PACKET, SOCK_RAW, 0)``: protocol 0, so nothing is queued yet. ``bind((iface, 0))``
   resolves the name (``ENODEV`` -> ``capture.no_such_interface``) and ``getsockname()`` gives the
   interface's ``ARPHRD_*`` type, which decides the link type: Ethernet-like devices (``lo``
   included, it carries zeroed Ethernet headers) give :attr:`LinkType.ETHERNET`; devices without a
   link-layer header (``tun``: ``ARPHRD_NONE``, ``ARPHRD_RAWIP``) give :attr:`LinkType.RAW`. Other
   types are refused (``capture.unsupported_link_type``); libpcap would use cooked mode for them.
2. The filter is compiled by ``tcpdump -ddd -y <DLT> -s <snaplen> -- <filter>`` (decimal classic
   BPF, one instruction per line; :mod:`sluice.io.bpf`) and attached with ``SO_ATTACH_FILTER``.
   The kernel runs it before queueing, and its return value truncates the frame to
   ``snaplen``. Without a filter the program is just ``ret #snaplen``.
3. ``SO_TIMESTAMPNS`` (the kernel's receive time, as ``SCM_TIMESTAMPNS`` ancillary data) and
   ``PACKET_AUXDATA`` (original length, VLAN tag) are enabled; ``PACKET_ADD_MEMBERSHIP`` with
   ``PACKET_MR_PROMISC`` sets promiscuous mode, which the kernel undoes when the socket closes.
4. ``bind((iface, ETH_P_ALL))`` starts the capture, with the filter already in place.

Reading: ``recvmsg_into`` one frame at a time into a preallocated ``snaplen`` buffer, with a
socket timeout of ``timeout_s`` so that ``stop``, ``duration_s`` and :meth:`LiveSource.close` are
noticed. Both directions are captured; on loopback every frame is seen once outgoing and once
incoming, and the outgoing copy is skipped (as libpcap does).

VLAN: the kernel strips the 802.1Q tag of received frames (``skb_vlan_untag``, or NIC offload)
before packet sockets see them and reports it in ``PACKET_AUXDATA``. The tag (TPID, TCI) is put
back after the MAC addresses, and ``wirelen`` grows by 4, as libpcap does, so dissectors see the
frame as it was on the wire. The kernel filter, however, runs on the untagged frame: ``udp``
matches tagged UDP as well (the same as tcpdump on Linux) and a filter using the ``vlan`` keyword
would match nothing. Filters with ``vlan`` are therefore run in user space by :func:`run_bpf` on
the re-tagged frame (pcap-file semantics), and the kernel only truncates.

Bounds: the socket receive buffer (``RCVBUF_BYTES``) is the only queue. When the reader is slower
than the link the kernel drops frames and counts them; ``PACKET_STATISTICS`` (which resets on each
read) is polled every ``STATS_INTERVAL_S``, on timeouts and on close, and the drops are added to
``stats.anomalies["capture.kernel_drops"]`` (with a user-space filter these are frames dropped
before filtering, matching or not). The iterator holds one frame at a time.

Reason codes: ``capture.no_such_interface``, ``capture.permission_denied``,
``capture.unsupported_link_type``, ``capture.unsupported_platform``, ``capture.open_failed``,
``capture.read_failed`` and ``capture.interface_gone`` (raised as :class:`CaptureError`);
``capture.kernel_drops``, ``capture.interface_down`` and ``capture.no_kernel_timestamp`` (counted).
"""

from __future__ import annotations

__all__ = [
    "RCVBUF_BYTES",
    "SNAPLEN_MAX",
    "BpfInsn",
    "LiveSource",
    "compile_bpf",
    "open_live",
    "run_bpf",
]

import ctypes
import errno
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType

from sluice.errors import CaptureError, ConfigError
from sluice.io.bpf import SNAPLEN_MAX, BpfInsn, compile_bpf, run_bpf
from sluice.io.source import LinkType, RawPacket, SourceStats
from sluice.wire.ethernet import ArpHrd

RCVBUF_BYTES = 4 * 1024 * 1024
"""Socket receive buffer requested, in bytes (the kernel doubles it for bookkeeping)."""
STATS_INTERVAL_S = 1.0
"""How often kernel drop counters are read while packets keep arriving, in seconds."""

# Linux ABI constants (include/uapi/linux/if_packet.h, if_ether.h, asm-generic/socket.h).
_ETH_P_ALL = 0x0003
_ETH_P_8021Q = 0x8100
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_PROMISC = 1
_PACKET_STATISTICS = 6
_PACKET_AUXDATA = 8
_SO_ATTACH_FILTER = 26
_SO_RCVBUFFORCE = 33
_SO_TIMESTAMPNS = 35  # == SCM_TIMESTAMPNS (the _OLD variant: native ``long`` fields)
_TP_STATUS_VLAN_VALID = 1 << 4
_TP_STATUS_VLAN_TPID_VALID = 1 << 6
_IFNAMSIZ = 16

_TIMESPEC = struct.Struct("@ll")
_AUXDATA = struct.Struct("@IIIHHHH")  # tp_status tp_len tp_snaplen tp_mac tp_net tci tpid
_TPACKET_STATS = struct.Struct("@II")  # tp_packets tp_drops
_PACKET_MREQ = struct.Struct("@iHH8s")
_SOCK_FILTER = struct.Struct("=HBBI")
_SOCK_FPROG = struct.Struct("@HP")
_VLAN_TAG = struct.Struct("!HH")
_ANC_BUFSIZE = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_AUXDATA.size) + 64
_VLAN_KEYWORD = re.compile(r"\bvlan\b")


_LINKTYPE_OF_ARPHRD = {
    ArpHrd.ETHER: LinkType.ETHERNET,
    ArpHrd.LOOPBACK: LinkType.ETHERNET,
    ArpHrd.NONE: LinkType.RAW,
    ArpHrd.RAWIP: LinkType.RAW,
}


def _attach_filter(sock: socket.socket, program: Sequence[BpfInsn]) -> None:
    """Attach a classic BPF program to ``sock`` (``SO_ATTACH_FILTER``; the kernel copies it)."""
    insns = b"".join(_SOCK_FILTER.pack(*insn) for insn in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = _SOCK_FPROG.pack(len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def _valid_ifname(name: str) -> bool:
    """Whether ``name`` can be a Linux interface name at all (see ``dev_valid_name``)."""
    return (
        0 < len(name.encode()) < _IFNAMSIZ
        and name not in (".", "..")
        and not any(c == "/" or c == ":" or c.isspace() or c == "\0" for c in name)
    )


class LiveSource:
    """Frames captured on one Linux interface through an ``AF_PACKET`` socket.

    Args:
        interface: interface name (``eth0``, ``lo``, ``tun0``) in the caller's network namespace.
        bpf_filter: pcap filter expression; ``None`` or blank captures everything.
        snaplen: bytes kept of each frame, 1 to :data:`SNAPLEN_MAX`.
        promiscuous: put the interface in promiscuous mode while the source is open.
        timeout_s: longest wait in one receive call; bounds how late ``stop``, ``duration_s``
            and :meth:`close` take effect.
        max_packets: stop after yielding this many frames.
        duration_s: stop this many seconds after iteration starts.
        stop: stop as soon as this event is set (checked at least every ``timeout_s``).

    Raises:
        CaptureError: ``capture.no_such_interface``, ``capture.permission_denied`` (not root /
            no ``CAP_NET_RAW``), ``capture.unsupported_link_type``,
            ``capture.unsupported_platform`` or ``capture.open_failed``.
        ConfigError: an invalid argument, or ``bpf_filter`` rejected by tcpdump or the kernel
            (the option is named in ``ConfigError.option``).
    """

    def __init__(
        self,
        interface: str,
        *,
        bpf_filter: str | None = None,
        snaplen: int = SNAPLEN_MAX,
        promiscuous: bool = False,
        timeout_s: float = 0.2,
        max_packets: int | None = None,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        _check_args(snaplen, timeout_s, max_packets, duration_s)
        self.stats = SourceStats()
        self.interface = interface
        self.snaplen = snaplen
        self.timeout_s = timeout_s
        self.max_packets = max_packets
        self.duration_s = duration_s
        self._stop = stop
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._iterating = False
        self._iter_thread = 0
        self._yielded = 0
        self._deadline: float | None = None
        self._userland: tuple[BpfInsn, ...] | None = None
        self._sock: socket.socket | None = None
        sock = self._open_socket(interface)
        try:
            self.linktype: LinkType = self._link_type(sock)
            self._configure(sock, bpf_filter, promiscuous)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def _open_socket(self, interface: str) -> socket.socket:
        """Create the packet socket and bind it to ``interface`` without capturing yet."""
        family = getattr(socket, "AF_PACKET", None)
        if family is None:
            raise CaptureError(
                "capture.unsupported_platform", interface, "live capture needs Linux AF_PACKET"
            )
        if not _valid_ifname(interface):
            raise CaptureError("capture.no_such_interface", interface, "no such interface")
        try:
            sock = socket.socket(family, socket.SOCK_RAW, 0)
        except PermissionError as exc:
            raise CaptureError(
                "capture.permission_denied",
                interface,
                f"opening a packet socket needs root or CAP_NET_RAW: {exc.strerror}",
            ) from exc
        except OSError as exc:
            raise CaptureError("capture.open_failed", interface, str(exc)) from exc
        try:
            sock.bind((interface, 0))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise CaptureError("capture.no_such_interface", interface, "no such interface") from exc
            raise CaptureError("capture.open_failed", interface, str(exc)) from exc
        return sock

    def _link_type(self, sock: socket.socket) -> LinkType:
        """Link type from the bound interface's ARPHRD type; also records its index."""
        hatype = int(sock.getsockname()[3])
        try:
            self._hatype = ArpHrd(hatype)
        except ValueError:
            raise CaptureError(
                "capture.unsupported_link_type",
                self.interface,
                f"ARPHRD type {hatype} is not supported (Ethernet-like and header-less devices are)",
            ) from None
        try:
            self._ifindex = socket.if_nametoindex(self.interface)
        except OSError as exc:
            raise CaptureError("capture.no_such_interface", self.interface, str(exc)) from exc
        return _LINKTYPE_OF_ARPHRD[self._hatype]

    def _configure(self, sock: socket.socket, bpf_filter: str | None, promiscuous: bool) -> None:
        """Filter, ancillary data, buffer size and promiscuous mode; then start capturing."""
        expr = (bpf_filter or "").strip()
        program: tuple[BpfInsn, ...] = ((0x06, 0, 0, self.snaplen),)
        if expr:
            compiled = compile_bpf(expr, self.linktype, self.snaplen)
            if _VLAN_KEYWORD.search(expr) and self.linktype == LinkType.ETHERNET:
                self._userland = compiled
            else:
                program = compiled
        try:
            _attach_filter(sock, program)
        except OSError as exc:
            raise ConfigError("bpf_filter", f"kernel rejected the program: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            sock.setsockopt(_SOL_PACKET, _PACKET_AUXDATA, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RCVBUF_BYTES)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            if promiscuous:
                mreq = _PACKET_MREQ.pack(self._ifindex, _PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
            sock.bind((self.interface, _ETH_P_ALL))
        except PermissionError as exc:
            raise CaptureError("capture.permission_denied", self.interface, str(exc)) from exc
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise CaptureError("capture.no_such_interface", self.interface) from exc
            raise CaptureError("capture.open_failed", self.interface, str(exc)) from exc

    def __iter__(self) -> Iterator[RawPacket]:
        """Yield captured frames until a limit is reached, ``stop`` is set or the source closes.

        Raises:
            CaptureError: ``capture.interface_gone`` when the interface is deleted or moved,
                ``capture.read_failed`` on another socket error.
        """
        with self._lock:
            if self._iterating:
                raise RuntimeError("LiveSource is already being iterated")
            self._iterating = True
            self._iter_thread = threading.get_ident()
        try:
            if self._deadline is None and self.duration_s is not None:
                self._deadline = time.monotonic() + self.duration_s
            yield from self._read_loop()
        finally:
            with self._lock:
                self._iterating = False
                if self._closed.is_set():
                    self._release()
                else:
                    self._poll_drops()

    def _should_stop(self) -> bool:
        return (
            self._closed.is_set()
            or (self._stop is not None and self._stop.is_set())
            or (self.max_packets is not None and self._yielded >= self.max_packets)
        )

    def _read_loop(self) -> Iterator[RawPacket]:
        sock = self._sock
        if sock is None:
            return
        view = memoryview(bytearray(self.snaplen))
        current_timeout = -1.0
        next_stats = time.monotonic() + STATS_INTERVAL_S
        while not self._should_stop():
            now = time.monotonic()
            wait = self.timeout_s
            if self._deadline is not None:
                if now >= self._deadline:
                    return
                wait = min(wait, max(self._deadline - now, 0.001))
            if now >= next_stats:
                self._poll_drops()
                next_stats = now + STATS_INTERVAL_S
            if wait != current_timeout:
                sock.settimeout(wait)
                current_timeout = wait
            try:
                nbytes, ancdata, _flags, addr = sock.recvmsg_into([view], _ANC_BUFSIZE)
            except TimeoutError:
                self._poll_drops()
                continue
            except OSError as exc:
                self._read_error(exc)
                continue
            pkt = self._make_packet(view, nbytes, ancdata, addr[2])
            if pkt is not None:
                self._yielded += 1
                yield pkt

    def _read_error(self, exc: OSError) -> None:
        """Count an interface going down; raise when it is gone or on any other error."""
        if exc.errno == errno.ENETDOWN:
            try:
                same = socket.if_nametoindex(self.interface) == self._ifindex
            except OSError:
                same = False
            if not same:
                raise CaptureError(
                    "capture.interface_gone", self.interface, "interface deleted or moved"
                ) from exc
            self.stats.count("capture.interface_down")
            return
        raise CaptureError("capture.read_failed", self.interface, str(exc)) from exc

    def _make_packet(
        self,
        view: memoryview,
        nbytes: int,
        ancdata: list[tuple[int, int, bytes]],
        pkttype: int,
    ) -> RawPacket | None:
        """Turn one received frame into a :class:`RawPacket`, or ``None`` to skip it."""
        if self._hatype == ArpHrd.LOOPBACK and pkttype == socket.PACKET_OUTGOING:
            return None  # loopback frames are seen again as incoming
        ts: float | None = None
        aux: tuple[int, ...] | None = None
        for level, ctype, cdata in ancdata:
            if level == socket.SOL_SOCKET and ctype == _SO_TIMESTAMPNS:
                if len(cdata) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(cdata)
                    ts = sec + nsec * 1e-9
            elif (level, ctype) == (_SOL_PACKET, _PACKET_AUXDATA) and len(cdata) >= _AUXDATA.size:
                aux = _AUXDATA.unpack_from(cdata)
        caplen = min(nbytes, self.snaplen)
        data = bytes(view[:caplen])
        wirelen = nbytes
        if aux is not None:
            status, wirelen, tci, tpid = aux[0], aux[1], aux[5], aux[6]
            vlan = tci != 0 or status & _TP_STATUS_VLAN_VALID
            if vlan and self.linktype == LinkType.ETHERNET and caplen >= 12:
                if not (tpid or status & _TP_STATUS_VLAN_TPID_VALID):
                    tpid = _ETH_P_8021Q
                data = (data[:12] + _VLAN_TAG.pack(tpid, tci) + data[12:])[: self.snaplen]
                wirelen += 4
        if self._userland is not None:
            keep = run_bpf(self._userland, data, wirelen)
            if keep == 0:
                return None
            data = data[:keep]
        if ts is None:
            ts = time.time()
            self.stats.count("capture.no_kernel_timestamp")
        self.stats.bytes_read += len(data)
        return RawPacket(ts, self.linktype, data, wirelen, 0)

    def _poll_drops(self) -> None:
        """Add the kernel's drop counter since the last poll to the anomalies."""
        if self._sock is None:
            return
        try:
            raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, _TPACKET_STATS.size)
        except OSError:
            return
        _packets, drops = _TPACKET_STATS.unpack(raw)
        if drops:
            self.stats.count("capture.kernel_drops", drops)

    def _release(self) -> None:
        if self._sock is not None:
            self._poll_drops()
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Stop capturing and close the socket.

        Safe to call more than once and from another thread: an iteration in progress in another
        thread ends within ``timeout_s`` and closes the socket itself.
        """
        self._closed.set()
        with self._lock:
            # The iterating thread cannot be inside recv while it is running this method.
            if not self._iterating or self._iter_thread == threading.get_ident():
                self._release()

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_args(snaplen: int, timeout_s: float, max_packets: int | None, duration_s: float | None) -> None:
    """Raise :class:`ConfigError` for out-of-range constructor arguments."""
    if not 1 <= snaplen <= SNAPLEN_MAX:
        raise ConfigError("snaplen", f"must be between 1 and {SNAPLEN_MAX}, got {snaplen}")
    if not 0 < timeout_s < float("inf"):
        raise ConfigError("timeout_s", f"must be a positive number of seconds, got {timeout_s}")
    if max_packets is not None and max_packets < 0:
        raise ConfigError("max_packets", f"must not be negative, got {max_packets}")
    if duration_s is not None and not 0 <= duration_s < float("inf"):
        raise ConfigError("duration_s", f"must be a non-negative number, got {duration_s}")


def open_live(
    interface: str,
    *,
    bpf_filter: str | None = None,
    snaplen: int = SNAPLEN_MAX,
    promiscuous: bool = False,
    timeout_s: float = 0.2,
    max_packets: int | None = None,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
) -> LiveSource:
    """Open a live capture on ``interface``; the arguments are those of :class:`LiveSource`.

    Returns:
        The open source; use it as a context manager or call ``close()``.

    Raises:
        CaptureError: the interface cannot be captured from (see :class:`LiveSource`).
        ConfigError: an invalid argument or filter.
    """
    return LiveSource(
        interface,
        bpf_filter=bpf_filter,
        snaplen=snaplen,
        promiscuous=promiscuous,
        timeout_s=timeout_s,
        max_packets=max_packets,
        duration_s=duration_s,
        stop=stop,
    )
