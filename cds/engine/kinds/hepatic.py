"""Hepatic dosing rules: a drug with the patient's Child-Pugh class among the rule's classes,
optionally only when the daily dose exceeds the rule's maximum."""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import (
    Condition,
    Index,
    RuleKind,
    dose_condition,
    dose_over_limit,
    present,
)
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


class HepaticKind(RuleKind):
    type = "hepatic"
    placeholders: ClassVar[frozenset[str]] = frozenset(
        {"drug", "child_pugh", "child_pugh_score", "action", "max_dose", "daily_dose"})

    def index(self, cr: CompiledRule, index: Index) -> None:
        index.add_by_ingredient(cr, cr.rule.drugs)

    def dose_limit(self, rule: Any) -> Any:
        return rule.max_daily_dose

    def match_meds(self, cr: CompiledRule, meds: list[NormalizedMed], facts: Facts,
                   index: Index) -> list[Finding]:
        r = cr.rule
        cp = facts.hepatic
        if cp is None or cp.cls not in r.child_pugh:
            return []
        out = []
        for med in meds:
            values: dict[str, Any] = {"drug": med.label, "child_pugh": cp.cls,
                                      "child_pugh_score": cp.score if cp.score is not None else "given",
                                      "action": r.action}
            if r.max_daily_dose is not None and not dose_over_limit(r.max_daily_dose, med, values):
                continue
            out.append(Finding(cr, (med,), values, 1.0, ("hepatic", med.order_id, cr.ref)))
        return out

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        cp = facts.hepatic
        out = [present(rule.drugs, facts),
               Condition(f"Child-Pugh class in {rule.child_pugh}",
                         cp.cls if cp else f"unknown (missing {', '.join(facts.hepatic_missing)})",
                         None if cp is None else cp.cls in rule.child_pugh)]
        if rule.max_daily_dose is not None:
            out.append(dose_condition(rule, facts))
        return out
