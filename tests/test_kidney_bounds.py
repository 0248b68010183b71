"""Kidney values as labs report them: an eGFR of ">60" or "<15" is a bound, and the bands
use it as one; an eGFR alone serves eGFR-stated rules and, said so, CrCl-stated ones."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.engine.evaluator import Engine
from cds.engine.kinds.renal import KidneyValue, band_verdict, in_band
from cds.errors import InputError
from cds.io import fhir_observation
from cds.knowledge.store import Knowledge
from cds.rules.models import RenalRule

AS_OF = date(2026, 11, 26)
EGFR = {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]}


def egfr_obs(**value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": "e1", "status": "final", "code": EGFR,
            "effectiveDateTime": "2026-11-01", **value}


@pytest.mark.parametrize(("value", "expected"), [
    ({"valueQuantity": {"value": 60, "comparator": ">", "unit": "mL/min/{1.73_m2}"}}, (60, ">")),
    ({"valueString": ">60"}, (60, ">")),
    ({"valueString": "<15"}, (15, "<")),
    ({"valueString": " >= 90 mL/min/1.73m2"}, (90, ">=")),
    ({"valueString": "≥90"}, (90, ">=")),
    ({"valueString": "45"}, (45, None)),
])
def test_egfr_bounds_are_read_as_bounds(value: dict[str, Any], expected: tuple[Any, Any]) -> None:
    o = fhir_observation(egfr_obs(**value))
    assert o is not None and o.kind == "egfr"
    assert (o.value, o.comparator) == expected


@pytest.mark.parametrize(("value", "field"), [
    ({"valueString": "normal"}, "valueString"),
    ({"valueQuantity": {"value": 60, "comparator": "~", "unit": "mL/min/{1.73_m2}"}},
     "valueQuantity.comparator"),
])
def test_unreadable_bounds_name_the_field(value: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as e:
        fhir_observation(egfr_obs(**value))
    assert e.value.field is not None and e.value.field.endswith(field)


def rule(**band: Any) -> RenalRule:
    return RenalRule.model_validate({"id": "r", "type": "renal", "drugs": ["gabapentin"],
                                     "measure": "egfr", "action": "avoid", "severity": "high",
                                     "summary": "s", "rationale": "r", "sources": ["x"], **band})


@pytest.mark.parametrize(("band", "comparator", "value", "verdict"), [
    ({"below": 30}, ">", 60, False),  # ">60" never matches "< 30"
    ({"below": 30}, "<", 15, True),  # "<15" always does
    ({"below": 30}, "<", 45, None),  # "<45" might or might not: not decided
    ({"below": 30}, ">=", 30, False),
    ({"below": 30}, "<", 30, True),
    ({"below": 50, "at_least": 15}, "<", 15, False),
    ({"above": 95}, ">", 90, None),
    ({"above": 95}, ">", 95, True),
])
def test_a_bound_decides_a_band_only_when_every_value_agrees(
        band: dict[str, Any], comparator: str, value: float, verdict: bool | None) -> None:
    assert band_verdict(rule(**band), KidneyValue(value, "eGFR", comparator)) is verdict


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["<", "<=", ">", ">="]), st.floats(1, 150),
       st.sampled_from(["below", "at_or_below", "above"]), st.floats(5, 120),
       st.none() | st.floats(1, 60), st.floats(0, 1))
def test_a_decided_verdict_holds_for_every_value_the_bound_allows(
        comparator: str, value: float, edge: str, limit: float, at_least: float | None,
        where: float) -> None:
    r = rule(**{edge: limit, **({"at_least": at_least} if at_least is not None else {})})
    verdict = band_verdict(r, KidneyValue(value, "eGFR", comparator))
    # a value the bound allows: below it (down to 0) or above it (up to 1,000)
    x = value * where if comparator.startswith("<") else value + (1000 - value) * where
    if comparator in ("<", ">") and x == value:
        return  # the bound itself is excluded
    if verdict is not None:
        assert in_band(r, x) is verdict


def _patient(egfr: dict[str, Any] | None, meds: list[dict[str, Any]],
             creatinine: float | None = None) -> dict[str, Any]:
    obs: list[dict[str, Any]] = []
    if egfr is not None:
        obs.append({"kind": "egfr", "unit": "mL/min/1.73m2", "date": "2026-11-01", **egfr})
    if creatinine is not None:
        obs.append({"kind": "creatinine", "value": creatinine, "unit": "mg/dL",
                    "date": "2026-11-01"})
    return {"id": "k1", "birth_date": "1940-01-01", "sex": "male", "observations": obs,
            "medications": meds}


NITRO = {"id": "m1", "text": "nitrofurantoin 100 MG Oral Capsule", "dose": 1,
         "dose_unit": "capsule", "timing": {"code": "BID"}}


def _rules(engine: Engine, data: dict[str, Any]) -> list[str]:
    from cds.io import patient_from_native

    return [a.rule for a in engine.evaluate(patient_from_native(data), as_of=AS_OF).alerts]


def test_an_egfr_bound_above_never_fires_a_lower_band(kb: Knowledge, renal_engine: Engine) -> None:
    rules = _rules(renal_engine, _patient({"value": 60, "comparator": ">"}, [NITRO]))
    assert not any("nitrofurantoin" in r for r in rules)


def test_an_egfr_bound_below_fires_the_band_and_says_it_is_a_bound(renal_engine: Engine) -> None:
    from cds.io import patient_from_native

    result = renal_engine.evaluate(patient_from_native(_patient(
        {"value": 15, "comparator": "<"}, [NITRO])), as_of=AS_OF)
    (alert,) = [a for a in result.alerts if "nitrofurantoin" in a.rule]
    assert "eGFR below 15" in alert.rationale and "a bound" in alert.rationale


def test_an_egfr_alone_stands_in_for_crcl_and_says_so(renal_engine: Engine) -> None:
    """No creatinine, no weight: the CrCl-stated nitrofurantoin row uses the eGFR, saying so."""
    from cds.io import patient_from_native

    result = renal_engine.evaluate(patient_from_native(_patient({"value": 22}, [NITRO])),
                                   as_of=AS_OF)
    (alert,) = [a for a in result.alerts if "nitrofurantoin" in a.rule]
    assert "checked against the eGFR" in alert.rationale
    assert alert.values["measure"] == "eGFR"


@pytest.fixture(scope="module")
def renal_engine(kb: Knowledge) -> Engine:
    from cds.rules.loader import load_pack
    from cds.rules.registry import bundled_rulesets

    return Engine([load_pack(bundled_rulesets() / "renal-hepatic-dosing", kb)], kb)
