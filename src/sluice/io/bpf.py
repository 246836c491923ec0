"""Packet filters in pcap-filter(7) syntax (``tcp port 443``), for live capture and for files.

Two ways to run one, both on programs that libpcap's own compiler built, so a filter selects
exactly the packets ``tcpdump`` selects:

* :class:`PacketFilter`: libpcap through :mod:`ctypes` (``pcap_open_dead``, ``pcap_compile``,
  ``pcap_offline_filter``): one program per link type, compiled when the first frame of that link
  type arrives, so a pcapng file whose interfaces differ (Ethernet and raw IP) is filtered per
  interface (``tcpdump -r`` refuses such a file). Used for capture files: the same semantics as
  ``tcpdump -r FILE EXPR`` (a filter using ``vlan`` sees the tag in the frame, as in a file).
* :func:`compile_bpf` + :func:`run_bpf`: the program as ``tcpdump -ddd`` prints it, attached to a
  live socket by :mod:`sluice.io.live` (the kernel runs it), or run here in Python where the
  kernel cannot (VLAN filters on live capture); also the fallback of :class:`PacketFilter` when
  libpcap cannot be loaded.

:func:`filtered_captures` writes the packets of capture files that pass a filter to temporary
pcapng files of the same base names (as ``tcpdump -r FILE EXPR -w OUT``), so every command that
reads files (batch path, replays, clusters) filters without knowing it; :class:`FilteredSource`
filters a streaming source in place.

Reason codes: ``bpf_filter`` (a :class:`~sluice.errors.ConfigError`: tcpdump or libpcap missing,
an expression they reject, a link type the expression cannot apply to).
"""

from __future__ import annotations

__all__ = [
    "BPF_MAXINSNS",
    "SNAPLEN_MAX",
    "BpfInsn",
    "FilterReport",
    "FilteredSource",
    "PacketFilter",
    "compile_bpf",
    "filtered_captures",
    "run_bpf",
]

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.errors import ConfigError
from sluice.io.limits import ReadLimits
from sluice.io.source import LinkType, PacketSource, RawPacket, SourceStats

SNAPLEN_MAX = 262144
"""Largest snapshot length, in bytes (libpcap's ``MAXIMUM_SNAPLEN``)."""
TCPDUMP_TIMEOUT_S = 10.0
"""Longest time a filter compilation by tcpdump may take, in seconds."""
TCPDUMP_FALLBACK_PATH = "/usr/sbin:/usr/bin:/sbin:/usr/local/sbin"
"""Where tcpdump is looked for when it is not on ``PATH`` (``os.pathsep``-separated)."""
BPF_MAXINSNS = 4096
"""Longest classic BPF program the kernel accepts, in instructions."""
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
"""Netmask given to ``pcap_compile`` (``ip broadcast`` is then refused, as by tcpdump -r)."""

BpfInsn = tuple[int, int, int, int]
"""One classic BPF instruction: ``(code, jt, jf, k)`` as in ``struct sock_filter``."""

_DLT_NAME = {
    LinkType.NULL: "NULL",
    LinkType.ETHERNET: "EN10MB",
    LinkType.RAW: "RAW",
    LinkType.LOOP: "LOOP",
    LinkType.LINUX_SLL: "LINUX_SLL",
    LinkType.IPV4: "IPV4",
    LinkType.IPV6: "IPV6",
    LinkType.LINUX_SLL2: "LINUX_SLL2",
}
_DLT_OF_LINKTYPE = {int(LinkType.RAW): 12}
"""LINKTYPE_* values whose DLT_* differs (``LINKTYPE_RAW`` 101 is ``DLT_RAW`` 12 on Linux)."""


def compile_bpf(expr: str, linktype: LinkType, snaplen: int = SNAPLEN_MAX) -> tuple[BpfInsn, ...]:
    """Compile a pcap filter expression to classic BPF with ``tcpdump -ddd``.

    Args:
        expr: filter in pcap-filter(7) syntax, e.g. ``"udp port 53"``.
        linktype: link type of the frames the program will see (ETHERNET or RAW).
        snaplen: value the program returns for accepted frames (bytes to keep).

    Returns:
        The program as ``(code, jt, jf, k)`` tuples.

    Raises:
        ConfigError: ``bpf_filter`` when tcpdump is missing, rejects the expression (with
            tcpdump's message) or prints something that is not a BPF program.
    """
    dlt = _DLT_NAME.get(LinkType(linktype)) if linktype in LinkType._value2member_map_ else None
    if dlt is None:
        raise ConfigError("bpf_filter", f"filters are not supported on link type {linktype}")
    tcpdump = _find_tcpdump()
    cmd = [tcpdump, "-ddd", "-y", dlt, "-s", str(snaplen), "--", expr]
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")}
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=TCPDUMP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError("bpf_filter", f"running {tcpdump} failed: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        msg = "; ".join(ln.removeprefix("tcpdump: ") for ln in lines)
        raise ConfigError("bpf_filter", msg or f"tcpdump exited with status {proc.returncode}")
    return _parse_ddd(proc.stdout)


def _find_tcpdump() -> str:
    """Path of the tcpdump binary, also looking in the sbin directories PATH may lack."""
    found = shutil.which("tcpdump")
    if found is None:
        found = shutil.which("tcpdump", path=TCPDUMP_FALLBACK_PATH)
    if found is None:
        raise ConfigError(
            "bpf_filter",
            "tcpdump is not installed; it compiles capture filters and must be installed to use "
            "one (Debian/Ubuntu: apt-get install tcpdump), or capture without a filter",
        )
    return found


def _parse_ddd(text: str) -> tuple[BpfInsn, ...]:
    """Parse ``tcpdump -ddd`` output: a count, then ``code jt jf k`` per line."""
    try:
        nums = [int(tok) for tok in text.split()]
    except ValueError:
        nums = []
    if not nums or not 1 <= nums[0] <= BPF_MAXINSNS or len(nums) != 1 + 4 * nums[0]:
        raise ConfigError("bpf_filter", f"unexpected tcpdump -ddd output: {text[:80]!r}")
    prog = tuple((nums[i], nums[i + 1], nums[i + 2], nums[i + 3]) for i in range(1, len(nums), 4))
    for code, jt, jf, k in prog:
        if not (0 <= code < 1 << 16 and 0 <= jt < 256 and 0 <= jf < 256 and 0 <= k < 1 << 32):
            raise ConfigError("bpf_filter", f"instruction out of range in tcpdump output: {code}")
    return prog


def run_bpf(program: Sequence[BpfInsn], data: bytes, wirelen: int) -> int:
    """Run a classic BPF program on one frame in user space, as libpcap's ``bpf_filter`` does.

    Args:
        program: instructions, e.g. from :func:`compile_bpf`.
        data: the captured bytes.
        wirelen: the frame's length on the wire (``len`` and ``BPF_LEN`` loads).

    Returns:
        The program's result: 0 rejects the frame, otherwise the number of bytes to keep. A load
        past the end of ``data``, a division by zero or a malformed instruction also give 0.
    """
    a = x = 0
    mem = [0] * 16
    pc = 0
    n = len(program)
    buflen = len(data)
    mask = 0xFFFFFFFF
    while 0 <= pc < n:
        code, jt, jf, k = program[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x06:  # RET
            rval = code & 0x18
            return k if rval == 0x00 else a if rval == 0x10 else x
        if cls == 0x05:  # JMP
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            v = x if code & 0x08 else k
            if op == 0x10:
                cond = a == v
            elif op == 0x20:
                cond = a > v
            elif op == 0x30:
                cond = a >= v
            elif op == 0x40:
                cond = (a & v) != 0
            else:
                return 0
            pc += jt if cond else jf
        elif cls in (0x00, 0x01):  # LD, LDX
            mode = code & 0xE0
            if mode == 0x00:
                val = k
            elif mode == 0x80:
                val = wirelen & mask
            elif mode == 0x60:
                if k >= 16:
                    return 0
                val = mem[k]
            elif mode == 0xA0 and code == 0xB1:  # LDX MSH: 4 * (P[k] & 0xf)
                if k >= buflen:
                    return 0
                val = (data[k] & 0x0F) << 2
            elif mode in (0x20, 0x40) and cls == 0x00:
                off = (k + x) & mask if mode == 0x40 else k
                size = {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18, 0)
                if size == 0 or off + size > buflen:
                    return 0
                val = int.from_bytes(data[off : off + size], "big")
            else:
                return 0
            if cls == 0x00:
                a = val
            else:
                x = val
        elif cls in (0x02, 0x03):  # ST, STX
            if k >= 16:
                return 0
            mem[k] = a if cls == 0x02 else x
        elif cls == 0x04:  # ALU
            alu = _alu(code & 0xF0, a, x if code & 0x08 else k)
            if alu is None:
                return 0
            a = alu
        elif code & 0xF8 == 0x00:  # TAX
            x = a
        elif code & 0xF8 == 0x80:  # TXA
            a = x
        else:
            return 0
    return 0


def _alu(op: int, a: int, v: int) -> int | None:
    """One BPF ALU operation on 32-bit values; ``None`` for division by zero or a bad op."""
    mask = 0xFFFFFFFF
    if op == 0x00:
        return (a + v) & mask
    if op == 0x10:
        return (a - v) & mask
    if op == 0x20:
        return (a * v) & mask
    if op in (0x30, 0x90):
        if v == 0:
            return None
        return a // v if op == 0x30 else a % v
    if op == 0x40:
        return a | v
    if op == 0x50:
        return a & v
    if op == 0x60:
        return (a << v) & mask if v < 32 else 0
    if op == 0x70:
        return a >> v if v < 32 else 0
    if op == 0x80:
        return -a & mask
    if op == 0xA0:
        return a ^ v
    return None


class _BpfProgram(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p))


class _PktHdr(ctypes.Structure):
    _fields_ = (
        ("tv_sec", ctypes.c_long),
        ("tv_usec", ctypes.c_long),
        ("caplen", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
    )


_libpcap: Any = None
_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_PktHdr), ctypes.c_void_p)
"""``pcap_handler``: libpcap's ``pcap_dump`` is passed as one, so the copy never enters Python."""
_PCAP_TSTAMP_PRECISION_NANO = 1
_PCAP_ERROR = -1


def _load_libpcap() -> Any:
    """libpcap through ctypes, or ``None`` when it is not installed."""
    global _libpcap
    if _libpcap is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            _libpcap = False
            return None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = (
            ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32,
        )  # fmt: skip
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.pcap_offline_filter.argtypes = (
            ctypes.POINTER(_BpfProgram), ctypes.POINTER(_PktHdr), ctypes.c_char_p,
        )  # fmt: skip
        lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgram),)
        lib.pcap_close.argtypes = (ctypes.c_void_p,)
        lib.pcap_open_offline_with_tstamp_precision.restype = ctypes.c_void_p
        lib.pcap_open_offline_with_tstamp_precision.argtypes = (
            ctypes.c_char_p,
            ctypes.c_uint,
            ctypes.c_char_p,
        )
        lib.pcap_setfilter.restype = ctypes.c_int
        lib.pcap_setfilter.argtypes = (ctypes.c_void_p, ctypes.POINTER(_BpfProgram))
        lib.pcap_dump_open.restype = ctypes.c_void_p
        lib.pcap_dump_open.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
        lib.pcap_dump_close.argtypes = (ctypes.c_void_p,)
        lib.pcap_loop.restype = ctypes.c_int
        lib.pcap_loop.argtypes = (ctypes.c_void_p, ctypes.c_int, _HANDLER, ctypes.c_void_p)
        _libpcap = lib
    return _libpcap or None


class PacketFilter:
    """A pcap-filter(7) expression, compiled by libpcap per link type, matched frame by frame.

    Args:
        expr: the expression (``"tcp port 443 and host 10.0.0.1"``).
        snaplen: the snapshot length the program is compiled for.
        use_libpcap: ``False`` runs tcpdump's program in Python (:func:`run_bpf`) even when
            libpcap can be loaded (tests compare both).

    Raises:
        ConfigError: ``bpf_filter``: a blank expression, one libpcap rejects (its message), or
            neither libpcap nor tcpdump available. The expression is compiled for Ethernet at
            once, so a syntax error is reported before any packet is read.
    """

    def __init__(self, expr: str, snaplen: int = SNAPLEN_MAX, *, use_libpcap: bool = True) -> None:
        self.expr = expr.strip()
        if not self.expr:
            raise ConfigError("bpf_filter", "the filter expression is empty")
        self.snaplen = snaplen
        self._lib = _load_libpcap() if use_libpcap else None
        self._programs: dict[int, Any] = {}
        self._handles: list[int] = []
        self._hdr = _PktHdr()
        self._program(int(LinkType.ETHERNET))

    @property
    def engine(self) -> str:
        """``libpcap`` or ``tcpdump+python`` (the fallback)."""
        return "libpcap" if self._lib is not None else "tcpdump+python"

    def _program(self, linktype: int) -> Any:
        prog = self._programs.get(linktype)
        if prog is not None:
            return prog
        if self._lib is None:
            try:
                prog = compile_bpf(self.expr, LinkType(linktype), self.snaplen)
            except ValueError:
                raise ConfigError(
                    "bpf_filter", f"filters are not supported on link type {linktype}"
                ) from None
        else:
            prog = self._compile_libpcap(linktype)
        self._programs[linktype] = prog
        return prog

    def _compile_libpcap(self, linktype: int) -> _BpfProgram:
        lib: Any = self._lib
        handle = lib.pcap_open_dead(_DLT_OF_LINKTYPE.get(linktype, linktype), self.snaplen)
        if not handle:
            raise ConfigError("bpf_filter", f"libpcap cannot open a handle for link type {linktype}")
        self._handles.append(handle)
        prog = _BpfProgram()
        if lib.pcap_compile(handle, ctypes.byref(prog), self.expr.encode(), 1, PCAP_NETMASK_UNKNOWN) != 0:
            msg = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise ConfigError("bpf_filter", f"{self.expr!r}: {msg} (link type {linktype})")
        return prog

    def matches(self, linktype: int, data: bytes, wirelen: int) -> bool:
        """Whether the frame passes the filter (as in ``tcpdump -r``: the program's result is not 0)."""
        prog = self._programs.get(linktype) or self._program(linktype)
        if self._lib is None:
            return run_bpf(prog, data, wirelen) != 0
        hdr = self._hdr
        hdr.caplen = len(data)
        hdr.len = max(wirelen, len(data))
        return bool(self._lib.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), data))

    def close(self) -> None:
        """Free the compiled programs and handles (also done when the filter is collected)."""
        if self._lib is not None:
            for prog in self._programs.values():
                self._lib.pcap_freecode(ctypes.byref(prog))
            for handle in self._handles:
                self._lib.pcap_close(handle)
        self._programs.clear()
        self._handles.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class FilteredSource:
    """The packets of ``source`` that pass ``pfilter`` (streaming; nothing is buffered).

    ``stats`` is the source's own, plus ``filter.rejected`` is not counted as an anomaly: the
    counts are :attr:`packets_read` and :attr:`packets_kept`.
    """

    def __init__(self, source: PacketSource, pfilter: PacketFilter) -> None:
        self.source = source
        self.pfilter = pfilter
        self.stats: SourceStats = source.stats
        self.packets_read = 0
        self.packets_kept = 0

    def progress(self) -> tuple[int, int | None]:
        """Bytes read and total, as the wrapped source reports them."""
        fn = getattr(self.source, "progress", None)
        return fn() if fn is not None else (self.stats.bytes_read, self.stats.bytes_total)

    def __iter__(self) -> Iterator[RawPacket]:
        match = self.pfilter.matches
        for pkt in self.source:
            self.packets_read += 1
            if match(pkt.linktype, pkt.data, pkt.wirelen):
                self.packets_kept += 1
                yield pkt

    def close(self) -> None:
        """Close the wrapped source."""
        self.source.close()


@dataclass
class FilterReport:
    """What filtering one capture file kept."""

    path: str
    """The capture as given."""
    filtered_path: str
    """The temporary pcapng file with the packets that passed."""
    packets_read: int | None = 0
    """Packets in the capture (None: libpcap copied the file and did not count them)."""
    packets_kept: int | None = 0
    """Packets that passed the filter (None: not counted, as :attr:`packets_read`)."""
    engine: str = "sluice"
    """``libpcap`` (the file read, filtered and written by libpcap, as ``tcpdump -r -w`` does) or
    ``sluice`` (sluice's reader: gzip, standard input, a file libpcap refuses or stops in)."""

    def kept_text(self) -> str:
        """``"7 of 12 packets passed"`` (or what is known of it)."""
        if self.packets_kept is None:
            return "packets selected by libpcap (as tcpdump -r FILE EXPR -w)"
        return f"{self.packets_kept:,} of {self.packets_read or 0:,} packets passed"

    anomalies: dict[str, int] = field(default_factory=dict)
    """What reading the capture counted (a truncated record ...); the copy itself is clean."""


def _copy_with_libpcap(path: str, dest: str, pfilter: PacketFilter) -> FilterReport | None:
    """``tcpdump -r path -w dest expr`` through libpcap (``pcap_loop`` calling ``pcap_dump``, in C):
    the matching records copied as they are (nanosecond timestamps kept). None when libpcap cannot
    read the whole file (gzip, a pcapng file with several link types, damage): the caller then
    filters with sluice's reader, which reads past damage and counts it.

    Raises:
        ConfigError: ``bpf_filter``: the expression does not apply to the file's link type.
    """
    lib: Any = pfilter._lib
    if lib is None or path in ("-", "/dev/stdin") or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            return None
    err = ctypes.create_string_buffer(512)
    handle = lib.pcap_open_offline_with_tstamp_precision(path.encode(), _PCAP_TSTAMP_PRECISION_NANO, err)
    if not handle:
        return None
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), pfilter.expr.encode(), 1, PCAP_NETMASK_UNKNOWN) != 0:
            msg = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise ConfigError("bpf_filter", f"{pfilter.expr!r}: {msg} ({os.path.basename(path)})")
        try:
            ok = lib.pcap_setfilter(handle, prog) == 0
            dumper = lib.pcap_dump_open(handle, dest.encode()) if ok else None
            if not dumper:
                return None
            rc = lib.pcap_loop(handle, -1, ctypes.cast(lib.pcap_dump, _HANDLER), dumper)
            lib.pcap_dump_close(dumper)
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)
    if rc == _PCAP_ERROR:
        return None
    return FilterReport(path, dest, None, None, engine="libpcap")


def _copy_filtered(path: str, dest: str, pfilter: PacketFilter, limits: ReadLimits | None) -> FilterReport:
    fast = _copy_with_libpcap(path, dest, pfilter)
    if fast is not None:
        return fast
    from sluice.io.capture import open_capture
    from sluice.io.pcap_writer import PcapngWriter

    report = FilterReport(path, dest)
    ifaces: dict[tuple[int, int], int] = {}
    with open_capture(path, limits) as reader, open(dest, "wb") as fh:
        writer = PcapngWriter(fh, userappl=f"sluice (filter: {pfilter.expr})")
        src = FilteredSource(reader, pfilter)
        for pkt in src:
            key = (pkt.linktype, pkt.interface)
            iface = ifaces.get(key)
            if iface is None:
                iface = ifaces[key] = writer.add_interface(pkt.linktype, tsresol_exp=9, snaplen=0)
            writer.write(iface, pkt.ts, pkt.data, max(pkt.wirelen, len(pkt.data)))
        writer.flush()
        report.packets_read, report.packets_kept = src.packets_read, src.packets_kept
        report.anomalies = dict(reader.stats.anomalies)
    return report


@contextlib.contextmanager
def filtered_captures(
    paths: Sequence[str], expr: str | PacketFilter, limits: ReadLimits | None = None
) -> Iterator[list[FilterReport]]:
    """Copies of capture files with only the packets that pass ``expr``, removed on exit.

    Each copy has the capture's base name (``-`` becomes ``stdin``), in its own temporary
    directory, so commands that name captures by base name name them as before. Flow ids count
    the packets that passed, as they would in ``tcpdump -r FILE EXPR -w OUT``. libpcap makes the
    copy when it can read the whole file (a pcap file with the records as they were); otherwise
    sluice's reader does (a pcapng file; gzip, standard input, several link types, damage).

    Raises:
        ConfigError: ``bpf_filter``: the expression is rejected (before any file is read).
        CaptureError: a capture cannot be read.
    """
    pfilter = expr if isinstance(expr, PacketFilter) else PacketFilter(expr)
    with tempfile.TemporaryDirectory(prefix="sluice-filter-") as tmp:
        reports = []
        for i, path in enumerate(paths):
            sub = os.path.join(tmp, str(i))
            os.mkdir(sub)
            name = "stdin" if path in ("-", "/dev/stdin") else os.path.basename(path)
            reports.append(_copy_filtered(path, os.path.join(sub, name), pfilter, limits))
        yield reports
