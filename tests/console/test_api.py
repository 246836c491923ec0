"""The HTTP API against a real server and a real register (SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx
import pytest

from sluice.registry import service as registry_service
from tests.console.conftest import DEMO_PCAP, PASSWORD, Live


def problem(r: httpx.Response, status: int, reason: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["reason"] == reason and body["type"].endswith(reason)
    assert body["instance"] == r.request.url.path and body["detail"]
    return dict(body)


def test_login_session_and_logout(live: Live) -> None:
    with live.client() as c:
        problem(c.get("/api/v1/register/entries"), 401, "console.unauthenticated")
        problem(
            c.post("/api/v1/session", json={"username": "ada", "password": "wrong password!"}),
            401,
            "console.bad_login",
        )
        r = c.post("/api/v1/session", json={"username": "ada", "password": PASSWORD})
        assert r.status_code == 200 and r.json()["role"] == "admin"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/api/v1/session").json()["name"] == "ada"
        # a cookie request that changes something needs the CSRF token
        problem(c.delete("/api/v1/session"), 403, "console.csrf")
        problem(c.delete("/api/v1/session", headers={"X-CSRF-Token": "nope"}), 403, "console.csrf")
        assert c.delete("/api/v1/session", headers={"X-CSRF-Token": r.json()["csrf"]}).status_code == 204
        problem(c.get("/api/v1/session"), 401, "console.unauthenticated")


def test_login_rate_limit_refuses_even_the_right_password(live: Live) -> None:
    with live.client() as c:
        for _ in range(5):
            problem(
                c.post("/api/v1/session", json={"username": "vic", "password": "not the password"}),
                401,
                "console.bad_login",
            )
        r = c.post("/api/v1/session", json={"username": "vic", "password": PASSWORD})
        problem(r, 429, "console.rate_limited")
        assert int(r.headers["retry-after"]) > 0
        # other users are not locked out
        assert c.post("/api/v1/session", json={"username": "rita", "password": PASSWORD}).status_code == 200
    rows = live.console.users.audit_rows(50)
    assert [r["outcome"] for r in rows if r["target"] == "vic"][:1] == ["rate_limited"]
    assert sum(1 for r in rows if r["target"] == "vic" and r["outcome"] == "failed") == 5


def test_register_search_pages_through_every_match(live: Live) -> None:
    with live.client("vic") as c:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"q": "site", "limit": 50}
            if cursor:
                params["cursor"] = cursor
            r = c.get("/api/v1/register/entries", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            seen += [e["indicator"] for e in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                assert "link" not in r.headers
                break
            assert 'rel="next"' in r.headers["link"]
        assert pages == 3
        assert seen == sorted(f"site{i:03d}.example" for i in range(120))
        masks = c.get("/api/v1/register/entries", params={"q": "blocked"}).json()["items"]
        assert [(e["kind"], e["indicator"]) for e in masks] == [("domain-mask", "*.blocked.test")]
        walked = c.get("/api/v1/register/entries", params={"source": "seed", "kind": "subnet"}).json()[
            "items"
        ]
        assert [e["indicator"] for e in walked] == ["198.51.100.0/24"]
        everything, cursor = [], None
        while True:
            body = c.get(
                "/api/v1/register/entries", params={"limit": 7} | ({"cursor": cursor} if cursor else {})
            ).json()
            everything += body["items"]
            if not (cursor := body["next_cursor"]):
                break
        assert len(everything) == 122 and len({(e["kind"], e["indicator"]) for e in everything}) == 122
        problem(c.get("/api/v1/register/entries", params={"kind": "planet"}), 422, "console.bad_kind")
        problem(c.get("/api/v1/register/entries", params={"limit": 0}), 422, "console.invalid_request")


def test_check_answers_as_the_cli_service_does(live: Live) -> None:
    items = ["site007.example", "www.site008.example", "a.b.blocked.test", "198.51.100.77", "free.example"]
    with live.client("vic") as c:
        r = c.get("/api/v1/register/check", params=[("item", i) for i in items])
        assert r.status_code == 200
        assert r.json() == registry_service.check(live.console.config.register, items)
        assert [bool(x["matches"]) for x in r.json()] == [True, True, True, True, False]
        h = c.get("/api/v1/register/history", params={"indicator": "site007.example"}).json()
        assert h["current"][0]["source"] == "seed" and h["events"][0]["action"] == "added"
        st = c.get("/api/v1/register/sources").json()
        assert st["sources"][0]["source"] == "seed" and st["sources"][0]["total"] == 122
        assert st["sources"][0]["last_import"]["added"] == 122


def test_import_preview_then_import_admin_only_and_audited(live: Live) -> None:
    body = "".join(f"new{i}.example\n" for i in range(1, 41)).encode() + b"bad..name\n"
    form = {"format": "domains", "source": "extra"}
    with live.client("ada") as c:
        r = c.post("/api/v1/register/imports", files={"file": ("extra.txt", body)}, data=form)
        assert r.status_code == 200, r.text
        s = r.json()["summary"]
        assert s["dry_run"] and s["added"] == 40 and s["rejected"][0]["line"] == 41
        assert s["rejected"][0]["path"] == "extra.txt"
        assert c.get("/api/v1/register/check", params={"item": "new1.example"}).json()[0]["matches"] == []
        r = c.post(
            "/api/v1/register/imports", files={"file": ("extra.txt", body)}, data=form | {"dry_run": "false"}
        )
        assert r.status_code == 200 and r.json()["summary"]["import_id"] > 0
        assert c.get("/api/v1/register/check", params={"item": "new1.example"}).json()[0]["matches"]
        problem(
            c.post(
                "/api/v1/register/imports",
                files={"file": ("x.bin", b"\x00\x01\x02" * 50)},
                data={"format": "domains", "source": "bin", "dry_run": "false"},
            ),
            422,
            "registry.binary_input",
        )
    for user in ("rita", "vic"):
        with live.client(user) as c:
            problem(
                c.post("/api/v1/register/imports", files={"file": ("e.txt", body)}, data=form),
                403,
                "console.forbidden",
            )
    rows = [r for r in live.console.users.audit_rows(100) if r["action"] == "register.import"]
    assert [(r["actor"], r["outcome"]) for r in rows] == [("ada", "refused"), ("ada", "ok")]
    assert rows[1]["address"] == "127.0.0.1" and rows[1]["detail"]["added"] == 40


def test_review_accept_reject_roles_and_audit(live: Live) -> None:
    a, b, c_, d = live.proposal_ids
    with live.client("vic") as viewer:
        queue = viewer.get("/api/v1/proposals", params={"state": "proposed"}).json()["items"]
        assert sorted(p["id"] for p in queue) == sorted(live.proposal_ids)
        problem(
            viewer.post("/api/v1/proposals/decisions", json={"ids": [a], "accept": True, "reason": "x"}),
            403,
            "console.forbidden",
        )
    with live.client("rita") as rc:
        dry = rc.post(
            "/api/v1/proposals/decisions",
            json={"ids": [a], "accept": True, "reason": "seen", "dry_run": True},
        ).json()
        assert dry[0]["dry_run"] and rc.get(f"/api/v1/proposals/{a}").json()["state"] == "proposed"
        out = rc.post(
            "/api/v1/proposals/decisions",
            json={"ids": [a, b], "accept": True, "reason": "VPN endpoints, checked"},
        ).json()
        assert [o["changed"] for o in out] == [True, True] and out[0]["import_id"] > 0
        again = rc.post(
            "/api/v1/proposals/decisions", json={"ids": [a, c_], "accept": False, "reason": "late"}
        ).json()
        assert [(o["state"], o["changed"]) for o in again] == [("accepted", False), ("rejected", True)]
        problem(
            rc.post("/api/v1/proposals/decisions", json={"ids": [999999], "accept": True, "reason": "x"}),
            404,
            "registry.no_proposal",
        )
        shown = rc.get(f"/api/v1/proposals/{a}").json()
        assert shown["reviewer"] == "rita" and [e["action"] for e in shown["events"]] == [
            "proposed",
            "added",
            "accepted",
        ]
        page1 = rc.get("/api/v1/proposals", params={"limit": 3}).json()
        page2 = rc.get("/api/v1/proposals", params={"limit": 3, "cursor": page1["next_cursor"]}).json()
        assert [p["id"] for p in page1["items"] + page2["items"]] == sorted(live.proposal_ids, reverse=True)
    assert (
        registry_service.check(live.console.config.register, ["vpn0.provider.test"])[0]["matches"][0][
            "source"
        ]
        == "proposals:vpn-services"
    )
    assert registry_service.check(live.console.config.register, ["vpn2.provider.test"])[0]["matches"] == []
    audit = [
        (r["actor"], r["action"], r["outcome"])
        for r in live.console.users.audit_rows(100)
        if r["action"].startswith("proposal.")
    ]
    assert audit == [
        ("rita", "proposal.accept", "refused"),
        ("rita", "proposal.reject", "ok"),
        ("rita", "proposal.accept", "ok"),
    ]
    assert d  # the fourth stays open


def test_decisions_filters_paging_and_detail(live: Live) -> None:
    with live.client("vic") as c:
        first = c.get("/api/v1/decisions", params={"action": "block", "limit": 30}).json()
        second = c.get(
            "/api/v1/decisions", params={"action": "block", "limit": 30, "cursor": first["next_cursor"]}
        ).json()
        rows = first["items"] + second["items"]
        assert len(rows) == 50 and second["next_cursor"] is None
        assert all(r["action"] == "block" for r in rows)
        assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
        vpn = c.get("/api/v1/decisions", params={"class": "vpn", "family": "wireguard", "limit": 500}).json()[
            "items"
        ]
        assert len(vpn) == 50
        named = c.get("/api/v1/decisions", params={"name": "example.org", "limit": 500}).json()["items"]
        assert len(named) == 150 and all(r["server_name"].endswith(".example.org") for r in named)
        one = c.get("/api/v1/decisions", params={"name": "host3.example.org", "limit": 500}).json()["items"]
        assert {r["server_name"] for r in one} == {"host3.example.org"}
        client = c.get("/api/v1/decisions", params={"client": "10.0.0.2", "limit": 500}).json()["items"]
        assert len(client) == 40 and all(r["flow_key"].startswith("tcp 10.0.0.2:") for r in client)
        window = c.get(
            "/api/v1/decisions",
            params={"since": "2026-01-01T01:00:00Z", "until": "2026-01-01T02:00:00Z", "limit": 500},
        ).json()["items"]
        assert len(window) == 60
        problem(c.get("/api/v1/decisions", params={"since": "yesterday-ish"}), 422, "console.bad_time")
        full = c.get(f"/api/v1/decisions/{rows[0]['id']}").json()
        assert (
            full["register"][0]["source"] == "seed"
            and full["register_now"][0]["indicator"] == full["server_name"]
        )
        problem(c.get("/api/v1/decisions/999999"), 404, "console.no_decision")
        dash = c.get("/api/v1/dashboard").json()
        assert dash["decisions"] == 200 and sum(dash["by_action"]["series"]["block"]) == 50
        assert dash["top_blocked_names"][0][1] >= 1


def test_new_decisions_are_seen(live: Live) -> None:
    from sluice.decisions import DecisionLog
    from sluice.policy.model import Action
    from tests.console.conftest import decision

    with DecisionLog(live.tmp / "decisions", fsync="never") as log:
        log.write(decision(5000, action=Action.RESET, rule="late"))
    live.console.decisions.refresh()
    with live.client("vic") as c:
        got = c.get("/api/v1/decisions", params={"rule": "late"}).json()["items"]
        assert [r["action"] for r in got] == ["reset"]


def test_propose_from_a_decision_goes_to_the_queue(live: Live) -> None:
    with live.client("vic") as c:
        row = c.get("/api/v1/decisions", params={"name": "host4.example.org", "limit": 1}).json()["items"][0]
        problem(
            c.post("/api/v1/proposals", json={"name": "host4.example.org", "action": "block", "reason": "x"}),
            403,
            "console.forbidden",
        )
    with live.client("rita") as c:
        r = c.post(
            "/api/v1/proposals",
            json={
                "name": row["server_name"],
                "action": "block",
                "reason": "phishing",
                "decision_id": row["id"],
            },
        )
        assert r.status_code == 201, r.text
        p = r.json()
        assert (
            p["state"] == "proposed"
            and p["detector"] == "console"
            and p["evidence"]["decision"]["flow_key"] == row["flow_key"]
        )
        allow = c.post(
            "/api/v1/proposals", json={"name": "host5.example.org", "action": "allow", "reason": "partner"}
        ).json()
        assert allow["source"] == "proposals:console-allow"
        problem(
            c.post("/api/v1/proposals", json={"name": "not a name!", "action": "block", "reason": "x"}),
            422,
            "registry.bad_indicator",
        )
    # proposed, not in the register
    assert registry_service.check(live.console.config.register, ["host4.example.org"])[0]["matches"] == []


def test_tokens_roles_and_revocation(live: Live) -> None:
    secret = live.token("rita", "viewer")
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {secret}"}) as c:
        assert c.get("/api/v1/session").json() == {
            "name": "rita",
            "role": "viewer",
            "via": c.get("/api/v1/session").json()["via"],
            "csrf": "",
        }
        assert c.get("/api/v1/register/entries").status_code == 200
        # the token's role (viewer) applies, though rita is a reviewer; no CSRF is needed for tokens
        problem(
            c.post(
                "/api/v1/proposals/decisions",
                json={"ids": live.proposal_ids[:1], "accept": True, "reason": "x"},
            ),
            403,
            "console.forbidden",
        )
        problem(c.post("/api/v1/tokens", json={"name": "t2"}), 403, "console.forbidden")
    with live.client("vic") as c:
        problem(c.post("/api/v1/tokens", json={"name": "up", "role": "admin"}), 403, "console.forbidden")
    with live.client("rita") as c:
        tid = c.get("/api/v1/tokens").json()[0]["id"]
        assert c.delete(f"/api/v1/tokens/{tid}").json()["revoked_at"]
    with live.client("vic") as c:
        problem(c.delete(f"/api/v1/tokens/{tid}"), 404, "console.no_token")
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {secret}"}) as c:
        problem(c.get("/api/v1/session"), 401, "console.unauthenticated")
    with httpx.Client(base_url=live.url, headers={"Authorization": "Basic abc"}) as c:
        problem(c.get("/api/v1/session"), 401, "console.unauthenticated")
    actions = [
        (r["actor"], r["action"])
        for r in live.console.users.audit_rows(100)
        if r["action"].startswith("token.")
    ]
    assert actions == [("rita", "token.revoke"), ("rita", "token.create")]


def test_users_admin_only_and_last_admin_kept(live: Live) -> None:
    with live.client("rita") as c:
        problem(c.get("/api/v1/users"), 403, "console.forbidden")
        problem(c.get("/api/v1/audit"), 403, "console.forbidden")
    with live.client("ada") as c:
        r = c.post("/api/v1/users", json={"name": "newbie", "role": "viewer", "password": "long enough pw"})
        assert r.status_code == 201 and r.json()["role"] == "viewer"
        problem(
            c.post("/api/v1/users", json={"name": "newbie", "role": "viewer", "password": "long enough pw"}),
            409,
            "console.user_exists",
        )
        problem(
            c.post("/api/v1/users", json={"name": "short", "role": "viewer", "password": "short"}),
            422,
            "console.weak_password",
        )
        assert c.patch("/api/v1/users/newbie", json={"role": "reviewer"}).json()["role"] == "reviewer"
        problem(c.patch("/api/v1/users/ada", json={"role": "viewer"}), 409, "console.last_admin")
        problem(c.patch("/api/v1/users/nobody", json={"role": "viewer"}), 404, "console.no_user")
    with live.client("vic") as vic:
        with live.client("ada") as c:
            assert c.patch("/api/v1/users/vic", json={"disabled": True}).json()["disabled"]
        # disabling ends the user's sessions at once
        problem(vic.get("/api/v1/session"), 401, "console.unauthenticated")
    with live.client("ada") as c:
        audit = c.get("/api/v1/audit", params={"limit": 200}).json()["items"]
        changes = [
            (a["action"], a["target"], a["actor"])
            for a in audit
            if a["action"].startswith("user.") and a["actor"] == "ada"
        ]
        assert changes == [
            ("user.update", "vic", "ada"),
            ("user.update", "newbie", "ada"),
            ("user.create", "newbie", "ada"),
        ]


def test_openapi_and_unknown_routes(live: Live) -> None:
    with live.client() as c:
        doc = c.get("/api/v1/openapi.json").json()
        paths = set(doc["paths"])
        for p in (
            "/api/v1/register/entries",
            "/api/v1/register/check",
            "/api/v1/proposals/decisions",
            "/api/v1/decisions",
            "/api/v1/captures",
            "/api/v1/policy/dry-run",
            "/api/v1/tokens",
        ):
            assert p in paths
        assert all(not p.startswith("/api") or p.startswith("/api/v1") for p in paths)
        problem(c.get("/api/v1/nothing-here"), 404, "console.not_found")


@pytest.mark.slow
def test_captures_and_policy(live_sqlite: Live) -> None:
    live = live_sqlite
    data = DEMO_PCAP.read_bytes()
    with live.client("vic") as c:
        problem(c.post("/api/v1/captures", files={"file": ("demo.pcapng", data)}), 403, "console.forbidden")
    with live.client("rita") as c:
        r = c.post("/api/v1/captures", files={"file": ("demo.pcapng", data)})
        assert r.status_code == 201, r.text
        rep = r.json()
        assert rep["summary"]["flows"] == len(rep["flows"]) > 10 and rep["summary"]["findings"] > 0
        assert [x["id"] for x in c.get("/api/v1/captures").json()] == [rep["id"]]
        assert c.get(f"/api/v1/captures/{rep['id']}").json()["summary"] == rep["summary"]
        problem(c.get("/api/v1/captures/../../etc"), 404, "console.not_found")
        problem(c.get("/api/v1/captures/20260101T000000Z-00000000"), 404, "console.no_report")
        bad = c.post("/api/v1/captures", files={"file": ("junk.pcap", b"this is not a capture at all" * 10)})
        assert bad.status_code == 422 and bad.json()["reason"].startswith("capture.")
        cur = c.get("/api/v1/policy").json()
        assert cur["ok"] and cur["rules"][0]["name"] == "register-block"
        broken = c.post(
            "/api/v1/policy/validate",
            json={"text": cur["text"] + '\n[[rule]]\nname = "x"\naction = "explode"\n'},
        ).json()
        assert (
            not broken["ok"]
            and broken["issues"][0]["line"] > 10
            and broken["issues"][0]["reason"].startswith("policy.")
        )
        run = c.post("/api/v1/policy/dry-run", json={"text": cur["text"], "report": rep["id"]}).json()
        assert run["flows"] == rep["summary"]["flows"] and not any(d["enforced"] for d in run["decisions"])
        blocking = cur["text"].replace('action = "log"', 'action = "block"')
        cmp = c.post(
            "/api/v1/policy/compare", json={"a": cur["text"], "b": blocking, "report": rep["id"]}
        ).json()
        assert cmp["changed"] == ["findings-log"] and cmp["flows"]["changed"]
        assert all(
            ch["a"] == "log (findings-log)" and ch["b"] == "block (findings-log)"
            for ch in cmp["flows"]["changed"]
        )
        problem(
            c.post("/api/v1/policy/dry-run", json={"text": "version = [", "report": rep["id"]}),
            422,
            "console.bad_policy",
        )
