"""The rule condition language: names, functions, None semantics, what it refuses, and the
explain trace."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds.knowledge.facts import Facts, build_facts
from cds.knowledge.store import Knowledge
from cds.rules.expression import FUNCTIONS, NAMES, ExpressionError, compile_expression

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
AS_OF = date(2026, 10, 15)


def patient(**extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "id": "p1", "birth_date": "1950-03-14", "sex": "female",
        "observations": [
            {"kind": "weight", "value": 70, "unit": "kg", "date": "2026-10-01"},
            {"kind": "creatinine", "value": 1.4, "unit": "mg/dL", "date": "2026-10-01"},
        ],
        "conditions": [{"code": "G89.4", "text": "Chronic pain syndrome"},
                       {"code": "F32.9", "text": "Depression", "status": "resolved"}],
        "medications": [
            {"id": "oxy", "codes": [{"system": RXNORM, "code": "1049683"}], "dose": 1,
             "dose_unit": "tablet", "timing": {"frequency": 1, "period": 6, "period_unit": "h"}},
            {"id": "fent", "text": "72 HR fentanyl 0.025 MG/HR Transdermal System", "dose": 1,
             "dose_unit": "patch"},
            {"id": "alp", "text": "alprazolam 0.5 MG Oral Tablet", "dose": 1,
             "dose_unit": "tablet", "timing": {"code": "BID"}},
            {"id": "gaba", "text": "gabapentin 300 MG Oral Capsule", "dose": 300,
             "dose_unit": "mg", "timing": {"code": "TID"}},
        ],
    }
    p.update(extra)
    return p


def facts_of(kb: Knowledge, data: dict[str, Any]) -> Facts:
    from cds.patient import Patient

    return build_facts(kb, Patient.model_validate(data), as_of=AS_OF)


@pytest.fixture(scope="module")
def facts(kb: Knowledge) -> Facts:
    return facts_of(kb, patient())


@pytest.fixture(scope="module")
def bare(kb: Knowledge) -> Facts:
    """No birth date, sex, labs or medications: every measure is unknown (None)."""
    return facts_of(kb, {"id": "p2"})


def ev(text: str, f: Facts, known: Any = None) -> bool:
    return compile_expression(text, known=known)(f)


# --- names and functions -------------------------------------------------------------------

def test_names(facts: Facts) -> None:
    assert ev("age == 76", facts) and ev("sex == 'female'", facts) and ev("weight == 70", facts)
    assert ev("mme == 120", facts) and ev("mme >= 90 and mme < 121", facts)
    assert ev("crcl > 37 and crcl < 38", facts)  # 64 x 70 / (72 x 1.4) x 0.85 = 37.8
    assert ev("egfr > 38.9 and egfr < 39.1", facts)
    assert ev("med_count == 4", facts)
    assert ev("cns_count == 4", facts)  # two opioids, a benzodiazepine, a gabapentinoid
    assert ev("acb == 2", facts)  # alprazolam 1 + fentanyl 1
    assert ev("child_pugh == None", facts)
    assert ev("creatinine == 1.4", facts)
    assert set(NAMES) == {"age", "sex", "weight", "creatinine", "crcl", "egfr", "mme", "acb",
                          "cns_count", "child_pugh", "med_count"}


def test_functions(facts: Facts) -> None:
    assert ev("has('opioid') and has('benzodiazepine') and has('oxycodone')", facts)
    assert not ev("has('morphine')", facts)
    assert ev("count('opioid') == 2 and count('alprazolam') == 1", facts)
    assert ev("daily_dose('oxycodone') == 40", facts)
    assert ev("daily_dose('gabapentin') == 900", facts)
    assert ev("daily_dose('fentanyl') == 0", facts)  # mcg/h is not a daily mg dose
    assert ev("condition('G89') and condition('chronic pain')", facts)
    assert not ev("condition('F32')", facts)  # resolved conditions do not count
    assert set(FUNCTIONS) == {"has", "count", "daily_dose", "condition"}


def test_operators(facts: Facts) -> None:
    assert ev("not has('morphine')", facts)
    assert ev("mme / 2 == 60 and mme * 2 == 240 and mme - 20 == 100 and mme + 1 > 120", facts)
    assert ev("-mme < 0", facts)
    assert ev("sex in ('female', 'other')", facts) and ev("sex not in ['male']", facts)
    assert ev("50 <= mme < 200", facts) and not ev("50 <= mme < 100", facts)
    assert ev("has('opioid') or has('nonexistent-class-unchecked')", facts)
    assert ev("True", facts) and not ev("False", facts)


# --- unknown values (None) ------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "age > 65", "age < 65", "crcl < 30", "crcl >= 30", "egfr < 60", "weight > 0",
    "age + 1 > 0", "crcl * 2 < 60", "-crcl < 0", "crcl < 30 or egfr < 30", "10 < crcl < 50",
])
def test_comparisons_with_unknown_values_are_false(bare: Facts, text: str) -> None:
    assert ev(text, bare) is False


def test_none_equality(bare: Facts, facts: Facts) -> None:
    assert ev("crcl == None", bare) and not ev("crcl != None", bare)
    assert ev("crcl != None", facts)
    assert ev("age == None and child_pugh == None", bare)
    assert ev("not (crcl < 30)", bare)  # 'not' of a false comparison is true: said plainly


def test_division_by_zero_is_unknown(facts: Facts) -> None:
    assert not ev("mme / 0 > 1", facts) and not ev("mme / 0 < 1", facts)


def test_type_mismatch_is_false_not_an_error(facts: Facts) -> None:
    assert not ev("sex > 3", facts)
    assert not ev("sex + 1 > 0", facts)


def test_no_medications(bare: Facts) -> None:
    assert ev("mme == 0 and med_count == 0 and cns_count == 0 and acb == 0", bare)
    assert not ev("has('opioid')", bare) and ev("count('opioid') == 0", bare)


# --- what it refuses ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("facts.age > 3", "not allowed"),
    ("age.real > 3", "not allowed"),
    ("__import__('os')", "unknown function"),
    ("open('x')", "unknown function"),
    ("eval('1')", "unknown function"),
    ("[1, 2][0] == 1", "not allowed"),
    ("(lambda: 1)() == 1", "not allowed"),
    ("lambda: 1", "not allowed"),
    ("height > 3", "unknown name 'height'"),
    ("has(ref)", "takes one quoted name"),
    ("has('a', 'b')", "takes one quoted name"),
    ("has(ref='opioid')", "takes one quoted name"),
    ("has()", "takes one quoted name"),
    ("mme ** 2 > 1", "not allowed"),
    ("mme % 2 == 0", "not allowed"),
    ("mme is None", "not allowed"),
    ("[x for x in (1, 2)]", "not allowed"),
    ("{'a': 1}", "not allowed"),
    ("f'{mme}'", "not allowed"),
    ("(x := 3)", "not allowed"),
    ("mme if True else 0", "not allowed"),
    ("mme >", "syntax error"),
    ("", "syntax error"),
    ("mme > 1; import os", "syntax error"),
])
def test_refused(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        compile_expression(text)


def test_unknown_drug_names_when_known_is_given(kb: Knowledge) -> None:
    compile_expression("has('opioid') and count('oxycodone') > 0 and daily_dose('gabapentin') > 0",
                       known=kb.known)
    for text in ("has('oxycodon')", "count('benzodiazepene')", "daily_dose('Oxycontin')"):
        with pytest.raises(ExpressionError, match="unknown drug or class"):
            compile_expression(text, known=kb.known)
    # condition() takes codes and text, not drug names: never checked
    compile_expression("condition('anything at all')", known=kb.known)


def test_unknown_names_pass_without_known(facts: Facts) -> None:
    e = compile_expression("has('oxycodon')")
    assert e.refs == ("oxycodon",) and e(facts) is False


def test_refs(kb: Knowledge) -> None:
    e = compile_expression("has('opioid') and (count('benzodiazepine') > 0 or "
                           "daily_dose('gabapentin') > 900) and condition('G89')", known=kb.known)
    assert e.refs == ("opioid", "benzodiazepine", "gabapentin")


# --- explain -----------------------------------------------------------------------------

def test_explain_trace(facts: Facts) -> None:
    e = compile_expression("mme >= 90 and has('benzodiazepine')")
    ok, trace = e.explain(facts)
    assert ok is True
    assert ("mme", 120.0) in trace
    assert ("mme >= 90", True) in trace
    assert ("has('benzodiazepine')", True) in trace
    assert e(facts) is True


def test_explain_shows_the_failing_part_and_unknowns(bare: Facts) -> None:
    e = compile_expression("crcl < 30 or age > 65")
    ok, trace = e.explain(bare)
    assert ok is False
    assert ("crcl", None) in trace and ("crcl < 30", False) in trace
    assert ("age", None) in trace and ("age > 65", False) in trace


def test_explain_short_circuits(facts: Facts) -> None:
    ok, trace = compile_expression("has('morphine') and mme > 0").explain(facts)
    assert ok is False and ("has('morphine')", False) in trace
    assert all(label != "mme > 0" for label, _ in trace)


def test_compiled_expression_is_reusable(facts: Facts, bare: Facts) -> None:
    e = compile_expression("mme >= 50")
    assert [e(facts), e(bare), e(facts)] == [True, False, True]
    assert e.text == "mme >= 50"
