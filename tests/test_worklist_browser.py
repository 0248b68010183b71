"""The served worklist in a real browser (Debian's chromium, driven by Playwright): log in,
filter the queue, open a patient, record an override with a reason, see it in the history
and on the dashboard, print a letter; a prescriber cannot decide nor see another
prescriber's patients; a form without its CSRF token is refused; a logged-out user is sent
to the login page.

The screenshots in docs/review.md are made here: `CDS_SCREENSHOTS=docs/img pytest
tests/test_worklist_browser.py` writes them (else they go to a temporary folder).
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from cds.decisions.store import DecisionStore
from cds.panel.run import run_panel
from cds.synth import write_panel
from cds.worklist.app import WorklistSettings, create_app
from cds.worklist.auth import Accounts

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                                          "(apt-get install chromium)")]
PASSWORD = "correct horse battery staple"
PACKS = ["opioid-safety", "interactions-core", "cns-burden"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, set[str]]]:
    folder = tmp_path_factory.mktemp("browser")
    src = write_panel(60, folder / "export", seed=5, dirty=0)
    db = str(folder / "decisions.sqlite3")
    run_panel(src, folder / "out", packs=PACKS, as_of=date(2026, 11, 26), quiet=True, workers=1,
              db=db)
    with (folder / "out" / "alerts.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    prescriber = next(r["prescriber"].split("; ")[0] for r in rows if r["prescriber"])
    theirs = {r["patient_id"] for r in rows if prescriber in r["prescriber"].split("; ")}
    with DecisionStore(db) as store:
        accounts = Accounts(store)
        accounts.add_user("jane", "pharmacist", PASSWORD, display_name="Jane Park, PharmD")
        accounts.add_user("drx", "prescriber", PASSWORD, prescriber_name=prescriber)
    app = create_app(WorklistSettings(db=db, panel=folder / "out", packs=PACKS,
                                      pharmacy="Clinic pharmacy"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield base, prescriber, theirs
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def shots() -> Path:
    folder = Path(os.environ.get("CDS_SCREENSHOTS") or "")
    if not os.environ.get("CDS_SCREENSHOTS"):
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / "cds-worklist-shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def login(page: Any, base: str, name: str) -> None:
    page.goto(base + "/")
    assert "/login" in page.url  # logged out: sent to the login page
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def test_the_pharmacists_day(site: Any, browser: Any) -> None:
    base, _, _ = site
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    login(page, base, "jane")
    assert page.locator("#queue tbody tr").count() == 50
    page.select_option("select[name=severity]", "high")  # the script submits on change
    page.wait_for_url("**severity=high**")
    page.screenshot(path=str(shots() / "worklist-queue.png"))
    high = page.locator("#queue tbody tr").count()
    assert 0 < high <= 50
    assert all(page.locator("#queue tbody tr .sev").nth(i).inner_text() == "high"
               for i in range(high))
    page.locator("#queue tbody tr a").first.click()
    page.wait_for_url("**/patients/**")
    pid = page.url.rsplit("/", 1)[1]
    first = page.locator("section.alert").first
    first.locator("select[name=state]").select_option("overridden")
    first.locator("select[name=reason]").select_option("patient-monitored")
    first.locator("textarea[name=note]").fill("Monitored monthly in clinic")
    first.locator("button[type=submit]").click()
    page.wait_for_url(f"**/patients/{pid}?flash=**")
    assert "Recorded: overridden" in page.locator(".flash").inner_text()
    history = page.locator("section.alert").first.locator("ol.history").inner_text()
    assert "overridden by jane" in history and "Monitored monthly" in history
    page.keyboard.press("?")  # the shortcuts help (the app's own script)
    assert page.locator("#shortcuts").is_visible()
    page.keyboard.press("?")
    page.screenshot(path=str(shots() / "worklist-patient.png"))
    page.goto(base + "/dashboard")
    table = page.locator("section.chart", has_text="Override reasons")
    table.locator("summary").click()
    assert "patient-monitored" in table.inner_text()
    page.screenshot(path=str(shots() / "worklist-dashboard.png"), full_page=True)
    # a recommendation accepted, then its letter printed
    page.goto(base + f"/patients/{pid}")
    second = page.locator("section.alert").nth(1)
    if second.count():
        second.locator("select[name=state]").select_option("accepted")
        second.locator("textarea[name=note]").fill("Please taper by 10% a week")
        second.locator("button[type=submit]").click()
        page.wait_for_url(f"**/patients/{pid}?flash=**")
        page.goto(base + "/letters")
        page.locator("table a").first.click()
        page.emulate_media(media="print")
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 5000
        assert "Please taper" in page.content()
    assert not errors, errors


def test_a_prescriber_cannot_decide_nor_see_others(site: Any, browser: Any) -> None:
    base, _, theirs = site
    context = browser.new_context()
    page = context.new_page()
    login(page, base, "drx")
    shown = {h.rsplit("/", 1)[1] for h in page.locator("#queue a[href^='/patients/']")
             .evaluate_all("els => els.map(e => e.getAttribute('href'))")}
    assert shown and shown <= theirs
    page.goto(base + f"/patients/{sorted(shown)[0]}")
    assert page.locator("form[action$='/decide']").count() == 0
    assert page.locator("form[action$='/comment']").count() > 0
    other = page.goto(base + "/patients/not-theirs-0")
    assert other is not None and other.status == 404
    # a forged decision (no CSRF token) is refused even from a logged-in browser
    r = page.request.post(base + f"/patients/{sorted(shown)[0]}/decide",
                          form={"alert_key": "x", "state": "accepted"})
    assert r.status == 403
    context.close()
