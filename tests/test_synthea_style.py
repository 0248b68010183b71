"""A Synthea-style Bulk Data export (SCD codes, unitless tablet doses, no routes, deceased
patients, stopped orders), reviewed as a panel: no deceased patient on the worklist, and every
active medication either assessed or listed as not assessed with its reason."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds.engine.evaluator import load_engine
from cds.io import Record, build_patient
from cds.panel.run import run_panel
from cds.synth import write_panel

AS_OF = date(2026, 11, 26)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_panel(150, tmp_path_factory.mktemp("synthea") / "export", seed=5,
                       style="synthea", dirty=0.0)


def _records(src: Path) -> dict[str, list[dict[str, Any]]]:
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in sorted(src.glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            res = orjson.loads(line)
            if res["resourceType"] == "Patient":
                by_patient[res["id"]].append(res)
            elif "subject" in res:
                by_patient[res["subject"]["reference"].removeprefix("Patient/")].append(res)
    return by_patient


def test_records_look_like_synthea(export: Path) -> None:
    lines = (export / "MedicationRequest.ndjson").read_bytes().splitlines()
    doses = [orjson.loads(x)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
             for x in lines if b"dosageInstruction" in x]
    assert doses and all(set(d) == {"value"} for d in doses)  # no unit anywhere
    assert any(b'"deceasedDateTime"' in x for x in (export / "Patient.ndjson").read_bytes().splitlines())
    assert not (export / "MedicationDispense.ndjson").read_bytes()


def test_the_panel_reviews_it_without_deceased_patients_and_nothing_unsaid(
        export: Path, tmp_path: Path) -> None:
    info = run_panel(export, tmp_path / "out", workers=1, as_of=AS_OF, quiet=True)
    records = _records(export)
    deceased = {pid for pid, rs in records.items()
                if any(r["resourceType"] == "Patient" and "deceasedDateTime" in r for r in rs)}
    assert deceased and info["counts"]["not_reviewed_deceased"] == len(deceased)
    with (tmp_path / "out" / "worklist.csv").open() as fh:
        worklist = {row["patient_id"]: row for row in csv.DictReader(fh)}
    assert not deceased & set(worklist)
    assert set(worklist) == set(records) - deceased

    engine = load_engine()
    medications = {f"Medication/{r['id']}": r for r in
                   (orjson.loads(x) for x in (export / "Medication.ndjson").read_bytes().splitlines())}
    counted = 0
    for pid in sorted(set(records) - deceased):
        built = build_patient([Record(r) for r in records[pid]], patient_id=pid,
                              medications=medications)
        facts = engine.facts(built.patient, AS_OF)
        result = engine.evaluate(built.patient, AS_OF)
        said = {i.order_id for i in result.issues}
        for order in built.patient.medications:
            if not order.is_current:
                continue
            assessed = [m for m in facts.meds if m.order_id == order.id]
            assert assessed or order.id in said, (pid, order.id, order.label)
            if assessed and assessed[0].daily:
                counted += 1
        if said:  # what was not assessed reaches the worklist
            assert int(worklist[pid]["not_assessed"]) >= len(said)
    assert counted > 100  # unitless tablet doses are counted (as that many tablets)
