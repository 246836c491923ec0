"""The pages in a real browser: Playwright driving Debian's chromium (headless, by its path).

Skipped with a message when Playwright's Python package or the browser is missing.  Every step
waits for an element (generous timeouts, for a loaded 2-core machine); screenshots are kept in
pytest's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import DEMO_PCAP, PASSWORD, Live

CHROMIUM = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 60_000

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
        except sync_api.Error as exc:
            pytest.skip(f"chromium does not start under Playwright: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    pg = ctx.new_page()
    yield pg
    ctx.close()


def login(page: Any, live: Live, user: str, password: str = PASSWORD) -> None:
    page.goto(live.url + "/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login")


def shot(page: Any, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def test_login_dashboard_and_register_search(page: Any, live_sqlite: Live, tmp_path: Path) -> None:
    live = live_sqlite
    page.goto(live.url + "/register")
    page.wait_for_selector("#username")  # not logged in: sent to the login page
    login(page, live, "vic", "wrong password!!")
    assert "wrong user name or password" in page.inner_text("#error")
    login(page, live, "vic")
    page.wait_for_selector("#whoami")
    assert page.inner_text("#whoami") == "vic (viewer)"
    assert page.locator("svg.chart rect").count() > 10  # plots of the dashboard
    shot(page, tmp_path, "dashboard")
    page.click("text=Register")
    page.fill("#q", "site01")
    page.click("#search")
    page.wait_for_selector("#entries tbody tr td a")
    rows = page.locator("#entries tbody tr td:first-child").all_inner_texts()
    assert rows == [f"site{i:03d}.example" for i in range(10, 20)]
    page.fill("#check", "www.site015.example")
    page.click("#check-go")
    page.wait_for_selector("#check-result.blocked")
    assert "domain.www" in page.inner_text("#check-result")
    shot(page, tmp_path, "register")
    page.click("#check-result a")
    page.wait_for_selector("#events")
    assert "added" in page.inner_text("#events") and "seed" in page.inner_text("#current")


def test_reviewer_accepts_a_proposal(page: Any, live_sqlite: Live, tmp_path: Path) -> None:
    live = live_sqlite
    login(page, live, "rita")
    page.wait_for_selector("#whoami")
    page.goto(live.url + "/review")
    first = live.proposal_ids[0]
    page.check(f'tr[data-id="{first}"] input[name="ids"]')
    page.fill("#reason", "endpoint confirmed in the lab")
    page.click("#accept")
    page.wait_for_selector(".flash")
    assert page.inner_text(".flash") == "1 accepted"
    assert page.locator(f'tr[data-id="{first}"]').count() == 0  # no longer open
    page.goto(live.url + f"/review/{first}")
    page.wait_for_selector("#state")
    assert page.inner_text("#state") == "accepted"
    shot(page, tmp_path, "proposal")
    # bulk: select all, reject
    page.goto(live.url + "/review")
    page.check("#select-all")
    page.fill("#reason", "not VPN endpoints")
    page.click("#reject")
    page.wait_for_selector(".flash")
    assert page.inner_text(".flash") == "3 rejected"


def test_filter_decisions_open_one_and_propose(page: Any, live_sqlite: Live, tmp_path: Path) -> None:
    live = live_sqlite
    login(page, live, "rita")
    page.wait_for_selector("#whoami")
    page.goto(live.url + "/decisions")
    page.select_option("#f-action", "block")
    page.click("#filter")
    page.wait_for_url("**/decisions?*action=block*")
    page.wait_for_selector("#decisions tbody tr[data-id]")
    actions = set(page.locator("#decisions tbody td:nth-child(2)").all_inner_texts())
    assert actions == {"block"}
    shared = page.url
    shot(page, tmp_path, "decisions")
    page.goto(shared)  # a shareable URL gives the same page
    page.wait_for_selector("#decisions tbody tr[data-id]")
    page.click("#decisions tbody tr:first-child a")
    page.wait_for_selector("#server-name")
    name = page.inner_text("#server-name")
    page.fill("#propose-reason", "seen in a complaint")
    page.click("#propose-block")
    page.wait_for_selector("#state")
    assert page.inner_text("#state") == "proposed" and name in page.inner_text("h1")
    assert "console" in page.inner_text("body")


def test_upload_a_capture(page: Any, live_sqlite: Live, tmp_path: Path) -> None:
    live = live_sqlite
    login(page, live, "rita")
    page.wait_for_selector("#whoami")
    page.goto(live.url + "/captures")
    page.set_input_files("#capture-file", str(DEMO_PCAP))
    page.click("#analyze")
    page.wait_for_selector("#summary", timeout=180_000)
    assert "flows" in page.inner_text("#summary")
    assert page.locator("#flows tbody tr").count() > 10
    assert page.locator("svg.chart rect").count() > 2
    shot(page, tmp_path, "capture")


def test_viewer_cannot_change_anything(page: Any, live_sqlite: Live, tmp_path: Path) -> None:
    live = live_sqlite
    login(page, live, "vic")
    page.wait_for_selector("#whoami")
    page.goto(live.url + "/review")
    page.wait_for_selector("#proposals")
    assert page.locator("#accept").count() == 0 and page.locator("#reject").count() == 0
    # a hand-made form post with the right CSRF token is still refused on the server
    csrf = page.get_attribute('input[name="csrf"]', "value")
    status = page.evaluate(
        """async ([csrf, id]) => {
            const body = new URLSearchParams({csrf, ids: id, decision: "accept", reason: "x"});
            const r = await fetch("/review/decide", {method: "POST", body});
            return r.status;
        }""",
        [csrf, str(live.proposal_ids[0])],
    )
    assert status == 403
    api = page.evaluate(
        """async (csrf) => {
            const f = new FormData();
            f.append("file", new Blob(["a.example\\n"]), "a.txt");
            const r = await fetch("/api/v1/register/imports",
                {method: "POST", headers: {"X-CSRF-Token": csrf}, body: f});
            return [r.status, (await r.json()).reason];
        }""",
        csrf,
    )
    assert api == [403, "console.forbidden"]
    page.goto(live.url + "/register/import")
    page.wait_for_selector("#error")
    assert "console.forbidden" in page.inner_text("#error")
    shot(page, tmp_path, "viewer-forbidden")
    # and a post without the CSRF token is refused even for an admin
    login(page, live, "ada")
    page.wait_for_selector("#whoami")
    status = page.evaluate(
        """async () => (await fetch("/tokens",
            {method: "POST", body: new URLSearchParams({name: "x"})})).status"""
    )
    assert status == 403
