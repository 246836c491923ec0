"""The HTTP API under ``/api/v1``: everything the pages do, described by the OpenAPI document
the server serves at ``/api/v1/openapi.json``.  Each route parses its input and calls
:class:`~sluice.console.service.Console`; errors are problem details (RFC 9457)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from sluice.console.auth import AuthError, Principal, Role, parse_role
from sluice.console.decindex import DecisionQuery
from sluice.console.regview import MAX_PAGE
from sluice.console.service import ConsoleError
from sluice.console.web import COOKIE, Problem, client_address, console_of, principal
from sluice.decisions import parse_since
from sluice.errors import ConfigError

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": Problem, "content": {"application/problem+json": {}}, "description": d}
    for s, d in (
        (400, "Bad request"),
        (401, "Not logged in, or a bad token"),
        (403, "Role too low, or CSRF token missing"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Upload too large"),
        (422, "Invalid input (problem details with the reason code)"),
        (429, "Too many failed logins"),
        (503, "The register is unavailable"),
    )
}
router = APIRouter(prefix="/api/v1", responses=_ERRORS)
Who = Annotated[Principal, Depends(principal)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
Id = Annotated[int, Path(ge=1, le=2**62, description="An id.")]
MAX_ID = 2**62
"""Largest id accepted (ids are 64-bit in the databases)."""
Cursor = Annotated[str | None, Query(max_length=400, description="The next_cursor of the previous page.")]


class Page(BaseModel):
    """One page of a listing."""

    items: list[dict[str, Any]]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end.")


def _page(request: Request, response: Response, items: list[dict[str, Any]], nxt: str | None) -> Page:
    if nxt is not None:
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=nxt)}>; rel="next"'
    return Page(items=items, next_cursor=nxt)


# -- session --


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    name: str
    role: str
    via: str
    csrf: str = Field(description="Echo as X-CSRF-Token on state-changing requests made with the cookie.")


@router.post("/session", response_model=Me, tags=["session"], summary="Log in (sets the session cookie)")
def login(body: Login, request: Request, response: Response) -> Me:
    c = console_of(request)
    s = c.users.login(body.username, body.password, client_address(request))
    response.set_cookie(
        COOKIE, s.cookie, httponly=True, samesite="strict", secure=c.config.secure_cookies, path="/"
    )
    return Me(name=s.principal.name, role=s.principal.role.value, via="session", csrf=s.csrf)


@router.get("/session", response_model=Me, tags=["session"], summary="Who am I")
def whoami(who: Who) -> Me:
    return Me(name=who.name, role=who.role.value, via=who.via, csrf=who.csrf)


@router.delete("/session", status_code=204, tags=["session"], summary="Log out")
def logout(who: Who, request: Request) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie and who.via == "session":
        console_of(request).users.logout(cookie, who)
    resp = Response(status_code=204)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# -- register --


@router.get("/register/entries", response_model=Page, tags=["register"], summary="Search the register")
def entries(
    who: Who,
    request: Request,
    response: Response,
    q: Annotated[str, Query(max_length=300, description="Indicator prefix (a mask's name counts).")] = "",
    source: Annotated[str | None, Query(max_length=200)] = None,
    kind: Annotated[str | None, Query(max_length=20)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page:
    items, nxt = console_of(request).search(who, q, source, kind, limit, cursor)
    return _page(request, response, items, nxt)


@router.get("/register/check", tags=["register"], summary="Is it blocked, and by which entry")
def check(
    who: Who,
    request: Request,
    item: Annotated[list[str], Query(min_length=1, max_length=100, description="Name, URL or address.")],
) -> list[dict[str, Any]]:
    return console_of(request).check(who, item)


@router.get("/register/history", tags=["register"], summary="An indicator's entries and audit trail")
def history(
    who: Who, request: Request, indicator: Annotated[str, Query(min_length=1, max_length=2000)]
) -> dict[str, Any]:
    return console_of(request).history(who, indicator)


@router.get("/register/sources", tags=["register"], summary="Sources, counts, recent imports")
def sources(who: Who, request: Request) -> dict[str, Any]:
    return console_of(request).sources(who)


@router.post("/register/imports", tags=["register"], summary="Import a file (dry_run: preview only)")
async def import_file(
    who: Who,
    request: Request,
    file: Annotated[UploadFile, File(description="The list or dump.")],
    format: Annotated[str, Form(max_length=40)] = "auto",
    source: Annotated[str, Form(max_length=200)] = "",
    dry_run: Annotated[
        bool, Form(description="Preview: what would change, refused lines; write nothing.")
    ] = True,
    force: Annotated[bool, Form()] = False,
    impact_report: Annotated[
        str, Form(max_length=40, description="A kept capture report for the impact preview.")
    ] = "",
) -> dict[str, Any]:
    data = await file.read()
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(
        console_of(request).import_file,
        who,
        data,
        file.filename or "upload",
        fmt=format,
        source=source,
        preview=dry_run,
        force=force,
        impact_report=impact_report,
    )


# -- review queue --


class Review(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=1000)
    accept: bool
    reason: str = Field(min_length=1, max_length=2000)
    dry_run: bool = False


class NameProposal(BaseModel):
    name: str = Field(min_length=1, max_length=300)
    action: Literal["block", "allow"]
    reason: str = Field(min_length=1, max_length=2000)
    decision_id: int | None = Field(default=None, ge=1, le=MAX_ID)


@router.get("/proposals", response_model=Page, tags=["review"], summary="The review queue")
def proposals(
    who: Who,
    request: Request,
    response: Response,
    state: Annotated[Literal["proposed", "accepted", "rejected"] | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page:
    items, nxt = console_of(request).proposals(who, state, limit, cursor)
    return _page(request, response, items, nxt)


@router.get("/proposals/{pid}", tags=["review"], summary="A proposal with evidence and impact")
def proposal(who: Who, request: Request, pid: Id) -> dict[str, Any]:
    return console_of(request).proposal(who, pid)


@router.post("/proposals/decisions", tags=["review"], summary="Accept or reject proposals")
def decide(who: Who, request: Request, body: Review) -> list[dict[str, Any]]:
    c = console_of(request)
    if body.dry_run:
        c.need(who, Role.REVIEWER)
        out = []
        for pid in body.ids:
            p = c.proposal(who, pid)
            open_ = p["state"] == "proposed"
            out.append(
                {
                    "id": pid,
                    "state": ("accepted" if body.accept else "rejected") if open_ else p["state"],
                    "changed": open_,
                    "reviewer": who.name if open_ else p["reviewer"],
                    "import_id": 0,
                    "dry_run": True,
                }
            )
        return out
    return c.decide(who, body.ids, body.accept, body.reason)


@router.post("/proposals", status_code=201, tags=["review"], summary="Propose to block or allow a name")
def propose_name(who: Who, request: Request, body: NameProposal) -> dict[str, Any]:
    return console_of(request).propose_name(
        who, body.name, body.action == "block", body.reason, body.decision_id
    )


# -- decisions --


def _time(text: str | None, what: str) -> float | None:
    if not text:
        return None
    try:
        return parse_since(text, time.time())
    except ConfigError as exc:
        raise ConsoleError("console.bad_time", f"{what}: {exc}") from None


@router.get("/decisions", response_model=Page, tags=["decisions"], summary="Decisions, newest first")
def decisions(
    who: Who,
    request: Request,
    response: Response,
    since: Annotated[
        str | None, Query(max_length=40, description="ISO 8601 or a duration ago (15m, 2h, 7d).")
    ] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    action: Annotated[str | None, Query(max_length=20)] = None,
    verdict_class: Annotated[str | None, Query(alias="class", max_length=40)] = None,
    family: Annotated[str | None, Query(max_length=80)] = None,
    name: Annotated[str | None, Query(max_length=300, description="This name and names below it.")] = None,
    client: Annotated[str | None, Query(max_length=60)] = None,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    mode: Annotated[Literal["enforce", "shadow"] | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page:
    q = DecisionQuery(
        _time(since, "since"), _time(until, "until"), action, verdict_class, family, name, client, rule, mode
    )
    items, nxt = console_of(request).decision_page(who, q, limit, cursor)
    return _page(request, response, items, nxt)


@router.get("/decisions/{did}", tags=["decisions"], summary="One decision, fully explained")
def decision(who: Who, request: Request, did: Id) -> dict[str, Any]:
    return console_of(request).decision(who, did)


@router.get("/dashboard", tags=["decisions"], summary="Counts over time, top names and services, writers")
def dashboard(who: Who, request: Request) -> dict[str, Any]:
    return console_of(request).dashboard(who)


# -- captures --


@router.post(
    "/captures", status_code=201, tags=["captures"], summary="Analyse a pcap/pcapng and keep the report"
)
async def analyze(who: Who, request: Request, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    data = await file.read()
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(console_of(request).analyze, who, data, file.filename or "capture")


@router.get("/captures", tags=["captures"], summary="Kept reports")
def reports(who: Who, request: Request) -> list[dict[str, Any]]:
    c = console_of(request)
    c.need(who, Role.VIEWER)
    return c.reports.list()


@router.get("/captures/{rid}", tags=["captures"], summary="One kept report")
def report(who: Who, request: Request, rid: str) -> dict[str, Any]:
    c = console_of(request)
    c.need(who, Role.VIEWER)
    return c.reports.get(rid)


# -- policy --


class PolicyText(BaseModel):
    text: str = Field(max_length=1_000_000)


class DryRun(BaseModel):
    text: str = Field(max_length=1_000_000)
    report: str = Field(min_length=1, max_length=40, description="A kept capture report's id.")


class Compare(BaseModel):
    a: str = Field(max_length=1_000_000)
    b: str = Field(max_length=1_000_000)
    report: str = Field(default="", max_length=40)


@router.get("/policy", tags=["policy"], summary="The policy in force, checked")
def policy(who: Who, request: Request) -> dict[str, Any]:
    return console_of(request).policy_text(who)


@router.post("/policy/validate", tags=["policy"], summary="Check a policy (problems with lines)")
def validate(who: Who, request: Request, body: PolicyText) -> dict[str, Any]:
    return console_of(request).validate(who, body.text)


@router.post("/policy/dry-run", tags=["policy"], summary="Replay a kept capture through a policy")
def dry_run(who: Who, request: Request, body: DryRun) -> dict[str, Any]:
    return console_of(request).dry_run(who, body.text, body.report)


@router.post("/policy/compare", tags=["policy"], summary="Compare two policy versions")
def compare(who: Who, request: Request, body: Compare) -> dict[str, Any]:
    return console_of(request).compare(who, body.a, body.b, body.report)


# -- users, tokens, audit --


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["viewer", "reviewer", "admin"]
    password: str = Field(min_length=1, max_length=1024)


class UserChange(BaseModel):
    role: Literal["viewer", "reviewer", "admin"] | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    disabled: bool | None = None


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "reviewer", "admin"] | None = None
    lifetime_days: int = Field(default=365, ge=1, le=3650)


@router.get("/users", tags=["admin"], summary="Users")
def users(who: Who, request: Request) -> list[dict[str, Any]]:
    c = console_of(request)
    c.need_admin(who)
    return c.users.all_users()


@router.post("/users", status_code=201, tags=["admin"], summary="Add a user")
def add_user(who: Who, request: Request, body: NewUser) -> dict[str, Any]:
    c = console_of(request)
    c.need_admin(who)
    c.users.create(body.name, parse_role(body.role), body.password, who)
    return c.users.get(body.name)


@router.patch("/users/{name}", tags=["admin"], summary="Change a user's role, password or disabled flag")
def change_user(who: Who, request: Request, name: str, body: UserChange) -> dict[str, Any]:
    c = console_of(request)
    c.need_admin(who)
    role = parse_role(body.role) if body.role else None
    return c.users.update(name, who, role=role, password=body.password, disabled=body.disabled)


@router.get("/tokens", tags=["tokens"], summary="API tokens (own; an admin sees all)")
def tokens(who: Who, request: Request) -> list[dict[str, Any]]:
    return console_of(request).users.tokens(who, all_users=who.role is Role.ADMIN)


@router.post(
    "/tokens", status_code=201, tags=["tokens"], summary="Create an API token (its secret is shown once)"
)
def new_token(who: Who, request: Request, body: NewToken) -> dict[str, Any]:
    if who.via != "session":
        raise AuthError("console.forbidden", "tokens are made from a logged-in session", 403)
    role = parse_role(body.role) if body.role else None
    return console_of(request).users.create_token(who, body.name, role, body.lifetime_days * 86400)


@router.delete("/tokens/{tid}", tags=["tokens"], summary="Revoke an API token")
def revoke_token(who: Who, request: Request, tid: Id) -> dict[str, Any]:
    return console_of(request).users.revoke_token(who, tid)


@router.get("/audit", response_model=Page, tags=["admin"], summary="The console's audit trail, newest first")
def audit(who: Who, request: Request, response: Response, limit: Limit = 100, cursor: Cursor = None) -> Page:
    c = console_of(request)
    c.need_admin(who)
    before = int(cursor) if cursor and cursor.isdigit() else None
    rows = c.users.audit_rows(limit + 1, before)
    nxt = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return _page(request, response, rows[:limit], nxt)


@router.get("/health", tags=["session"], summary="Liveness (no login needed)")
def health(request: Request) -> dict[str, Any]:
    c = console_of(request)
    return {"ok": True, "register_version": c.register.version(), "database": c.database_kind}
