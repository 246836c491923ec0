"""Policy and register updates for a running gateway, loaded off the packet path.

Theory of operation: building a register matcher takes seconds for a million entries, and the
gateway must not stall packets meanwhile (fail-closed would drop them). A :class:`Reloader`
thread does the loading: on :meth:`Reloader.request` (the gateway's SIGHUP) it re-reads the
policy and the register; every ``poll_s`` seconds it asks the register for its revision (the
newest import) and re-reads the register when that changed, so ``sluice registry import`` while
the gateway runs takes effect without a signal. What loaded is handed over by
:meth:`Reloader.apply`, which the packet loop calls between packets: connections already
decided keep their conntrack mark, new ones get the new decision. What does not load is
refused with a message and the old policy or register is kept.

The thread never dies for good: any failure of a load or of a revision check — a policy file
the loader refuses, or an exception nobody expected (a deeply nested TOML file raising
``RecursionError``, a database driver's own error) — is reported, counted (:attr:`Reloader.refused`,
:attr:`Reloader.errors`, the engine's ``reload_failures``), the last good state is kept, and the
next request or register change is loaded as usual.

Push: :meth:`Reloader.push` (called by :class:`~sluice.registry.notify.RegisterListener` on a
PostgreSQL notification) wakes the thread for a revision check at once instead of at the next
poll; the poll stays as the fallback. The register may also come from a signed snapshot
(:mod:`sluice.registry.snapshot`): its "revision" is then the file's identity, and a snapshot
that does not verify is refused like any other load.
"""

from __future__ import annotations

__all__ = ["Reloader"]

import threading
import time
import traceback
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from sluice.errors import SluiceError
from sluice.gateway.shaper import throttle_classes

if TYPE_CHECKING:
    from sluice.decide.register import RegisterLookup
    from sluice.gateway.engine import GatewayEngine
    from sluice.policy.model import Policy
    from sluice.registry.matcher import Matcher

    Register = RegisterLookup | Matcher


class Reloader:
    """Loads a new policy and register in a thread; the packet loop applies them.

    Args:
        load_policy: reads the policy file.
        load_matcher: builds the register's lookup (None: no register).
        revision: the register's current revision, cheap to ask (None: do not poll).
        poll_s: how often to ask for the revision.
        report: where messages go (one line each).
    """

    def __init__(
        self,
        load_policy: Callable[[], Policy],
        load_matcher: Callable[[], Register] | None = None,
        revision: Callable[[], Hashable] | None = None,
        *,
        poll_s: float = 2.0,
        report: Callable[[str], None] = print,
    ) -> None:
        self._load_policy = load_policy
        self._load_matcher = load_matcher
        self._revision = revision
        self.poll_s = poll_s
        self._report = report
        self._wake = threading.Event()
        self._asked = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready: tuple[Policy | None, Register | None, str] | None = None
        self._thread: threading.Thread | None = None
        self._seen: Hashable = self._current_revision()
        self._refused: Hashable = None
        self.loads = 0
        """Successful loads handed over so far."""
        self.refused = 0
        """Loads refused (the old policy or register was kept)."""
        self.errors = 0
        """Loads or revision checks that failed with an unexpected exception (state kept)."""
        self.pushes = 0
        """Wake-ups by :meth:`push`."""
        self.last_error: str | None = None
        """Why the last load or revision check failed; None once one succeeds (or none failed)."""

    def start(self) -> None:
        """Start the loader thread (a daemon)."""
        self._thread = threading.Thread(target=self._run, name="sluice-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loader thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def request(self) -> None:
        """Re-read the policy and the register soon (safe in a signal handler)."""
        self._asked.set()
        self._wake.set()

    def push(self) -> None:
        """Check the register's revision now (a change was announced); the policy is not re-read."""
        self.pushes += 1
        self._wake.set()

    def apply(self, engine: GatewayEngine) -> bool:
        """Give the engine what was loaded since the last call; True when something was.

        Also brings the engine's ``reload_failures`` counter up to date.
        """
        failures = self.refused + self.errors
        if engine.stats.reload_failures != failures:
            engine.stats.reload_failures = failures
        if self._ready is None:
            return False
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is None:
            return False
        policy, matcher, what = ready
        engine.reload(policy, matcher)
        self._report(f"sluice gateway: reloaded {what}")
        return True

    def _current_revision(self) -> Hashable:
        if self._revision is None:
            return None
        try:
            return self._revision()
        except (SluiceError, OSError) as exc:
            self._report(f"sluice gateway: cannot read the register's revision: {exc}")
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s if self._revision is not None else None)
            if self._stop.is_set():
                return
            self._wake.clear()
            asked = self._asked.is_set()
            self._asked.clear()
            try:
                self._once(asked)
            except Exception as exc:  # the thread must outlive any failure: keep the last good state
                self.errors += 1
                self.last_error = repr(exc)
                self._report(f"sluice gateway: reload failed, keeping the old policy and register: {exc!r}")
                if self.errors <= 10:
                    self._report(traceback.format_exc().rstrip())

    def _once(self, asked: bool) -> None:
        """One wake-up: check the revision, load what changed or was asked for."""
        rev = self._current_revision()
        # a revision that was refused is not tried again until it changes (or SIGHUP asks)
        changed = rev is not None and rev != self._seen and rev != self._refused
        if asked or changed:
            self._load(policy=asked, revision=rev)

    def _load(self, *, policy: bool, revision: Hashable) -> None:
        t0 = time.monotonic()
        try:
            new_policy = self._load_policy() if policy else None
            if new_policy is not None:
                throttle_classes(new_policy)  # a policy the shaper cannot express is refused here
            new_matcher = self._load_matcher() if self._load_matcher is not None else None
        except (SluiceError, OSError) as exc:
            self.refused += 1
            self.last_error = str(exc)
            self._refused = revision
            self._report(f"sluice gateway: reload refused, keeping the old policy and register: {exc}")
            return
        self._seen = revision
        self.last_error = None
        with self._lock:
            if self._ready is not None and new_policy is None:  # not applied yet: keep its policy
                new_policy = self._ready[0]
            parts = []
            if new_policy is not None:
                parts.append(f"policy {new_policy.digest}")
            if new_matcher is not None:
                parts.append(f"register ({len(new_matcher)} entries)")
            self._ready = (new_policy, new_matcher, ", ".join(parts) or "nothing")
        self.loads += 1
        if new_matcher is not None and not policy:  # a register change: say when it is ready
            self._report(
                f"sluice gateway: loaded register ({len(new_matcher)} entries) in "
                f"{time.monotonic() - t0:.3f} s, applied from the next packet"
            )
