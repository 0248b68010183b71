"""Renal dosing rules: a drug with kidney function (CrCl or eGFR) in a band, optionally only
when the daily dose exceeds the band's maximum or only for IR or ER products."""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, DrugDoseKind, Index
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


def kidney_value(rule: Any, facts: Facts) -> float | None:
    """The patient's value of the measure the rule is stated in."""
    if rule.measure == "crcl":
        return facts.renal.crcl.value if facts.renal.crcl else None
    return facts.renal.egfr


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
        {"drug", "measure", "value", "action", "max_dose", "daily_dose"})

    def match_meds(self, cr: CompiledRule, meds: list[NormalizedMed], facts: Facts,
                   index: Index) -> list[Finding]:
        r = cr.rule
        v = kidney_value(r, facts)
        if v is None or not in_band(r, v):
            return []
        if r.extended_release is not None:
            meds = [m for m in meds if m.extended_release == r.extended_release]
        return self.per_med(cr, meds, {"measure": "CrCl" if r.measure == "crcl" else "eGFR",
                                       "value": round(v, 1), "action": r.action})

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        v = kidney_value(rule, facts)
        return self.explain_drug(rule, facts, Condition(
            f"{rule.measure} {band_text(rule)}", "unknown" if v is None else round(v, 1),
            None if v is None else in_band(rule, v)))
