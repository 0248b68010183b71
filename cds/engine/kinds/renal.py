"""Renal dosing rules: a drug with kidney function (CrCl or eGFR) in a band, optionally only
when the daily dose exceeds the band's maximum or only for IR or ER products."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, DrugDoseKind, Index
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


@dataclass(frozen=True, slots=True)
class KidneyValue:
    """The patient's value of the measure a rule is stated in."""

    value: float
    measure: str  # how the alert names it: CrCl | eGFR | eGFR (for CrCl)
    comparator: str | None = None  # a reported bound: ">60" is above 60
    note: str | None = None  # a substitution, said in the rationale


def kidney_value(rule: Any, facts: Facts) -> KidneyValue | None:
    """CrCl for CrCl-stated rules (eGFR when no CrCl can be computed, said so), eGFR for
    eGFR-stated rules; None when neither is known."""
    r = facts.renal
    if rule.measure == "crcl" and r.crcl is not None:
        return KidneyValue(r.crcl.value, "CrCl")
    if r.egfr is None:
        return None
    if rule.measure == "crcl":
        return KidneyValue(r.egfr, "eGFR", r.egfr_comparator,
                           "no CrCl could be computed (creatinine, weight or age missing), so "
                           "the eGFR stands in for the CrCl of the labeling")
    return KidneyValue(r.egfr, "eGFR", r.egfr_comparator)


def _satisfies(rule: Any, lo: float, lo_open: bool, hi: float, hi_open: bool) -> bool | None:
    """Does every value of the interval (lo..hi) meet the rule's band (True), none (False), or
    some but not all (None: the reported bound cannot decide)?"""
    def meets(x: float) -> bool:
        return in_band(rule, x)

    if lo == hi:
        return meets(lo)
    # the band is an interval too: test the interval's ends just inside, and its edges
    eps = 1e-6
    probes = [lo + (eps if lo_open else 0.0), hi - (eps if hi_open else 0.0)]
    probes += [e for e in (rule.below, rule.at_or_below, rule.above, rule.at_least)
               if e is not None and lo < e < hi]
    probes += [e + d for e in probes[2:] for d in (-eps, eps) if lo < e + d < hi]
    results = {meets(x) for x in probes if x == x and abs(x) != float("inf")}
    return results.pop() if len(results) == 1 else None


def band_verdict(rule: Any, k: KidneyValue) -> bool | None:
    """The rule's band for the patient's value, a reported bound decided as an interval."""
    if k.comparator is None:
        return in_band(rule, k.value)
    if k.comparator in (">", ">="):
        return _satisfies(rule, k.value, k.comparator == ">", 1e6, False)
    return _satisfies(rule, 0.0, False, k.value, k.comparator == "<")


def in_band(rule: Any, v: float) -> bool:
    hit = ((rule.below is not None and v < rule.below)
           or (rule.at_or_below is not None and v <= rule.at_or_below)
           or (rule.above is not None and v > rule.above))
    return hit and (rule.at_least is None or v >= rule.at_least)


def band_text(rule: Any) -> str:
    return " and ".join(s for s in (
        rule.below is not None and f"< {rule.below:g}",
        rule.at_or_below is not None and f"<= {rule.at_or_below:g}",
        rule.above is not None and f"> {rule.above:g}",
        rule.at_least is not None and f">= {rule.at_least:g}") if s)


class RenalKind(DrugDoseKind):
    type = "renal"
    placeholders: ClassVar[frozenset[str]] = frozenset(
        {"drug", "measure", "value", "action", "max_dose", "daily_dose", "substitution"})

    def match_meds(self, cr: CompiledRule, meds: list[NormalizedMed], facts: Facts,
                   index: Index) -> list[Finding]:
        r = cr.rule
        k = kidney_value(r, facts)
        if k is None or not band_verdict(r, k):
            return []
        if r.extended_release is not None:
            meds = [m for m in meds if m.extended_release == r.extended_release]
        return self.per_med(cr, meds, {
            "measure": k.measure,
            "value": f"{k.comparator}{round(k.value, 1):g}" if k.comparator else round(k.value, 1),
            "action": r.action, **({"substitution": k.note} if k.note else {})})

    def band(self, rule: Any) -> str | None:
        return f"{rule.measure} {band_text(rule)}"

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        k = kidney_value(rule, facts)
        verdict = None if k is None else band_verdict(rule, k)
        value: Any = ("not checked: implausible " + ", ".join(facts.renal.rejected)
                      if facts.renal.rejected else "unknown")
        if k is not None:
            value = f"{k.measure} {k.comparator or ''}{round(k.value, 1):g}" + (
                f" ({k.note})" if k.note else "") + (
                " (a reported bound: the band cannot be decided)"
                if k.comparator and verdict is None else "")
        return self.explain_drug(rule, facts, Condition(
            f"{rule.measure} {band_text(rule)}", value, verdict))
