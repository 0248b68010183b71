"""Child-Pugh score and class from bilirubin, albumin, INR, ascites and encephalopathy: every
boundary of the reference table (Pugh 1973) and the class edges A/B/C."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.knowledge.hepatic import SOURCE, child_pugh, child_pugh_bound


def test_source_is_named() -> None:
    assert "Pugh" in SOURCE


# --- Child-Pugh --------------------------------------------------------------------------

def points(**kw: Any) -> dict[str, int]:
    args: dict[str, Any] = dict(bilirubin=1.0, albumin=4.0, inr=1.0, ascites="none",
                                encephalopathy="none")
    args.update(kw)
    return dict(child_pugh(**args).points)


@pytest.mark.parametrize(("value", "expected"), [(1.99, 1), (2.0, 2), (3.0, 2), (3.01, 3)])
def test_bilirubin_points(value: float, expected: int) -> None:
    assert points(bilirubin=value)["bilirubin"] == expected


@pytest.mark.parametrize(("value", "expected"), [(3.6, 1), (3.5, 2), (2.8, 2), (2.79, 3)])
def test_albumin_points(value: float, expected: int) -> None:
    assert points(albumin=value)["albumin"] == expected


@pytest.mark.parametrize(("value", "expected"), [(1.69, 1), (1.7, 2), (2.3, 2), (2.31, 3)])
def test_inr_points(value: float, expected: int) -> None:
    assert points(inr=value)["INR"] == expected


@pytest.mark.parametrize(("grade", "expected"), [("none", 1), ("mild", 2), ("moderate-severe", 3)])
def test_ascites_points(grade: str, expected: int) -> None:
    assert points(ascites=grade)["ascites"] == expected


@pytest.mark.parametrize(("grade", "expected"), [("none", 1), ("grade 1-2", 2), ("grade 3-4", 3)])
def test_encephalopathy_points(grade: str, expected: int) -> None:
    assert points(encephalopathy=grade)["encephalopathy"] == expected


@pytest.mark.parametrize(("kw", "score", "cls"), [
    (dict(bilirubin=1, albumin=4, inr=1, ascites="none", encephalopathy="none"), 5, "A"),
    (dict(bilirubin=2, albumin=4, inr=1, ascites="none", encephalopathy="none"), 6, "A"),
    (dict(bilirubin=2, albumin=3, inr=1, ascites="none", encephalopathy="none"), 7, "B"),
    (dict(bilirubin=2, albumin=3, inr=2, ascites="mild", encephalopathy="none"), 9, "B"),
    (dict(bilirubin=2, albumin=3, inr=2, ascites="mild", encephalopathy="grade 1-2"), 10, "C"),
    (dict(bilirubin=4, albumin=2, inr=3, ascites="moderate-severe",
          encephalopathy="grade 3-4"), 15, "C"),
])
def test_child_pugh_class_edges(kw: dict[str, Any], score: int, cls: str) -> None:
    r = child_pugh(**kw)
    assert (r.score, r.cls) == (score, cls)
    assert sum(p for _, p in r.points) == score


# --- what is on file: a lower bound, or not computable ------------------------------------


def test_the_issues_example_is_at_least_c() -> None:
    """Bilirubin > 3, albumin < 2.8 and INR > 2.3 are 9 points; ascites and encephalopathy
    not recorded count 1 each: at least 11, class C."""
    cp, missing = child_pugh_bound(3.5, 2.5, 2.5, None, None)
    assert cp is not None and missing == ()
    assert (cp.score, cp.cls, cp.lower_bound, cp.label) == (11, "C", True, "at least C")
    assert "ascites not recorded (counted 1)" in cp.assumed


def test_everything_on_file_is_exact() -> None:
    cp, _ = child_pugh_bound(2.5, 3.0, 1.8, "mild", "none")
    assert cp is not None and not cp.lower_bound and (cp.score, cp.cls) == (9, "B")


def test_a_bound_that_does_not_reach_b_is_not_computable_and_names_what_is_missing() -> None:
    cp, missing = child_pugh_bound(1.0, None, 1.0, None, None)
    assert cp is None and missing == ("albumin", "ascites", "encephalopathy")


def test_a_condition_without_a_grade_counts_two() -> None:
    cp, _ = child_pugh_bound(2.5, 3.0, 1.8, "present", "none")
    assert cp is not None and dict(cp.points)["ascites"] == 2 and cp.lower_bound


_GRADES = {"ascites": ["none", "mild", "moderate-severe"],
           "encephalopathy": ["none", "grade 1-2", "grade 3-4"]}


@settings(max_examples=300, deadline=None)
@given(st.floats(0.1, 10), st.floats(1.0, 5.0), st.floats(0.8, 5.0),
       st.sampled_from(_GRADES["ascites"]), st.sampled_from(_GRADES["encephalopathy"]),
       st.lists(st.sampled_from(["bilirubin", "albumin", "inr", "ascites", "encephalopathy"]),
                unique=True), st.booleans(), st.booleans())
def test_the_bound_never_exceeds_the_true_score(bili: float, alb: float, inr: float, asc: str,
                                                enc: str, hidden: list[str], asc_present: bool,
                                                enc_present: bool) -> None:
    """Whatever the parts not on file really are, the reported class and score are at most
    the true ones; a reported class is never wrong when nothing is hidden."""
    truth = child_pugh(bili, alb, inr, asc, enc)
    shown: dict[str, Any] = {"bilirubin": bili, "albumin": alb, "inr": inr, "ascites": asc,
                             "encephalopathy": enc}
    for h in hidden:
        shown[h] = None
    if asc_present and asc != "none" and "ascites" not in hidden:
        shown["ascites"] = "present"
    if enc_present and enc != "none" and "encephalopathy" not in hidden:
        shown["encephalopathy"] = "present"
    cp, missing = child_pugh_bound(**shown)
    if cp is None:
        assert missing
        return
    assert cp.score is not None and truth.score is not None
    assert cp.score <= truth.score and cp.cls <= truth.cls
    if not cp.lower_bound:
        assert (cp.score, cp.cls) == (truth.score, truth.cls)


def test_child_pugh_c_from_a_fhir_bundle_with_an_ascites_condition() -> None:
    from cds.engine.evaluator import load_engine
    from cds.io import patient_from_fhir

    def lab(code: str, value: float, unit: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": f"o{code}", "status": "final",
                "subject": {"reference": "Patient/h1"}, "effectiveDateTime": "2026-11-20",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {"value": value, "unit": unit}}

    entries = [
        {"resourceType": "Patient", "id": "h1", "gender": "male", "birthDate": "1960-01-01"},
        lab("1975-2", 3.4, "mg/dL"), lab("1751-7", 2.6, "g/dL"), lab("6301-6", 2.4, "{INR}"),
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/h1"},
         "clinicalStatus": {"coding": [{"code": "active"}]},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "389026000"}],
                  "text": "Ascites"}},
        {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
         "subject": {"reference": "Patient/h1"},
         "medicationCodeableConcept": {"text": "tapentadol 50 MG Oral Tablet"},
         "dosageInstruction": [{"timing": {"code": {"text": "Q6H"}},
                                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}]},
    ]
    patient = patient_from_fhir({"resourceType": "Bundle", "type": "collection",
                                 "entry": [{"resource": r} for r in entries]})
    engine = load_engine(["renal-hepatic-dosing"])
    facts = engine.facts(patient, date(2026, 11, 26))
    assert facts.hepatic is not None and facts.hepatic.cls == "C"
    assert dict(facts.hepatic.points)["ascites"] == 2
    alerts = engine.alerts(facts)
    (alert,) = [a for a in alerts if a.family == "hepatic"]
    assert "child-pugh-c" in alert.rule and "at least C" in alert.rationale
