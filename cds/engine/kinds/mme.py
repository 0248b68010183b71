"""MME rules: the total morphine milligram equivalents per day reaches a threshold (a tier:
`min`, optionally `below` the next tier)."""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind
from cds.knowledge.facts import Facts


class MmeKind(RuleKind):
    type = "mme"
    placeholders: ClassVar[frozenset[str]] = frozenset({"mme", "threshold"})

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        r = cr.rule
        total = facts.mme.total
        if total < r.min or (r.below is not None and total >= r.below):
            return None
        ids = {i.order_id for i in facts.mme.items}
        meds = tuple(m for m in facts.meds if m.order_id in ids)
        return Finding(cr, meds, {"mme": round(total, 1), "threshold": r.min}, 0.0,
                       ("mme", r.min))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        total = facts.mme.total
        out = [Condition(f"total MME/day >= {rule.min:g}", round(total, 2), total >= rule.min)]
        if rule.below is not None:
            out.append(Condition(f"total MME/day < {rule.below:g}", round(total, 2),
                                 total < rule.below))
        return out
