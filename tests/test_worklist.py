"""The served worklist (#15) through HTTP, on SQLite and PostgreSQL: who may see and do what,
the queue's filters, counts and paging, a decision recorded from a patient's page, the
letters and the dashboard. The browser tests are in test_worklist_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cds.decisions.store import DecisionStore
from cds.panel.run import run_panel
from cds.synth import write_panel
from cds.worklist import data
from cds.worklist.app import WorklistSettings, create_app
from cds.worklist.auth import Accounts
from cds.worklist.facets import QueueIndex

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_panel(80, tmp_path_factory.mktemp("wl") / "export", seed=17, dirty=0.02)


@pytest.fixture()
def served(panel: Path, tmp_path: Path, db_url: str) -> Iterator[tuple[TestClient, Path, str]]:
    out = tmp_path / "out"
    run_panel(panel, out, packs=["opioid-safety", "interactions-core", "cns-burden"],
              as_of=date(2026, 11, 26), quiet=True, workers=1, db=db_url)
    with DecisionStore(db_url) as store:
        accounts = Accounts(store)
        accounts.add_user("jane", "pharmacist", PASSWORD)
        accounts.add_user("root", "admin", PASSWORD)
        prescriber = _a_prescriber(out)
        accounts.add_user("drx", "prescriber", PASSWORD, prescriber_name=prescriber)
    app = create_app(WorklistSettings(db=db_url, panel=out,
                                      packs=["opioid-safety", "interactions-core", "cns-burden"]))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, out, prescriber


def _a_prescriber(out: Path) -> str:
    import csv

    with (out / "alerts.csv").open(newline="", encoding="utf-8") as fh:
        return next(r["prescriber"].split("; ")[0] for r in csv.DictReader(fh) if r["prescriber"])


def login(client: TestClient, name: str) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    r = client.post("/login", data={"name": name, "password": PASSWORD,
                                    "csrf_token": token.group(1), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303, r.text


def csrf(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m
    return m.group(1)


def test_logged_out_goes_to_login_and_pages_are_not_cached(served: Any) -> None:
    client, _, _ = served
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    login(client, "jane")
    r = client.get("/")
    assert r.status_code == 200
    assert "no-store" in r.headers["cache-control"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text and "style=" not in r.text  # nothing inline


def test_too_many_failed_logins_answer_429_with_retry_after(served: Any) -> None:
    client, _, _ = served
    for i in range(6):
        page = client.get("/login")
        r = client.post("/login", data={"name": "jane", "password": f"guess {i}",
                                        "csrf_token": csrf(page.text), "next": "/"},
                        follow_redirects=False)
        assert r.status_code == (401 if i < 5 else 429)
    assert 0 < int(r.headers["retry-after"]) <= 15 * 60
    assert "Not checked: too many failed logins: try again in" in r.text


def test_queue_filters_counts_and_paging(served: Any, db_url: str) -> None:
    client, out, _ = served
    login(client, "jane")
    page = client.get("/")
    total = int(re.search(r"Queue <span class=\"muted\">· (\d+) patient", page.text).group(1))
    assert total == 80
    assert page.text.count('href="/patients/') == data.PAGE
    second = client.get("/?page=2")
    assert second.text.count('href="/patients/') == total - data.PAGE
    with DecisionStore(db_url) as store:
        run = data.load_run(store, out)
        index = QueueIndex(store, run.run_id, data.MME_BANDS)
        truth = _worklist_rows(store, run.run_id)
        for f in (data.Filters(severity="high"), data.Filters(family="mme"),
                  data.Filters(mme="90+"), data.Filters(status="new", role="prescriber"),
                  data.Filters(severity="high", family="mme"), data.Filters(q="p0")):
            got = data.queue(store, run, index, f)
            assert all(r["status"] for r in got.rows)
            assert got.total == len(_matching(truth, f)), f  # what the tables say
            ranks = [r["rank"] for r in got.rows]
            assert ranks == sorted(ranks)
            # the count a filter value shows is what choosing it gives
            everything = data.queue(store, run, index, data.Filters())
            for dim in ("severity", "family"):
                for value, n in everything.counts[dim].items():
                    assert data.queue(store, run, index,
                                      data.Filters(**{dim: value})).total == n
        high = data.queue(store, run, index, data.Filters(severity="high"))
        r = client.get("/?severity=high")
        assert f"· {high.total} patient" in r.text


def test_a_decision_from_the_patient_page_is_stored_audited_and_shown(served: Any,
                                                                       db_url: str) -> None:
    client, out, _ = served
    login(client, "jane")
    queue = client.get("/")
    pid = re.search(r'href="/patients/([^"]+)"', queue.text).group(1)
    page = client.get(f"/patients/{pid}")
    assert page.status_code == 200 and "Values the rules used" in page.text
    key = re.search(r'name="alert_key" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": csrf(page.text), "alert_key": key, "decision_version": "0",
            "state": "overridden", "reason": "benefit-outweighs-risk", "note": "seen in clinic"}
    r = client.post(f"/patients/{pid}/decide", data=form)
    assert r.status_code == 200 and "Recorded: overridden" in r.text
    assert "overridden</strong> by jane" in r.text and "seen in clinic" in r.text
    again = client.post(f"/patients/{pid}/decide", data=form)  # the same version: a conflict
    assert "since version 0 was read" in again.text
    with DecisionStore(db_url) as store:
        (d,) = store.history(pid, key)
        assert (d.state, d.author, d.version) == ("overridden", "jane", 1)
        events = Accounts(store).audit_log(50, patient_id=pid)
    assert {e.action for e in events} >= {"view-patient", "decide"}
    # an override without a reason is refused, naming the field
    form2 = {**form, "csrf_token": csrf(again.text), "decision_version": "1", "reason": ""}
    assert "an override needs a reason" in client.post(f"/patients/{pid}/decide",
                                                       data=form2).text


def test_a_form_without_its_csrf_token_is_refused(served: Any) -> None:
    client, _, _ = served
    login(client, "jane")
    pid = re.search(r'href="/patients/([^"]+)"', client.get("/").text).group(1)
    r = client.post(f"/patients/{pid}/decide", data={"alert_key": "x", "state": "accepted"})
    assert r.status_code == 403


def test_a_prescriber_sees_only_their_patients_and_cannot_decide(served: Any) -> None:
    client, out, prescriber = served
    login(client, "drx")
    queue = client.get("/")
    mine = set(re.findall(r'href="/patients/([^"]+)"', queue.text))
    assert mine and "Prescriber<select" not in queue.text
    import csv

    with (out / "alerts.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    theirs = {r["patient_id"] for r in rows if prescriber in r["prescriber"].split("; ")}
    others = {r["patient_id"] for r in rows} - theirs
    assert mine <= theirs
    page = client.get(f"/patients/{sorted(mine)[0]}")
    assert page.status_code == 200 and 'action="/patients/' in page.text
    assert "/decide" not in page.text and "/comment" in page.text
    assert client.get(f"/patients/{sorted(others)[0]}").status_code == 404
    r = client.post(f"/patients/{sorted(mine)[0]}/decide",
                    data={"csrf_token": csrf(page.text), "alert_key": "x", "state": "accepted"})
    assert r.status_code == 403
    key = re.search(r'name="alert_key" value="([^"]+)"', page.text).group(1)
    r = client.post(f"/patients/{sorted(mine)[0]}/comment",
                    data={"csrf_token": csrf(page.text), "alert_key": key,
                          "text": "will taper next visit"})
    assert "Comment recorded" in r.text and "will taper next visit" in r.text
    assert client.get("/dashboard").status_code == 403


def test_letters_and_dashboard(served: Any) -> None:
    client, _, _ = served
    login(client, "jane")
    queue = client.get("/")
    pid = re.search(r'href="/patients/([^"]+)"', queue.text).group(1)
    page = client.get(f"/patients/{pid}")
    key = re.search(r'name="alert_key" value="([^"]+)"', page.text).group(1)
    client.post(f"/patients/{pid}/decide", data={
        "csrf_token": csrf(page.text), "alert_key": key, "decision_version": "0",
        "state": "accepted", "note": "please taper"})
    index = client.get("/letters")
    link = re.search(r'href="/letters/([^"]+)"', index.text)
    assert link, index.text
    letter = client.get(f"/letters/{link.group(1)}")
    assert letter.status_code == 200 and "please taper" in letter.text
    assert "@media print" in letter.text
    dash = client.get("/dashboard")
    assert dash.status_code == 200
    for title in ("Patients reviewed per week", "Acceptance and override per rule",
                  "Naloxone coverage"):
        assert title in dash.text
    assert dash.text.count("<svg") >= 6


def test_admin_adds_users_and_reads_the_audit_trail(served: Any) -> None:
    client, _, _ = served
    login(client, "root")
    page = client.get("/admin/users")
    assert page.status_code == 200 and "login" in page.text
    r = client.post("/admin/users", data={"csrf_token": csrf(page.text), "name": "bob",
                                          "role": "pharmacist", "password": "short"})
    assert "Not added" in r.text
    r = client.post("/admin/users", data={"csrf_token": csrf(r.text), "name": "bob",
                                          "role": "pharmacist", "password": PASSWORD})
    assert "Added bob" in r.text


def test_serving_refuses_a_public_address_without_tls(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", "from cds.cli import app; app()", "review",
                          "serve", "--panel", str(tmp_path), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_patient_page_without_the_runs_values_says_so(served: Any, db_url: str) -> None:
    """An older run folder has no patients.parquet: the page says the values are missing
    instead of failing."""
    _, out, _ = served
    (out / "patients.parquet").unlink()
    app = create_app(WorklistSettings(db=db_url, panel=out,
                                      packs=["opioid-safety", "interactions-core", "cns-burden"]))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        login(client, "jane")
        pid = re.search(r'href="/patients/([^"]+)"', client.get("/").text).group(1)
        page = client.get(f"/patients/{pid}")
    assert page.status_code == 200
    assert "values for this patient are not available" in page.text


def _worklist_rows(store: DecisionStore, run_id: int) -> tuple[list[Any], list[Any]]:
    from sqlalchemy import select

    from cds.worklist import tables as w

    with store.engine.connect() as conn:
        patients = conn.execute(select(w.worklist_patients).where(
            w.worklist_patients.c.run_id == run_id)).all()
        alerts = conn.execute(select(w.worklist_alerts).where(
            w.worklist_alerts.c.run_id == run_id)).all()
    return patients, alerts


def _matching(truth: tuple[list[Any], list[Any]], f: data.Filters) -> set[str]:
    """The patients a filter selects, worked out row by row (the index's reference)."""
    patients, alerts = truth
    lo, hi = data.MME_BANDS.get(f.mme or "", (float("-inf"), float("inf")))
    text = (f.q or "").lower()
    ok = {p.patient_id for p in patients
          if (not f.status or p.status == f.status) and lo <= p.mme_total < hi
          and (not text or p.patient_id.lower().startswith(text)
               or (p.mrn or "").lower().startswith(text) or text in (p.patient_name or "").lower())}
    if f.severity or f.family or f.role:
        ok &= {a.patient_id for a in alerts if all(
            not getattr(f, dim) or getattr(a, dim) == getattr(f, dim)
            for dim in ("severity", "family", "role"))}
    return ok
