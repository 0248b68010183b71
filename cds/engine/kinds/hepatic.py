"""Hepatic dosing rules: a drug with the patient's Child-Pugh class among the rule's classes,
optionally only when the daily dose exceeds the rule's maximum."""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, DrugDoseKind, Index
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


class HepaticKind(DrugDoseKind):
    type = "hepatic"
    placeholders: ClassVar[frozenset[str]] = frozenset(
        {"drug", "child_pugh", "child_pugh_score", "action", "max_dose", "daily_dose"})

    def match_meds(self, cr: CompiledRule, meds: list[NormalizedMed], facts: Facts,
                   index: Index) -> list[Finding]:
        cp = facts.hepatic
        if cp is None or cp.cls not in cr.rule.child_pugh:
            return []
        score = ("given" if cp.score is None
                 else f"at least {cp.score}" if cp.lower_bound else cp.score)
        return self.per_med(cr, meds, {"child_pugh": cp.label, "child_pugh_score": score,
                                       "action": cr.rule.action})

    def band(self, rule: Any) -> str | None:
        return "Child-Pugh " + "/".join(rule.child_pugh)

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        cp = facts.hepatic
        return self.explain_drug(rule, facts, Condition(
            f"Child-Pugh class in {rule.child_pugh}",
            (cp.label + (f" ({'; '.join(cp.assumed)})" if cp.assumed else "")) if cp
            else f"not computable (missing {', '.join(facts.hepatic_missing)})",
            None if cp is None else cp.cls in rule.child_pugh))
