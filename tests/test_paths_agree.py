"""The same patient gives the same result on every path: `cds check` (a Bundle), the CDS Hooks
service (prefetch split over keys) and the panel (Bulk Data lines grouped per patient) build
the patient with one builder and one status policy, so generated records give equal
`Result.to_dict()` results through all three."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from products import PRODUCTS, dose_unit

from cds.engine.evaluator import load_engine
from cds.io import Record, build_patient, patient_from_fhir
from cds.service.assemble import assemble

AS_OF = date(2026, 11, 26)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
ENGINE = load_engine()
STATUSES = ["active", "on-hold", "completed", "stopped", "cancelled", "entered-in-error",
            "draft", "unknown"]


@st.composite
def med_request(draw: st.DrawFn, i: int, pid: str) -> dict[str, Any]:
    rxcui, name, form, _ = draw(st.sampled_from(PRODUCTS))
    unit = dose_unit(form)
    concept: dict[str, Any] = ({"coding": [{"system": RXNORM, "code": rxcui, "display": name}]}
                               if draw(st.booleans()) else {"text": name})
    dose: dict[str, Any] = {"value": draw(st.sampled_from([1, 2, 5]))}
    if draw(st.integers(0, 4)):  # mostly with a unit; sometimes without (a count)
        dose["unit"] = unit
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": f"m{i}", "intent": "order",
        "status": draw(st.sampled_from(STATUSES)),
        "subject": {"reference": draw(st.sampled_from(
            [f"Patient/{pid}", f"https://ehr.example.org/fhir/Patient/{pid}"]))},
        "authoredOn": (AS_OF - timedelta(days=draw(st.integers(0, 300)))).isoformat(),
        "medicationCodeableConcept": concept,
        "dosageInstruction": [{"timing": {"repeat": {"frequency": draw(st.integers(1, 4)),
                                                     "period": 1, "periodUnit": "d"}},
                               "doseAndRate": [{"doseQuantity": dose}]}],
        "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "unit": "days",
                                                       "code": "d"}},
    }
    if draw(st.booleans()):
        res["requester"] = {"display": draw(st.sampled_from(["Dr. A", "Dr. B"]))}
    return res


@st.composite
def dispense(draw: st.DrawFn, i: int, pid: str) -> dict[str, Any]:
    rxcui, name, form, _ = draw(st.sampled_from(PRODUCTS))
    return {"resourceType": "MedicationDispense", "id": f"d{i}",
            "status": draw(st.sampled_from(["completed", "cancelled", "entered-in-error"])),
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxcui,
                                                      "display": name}]},
            "whenHandedOver": (AS_OF - timedelta(days=draw(st.integers(0, 170)))).isoformat(),
            "daysSupply": {"value": 30, "unit": "days", "code": "d"},
            "quantity": {"value": 60, "unit": dose_unit(form)}}


@st.composite
def patient_records(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    pid = draw(st.sampled_from(["p1", "a-b-2"]))
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid,
                               "gender": draw(st.sampled_from(["female", "male"])),
                               "birthDate": f"{draw(st.integers(1930, 1990))}-05-01"}
    if draw(st.integers(0, 9)) == 0:
        patient["deceasedDateTime"] = "2026-06-01"
    records = [patient]
    records += [draw(med_request(i, pid)) for i in range(draw(st.integers(0, 6)))]
    records += [draw(dispense(i, pid)) for i in range(draw(st.integers(0, 3)))]
    for code, value, unit in (("29463-7", draw(st.integers(40, 120)), "kg"),
                              ("2160-0", draw(st.sampled_from([0.7, 1.2, 2.5])), "mg/dL")):
        if draw(st.booleans()):
            records.append({"resourceType": "Observation", "id": f"o{code}", "status": "final",
                            "subject": {"reference": f"Patient/{pid}"},
                            "code": {"coding": [{"system": LOINC, "code": code}]},
                            "effectiveDateTime": "2026-10-01",
                            "valueQuantity": {"value": value, "unit": unit}})
    return pid, records


def _by_check(records: list[dict[str, Any]]) -> dict[str, Any]:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in records]}
    return ENGINE.evaluate(patient_from_fhir(bundle), as_of=AS_OF).to_dict()


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r} for r in resources]}


def _by_service(pid: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    def of(*types: str) -> list[dict[str, Any]]:
        return [r for r in records if r["resourceType"] in types]

    prefetch = {"patient": of("Patient")[0], "medications": _searchset(of("MedicationRequest")),
                "dispenses": _searchset(of("MedicationDispense")),
                "observations": _searchset(of("Observation"))}
    built = assemble(f"Patient/{pid}".removeprefix("Patient/"), prefetch, {}, with_drafts=False)
    assert built.problems == []
    return ENGINE.evaluate(built.patient, as_of=AS_OF).to_dict()


def _by_panel(pid: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """As a shard builds a patient: its lines (JSON round trip), the patient id of the
    partition, Medication resources from their own file."""
    lines = [orjson.loads(orjson.dumps(r)) for r in records]
    built = build_patient([Record(r, None, f"MedicationRequest.ndjson:{n}", n)
                           for n, r in enumerate(lines)], patient_id=pid, medications={})
    assert built.left_out == []
    return ENGINE.evaluate(built.patient, as_of=AS_OF).to_dict()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patient_records())
def test_the_three_paths_give_the_same_result(case: tuple[str, list[dict[str, Any]]]) -> None:
    pid, records = case
    by_check = _by_check(records)
    assert _by_service(pid, records) == by_check
    assert _by_panel(pid, records) == by_check


def test_a_cancelled_order_is_in_no_path_and_no_history() -> None:
    pid = "p1"
    cancelled = {"resourceType": "MedicationRequest", "id": "m1", "status": "cancelled",
                 "intent": "order", "subject": {"reference": "Patient/p1"},
                 "authoredOn": "2026-11-01",
                 "medicationCodeableConcept": {"text": "oxycodone hydrochloride 5 MG Oral Tablet"}}
    records = [{"resourceType": "Patient", "id": pid}, cancelled]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in records]}
    assert patient_from_fhir(bundle).medications == []
    assert assemble(pid, {"patient": records[0], "medications": _searchset([cancelled])}, {},
                    with_drafts=False).patient.medications == []


def test_a_deceased_patient_is_not_reviewed_and_says_so() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p9", "birthDate": "1940-01-01",
                      "deceasedDateTime": "2025-03-01"}},
        {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
                      "intent": "order", "subject": {"reference": "Patient/p9"},
                      "medicationCodeableConcept": {"text": "zolpidem 10 MG Oral Tablet"}}}]}
    patient = patient_from_fhir(bundle)
    assert patient.deceased and patient.deceased_on == date(2025, 3, 1)
    assert patient.age_on(AS_OF) == 85  # never past the date of death (it would be 86)
    result = ENGINE.evaluate(patient, as_of=AS_OF)
    assert result.alerts == () and "deceased on 2025-03-01" in (result.not_reviewed or "")
    assert result.to_dict()["not_reviewed"] == result.not_reviewed


def test_subject_references_relative_absolute_and_urn_are_the_patient() -> None:
    def order(ref: str, rid: str) -> dict[str, Any]:
        return {"resourceType": "MedicationRequest", "id": rid, "status": "active",
                "intent": "order", "subject": {"reference": ref},
                "medicationCodeableConcept": {"text": "zolpidem 10 MG Oral Tablet"}}

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"resource": order("Patient/p1", "m1")},
        {"resource": order("https://ehr.example.org/fhir/Patient/p1/_history/3", "m2")},
        {"resource": order("urn:uuid:aaaa", "m3")}]}
    assert [m.id for m in patient_from_fhir(bundle).medications] == ["m1", "m2", "m3"]
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1"},
                "medications": _searchset([order("Patient/p1", "m1"),
                                           order("https://x.org/Patient/p1", "m2"),
                                           order("Patient/p2", "m3")])}
    built = assemble("p1", prefetch, {}, with_drafts=False)
    assert [m.id for m in built.patient.medications] == ["m1", "m2"]
    assert built.problems and "another patient" in built.problems[0]


def test_a_bundle_inside_a_bundle_is_read() -> None:
    inner = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
                      "intent": "order", "subject": {"reference": "Patient/p1"},
                      "medicationCodeableConcept": {"text": "zolpidem 10 MG Oral Tablet"}}}]}
    outer = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}}, {"resource": inner}]}
    assert [m.id for m in patient_from_fhir(outer).medications] == ["m1"]


def test_the_panel_leaves_deceased_patients_off_the_worklist() -> None:
    from cds.panel.run import run_panel

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        src.mkdir()
        patients = [{"resourceType": "Patient", "id": "alive", "birthDate": "1950-01-01"},
                    {"resourceType": "Patient", "id": "gone", "birthDate": "1950-01-01",
                     "deceasedBoolean": True}]
        orders = [{"resourceType": "MedicationRequest", "id": f"m-{p['id']}", "status": "active",
                   "intent": "order", "subject": {"reference": f"Patient/{p['id']}"},
                   "medicationCodeableConcept": {"text": "zolpidem 10 MG Oral Tablet"}}
                  for p in patients]
        (src / "Patient.ndjson").write_bytes(b"\n".join(orjson.dumps(p) for p in patients))
        (src / "MedicationRequest.ndjson").write_bytes(b"\n".join(orjson.dumps(o) for o in orders))
        info = run_panel(src, out, workers=1, as_of=AS_OF, quiet=True)
        assert info["counts"]["not_reviewed_deceased"] == 1
        ids = [line.split(",")[1] for line in (out / "worklist.csv").read_text().splitlines()[1:]]
        assert ids == ["alive"]  # the deceased patient ("gone") is not on it
        assert "not reviewed: deceased" in (out / "report.html").read_text()


@settings(max_examples=60, deadline=None)
@given(st.floats(1, 80), st.sampled_from(["QD", "BID", "TID", "QID"]))
def test_one_mme_alert_of_the_highest_tier_reached(dose: float, code: str) -> None:
    """However high the total, one MME alert: the highest tier reached, its severity rising
    with the tier."""
    from cds.patient import MedicationOrder, Patient, Timing

    order = MedicationOrder(id="m1", text="oxycodone 5 mg", dose=dose, dose_unit="mg",
                            timing=Timing(code=code), route="oral")
    result = ENGINE.evaluate(Patient(id="t", medications=[order]), as_of=AS_OF)
    tiers = [a for a in result.alerts if a.family == "mme"]
    total = result.mme.total
    if total < 50:
        assert tiers == []
    else:
        (alert,) = tiers
        assert (alert.rule, alert.severity) == (("opioid-safety/mme-90", "high") if total >= 90
                                                else ("opioid-safety/mme-50", "moderate"))
