"""What the API and the pages share: who is asking (session cookie or bearer token), CSRF
checks, and errors as RFC 9457 problem details."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sluice.console.auth import AuthError, Principal
from sluice.console.service import Console, describe_error

__all__ = [
    "COOKIE",
    "PROBLEM_TYPE",
    "Problem",
    "client_address",
    "console_of",
    "principal",
    "problem_response",
]

COOKIE = "sluice_session"
"""The session cookie's name."""
PROBLEM_TYPE = "urn:sluice:problem:"
"""Problem ``type`` URIs are this plus the reason code."""
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Problem(BaseModel):
    """An error (RFC 9457 problem details) with sluice's stable reason code."""

    type: str = Field(description="urn:sluice:problem:<reason>")
    title: str = Field(description="The reason code.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="What went wrong, in words.")
    instance: str = Field(description="The request path.")
    reason: str = Field(description="Stable dotted code (console.forbidden, registry.bad_indicator ...).")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Invalid fields, when any.")


def problem_response(
    request: Request,
    reason: str,
    detail: str,
    status: int,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + reason,
        "title": reason,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "reason": reason,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def error_response(request: Request, exc: BaseException) -> JSONResponse:
    """The problem response of an error the console raises on purpose."""
    reason, detail, status = describe_error(exc)
    headers = {}
    if isinstance(exc, AuthError):
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="sluice"'
    return problem_response(request, reason, detail, status, headers=headers or None)


def console_of(request: Request) -> Console:
    """The app's :class:`Console`."""
    c: Console = request.app.state.console
    return c


def client_address(request: Request) -> str:
    """The client's address (the socket peer; no proxy headers are trusted)."""
    return request.client.host if request.client else ""


def identify(request: Request) -> Principal | None:
    """Who sends the request: a bearer token, else a session cookie; None when neither."""
    console = console_of(request)
    addr = client_address(request)
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, secret = auth.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError("console.unauthenticated", "use 'Authorization: Bearer <token>'", 401)
        who = console.users.token(secret.strip(), addr)
        if who is None:
            raise AuthError("console.unauthenticated", "unknown, expired or revoked token", 401)
        return who
    cookie = request.cookies.get(COOKIE)
    return console.users.session(cookie, addr) if cookie else None


def check_csrf(request: Request, who: Principal, sent: str | None) -> None:
    """Refuse a state-changing request made with a session cookie unless it echoes the session's
    CSRF token (tokens need none).

    Raises:
        AuthError: ``console.csrf`` (403).
    """
    if request.method not in UNSAFE or who.via != "session":
        return
    if not sent or not hmac.compare_digest(sent, who.csrf):
        raise AuthError(
            "console.csrf", "missing or wrong CSRF token (X-CSRF-Token header or csrf field)", 403
        )


def principal(request: Request) -> Principal:
    """FastAPI dependency of the API: the principal, CSRF checked for cookie requests.

    Raises:
        AuthError: 401 when nobody is identified, 403 on a CSRF failure.
    """
    who = identify(request)
    if who is None:
        raise AuthError(
            "console.unauthenticated", "log in (POST /api/v1/session) or send a bearer token", 401
        )
    check_csrf(request, who, request.headers.get("x-csrf-token"))
    return who
