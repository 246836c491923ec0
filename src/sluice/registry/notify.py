"""Push of register changes to gateways: PostgreSQL ``LISTEN``/``NOTIFY``.

Theory of operation: a trigger on the ``imports`` table (:data:`INSTALL_SQL`, installed by
:class:`~sluice.registry.stores.postgres.PostgresStore` when it opens the database) sends
``NOTIFY sluice_register, '<import id>'`` for every import row. Every sync writes one — a
``sluice registry import`` and a reviewer's accept alike — and PostgreSQL delivers the
notification only when the sync's transaction commits, so a listener that wakes up reads a
register that already holds the change. :class:`RegisterListener` is the gateway's side: one
connection in ``LISTEN``, a daemon thread calling ``on_change`` per notification. Notifications
are not queued for a listener that is not connected, so after every (re)connection it calls
``on_change`` once too (something may have changed while it was away); the gateway's polling of
the register's revision stays as the fallback when the connection is down.
"""

from __future__ import annotations

__all__ = ["CHANNEL", "INSTALL_SQL", "RegisterListener", "install"]

import threading
from collections.abc import Callable
from typing import Any

CHANNEL = "sluice_register"
"""The notification channel (payload: the new import id)."""

INSTALL_SQL = (
    f"""CREATE OR REPLACE FUNCTION sluice_register_notify() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('{CHANNEL}', NEW.id::text); RETURN NEW; END; $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS imports_notify ON imports",
    """CREATE TRIGGER imports_notify AFTER INSERT ON imports
  FOR EACH ROW EXECUTE FUNCTION sluice_register_notify()""",
)
"""Statements that make every new import row notify :data:`CHANNEL` (idempotent)."""


def install(cur: Any) -> None:
    """Run :data:`INSTALL_SQL` on a psycopg cursor unless the trigger is there (no DDL lock then).

    Runs inside the caller's transaction; a store opened while an import runs must not wait for
    the lock ``CREATE TRIGGER`` takes on ``imports``.
    """
    cur.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'imports_notify' AND NOT tgisinternal")
    if cur.fetchone() is not None:
        return
    for stmt in INSTALL_SQL:
        cur.execute(stmt)


class RegisterListener:
    """``LISTEN`` on the register's channel in a daemon thread.

    Args:
        url: the register's ``postgresql://`` URL.
        on_change: called with the import id (``None`` after a (re)connection) in the thread.
        report: where messages go (one line each).
        retry_s: seconds between reconnection attempts.
    """

    def __init__(
        self,
        url: str,
        on_change: Callable[[int | None], None],
        *,
        report: Callable[[str], None] = print,
        retry_s: float = 2.0,
    ) -> None:
        self.url = url
        self.on_change = on_change
        self.report = report
        self.retry_s = retry_s
        self.notifications = 0
        """Notifications received."""
        self.connected = threading.Event()
        """Set while the listening connection is up."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening (returns at once; see :attr:`connected`)."""
        self._thread = threading.Thread(target=self._run, name="sluice-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (within about a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        import psycopg

        down_reported = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    down_reported = False
                    self.on_change(None)  # whatever changed while we were not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.notifications += 1
                            self.on_change(int(note.payload) if note.payload.isdigit() else None)
            except psycopg.Error as exc:
                self.connected.clear()
                if not down_reported:
                    self.report(f"sluice gateway: register notifications down, polling meanwhile: {exc}")
                    down_reported = True
                self._stop.wait(self.retry_s)
            except Exception as exc:  # the thread must outlive a callback's failure
                self.connected.clear()
                self.report(f"sluice gateway: register listener error: {exc!r}")
                self._stop.wait(self.retry_s)
        self.connected.clear()
