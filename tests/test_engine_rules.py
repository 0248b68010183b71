"""Engine behaviour per rule type, deduplication, priority and routing, on small packs."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds import Engine, Patient, load_pack
from cds.knowledge.store import default_knowledge

AS_OF = date(2026, 11, 26)
OXY = "oxycodone hydrochloride 10 MG Oral Tablet"
ALPRAZ = "alprazolam 0.5 MG Oral Tablet"
GABA = "gabapentin 300 MG Oral Capsule"
FENT = "72 HR fentanyl 0.025 MG/HR Transdermal System"


def med(mid: str, text: str, dose: float = 1, unit: str = "tablet", per_day: int = 4,
        **kw: Any) -> dict[str, Any]:
    base = {"id": mid, "text": text, "dose": dose, "dose_unit": unit,
            "timing": {"frequency": per_day, "period": 1, "period_unit": "d"}}
    base.update(kw)
    return base


def patient(meds: list[dict[str, Any]], **kw: Any) -> Patient:
    data: dict[str, Any] = {"id": "p1", "birth_date": "1950-01-01", "sex": "female",
                            "medications": meds}
    data.update(kw)
    return Patient.model_validate(data)


def make_pack(root: Path, pid: str, rules: list[dict[str, Any]], version: str = "1.0.0",
              escalation: dict[str, Any] | None = None) -> Path:
    folder = root / f"{pid}@{version}"
    (folder / "rules").mkdir(parents=True)
    meta = {"id": pid, "version": version, "title": pid, "description": "test pack",
            "knowledge": ">=2026.11.0", "maintainers": ["tests"],
            "changelog": [{"version": version, "date": "2026-11-26", "changes": ["test"]}]}
    if escalation:
        meta["escalation"] = escalation
    (folder / "pack.yaml").write_text(yaml.safe_dump(meta))
    (folder / "rules" / "r.yaml").write_text(yaml.safe_dump({"rules": rules}))
    return folder


def rule(rid: str, rtype: str, severity: str = "high", **kw: Any) -> dict[str, Any]:
    r = {"id": rid, "type": rtype, "severity": severity, "summary": f"{rid} fired",
         "rationale": f"{rid} rationale", "sources": ["test source"]}
    r.update(kw)
    return r


def inter(rid: str, a: str, b: str, **kw: Any) -> dict[str, Any]:
    return rule(rid, "interaction", a=a, b=b, mechanism="m.", management="n.", **kw)


def engine(*folders: Path) -> Engine:
    kb = default_knowledge()
    return Engine([load_pack(f, kb) for f in folders], kb)


def fired(e: Engine, p: Patient, **kw: Any) -> list[str]:
    return [a.rule for a in e.evaluate(p, as_of=AS_OF, **kw).alerts]


def test_class_and_ingredient_rule_on_same_pair_give_one_alert(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [inter("by-class", "opioid", "benzodiazepine"),
                                       inter("by-drug", "oxycodone", "alprazolam")])
    result = engine(folder).evaluate(patient([med("o", OXY), med("a", ALPRAZ)]), as_of=AS_OF)
    assert [a.rule for a in result.alerts] == ["t/by-drug"]
    assert result.alerts[0].also == ("t/by-class",)


def test_same_finding_in_two_packs_is_one_alert_listing_both(tmp_path: Path) -> None:
    a = make_pack(tmp_path, "pa", [inter("ob", "opioid", "benzodiazepine", finding="ob")])
    b = make_pack(tmp_path, "pb", [rule("combo", "burden", kind="combination",
                                        all=["opioid", "benzodiazepine"], finding="ob")])
    alerts = engine(a, b).evaluate(patient([med("o", OXY), med("a", ALPRAZ)]), as_of=AS_OF).alerts
    assert len(alerts) == 1
    assert {alerts[0].rule, *alerts[0].also} == {"pa/ob", "pb/combo"}


def test_different_mechanisms_on_one_pair_stay_separate(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [inter("x", "opioid", "benzodiazepine"),
                                       rule("c", "burden", kind="combination",
                                            all=["opioid", "benzodiazepine"])])
    got = fired(engine(folder), patient([med("o", OXY), med("a", ALPRAZ)]))
    assert sorted(got) == ["t/c", "t/x"]


def test_interaction_needs_two_distinct_drugs(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [inter("oo", "opioid", "opioid")])
    e = engine(folder)
    assert fired(e, patient([med("o1", OXY), med("o2", OXY, per_day=2)])) == []
    assert fired(e, patient([med("o", OXY), med("f", FENT, unit="patch")])) == ["t/oo"]


def test_severity_dominates_priority_and_order_is_deterministic(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [
        inter("low", "oxycodone", "gabapentin", severity="low"),
        inter("crit", "oxycodone", "alprazolam", severity="critical"),
        rule("mme", "mme", severity="moderate", min=50)])
    p = patient([med("g", GABA, per_day=3), med("o", OXY), med("a", ALPRAZ)])
    alerts = engine(folder).evaluate(p, as_of=AS_OF).alerts
    assert [a.rule for a in alerts] == ["t/crit", "t/mme", "t/low"]
    assert alerts[0].priority > alerts[1].priority > alerts[2].priority
    assert alerts == engine(folder).evaluate(p, as_of=AS_OF).alerts


def test_priority_modifiers_raise_older_patients(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [inter("x", "opioid", "benzodiazepine")])
    e = engine(folder)
    meds = [med("o", OXY), med("a", ALPRAZ)]
    old = e.evaluate(patient(meds), as_of=AS_OF).alerts[0].priority
    young = e.evaluate(patient(meds, birth_date="1990-01-01"), as_of=AS_OF).alerts[0].priority
    assert 300 <= young < old < 400


def test_non_interruptive_rule_sinks_within_its_band(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [inter("x", "opioid", "benzodiazepine", severity="low",
                                             interruptive=False)])
    a = engine(folder).evaluate(patient([med("o", OXY), med("a", ALPRAZ)]), as_of=AS_OF).alerts[0]
    assert a.interruptive is False and 100 <= a.priority < 200


def test_mme_tiers(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [rule("m50", "mme", severity="moderate", min=50, below=90),
                                       rule("m90", "mme", min=90)])
    e = engine(folder)
    assert fired(e, patient([med("o", OXY, per_day=2)])) == []  # 30 MME
    assert fired(e, patient([med("o", OXY, per_day=4)])) == ["t/m50"]  # 60 MME
    assert fired(e, patient([med("o", OXY), med("f", FENT, unit="patch")])) == ["t/m90"]  # 120


def test_summary_and_rationale_state_values(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [rule("m", "mme", min=50, summary="At {mme} MME/day")])
    a = engine(folder).evaluate(patient([med("o", OXY)]), as_of=AS_OF).alerts[0]
    assert a.summary == "At 60.0 MME/day"
    assert "40 mg/day x 1.5 = 60" in a.rationale and "Sources: test source." in a.rationale


def renal_patient(meds: list[dict[str, Any]], scr: float, **kw: Any) -> Patient:
    obs = [{"kind": "creatinine", "value": scr, "unit": "mg/dL", "date": "2026-10-01"},
           {"kind": "weight", "value": 70, "unit": "kg", "date": "2026-10-01"}]
    return patient(meds, observations=obs, **kw)


def test_renal_band_and_dose_limit(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [
        rule("gaba", "renal", drugs="gabapentin", measure="crcl", below=60, action="reduce",
             max_daily_dose={"value": 700, "unit": "mg"})])
    e = engine(folder)
    # age 76, female, 70 kg, SCr 1.4: CrCl = 64*70/(72*1.4)*0.85 = 37.8 mL/min
    assert fired(e, renal_patient([med("g", GABA, per_day=3)], 1.4)) == ["t/gaba"]  # 900 mg
    assert fired(e, renal_patient([med("g", GABA, per_day=2)], 1.4)) == []  # 600 mg <= 700
    assert fired(e, renal_patient([med("g", GABA, per_day=3)], 0.7)) == []  # CrCl 75.6
    a = e.evaluate(renal_patient([med("g", GABA, per_day=3)], 1.4), as_of=AS_OF).alerts[0]
    assert "CrCl 37.8 mL/min" in a.rationale and "SCr 1.40 mg/dL on 2026-10-01" in a.rationale


def test_renal_monitoring_when_creatinine_missing_or_stale(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [
        rule("gaba", "renal", drugs="gabapentin", below=30, action="avoid"),
        rule("mon", "renal-monitoring", severity="low", max_age_days=365)])
    e = engine(folder)
    assert fired(e, patient([med("g", GABA)])) == ["t/mon"]
    assert fired(e, renal_patient([med("g", GABA)], 1.0)) == []
    stale = patient([med("g", GABA)], observations=[
        {"kind": "creatinine", "value": 1.0, "unit": "mg/dL", "date": "2024-01-01"},
        {"kind": "weight", "value": 70, "unit": "kg", "date": "2024-01-01"}])
    assert fired(e, stale) == ["t/mon"]
    assert fired(e, patient([med("o", OXY)])) == []  # no renally restricted drug


def test_hepatic_child_pugh(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [rule("h", "hepatic", drugs="oxycodone",
                                            child_pugh=["C"], action="avoid")])
    e = engine(folder)
    labs = [{"kind": "bilirubin", "value": 3.5, "unit": "mg/dL"},
            {"kind": "albumin", "value": 2.5, "unit": "g/dL"},
            {"kind": "inr", "value": 2.5, "unit": "1"}]
    severe = patient([med("o", OXY)], observations=labs, ascites="moderate-severe",
                     encephalopathy="grade 1-2")  # 3+3+3+3+2 = 14 -> C
    assert fired(e, severe) == ["t/h"]
    assert "score 14" in e.evaluate(severe, as_of=AS_OF).alerts[0].rationale
    assert fired(e, patient([med("o", OXY)], child_pugh_class="B")) == []
    assert fired(e, patient([med("o", OXY)])) == []  # unknown: not assumed


def test_routing_by_policy_and_referral(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [rule("m90", "mme", min=90),
                                       inter("x", "opioid", "benzodiazepine", severity="moderate")],
                       escalation={"default_role": "pharmacist",
                                   "routes": [{"family": "mme", "role": "prescriber"}],
                                   "referral": {"min_mme": 100, "text": "Refer."}})
    e = engine(folder)
    at_90 = patient([med("o", OXY, per_day=6), med("a", ALPRAZ)])  # 90 MME
    roles = {a.rule: a.role for a in e.evaluate(at_90, as_of=AS_OF).alerts}
    assert roles == {"t/m90": "prescriber", "t/x": "pharmacist"}
    high = patient([med("o", OXY), med("f", FENT, unit="patch"), med("a", ALPRAZ)])  # 120
    alerts = {a.rule: a for a in e.evaluate(high, as_of=AS_OF).alerts}
    assert alerts["t/m90"].role == "pain-specialist" and alerts["t/m90"].actions[-1] == "Refer."
    assert alerts["t/x"].role == "pharmacist"


def hist(mid: str, text: str, start: str, days: int, per_day: int = 4, status: str = "completed",
         prescriber: str | None = None) -> dict[str, Any]:
    return med(mid, text, per_day=per_day, status=status, authored=start, supply_days=days,
               prescriber=prescriber)


def test_escalation_rules(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [
        rule("up", "escalation", kind="mme-increase", percent=50, days=30),
        rule("cross", "escalation", kind="mme-crossing", threshold=50, days=90),
        rule("taper", "escalation", kind="rapid-taper", percent=25, days=7),
        rule("ltot", "escalation", kind="long-term-opioid", days=90),
        rule("docs", "escalation", kind="multiple-prescribers", days=90),
        rule("nalox", "escalation", kind="no-naloxone", threshold=50)])
    e = engine(folder)
    # 30 MME for 120 days, then 60 MME now, from a second prescriber
    rising = patient([
        hist("h1", OXY, "2026-07-01", 140, per_day=2, prescriber="Dr A"),
        med("now", OXY, per_day=4, authored="2026-11-20", prescriber="Dr B")])
    got = set(fired(e, rising))
    assert {"t/up", "t/cross", "t/ltot", "t/docs", "t/nalox"} <= got and "t/taper" not in got
    # 60 MME for 120 days, stopped abruptly 3 days ago
    stopped = patient([hist("h1", OXY, "2026-07-20", 126), med("g", GABA)])
    assert fired(e, stopped) == ["t/taper"]
    with_naloxone = patient([med("now", OXY, authored="2026-11-20"),
                             med("n", "naloxone hydrochloride 4 MG/ACTUAT Nasal Spray",
                                 unit="spray", per_day=1, as_needed=True)])
    assert "t/nalox" not in fired(e, with_naloxone)


def test_expression_rule(tmp_path: Path) -> None:
    folder = make_pack(tmp_path, "t", [
        rule("old-gaba", "expression", family="burden", drugs="gabapentin",
             when="age >= 75 and daily_dose('gabapentin') > 600")])
    e = engine(folder)
    assert fired(e, patient([med("g", GABA, per_day=3)])) == ["t/old-gaba"]
    assert fired(e, patient([med("g", GABA, per_day=2)])) == []
    assert fired(e, patient([med("g", GABA, per_day=3)], birth_date="1970-01-01")) == []


def test_draft_orders_are_evaluated_and_flagged(tmp_path: Path) -> None:
    from cds import MedicationOrder

    folder = make_pack(tmp_path, "t", [inter("x", "opioid", "benzodiazepine", actions=[
        {"text": "Remove", "suggestion": {"kind": "remove-draft", "label": "Remove draft"}}])])
    draft = MedicationOrder.model_validate(med("d", ALPRAZ, status="draft"))
    alerts = engine(folder).evaluate(patient([med("o", OXY)]), as_of=AS_OF,
                                     draft_orders=[draft]).alerts
    assert alerts[0].draft and alerts[0].suggestions[0].order_ids == ("d",)


def test_unrecognized_medication_is_reported_not_dropped() -> None:
    e = Engine([], default_knowledge())
    r = e.evaluate(patient([med("x", "unobtainium 5 MG Oral Tablet")]), as_of=AS_OF)
    assert [u.label for u in r.unrecognized] == ["unobtainium 5 MG Oral Tablet"]
    assert r.to_dict()["unrecognized"][0]["reason"]


def test_engine_pickles(tmp_path: Path) -> None:
    import pickle

    folder = make_pack(tmp_path, "t", [inter("x", "opioid", "benzodiazepine", when="age >= 65")])
    e = engine(folder)
    clone = pickle.loads(pickle.dumps(e))
    p = patient([med("o", OXY), med("a", ALPRAZ)])
    assert clone.evaluate(p, as_of=AS_OF).to_dict() == e.evaluate(p, as_of=AS_OF).to_dict()


@pytest.mark.parametrize("bad", ["unknown", "durable2"])
def test_unknown_backend_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown engine backend"):
        Engine([], default_knowledge(), backend=bad)  # type: ignore[arg-type]


def dispense(mid: str, text: str, day: str, supply: int, per_day: int = 4) -> dict[str, Any]:
    return med(mid, text, per_day=per_day, source="dispense", status="completed", dispensed=day,
               authored=day, supply_days=supply)


def test_dispense_covering_today_is_a_current_medication() -> None:
    e = Engine([], default_knowledge())
    claims_only = patient([dispense("d1", OXY, "2026-11-10", 30)])  # covers 2026-11-26
    assert e.evaluate(claims_only, as_of=AS_OF).mme.total == 60
    expired = patient([dispense("d1", OXY, "2026-10-01", 30)])
    assert e.evaluate(expired, as_of=AS_OF).mme.total == 0
    refills = patient([dispense("d1", OXY, "2026-11-01", 30, per_day=2),
                       dispense("d2", OXY, "2026-11-20", 30)])  # early refill: latest counts
    assert e.evaluate(refills, as_of=AS_OF).mme.total == 60
    with_order = patient([med("o", OXY), dispense("d1", OXY, "2026-11-10", 30)])
    assert e.evaluate(with_order, as_of=AS_OF).mme.total == 60  # the fill is not a second drug


def test_methadone_for_oud_is_no_taper_and_no_rise(tmp_path: Path) -> None:
    """A medication given for opioid use disorder counts in neither today's MME nor its
    history: comparing an MME that leaves it out with a baseline that counts it would read
    steady OUD treatment as an abrupt taper."""
    folder = make_pack(tmp_path, "t", [
        rule("up", "escalation", kind="mme-increase", percent=50, days=30),
        rule("taper", "escalation", kind="rapid-taper", percent=25, days=7),
        rule("cross", "escalation", kind="mme-crossing", threshold=50, days=90)])
    e = engine(folder)
    oud = [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F11.20"}]
    methadone = med("m", "methadone hydrochloride 10 MG Oral Tablet", per_day=8,
                    authored="2026-03-01", reasons=oud)
    assert fired(e, patient([methadone])) == []
    # a rise of the pain opioid beside it is judged on the pain opioid alone
    rising = patient([methadone, hist("h1", OXY, "2026-07-01", 140, per_day=2),
                      med("now", OXY, per_day=4, authored="2026-11-20")])
    assert set(fired(e, rising)) == {"t/up", "t/cross"}
