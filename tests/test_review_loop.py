"""The pharmacist's loop end to end, with real processes (#14): a panel run, a filled-in
worklist imported, the record changing, the next run telling what is new, changed, unchanged
and gone; the same against SQLite and PostgreSQL. And through the CDS Hooks service: an
override suppresses the card on the next call, a dose increase brings it back."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from cds.decisions.store import DecisionStore
from cds.service.app import create_app
from cds.service.config import Settings
from cds.synth import write_panel

AS_OF = "2026-11-26"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-c", "from cds.cli import app; app()", *args],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _panel(src: Path, out: Path, db: str) -> dict[str, Any]:
    _cli("panel", str(src), "--out", str(out), "--db", db, "--pack", "opioid-safety",
         "--pack", "interactions-core", "--as-of", AS_OF, "--workers", "1", "-q")
    return dict(orjson.loads((out / "run.json").read_bytes()))


def _requests(src: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in
            (src / "MedicationRequest.ndjson").read_bytes().splitlines() if line.strip()]


def _dose_times(res: dict[str, Any], factor: float) -> None:
    for dosage in res.get("dosageInstruction") or ():
        for dr in dosage.get("doseAndRate") or ():
            q = dr.get("doseQuantity")
            if isinstance(q, dict) and isinstance(q.get("value"), int | float):
                q["value"] = q["value"] * factor


@pytest.mark.slow
def test_decisions_carry_forward_from_one_run_to_the_next(tmp_path: Path, db_url: str) -> None:
    src = write_panel(120, tmp_path / "export", seed=21, dirty=0)
    first = _panel(src, tmp_path / "run1", db_url)
    assert first["statuses"]["new"] == first["counts"]["alerts"] > 0
    alerts = _rows(tmp_path / "run1" / "alerts.csv")
    requests = {r["id"]: r for r in _requests(src)}

    def by_requests(row: dict[str, str]) -> bool:
        return all(o in requests for o in row["order_ids"].split("; "))

    # three decisions on three patients: an MME alert overridden (its dose will rise), an
    # interaction accepted (it will stand), an interaction that will be gone (an order stops)
    mme = next(r for r in alerts if r["family"] == "mme" and by_requests(r))
    pairs = [r for r in alerts if r["family"] == "interaction" and by_requests(r)
             and r["patient_id"] != mme["patient_id"]]
    stands = pairs[0]
    goes = next(r for r in pairs[1:] if r["patient_id"] != stands["patient_id"]
                and sum(a["patient_id"] == r["patient_id"] for a in alerts) == 1)
    for row, (state, reason) in ((mme, ("overridden", "taper-plan")),
                                 (stands, ("accepted", "")), (goes, ("accepted", ""))):
        row.update(decision=state, reason=reason, note="reviewed with the prescriber")
    filled = tmp_path / "filled.csv"
    with filled.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(alerts[0]))
        w.writeheader()
        w.writerows(alerts)
    res = _cli("review", "import", str(filled), "--db", db_url, "--author", "jane",
               "--pack", "opioid-safety", "--pack", "interactions-core")
    assert "applied 3 decision(s)" in res.stdout

    # next month: the MME patient's opioid dose tripled, one order of the other pair stopped
    changed_ids = set(mme["order_ids"].split("; "))
    stopped = goes["order_ids"].split("; ")[0]
    kept = []
    for r in _requests(src):
        if r["id"] in changed_ids:
            _dose_times(r, 3)
        if r["id"] != stopped:
            kept.append(r)
    (src / "MedicationRequest.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in kept))
    second = _panel(src, tmp_path / "run2", db_url)

    rows = _rows(tmp_path / "run2" / "alerts.csv")
    mine = {(r["patient_id"], r["alert_key"]): r for r in rows}
    again = [r for r in rows if r["patient_id"] == mme["patient_id"] and r["family"] == "mme"]
    assert [r["status"] for r in again] == ["changed"], again
    assert "rose" in again[0]["changed_because"] or "moved" in again[0]["changed_because"]
    assert mine[(stands["patient_id"], stands["alert_key"])]["status"] == "unchanged"
    assert mine[(stands["patient_id"], stands["alert_key"])]["decision"] == "accepted"
    gone = mine[(goes["patient_id"], goes["alert_key"])]
    assert gone["status"] == "gone" and gone["decision"] == "accepted"
    # the patient whose alert changed is first; no one else has anything new or changed
    worklist = _rows(tmp_path / "run2" / "worklist.csv")
    assert worklist[0]["patient_id"] == mme["patient_id"]
    assert {w["status"] for w in worklist[1:]} <= {"open", "unchanged", "gone", ""}
    assert second["statuses"]["unchanged"] >= 1 and second["statuses"]["gone"] >= 1
    # the decisions are on file, in order, with who and when
    with DecisionStore(db_url) as store:
        history = store.history()
    assert sorted((d.patient_id, d.state, d.author, d.version) for d in history) == sorted([
        (mme["patient_id"], "overridden", "jane", 1), (stands["patient_id"], "accepted", "jane", 1),
        (goes["patient_id"], "accepted", "jane", 1)])


# -- the service -------------------------------------------------------------------------------

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _order(rid: str, per_day: int) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": "active",
            "intent": "order", "subject": {"reference": "Patient/p1"},
            "authoredOn": "2026-11-01",
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": "1049621",
                                                      "display": "oxycodone 5 MG Oral Tablet"}]},
            "dosageInstruction": [{"timing": {"repeat": {"frequency": per_day, "period": 1,
                                                         "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 10,
                                                                     "unit": "mg"}}]}]}


def _call(client: TestClient, per_day: int) -> list[dict[str, Any]]:
    body = {"hookInstance": "d1bdbc3a-7d5e-4c1d-9d61-3a5c8b7a6e10", "hook": "patient-view",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {
                "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01",
                            "gender": "male"},
                "medications": {"resourceType": "Bundle", "type": "searchset",
                                "entry": [{"resource": _order("m1", per_day)}]},
                **{k: {"resourceType": "Bundle", "type": "searchset", "entry": []}
                   for k in ("dispenses", "creatinine", "egfr", "weight")}}}
    r = client.post("/cds-services/patient-view", json=body)
    assert r.status_code == 200, r.text
    return list(r.json()["cards"])


@pytest.fixture()
def service(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    settings = Settings(feedback_db=tmp_path / "feedback.sqlite3", decisions_db=db_url,
                        packs=["opioid-safety"])
    with TestClient(create_app(settings, allow_unsigned=True)) as client:
        yield client


def test_an_override_holds_the_card_back_until_the_dose_rises(service: TestClient) -> None:
    cards = _call(service, per_day=4)  # 60 MME/day
    mme = next(c for c in cards if "MME/day" in c["summary"])
    fb = {"feedback": [{"card": mme["uuid"], "outcome": "overridden",
                        "overrideReason": {"reason": {"code": "taper-plan",
                                                      "system": "urn:cds:CodeSystem:override-reason"},
                                           "userComment": "taper agreed"},
                        "outcomeTimestamp": "2026-11-26T10:00:00Z"}]}
    r = service.post("/cds-services/patient-view/feedback", json=fb)
    assert r.status_code == 200 and r.json()["decisions"] == 1, r.text
    again = _call(service, per_day=4)
    assert not [c for c in again if "MME/day" in c["summary"]]  # held back: nothing changed
    assert len(again) == len(cards) - 1
    higher = _call(service, per_day=5)  # 75 MME/day: the decision was made on 60
    back = [c for c in higher if "MME/day" in c["summary"]]
    assert back and "Re-opened" in back[0]["detail"] and "rose from 60 to 75" in back[0]["detail"]


def test_panel_fhir_export_validates(tmp_path: Path) -> None:
    """`cds panel --fhir`: one DetectedIssue per alert key of the run, each valid FHIR."""
    from fhir.resources.R4B.detectedissue import DetectedIssue  # R4 and R4B agree on it

    from cds.panel.run import run_panel

    src = write_panel(40, tmp_path / "export", seed=8, dirty=0)
    info = run_panel(src, tmp_path / "out", packs=["opioid-safety", "interactions-core"],
                     as_of=date(2026, 11, 26), quiet=True, workers=1,
                     fhir=True)
    lines = (tmp_path / "out" / "DetectedIssue.ndjson").read_bytes().splitlines()
    keys = {(r["patient_id"], r["alert_key"]) for r in _rows(tmp_path / "out" / "alerts.csv")}
    assert len(lines) == len(keys) == info["fhir"]["DetectedIssue.ndjson"] > 0
    for line in lines:
        DetectedIssue.model_validate(orjson.loads(line))


def test_a_merge_that_fails_leaves_the_store_as_it_was(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's write runs beside the merge; a merge that fails rolls it back, and the
    resumed run records the run once."""
    from sqlalchemy import func, select

    import cds.panel.run as panel_run
    from cds.decisions import schema as t
    from cds.decisions.store import DecisionStore
    from cds.synth import write_panel

    src = write_panel(30, tmp_path / "export", seed=5)
    db = str(tmp_path / "d.sqlite3")
    real = panel_run._merge

    def broken(*args: object, **kwargs: object) -> object:
        raise OSError("disk full")

    monkeypatch.setattr(panel_run, "_merge", broken)
    with pytest.raises(OSError):
        panel_run.run_panel(src, tmp_path / "out", as_of=date(2026, 11, 26), quiet=True,
                            workers=1, db=db)
    with DecisionStore(db) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.runs)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(t.sightings)).scalar() == 0
    monkeypatch.setattr(panel_run, "_merge", real)
    info = panel_run.run_panel(src, tmp_path / "out", as_of=date(2026, 11, 26), quiet=True,
                               workers=1, db=db, resume=True)
    with DecisionStore(db) as store, store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.runs)).scalar() == 1
        n = conn.execute(select(func.count()).select_from(t.sightings)).scalar()
        alerts = conn.execute(select(t.runs.c.alerts)).scalar()
    # one sighting per alert key (two orders of one drug fire one key)
    assert alerts == sum(info["statuses"].values()) and 0 < n <= alerts
