"""Alerts that fit their context (issue #14): no action about a draft order where nothing is
being ordered, no naloxone advice to a patient with naloxone on file, each CDS Hooks
suggestion once per response, and one alert for all the pairs of one interaction rule."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

import cds
from cds.authoring.cases import load_cases
from cds.authoring.lint import NEW_ORDER_WORDS, action_warnings, lint_warnings
from cds.engine.alerts import Alert, Suggestion
from cds.engine.evaluator import Engine
from cds.engine.kinds.escalation import NALOXONE_LOOKBACK_DAYS, naloxone_on_file
from cds.engine.result import Result
from cds.errors import CdsError
from cds.knowledge.store import Knowledge
from cds.patient import MedicationOrder, Patient, Timing
from cds.rules.loader import load_pack
from cds.rules.models import Action
from cds.rules.registry import bundled_rulesets
from cds.service.cards import (
    CardContext,
    OrderRef,
    cards_for,
    check_card,
    offer_once,
    order_alerts,
)
from cds.service.config import Settings

AS_OF = date(2026, 11, 26)
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
PACK_DIRS = sorted(p.parent for p in bundled_rulesets().glob("*/pack.yaml"))

OXY = "oxycodone hydrochloride 10 MG Oral Tablet"
MORPHINE = "morphine sulfate 15 MG Oral Tablet"
ALPRAZOLAM = "alprazolam 0.5 MG Oral Tablet"
LORAZEPAM = "lorazepam 1 MG Oral Tablet"
NALOXONE = "naloxone hydrochloride 40 MG/ML Nasal Spray"


def med(oid: str, text: str, per_day: int = 4, *, days_ago: int = 60, **kw: Any
        ) -> MedicationOrder:
    return MedicationOrder(id=oid, text=text, dose=1, dose_unit="tablet",
                           timing=Timing(frequency=per_day, period=1, period_unit="d"),
                           authored=AS_OF - timedelta(days=days_ago), **kw)


def naloxone_order(oid: str = "n1", days_ago: int = 100, **kw: Any) -> MedicationOrder:
    return MedicationOrder(id=oid, text=NALOXONE, dose=1, dose_unit="spray", as_needed=True,
                           authored=AS_OF - timedelta(days=days_ago), **kw)


def naloxone_dispense(days_ago: int) -> MedicationOrder:
    """A naloxone kit dispensed `days_ago` days ago (a one-day supply: history by now)."""
    day = AS_OF - timedelta(days=days_ago)
    return MedicationOrder(id=f"nd{days_ago}", source="dispense", status="completed",
                           text=NALOXONE, dose=1, dose_unit="spray", as_needed=True,
                           dispensed=day, supply_days=1)


def patient(*meds: MedicationOrder, born: int = 1980) -> Patient:
    return Patient(id="p1", birth_date=date(born, 1, 1), sex="female", medications=list(meds))


#: 60 MME/day (oxycodone 10 mg x 4 x 1.5): the 50 MME/day tier advises naloxone
HIGH_DOSE = (med("o1", OXY),)


@pytest.fixture(scope="module")
def every_pack() -> Engine:
    return cds.load_engine(None)


@pytest.fixture(scope="module")
def opioid_safety() -> Engine:
    return cds.load_engine(["opioid-safety"])


@pytest.fixture(scope="module")
def durable() -> Engine:
    return cds.load_engine(["opioid-safety"], backend="durable")


def by_rule(result: Result) -> dict[str, Alert]:
    return {a.rule: a for a in result.alerts}


def advises_naloxone(a: Alert) -> bool:
    return (any("naloxone" in x.lower() for x in a.actions)
            or any(s.kind == "add-naloxone" for s in a.suggestions))


# -- 1. actions about a draft order only where one is being ordered ---------------------------

def test_remove_the_new_order_only_with_a_draft(opioid_safety: Engine, durable: Engine) -> None:
    for engine in (opioid_safety, durable):
        # a panel review, or patient-view: the benzodiazepine is on file, nothing is ordered
        review = by_rule(engine.evaluate(patient(med("o1", OXY, 2), med("b1", ALPRAZOLAM, 2)),
                                         as_of=AS_OF))["opioid-safety/opioid-benzodiazepine"]
        assert "Remove the newly ordered drug" not in review.actions
        assert "Reassess the need for both; consider tapering the benzodiazepine" in review.actions
        assert all(s.kind != "remove-draft" for s in review.suggestions)
        # order-sign: the benzodiazepine is the draft
        signing = by_rule(engine.evaluate(patient(med("o1", OXY, 2)), as_of=AS_OF,
                                          draft_orders=[med("b1", ALPRAZOLAM, 2, days_ago=0)])
                          )["opioid-safety/opioid-benzodiazepine"]
        assert "Remove the newly ordered drug" in signing.actions
        assert [s.order_ids for s in signing.suggestions if s.kind == "remove-draft"] == [("b1",)]


def test_a_draft_the_finding_does_not_involve_is_no_draft_context(opioid_safety: Engine) -> None:
    """order-sign of an unrelated drug: the opioid + benzodiazepine finding is about
    medications on file, so it does not offer to remove a new order."""
    result = opioid_safety.evaluate(patient(med("o1", OXY, 2), med("b1", ALPRAZOLAM, 2)),
                                    as_of=AS_OF,
                                    draft_orders=[med("x", "lisinopril 10 MG Oral Tablet", 1,
                                                      days_ago=0)])
    alert = by_rule(result)["opioid-safety/opioid-benzodiazepine"]
    assert not alert.draft
    assert "Remove the newly ordered drug" not in alert.actions


def test_pdmp_action_is_worded_for_its_context(opioid_safety: Engine) -> None:
    new = med("o1", OXY, 2, days_ago=0, supply_days=5)
    draft = by_rule(opioid_safety.evaluate(patient(), as_of=AS_OF, draft_orders=[new]))
    on_file = by_rule(opioid_safety.evaluate(patient(med("o1", OXY, 2, days_ago=5,
                                                         supply_days=5)), as_of=AS_OF))
    rule = "opioid-safety/rec09-pdmp-before-prescribing"
    assert draft[rule].actions == ("Review the PDMP before prescribing; record the review",)
    assert on_file[rule].actions == ("Review the PDMP; record the review",)


def test_triple_whammy_is_worded_for_its_context() -> None:
    engine = cds.load_engine(["interactions-label"])
    acei = med("r", "lisinopril 10 MG Oral Tablet", 1)
    diuretic = med("d", "hydrochlorothiazide 25 MG Oral Tablet", 1)
    nsaid = med("n", "ibuprofen 400 MG Oral Tablet", 3)
    rule = "interactions-label/triple-whammy"
    on_file = by_rule(engine.evaluate(patient(acei, diuretic, nsaid), as_of=AS_OF))[rule]
    signing = by_rule(engine.evaluate(patient(acei, diuretic), as_of=AS_OF,
                                      draft_orders=[nsaid.model_copy(update={"authored": AS_OF})])
                      )[rule]
    assert len(on_file.actions) == 1 and on_file.actions[0].startswith("Review whether the NSAID")
    assert not on_file.suggestions
    assert signing.actions[0].startswith("If the newly ordered drug is needed")
    assert "Remove the newly ordered drug" in signing.actions
    assert not any(a.startswith("Review whether the NSAID") for a in signing.actions)


def test_no_shipped_case_says_new_order_words_without_a_draft(kb: Knowledge) -> None:
    """Every case patient of every shipped pack, checked as a panel review does (no draft
    orders): no action speaks of a new order, none removes a draft; with its drafts, the
    draft-only actions come back."""
    seen_draft_only = 0
    for folder in PACK_DIRS:
        engine = Engine([load_pack(folder, kb)], kb)
        for lc in load_cases(folder):
            review = engine.evaluate(lc.patient, as_of=lc.case.as_of)
            for a in review.alerts:
                bad = [x for x in a.actions if NEW_ORDER_WORDS.search(x)]
                assert bad == [], f"{folder.name} / {lc.case.name} / {a.rule}: {bad}"
                assert all(s.kind != "remove-draft" for s in a.suggestions)
            if lc.case.draft_orders:
                signing = engine.evaluate(lc.patient, as_of=lc.case.as_of,
                                          draft_orders=lc.case.draft_orders)
                seen_draft_only += sum(1 for a in signing.alerts for x in a.actions
                                       if a.draft and NEW_ORDER_WORDS.search(x))
    assert seen_draft_only > 0


def test_action_when_is_validated() -> None:
    assert Action.model_validate("Plain text").needs == frozenset()
    assert Action.model_validate({"text": "t", "when": "draft"}).needs == {"draft"}
    implied = Action.model_validate({"text": "t", "when": ["no-draft"], "suggestion": {
        "kind": "add-naloxone", "label": "l"}})
    assert implied.needs == {"no-draft", "no-naloxone"}
    with pytest.raises(ValueError, match="both 'draft' and 'no-draft'"):
        Action.model_validate({"text": "t", "when": "no-draft",
                               "suggestion": {"kind": "remove-draft", "label": "l"}})
    with pytest.raises(ValueError):
        Action.model_validate({"text": "t", "when": "sometimes"})


def test_lint_flags_unmarked_new_order_and_naloxone_actions(kb: Knowledge,
                                                            tmp_path: Path) -> None:
    assert action_warnings(Action.model_validate("Remove the newly ordered drug"))
    assert action_warnings(Action.model_validate("Review the PDMP before prescribing"))
    assert action_warnings(Action.model_validate("Do not start the opioid"))
    assert action_warnings(Action.model_validate("Cancel the new opioid order"))
    assert action_warnings(Action.model_validate({"text": "Remove the new order",
                                                  "when": "no-draft"}))
    assert action_warnings(Action.model_validate({"text": "Remove the newly ordered drug",
                                                  "when": "draft"})) == []
    assert action_warnings(Action.model_validate({
        "text": "Remove the newly ordered drug",
        "suggestion": {"kind": "remove-draft", "label": "Remove"}})) == []
    assert action_warnings(Action.model_validate("Reassess the need for both")) == []
    assert action_warnings(Action.model_validate(
        "New start: choose another drug. Continuing: weigh benefit and risk")) == []
    (naloxone,) = action_warnings(Action.model_validate("Offer naloxone"))
    assert "no-naloxone" in naloxone
    assert action_warnings(Action.model_validate({"text": "Offer naloxone",
                                                  "when": "no-naloxone"})) == []
    # through `cds pack lint` on a pack
    folder = tmp_path / "p"
    (folder / "rules").mkdir(parents=True)
    (folder / "pack.yaml").write_text(
        "id: p\nversion: 1.0.0\ntitle: t\ndescription: d\nknowledge: '>=2026.1.0'\n"
        "maintainers: [m]\nchangelog: [{version: 1.0.0, date: 2026-11-26, changes: [c]}]\n")
    (folder / "rules" / "r.yaml").write_text(
        "rules:\n  - id: ob\n    type: interaction\n    a: opioid\n    b: benzodiazepine\n"
        "    severity: high\n    summary: s\n    rationale: r\n    mechanism: m\n"
        "    management: g\n    sources: [s]\n"
        "    actions: [Remove the newly ordered drug, Offer naloxone, Reassess]\n")
    warned = lint_warnings(load_pack(folder, kb), kb)
    assert len(warned) == 2
    assert "actions[0]" in warned[0] and "when: draft" in warned[0]
    assert "actions[1]" in warned[1] and "no-naloxone" in warned[1]


def test_shipped_packs_mark_every_new_order_action(kb: Knowledge) -> None:
    marked = 0
    for folder in PACK_DIRS:
        for loaded in load_pack(folder, kb).rules:
            for a in loaded.rule.actions:
                assert action_warnings(a) == [], f"{folder.name}/{loaded.rule.id}: {a.text}"
                marked += "draft" in a.needs
    assert marked > 70


# -- 2. no naloxone advice with naloxone on file ----------------------------------------------

def test_naloxone_advised_without_naloxone_on_file(opioid_safety: Engine) -> None:
    alerts = by_rule(opioid_safety.evaluate(patient(*HIGH_DOSE), as_of=AS_OF))
    assert "Offer naloxone" in alerts["opioid-safety/mme-50"].actions
    assert [s.kind for s in alerts["opioid-safety/mme-50"].suggestions] == ["add-naloxone"]
    assert "opioid-safety/naloxone-not-on-file" in alerts


@pytest.mark.parametrize("on_file", [
    pytest.param((naloxone_order(),), id="current order"),
    pytest.param((naloxone_dispense(400),), id="dispensed 400 days ago"),
    pytest.param((naloxone_order("n2", days_ago=500, status="completed"),),
                 id="ordered 500 days ago"),
])
def test_no_naloxone_advice_with_naloxone_on_file(opioid_safety: Engine, durable: Engine,
                                                  kb: Knowledge,
                                                  on_file: tuple[MedicationOrder, ...]) -> None:
    p = patient(*HIGH_DOSE, med("b1", ALPRAZOLAM, 2), *on_file)
    assert naloxone_on_file(opioid_safety.facts(p, AS_OF), kb)
    for engine in (opioid_safety, durable):
        result = engine.evaluate(p, as_of=AS_OF)
        alerts = by_rule(result)
        # the MME tier and the opioid + benzodiazepine pair still fire, without the advice
        assert {"opioid-safety/mme-50", "opioid-safety/opioid-benzodiazepine"} <= set(alerts)
        assert "opioid-safety/naloxone-not-on-file" not in alerts
        assert [a.rule for a in result.alerts if advises_naloxone(a)] == []
        assert "Increase the frequency of follow-up" in alerts["opioid-safety/mme-50"].actions


@pytest.mark.parametrize("text", [
    pytest.param("buprenorphine 8 MG / naloxone 2 MG Sublingual Film", id="buprenorphine/naloxone"),
    pytest.param("naltrexone hydrochloride 50 MG Oral Tablet", id="naltrexone"),
])
def test_an_antagonist_that_reverses_no_overdose_is_not_naloxone_on_file(
        opioid_safety: Engine, kb: Knowledge, text: str) -> None:
    """The naloxone of buprenorphine/naloxone deters injection (its label asks for a separate
    naloxone prescription); naltrexone treats dependence: neither is a rescue product, and a
    patient on either still gets the advice."""
    p = patient(*HIGH_DOSE, med("x1", text, 1))
    assert not naloxone_on_file(opioid_safety.facts(p, AS_OF), kb)
    alerts = by_rule(opioid_safety.evaluate(p, as_of=AS_OF))
    assert "opioid-safety/naloxone-not-on-file" in alerts
    assert advises_naloxone(alerts["opioid-safety/mme-50"])


def test_nalmefene_nasal_spray_is_naloxone_on_file(opioid_safety: Engine, kb: Knowledge) -> None:
    p = patient(*HIGH_DOSE, med("x1", "nalmefene hydrochloride 2.7 MG Nasal Spray", 1))
    assert naloxone_on_file(opioid_safety.facts(p, AS_OF), kb)


def test_naloxone_drafted_now_counts_as_on_file(opioid_safety: Engine) -> None:
    result = opioid_safety.evaluate(patient(*HIGH_DOSE), as_of=AS_OF,
                                    draft_orders=[naloxone_order("nd", days_ago=0)])
    assert [a.rule for a in result.alerts if advises_naloxone(a)] == []


def test_naloxone_beyond_the_lookback_is_not_on_file(opioid_safety: Engine,
                                                     kb: Knowledge) -> None:
    old = naloxone_dispense(NALOXONE_LOOKBACK_DAYS + 30)
    p = patient(*HIGH_DOSE, old)
    assert not naloxone_on_file(opioid_safety.facts(p, AS_OF), kb)
    alerts = by_rule(opioid_safety.evaluate(p, as_of=AS_OF))
    assert "opioid-safety/naloxone-not-on-file" in alerts
    assert advises_naloxone(alerts["opioid-safety/mme-50"])


def test_the_helper_and_the_escalation_rule_agree(opioid_safety: Engine, kb: Knowledge) -> None:
    """At 60 MME/day the no-naloxone rule's reasons hold: it fires exactly when the shared
    helper finds no naloxone, at each side of the look-back."""
    for extra in ((), (naloxone_order(),), (naloxone_dispense(NALOXONE_LOOKBACK_DAYS - 1),),
                  (naloxone_dispense(NALOXONE_LOOKBACK_DAYS + 1),)):
        p = patient(*HIGH_DOSE, *extra)
        fires = "opioid-safety/naloxone-not-on-file" in by_rule(
            opioid_safety.evaluate(p, as_of=AS_OF))
        assert fires is not naloxone_on_file(opioid_safety.facts(p, AS_OF), kb)


def test_every_shipped_case_with_naloxone_on_file_gets_no_naloxone_advice(kb: Knowledge) -> None:
    """Each case patient of every shipped pack, with a naloxone order added: no alert advises
    naloxone (text or suggestion)."""
    n = 0
    for folder in PACK_DIRS:
        engine = Engine([load_pack(folder, kb)], kb)
        for lc in load_cases(folder):
            p = lc.patient.model_copy(update={"medications": [
                *lc.patient.medications,
                naloxone_order("case-naloxone").model_copy(update={"authored": lc.case.as_of})]})
            try:
                result = engine.evaluate(p, as_of=lc.case.as_of,
                                         draft_orders=lc.case.draft_orders)
            except CdsError:
                continue  # a case about a refused input (too many medications...)
            bad = [a.rule for a in result.alerts if advises_naloxone(a)]
            assert bad == [], f"{folder.name} / {lc.case.name}: {bad}"
            n += len(result.alerts)
    assert n > 100


# -- 3. each suggestion once per CDS Hooks response -------------------------------------------

def _alert(aid: str, priority: int, *suggestions: Suggestion, draft: bool = False) -> Alert:
    return Alert(id=aid, rule=f"p/{aid}", pack="p@1.0.0", pack_digest="d", family="mme",
                 severity="high", priority=priority, summary=aid, rationale="r",
                 medications=(), sources=("s",), actions=(), draft=draft,
                 suggestions=suggestions)


NAL = Suggestion("add-naloxone", "Order naloxone 4 mg nasal spray", ("o1",))


def test_offer_once_keeps_the_highest_priority_offer() -> None:
    reduce_700 = Suggestion("reduce-dose", "Reduce", ("o1",), 700.0, "mg")
    reduce_300 = Suggestion("reduce-dose", "Reduce", ("o1",), 300.0, "mg")
    remove = Suggestion("remove-draft", "Remove", ("d1",))
    alerts = [_alert("a", 215, NAL, remove, draft=True),
              _alert("b", 330, replace(NAL, order_ids=("o2",)), reduce_700),
              _alert("c", 330, NAL, reduce_300, remove),
              _alert("d", 100, NAL, NAL)]
    got = {a.id: a.suggestions for a in offer_once(alerts)}
    # naloxone is one product whatever the orders: on b (330, first of the tie)
    assert got["b"] == (replace(NAL, order_ids=("o2",)), reduce_700)
    assert got["c"] == (reduce_300, remove)  # another dose is another suggestion
    assert got["a"] == () and got["d"] == ()
    # the alerts keep their order; untouched ones are the same objects
    assert [a.id for a in offer_once(alerts)] == ["a", "b", "c", "d"]
    solo = [_alert("x", 1, NAL, NAL)]
    assert offer_once(solo)[0].suggestions == (NAL,)
    untouched = [_alert("y", 1, NAL)]
    assert offer_once(untouched)[0] is untouched[0]


def test_cards_offer_naloxone_once(opioid_safety: Engine) -> None:
    p = patient(*HIGH_DOSE, med("b1", ALPRAZOLAM, 2))
    result = opioid_safety.evaluate(p, as_of=AS_OF)
    offering = [a for a in result.alerts if any(s.kind == "add-naloxone" for s in a.suggestions)]
    assert len(offering) >= 3  # mme-50, opioid + benzodiazepine, naloxone-not-on-file
    ctx = CardContext(hook_instance="h1", patient_id="p1",
                      orders={m.id: OrderRef("MedicationRequest", m.id, {
                          "resourceType": "MedicationRequest", "id": m.id}, False)
                          for m in p.medications})
    cards = cards_for(result.alerts, ctx)
    creates = [(c["summary"], s) for c in cards for s in c.get("suggestions", ())
               if any(a["type"] == "create" for a in s["actions"])]
    assert len(creates) == 1
    top = max(offering, key=lambda a: a.priority)
    assert creates[0][0] == top.summary
    assert all(check_card(c) == [] for c in cards)
    # the card order and the alert each card came from agree (the service pairs them)
    assert [a.summary for a in order_alerts(result.alerts)] == [c["summary"] for c in cards]


# -- the service: patient-view, order-sign ----------------------------------------------------

PID = "ctx-fit-1"


def _fhir_med(rid: str, code: str, display: str, per_day: int, *, today: date,
              draft: bool = False, days_ago: int = 60) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid,
            "status": "draft" if draft else "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": code,
                                                      "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PID}"},
            "authoredOn": (today - timedelta(days=0 if draft else days_ago)).isoformat(),
            "dosageInstruction": [{"timing": {"repeat": {"frequency": per_day, "period": 1,
                                                         "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1,
                                                                     "unit": "tablet"}}]}]}


def _hook(hook: str, meds: list[dict[str, Any]], drafts: list[dict[str, Any]] = ()
          ) -> dict[str, Any]:
    none = dict.fromkeys(("dispenses", "weight", "creatinine", "egfr", "conditions",
                          "procedures", "encounters", "labs", "pdmp", "careplans",
                          "servicerequests"))
    context: dict[str, Any] = {"userId": "Practitioner/u1", "patientId": PID}
    if hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle",
                                  "entry": [{"resource": d} for d in drafts]}
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": {"patient": {"resourceType": "Patient", "id": PID, "gender": "female",
                                     "birthDate": "1980-01-01"},
                         "medications": {"resourceType": "Bundle", "type": "searchset",
                                         "entry": [{"resource": m} for m in meds]},
                         **none}}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with warnings.catch_warnings():  # starlette's note on httpx: not this test's concern
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from cds.service.app import create_app

    folder = tmp_path_factory.mktemp("context-fit")
    settings = Settings(feedback_db=folder / "feedback.sqlite3", fhir_timeout=0.5,
                        fhir_servers=["http://127.0.0.1:9/"])
    with TestClient(create_app(settings, allow_unsigned=True)) as client:
        yield client


def _cards(service: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = service.post(f"/cds-services/{body['hook']}", json=body)
    assert r.status_code == 200, r.text
    cards: list[dict[str, Any]] = r.json()["cards"]
    assert all(check_card(c) == [] for c in cards)
    return cards


def _suggested(cards: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["uuid"], a) for c in cards for s in c.get("suggestions", ())
            for a in s["actions"]]


def test_service_patient_view_never_offers_to_remove_a_new_order(service: Any) -> None:
    today = date.today()
    oxy = _fhir_med("o1", "1049683", OXY, 4, today=today)
    diazepam = _fhir_med("d1", "197591", "diazepam 5 MG Oral Tablet", 2, today=today)
    view = _cards(service, _hook("patient-view", [oxy, diazepam]))
    assert any("benzodiazepine" in c["summary"].lower() for c in view)
    assert not any(a["type"] == "delete" for _, a in _suggested(view))
    assert not any("newly ordered" in c["detail"] for c in view)
    # order-sign of the same benzodiazepine: removing the draft is offered, once
    sign = _cards(service, _hook("order-sign", [oxy], [
        {**diazepam, "id": "draft-d1", "status": "draft"}]))
    deletes = [a for _, a in _suggested(sign) if a["type"] == "delete"]
    assert deletes == [{"type": "delete", "resourceId": "MedicationRequest/draft-d1",
                        "description": deletes[0]["description"]}]
    assert any("newly ordered" in c["detail"] for c in sign)


def test_service_offers_naloxone_once_and_never_with_naloxone_on_file(service: Any) -> None:
    today = date.today()
    oxy = _fhir_med("o1", "1049683", OXY, 4, today=today)
    alprazolam = _fhir_med("b1", "308048", ALPRAZOLAM, 2, today=today)
    cards = _cards(service, _hook("patient-view", [oxy, alprazolam]))
    creates = [(cid, a) for cid, a in _suggested(cards) if a["type"] == "create"
               and "naloxone" in a["resource"]["medicationCodeableConcept"]["text"]]
    assert len(creates) == 1
    # it is on the first (highest-priority) card among those whose detail says to offer it
    offering = [c["uuid"] for c in cards if "Offer naloxone" in c["detail"]]
    assert len(offering) >= 2 and creates[0][0] == offering[0]
    uuids = [s["uuid"] for c in cards for s in c.get("suggestions", ())]
    assert len(uuids) == len(set(uuids))
    # naloxone on file: no card advises it, in words or as a suggestion
    kit = _fhir_med("n1", "1725059", NALOXONE, 1, today=today, days_ago=100)
    with_kit = _cards(service, _hook("patient-view", [oxy, alprazolam, kit]))
    assert any("benzodiazepine" in c["summary"].lower() for c in with_kit)
    assert not any("Offer naloxone" in c["detail"] for c in with_kit)
    assert not any(a["type"] == "create" for _, a in _suggested(with_kit))


# -- 4. all the pairs of one interaction rule in one alert, on every path ---------------------

FOUR_PAIRS = (med("o1", OXY, 2), med("o2", MORPHINE, 2), med("b1", ALPRAZOLAM, 2),
              med("b2", LORAZEPAM, 2))
PAIRS = {f"{o} + {b}" for o in (OXY, MORPHINE) for b in (ALPRAZOLAM, LORAZEPAM)}


def _one_pair_alert(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [a for a in alerts if a["rule"] == "opioid-safety/opioid-benzodiazepine"
            or "opioid-safety/opioid-benzodiazepine" in a["also"]]
    assert len(mine) == 1, [a["rule"] for a in mine]
    return mine[0]


@pytest.mark.parametrize("backend", ["indexed", "durable"])
@pytest.mark.parametrize("packs", [["opioid-safety"], None], ids=["opioid-safety", "all"])
def test_four_pairs_are_one_alert_in_check_json(backend: str, packs: list[str] | None) -> None:
    result = cds.load_engine(packs, backend=backend).evaluate(patient(*FOUR_PAIRS), as_of=AS_OF)
    doc = orjson.loads(orjson.dumps(result.to_dict()))  # what `cds check --format json` prints
    alert = _one_pair_alert(doc["alerts"])
    assert sorted(alert["medications"]) == sorted({OXY, MORPHINE, ALPRAZOLAM, LORAZEPAM})
    assert "4 pairs: " in alert["rationale"]
    assert all(p in alert["rationale"] for p in PAIRS)
    (engine_alert,) = [a for a in result.alerts if a.id == alert["id"]]
    assert engine_alert.values["pair_count"] == 4
    assert set(engine_alert.values["pairs"].split("; ")) == PAIRS


def test_four_pairs_are_one_card(service: Any) -> None:
    today = date.today()
    meds = [_fhir_med("o1", "1049683", OXY, 2, today=today),
            _fhir_med("o2", "892582", MORPHINE, 2, today=today),
            _fhir_med("b1", "308048", ALPRAZOLAM, 2, today=today),
            _fhir_med("b2", "197901", LORAZEPAM, 2, today=today)]
    cards = _cards(service, _hook("patient-view", meds))
    pair_cards = [c for c in cards if "opioid with a benzodiazepine" in c["summary"].lower()]
    assert len(pair_cards) == 1
    detail = pair_cards[0]["detail"]
    assert "4 pairs" in detail
    # the detail is markdown: each pair is named in it
    assert all(p in detail for p in PAIRS)
    # order-sign with one benzodiazepine as the draft: still one card for all four pairs
    sign = _cards(service, _hook("order-sign", meds[:3], [
        {**meds[3], "id": "draft-b2", "status": "draft", "authoredOn": today.isoformat()}]))
    pair_cards = [c for c in sign if "opioid with a benzodiazepine" in c["summary"].lower()]
    assert len(pair_cards) == 1 and "4 pairs" in pair_cards[0]["detail"]
    assert sign[0] is pair_cards[0]  # the draft's card comes first
