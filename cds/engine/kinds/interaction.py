"""Interaction rules: a drug or class on side a with one on side b.

Indexed as an ingredient-pair table (every member pair of the two sides, both orders), so
matching looks up each pair of the patient's medications and never scans the rules.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind, labels_named, specificity
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


def orient(mi: NormalizedMed, mj: NormalizedMed,
           sides: set[bool]) -> tuple[NormalizedMed, NormalizedMed]:
    """(side a, side b) of two medications; `sides` holds whether mi can be side a. A
    symmetric rule (QT + QT) allows both: then the pair is oriented by name, so the alert reads
    the same whatever the order of the medication list."""
    if len(sides) == 2:
        i_is_a = (mi.label, mi.order_id) <= (mj.label, mj.order_id)
    else:
        (i_is_a,) = sides
    return (mi, mj) if i_is_a else (mj, mi)


def pair_finding(cr: CompiledRule, mi: NormalizedMed, mj: NormalizedMed, sides: set[bool],
                 spec: float) -> Finding:
    """An interaction finding for two medications."""
    a, b = orient(mi, mj, sides)
    return Finding(cr, (a, b), {"a": a.label, "b": b.label}, spec,
                   ("pair", frozenset((a.order_id, b.order_id))))


def pairs_finding(cr: CompiledRule, pairs: list[tuple[NormalizedMed, NormalizedMed]],
                  spec: float, values: dict[str, Any] | None = None) -> Finding:
    """One finding for every pair one rule matched: the alert lists the pairs (issue of
    bounded cost: alerts grow with rules, not with the square of the medication list)."""
    meds: list[NormalizedMed] = []
    for a, b in pairs:
        for m in (a, b):
            if m not in meds:
                meds.append(m)
    return Finding(cr, tuple(meds), {
        **(values or {}),
        "a": ", ".join(dict.fromkeys(a.label for a, _ in pairs)),
        "b": ", ".join(dict.fromkeys(b.label for _, b in pairs)),
        "pairs": "; ".join(f"{a.label} + {b.label}" for a, b in pairs),
        "pair_count": len(pairs)}, spec, ("pairs", cr.ref))


def pair_specificities(rule: Any, index: Index) -> list[float]:
    """Specificity of each (a, b) reference pair of the rule, in the rule's order."""
    kb = index.kb
    return [specificity(kb, ra) + specificity(kb, rb) for ra in rule.a for rb in rule.b]


class InteractionKind(RuleKind):
    type = "interaction"
    #: {pairs} and {pair_count}: when one rule matches several pairs, they are one alert
    placeholders: ClassVar[frozenset[str]] = frozenset({"a", "b", "pairs", "pair_count"})
    states_patient_values = False

    def index(self, cr: CompiledRule, index: Index) -> None:
        r = cr.rule
        g = index.kb.classes
        specs = iter(pair_specificities(r, index))
        for ra in r.a:
            for rb in r.b:
                spec = next(specs)
                for x in g.members(ra):
                    for y in g.members(rb):
                        if x == y:
                            continue
                        index.pairs[(x, y)].append((cr, True, spec))
                        index.pairs[(y, x)].append((cr, False, spec))

    def match_pair(self, cr: CompiledRule, mi: NormalizedMed, mj: NormalizedMed,
                   sides: set[bool], spec: float) -> Finding:
        return pair_finding(cr, mi, mj, sides, spec)

    def match_pairs(self, cr: CompiledRule,
                    items: list[tuple[NormalizedMed, NormalizedMed, set[bool], float]]
                    ) -> Finding:
        return pairs_finding(cr, [orient(mi, mj, sides) for mi, mj, sides, _ in items],
                             max(spec for *_, spec in items))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        out = []
        for side, refs in (("a", rule.a), ("b", rule.b)):
            found = labels_named(facts, refs)
            out.append(Condition(f"{side}: a medication in {', '.join(refs)}", found or "none",
                                 bool(found)))
        return out

    def tail(self, rule: Any) -> list[str]:
        return [f"Mechanism: {rule.mechanism} Management: {rule.management}"]
