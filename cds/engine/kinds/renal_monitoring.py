"""Renal monitoring rules: kidney function missing or stale while a renally restricted drug
is on the list (by default, any drug of the same pack's renal rules)."""

from __future__ import annotations

from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind
from cds.knowledge.facts import Facts


class RenalMonitoringKind(RuleKind):
    type = "renal-monitoring"
    placeholders: ClassVar[frozenset[str]] = frozenset({"state", "drugs", "max_age_days"})

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        r = cr.rule
        drugs = (index.members(r.drugs) if r.drugs
                 else index.pack_drugs.get((cr.pack_id, "renal"), frozenset()))
        meds = tuple(m for m in facts.meds if drugs.intersection(m.ingredients))
        if not meds:
            return None
        renal = facts.renal
        if renal.rejected and renal.crcl is None and renal.egfr is None:  # latest not possible
            state = "not checked: implausible " + ", ".join(renal.rejected)
        elif renal.crcl is not None or renal.egfr is not None:
            if renal.measured_on is None:
                return None  # undated values are taken as current; nothing to say
            age_days = (facts.as_of - renal.measured_on).days
            if age_days <= r.max_age_days:
                return None
            state = f"last measured {renal.measured_on.isoformat()} ({age_days} days ago)"
        elif renal.creatinine is not None:
            missing = [n for n, v in (("age", facts.age), ("weight", facts.weight_kg)) if v is None]
            state = f"creatinine on file but {', '.join(missing) or 'sex'} missing for the estimate"
        else:
            state = "no serum creatinine or eGFR on file"
        return Finding(cr, meds, {"state": state, "drugs": ", ".join(m.label for m in meds),
                                  "max_age_days": r.max_age_days}, 0.0, ("renal-monitoring",))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        r = facts.renal
        return [Condition("kidney function on file", r.measured_on or (
            "undated" if (r.crcl or r.egfr) else "none"), bool(r.crcl or r.egfr))]
