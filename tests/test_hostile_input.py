"""Broken and hostile input (#13): values no patient can have are said, not used; dates and
durations that overflow leave the record out or checked without them, never a crash;
conflicting duplicates are a finding, never "last wins"; a damaged panel input keeps what
came before the damage; a bad output path is one line."""

from __future__ import annotations

import gzip
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds import load_engine
from cds.errors import InputError
from cds.io import Record, build_patient, patient_from_fhir
from cds.patient import MedicationOrder, Observation, Patient
from cds.synth import write_panel
from cds.units import LAB_UNITS

AS_OF = date(2026, 11, 26)
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
OXY = {"coding": [{"system": RX, "code": "1049621", "display": "oxycodone 5 MG Oral Tablet"}]}


@pytest.fixture(scope="module")
def engine() -> Any:
    return load_engine(["opioid-safety", "renal-hepatic-dosing", "label-dosing"])


def oxycodone(oid: str = "m1", **kw: Any) -> MedicationOrder:
    return MedicationOrder(id=oid, text="oxycodone 5 mg", dose=10, dose_unit="mg",
                           timing={"code": "Q6H"}, **kw)


def gabapentin() -> MedicationOrder:  # dosed by kidney function in the packs
    return MedicationOrder(id="g1", text="gabapentin 300 MG Oral Capsule", dose=600,
                           dose_unit="mg", timing={"code": "TID"})


def lab(kind: str, value: float, day: date) -> Observation:
    return Observation(kind=kind, value=value, unit=LAB_UNITS[kind], date=day)  # type: ignore[arg-type]


def issues(result: Any, check: str = "implausible") -> list[Any]:
    return [i for i in result.issues if i.check == check]


def rules(result: Any) -> set[str]:
    return {a.rule for a in result.alerts}


# --- values no patient can have ----------------------------------------------------------

@pytest.mark.parametrize(("kind", "value", "unit"), [
    ("creatinine", 0, "mg/dL"), ("creatinine", -1.2, "mg/dL"), ("creatinine", 95, "mg/dL"),
    ("creatinine", float("inf"), "mg/dL"), ("weight", 0, "kg"), ("weight", 7000, "kg"),
    ("egfr", -5, "mL/min/1.73m2"), ("albumin", 35, "g/dL"), ("inr", 0, "1"),
])
def test_an_implausible_lab_is_said_with_field_and_value(engine: Any, kind: str, value: float,
                                                         unit: str) -> None:
    p = Patient(id="p", birth_date=date(1950, 1, 1), sex="male", medications=[oxycodone()],
                observations=[Observation(kind=kind, value=value, unit=unit,  # type: ignore[arg-type]
                                          date=date(2026, 11, 1), code="x-1")])
    r = engine.evaluate(p, as_of=AS_OF)
    found = issues(r)
    assert len(found) == 1, r.issues
    assert found[0].medication == kind and f"{value:g}" in found[0].reason
    assert "Observation.value[x]" in (found[0].field or "") and "x-1" in (found[0].field or "")
    assert "data-quality/implausible-value" in rules(r)
    assert r.to_dict()["not_checked"][0]["check"] == "implausible"


def test_an_implausible_latest_creatinine_blocks_the_older_one(engine: Any) -> None:
    """The patient may have changed since the older value: kidney rules say they were not
    checked rather than deciding on a stale value."""
    def patient(latest: float) -> Patient:
        return Patient(id="p", birth_date=date(1940, 1, 1), sex="female",
                       medications=[gabapentin()], observations=[
                           lab("creatinine", 3.5, date(2026, 1, 10)),
                           lab("creatinine", latest, date(2026, 11, 1)),
                           lab("weight", 60, date(2026, 11, 1))])
    ok = engine.evaluate(patient(3.6), as_of=AS_OF)
    bad = engine.evaluate(patient(0), as_of=AS_OF)
    facts = engine.facts(patient(0), AS_OF)
    assert facts.renal.crcl is None and facts.renal.egfr is None
    assert facts.renal.rejected == ("creatinine 0 mg/dL on 2026-11-01",)
    dosing = {a.rule for a in ok.alerts if a.family == "renal"}
    assert dosing, ok.alerts  # a kidney dosing alert on the real value...
    (monitoring,) = [a for a in bad.alerts if a.family == "renal"]  # ...none on a guess, but
    assert monitoring.rule.endswith("renal-function-missing-or-stale")  # the check says why:
    assert "not checked: implausible creatinine 0 mg/dL" in monitoring.rationale


def test_plausible_extremes_are_used(engine: Any) -> None:
    p = Patient(id="p", birth_date=date(1900, 6, 1), sex="male", medications=[gabapentin()],
                observations=[lab("creatinine", 14.2, date(2026, 11, 1)),
                              lab("weight", 250, date(2026, 11, 1))])
    r = engine.evaluate(p, as_of=AS_OF)
    assert not issues(r) and engine.facts(p, AS_OF).age == 126


@pytest.mark.parametrize(("born", "words"), [
    (date(2027, 3, 1), "after the review date"), (date(1880, 1, 1), "146 years old")])
def test_an_implausible_birth_date_leaves_the_age_unknown(engine: Any, born: date,
                                                          words: str) -> None:
    p = Patient(id="p", birth_date=born, sex="male", medications=[oxycodone()])
    r = engine.evaluate(p, as_of=AS_OF)
    assert engine.facts(p, AS_OF).age is None
    (found,) = issues(r)
    assert words in found.reason and "Patient.birthDate" in (found.field or "")
    # an unknown age is inside the guideline's adult scope: the opioid is still checked
    assert not r.out_of_scope and "opioid-safety/mme-50" in rules(r)


# --- dates and durations that overflow ------------------------------------------------------

def _fhir_order(**kw: Any) -> dict[str, Any]:
    res = {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
           "intent": "order", "subject": {"reference": "Patient/p"},
           "medicationCodeableConcept": OXY,
           "dosageInstruction": [{"timing": {"repeat": {"frequency": 4, "period": 1,
                                                        "periodUnit": "d"}},
                                  "doseAndRate": [{"doseQuantity": {"value": 10,
                                                                    "unit": "mg"}}]}]}
    return res | kw


def _dispense(**kw: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationDispense", "id": "d1", "status": "completed",
            "subject": {"reference": "Patient/p"}, "medicationCodeableConcept": OXY,
            "whenHandedOver": "2026-11-01", "daysSupply": {"value": 30, "unit": "d"},
            "quantity": {"value": 30}} | kw


OVERFLOWING = {
    "authoredOn 9999-12-31": [_fhir_order(authoredOn="9999-12-31")],
    "expectedSupplyDuration 1e9 d": [_fhir_order(
        dispenseRequest={"expectedSupplyDuration": {"value": 1e9, "unit": "d"}})],
    "daysSupply 1e9": [_dispense(daysSupply={"value": 1e9, "unit": "d"})],
    "whenHandedOver 9999-12-20": [_dispense(whenHandedOver="9999-12-20")],
    "boundsDuration 1e12 d": [_fhir_order(authoredOn="2026-01-01", dosageInstruction=[{
        "timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d",
                              "boundsDuration": {"value": 1e12, "unit": "d"}}},
        "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg"}}]}])],
    "boundsPeriod end 9999-12-31": [_fhir_order(dosageInstruction=[{
        "timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d",
                              "boundsPeriod": {"start": "2026-01-01", "end": "9999-12-31"}}},
        "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg"}}]}])],
}


@pytest.mark.parametrize("case", sorted(OVERFLOWING))
def test_dates_and_durations_that_overflow_never_crash(engine: Any, case: str) -> None:
    built = build_patient([Record(r) for r in OVERFLOWING[case]], patient_id="p")
    r = engine.evaluate(built.patient, as_of=AS_OF)  # no OverflowError
    said = issues(r)
    if "bounds" in case:  # a course "until 9999" is open-ended: nothing implausible
        assert not said and r.mme.total == 60
        return
    assert said and any(v in said[0].reason for v in ("9999", "1e+09")), said
    assert said[0].order_id in ("m1", "d1") and said[0].field


def test_a_far_future_lab_date_is_not_taken_as_the_latest(engine: Any) -> None:
    p = Patient(id="p", birth_date=date(1950, 1, 1), sex="male", medications=[gabapentin()],
                observations=[lab("creatinine", 1.0, date(2026, 11, 1)),
                              lab("creatinine", 9.0, date(9999, 1, 1)),
                              lab("weight", 70, date(2026, 11, 1))])
    facts = engine.facts(p, AS_OF)
    assert facts.renal.creatinine is not None and facts.renal.creatinine.value == 1.0
    assert any("9999-01-01" in i.reason for i in facts.issues)


@settings(max_examples=60, deadline=None)
@given(supply=st.floats(min_value=1e-3, max_value=1e300, allow_nan=False),
       authored=st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_any_supply_and_date_is_checked_or_said(engine: Any, supply: float, authored: date) -> None:
    """Whatever the days' supply and date, the evaluation completes, and a value that is not
    used is named as a data-quality finding."""
    order = oxycodone(supply_days=supply, authored=authored)
    r = engine.evaluate(Patient(id="p", medications=[order]), as_of=AS_OF)
    dropped = supply > 366 or (authored - AS_OF).days > 366
    assert bool(issues(r)) == dropped


# --- conflicting duplicates ------------------------------------------------------------------

def _medication(mid: str, code: str, display: str) -> dict[str, Any]:
    return {"resourceType": "Medication", "id": mid,
            "code": {"coding": [{"system": RX, "code": code, "display": display}]}}


def _by_reference() -> list[dict[str, Any]]:
    order = _fhir_order(medicationReference={"reference": "Medication/med-1"})
    del order["medicationCodeableConcept"]
    return [order, _medication("med-1", "1049621", "oxycodone 5 MG Oral Tablet"),
            _medication("med-1", "308048", "alprazolam 0.5 MG Oral Tablet")]


def test_two_different_medications_with_one_id_are_never_last_wins() -> None:
    built = build_patient([Record(r) for r in _by_reference()], patient_id="p")
    assert not built.patient.medications
    (left,) = built.left_out
    assert "Medication/med-1 is given twice with different content" in left.reason
    assert "medicationReference.reference" in left.reason
    with pytest.raises(InputError, match="given twice with different content"):
        patient_from_fhir({"resourceType": "Bundle", "type": "collection",
                           "entry": [{"resource": r} for r in _by_reference()]})


def test_the_same_medication_twice_is_one() -> None:
    records = _by_reference()[:2]
    built = build_patient([Record(r) for r in (*records, records[1])], patient_id="p")
    assert len(built.patient.medications) == 1 and not built.left_out


# --- damaged panel input, bad output paths ---------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from cds.cli import app; app()", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_panel(120, tmp_path_factory.mktemp("hostile") / "export", seed=5, dirty=0)


def test_a_truncated_gzip_keeps_the_records_before_the_cut(export: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for f in export.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    lines = (src / "MedicationRequest.ndjson").read_bytes().splitlines()
    packed = gzip.compress(b"\n".join(lines) + b"\n")
    (src / "MedicationRequest.ndjson").unlink()
    (src / "MedicationRequest.ndjson.gz").write_bytes(packed[: len(packed) * 2 // 3])
    from cds.panel.run import run_panel

    info = run_panel(src, tmp_path / "out", packs=["opioid-safety"], as_of=AS_OF, quiet=True,
                     workers=1)
    damaged = info["damaged_files"]["MedicationRequest.ndjson.gz"]
    assert "ends early or is damaged after line" in damaged
    read = info["counts"]["records_by_type"]["MedicationRequest"]
    assert 0.3 * len(lines) < read < len(lines)  # what came before the cut was reviewed
    quarantine = [orjson.loads(x) for x in (tmp_path / "out" / "quarantine.ndjson").read_bytes()
                  .splitlines()]
    cut = [q for q in quarantine if "ends early" in q["reason"]]
    assert len(cut) == 1 and cut[0]["file"] == "MedicationRequest.ndjson.gz"
    assert "Input file damaged: MedicationRequest.ndjson.gz" in (
        tmp_path / "out" / "report.html").read_text()


def test_not_gzip_named_gz_and_bad_output_paths_are_one_line(export: Path,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Patient.ndjson.gz").write_bytes((export / "Patient.ndjson").read_bytes())
    res = _cli("panel", str(src), "--out", str(tmp_path / "out"), "-q")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: Patient.ndjson.gz: named .gz but not gzip data (an empty file, or NDJSON not "
        "compressed): compress it, or rename it without .gz"]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (["panel", str(export), "--out", str(blocker / "out"), "-q"],
                 ["synth", "--patients", "2", "--out", str(blocker / "out")]):
        res = _cli(*args)
        assert res.returncode == 2, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Not a directory" in res.stderr and "Traceback" not in res.stderr
