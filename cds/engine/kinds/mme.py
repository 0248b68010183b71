"""MME rules: the total morphine milligram equivalents per day reaches a threshold (a tier:
`min`, optionally `below` the next tier), saying whether the tier was newly reached."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind
from cds.knowledge.facts import Facts


class MmeKind(RuleKind):
    type = "mme"
    placeholders: ClassVar[frozenset[str]] = frozenset(
        {"mme", "threshold", "new", "newly", "before", "days"})

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        r = cr.rule
        total = facts.mme.total
        if total < r.min or (r.below is not None and total >= r.below):
            return None
        ids = {i.order_id for i in facts.mme.items}
        meds = tuple(m for m in facts.meds if m.order_id in ids)
        values: dict[str, Any] = {"mme": round(total, 1), "threshold": r.min}
        if r.new_within_days is not None:
            before = facts.exposure.lowest_mme(
                facts.as_of - timedelta(days=r.new_within_days), facts.as_of)
            newly = before < r.min
            values.update(
                newly="newly " if newly else "", days=r.new_within_days, before=round(before, 1),
                new=(f" New: below {r.min:g} MME/day within the last {r.new_within_days} days "
                     f"(lowest {before:.1f})." if newly else ""))
        return Finding(cr, meds, values, 0.0, ("mme", r.min))

    def identity(self, f: Finding) -> tuple[str, str | None]:
        r = f.rule.rule
        return "", f"MME {r.min:g}" + (f"-{r.below:g}" if r.below is not None else "+")

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        total = facts.mme.total
        out = [Condition(f"total MME/day >= {rule.min:g}", round(total, 2), total >= rule.min)]
        if rule.below is not None:
            out.append(Condition(f"total MME/day < {rule.below:g}", round(total, 2),
                                 total < rule.below))
        for i in facts.mme.items:
            out.append(Condition(f"counted: {i.medication}", f"{i.mme:.1f} MME/day, route "
                                 f"{i.route} ({i.route_basis})" + "".join(
                                     f"; {a}" for a in i.assumed), None))
        for e in facts.mme.excluded:
            out.append(Condition(f"not counted: {e.medication}", e.reason, None))
        if facts.mme.lower_bound:
            out.append(Condition("total is a lower bound", "an opioid could not be counted",
                                 None))
        if rule.new_within_days is not None:
            then = facts.as_of - timedelta(days=rule.new_within_days)
            before = facts.exposure.lowest_mme(then, facts.as_of)
            out.append(Condition(f"newly reached: below {rule.min:g} since {then.isoformat()}",
                                 round(before, 1), before < rule.min))
        return out
