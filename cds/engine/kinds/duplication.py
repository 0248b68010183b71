"""Therapeutic duplication: two or more drugs of one class at once where that is rarely
intended. Counted by distinct ingredient sets (IR and ER of one drug are one drug); an order
ending within the rule's `overlap_days` is a taper or a switch and does not count."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind, distinct_ingredient_meds
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


def ends(med: NormalizedMed) -> date | None:
    """When a current medication is due to end: its bounds end, or a dispense's supply end."""
    if med.end is not None:
        return med.end
    if med.source == "dispense" and med.dispensed is not None and med.supply_days:
        return med.dispensed + timedelta(days=med.supply_days)
    return None


class DuplicationKind(RuleKind):
    type = "duplication"
    placeholders: ClassVar[frozenset[str]] = frozenset({"class", "count", "drugs", "ending"})

    def _members(self, r: Any, index: Index) -> tuple[frozenset[str], frozenset[str]]:
        return (index.members([r.drug_class]) - index.members(r.exclude),
                index.members(r.long_acting_drugs))

    def _candidates(self, r: Any, facts: Facts, index: Index) -> list[NormalizedMed]:
        members, la_drugs = self._members(r, index)
        meds = [m for m in facts.meds if members.intersection(m.ingredients)]
        if r.long_acting:
            meds = [m for m in meds if m.extended_release or m.form == "patch"
                    or la_drugs.intersection(m.ingredients)]
        return meds

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        r = cr.rule
        meds = self._candidates(r, facts, index)
        horizon = facts.as_of + timedelta(days=r.overlap_days)
        ending = [m for m in meds if (e := ends(m)) is not None and e <= horizon]
        counted = distinct_ingredient_meds([m for m in meds if m not in ending])
        if len(counted) < r.min:
            return None
        name = index.kb.classes.node(r.drug_class).get("name", r.drug_class)
        return Finding(cr, tuple(counted), {
            "class": name, "count": len(counted), "drugs": ", ".join(m.label for m in counted),
            "ending": ", ".join(m.label for m in ending)}, 0.0,
            ("duplication", r.drug_class, frozenset(m.order_id for m in counted)))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        meds = self._candidates(rule, facts, index)
        horizon = facts.as_of + timedelta(days=rule.overlap_days)
        out = [Condition(f"medications of {rule.drug_class}"
                         + (" (extended-release or long-acting)" if rule.long_acting else ""),
                         [m.label for m in meds] or "none", None)]
        ending = [m.label for m in meds if (e := ends(m)) is not None and e <= horizon]
        out.append(Condition(f"ending within {rule.overlap_days} days (a taper or switch)",
                             ending or "none", None))
        n = len(distinct_ingredient_meds([m for m in meds if m.label not in ending]))
        out.append(Condition(f"distinct drugs counted >= {rule.min}", n, n >= rule.min))
        return out
