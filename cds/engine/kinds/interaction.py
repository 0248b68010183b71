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


def pair_finding(cr: CompiledRule, mi: NormalizedMed, mj: NormalizedMed, sides: set[bool],
                 spec: float) -> Finding:
    """An interaction finding for two medications; `sides` holds whether mi can be side a.
    A symmetric rule (QT + QT) allows both: then the pair is oriented by name, so the alert
    reads the same whatever the order of the medication list."""
    if len(sides) == 2:
        i_is_a = (mi.label, mi.order_id) <= (mj.label, mj.order_id)
    else:
        (i_is_a,) = sides
    a, b = (mi, mj) if i_is_a else (mj, mi)
    return Finding(cr, (a, b), {"a": a.label, "b": b.label}, spec,
                   ("pair", frozenset((a.order_id, b.order_id))))


def pair_specificities(rule: Any, index: Index) -> list[float]:
    """Specificity of each (a, b) reference pair of the rule, in the rule's order."""
    kb = index.kb
    return [specificity(kb, ra) + specificity(kb, rb) for ra in rule.a for rb in rule.b]


class InteractionKind(RuleKind):
    type = "interaction"
    placeholders: ClassVar[frozenset[str]] = frozenset({"a", "b"})
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

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        out = []
        for side, refs in (("a", rule.a), ("b", rule.b)):
            found = labels_named(facts, refs)
            out.append(Condition(f"{side}: a medication in {', '.join(refs)}", found or "none",
                                 bool(found)))
        return out

    def tail(self, rule: Any) -> list[str]:
        return [f"Mechanism: {rule.mechanism} Management: {rule.management}"]
