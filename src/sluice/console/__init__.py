"""The console: web pages and an HTTP API (``/api/v1``, OpenAPI) over the register, the review
queue, the decision log, capture analyses and policies, with users, roles and an audit trail.

* :mod:`~sluice.console.service`: :class:`Console`, what pages and API call (role checks, the
  CLI's services, audit rows);
* :mod:`~sluice.console.auth`: users, roles, password hashes, sessions, CSRF, API tokens,
  the login rate limit, the audit trail;
* :mod:`~sluice.console.regview`: paged register reads; :mod:`~sluice.console.decindex`: the
  decision log's index; :mod:`~sluice.console.reports`: kept capture analyses;
* :mod:`~sluice.console.app`: the ASGI app (:func:`create_app`), :mod:`~sluice.console.api`
  and :mod:`~sluice.console.pages`.

Needs the ``console`` extra (FastAPI, uvicorn, Jinja2, python-multipart); ``import sluice``
works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.console.app import create_app
    from sluice.console.service import Console, ConsoleConfig

__all__ = ["Console", "ConsoleConfig", "create_app"]


def __getattr__(name: str) -> Any:
    """The app and service, imported on first use (they need the ``console`` extra)."""
    if name == "create_app":
        from sluice.console.app import create_app

        return create_app
    if name in ("Console", "ConsoleConfig"):
        from sluice.console import service

        return getattr(service, name)
    raise AttributeError(f"module 'sluice.console' has no attribute {name!r}")
