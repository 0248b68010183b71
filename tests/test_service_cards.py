"""Alert -> CDS Hooks card mapping: every card the shipped packs can produce keeps the
specification's constraints; suggestions become concrete FHIR actions."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cds.authoring.cases import LoadedCase, load_cases
from cds.engine.alerts import Alert, Suggestion
from cds.engine.evaluator import Engine
from cds.knowledge.store import Knowledge
from cds.patient import MedicationOrder
from cds.rules.loader import load_pack
from cds.rules.registry import bundled_rulesets
from cds.service.cards import (
    NALOXONE_RXCUI,
    RXNORM,
    CardContext,
    OrderRef,
    alert_to_card,
    cards_for,
    check_card,
    clip_summary,
    incomplete_card,
    order_alerts,
)
from cds.service.config import DEFAULT_INDICATORS
from cds.service.state import build_snapshot

PACK_DIRS = sorted(p.parent for p in bundled_rulesets().glob("*/pack.yaml"))
PRODUCTS = Path(__file__).resolve().parent.parent / "cds" / "knowledge" / "data" / "rxnorm_products.csv"


def _resource(order: MedicationOrder) -> dict[str, Any]:
    """A minimal FHIR MedicationRequest for an order, so every suggestion can act on it."""
    concept: dict[str, Any] = {"text": order.label}
    if order.codes:
        concept["coding"] = [{"system": c.system, "code": c.code, "display": c.display}
                             for c in order.codes]
    return {"resourceType": "MedicationRequest", "id": order.id,
            "status": "draft" if order.draft else "active", "intent": "order",
            "medicationCodeableConcept": concept, "subject": {"reference": "Patient/p"}}


def _context(case: LoadedCase) -> CardContext:
    orders = {m.id: OrderRef("MedicationRequest", m.id, _resource(m), False)
              for m in case.patient.medications}
    orders.update({d.id: OrderRef("MedicationRequest", d.id, _resource(d.model_copy(
        update={"draft": True})), True) for d in case.case.draft_orders})
    return CardContext(hook_instance="6a0c6f0e-3f57-4b8e-9d38-0f0f3c1a2b3c",
                       patient_id=case.patient.id, user_id="Practitioner/u1",
                       encounter_id="e1", orders=orders, indicators=DEFAULT_INDICATORS,
                       base_url="https://cds.example.org")


def _concrete(s: Suggestion, ctx: CardContext) -> bool:
    if s.kind == "remove-draft":
        return any(o in ctx.orders and ctx.orders[o].draft for o in s.order_ids)
    if s.kind == "reduce-dose":
        return s.max_daily_dose is not None
    return True


def _all_cases() -> list[tuple[Path, LoadedCase]]:
    return [(folder, c) for folder in PACK_DIRS for c in load_cases(folder)]


@pytest.fixture(scope="module")
def shipped() -> Any:
    return build_snapshot(None, [], "indexed")


def test_cases_are_found() -> None:
    assert len(_all_cases()) >= 20


def test_every_card_the_shipped_packs_produce_keeps_the_spec(kb: Knowledge, shipped: Any) -> None:
    """Every case patient of every shipped pack, through that pack alone and through all
    packs together (what the service runs), and every card checked."""
    per_pack = {folder: Engine([load_pack(folder, kb)], kb) for folder in PACK_DIRS}
    seen_rules: set[str] = set()
    kinds: Counter[str] = Counter()
    problems: list[str] = []
    n_cards = 0
    for folder, case in _all_cases():
        for engine in (per_pack[folder], shipped.engine):
            result = engine.evaluate(case.patient, as_of=case.case.as_of,
                                     draft_orders=case.case.draft_orders)
            ctx = _context(case)
            cards = cards_for(result.alerts, ctx)
            assert len(cards) == len(result.alerts)
            uuids = [c["uuid"] for c in cards]
            assert len(set(uuids)) == len(uuids), f"{case.case.name}: duplicate card uuids"
            for alert, card in zip(order_alerts(result.alerts), cards, strict=True):
                n_cards += 1
                seen_rules.add(alert.rule)
                problems += [f"{case.case.name} / {alert.rule}: {p}" for p in check_card(card)]
                assert card["source"]["label"] == alert.pack
                assert card["indicator"] == ("info" if not alert.interruptive
                                             else DEFAULT_INDICATORS[alert.severity])
                if alert.suggestions:
                    for s in alert.suggestions:
                        kinds[s.kind] += 1
                    # concrete here (each order has a resource) unless a remove-draft has no
                    # draft, or a reduce-dose has no maximum to reduce to
                    if any(_concrete(s, ctx) for s in alert.suggestions):
                        assert card.get("suggestions"), f"{alert.rule}: suggestions dropped"
    assert problems == []
    assert n_cards > 50
    assert len(seen_rules) >= 20
    assert {"add-naloxone", "remove-draft", "reduce-dose", "discontinue"} <= set(kinds)


def test_cards_put_draft_alerts_first_then_priority() -> None:
    def alert(i: str, prio: int, draft: bool) -> Alert:
        return Alert(id=i, rule=f"p/{i}", pack="p@1.0.0", pack_digest="d", family="interaction",
                     severity="high", priority=prio, summary=i, rationale="r", medications=(),
                     sources=("s",), actions=(), draft=draft)

    alerts = [alert("a", 390, False), alert("b", 210, True), alert("c", 330, True),
              alert("d", 100, False)]
    assert [a.id for a in order_alerts(alerts)] == ["c", "b", "a", "d"]


def _alert(suggestions: tuple[Suggestion, ...], *, rule: str = "renal-hepatic-dosing/x",
           severity: str = "high", interruptive: bool = True) -> Alert:
    return Alert(id="abc", rule=rule, pack="renal-hepatic-dosing@1.0.0", pack_digest="dd",
                 family="renal", severity=severity, priority=330,
                 summary="Dose above the renal maximum", rationale="CrCl 25 mL/min: *too* high",
                 medications=("gabapentin 600 MG Oral Tablet",), sources=("a source",),
                 actions=("Reduce the dose",), order_ids=("o1",), suggestions=suggestions,
                 values={"crcl": 25.0, "max": 700.0}, interruptive=interruptive)


def _ctx(draft: bool = False) -> CardContext:
    res = {"resourceType": "MedicationRequest", "id": "o1", "status": "draft" if draft else "active",
           "intent": "order", "note": [{"text": "old note"}],
           "medicationCodeableConcept": {"text": "gabapentin 600 MG Oral Tablet"}}
    return CardContext(hook_instance="h1", patient_id="p1", user_id="Practitioner/u1",
                       encounter_id="Encounter/e1",
                       orders={"o1": OrderRef("MedicationRequest", "o1", res, draft)},
                       indicators=DEFAULT_INDICATORS)


def test_reduce_dose_updates_the_whole_order_with_a_note() -> None:
    card = alert_to_card(_alert((Suggestion("reduce-dose", "Reduce the dose", ("o1",), 700.0, "mg"),)),
                         _ctx())
    assert check_card(card) == []
    (action,) = card["suggestions"][0]["actions"]
    assert action["type"] == "update"
    res = action["resource"]
    assert res["id"] == "o1" and res["status"] == "active"
    assert res["note"][0] == {"text": "old note"}
    assert "700 mg per day" in res["note"][1]["text"]
    assert card["selectionBehavior"] == "any"


def test_conflicting_suggestions_are_at_most_one() -> None:
    card = alert_to_card(_alert((Suggestion("reduce-dose", "Reduce", ("o1",), 700.0),
                                 Suggestion("discontinue", "Stop", ("o1",)))), _ctx(draft=True))
    assert check_card(card) == []
    assert card["selectionBehavior"] == "at-most-one"
    assert [a["type"] for s in card["suggestions"] for a in s["actions"]] == ["update", "delete"]


def test_discontinue_a_current_order_stops_it() -> None:
    card = alert_to_card(_alert((Suggestion("discontinue", "Stop", ("o1",)),)), _ctx())
    (action,) = card["suggestions"][0]["actions"]
    assert action["type"] == "update" and action["resource"]["status"] == "stopped"


def test_remove_draft_deletes_by_relative_reference() -> None:
    card = alert_to_card(_alert((Suggestion("remove-draft", "Remove", ("o1",)),)), _ctx(draft=True))
    (action,) = card["suggestions"][0]["actions"]
    assert action == {"type": "delete", "resourceId": "MedicationRequest/o1",
                      "description": "Remove the draft order for gabapentin 600 MG Oral Tablet"}


def test_suggestions_without_a_target_are_left_out() -> None:
    # remove-draft of an order that is not a draft, reduce-dose of an unknown order
    card = alert_to_card(_alert((Suggestion("remove-draft", "Remove", ("o1",)),
                                 Suggestion("reduce-dose", "Reduce", ("zz",), 5.0))), _ctx())
    assert "suggestions" not in card and "selectionBehavior" not in card
    assert check_card(card) == []


def test_naloxone_is_a_real_rxnorm_product() -> None:
    card = alert_to_card(_alert((Suggestion("add-naloxone", "Order naloxone", ("o1",)),)), _ctx())
    (action,) = card["suggestions"][0]["actions"]
    res = action["resource"]
    assert action["type"] == "create" and res["resourceType"] == "MedicationRequest"
    (coding,) = res["medicationCodeableConcept"]["coding"]
    assert coding["system"] == RXNORM and coding["code"] == NALOXONE_RXCUI
    with PRODUCTS.open(encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["rxcui"] == NALOXONE_RXCUI)
    assert row["ingredients"] == "naloxone" and row["route"] == "nasal"
    assert row["strengths"] == "40" and row["units"] == "MG/ML"  # 0.1 mL spray = 4 mg
    assert res["subject"] == {"reference": "Patient/p1"}
    assert res["requester"] == {"reference": "Practitioner/u1"}
    assert res["encounter"] == {"reference": "Encounter/e1"}


def test_detail_is_markdown_with_values_and_escaped() -> None:
    card = alert_to_card(_alert(()), _ctx())
    assert "\\*too\\*" in card["detail"]
    assert "- crcl: 25" in card["detail"] and "- max: 700" in card["detail"]
    assert card["source"]["topic"]["code"] == "renal"
    assert {r["code"] for r in card["overrideReasons"]} >= {"benefit-outweighs-risk",
                                                             "dose-already-adjusted"}


def test_non_interruptive_alerts_are_info() -> None:
    assert alert_to_card(_alert((), interruptive=False), _ctx())["indicator"] == "info"
    assert alert_to_card(_alert((), severity="critical"), _ctx())["indicator"] == "critical"


def test_summary_is_held_under_140() -> None:
    assert len(clip_summary("x" * 140)) == 139
    assert clip_summary("short") == "short"
    long = replace(_alert(()), summary="y" * 140)
    assert check_card(alert_to_card(long, _ctx())) == []


def test_card_uuids_are_stable_per_hook_instance() -> None:
    a = alert_to_card(_alert(()), _ctx())
    b = alert_to_card(_alert(()), _ctx())
    c = alert_to_card(_alert(()), CardContext(hook_instance="h2", patient_id="p1"))
    assert a["uuid"] == b["uuid"] != c["uuid"]


def test_incomplete_card() -> None:
    card = incomplete_card(_ctx(), ["current medications", "latest eGFR"],
                           ["MedicationRequest/x: bad dose"], service_label="cds", serious=True)
    assert check_card(card) == []
    assert card["indicator"] == "warning"
    assert "current medications" in card["summary"]


def test_check_card_catches_violations() -> None:
    bad = {"summary": "z" * 140, "indicator": "urgent", "source": {},
           "suggestions": [{"label": "x", "actions": [{"type": "delete", "description": "d",
                                                       "resourceId": "nope"}]}]}
    found = " | ".join(check_card(bad))
    for text in ("140 characters", "indicator", "source.label", "selectionBehavior",
                 "relative reference"):
        assert text in found
