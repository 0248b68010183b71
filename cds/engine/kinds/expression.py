"""Expression rules: a condition in the expression language (docs/expressions.md), optionally
about listed drugs (then indexed by their ingredients and reporting those medications)."""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind, present
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


class ExpressionKind(RuleKind):
    type = "expression"
    placeholders: ClassVar[frozenset[str]] = frozenset({"drugs"})

    def index(self, cr: CompiledRule, index: Index) -> None:
        if cr.rule.drugs:
            index.add_by_ingredient(cr, cr.rule.drugs)
        else:
            index.patient_wide.append(cr)

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        return Finding(cr, (), {}, 0.0, (cr.ref,))  # the rule's `when` decides

    def match_meds(self, cr: CompiledRule, meds: list[NormalizedMed], facts: Facts,
                   index: Index) -> list[Finding]:
        return [Finding(cr, tuple(meds), {"drugs": ", ".join(m.label for m in meds)}, 0.0,
                        (cr.ref, frozenset(m.order_id for m in meds)))]

    def identity(self, f: Finding) -> tuple[str, str | None]:
        if not f.rule.rule.drugs:
            return "", None
        return "+".join(sorted({i for m in f.meds for i in m.ingredients})), None

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        return [present(rule.drugs, facts)] if rule.drugs else []
