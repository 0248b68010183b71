"""Kidney function: Cockcroft-Gault and CKD-EPI 2021 against values computed by hand from the
published equations; unit conversion on the way in (Child-Pugh through the facts too)."""

from __future__ import annotations

from datetime import date

import pytest

import cds.knowledge.renal as renal
from cds.knowledge.facts import build_facts
from cds.knowledge.renal import ckd_epi_2021, cockcroft_gault, ideal_body_weight
from cds.knowledge.store import Knowledge
from cds.patient import Patient

# --- Cockcroft-Gault: (140 - age) x weight / (72 x SCr), x 0.85 if female -----------------


def test_cockcroft_gault_male() -> None:
    c = cockcroft_gault(60, 70, 1.0, female=False)
    assert c.value == pytest.approx(80 * 70 / 72)  # 77.78
    assert (c.weight_kg, c.weight_basis, c.formula) == (70, "actual", "Cockcroft-Gault")


def test_cockcroft_gault_female_factor() -> None:
    c = cockcroft_gault(60, 70, 1.0, female=True)
    assert c.value == pytest.approx(80 * 70 / 72 * 0.85)  # 66.11


def test_cockcroft_gault_creatinine_and_age() -> None:
    assert cockcroft_gault(80, 60, 2.0, female=False).value == pytest.approx(60 * 60 / 144)  # 25
    assert cockcroft_gault(140, 60, 1.0, female=False).value == 0
    assert cockcroft_gault(150, 60, 1.0, female=False).value == 0  # never negative


def test_actual_weight_without_height() -> None:
    c = cockcroft_gault(60, 150, 1.0, female=False)
    assert (c.weight_kg, c.weight_basis) == (150, "actual")
    assert c.value == pytest.approx(80 * 150 / 72)


def test_ideal_body_weight_devine() -> None:
    assert ideal_body_weight(152.4, female=False) == pytest.approx(50.0)  # 60 in
    assert ideal_body_weight(152.4, female=True) == pytest.approx(45.5)
    assert ideal_body_weight(175, female=False) == pytest.approx(50 + 2.3 * (175 / 2.54 - 60))
    assert ideal_body_weight(140, female=True) == pytest.approx(45.5)  # no negative inches


def test_adjusted_weight_in_obesity() -> None:
    ibw = 50 + 2.3 * (175 / 2.54 - 60)  # 70.46 kg
    adjusted = ibw + 0.4 * (120 - ibw)  # 90.28 kg
    c = cockcroft_gault(60, 120, 1.0, female=False, height_cm=175)
    assert c.weight_basis == "adjusted"
    assert c.weight_kg == pytest.approx(adjusted)
    assert c.value == pytest.approx(80 * adjusted / 72)  # 100.31, not 133.3 with actual weight


def test_adjusted_weight_female() -> None:
    ibw = 45.5 + 2.3 * (160 / 2.54 - 60)  # 52.38 kg; 120% = 62.86 kg
    c = cockcroft_gault(70, 90, 0.8, female=True, height_cm=160)
    adjusted = ibw + 0.4 * (90 - ibw)
    assert c.weight_basis == "adjusted" and c.weight_kg == pytest.approx(adjusted)
    assert c.value == pytest.approx(70 * adjusted / (72 * 0.8) * 0.85)


def test_actual_weight_up_to_120_percent_of_ideal_and_below_ideal() -> None:
    ibw = 50 + 2.3 * (175 / 2.54 - 60)
    for w in (1.2 * ibw, ibw, 55.0):
        c = cockcroft_gault(60, w, 1.0, female=False, height_cm=175)
        assert (c.weight_basis, c.weight_kg) == ("actual", pytest.approx(w))


def test_weight_choice_is_documented_in_the_module() -> None:
    doc = renal.__doc__ or ""
    assert "actual body weight" in doc and "adjusted body weight" in doc and "120%" in doc


@pytest.mark.parametrize(("weight", "scr"), [(70, 0), (70, -1), (0, 1.0)])
def test_cockcroft_gault_rejects_impossible_values(weight: float, scr: float) -> None:
    with pytest.raises(ValueError):
        cockcroft_gault(60, weight, scr, female=False)


# --- CKD-EPI 2021 ----------------------------------------------------------------------------
# 142 x min(SCr/k, 1)^a x max(SCr/k, 1)^-1.200 x 0.9938^age [x 1.012 female];
# k = 0.7 / 0.9, a = -0.241 / -0.302 (female / male). Expected values worked by hand:
#   female 50, 0.6 (< k): 142 x (0.6/0.7)^-0.241 x 0.9938^50 x 1.012 = 142 x 1.03785 x 0.73273 x 1.012
#   female 50, 1.0 (> k): 142 x (1.0/0.7)^-1.2 x 0.73273 x 1.012 = 142 x 0.65183 x 0.73273 x 1.012
#   male 60, 1.2 (> k):   142 x (1.2/0.9)^-1.2 x 0.9938^60 = 142 x 0.70805 x 0.68855
#   male 60, 0.7 (< k):   142 x (0.7/0.9)^-0.302 x 0.68855 = 142 x 1.07885 x 0.68855
#   at k exactly, both terms are 1: female 40: 142 x 0.9938^40 x 1.012; male 40: 142 x 0.9938^40

@pytest.mark.parametrize(("age", "scr", "female", "expected"), [
    (50, 0.6, True, 109.28),
    (50, 1.0, True, 68.63),
    (60, 1.2, False, 69.23),
    (60, 0.7, False, 105.48),
    (40, 0.7, True, 112.05),
    (40, 0.9, False, 110.73),
    (76, 1.4, True, 38.99),
])
def test_ckd_epi_2021(age: int, scr: float, female: bool, expected: float) -> None:
    assert ckd_epi_2021(age, scr, female) == pytest.approx(expected, abs=0.01)


def test_ckd_epi_2021_has_no_race_term_and_sexes_differ() -> None:
    import inspect

    assert "race" not in inspect.signature(ckd_epi_2021).parameters
    assert ckd_epi_2021(50, 1.0, True) != ckd_epi_2021(50, 1.0, False)


def test_ckd_epi_2021_falls_with_creatinine_and_age() -> None:
    values = [ckd_epi_2021(50, s / 10, False) for s in range(3, 60)]
    assert values == sorted(values, reverse=True)
    ages = [ckd_epi_2021(a, 1.0, True) for a in range(18, 100)]
    assert ages == sorted(ages, reverse=True)


def test_ckd_epi_rejects_zero_creatinine() -> None:
    with pytest.raises(ValueError):
        ckd_epi_2021(50, 0, True)


# --- through the patient model: units converted, then the calculators ---------------------

def test_facts_convert_units_then_compute(kb: Knowledge) -> None:
    patient = Patient.model_validate({
        "id": "p", "birth_date": "1950-03-14", "sex": "female",
        "observations": [
            {"kind": "weight", "value": 154.3236, "unit": "[lb_av]", "date": "2026-10-01"},
            {"kind": "creatinine", "value": 123.76, "unit": "umol/L", "date": "2026-10-01"},
            {"kind": "bilirubin", "value": 51.3, "unit": "umol/L"},
            {"kind": "albumin", "value": 30, "unit": "g/L"},
            {"kind": "inr", "value": 1.8, "unit": "{INR}"},
        ],
        "ascites": "mild", "encephalopathy": "none",
    })
    f = build_facts(kb, patient, as_of=date(2026, 10, 15))
    assert f.age == 76 and f.weight_kg == pytest.approx(70.0, abs=1e-3)
    assert f.renal.creatinine is not None and f.renal.creatinine.value == pytest.approx(1.4)
    assert f.renal.crcl is not None
    assert f.renal.crcl.value == pytest.approx(64 * 70 / (72 * 1.4) * 0.85, rel=1e-4)  # 37.78
    assert (f.renal.egfr_basis, f.renal.egfr) == ("CKD-EPI 2021", pytest.approx(38.99, abs=0.01))
    assert f.hepatic is not None
    # bilirubin 3.0 mg/dL -> 2, albumin 3.0 g/dL -> 2, INR 1.8 -> 2, mild ascites 2, none 1
    assert (f.hepatic.score, f.hepatic.cls) == (9, "B") and f.hepatic_missing == ()


def test_facts_say_what_child_pugh_misses(kb: Knowledge) -> None:
    patient = Patient.model_validate({"id": "p", "observations": [
        {"kind": "bilirubin", "value": 1.0, "unit": "mg/dL"}]})
    f = build_facts(kb, patient, as_of=date(2026, 1, 1))
    assert f.hepatic is None
    assert f.hepatic_missing == ("albumin", "INR", "ascites", "encephalopathy")
    assert f.renal.crcl is None and f.renal.egfr is None


def test_measured_egfr_wins_when_newer(kb: Knowledge) -> None:
    patient = Patient.model_validate({"id": "p", "birth_date": "1960-01-01", "sex": "male",
                                      "observations": [
        {"kind": "creatinine", "value": 1.2, "unit": "mg/dL", "date": "2026-01-01"},
        {"kind": "egfr", "value": 55, "unit": "mL/min/{1.73_m2}", "date": "2026-02-01"}]})
    f = build_facts(kb, patient, as_of=date(2026, 3, 1))
    assert (f.renal.egfr, f.renal.egfr_basis) == (55, "measured")
    assert f.renal.crcl is None  # no weight: no Cockcroft-Gault, and no guess
