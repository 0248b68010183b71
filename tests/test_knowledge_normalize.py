"""Medication order -> ingredients, strength, form, route and daily amount; unit conversion."""

from __future__ import annotations

from typing import Any

import pytest

from cds.knowledge.names import form_route, free_text_strength, parse_rxnorm_name
from cds.knowledge.normalize import RXNORM, NormalizedMed, normalize
from cds.knowledge.sig import code_per_day, doses_per_day
from cds.knowledge.store import Knowledge
from cds.patient import Coding, MaxDosePerPeriod, MedicationOrder, Observation, Patient, Timing
from cds.units import canonical_unit, convert_lab

OXY5 = "oxycodone hydrochloride 5 MG Oral Tablet"
OXY5_RXCUI = "1049621"
OXY10_RXCUI = "1049683"
FENT25 = "72 HR fentanyl 0.025 MG/HR Transdermal System"
APAP_HYDRO = "acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet"


def order(**kw: Any) -> MedicationOrder:
    kw.setdefault("id", "o1")
    return MedicationOrder(**kw)


def norm(kb: Knowledge, **kw: Any) -> NormalizedMed:
    return normalize(kb, order(**kw))


def daily(kb: Knowledge, **kw: Any) -> tuple[tuple[str, float, str], ...]:
    med = norm(kb, **kw)
    assert med.recognized, med.reason
    assert med.daily_reason is None, med.daily_reason
    return tuple((i, pytest.approx(v), u) for i, v, u in med.daily)  # type: ignore[misc]


# --- names ---------------------------------------------------------------------------------

def test_parse_scd_name() -> None:
    p = parse_rxnorm_name(OXY5)
    assert p is not None
    assert [(c.name, c.strength, c.unit) for c in p.components] == [
        ("oxycodone hydrochloride", 5.0, "MG")]
    assert (p.dose_form, p.route, p.form) == ("Oral Tablet", "oral", "tablet")
    assert not p.extended_release and p.duration_hours is None and p.brand is None


def test_parse_sbd_with_brand_and_abuse_deterrent_prefix() -> None:
    p = parse_rxnorm_name(
        "Abuse-Deterrent 12 HR oxycodone hydrochloride 15 MG Extended Release Oral Tablet [Oxycontin]")
    assert p is not None
    assert p.brand == "Oxycontin" and p.duration_hours == 12 and p.extended_release
    assert [(c.name, c.strength) for c in p.components] == [("oxycodone hydrochloride", 15.0)]
    assert p.dose_form == "Extended Release Oral Tablet"


def test_parse_combination() -> None:
    p = parse_rxnorm_name(APAP_HYDRO)
    assert p is not None
    assert [(c.name, c.strength, c.unit) for c in p.components] == [
        ("acetaminophen", 325.0, "MG"), ("hydrocodone bitartrate", 10.0, "MG")]


def test_parse_patch() -> None:
    p = parse_rxnorm_name(FENT25)
    assert p is not None
    assert [(c.name, c.strength, c.unit) for c in p.components] == [("fentanyl", 0.025, "MG/HR")]
    assert (p.route, p.form, p.duration_hours) == ("transdermal", "patch", 72)
    assert p.extended_release  # a duration prefix marks a long-acting product


@pytest.mark.parametrize("text", ["Oxycodone HCl 5mg tab", "oxycodone", "", "5 MG Oral Tablet",
                                  "take one tablet by mouth"])
def test_free_text_is_not_an_rxnorm_name(text: str) -> None:
    assert parse_rxnorm_name(text) is None


@pytest.mark.parametrize(("dose_form", "route", "form"), [
    ("Oral Tablet", "oral", "tablet"),
    ("Extended Release Oral Capsule", "oral", "capsule"),
    ("Disintegrating Oral Tablet", "oral", "tablet"),
    ("Tablet for Oral Suspension", "oral", "tablet"),
    ("Oral Suspension", "oral", "suspension"),
    ("Transdermal System", "transdermal", "patch"),
    ("Buccal Film", "buccal", "film"),
    ("Sublingual Tablet", "sublingual", "tablet"),
    ("Mucosal Spray", "sublingual", "spray"),
    ("Metered Dose Nasal Spray", "nasal", "spray"),
    ("Oral Lozenge", "buccal", "lozenge"),
    ("Injectable Solution", "injection", "solution"),
    ("Rectal Suppository", "rectal", "suppository"),
    ("Bolus", None, None),
])
def test_form_route(dose_form: str, route: str | None, form: str | None) -> None:
    assert form_route(dose_form) == (route, form)


@pytest.mark.parametrize(("text", "expected"), [
    ("oxycodone 5mg tab", (5.0, "MG")),
    ("fentanyl 25 mcg/hr patch", (25.0, "MCG/HR")),
    ("fentanyl 12 mcg/h", (12.0, "MCG/HR")),
    ("morphine 10 mg/5 mL solution", (2.0, "MG/ML")),
    ("fentanyl 200 ug", (200.0, "MCG")),
    ("oxycodone tablets", None),
])
def test_free_text_strength(text: str, expected: tuple[float, str] | None) -> None:
    assert free_text_strength(text) == expected


# --- identification ------------------------------------------------------------------------

def test_scd_name(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5)
    assert m.recognized and m.reason is None and m.matched_by == "rxnorm-name"
    assert (m.ingredients, m.form, m.route, m.extended_release) == (
        ("oxycodone",), "tablet", "oral", False)


def test_sbd_name_with_brand(kb: Knowledge) -> None:
    m = norm(kb, text="oxycodone hydrochloride 5 MG Oral Tablet [Roxicodone]")
    assert m.ingredients == ("oxycodone",) and m.matched_by == "rxnorm-name"


def test_combination_name(kb: Knowledge) -> None:
    m = norm(kb, text=APAP_HYDRO)
    assert m.ingredients == ("acetaminophen", "hydrocodone")


def test_patch_name(kb: Knowledge) -> None:
    m = norm(kb, text=FENT25)
    assert (m.ingredients, m.route, m.form) == (("fentanyl",), "transdermal", "patch")


def test_extended_release_name(kb: Knowledge) -> None:
    m = norm(kb, text="12 HR tapentadol 100 MG Extended Release Oral Tablet")
    assert m.ingredients == ("tapentadol",) and m.extended_release


def test_unlisted_salt_falls_back_to_the_ingredient(kb: Knowledge) -> None:
    m = norm(kb, text="oxycodone myristate 9 MG Extended Release Oral Capsule")
    assert m.ingredients == ("oxycodone",) and m.matched_by == "rxnorm-name"


def test_free_text(kb: Knowledge) -> None:
    m = norm(kb, text="Oxycodone HCl 5mg tab", dose=1, dose_unit="tab", timing=Timing(code="Q6H"))
    assert m.recognized and m.matched_by == "free-text" and m.ingredients == ("oxycodone",)
    assert m.daily == (("oxycodone", 20.0, "mg"),)


def test_free_text_brand_name(kb: Knowledge) -> None:
    assert norm(kb, text="Percocet 5/325").ingredients == ("oxycodone",)


def test_free_text_extended_release_markers(kb: Knowledge) -> None:
    assert norm(kb, text="oxycodone ER 10 mg").extended_release
    assert norm(kb, text="morphine sulfate extended release 15 mg").extended_release
    assert not norm(kb, text="oxycodone 5 mg").extended_release
    assert not norm(kb, text="erythromycin 250 mg").extended_release


def test_product_rxcui(kb: Knowledge) -> None:
    m = norm(kb, codes=[Coding(system=RXNORM, code=OXY10_RXCUI)])
    assert m.matched_by == "rxcui-product" and m.rxcui == OXY10_RXCUI
    assert (m.ingredients, m.form, m.route) == (("oxycodone",), "tablet", "oral")
    assert m.label == f"{RXNORM}|{OXY10_RXCUI}"  # no display: the code itself is shown


def test_product_rxcui_beats_a_wrong_text(kb: Knowledge) -> None:
    m = norm(kb, codes=[Coding(system=RXNORM, code=OXY10_RXCUI, display="x")], text="morphine")
    assert m.ingredients == ("oxycodone",) and m.matched_by == "rxcui-product"


def test_ingredient_rxcui(kb: Knowledge) -> None:
    m = norm(kb, codes=[Coding(system=RXNORM, code="7804")])
    assert m.matched_by == "rxcui-ingredient" and m.ingredients == ("oxycodone",)
    assert m.form is None and m.route is None


def test_code_of_another_system_is_not_read_as_rxnorm(kb: Knowledge) -> None:
    m = norm(kb, codes=[Coding(system="http://snomed.info/sct", code=OXY10_RXCUI)])
    assert not m.recognized


def test_unknown_code_falls_back_to_its_display(kb: Knowledge) -> None:
    m = norm(kb, codes=[Coding(system=RXNORM, code="999999999", display=OXY5)])
    assert m.recognized and m.ingredients == ("oxycodone",) and m.matched_by == "rxnorm-name"


def test_unknown_drug_is_reported_not_dropped(kb: Knowledge) -> None:
    m = norm(kb, text="frobnicol 5 mg tablet", dose=1, dose_unit="tablet",
             timing=Timing(code="BID"))
    assert not m.recognized and m.reason
    assert m.ingredients == () and m.daily == ()
    assert m.label == "frobnicol 5 mg tablet" and m.order_id == "o1"


def test_route_from_the_order_wins(kb: Knowledge) -> None:
    # one route vocabulary: a stated route keeps its word
    assert norm(kb, text="morphine 4 mg", route="IV").route == "intravenous"
    assert norm(kb, text="morphine 4 mg", route="Oral route").route == "oral"
    assert norm(kb, text=OXY5, route="PO").route == "oral"
    assert norm(kb, text=OXY5).route == "oral"  # from the dose form


# --- daily dose ------------------------------------------------------------------------------

def test_tablets_times_strength(kb: Knowledge) -> None:
    assert daily(kb, text=OXY5, dose=2, dose_unit="tablet", timing=Timing(code="QID")) == (
        ("oxycodone", 40.0, "mg"),)


def test_tablets_by_code(kb: Knowledge) -> None:
    timing = Timing(frequency=1, period=6, period_unit="h")
    assert daily(kb, codes=[Coding(system=RXNORM, code=OXY10_RXCUI)], dose=1,
                 dose_unit="{tablet}", timing=timing) == (("oxycodone", 40.0, "mg"),)


def test_dose_in_mg(kb: Knowledge) -> None:
    assert daily(kb, text=OXY5, dose=10, dose_unit="mg", timing=Timing(code="BID")) == (
        ("oxycodone", 20.0, "mg"),)


def test_dose_in_mg_needs_no_product_strength(kb: Knowledge) -> None:
    assert daily(kb, codes=[Coding(system=RXNORM, code="7804")], dose=10, dose_unit="mg",
                 timing=Timing(code="TID")) == (("oxycodone", 30.0, "mg"),)


@pytest.mark.parametrize("unit", ["mcg", "ug", "µg"])
def test_dose_in_mcg_is_converted_to_mg(kb: Knowledge, unit: str) -> None:
    assert daily(kb, text=OXY5, dose=5000, dose_unit=unit, timing=Timing(code="TID")) == (
        ("oxycodone", 15.0, "mg"),)


def test_dose_in_g(kb: Knowledge) -> None:
    assert daily(kb, text="acetaminophen 500 mg", dose=1, dose_unit="g",
                 timing=Timing(code="QID")) == (("acetaminophen", 4000.0, "mg"),)


def test_ml_of_a_solution(kb: Knowledge) -> None:
    assert daily(kb, text="morphine sulfate 2 MG/ML Oral Solution", dose=5, dose_unit="mL",
                 timing=Timing(code="Q4H")) == (("morphine", 60.0, "mg"),)


def test_ml_of_a_combination_solution(kb: Knowledge) -> None:
    got = daily(kb, text="acetaminophen 24 MG/ML / codeine phosphate 2.4 MG/ML Oral Solution",
                dose=12.5, dose_unit="mL", timing=Timing(code="Q6H"))
    assert got == (("acetaminophen", 1200.0, "mg"), ("codeine", 120.0, "mg"))


def test_ml_of_a_tablet_is_an_error(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, dose=5, dose_unit="mL", timing=Timing(code="BID"))
    assert m.recognized and m.daily == () and "does not fit" in (m.daily_reason or "")


@pytest.mark.parametrize("timing", [
    Timing(frequency=1, period=72, period_unit="h"),
    Timing(frequency=1, period=3, period_unit="d"),
    Timing(code="QD"),
    None,
])
def test_patch_rate_regardless_of_frequency(kb: Knowledge, timing: Timing | None) -> None:
    m = norm(kb, text=FENT25, dose=1, dose_unit="patch", timing=timing)
    assert m.daily == (("fentanyl", 25.0, "mcg/h"),) and m.daily_reason is None


def test_two_patches(kb: Knowledge) -> None:
    assert daily(kb, codes=[Coding(system=RXNORM, code="245134")], dose=2, dose_unit="{patch}",
                 timing=Timing(frequency=1, period=72, period_unit="h")) == (
        ("fentanyl", 50.0, "mcg/h"),)


def test_patch_dosed_as_a_rate(kb: Knowledge) -> None:
    assert daily(kb, text="fentanyl patch", dose=25, dose_unit="mcg/h") == (
        ("fentanyl", 25.0, "mcg/h"),)
    assert daily(kb, text="fentanyl patch", dose=0.05, dose_unit="mg/hr") == (
        ("fentanyl", 50.0, "mcg/h"),)


def test_tablets_of_a_combination_product(kb: Knowledge) -> None:
    assert daily(kb, text=APAP_HYDRO, dose=2, dose_unit="tablet", timing=Timing(code="QID")) == (
        ("acetaminophen", 2600.0, "mg"), ("hydrocodone", 80.0, "mg"))


def test_combination_product_dosed_in_mg_is_ambiguous(kb: Knowledge) -> None:
    m = norm(kb, text=APAP_HYDRO, dose=10, dose_unit="mg", timing=Timing(code="QID"))
    assert m.recognized and m.ingredients == ("acetaminophen", "hydrocodone")
    assert m.daily == () and "ambiguous" in (m.daily_reason or "")


def test_dose_range_counts_the_high_end(kb: Knowledge) -> None:
    assert daily(kb, text=OXY5, dose=1, dose_high=2, dose_unit="tablet",
                 timing=Timing(code="Q6H")) == (("oxycodone", 40.0, "mg"),)


def test_frequency_max_counts(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet",
             timing=Timing(frequency=1, frequency_max=3, period=1, period_unit="d"))
    assert m.doses_per_day == 3 and m.daily == (("oxycodone", 15.0, "mg"),)


def test_prn_uses_max_dose_per_period_in_tablets(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet", timing=Timing(code="Q4H"),
             as_needed=True,
             max_dose_per_period=MaxDosePerPeriod(value=4, unit="tablet", period=1, period_unit="d"))
    assert m.as_needed and m.daily == (("oxycodone", 20.0, "mg"),)


def test_prn_uses_max_dose_per_period_in_mg(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet", timing=Timing(code="Q4H"),
             as_needed=True,
             max_dose_per_period=MaxDosePerPeriod(value=60, unit="mg", period=2, period_unit="d"))
    assert m.daily == (("oxycodone", 30.0, "mg"),)


def test_prn_max_without_a_frequency(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet", as_needed=True,
             max_dose_per_period=MaxDosePerPeriod(value=6, unit="tablet", period=1, period_unit="d"))
    assert m.daily == (("oxycodone", 30.0, "mg"),) and m.daily_reason is None


def test_prn_without_max_uses_the_schedule(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet", as_needed=True, timing=Timing(code="Q4H"))
    assert m.daily == (("oxycodone", 30.0, "mg"),)


@pytest.mark.parametrize(("code", "per_day"), [
    ("QD", 1), ("BID", 2), ("TID", 3), ("QID", 4), ("QHS", 1), ("Q4H", 6), ("Q6H", 4),
    ("Q8H", 3), ("Q12H", 2), ("Q4-6H", 6), ("q6h", 4), ("QOD", 0.5), ("Q 4 H", 6),
    ("BED", 1), ("AM", 1), ("PM", 1), ("Q1H", 24), ("Q2H", 12), ("Q3H", 8),
])
def test_timing_codes(kb: Knowledge, code: str, per_day: float) -> None:
    assert code_per_day(code) == per_day
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet", timing=Timing(code=code))
    assert m.doses_per_day == pytest.approx(per_day)
    assert m.daily == (("oxycodone", pytest.approx(5.0 * per_day), "mg"),)


@pytest.mark.parametrize("code", ["Q0H", "SOMETIMES", "BIDX"])
def test_unknown_timing_code(kb: Knowledge, code: str) -> None:
    assert code_per_day(code) is None
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet", timing=Timing(code=code))
    assert m.recognized and m.daily == () and m.daily_reason


@pytest.mark.parametrize(("timing", "per_day"), [
    (Timing(frequency=1, period=4, period_unit="h"), 6),
    (Timing(frequency=1, period=4, period_max=6, period_unit="h"), 6),  # the shorter interval
    (Timing(frequency=3, period=1, period_unit="d"), 3),
    (Timing(frequency=1, period=1, period_unit="wk"), 1 / 7),
    (Timing(frequency=2, period=1, period_unit="wk"), 2 / 7),
    (Timing(frequency=1, period=30, period_unit="min"), 48),
    (Timing(frequency=1, period=1, period_unit="mo"), 1 / 30),
    (Timing(time_of_day=["08:00", "20:00"]), 2),
    (Timing(when=["MORN", "EVE", "HS"]), 3),
    (Timing(frequency=1, period=1, period_unit="d", time_of_day=["08:00", "20:00"]), 2),
    (Timing(frequency=1, period=1, period_unit="d", when=["ACM", "ACD", "ACV"]), 3),
    (Timing(code="BID", frequency=3, period=1, period_unit="d"), 3),  # repeat wins
])
def test_timing_repeat(timing: Timing, per_day: float) -> None:
    got, why = doses_per_day(timing)
    assert why is None and got == pytest.approx(per_day)


@pytest.mark.parametrize(("timing", "reason"), [
    (None, "no dosing frequency"),
    (Timing(), "no dosing frequency"),
    (Timing(frequency=2), "no period"),
    (Timing(period=6), "no period unit"),
])
def test_timing_that_says_too_little(timing: Timing | None, reason: str) -> None:
    got, why = doses_per_day(timing)
    assert got is None and why is not None and reason in why


def test_no_frequency_keeps_the_drug_with_a_reason(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, dose=1, dose_unit="tablet")
    assert m.recognized and m.ingredients == ("oxycodone",)
    assert m.daily == () and m.daily_reason == "no dosing frequency"


def test_no_dose(kb: Knowledge) -> None:
    m = norm(kb, text=OXY5, timing=Timing(code="BID"))
    assert m.daily == () and m.daily_reason == "no dose given"


@pytest.mark.parametrize("unit", ["zorks", "tsp", "mmol", "units"])
def test_unknown_dose_unit_is_reported_never_guessed(kb: Knowledge, unit: str) -> None:
    m = norm(kb, text=OXY5, dose=1, dose_unit=unit, timing=Timing(code="BID"))
    assert m.recognized and m.daily == ()
    assert m.daily_reason == f"unknown dose unit {unit!r}"


def test_dose_without_unit_of_a_countable_form_is_that_many_units_and_said(kb: Knowledge) -> None:
    """`doseQuantity: {"value": 1}` on a tablet (as synthetic generators and EHR exports write
    it) is one tablet; the assumption is kept and said."""
    m = norm(kb, text=OXY5, dose=1, timing=Timing(code="BID"))
    assert m.daily == (("oxycodone", 10.0, "mg"),)
    assert m.assumed == ("dose has no unit: read as 1 tablet(s) of the product",)


def test_dose_without_unit_of_a_liquid_stays_unknown(kb: Knowledge) -> None:
    m = norm(kb, text="oxycodone hydrochloride 1 MG/ML Oral Solution", dose=5,
             timing=Timing(code="BID"))
    assert m.daily == () and m.daily_reason == "dose has no unit" and m.assumed == ()


def test_tablets_of_an_unknown_strength(kb: Knowledge) -> None:
    m = norm(kb, codes=[Coding(system=RXNORM, code="7804")], dose=1, dose_unit="tablet",
             timing=Timing(code="BID"))
    assert m.daily == () and "strength is unknown" in (m.daily_reason or "")


def test_daily_of(kb: Knowledge) -> None:
    m = norm(kb, text=APAP_HYDRO, dose=1, dose_unit="tablet", timing=Timing(code="TID"))
    assert m.daily_of("hydrocodone") == (30.0, "mg")
    assert m.daily_of("oxycodone") is None


# --- bounds, supply and status ---------------------------------------------------------------

def test_bounds_period(kb: Knowledge) -> None:
    from datetime import date

    m = norm(kb, text=OXY5, authored=date(2026, 1, 1),
             timing=Timing(code="BID", bounds_start=date(2026, 1, 5), bounds_end=date(2026, 1, 15)))
    assert (m.start, m.end) == (date(2026, 1, 5), date(2026, 1, 15))


def test_bounds_duration_from_authored(kb: Knowledge) -> None:
    from datetime import date

    m = norm(kb, text=OXY5, authored=date(2026, 1, 1), supply_days=30,
             timing=Timing(code="BID", bounds_days=10))
    assert (m.start, m.end, m.supply_days) == (date(2026, 1, 1), date(2026, 1, 11), 30)


def test_status_and_draft(kb: Knowledge) -> None:
    assert norm(kb, text=OXY5, status="active").current
    assert not norm(kb, text=OXY5, status="stopped").current
    assert norm(kb, text=OXY5, status="stopped", draft=True).current
    assert not norm(kb, text=OXY5, source="dispense").current


# --- unit conversion at the boundary -------------------------------------------------------

@pytest.mark.parametrize(("kind", "value", "unit", "expected"), [
    ("weight", 154, "lb", 69.853225),
    ("weight", 154, "[lb_av]", 69.853225),
    ("weight", 70000, "g", 70),
    ("weight", 70, "kg", 70),
    ("height", 68, "[in_i]", 172.72),
    ("height", 1.7, "m", 170),
    ("creatinine", 88.4, "umol/L", 1.0),
    ("creatinine", 132.6, "µmol/L", 1.5),
    ("creatinine", 1.2, "mg/dL", 1.2),
    ("bilirubin", 34.2, "umol/L", 2.0),
    ("albumin", 35, "g/L", 3.5),
    ("albumin", 3.5, "g/dL", 3.5),
    ("egfr", 55, "mL/min/{1.73_m2}", 55),
    ("inr", 1.4, None, 1.4),
    ("inr", 1.4, "{INR}", 1.4),
])
def test_convert_lab(kind: str, value: float, unit: str | None, expected: float) -> None:
    assert convert_lab(kind, value, unit) == pytest.approx(expected)


@pytest.mark.parametrize(("kind", "unit"), [
    ("weight", "stone"), ("weight", "mg/dL"), ("creatinine", "mmol/L"), ("creatinine", "g/L"),
    ("albumin", "mg/dL"), ("height", "ft"), ("weight", None), ("creatinine", ""),
])
def test_unknown_lab_unit_is_an_error(kind: str, unit: str | None) -> None:
    with pytest.raises(ValueError, match=kind):
        convert_lab(kind, 1.0, unit)


def test_observation_converts_once_at_the_boundary() -> None:
    o = Observation.model_validate({"kind": "weight", "value": 154, "unit": "lb"})
    assert o.unit == "kg" and o.value == pytest.approx(69.853225)
    p = Patient.model_validate({"id": "p", "observations": [
        {"kind": "creatinine", "value": 106.08, "unit": "umol/L"}]})
    c = p.latest("creatinine")
    assert c is not None and c.unit == "mg/dL" and c.value == pytest.approx(1.2)
    with pytest.raises(ValueError, match="unknown unit 'stone' for weight"):
        Observation.model_validate({"kind": "weight", "value": 11, "unit": "stone"})


def test_observation_constructor_converts_too() -> None:
    o = Observation(kind="weight", value=154, unit="lb")
    assert o.unit == "kg" and o.value == pytest.approx(69.853225)


def test_canonical_unit() -> None:
    assert canonical_unit("LBS") == "lb" and canonical_unit(" mg/dl ") == "mg/dL"
    assert canonical_unit("furlong") is None and canonical_unit(None) is None


def test_long_order_texts_are_identified_but_not_memoized() -> None:
    """The identity memo is bounded in entries; a long text (a hostile feed could send many)
    is worked out each time instead of kept."""
    from cds.knowledge import normalize
    from cds.knowledge.store import default_knowledge
    from cds.patient import MedicationOrder

    kb = default_knowledge()
    text = "oxycodone hydrochloride 10 MG Oral Tablet " + "x" * 2000
    order = MedicationOrder(id="m1", text=text)
    before = len(normalize._IDENTITIES)
    ident = normalize.identify(kb, order)
    assert ident is not None and "oxycodone" in ident.ingredients
    assert len(normalize._IDENTITIES) == before
