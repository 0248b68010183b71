"""Data-quality rules: what could not be checked in the record, and why. The findings are
computed with the Facts (cds/knowledge/quality.py); a rule picks one check and says it as an
alert listing every medication concerned, so the count of alerts stays bounded."""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


class DataQualityKind(RuleKind):
    type = "data-quality"
    placeholders: ClassVar[frozenset[str]] = frozenset({"count", "drugs", "why", "fields"})
    states_patient_values = False

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        issues = [i for i in facts.issues if i.check == cr.rule.check]
        if not issues:
            return None
        by_id = {m.order_id: m for m in (*facts.meds, *facts.unrecognized)}
        meds: list[NormalizedMed] = []
        for i in issues:
            m = by_id.get(i.order_id or "")
            if m is not None and m not in meds:
                meds.append(m)
        labels = [i.medication or "a record" for i in issues]
        why = (issues[0].reason if len(issues) == 1
               else "; ".join(f"{i.medication}: {i.reason}" for i in issues))
        fields = ", ".join(dict.fromkeys(i.field for i in issues if i.field)) or "not known"
        return Finding(cr, tuple(meds), {"count": len(issues), "drugs": ", ".join(labels),
                                         "why": why, "fields": fields}, 0.0,
                       ("data-quality", cr.rule.check))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        issues = [f"{i.medication}: {i.reason}" + (f" (field {i.field})" if i.field else "")
                  for i in facts.issues if i.check == rule.check]
        return [Condition(f"records with a {rule.check} problem", issues or "none", bool(issues))]
