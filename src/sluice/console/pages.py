"""The server-rendered pages: each parses a form or query, calls
:class:`~sluice.console.service.Console` (as the API does) and renders a template."""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.datastructures import UploadFile

from sluice.console.auth import AuthError, Principal, Role, parse_role
from sluice.console.charts import bars, stacked_timeline
from sluice.console.decindex import DecisionQuery, iso_time
from sluice.console.service import describe_error
from sluice.console.web import COOKIE, check_csrf, client_address, console_of, identify
from sluice.decisions import parse_since
from sluice.errors import ConfigError, SluiceError

__all__ = ["render_error", "router"]

router = APIRouter(include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**62)]
templates = Jinja2Templates(directory=str(resources.files("sluice.console").joinpath("templates")))
templates.env.filters["iso"] = lambda ts: iso_time(float(ts)) if ts else ""


def _who(request: Request) -> Principal:
    who = identify(request)
    if who is None:
        raise AuthError("console.unauthenticated", "log in", 401)
    return who


def _render(
    request: Request, name: str, who: Principal | None, status: int = 200, **ctx: Any
) -> HTMLResponse:
    ctx.update(request=request, who=who, Role=Role, flash=request.query_params.get("flash", ""))
    return templates.TemplateResponse(request, name, ctx, status_code=status)


def render_error(request: Request, status: int, reason: str, detail: str) -> HTMLResponse:
    """An error page."""
    try:
        who = identify(request)
    except SluiceError:
        who = None
    return _render(request, "error.html", who, status, code=status, reason=reason, detail=detail)


async def _form(request: Request, who: Principal) -> Any:
    form = await request.form()
    check_csrf(request, who, str(form.get("csrf", "")))
    return form


def _back(path: str, **params: Any) -> RedirectResponse:
    q = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    sep = "&" if "?" in path else "?"
    return RedirectResponse(path + (sep + q if q else ""), status_code=303)


# -- login --


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _render(request, "login.html", None, next=next if next.startswith("/") else "/", error="")


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    nxt = str(form.get("next", "/"))
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"
    c = console_of(request)
    try:
        s = c.users.login(
            str(form.get("username", "")), str(form.get("password", "")), client_address(request)
        )
    except AuthError as exc:
        return _render(request, "login.html", None, exc.status, next=nxt, error=exc.detail)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(
        COOKIE, s.cookie, httponly=True, samesite="strict", secure=c.config.secure_cookies, path="/"
    )
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    who = _who(request)
    await _form(request, who)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        console_of(request).users.logout(cookie, who)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# -- dashboard --


@router.get("/")
def dashboard(request: Request) -> HTMLResponse:
    who = _who(request)
    d = console_of(request).dashboard(who)
    charts = {
        "action": Markup(stacked_timeline(d["by_action"], "decisions over time by action")),  # noqa: S704 - escaped SVG
        "class": Markup(stacked_timeline(d["by_class"], "decisions over time by class")),  # noqa: S704
        "family": Markup(stacked_timeline(d["by_family"], "decisions over time by family")),  # noqa: S704
        "names": Markup(bars(d["top_blocked_names"], "top blocked names")),  # noqa: S704
        "services": Markup(bars(d["top_services"], "top services")),  # noqa: S704
    }
    return _render(request, "dashboard.html", who, d=d, charts=charts, now=time.time())


# -- register --


@router.get("/register")
def register(
    request: Request, q: str = "", source: str = "", kind: str = "", cursor: str = "", check: str = ""
) -> HTMLResponse:
    who = _who(request)
    c = console_of(request)
    items, nxt = c.search(who, q, source or None, kind or None, 50, cursor or None)
    checked = c.check(who, [check]) if check.strip() else None
    next_url = (
        "/register?" + urlencode({"q": q, "source": source, "kind": kind, "cursor": nxt}) if nxt else ""
    )
    return _render(
        request,
        "register.html",
        who,
        items=items,
        q=q,
        source=source,
        kind=kind,
        kinds=c.register.kinds(),
        next_url=next_url,
        check=check,
        checked=checked,
    )


@router.get("/register/entry")
def entry(request: Request, indicator: str) -> HTMLResponse:
    who = _who(request)
    return _render(request, "entry.html", who, h=console_of(request).history(who, indicator))


@router.get("/register/sources")
def sources(request: Request) -> HTMLResponse:
    who = _who(request)
    return _render(request, "sources.html", who, st=console_of(request).sources(who))


@router.get("/register/import")
def import_page(request: Request) -> HTMLResponse:
    who = _who(request)
    c = console_of(request)
    c.need(who, Role.ADMIN)
    return _render(request, "import.html", who, result=None, reports=c.reports.list(), form={})


@router.post("/register/import")
async def import_post(request: Request) -> HTMLResponse:
    who = _who(request)
    form = await _form(request, who)
    c = console_of(request)
    c.need(who, Role.ADMIN)
    up = form.get("file")
    if not isinstance(up, UploadFile):
        raise AuthError("console.no_input", "choose a file", 422)
    data = await up.read()
    await up.close()
    preview = form.get("apply") is None
    opts = {k: str(form.get(k, "")) for k in ("format", "source", "impact_report")}
    from starlette.concurrency import run_in_threadpool

    try:
        result = await run_in_threadpool(
            c.import_file,
            who,
            data,
            up.filename or "upload",
            fmt=opts["format"] or "auto",
            source=opts["source"],
            preview=preview,
            force=form.get("force") is not None,
            impact_report=opts["impact_report"],
        )
        error = None
    except SluiceError as exc:
        result, error = None, describe_error(exc)
    return _render(
        request,
        "import.html",
        who,
        result=result,
        error=error,
        preview=preview,
        reports=c.reports.list(),
        form=opts,
    )


# -- review queue --


@router.get("/review")
def review(request: Request, state: str = "proposed", cursor: str = "") -> HTMLResponse:
    who = _who(request)
    st = state if state in ("proposed", "accepted", "rejected") else None
    items, nxt = console_of(request).proposals(who, st, 50, cursor or None)
    next_url = "/review?" + urlencode({"state": state, "cursor": nxt}) if nxt else ""
    return _render(request, "review.html", who, items=items, state=state, next_url=next_url)


@router.get("/review/{pid}")
def proposal(request: Request, pid: Id) -> HTMLResponse:
    who = _who(request)
    return _render(request, "proposal.html", who, p=console_of(request).proposal(who, pid))


@router.post("/review/decide")
async def decide(request: Request) -> Response:
    who = _who(request)
    form = await _form(request, who)
    ids = [int(x) for x in form.getlist("ids") if str(x).isdigit()]
    accept = form.get("decision") == "accept"
    back = str(form.get("back", "/review"))
    if not ids:
        raise AuthError("console.no_input", "select at least one proposal", 422)
    out = console_of(request).decide(who, ids, accept, str(form.get("reason", "")))
    done = sum(1 for o in out if o["changed"])
    verb = "accepted" if accept else "rejected"
    msg = f"{done} {verb}" + (f", {len(out) - done} already decided" if done < len(out) else "")
    return _back(back if back.startswith("/") and not back.startswith("//") else "/review", flash=msg)


# -- decisions --


def _query(params: dict[str, str]) -> DecisionQuery:
    now = time.time()

    def t(key: str) -> float | None:
        v = params.get(key, "").strip()
        if not v:
            return None
        try:
            return parse_since(v, now)
        except ConfigError as exc:
            raise AuthError("console.bad_time", f"{key}: {exc}", 422) from None

    def s(key: str) -> str | None:
        return params.get(key, "").strip() or None

    return DecisionQuery(
        t("since"),
        t("until"),
        s("action"),
        s("class"),
        s("family"),
        s("name"),
        s("client"),
        s("rule"),
        s("mode"),
    )


_FILTERS = ("since", "until", "action", "class", "family", "name", "client", "rule", "mode")


@router.get("/decisions")
def decisions(request: Request) -> HTMLResponse:
    who = _who(request)
    c = console_of(request)
    params = {k: request.query_params.get(k, "") for k in _FILTERS}
    items, nxt = c.decision_page(who, _query(params), 50, request.query_params.get("cursor") or None)
    next_url = (
        "/decisions?" + urlencode({**{k: v for k, v in params.items() if v}, "cursor": nxt}) if nxt else ""
    )
    menus = {k: c.decisions.values(k) for k in ("action", "class", "family")}
    return _render(request, "decisions.html", who, items=items, f=params, next_url=next_url, menus=menus)


@router.get("/decisions/{did}")
def decision(request: Request, did: Id) -> HTMLResponse:
    who = _who(request)
    return _render(request, "decision.html", who, d=console_of(request).decision(who, did))


@router.post("/decisions/{did}/propose")
async def propose(request: Request, did: Id) -> Response:
    who = _who(request)
    form = await _form(request, who)
    c = console_of(request)
    d = c.decision(who, did)
    p = c.propose_name(
        who, str(d.get("server_name", "")), form.get("action") != "allow", str(form.get("reason", "")), did
    )
    return _back(f"/review/{p['id']}", flash=f"proposal #{p['id']} is in the review queue")


# -- captures --


@router.get("/captures")
def captures(request: Request) -> HTMLResponse:
    who = _who(request)
    return _render(request, "captures.html", who, reports=console_of(request).reports.list(), error=None)


@router.post("/captures")
async def upload(request: Request) -> Response:
    who = _who(request)
    form = await _form(request, who)
    c = console_of(request)
    c.need(who, Role.REVIEWER)
    up = form.get("file")
    if not isinstance(up, UploadFile):
        raise AuthError("console.no_input", "choose a capture file", 422)
    data = await up.read()
    await up.close()
    from starlette.concurrency import run_in_threadpool

    try:
        rep = await run_in_threadpool(c.analyze, who, data, up.filename or "capture")
    except SluiceError as exc:
        reason, detail, status = describe_error(exc)
        return _render(
            request, "captures.html", who, status, reports=c.reports.list(), error=f"{detail} [{reason}]"
        )
    return _back(f"/captures/{rep['id']}")


@router.get("/captures/{rid}")
def capture(request: Request, rid: str) -> HTMLResponse:
    who = _who(request)
    c = console_of(request)
    c.need(who, Role.VIEWER)
    rep = c.reports.get(rid)
    by_class = sorted(rep["summary"]["by_class"].items(), key=lambda kv: -kv[1])
    by_family = sorted(rep["summary"]["by_family"].items(), key=lambda kv: -kv[1])[:15]
    charts = {
        "class": Markup(bars(by_class, "flows by class")),  # noqa: S704 - escaped SVG
        "family": Markup(bars(by_family, "flows by class/family")),  # noqa: S704
    }
    return _render(request, "capture.html", who, r=rep, charts=charts)


# -- policy --


@router.get("/policy")
def policy(request: Request) -> HTMLResponse:
    who = _who(request)
    c = console_of(request)
    cur = c.policy_text(who)
    return _render(
        request,
        "policy.html",
        who,
        cur=cur,
        text=cur["text"],
        checked=None,
        run=None,
        cmp=None,
        reports=c.reports.list(),
        b_text="",
    )


@router.post("/policy")
async def policy_post(request: Request) -> HTMLResponse:
    who = _who(request)
    form = await _form(request, who)
    c = console_of(request)
    cur = c.policy_text(who)
    text = str(form.get("text", ""))
    op = str(form.get("op", "validate"))
    report = str(form.get("report", ""))
    checked = c.validate(who, text)
    run = cmp = None
    b_text = str(form.get("b_text", ""))
    error = None
    try:
        if op == "dry-run" and checked["ok"]:
            run = c.dry_run(who, text, report)
        elif op == "compare":
            cmp = c.compare(who, text, b_text, report)
    except SluiceError as exc:
        error = describe_error(exc)
    return _render(
        request,
        "policy.html",
        who,
        cur=cur,
        text=text,
        checked=checked,
        run=run,
        cmp=cmp,
        reports=c.reports.list(),
        b_text=b_text,
        error=error,
    )


# -- tokens, users, audit --


@router.get("/tokens")
def tokens(request: Request) -> HTMLResponse:
    who = _who(request)
    u = console_of(request).users
    return _render(
        request, "tokens.html", who, tokens=u.tokens(who, all_users=who.role is Role.ADMIN), new=None
    )


@router.post("/tokens")
async def new_token(request: Request) -> HTMLResponse:
    who = _who(request)
    form = await _form(request, who)
    u = console_of(request).users
    role = parse_role(str(form.get("role"))) if form.get("role") else None
    days = int(str(form.get("days", "365"))) if str(form.get("days", "365")).isdigit() else 365
    new = u.create_token(who, str(form.get("name", "")), role, days * 86400)
    return _render(
        request, "tokens.html", who, tokens=u.tokens(who, all_users=who.role is Role.ADMIN), new=new
    )


@router.post("/tokens/{tid}/revoke")
async def revoke(request: Request, tid: Id) -> Response:
    who = _who(request)
    await _form(request, who)
    console_of(request).users.revoke_token(who, tid)
    return _back("/tokens", flash=f"token #{tid} revoked")


@router.get("/users")
def users(request: Request) -> HTMLResponse:
    who = _who(request)
    c = console_of(request)
    c.need_admin(who)
    return _render(request, "users.html", who, users=c.users.all_users())


@router.post("/users")
async def users_post(request: Request) -> Response:
    who = _who(request)
    form = await _form(request, who)
    c = console_of(request)
    c.need_admin(who)
    name = str(form.get("name", ""))
    if form.get("op") == "create":
        c.users.create(name, parse_role(str(form.get("role", "viewer"))), str(form.get("password", "")), who)
        return _back("/users", flash=f"user {name} added")
    role = parse_role(str(form.get("role"))) if form.get("role") else None
    pw = str(form.get("password", "")) or None
    disabled = {"disable": True, "enable": False}.get(str(form.get("op", "")))
    c.users.update(name, who, role=role, password=pw, disabled=disabled)
    return _back("/users", flash=f"user {name} changed")


@router.get("/audit")
def audit(request: Request, before: str = "") -> HTMLResponse:
    who = _who(request)
    c = console_of(request)
    c.need_admin(who)
    rows = c.users.audit_rows(101, int(before) if before.isdigit() else None)
    next_url = f"/audit?before={rows[99]['id']}" if len(rows) > 100 else ""
    return _render(request, "audit.html", who, rows=rows[:100], next_url=next_url)
