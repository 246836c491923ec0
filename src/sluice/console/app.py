"""The console's ASGI application: the API, the pages, static files, error handling."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from sluice import __version__
from sluice.console.api import router as api_router
from sluice.console.auth import AuthError
from sluice.console.pages import render_error
from sluice.console.pages import router as page_router
from sluice.console.service import Console, ConsoleConfig, describe_error
from sluice.console.web import error_response, problem_response
from sluice.errors import SluiceError

__all__ = ["create_app"]

log = logging.getLogger("sluice.console")
INDEX_INTERVAL_S = 2.0
"""How often the background thread indexes new decisions (seconds)."""


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def create_app(config: ConsoleConfig, *, console: Console | None = None) -> FastAPI:
    """The console application over ``config``'s register, decision log and state directory.

    Args:
        config: where things live.
        console: an already-open console (tests); made from ``config`` otherwise.

    Returns:
        The ASGI app (serve with uvicorn).
    """
    con = console or Console(config)
    stop = threading.Event()

    def index_loop() -> None:
        while not stop.is_set():
            try:
                con.decisions.refresh()
                con.warm_dashboard()
            except Exception:  # pragma: no cover - logged, the next round retries
                log.exception("indexing the decision log failed")
            stop.wait(INDEX_INTERVAL_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        t = threading.Thread(target=index_loop, name="sluice-decision-index", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=10)
            if console is None:
                con.close()

    app = FastAPI(
        title="sluice console",
        version=__version__,
        description="The register, the review queue, decisions, capture analyses and policies of sluice. "
        "Log in with POST /api/v1/session (cookie; echo the returned csrf as X-CSRF-Token) or send "
        "'Authorization: Bearer <token>'. Errors are RFC 9457 problem details with a stable reason code.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.console = con
    app.include_router(api_router)
    app.include_router(page_router)
    static = resources.files("sluice.console").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(SluiceError)
    async def sluice_error(request: Request, exc: SluiceError) -> Response:
        if _is_api(request):
            return error_response(request, exc)
        if isinstance(exc, AuthError) and exc.status == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        reason, detail, status = describe_error(exc)
        return render_error(request, status, reason, detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        if _is_api(request):
            return problem_response(request, "console.invalid_request", detail, 422, errors=errors)
        return render_error(request, 422, "console.invalid_request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        reason = {404: "console.not_found", 405: "console.method_not_allowed"}.get(
            exc.status_code, "console.http"
        )
        if _is_api(request):
            return problem_response(request, reason, str(exc.detail), exc.status_code)
        return render_error(request, exc.status_code, reason, str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        if _is_api(request):
            return problem_response(request, "internal.error", "internal error (logged on the server)", 500)
        return HTMLResponse("<h1>Internal error</h1><p>Logged on the server.</p>", status_code=500)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        resp: Response = await call_next(request)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if not _is_api(request):
            resp.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                "form-action 'self'; frame-ancestors 'none'",
            )
        return resp

    return app
