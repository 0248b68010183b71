"""FHIR R4 input: every element read, unit conversion, references, and errors that name the
field. The property test at the end is the guarantee the service relies on: whatever a
client sends, the reader returns a Patient or raises InputError, nothing else."""

from __future__ import annotations

import contextlib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonmutation import json_values, mutated

from cds.errors import InputError
from cds.io import (
    fhir_condition,
    fhir_medication_order,
    fhir_observation,
    fhir_patient_demographics,
    patient_from_fhir,
    read_patient,
)
from cds.patient import MedicationOrder, Patient

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "patient-oxycodone-fentanyl.json"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
SCT = "http://snomed.info/sct"


def bundle(*resources: dict[str, Any], patient: bool = True) -> dict[str, Any]:
    entries = [{"fullUrl": "urn:uuid:p1", "resource": {
        "resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-03-14"}}]
    if not patient:
        entries = []
    entries += [{"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def obs(code: str, value: Any = None, unit: str | None = "mg/dL", rid: str = "o1",
        **extra: Any) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        quantity["unit"] = unit
    res: dict[str, Any] = {"resourceType": "Observation", "id": rid, "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                           "valueQuantity": quantity, "subject": {"reference": "Patient/p1"}}
    res.update(extra)
    return res


def rx(rid: str = "m1", text: str = "oxycodone hydrochloride 10 MG Oral Tablet",
       dosage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rid, "status": "active",
                           "intent": "order", "medicationCodeableConcept": {"text": text},
                           "subject": {"reference": "Patient/p1"}}
    if dosage is not None:
        res["dosageInstruction"] = [dosage]
    res.update(extra)
    return res


def order(resource: dict[str, Any], meds: dict[str, dict[str, Any]] | None = None
          ) -> MedicationOrder:
    return fhir_medication_order(resource, meds or {})


def error(fn: Any, *args: Any, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as e:
        fn(*args, **kwargs)
    return e.value


# --- the example bundle ---------------------------------------------------------------------

def test_example_bundle() -> None:
    p = read_patient(EXAMPLE)
    assert (p.id, p.sex, p.birth_date) == ("oxy-fent-1", "female", date(1950, 3, 14))
    weight, creatinine = p.latest("weight"), p.latest("creatinine")
    assert weight is not None and (weight.value, weight.unit) == (70, "kg")
    assert creatinine is not None and creatinine.value == 1.4
    assert creatinine.date == date(2026, 10, 1)
    meds = {m.id: m for m in p.medications}
    assert set(meds) == {"oxycodone-1", "fentanyl-1", "alprazolam-1", "gabapentin-1"}
    oxy = meds["oxycodone-1"]
    assert oxy.text == "oxycodone hydrochloride 10 MG Oral Tablet"
    assert (oxy.codes[0].system, oxy.codes[0].code) == (RX, "1049683")
    assert (oxy.dose, oxy.dose_unit, oxy.route) == (1, "tablet", "oral")
    assert oxy.timing is not None
    assert (oxy.timing.frequency, oxy.timing.period, oxy.timing.period_unit) == (1, 6, "h")
    assert (oxy.authored, oxy.prescriber) == (date(2026, 9, 1), "Dr. Lee")
    assert (oxy.supply_days, oxy.quantity) == (30, 120)
    assert oxy.is_current and oxy.source == "request" and not oxy.draft
    fent = meds["fentanyl-1"]
    assert fent.route == "transdermal" and fent.timing is not None
    assert (fent.timing.period, fent.timing.period_unit) == (72, "h")
    alp = meds["alprazolam-1"]
    assert alp.timing is not None and alp.timing.code == "BID"
    gaba = meds["gabapentin-1"]
    assert (gaba.dose, gaba.dose_unit, gaba.timing and gaba.timing.frequency) == (300, "mg", 3)


# --- Patient --------------------------------------------------------------------------------

def test_demographics() -> None:
    d = fhir_patient_demographics({"resourceType": "Patient", "id": "x", "gender": "Male",
                                   "birthDate": "1944"})
    assert d == {"id": "x", "birth_date": date(1944, 1, 1), "sex": "male"}
    assert fhir_patient_demographics({"resourceType": "Patient", "id": "y"})["sex"] == "unknown"


@pytest.mark.parametrize(("resource", "field"), [
    ({"resourceType": "Patient", "id": "x", "gender": "f"}, "Patient/x.gender"),
    ({"resourceType": "Patient", "id": "x", "birthDate": "1950-02-30"}, "Patient/x.birthDate"),
    ({"resourceType": "Patient", "id": "x", "birthDate": 1950}, "Patient/x.birthDate"),
    ({"resourceType": "Patient"}, "Patient.id"),
    ({"resourceType": "Observation", "id": "x"}, "Observation/x.resourceType"),
])
def test_bad_patient(resource: dict[str, Any], field: str) -> None:
    assert error(fhir_patient_demographics, resource).field == field


def test_single_resource_and_patient_from_subject() -> None:
    p = patient_from_fhir({"resourceType": "Patient", "id": "solo", "gender": "other"})
    assert (p.id, p.sex, p.medications) == ("solo", "other", [])
    p = patient_from_fhir(bundle(rx(), patient=False))
    assert p.id == "p1" and len(p.medications) == 1


def test_bundle_mixing_patients_is_refused() -> None:
    two = bundle()
    two["entry"].append({"resource": {"resourceType": "Patient", "id": "p2"}})
    assert "more than one patient" in error(patient_from_fhir, two).message
    other = rx(subject={"reference": "Patient/p2"})
    assert error(patient_from_fhir, bundle(other)).field == "MedicationRequest/m1.subject.reference"
    # the patient's fullUrl and an absolute URL of the same patient are the same patient
    ok = bundle(rx(subject={"reference": "urn:uuid:p1"}),
                rx("m2", subject={"reference": "https://ehr.example/fhir/Patient/p1"}))
    assert len(patient_from_fhir(ok).medications) == 2
    assert error(patient_from_fhir, bundle(rx(subject={"reference": "urn:uuid:zz"}))).field


# --- Observation ----------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "kind", "unit"), [
    ("29463-7", "weight", "kg"), ("3141-9", "weight", "kg"), ("8302-2", "height", "cm"),
    ("2160-0", "creatinine", "mg/dL"), ("98979-8", "egfr", "mL/min/{1.73_m2}"),
    ("33914-3", "egfr", "mL/min/1.73m2"), ("62238-1", "egfr", "mL/min/1.73m2"),
    ("48642-3", "egfr", "mL/min/1.73m2"), ("48643-1", "egfr", "mL/min/1.73m2"),
    ("50044-7", "egfr", "mL/min/1.73m2"), ("88293-6", "egfr", "mL/min/1.73m2"),
    ("88294-4", "egfr", "mL/min/1.73m2"), ("1975-2", "bilirubin", "mg/dL"),
    ("1751-7", "albumin", "g/dL"), ("6301-6", "inr", "{INR}"),
])
def test_observation_codes(code: str, kind: str, unit: str) -> None:
    o = fhir_observation(obs(code, 2.5, unit))
    assert o is not None and (o.kind, o.value, o.code) == (kind, 2.5, code)


@pytest.mark.parametrize(("code", "value", "unit", "expected"), [
    ("29463-7", 154.32, "lb", 70.0),
    ("29463-7", 154.32, "[lb_av]", 70.0),
    ("14682-9", 123.76, "umol/L", 1.4),
    ("1751-7", 35, "g/L", 3.5),
    ("1975-2", 34.2, "umol/L", 2.0),
    ("8302-2", 65, "[in_i]", 165.1),
])
def test_observation_unit_conversion(code: str, value: float, unit: str, expected: float) -> None:
    o = fhir_observation(obs(code, value, unit))
    assert o is not None and o.value == pytest.approx(expected, abs=0.01)


def test_observation_unit_falls_back_to_code_and_dates() -> None:
    res = obs("2160-0", 1.1, None, issued="2026-10-02T08:00:00Z")
    res["valueQuantity"]["code"] = "mg/dL"
    o = fhir_observation(res)
    assert o is not None and (o.unit, o.date) == ("mg/dL", date(2026, 10, 2))
    res = obs("29463-7", 70, "kilogram (display)", effectiveDateTime="2026-09-30T23:59:00-05:00")
    res["valueQuantity"]["code"] = "kg"
    o = fhir_observation(res)
    assert o is not None and (o.value, o.date) == (70, date(2026, 9, 30))
    inr = fhir_observation(obs("6301-6", 2.4, None))
    assert inr is not None and inr.value == 2.4


def test_observation_skipped() -> None:
    assert fhir_observation(obs("8867-4", 80, "/min")) is None  # heart rate: not ours
    assert fhir_observation(obs("2160-0", 1.0, status="entered-in-error")) is None
    absent = obs("2160-0", dataAbsentReason={"text": "hemolysed"})
    del absent["valueQuantity"]
    assert fhir_observation(absent) is None
    p = patient_from_fhir(bundle(obs("8867-4", 80, "/min"), obs("2160-0", 1.0, rid="o2")))
    assert [o.kind for o in p.observations] == ["creatinine"]


@pytest.mark.parametrize(("res", "field"), [
    (obs("2160-0", 1.0, "mmol/L"), "Observation/o1.valueQuantity.unit"),
    (obs("29463-7", 70, None), "Observation/o1.valueQuantity.unit"),
    (obs("2160-0", None), "Observation/o1.valueQuantity.value"),
    (obs("2160-0", "1.0"), "Observation/o1.valueQuantity.value"),
    (obs("2160-0", True), "Observation/o1.valueQuantity.value"),
    ({**obs("2160-0", 1.0), "valueQuantity": None}, "Observation/o1.valueQuantity"),
    ({**obs("2160-0", 1.0), "valueQuantity": [1.0]}, "Observation/o1.valueQuantity"),
    (obs("2160-0", 1.0, effectiveDateTime="yesterday"), "Observation/o1.effectiveDateTime"),
    ({**obs("2160-0", 1.0), "code": {"coding": "2160-0"}}, "Observation/o1.code.coding"),
])
def test_observation_errors(res: dict[str, Any], field: str) -> None:
    e = error(fhir_observation, res)
    assert e.field == field
    e = error(patient_from_fhir, bundle(res), source="in.json")
    assert (e.field, e.file) == (field, "in.json")
    assert str(e).startswith("in.json, field " + field)


# --- Condition ------------------------------------------------------------------------------

def test_condition() -> None:
    c = fhir_condition({
        "resourceType": "Condition", "id": "c1",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "N18.4",
                             "display": "CKD stage 4"}, {"system": SCT, "code": "431857002"}]},
        "clinicalStatus": {"coding": [{"code": "resolved"}]},
        "onsetDateTime": "2020-05-01T10:00:00Z"})
    assert (c.code, c.system, c.text, c.status, c.onset) == (
        "N18.4", "http://hl7.org/fhir/sid/icd-10-cm", "CKD stage 4", "resolved", date(2020, 5, 1))
    c = fhir_condition({"resourceType": "Condition", "code": {"text": "cirrhosis"},
                        "onsetPeriod": {"start": "2019-02"}})
    assert (c.code, c.text, c.status, c.onset) == (None, "cirrhosis", "active", date(2019, 2, 1))
    refuted = {"resourceType": "Condition", "id": "c2", "code": {"text": "OUD"},
               "verificationStatus": {"coding": [{"code": "refuted"}]}}
    assert fhir_condition(refuted).status == "refuted"
    wrong = {**refuted, "verificationStatus": {"coding": [{"code": "entered-in-error"}]}}
    assert patient_from_fhir(bundle(refuted, wrong)).conditions == [fhir_condition(refuted)]
    bad = {"resourceType": "Condition", "id": "c3", "clinicalStatus": 3}
    assert error(fhir_condition, bad).field == "Condition/c3.clinicalStatus"


# --- MedicationRequest: medication ----------------------------------------------------------

def test_codes_and_text() -> None:
    m = order(rx(medicationCodeableConcept={"coding": [
        {"system": RX, "code": "1049683", "display": "oxycodone hydrochloride 10 MG Oral Tablet"},
        {"system": "http://hl7.org/fhir/sid/ndc", "code": "0000-0000-00"}, {"display": "x"}]}))
    assert [c.code for c in m.codes] == ["1049683", "0000-0000-00"]
    assert m.text == "oxycodone hydrochloride 10 MG Oral Tablet"  # first display
    assert m.label == m.text


MEDICATION = {"resourceType": "Medication", "id": "med1", "code": {
    "coding": [{"system": RX, "code": "245134",
                "display": "72 HR fentanyl 0.025 MG/HR Transdermal System"}]}}


def test_medication_reference_in_bundle() -> None:
    by_id = rx(medicationReference={"reference": "Medication/med1"})
    del by_id["medicationCodeableConcept"]
    by_url = {**by_id, "id": "m2", "medicationReference": {"reference": "urn:uuid:med1"}}
    doc = bundle(by_id, by_url)
    doc["entry"].append({"fullUrl": "urn:uuid:med1", "resource": MEDICATION})
    p = patient_from_fhir(doc)
    assert [(m.codes[0].code, m.text) for m in p.medications] == [
        ("245134", "72 HR fentanyl 0.025 MG/HR Transdermal System")] * 2
    absolute = {**by_id, "medicationReference": {"reference": "https://x/fhir/Medication/med1"}}
    assert order(absolute, {"Medication/med1": MEDICATION}).codes[0].code == "245134"


def test_medication_reference_contained() -> None:
    res = rx(medicationReference={"reference": "#med1"}, contained=[MEDICATION])
    del res["medicationCodeableConcept"]
    assert order(res).codes[0].code == "245134"
    assert order(res, {"#med1": {**MEDICATION, "code": {"text": "other"}}}).codes[0].code == \
        "245134"  # the resource's own contained Medication wins


def test_medication_reference_unresolved() -> None:
    res = rx(medicationReference={"reference": "Medication/gone", "display": "fentanyl patch"})
    del res["medicationCodeableConcept"]
    assert order(res).text == "fentanyl patch"
    del res["medicationReference"]["display"]
    assert error(order, res).field == "MedicationRequest/m1.medicationReference.reference"
    del res["medicationReference"]
    assert error(order, res).field == "MedicationRequest/m1.medication[x]"
    res["medicationCodeableConcept"] = {"coding": [{"system": RX}]}
    assert "code or a text" in error(order, res).message


# --- status, draft, dates, people -----------------------------------------------------------

@pytest.mark.parametrize(("status", "intent", "current", "draft"), [
    ("active", "order", True, False), ("on-hold", "order", True, False),
    ("stopped", "order", False, False), ("completed", "order", False, False),
    ("cancelled", "order", False, False), ("draft", "order", True, True),
    ("draft", "proposal", True, True), ("draft", "plan", True, True),
])
def test_status(status: str, intent: str, current: bool, draft: bool) -> None:
    m = order(rx(status=status, intent=intent))
    assert (m.status, m.is_current, m.draft) == (status, current, draft)


def test_inactive_orders_are_read_but_not_current() -> None:
    p = patient_from_fhir(bundle(rx("a"), rx("b", status="stopped"),
                                 rx("c", doNotPerform=True), rx("d", status="entered-in-error")))
    assert [(m.id, m.is_current) for m in p.medications] == [("a", True), ("b", False)]


def test_authored_prescriber_and_ids() -> None:
    m = order(rx(authoredOn="2026-09-01T14:30:00+02:00",
                 requester={"reference": "Practitioner/dr-lee"}))
    assert (m.authored, m.prescriber) == (date(2026, 9, 1), "Practitioner/dr-lee")
    nameless = rx()
    del nameless["id"]
    a, b = order(nameless), order(nameless)
    assert a.id == b.id and a.id.startswith("MedicationRequest-")
    doc = bundle(nameless)
    doc["entry"][1]["fullUrl"] = "urn:uuid:order-1"
    assert patient_from_fhir(doc).medications[0].id == "urn:uuid:order-1"


def test_reasons() -> None:
    oud = {"resourceType": "Condition", "id": "c1", "code": {"coding": [
        {"system": SCT, "code": "5602001", "display": "Opioid abuse"}]}}
    res = rx(reasonCode=[{"coding": [{"system": SCT, "code": "22253000", "display": "Pain"}]}],
             reasonReference=[{"reference": "Condition/c1"}, {"reference": "Condition/none"}])
    p = patient_from_fhir(bundle(res, oud))
    assert [c.code for c in p.medications[0].reasons] == ["22253000", "5602001"]


# --- dosage ---------------------------------------------------------------------------------

def test_dose_quantity_uses_unit_then_code() -> None:
    m = order(rx(dosage={"doseAndRate": [{"doseQuantity": {"value": 10, "code": "mg"}}]}))
    assert (m.dose, m.dose_unit) == (10, "mg")


def test_dose_range() -> None:
    m = order(rx(dosage={"doseAndRate": [{"doseRange": {
        "low": {"value": 1, "unit": "tablet"}, "high": {"value": 2, "unit": "tablet"}}}]}))
    assert (m.dose, m.dose_high, m.dose_unit) == (1, 2, "tablet")
    bad = rx(dosage={"doseAndRate": [{"doseRange": {"low": {"value": 3}, "high": {"value": 2}}}]})
    assert error(order, bad).field == \
        "MedicationRequest/m1.dosageInstruction[0].doseAndRate[0].doseRange.high.value"


def test_prn_with_max_dose_per_period() -> None:
    m = order(rx(dosage={
        "asNeededBoolean": True,
        "maxDosePerPeriod": {"numerator": {"value": 60, "unit": "mg"},
                             "denominator": {"value": 1, "unit": "day", "code": "d"}}}))
    assert m.as_needed and m.max_dose_per_period is not None
    mdp = m.max_dose_per_period
    assert (mdp.value, mdp.unit, mdp.period, mdp.period_unit) == (60, "mg", 1, "d")
    m = order(rx(dosage={"asNeededCodeableConcept": {"text": "pain"},
                         "maxDosePerPeriod": [{"numerator": {"value": 4, "code": "{tablet}"},
                                               "denominator": {"value": 24, "code": "h"}}]}))
    assert m.as_needed and m.max_dose_per_period is not None
    assert (m.max_dose_per_period.period, m.max_dose_per_period.period_unit) == (24, "h")
    assert not order(rx(dosage={"asNeededBoolean": False})).as_needed
    bad = rx(dosage={"maxDosePerPeriod": {"numerator": {"value": 4, "unit": "mg"},
                                          "denominator": {"value": 1, "unit": "fortnight"}}})
    assert error(order, bad).field == \
        "MedicationRequest/m1.dosageInstruction[0].maxDosePerPeriod.denominator.unit"


@pytest.mark.parametrize(("route", "expected"), [
    ({"coding": [{"system": SCT, "code": code}]}, word) for code, word in [
        ("26643006", "oral"), ("45890007", "transdermal"), ("54471007", "buccal"),
        ("37839007", "sublingual"), ("46713006", "nasal"), ("37161004", "rectal"),
        ("47625008", "intravenous"), ("78421000", "intramuscular"),
        ("34206005", "subcutaneous")]
] + [
    ({"text": "By mouth"}, "oral"), ({"text": "PO"}, "oral"), ({"text": "Oral"}, "oral"),
    ({"coding": [{"system": "urn:local", "code": "X", "display": "Transdermal route"}]},
     "transdermal"),
    ({"coding": [{"system": "urn:local", "code": "TOP"}]}, "top"),
])
def test_route(route: dict[str, Any], expected: str) -> None:
    assert order(rx(dosage={"route": route})).route == expected


def test_timing_repeat() -> None:
    m = order(rx(dosage={"timing": {"repeat": {
        "frequency": 1, "frequencyMax": 2, "period": 4, "periodMax": 6, "periodUnit": "h",
        "timeOfDay": ["08:00:00", "20:00:00"], "when": ["HS"],
        "boundsPeriod": {"start": "2026-09-01", "end": "2026-09-30T00:00:00Z"}}}}))
    t = m.timing
    assert t is not None
    assert (t.frequency, t.frequency_max, t.period, t.period_max, t.period_unit) == (
        1, 2, 4, 6, "h")
    assert (t.time_of_day, t.when) == (["08:00:00", "20:00:00"], ["HS"])
    assert (t.bounds_start, t.bounds_end) == (date(2026, 9, 1), date(2026, 9, 30))
    m = order(rx(dosage={"timing": {"repeat": {"boundsDuration": {"value": 2, "code": "wk"}}}}))
    assert m.timing is not None and m.timing.bounds_days == 14


@pytest.mark.parametrize("code", ["BID", "TID", "QID", "Q4H", "Q6H", "QD", "QHS", "Q8H",
                                  "Q12H", "AM", "PM"])
def test_timing_code(code: str) -> None:
    coded = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
                         "code": code.lower() if code == "BID" else code}]}
    m = order(rx(dosage={"timing": {"code": coded}}))
    assert m.timing is not None and m.timing.code == code
    m = order(rx(dosage={"timing": {"code": {"text": code}}}))
    assert m.timing is not None and m.timing.code == code


@pytest.mark.parametrize(("duration", "days"), [
    ({"value": 30, "unit": "days", "code": "d"}, 30), ({"value": 48, "code": "h"}, 2),
    ({"value": 2, "unit": "wk"}, 14), ({"value": 1, "code": "mo"}, 30), ({"value": 10}, 10),
])
def test_dispense_request(duration: dict[str, Any], days: float) -> None:
    m = order(rx(dispenseRequest={"expectedSupplyDuration": duration,
                                  "quantity": {"value": 60, "unit": "tablet"}}))
    assert (m.supply_days, m.quantity, m.quantity_unit) == (days, 60, "tablet")


# --- MedicationStatement and MedicationDispense ---------------------------------------------

def test_medication_statement() -> None:
    base = {"resourceType": "MedicationStatement", "id": "s1", "status": "active",
            "medicationCodeableConcept": {"text": "tramadol 50 MG Oral Tablet"},
            "informationSource": {"reference": "Patient/p1", "display": "the patient"},
            "dosage": [{"doseAndRate": [{"doseQuantity": {"value": 50, "unit": "mg"}}],
                        "timing": {"code": {"text": "Q6H"}}, "asNeededBoolean": True}]}
    m = order({**base, "effectiveDateTime": "2026-08-01"})
    assert (m.source, m.authored, m.prescriber, m.dose, m.as_needed) == (
        "statement", date(2026, 8, 1), "the patient", 50, True)
    assert m.is_current
    assert order({**base, "effectivePeriod": {"start": "2026-07-01"}}).authored == date(2026, 7, 1)
    assert order({**base, "dateAsserted": "2026-06-01"}).authored == date(2026, 6, 1)
    assert not order({**base, "status": "not-taken"}).is_current


def test_medication_dispense() -> None:
    request = rx("r1", requester={"reference": "Practitioner/dr-lee", "display": "Dr. Lee"})
    dispense = {"resourceType": "MedicationDispense", "id": "d1", "status": "completed",
                "medicationCodeableConcept": {"text": "oxycodone hydrochloride 5 MG Oral Tablet"},
                "subject": {"reference": "Patient/p1"},
                "performer": [{"actor": {"display": "Main St Pharmacy"}}],
                "authorizingPrescription": [{"reference": "MedicationRequest/r1"}],
                "quantity": {"value": 30, "unit": "tablet"},
                "daysSupply": {"value": 5, "unit": "Day", "code": "d"},
                "whenHandedOver": "2026-09-03T10:00:00Z",
                "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 1}}]}]}
    p = patient_from_fhir(bundle(request, dispense))
    d = {m.id: m for m in p.medications}["d1"]
    assert (d.source, d.status, d.is_current) == ("dispense", "completed", False)
    assert (d.dispensed, d.authored) == (date(2026, 9, 3), date(2026, 9, 3))
    assert (d.quantity, d.quantity_unit, d.supply_days, d.dose) == (30, "tablet", 5, 1)
    assert d.prescriber == "Dr. Lee"  # the requester of the order it fills
    assert order(dispense).prescriber == "Main St Pharmacy"  # order not at hand
    del dispense["performer"]
    assert order(dispense).prescriber == "MedicationRequest/r1"


# --- wrong shapes name the field ------------------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"dosageInstruction": "1 tab q6h"}, "dosageInstruction"),
    ({"dosageInstruction": ["1 tab q6h"]}, "dosageInstruction[0]"),
    ({"dosageInstruction": [{"doseAndRate": {"doseQuantity": {}}}]},
     "dosageInstruction[0].doseAndRate"),
    ({"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": -1}}]}]},
     "dosageInstruction[0].doseAndRate[0].doseQuantity.value"),
    ({"dosageInstruction": [{"timing": {"repeat": {"frequency": 1.5}}}]},
     "dosageInstruction[0].timing.repeat.frequency"),
    ({"dosageInstruction": [{"timing": {"repeat": {"frequency": 0}}}]},
     "dosageInstruction[0].timing.repeat.frequency"),
    ({"dosageInstruction": [{"timing": {"repeat": {"period": 0}}}]},
     "dosageInstruction[0].timing.repeat.period"),
    ({"dosageInstruction": [{"timing": {"repeat": {"periodUnit": "fortnight"}}}]},
     "dosageInstruction[0].timing.repeat.periodUnit"),
    ({"dosageInstruction": [{"timing": {"repeat": {"when": "HS"}}}]},
     "dosageInstruction[0].timing.repeat.when"),
    ({"dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"end": "2026-13-01"}}}}]},
     "dosageInstruction[0].timing.repeat.boundsPeriod.end"),
    ({"dosageInstruction": [{"asNeededBoolean": "yes"}]}, "dosageInstruction[0].asNeededBoolean"),
    ({"dispenseRequest": {"expectedSupplyDuration": {"value": 0, "unit": "d"}}},
     "dispenseRequest.expectedSupplyDuration.value"),
    ({"authoredOn": "01/09/2026"}, "authoredOn"),
    ({"status": 1}, "status"),
    ({"medicationCodeableConcept": "oxycodone"}, "medicationCodeableConcept"),
    ({"requester": "Dr. Lee"}, "requester"),
])
def test_bad_shape_names_field(change: dict[str, Any], field: str) -> None:
    e = error(order, {**rx(), **change})
    assert e.field == f"MedicationRequest/m1.{field}", str(e)
    assert error(patient_from_fhir, bundle({**rx(), **change})).field == e.field


@pytest.mark.parametrize("doc", [
    [], "Bundle", {"resourceType": "Bundle", "entry": {}},
    {"resourceType": "Bundle", "entry": [3]},
    {"resourceType": "Bundle", "entry": [{"resource": 3}]},
    {"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}, {"entry": []},
    {"resourceType": "Bundle", "entry": []}, {"resourceType": 7},
])
def test_bad_bundle(doc: Any) -> None:
    error(patient_from_fhir, doc)


def test_unexpected_failures_become_input_errors() -> None:
    res = rx(medicationReference={"reference": "Medication/med1"})
    del res["medicationCodeableConcept"]
    e = error(fhir_medication_order, res, None)  # type: ignore[arg-type]
    assert e.field == "MedicationRequest/m1" and "AttributeError" in e.message
    assert error(fhir_observation, "Observation").field == "resource"  # type: ignore[arg-type]


# --- property: anything in, Patient or InputError out ---------------------------------------

FHIRISH = [
    "2026-10-01", "2026-10-01T10:00:00Z", "1950", "mg", "kg", "lb", "h", "d", "wk", "BID",
    "draft", "active", "stopped", "Medication/med1", "#med1", "Patient/p1", "Patient/p2",
    "urn:uuid:p1", "http://loinc.org", SCT, "2160-0", "29463-7", "26643006", "Medication",
    "Patient", "Observation", "MedicationRequest", "Condition", "MedicationDispense", "",
]
JSON = json_values(FHIRISH, nan=True)


def _rich_bundle() -> dict[str, Any]:
    import json
    doc: dict[str, Any] = json.loads(EXAMPLE.read_text())
    med = rx("ref", medicationReference={"reference": "Medication/med1"},
             subject={"reference": "urn:uuid:5f1c8a2e-0b7d-4c1e-9a51-3d2f6b8e7a01"},
             dosage={"asNeededBoolean": True, "doseAndRate": [{"doseRange": {
                 "low": {"value": 1, "unit": "tablet"}, "high": {"value": 2}}}],
                 "maxDosePerPeriod": {"numerator": {"value": 6, "unit": "tablet"},
                                      "denominator": {"value": 1, "code": "d"}}},
             dispenseRequest={"expectedSupplyDuration": {"value": 1, "unit": "wk"}})
    del med["medicationCodeableConcept"]
    doc["entry"] += [{"resource": med}, {"resource": MEDICATION}, {"resource": {
        "resourceType": "Condition", "id": "c1", "code": {"text": "CKD"},
        "clinicalStatus": {"coding": [{"code": "active"}]}}}]
    return doc


RICH = _rich_bundle()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RICH, JSON))
def test_mutated_bundles_give_patient_or_input_error(doc: Any) -> None:
    try:
        assert isinstance(patient_from_fhir(doc), Patient)
    except InputError as e:
        assert e.message


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([e["resource"] for e in RICH["entry"]]).flatmap(lambda r: mutated(r, JSON)))
def test_mutated_resources_give_result_or_input_error(res: Any) -> None:
    for read in (fhir_observation, fhir_condition, fhir_patient_demographics):
        with contextlib.suppress(InputError):
            read(res)
    with contextlib.suppress(InputError):
        fhir_medication_order(res, {"Medication/med1": MEDICATION})


def _steps(path: str) -> list[str | int]:
    """`a.b[0].c` -> ["a", "b", 0, "c"]."""
    out: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.split("[")
        if name:
            out.append(name)
        out += [int(i.rstrip("]")) for i in indexes]
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([e["resource"] for e in RICH["entry"] if e["resource"]["resourceType"]
                        in ("MedicationRequest", "Observation", "Condition")])
       .flatmap(lambda r: mutated(r, JSON)))
def test_errors_name_a_place_in_the_resource(res: Any) -> None:
    """The field of an error is the resource's label, then a path that exists in it, up to
    at most its last step (a required element that is missing)."""
    from cds.io._fhir import label

    rtype = res.get("resourceType") if isinstance(res, dict) else None
    read = {"Observation": fhir_observation, "Condition": fhir_condition}.get(
        rtype if isinstance(rtype, str) else "",
        lambda r: fhir_medication_order(r, {"Medication/med1": MEDICATION}))
    try:
        read(res)
    except InputError as e:
        where = label(res)
        assert e.field is not None and e.field.startswith(where), (e.field, where)
        rest = e.field[len(where):].lstrip(".")
        if not rest or rest == "medication[x]":
            return
        node: Any = res
        steps = _steps(rest)
        for step in steps[:-1]:
            assert isinstance(node, dict | list), (e.field, step)
            node = node[step]  # KeyError / IndexError: the error named no real place
        assert isinstance(node, dict | list), e.field
