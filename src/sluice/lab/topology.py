"""Client / gateway / server network namespaces, and the processes run inside them.

Theory of operation::

    <id>-c  c0 client_ip ──veth── g0 gw_client_ip  <id>-g  g1 gw_server_ip ──veth── s0 server_ip  <id>-s

The gateway forwards between its two subnets and has no other route, the client and the server
route everything to the gateway: nothing can leave the lab.  Namespace names carry the pid of the
process that made them and a counter (``sluice-<pid>-<n>-c``), so topologies of parallel sessions
never collide and :func:`clean_stale` can remove those whose owner died.  Every topology that is up
is listed in a module registry; :func:`teardown_all` (called on Ctrl-C and SIGTERM) takes them all
down.  Processes are started in their own process group and logged to ``<workdir>/<name>.log``;
:meth:`Topology.down` stops them, kills whatever else still runs in the namespaces and deletes them.
"""

from __future__ import annotations

__all__ = [
    "ROLES",
    "Addressing",
    "LabError",
    "Proc",
    "Role",
    "Topology",
    "active_topologies",
    "clean_stale",
    "teardown_all",
]

import contextlib
import ipaddress
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from sluice.errors import SluiceError

Role = Literal["client", "gateway", "server"]
ROLES: tuple[Role, ...] = ("client", "gateway", "server")
NETNS_DIR = Path("/run/netns")
STOP_GRACE_S = 1.5
"""Seconds a process gets between SIGTERM and SIGKILL."""
_NAME_RE = re.compile(r"^sluice-(\d+)-\d+-[cgs]$")
_SERVER_NETS = ("192.0.2", "198.51.100", "203.0.113")
LOSS_COUNTERS = ("enobufs", "errors", "queue_dropped", "user_dropped")
"""Counters of the delay relay's stats file that must stay 0."""
DELAY_QUEUE = 4207
"""NFQUEUE number of the delay relay (queues are per network namespace)."""


class LabError(SluiceError):
    """A lab step that failed; ``reason`` is a stable dotted code (``lab.port_timeout``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class Addressing:
    """IPv4 addresses of one topology (all /24)."""

    client_ip: str
    """Client address on c0."""
    gw_client_ip: str
    """Gateway address on the client side (g0)."""
    gw_server_ip: str
    """Gateway address on the server side (g1)."""
    server_ip: str
    """Server address on s0."""
    inner_prefix: str
    """First three octets of a /24 free for tunnel inner addresses (``10.37.4``)."""

    def inner(self, host: int) -> str:
        """Address ``host`` of the free inner /24."""
        return f"{self.inner_prefix}.{host}"

    @classmethod
    def default(cls) -> Addressing:
        """Fixed addresses (the recipes' 10.200.1.0/24 and 10.200.2.0/24)."""
        return cls("10.200.1.2", "10.200.1.1", "10.200.2.1", "10.200.2.2", "10.8.0")

    @classmethod
    def random(cls, rng: random.Random) -> Addressing:
        """Random private client LAN, documentation-range or private server net, free inner net."""
        c = f"192.168.{rng.randrange(1, 255)}"
        if rng.random() < 0.6:
            s = rng.choice(_SERVER_NETS)
        else:
            s = f"172.{rng.randrange(16, 32)}.{rng.randrange(0, 256)}"
        gw_c, gw_s = rng.choice((1, 254)), rng.choice((1, 254))
        cli = rng.choice([h for h in range(2, 254) if h != gw_c])
        srv = rng.choice([h for h in range(2, 254) if h != gw_s])
        inner = f"10.{rng.randrange(1, 255)}.{rng.randrange(0, 256)}"
        return cls(f"{c}.{cli}", f"{c}.{gw_c}", f"{s}.{gw_s}", f"{s}.{srv}", inner)


@dataclass(slots=True)
class Proc:
    """A background process of a topology."""

    name: str
    """Short name; its output is in ``log``."""
    popen: subprocess.Popen[bytes]
    """The process (leader of its own process group)."""
    log: Path
    """File with its stdout and stderr."""

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S, sig: int = signal.SIGTERM) -> None:
        """Signal the process group, then kill it after ``grace_s`` seconds."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


_counter = itertools.count(1)
_active: dict[str, Topology] = {}
_active_lock = threading.Lock()


def active_topologies() -> list[Topology]:
    """Topologies that are up in this process."""
    with _active_lock:
        return list(_active.values())


def teardown_all() -> int:
    """Take down every topology that is up in this process; returns how many."""
    topos = active_topologies()
    for t in topos:
        t.down()
    return len(topos)


def _ns_pids(ns: str) -> list[int]:
    """Pids of processes in namespace ``ns``."""
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def _kill_ns(names: Sequence[str]) -> None:
    """Kill what still runs in the namespaces ``names`` and delete them."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for n in names for p in _ns_pids(n)]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and any(_ns_pids(n) for n in names):
            time.sleep(0.05)
    for n in names:
        subprocess.run(["ip", "netns", "del", n], capture_output=True, check=False)


def clean_stale() -> list[str]:
    """Delete ``sluice-<pid>-…`` namespaces whose creating process is gone.

    Returns:
        Names of the namespaces removed.
    """
    if not NETNS_DIR.is_dir():
        return []
    stale = []
    for entry in sorted(NETNS_DIR.iterdir()):
        m = _NAME_RE.match(entry.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            stale.append(entry.name)
    _kill_ns(stale)
    return stale


class Topology:
    """Three namespaces joined by two veth pairs; a context manager that always tears down.

    Args:
        workdir: directory for logs, configs and keys of this topology.
        addressing: addresses to use (random per session in the runner).
    """

    def __init__(self, workdir: Path, addressing: Addressing | None = None) -> None:
        self.id = f"sluice-{os.getpid()}-{next(_counter)}"
        self.addr = addressing or Addressing.default()
        self.workdir = workdir
        self.ns: dict[Role, str] = {r: f"{self.id}-{r[0]}" for r in ROLES}
        self.procs: list[Proc] = []
        self._cleanups: list[Callable[[], None]] = []
        self._down = False
        self._lock = threading.Lock()
        self._delay: Proc | None = None

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> Topology:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self) -> None:
        """Create the namespaces, links, addresses and routes.

        Raises:
            LabError: a step failed (everything made so far is removed again).
        """
        with _active_lock:
            _active[self.id] = self
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def _build(self) -> None:
        a = self.addr
        c, g, s = self.ns["client"], self.ns["gateway"], self.ns["server"]
        for n in (c, g, s):
            self._ip("netns", "add", n)
            self._ip("-n", n, "link", "set", "lo", "up")
            self.run_in(n, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            self.run_in(n, ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
        self._ip("link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "g0", "netns", g)
        self._ip("link", "add", "g1", "netns", g, "type", "veth", "peer", "name", "s0", "netns", s)
        for ns, dev, ip in (
            (c, "c0", a.client_ip),
            (g, "g0", a.gw_client_ip),
            (g, "g1", a.gw_server_ip),
            (s, "s0", a.server_ip),
        ):
            self._ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            self._ip("-n", ns, "link", "set", dev, "up")
            # without this, veth hands tcpdump >MTU "super packets"
            self.run_in(
                ns,
                ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off"],
                check=False,
            )
        self._ip("-n", c, "route", "add", "default", "via", a.gw_client_ip)
        self._ip("-n", s, "route", "add", "default", "via", a.gw_server_ip)
        self.run_in(g, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        self.check_sealed()

    def check_sealed(self) -> None:
        """Prove the gateway has no route out of the lab.

        Raises:
            LabError: the gateway has a default route or a route beyond its two subnets.
        """
        r = self.run("gateway", ["ip", "-4", "route", "show", "table", "all"], check=True)
        nets = {
            ipaddress.ip_network(f"{ip}/24", strict=False)
            for ip in (self.addr.gw_client_ip, self.addr.gw_server_ip)
        }
        for line in r.stdout.splitlines():
            words = line.split()
            if not words or words[0] in ("local", "broadcast", "multicast"):
                continue
            if words[0] == "default" or ipaddress.ip_network(words[0], strict=False) not in nets:
                raise LabError("lab.route_out", f"gateway route {line!r}")

    def down(self) -> None:
        """Stop every process and delete the namespaces (idempotent, thread-safe)."""
        with self._lock:
            if self._down:
                return
            self._down = True
        for p in reversed(self.procs):
            p.stop()
        _kill_ns(list(self.ns.values()))
        for fn in reversed(self._cleanups):
            with contextlib.suppress(OSError):
                fn()
        with _active_lock:
            _active.pop(self.id, None)

    def on_down(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` after the namespaces are gone (remove files outside the work directory)."""
        self._cleanups.append(fn)

    @property
    def tag(self) -> str:
        """Short unique tag of this topology for names that live outside the namespaces."""
        pid, n = self.id.split("-")[1:3]
        return f"{int(pid):x}{int(n):x}"[-10:]

    # -- running things ---------------------------------------------------------------------
    def _ip(self, *args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise LabError("lab.ip_failed", f"ip {' '.join(args)}: {r.stderr.strip()}")

    def argv(self, role: Role, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside the namespace of ``role``."""
        return ["ip", "netns", "exec", self.ns[role], *argv]

    def run_in(
        self, ns: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in namespace ``ns`` and wait for it."""
        r = subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise LabError(
                "lab.command_failed",
                f"{' '.join(argv)} (rc {r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}",
            )
        return r

    def run(
        self,
        role: Role,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the namespace of ``role`` and wait for it.

        Raises:
            LabError: ``check`` is set and the command failed or timed out.
        """
        if self._down:
            raise LabError("lab.torn_down", self.id)
        try:
            r = subprocess.run(
                self.argv(role, argv),
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
                input=input,
                env=None if env is None else {**os.environ, **env},
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError("lab.command_timeout", f"{' '.join(argv)} after {timeout}s") from exc
        if check and r.returncode != 0:
            raise LabError(
                "lab.command_failed",
                f"{' '.join(argv)} (rc {r.returncode}): {(r.stderr or r.stdout).strip()[-400:]}",
            )
        return r

    def log_path(self, name: str) -> Path:
        """Log file of the process called ``name``."""
        return self.workdir / f"{name}.log"

    def spawn(
        self,
        role: Role,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin_pipe: bool = False,
    ) -> Proc:
        """Start ``argv`` in the background in the namespace of ``role``.

        ``stdin_pipe`` keeps a pipe open on its stdin (for programs that stop at EOF).
        """
        if self._down:
            raise LabError("lab.torn_down", self.id)
        log = self.log_path(name)
        fh: IO[bytes]
        with open(log, "wb") as fh:
            popen = subprocess.Popen(
                self.argv(role, argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                env=None if env is None else {**os.environ, **env},
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def wait_port(
        self, role: Role, port: int, proto: Literal["tcp", "udp"] = "tcp", timeout: float = 10
    ) -> None:
        """Wait until something listens on ``port`` in the namespace of ``role``.

        Raises:
            LabError: nothing listens after ``timeout`` seconds.
        """
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        pat = re.compile(rf":{port}\s")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run(role, ["ss", flag], check=False)
            if pat.search(r.stdout + " "):
                return
            time.sleep(0.05)
        raise LabError("lab.port_timeout", f"{proto}/{port} in {role} after {timeout}s")

    def wait_log(self, name: str, pattern: str, timeout: float = 10) -> re.Match[str]:
        """Wait until the log of process ``name`` matches ``pattern``.

        Raises:
            LabError: no match after ``timeout`` seconds (the log tail is in the detail).
        """
        rx = re.compile(pattern)
        log = self.log_path(name)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                text = log.read_text(errors="replace")
            m = rx.search(text)
            if m:
                return m
            time.sleep(0.05)
        raise LabError("lab.log_timeout", f"{name}: no /{pattern}/ in {timeout}s: {text[-300:]!r}")

    def shape(self, rate_kbit: int) -> None:
        """Limit both directions through the gateway to ``rate_kbit`` with a token bucket."""
        burst = max(rate_kbit // 8, 16)
        for dev in ("g0", "g1"):
            self.run(
                "gateway",
                [
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    f"{rate_kbit}kbit",
                    "burst",
                    f"{burst}kb",
                    "latency",
                    "80ms",
                ],
            )

    def delay(self, c2s_ms: float, s2c_ms: float, jitter_ms: float = 0.0, *, seed: int = 0) -> None:
        """Delay forwarded packets: ``c2s_ms`` client→server, ``s2c_ms`` server→client.

        Starts :mod:`sluice.lab.delay` in the gateway and queues every forwarded packet to it
        (no ``--queue-bypass``: while the relay is not bound, forwarded packets are dropped, never
        passed undelayed).  A tap on g0 sees server answers ``c2s_ms + s2c_ms`` after the
        request.  Call :meth:`check_delay` before trusting a session.

        Raises:
            LabError: the relay did not come up, or a delay is already set.
        """
        if self._delay is not None:
            raise LabError("lab.delay_twice", self.id)
        argv = [
            sys.executable,
            "-m",
            "sluice.lab.delay",
            "--queue",
            str(DELAY_QUEUE),
            "--c2s-ms",
            f"{c2s_ms:g}",
            "--s2c-ms",
            f"{s2c_ms:g}",
            "--jitter-ms",
            f"{jitter_ms:g}",
            "--seed",
            str(seed),
            "--stats",
            str(self.workdir / "delay-stats.json"),
        ]
        self._delay = self.spawn("gateway", "delay", argv)
        try:
            self.wait_log("delay", r"(?m)^ready ", timeout=15)
        except LabError as exc:
            raise LabError("lab.delay_failed", str(exc)) from exc
        self.run(
            "gateway",
            ["iptables", "-w", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", str(DELAY_QUEUE)],
        )

    def delay_stats(self) -> dict[str, int | float | bool]:
        """Last counters the delay relay wrote (empty when there is no relay or no file yet)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            doc = json.loads((self.workdir / "delay-stats.json").read_text())
            if isinstance(doc, dict):
                return doc
        return {}

    def check_delay(self) -> None:
        """Fail unless the delay relay (if any) still runs and has lost no packet.

        Raises:
            LabError: ``lab.delay_died`` or ``lab.delay_lost``.
        """
        if self._delay is None:
            return
        if not self._delay.alive():
            tail = self._delay.log.read_text(errors="replace")[-300:]
            raise LabError(
                "lab.delay_died", f"delay relay exited (rc {self._delay.popen.returncode}): {tail!r}"
            )
        st = self.delay_stats()
        if any(st.get(k) for k in LOSS_COUNTERS):
            raise LabError("lab.delay_lost", f"delay relay lost packets: {st}")
