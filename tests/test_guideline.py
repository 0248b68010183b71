"""The CDC 2022 guideline pack's machinery: value sets, the pack-level scope, records that
resolve an alert, and record kinds the caller could not provide."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.engine.evaluator import load_engine
from cds.io import patient_from_native
from cds.knowledge.store import Knowledge
from cds.vocabulary import ICD10CM, SNOMED

AS_OF = date(2026, 11, 26)
ENGINE = load_engine(["opioid-safety"])
OXY10 = "oxycodone hydrochloride 10 MG Oral Tablet"
HOSPICE = {"kind": "encounter", "date": "2026-10-15",
           "qualifiers": [{"system": SNOMED, "code": "385763009", "display": "Hospice care"}]}


@pytest.mark.parametrize(("vs", "code", "member"), [
    ("cdc-malignant-cancer-conditions", "C50.911", True),
    ("cdc-malignant-cancer-conditions", "C50911", True),  # written without its dot
    ("cdc-malignant-cancer-conditions", "D3A.01", False),  # excluded: D3A
    ("cdc-malignant-cancer-conditions", "D49.2", True),
    ("cdc-malignant-cancer-conditions", "G89.3", True),
    ("cdc-malignant-cancer-conditions", "G89.4", False),
    ("sickle-cell-diseases", "D57.00", True),
    ("sickle-cell-diseases", "D57.1", False),  # sickle-cell disease without crisis: excluded
    ("opioid-misuse-disorders", "F11.20", True),
    ("opioid-misuse-disorders", "F10.20", False),
    ("conditions-documenting-substance-misuse", "F17.210", False),  # nicotine: excluded
    ("conditions-documenting-substance-misuse", "F14.10", True),
])
def test_icd10cm_membership_follows_the_compose_ranges(kb: Knowledge, vs: str, code: str,
                                                       member: bool) -> None:
    assert kb.value_sets[vs].contains(ICD10CM, code) is member


def test_every_value_set_names_its_source(kb: Knowledge) -> None:
    assert len(kb.value_sets) >= 30
    for v in kb.value_sets.values():
        assert v.source and v.status in ("confirmed", "secondary") and v.codes


def patient(**extra: Any) -> dict[str, Any]:
    return {"id": "g1", "birth_date": "1960-01-01", "sex": "female", "medications": [
        {"id": "m1", "text": OXY10, "dose": 1, "dose_unit": "tablet", "authored": "2026-08-01",
         "timing": {"frequency": 6, "period": 1, "period_unit": "d"}},
        {"id": "m2", "text": "72 HR fentanyl 0.025 MG/HR Transdermal System", "dose": 1,
         "dose_unit": "patch", "authored": "2026-08-01"}], **extra}


def rules(data: dict[str, Any]) -> set[str]:
    return {a.rule for a in ENGINE.evaluate(patient_from_native(data), as_of=AS_OF).alerts}


def test_the_hospice_patient_at_180_mme_gets_no_guideline_alert_and_is_told_why() -> None:
    """The issue's example: 180 MME/day (here 150) with a discharge to hospice."""
    assert {"opioid-safety/mme-90", "opioid-safety/naloxone-not-on-file"} <= rules(patient())
    result = ENGINE.evaluate(patient_from_native(patient(events=[HOSPICE])), as_of=AS_OF)
    assert not [a for a in result.alerts if a.pack.startswith("opioid-safety")]
    ((pack, why),) = result.out_of_scope
    assert pack == "opioid-safety@2.0.2" and "hospice" in why and "2026-10-15" in why
    assert result.to_dict()["out_of_scope"] == [{"pack": pack, "reason": why}]


def test_an_unknown_age_is_in_scope() -> None:
    data = patient()
    del data["birth_date"]
    assert "opioid-safety/mme-90" in rules(data)


def test_a_record_kind_the_caller_could_not_provide_is_not_checked_rather_than_fired() -> None:
    new = {"id": "g2", "birth_date": "1980-01-01", "medications": [
        {"id": "m1", "text": "oxycodone hydrochloride 5 MG Oral Tablet", "dose": 1,
         "dose_unit": "tablet", "timing": {"code": "Q6H"}, "authored": "2026-11-24",
         "supply_days": 5}]}
    assert "opioid-safety/rec09-pdmp-before-prescribing" in rules(new)
    assert "opioid-safety/rec09-pdmp-before-prescribing" not in rules(
        {**new, "unavailable": ["procedure"]})


def test_the_alert_says_what_resolves_it() -> None:
    new = {"id": "g3", "birth_date": "1980-01-01", "medications": [
        {"id": "m1", "text": "oxycodone hydrochloride 5 MG Oral Tablet", "dose": 1,
         "dose_unit": "tablet", "timing": {"code": "Q6H"}, "authored": "2026-11-24",
         "supply_days": 5}]}
    result = ENGINE.evaluate(patient_from_native(new), as_of=AS_OF)
    (pdmp,) = [a for a in result.alerts if a.rule.endswith("rec09-pdmp-before-prescribing")]
    assert "It goes away when the record shows a PDMP review within 90 days" in pdmp.rationale
    assert ("pdmp-reviewed-snooze-3-months", "PDMP data reviewed, snooze 3 months", 90) in \
        pdmp.responses


EXCLUSIONS = [
    {"events": [HOSPICE]},
    {"events": [{"kind": "service-request", "date": "2026-11-01",
                 "codes": [{"system": SNOMED, "code": "103735009"}]}]},
    {"conditions": [{"code": "D57.00", "system": ICD10CM, "text": "sickle cell crisis"}]},
    {"conditions": [{"code": "C34.90", "system": ICD10CM, "text": "lung cancer",
                     "category": "problem-list-item"}]},
    {"birth_date": "2012-01-01"},
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(EXCLUSIONS), st.integers(1, 6),
       st.sampled_from(["alprazolam 0.5 MG Oral Tablet", "gabapentin 300 MG Oral Capsule", None]))
def test_out_of_scope_no_guideline_alert_whatever_the_list(exclusion: dict[str, Any],
                                                           per_day: int, other: str | None) -> None:
    data = patient(**exclusion)
    data["medications"][0]["timing"]["frequency"] = per_day
    if other:
        data["medications"].append({"id": "m3", "text": other, "dose": 1, "dose_unit": "tablet",
                                    "timing": {"code": "BID"}})
    result = ENGINE.evaluate(patient_from_native(data), as_of=AS_OF)
    assert result.out_of_scope
    scoped = {cr.ref for cr in ENGINE.compiled.rules if cr.rule.scoped}
    assert not [a for a in result.alerts if a.rule in scoped]
