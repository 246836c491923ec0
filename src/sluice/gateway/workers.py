"""Several gateway processes, one NFQUEUE each: forked workers under a supervising parent.

Theory of operation: one Python process decides ~600-1,600 new connections/s (see
``BENCHMARKS.md``); the kernel can spread the queued packets over ``W`` queues
(``--queue-balance``, :class:`~sluice.gateway.rules.RuleSet.queues`), hashing the addresses so
that both directions of a connection reach the same queue. :func:`supervise` forks ``W``
workers *after* the parent loaded the policy, the register and the model (they share those
pages copy-on-write; the parent starts no thread before forking, and LightGBM's single-row
predictions run on one thread, so the fork leaves no OpenMP team half-alive in a worker). Each
worker runs ``serve(index, ready)``: it binds queue ``first + index``, calls ``ready()`` once
bound, and returns its counters when SIGTERM stops it.

The parent only supervises, over one pipe per worker (lines ``ready`` and ``stats {json}``):

* it reports ready when every worker is;
* SIGHUP is forwarded to every worker that is ready (to the others once they are); each worker
  reloads on its own thread, and polls the register on its own;
* SIGTERM/SIGINT are forwarded as SIGTERM; a worker that has not stopped after
  :data:`STOP_TIMEOUT_S` is killed;
* a worker that exits while it should run is reported; the parent then stops the others and
  exits non-zero (the supervisor, e.g. systemd, restarts the whole gateway with fresh policy and
  register - a lone restarted worker would decide with what the parent loaded at start);
* workers get SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), so none outlives it.
"""

from __future__ import annotations

__all__ = ["STOP_TIMEOUT_S", "WorkerReport", "sum_stats", "supervise"]

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STOP_TIMEOUT_S = 30.0
"""Seconds a worker has to stop after SIGTERM before it is killed."""
_PR_SET_PDEATHSIG = 1


@dataclass
class WorkerReport:
    """What became of one worker."""

    index: int
    """Its number (it served queue ``first + index``)."""
    pid: int
    """Its process id."""
    ready: bool = False
    """It bound its queue."""
    exit_code: int | None = None
    """Its exit code (negative: killed by that signal); None while it runs."""
    stats: dict[str, Any] | None = None
    """Its counters (None when it died without sending them)."""
    metrics: dict[str, Any] | None = None
    """Its newest metrics snapshot (lines ``metrics {json}``; None: none sent)."""
    fd: int = -1
    buf: bytes = field(default=b"", repr=False)


def sum_stats(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counters of several engines (``GatewayStats.to_dict``) added up, keys in the same format."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                acc = out.setdefault(key, {})
                for k, v in value.items():
                    acc[k] = acc.get(k, 0) + v
            elif isinstance(value, float):
                out[key] = round(out.get(key, 0.0) + value, 3)
            else:
                out[key] = out.get(key, 0) + value
    for key, value in out.items():
        if isinstance(value, dict):
            out[key] = dict(sorted(value.items()))
    return out


def _child(index: int, wfd: int, others: list[int], serve: Callable[[int, Callable[[], None]], Any]) -> None:
    """The worker side of the fork; never returns."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stopped before serving: just go
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent forwards it once we are ready
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        for fd in others:
            os.close(fd)
        out = os.fdopen(wfd, "w", buffering=1)
        ready = _Channel(out)
        stats = serve(index, ready)
        ready.line("stats " + json.dumps(stats))
        out.close()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class _Channel:
    """A worker's pipe to the parent: calling it says ``ready``; :meth:`metrics` sends a snapshot.

    Lines are written whole under a lock (the metrics come from another thread).
    """

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self) -> None:
        self.line("ready")

    def metrics(self, snapshot: Mapping[str, Any]) -> None:
        """Send a metrics snapshot (see :meth:`sluice.gateway.metrics.GatewayMonitor.snapshot`)."""
        self.line("metrics " + json.dumps(snapshot))

    def line(self, text: str) -> None:
        """Write one line."""
        with self._lock:
            self._out.write(text + "\n")


@dataclass
class _Flags:
    stop: bool = False
    hup: bool = False


def supervise(
    workers: int,
    serve: Callable[[int, Callable[[], None]], Any],
    *,
    on_ready: Callable[[], None],
    on_hup: Callable[[], None] | None = None,
    report: Callable[[str], None],
    describe: Callable[[int], str] = lambda i: f"worker {i}",
    forked: Callable[[list[WorkerReport]], None] | None = None,
) -> tuple[int, list[WorkerReport]]:
    """Fork ``workers`` processes running ``serve`` and supervise them until SIGTERM/SIGINT.

    Args:
        workers: how many.
        serve: runs in worker ``i`` (see the module docstring); what it returns (JSON-friendly)
            is the worker's ``stats``. ``sys.exit(code)`` in it is the worker's exit code.
        on_ready: called (in the parent) once every worker is ready.
        on_hup: called in the parent after a SIGHUP was forwarded (e.g. to re-install the shaper).
        report: where the parent's messages go.
        describe: how a worker is named in messages.
        forked: called (in the parent) with the workers once all are forked; their reports'
            ``metrics`` and ``ready`` change as the workers send them (e.g. for a metrics
            endpoint: the parent starts no thread before forking).

    Returns:
        The exit code (0: stopped by a signal and every worker stopped cleanly; else the first
        failed worker's code, 3 when it was killed or exited 0 on its own) and the workers.
    """
    flags = _Flags()

    def on_term(*_: object) -> None:
        flags.stop = True

    def on_sighup(*_: object) -> None:
        flags.hup = True

    handlers = ((signal.SIGTERM, on_term), (signal.SIGINT, on_term), (signal.SIGHUP, on_sighup))
    old = {s: signal.signal(s, h) for s, h in handlers}
    reports: list[WorkerReport] = []
    try:
        for i in range(workers):
            rfd, wfd = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker, measured by the end-to-end tests
                os.close(rfd)
                _child(i, wfd, [r.fd for r in reports], serve)
            os.close(wfd)
            reports.append(WorkerReport(i, pid, fd=rfd))
        if forked is not None:
            forked(reports)
        return _watch(reports, flags, on_ready, on_hup, report, describe), reports
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for r in reports:
            if r.fd >= 0:
                os.close(r.fd)
                r.fd = -1


def _watch(
    reports: list[WorkerReport],
    flags: _Flags,
    on_ready: Callable[[], None],
    on_hup: Callable[[], None] | None,
    report: Callable[[str], None],
    describe: Callable[[int], str],
) -> int:
    """The parent's loop: read the pipes, forward signals, reap; the exit code."""
    announced = stopping = False
    deadline = 0.0
    code = 0
    hup_pending: set[int] = set()
    while any(r.exit_code is None or r.fd >= 0 for r in reports):
        if flags.stop and not stopping:
            stopping, deadline = True, time.monotonic() + STOP_TIMEOUT_S
            _signal_all(reports, signal.SIGTERM)
        if stopping and time.monotonic() > deadline:
            _signal_all(reports, signal.SIGKILL)
        if flags.hup:
            flags.hup = False
            hup_pending = {r.pid for r in reports if r.exit_code is None}
            if on_hup is not None and not stopping:
                on_hup()
        for r in reports:
            if r.pid in hup_pending and r.ready and r.exit_code is None:
                hup_pending.discard(r.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(r.pid, signal.SIGHUP)
        fds = [r.fd for r in reports if r.fd >= 0]
        readable = select.select(fds, [], [], 0.2)[0] if fds else []
        if not fds:
            time.sleep(0.2)
        for r in reports:
            if r.fd in readable:
                _read(r)
        if not announced and all(r.ready for r in reports):
            announced = True
            on_ready()
        for r in reports:
            if r.exit_code is not None:
                continue
            try:
                pid, status = os.waitpid(r.pid, os.WNOHANG)  # ours only: never reap a tc or iptables
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                pid, status = r.pid, 255 << 8
            if pid == 0:
                continue
            r.exit_code = os.waitstatus_to_exitcode(status)
            if r.fd >= 0:
                _read(r, to_end=True)
            clean = stopping and (r.exit_code == 0 or r.exit_code == -signal.SIGTERM)
            if not clean:
                how = f"killed by signal {-r.exit_code}" if r.exit_code < 0 else f"exit code {r.exit_code}"
                report(f"sluice gateway: {describe(r.index)} (pid {pid}) ended: {how}; stopping the others")
                if code == 0:
                    code = r.exit_code if r.exit_code > 0 else 3
                flags.stop = True
    return code


def _signal_all(reports: list[WorkerReport], sig: int) -> None:
    for r in reports:
        if r.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(r.pid, sig)


def _read(r: WorkerReport, *, to_end: bool = False) -> None:
    while True:
        try:
            data = os.read(r.fd, 65536)
        except BlockingIOError:  # pragma: no cover - the pipe is blocking
            return
        if data:
            r.buf += data
            *lines, r.buf = r.buf.split(b"\n")
            for line in lines:
                if line == b"ready":
                    r.ready = True
                elif line.startswith(b"stats "):
                    r.stats = json.loads(line[6:])
                elif line.startswith(b"metrics "):
                    r.metrics = json.loads(line[8:])
        else:
            os.close(r.fd)
            r.fd = -1
            return
        if not to_end:
            return
