"""MME per day (CDC 2022 factors): every factor, the special cases, CDC's worked examples,
and properties (linear in dose, never negative, independent of order)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.knowledge.mme import MmeResult, compute_mme
from cds.knowledge.normalize import RXNORM, NormalizedMed, normalize
from cds.knowledge.store import DATA_DIR, Knowledge, default_knowledge
from cds.patient import Coding, MedicationOrder, Timing

FACTORS = yaml.safe_load((DATA_DIR / "mme_factors.yaml").read_text())["factors"]
OUD = "opioid-use-disorder"


def med(kb: Knowledge, id: str = "m1", **kw: Any) -> NormalizedMed:
    return normalize(kb, MedicationOrder(id=id, **kw))


def mme(kb: Knowledge, *meds: NormalizedMed,
        reasons: dict[str, tuple[tuple[str | None, str | None], ...]] | None = None) -> MmeResult:
    return compute_mme(kb, meds, reasons)


def one(kb: Knowledge, **kw: Any) -> MmeResult:
    return mme(kb, med(kb, **kw))


# --- the CDC 2022 clinical table, one by one ----------------------------------------------

CLINICAL = [
    # ingredient, order, daily dose (mg), factor
    ("codeine", dict(text="codeine sulfate 30 MG Oral Tablet", dose=1, dose_unit="tablet",
                     timing=Timing(code="Q6H")), 120, 0.15),
    ("hydrocodone", dict(text="acetaminophen 325 MG / hydrocodone bitartrate 5 MG Oral Tablet",
                         dose=1, dose_unit="tablet", timing=Timing(code="QID")), 20, 1),
    ("hydromorphone", dict(text="hydromorphone hydrochloride 2 MG Oral Tablet", dose=1,
                           dose_unit="tablet", timing=Timing(code="Q4H")), 12, 5),
    ("methadone", dict(text="methadone hydrochloride 10 MG Oral Tablet", dose=1,
                       dose_unit="tablet", timing=Timing(code="TID")), 30, 4.7),
    ("morphine", dict(text="morphine sulfate 15 MG Oral Tablet", dose=1, dose_unit="tablet",
                      timing=Timing(code="Q4H")), 90, 1),
    ("oxycodone", dict(text="oxycodone hydrochloride 5 MG Oral Tablet", dose=1,
                       dose_unit="tablet", timing=Timing(code="Q6H")), 20, 1.5),
    ("oxymorphone", dict(text="oxymorphone hydrochloride 5 MG Oral Tablet", dose=1,
                         dose_unit="tablet", timing=Timing(code="Q6H")), 20, 3),
    ("tapentadol", dict(text="tapentadol 50 MG Oral Tablet", dose=1, dose_unit="tablet",
                        timing=Timing(code="Q6H")), 200, 0.4),
    ("tramadol", dict(text="tramadol hydrochloride 50 MG Oral Tablet", dose=1,
                      dose_unit="tablet", timing=Timing(code="Q6H")), 200, 0.2),
]


@pytest.mark.parametrize(("ingredient", "order", "dose", "factor"), CLINICAL,
                         ids=[c[0] for c in CLINICAL])
def test_clinical_factor(kb: Knowledge, ingredient: str, order: dict[str, Any], dose: float,
                         factor: float) -> None:
    r = one(kb, **order)
    assert r.excluded == ()
    (item,) = r.items
    assert (item.ingredient, item.unit, item.factor_status) == (ingredient, "mg", "confirmed")
    assert item.daily_dose == pytest.approx(dose)
    assert item.factor == factor
    assert item.mme == pytest.approx(dose * factor) == r.total
    assert not r.uses_analytic_factors and r.factor_set == "cdc-2022"


def test_clinical_table_is_the_cdc_2022_table(kb: Knowledge) -> None:
    oral = {i: fs[0].factor for i, fs in kb.mme_factors.items()
            if fs[0].status == "confirmed" and fs[0].basis == "mg/day"}
    assert oral == {"codeine": 0.15, "hydrocodone": 1, "hydromorphone": 5, "methadone": 4.7,
                    "morphine": 1, "oxycodone": 1.5, "oxymorphone": 3, "tapentadol": 0.4,
                    "tramadol": 0.2}
    (patch,) = kb.mme_factors["fentanyl"][:1]
    assert (patch.routes, patch.basis, patch.factor, patch.status) == (
        ("transdermal",), "mcg/h", 2.4, "confirmed")


def test_every_factor_in_the_file_is_tested() -> None:
    tested = {c[0] for c in CLINICAL} | {a[0] for a in ANALYTIC} | {"fentanyl"}
    assert {f["ingredient"] for f in FACTORS} == tested


# --- analytic factors (CDC analytic file, not clinical) -------------------------------------

ANALYTIC = [
    ("meperidine", dict(text="meperidine hydrochloride 50 MG Oral Tablet", dose=1,
                        dose_unit="tablet", timing=Timing(code="Q4H")), 300, "mg", 0.1),
    ("dihydrocodeine", dict(text="dihydrocodeine bitartrate 10 MG Oral Tablet", dose=1,
                            dose_unit="tablet", timing=Timing(code="Q6H")), 40, "mg", 0.25),
    ("levorphanol", dict(text="levorphanol tartrate 2 MG Oral Tablet", dose=1,
                         dose_unit="tablet", timing=Timing(code="TID")), 6, "mg", 11),
    ("pentazocine", dict(text="naloxone 0.5 MG / pentazocine 50 MG Oral Tablet", dose=1,
                         dose_unit="tablet", timing=Timing(code="Q4H")), 300, "mg", 0.37),
    ("opium", dict(text="opium 10 mg", dose=10, dose_unit="mg", route="oral",
                   timing=Timing(code="QID")), 40, "mg", 1),
    ("butorphanol", dict(text="butorphanol tartrate 1 MG/ACTUAT Metered Dose Nasal Spray",
                         dose=1, dose_unit="spray", timing=Timing(code="Q4H")), 6, "mg", 7),
    ("fentanyl", dict(text="fentanyl 0.2 MG Buccal Tablet", dose=1, dose_unit="tablet",
                      timing=Timing(code="QID")), 800, "mcg", 0.13),
    ("fentanyl", dict(text="fentanyl 0.1 MG Sublingual Tablet", dose=1, dose_unit="tablet",
                      timing=Timing(code="QID")), 400, "mcg", 0.13),
    ("fentanyl", dict(text="fentanyl 0.2 MG Oral Lozenge", dose=1, dose_unit="lozenge",
                      timing=Timing(code="QID")), 800, "mcg", 0.13),
    ("fentanyl", dict(text="fentanyl 0.2 MG Buccal Film", dose=1, dose_unit="film",
                      timing=Timing(code="QID")), 800, "mcg", 0.18),
    ("fentanyl", dict(text="fentanyl 0.1 MG/ACTUAT Metered Dose Nasal Spray", dose=1,
                      dose_unit="spray", timing=Timing(code="QID")), 400, "mcg", 0.16),
]


@pytest.mark.parametrize(("ingredient", "order", "dose", "unit", "factor"), ANALYTIC,
                         ids=[f"{a[0]}-{a[1]['text'].split()[-1]}-{a[4]}" for a in ANALYTIC])
def test_analytic_factor(kb: Knowledge, ingredient: str, order: dict[str, Any], dose: float,
                         unit: str, factor: float) -> None:
    r = one(kb, **order)
    assert r.excluded == ()
    (item,) = r.items
    assert (item.ingredient, item.unit, item.factor, item.factor_status) == (
        ingredient, unit, factor, "analytic")
    assert item.daily_dose == pytest.approx(dose)
    assert item.mme == pytest.approx(dose * factor) == pytest.approx(r.total)
    assert r.uses_analytic_factors
    assert "analytic" in item.source


# --- special cases -------------------------------------------------------------------------

def test_fentanyl_patch_25_mcg_h_is_60(kb: Knowledge) -> None:
    r = one(kb, codes=[Coding(system=RXNORM, code="245134")], dose=1, dose_unit="patch",
            timing=Timing(frequency=1, period=72, period_unit="h"))
    (item,) = r.items
    assert (item.daily_dose, item.unit, item.factor, item.mme) == (25, "mcg/h", 2.4, 60)
    assert r.total == 60  # not 180 or 504: the patch count worn, not patches per day


@pytest.mark.parametrize(("rxcui", "mcg_h"), [("577057", 12), ("245135", 50), ("197696", 75),
                                              ("245136", 100), ("1603495", 37.5)])
def test_fentanyl_patch_strengths(kb: Knowledge, rxcui: str, mcg_h: float) -> None:
    r = one(kb, codes=[Coding(system=RXNORM, code=rxcui)], dose=1, dose_unit="patch",
            timing=Timing(frequency=1, period=3, period_unit="d"))
    assert r.total == pytest.approx(mcg_h * 2.4)


def test_methadone_single_factor_at_any_dose(kb: Knowledge) -> None:
    for tablets, expected in [(1, 47.0), (3, 141.0), (8, 376.0)]:
        r = one(kb, text="methadone hydrochloride 10 MG Oral Tablet", dose=tablets,
                dose_unit="tablet", timing=Timing(code="QD"))
        assert r.total == pytest.approx(expected)  # 4.7 throughout, no 2016 dose bands
        assert kb.mme_factors["methadone"][0].note  # the CDC caution travels with it


def test_buprenorphine_is_excluded_with_a_note(kb: Knowledge) -> None:
    for order in [dict(text="buprenorphine 0.15 MG Buccal Film", dose=1, dose_unit="film",
                       timing=Timing(code="BID")),
                  dict(text="168 HR buprenorphine 0.01 MG/HR Transdermal System", dose=1,
                       dose_unit="patch", timing=Timing(frequency=1, period=7, period_unit="d"))]:
        r = one(kb, **order)
        assert r.total == 0 and r.items == ()
        (ex,) = r.excluded
        assert ex.ingredient == "buprenorphine" and ex.medication == order["text"]
        assert "buprenorphine" in ex.reason and "not counted" in ex.reason


def test_buprenorphine_naloxone_is_oud_treatment(kb: Knowledge) -> None:
    r = one(kb, text="buprenorphine 8 MG / naloxone 2 MG Sublingual Film", dose=2,
            dose_unit="film", timing=Timing(code="QD"))
    assert r.total == 0 and r.items == ()
    (ex,) = r.excluded  # naloxone is not an opioid: one exclusion, for buprenorphine
    assert ex.ingredient == "buprenorphine" and OUD in ex.reason


@pytest.mark.parametrize("reason", [
    ("F11.20", "Opioid dependence, uncomplicated"),
    ("F11.20", None),
    ("5602001", None),
    (None, "Opioid use disorder, severe"),
    (None, "opioid use disorder."),
    (None, "OUD"),
    (None, "Methadone maintenance program"),
])
def test_methadone_for_oud_is_excluded(kb: Knowledge,
                                       reason: tuple[str | None, str | None]) -> None:
    m = med(kb, id="meth", text="methadone hydrochloride 10 MG/ML Oral Solution", dose=8,
            dose_unit="mL", timing=Timing(code="QD"))
    r = mme(kb, m, reasons={"meth": (reason,)})
    assert r.total == 0 and r.items == ()
    (ex,) = r.excluded
    assert ex.ingredient == "methadone" and OUD in ex.reason and ex.order_id == "meth"


@pytest.mark.parametrize("reason", [
    ("G89.4", "Chronic pain syndrome"),
    (None, "chronic pain, maintenance dose"),
    (None, "cancer pain"),
    (None, "doubled dose"),  # 'oud' only as a whole word
])
def test_methadone_for_pain_is_counted(kb: Knowledge,
                                       reason: tuple[str | None, str | None]) -> None:
    m = med(kb, id="meth", text="methadone hydrochloride 10 MG Oral Tablet", dose=1,
            dose_unit="tablet", timing=Timing(code="BID"))
    r = mme(kb, m, reasons={"meth": (reason,)})
    assert r.excluded == () and r.total == pytest.approx(94.0)


def test_reasons_apply_to_their_own_order_only(kb: Knowledge) -> None:
    meth = med(kb, id="meth", text="methadone hydrochloride 10 MG Oral Tablet", dose=1,
               dose_unit="tablet", timing=Timing(code="QD"))
    oxy = med(kb, id="oxy", text="oxycodone hydrochloride 5 MG Oral Tablet", dose=1,
              dose_unit="tablet", timing=Timing(code="Q6H"))
    r = mme(kb, meth, oxy, reasons={"meth": (("F11.20", None),)})
    assert r.total == pytest.approx(30.0)
    assert [e.order_id for e in r.excluded] == ["meth"]


@pytest.mark.parametrize(("order", "route"), [
    (dict(text="morphine sulfate 4 MG/ML Injectable Solution", dose=1, dose_unit="mL",
          timing=Timing(code="Q4H")), "injection"),
    (dict(text="morphine 4 mg", dose=4, dose_unit="mg", route="intravenous",
          timing=Timing(code="Q4H")), "intravenous"),  # a stated route keeps its word
    (dict(text="morphine sulfate 10 MG Rectal Suppository", dose=1, dose_unit="suppository",
          timing=Timing(code="Q4H")), "rectal"),
    (dict(text="hydromorphone hydrochloride 3 MG Rectal Suppository", dose=1,
          dose_unit="suppository", timing=Timing(code="Q6H")), "rectal"),
])
def test_route_outside_the_table_is_excluded(kb: Knowledge, order: dict[str, Any],
                                             route: str) -> None:
    r = one(kb, **order)
    assert r.total == 0 and r.items == ()
    (ex,) = r.excluded
    assert f"route {route!r}" in ex.reason and "cdc-2022" in ex.reason


def test_fentanyl_mucosal_spray_is_excluded_until_sources_agree(kb: Knowledge) -> None:
    r = one(kb, text="fentanyl 0.1 MG/ACTUAT Mucosal Spray", dose=1, dose_unit="spray",
            timing=Timing(code="QID"))
    assert r.total == 0 and r.items == ()
    (ex,) = r.excluded
    assert ex.ingredient == "fentanyl" and "sublingual" in ex.reason


def test_no_route_anywhere_counts_as_oral_and_says_so(kb: Knowledge) -> None:
    """An ingredient name (or code) with a mg dose says no route: counted at the CDC 2022 oral
    factor, marked assumed, never left out of the total."""
    r = one(kb, text="oxycodone 5 mg", dose=5, dose_unit="mg", timing=Timing(code="Q6H"))
    (item,) = r.items
    assert r.total == 30.0 and r.excluded == () and not r.lower_bound
    assert (item.route, item.route_basis) == ("oral", "assumed")
    assert "route not given: counted as oral" in item.assumed


@pytest.mark.parametrize(("order", "route", "basis"), [
    (dict(text="oxycodone 5 mg", dose=5, dose_unit="mg", route="Oral route"), "oral", "stated"),
    (dict(text="oxycodone hydrochloride 5 MG Oral Tablet", dose=1, dose_unit="tablet"),
     "oral", "dose form"),
    (dict(text="fentanyl", dose=25, dose_unit="mcg/h"), "transdermal", "unit"),
])
def test_the_route_comes_from_the_order_then_the_dose_form_then_the_unit(
        kb: Knowledge, order: dict[str, Any], route: str, basis: str) -> None:
    r = one(kb, **order, timing=Timing(code="Q6H"))
    (item,) = r.items
    assert (item.route, item.route_basis) == (route, basis) and item.assumed == ()


def test_no_route_and_no_oral_factor_is_not_counted_and_said(kb: Knowledge) -> None:
    r = one(kb, text="fentanyl 100 mcg", dose=100, dose_unit="mcg", timing=Timing(code="Q6H"))
    (ex,) = r.excluded
    assert r.items == () and r.lower_bound and ex.uncounted
    assert "none given" in ex.reason and "no oral factor" in ex.reason


def test_opioid_use_disorder_treatment_is_excluded_by_design_not_a_lower_bound(
        kb: Knowledge) -> None:
    r = one(kb, text="buprenorphine 8 MG / naloxone 2 MG Sublingual Film", dose=1,
            dose_unit="film", timing=Timing(code="QD"))
    (ex,) = r.excluded
    assert not ex.uncounted and not r.lower_bound


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["oxycodone", "hydrocodone", "morphine", "hydromorphone", "tramadol",
                        "tapentadol", "methadone", "codeine", "oxymorphone"]),
       st.floats(0.5, 200), st.sampled_from(["QD", "BID", "Q6H", "Q4H"]))
def test_an_order_without_route_counts_as_the_same_order_stated_oral(
        ingredient: str, dose: float, code: str) -> None:
    kb = default_knowledge()
    plain = one(kb, text=f"{ingredient} {dose:g} mg", dose=dose, dose_unit="mg",
                timing=Timing(code=code))
    oral = one(kb, text=f"{ingredient} {dose:g} mg", dose=dose, dose_unit="mg",
               timing=Timing(code=code), route="oral")
    assert plain.total == oral.total > 0


def test_unknown_daily_dose_is_excluded_with_the_reason(kb: Knowledge) -> None:
    r = one(kb, text="oxycodone hydrochloride 5 MG Oral Tablet", dose=1, dose_unit="tablet")
    (ex,) = r.excluded
    assert "daily dose unknown" in ex.reason and "no dosing frequency" in ex.reason
    r = one(kb, text="acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet",
            dose=10, dose_unit="mg", timing=Timing(code="QID"))
    (ex,) = r.excluded
    assert ex.ingredient == "hydrocodone" and "ambiguous" in ex.reason


def test_patch_dosed_in_mg_does_not_fit_the_rate_factor(kb: Knowledge) -> None:
    r = one(kb, text="fentanyl transdermal", route="transdermal", dose=1, dose_unit="mg",
            timing=Timing(code="QD"))
    (ex,) = r.excluded
    assert "does not fit" in ex.reason and "mcg/h" in ex.reason


def test_non_opioids_are_neither_items_nor_exclusions(kb: Knowledge) -> None:
    r = mme(kb, med(kb, text="gabapentin 300 MG Oral Capsule", dose=1, dose_unit="capsule",
                    timing=Timing(code="TID")),
            med(kb, id="n", text="naloxone 4 mg nasal spray"),
            med(kb, id="u", text="frobnicol 5 mg"))
    assert (r.total, r.items, r.excluded) == (0, (), ())


def test_stopped_orders_do_not_count(kb: Knowledge) -> None:
    r = one(kb, text="oxycodone hydrochloride 5 MG Oral Tablet", dose=1, dose_unit="tablet",
            timing=Timing(code="Q6H"), status="stopped")
    assert (r.total, r.items, r.excluded) == (0, (), ())


def test_prn_counts_its_maximum(kb: Knowledge) -> None:
    from cds.patient import MaxDosePerPeriod

    r = one(kb, text="hydromorphone hydrochloride 2 MG Oral Tablet", dose=1, dose_high=2,
            dose_unit="tablet", timing=Timing(code="Q4H"), as_needed=True,
            max_dose_per_period=MaxDosePerPeriod(value=8, unit="tablet", period=1,
                                                 period_unit="d"))
    assert r.total == pytest.approx(16 * 5)


# --- CDC's worked examples and the issue's example ----------------------------------------

def test_cdc_example_hydrocodone_5_mg_qid_is_20(kb: Knowledge) -> None:
    r = one(kb, text="hydrocodone 5 mg", route="oral", dose=5, dose_unit="mg",
            timing=Timing(frequency=4, period=1, period_unit="d"))
    assert r.total == pytest.approx(20)


def test_cdc_example_oxycodone_er_10_mg_bid_is_30(kb: Knowledge) -> None:
    r = one(kb, text="12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet", dose=1,
            dose_unit="tablet", timing=Timing(code="BID"))
    assert r.total == pytest.approx(30)


def test_issue_example_oxycodone_plus_fentanyl_patch_is_120(kb: Knowledge) -> None:
    oxy = med(kb, id="oxycodone-1", codes=[Coding(system=RXNORM, code="1049683",
                                                  display="oxycodone hydrochloride 10 MG Oral Tablet")],
              dose=1, dose_unit="tablet", timing=Timing(frequency=1, period=6, period_unit="h"))
    fent = med(kb, id="fentanyl-1", text="72 HR fentanyl 0.025 MG/HR Transdermal System",
               dose=1, dose_unit="patch", timing=Timing(frequency=1, period=72, period_unit="h"))
    r = mme(kb, oxy, fent)
    assert r.total == pytest.approx(120)
    assert [(i.order_id, i.ingredient, i.daily_dose, i.unit, i.factor, i.mme) for i in r.items] == [
        ("oxycodone-1", "oxycodone", 40, "mg", 1.5, 60),
        ("fentanyl-1", "fentanyl", 25, "mcg/h", 2.4, 60),
    ]
    assert r.items[0].medication == "oxycodone hydrochloride 10 MG Oral Tablet"
    assert r.excluded == ()


# --- properties ----------------------------------------------------------------------------

ORDERS: list[dict[str, Any]] = [
    dict(text="oxycodone hydrochloride 5 MG Oral Tablet", dose_unit="tablet",
         timing=Timing(code="Q6H")),
    dict(text="morphine sulfate 2 MG/ML Oral Solution", dose_unit="mL", timing=Timing(code="Q4H")),
    dict(text="72 HR fentanyl 0.025 MG/HR Transdermal System", dose_unit="patch",
         timing=Timing(frequency=1, period=72, period_unit="h")),
    dict(text="methadone hydrochloride 10 MG Oral Tablet", dose_unit="tablet",
         timing=Timing(code="BID")),
    dict(text="acetaminophen 325 MG / hydrocodone bitartrate 10 MG Oral Tablet",
         dose_unit="tablet", timing=Timing(code="QID")),
    dict(text="tramadol hydrochloride 50 MG Oral Tablet", dose_unit="tablet",
         timing=Timing(frequency=1, frequency_max=2, period=6, period_unit="h")),
    dict(text="codeine 30 mg", dose_unit="mg", route="oral", timing=Timing(code="TID")),
    dict(text="fentanyl 0.2 MG Buccal Tablet", dose_unit="tablet", timing=Timing(code="QID")),
    dict(text="buprenorphine 8 MG / naloxone 2 MG Sublingual Film", dose_unit="film",
         timing=Timing(code="QD")),
    dict(text="morphine 4 mg", dose_unit="mg", route="IV", timing=Timing(code="Q4H")),
    dict(text="gabapentin 300 MG Oral Capsule", dose_unit="capsule", timing=Timing(code="TID")),
]
KB = default_knowledge()
doses = st.floats(min_value=0, max_value=1000, allow_nan=False, allow_infinity=False)
regimens = st.lists(st.tuples(st.sampled_from(range(len(ORDERS))), doses), min_size=0,
                    max_size=8)


def _meds(regimen: list[tuple[int, float]], scale: float = 1.0) -> list[NormalizedMed]:
    return [med(KB, id=f"m{n}", dose=dose * scale, **ORDERS[i])
            for n, (i, dose) in enumerate(regimen)]


@settings(max_examples=150, deadline=None)
@given(regimen=regimens, k=st.floats(min_value=0, max_value=50, allow_nan=False))
def test_mme_is_linear_in_dose(regimen: list[tuple[int, float]], k: float) -> None:
    base = compute_mme(KB, _meds(regimen))
    scaled = compute_mme(KB, _meds(regimen, k))
    assert scaled.total == pytest.approx(k * base.total, rel=1e-9, abs=1e-9)
    assert [i.mme for i in scaled.items] == pytest.approx([k * i.mme for i in base.items],
                                                          rel=1e-9, abs=1e-9)
    assert [(e.order_id, e.reason) for e in scaled.excluded] == [
        (e.order_id, e.reason) for e in base.excluded]


@settings(max_examples=150, deadline=None)
@given(regimen=regimens)
def test_mme_is_never_negative_and_adds_up(regimen: list[tuple[int, float]]) -> None:
    r = compute_mme(KB, _meds(regimen))
    assert r.total >= 0 and all(i.mme >= 0 and i.daily_dose >= 0 for i in r.items)
    assert r.total == pytest.approx(sum(i.mme for i in r.items))
    # nothing vanishes: every current opioid order is an item or an exclusion
    opioid_orders = {f"m{n}" for n, (i, _) in enumerate(regimen) if i != len(ORDERS) - 1}
    assert {i.order_id for i in r.items} | {e.order_id for e in r.excluded} == opioid_orders


@settings(max_examples=150, deadline=None)
@given(regimen=regimens, data=st.data())
def test_mme_does_not_depend_on_order(regimen: list[tuple[int, float]], data: Any) -> None:
    meds = _meds(regimen)
    shuffled = data.draw(st.permutations(meds))
    a, b = compute_mme(KB, meds), compute_mme(KB, shuffled)
    assert a.total == pytest.approx(b.total, rel=1e-12, abs=1e-12)
    key = lambda i: (i.order_id, i.ingredient)  # noqa: E731
    assert sorted(a.items, key=key) == sorted(b.items, key=key)
    assert sorted(a.excluded, key=lambda e: e.order_id) == sorted(b.excluded,
                                                                 key=lambda e: e.order_id)


def test_a_dose_too_large_to_compute_is_excluded_not_infinite(kb: Knowledge) -> None:
    """A dose so large its daily amount or MME overflows to infinity is data nobody meant:
    it is excluded with the reason, and the total stays a finite number."""
    huge = med(kb, "h", text="oxycodone hydrochloride 10 MG Oral Tablet", dose=1e308,
               dose_unit="tablet", timing=Timing(frequency=4, period=1, period_unit="d"))
    assert huge.daily == () and huge.daily_reason == "dose too large to compute a daily amount"
    big = med(kb, "b", text="oxycodone hydrochloride 10 MG Oral Tablet", dose=1.5e308,
              dose_unit="mg", timing=Timing(frequency=1, period=1, period_unit="d"))
    r = mme(kb, huge, big, med(kb, "ok", text="oxycodone hydrochloride 10 MG Oral Tablet",
                                dose=1, dose_unit="tablet",
                                timing=Timing(frequency=2, period=1, period_unit="d")))
    assert r.total == 30
    assert [e.reason for e in r.excluded] == [
        "daily dose unknown: dose too large to compute a daily amount",
        "dose too large to compute an MME"]
