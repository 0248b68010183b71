"""Burden rules: how much the whole list adds up to.

`cns-count`: distinct drugs of a class (three or more CNS-active drugs); `combination`: one
drug of each listed part (opioid + benzodiazepine + gabapentinoid); `anticholinergic`: the
total anticholinergic burden score. The finding builders are public: the durable backend
finds the members by its joins and builds the same findings with them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import (
    Condition,
    Index,
    RuleKind,
    distinct_ingredient_meds,
    labels_named,
    meds_named,
    specificity,
)
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.store import Knowledge


def cns_count_finding(cr: CompiledRule, r: Any, meds: list[NormalizedMed]) -> Finding | None:
    distinct = distinct_ingredient_meds(meds)
    if r.min is None or len(distinct) < r.min:
        return None
    return Finding(cr, tuple(meds), {"count": len(distinct), "min": r.min,
                                     "drugs": ", ".join(m.label for m in meds)},
                   0.0, ("burden", r.kind, frozenset(m.order_id for m in meds)))


def combination_finding(kb: Knowledge, cr: CompiledRule, r: Any,
                        groups: list[list[NormalizedMed]]) -> Finding | None:
    """One drug of each part present (`groups`: the medications matching each part)."""
    if not all(groups):
        return None
    combined: list[NormalizedMed] = []
    for g in groups:
        for m in g:
            if m not in combined:
                combined.append(m)
    # a single product covering every part (e.g. one combination tablet) is not a combination
    if len(combined) < 2:
        return None
    spec = sum(specificity(kb, ref) for ref in r.all)
    values = {f"drug{n + 1}": ", ".join(m.label for m in g) for n, g in enumerate(groups)}
    values["drugs"] = ", ".join(m.label for m in combined)
    return Finding(cr, tuple(combined), values, spec,
                   ("pair", frozenset(m.order_id for m in combined)))


def anticholinergic_finding(cr: CompiledRule, r: Any, facts: Facts) -> Finding | None:
    if r.min is None or facts.acb_total < r.min:
        return None
    scored = {ing for _, ing, _ in facts.acb_items}
    acb_meds = tuple(m for m in facts.meds if scored.intersection(m.ingredients))
    detail = ", ".join(f"{ing} {score}" for _, ing, score in facts.acb_items)
    return Finding(cr, acb_meds, {"acb": facts.acb_total, "min": r.min, "scores": detail}, 0.0,
                   ("burden", r.kind))


class BurdenKind(RuleKind):
    type = "burden"
    placeholders: ClassVar[frozenset[str]] = frozenset(
        {"count", "min", "drugs", "acb", "scores", "drug1", "drug2", "drug3"})

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        r = cr.rule
        if r.kind == "cns-count":
            return cns_count_finding(cr, r, meds_named(facts, r.counts))
        if r.kind == "combination":
            return combination_finding(index.kb, cr, r, [meds_named(facts, ref) for ref in r.all])
        return anticholinergic_finding(cr, r, facts)

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        if rule.kind == "cns-count":
            meds = meds_named(facts, rule.counts)
            n = len(distinct_ingredient_meds(meds))
            return [Condition(f"distinct {rule.counts} drugs >= {rule.min:g}",
                              f"{n}: {', '.join(m.label for m in meds) or 'none'}",
                              n >= (rule.min or 0))]
        if rule.kind == "combination":
            out = []
            for ref in rule.all:
                found = labels_named(facts, [ref])
                out.append(Condition(f"a medication in {ref}", found or "none", bool(found)))
            return out
        scores = ", ".join(f"{i} {s}" for _, i, s in facts.acb_items) or "none"
        return [Condition(f"anticholinergic burden >= {rule.min:g}",
                          f"{facts.acb_total} ({scores})", facts.acb_total >= (rule.min or 0))]
