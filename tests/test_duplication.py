"""Therapeutic duplication: two drugs of one class at once, counted by distinct ingredient sets,
a taper or switch (an order ending soon) not counted."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.engine.evaluator import Engine
from cds.knowledge.store import Knowledge
from cds.patient import MedicationOrder, Patient, Timing
from cds.rules.loader import LoadedRule, Pack
from cds.rules.models import DuplicationRule, PackMeta

AS_OF = date(2026, 11, 26)


def rule(**kw: Any) -> DuplicationRule:
    return DuplicationRule.model_validate({
        "id": "dup", "type": "duplication", "class": "nsaid", "severity": "moderate",
        "summary": "Two {class}s: {drugs}", "rationale": "{count} {drugs} (ending: {ending})",
        "sources": ["x"], **kw})


def engine(kb: Knowledge, r: DuplicationRule) -> Engine:
    meta = PackMeta.model_validate({
        "id": "t", "version": "1.0.0", "title": "t", "description": "t",
        "knowledge": ">=2026.11.0", "maintainers": ["t"],
        "changelog": [{"version": "1.0.0", "date": "2026-12-01", "changes": ["t"]}]})
    return Engine([Pack(meta, (LoadedRule(r, "t.yaml", 1),), Path("."), "d")], kb,
                  freeze_gc=False)


def med(mid: str, text: str, ends_in: int | None = None) -> MedicationOrder:
    timing = Timing(code="BID", bounds_end=AS_OF + timedelta(days=ends_in)
                    if ends_in is not None else None)
    return MedicationOrder(id=mid, text=text, dose=1, dose_unit="tablet", timing=timing)


def fired(kb: Knowledge, r: DuplicationRule, *meds: MedicationOrder) -> list[Any]:
    return [a for a in engine(kb, r).evaluate(Patient(id="p", medications=list(meds)),
                                             as_of=AS_OF).alerts if a.rule == "t/dup"]


IBU = "ibuprofen 400 MG Oral Tablet"
NAP = "naproxen 500 MG Oral Tablet"


def test_two_nsaids_are_a_duplication(kb: Knowledge) -> None:
    (a,) = fired(kb, rule(), med("m1", IBU), med("m2", NAP))
    assert a.family == "duplication" and "naproxen" in a.summary and "ibuprofen" in a.summary


def test_one_nsaid_is_not(kb: Knowledge) -> None:
    assert fired(kb, rule(), med("m1", IBU)) == []


def test_two_products_of_one_drug_are_one_drug(kb: Knowledge) -> None:
    assert fired(kb, rule(), med("m1", IBU), med("m2", "ibuprofen 800 MG Oral Tablet")) == []


@pytest.mark.parametrize(("ends_in", "counted"), [(3, False), (14, False), (15, True), (None, True)])
def test_an_order_ending_within_the_overlap_is_a_taper_not_a_duplication(
        kb: Knowledge, ends_in: int | None, counted: bool) -> None:
    alerts = fired(kb, rule(overlap_days=14), med("m1", IBU, ends_in), med("m2", NAP))
    assert bool(alerts) is counted
    if not counted:
        return
    assert "ending: )" in alerts[0].rationale or ends_in is None or ends_in > 14


def test_an_excluded_member_does_not_count(kb: Knowledge) -> None:
    assert fired(kb, rule(exclude=["naproxen"]), med("m1", IBU), med("m2", NAP)) == []


def test_long_acting_counts_only_er_products_and_the_listed_drugs(kb: Knowledge) -> None:
    r = rule(**{"class": "opioid", "long_acting": True, "long_acting_drugs": ["methadone"]})
    er = med("m1", "12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet")
    ir = med("m2", "hydromorphone hydrochloride 2 MG Oral Tablet")
    methadone = med("m3", "methadone hydrochloride 10 MG Oral Tablet")
    assert fired(kb, r, er, ir) == []
    assert len(fired(kb, r, er, methadone)) == 1


@settings(max_examples=50, deadline=None)
@given(st.permutations([IBU, NAP, "meloxicam 15 MG Oral Tablet", "celecoxib 200 MG Oral Capsule"]))
def test_the_alert_does_not_depend_on_the_order_of_the_list(order: list[str]) -> None:
    from cds.knowledge.store import default_knowledge

    kb = default_knowledge()
    (a,) = fired(kb, rule(), *[med(f"m{i}", t) for i, t in enumerate(order)])
    assert a.values["count"] == 4
    assert a.medications == tuple(sorted(a.medications, key=str.lower))
