"""Escalation rules: what the opioid history says as of the evaluation date (rising dose, a
threshold newly crossed, rapid taper after long-term therapy, long-term therapy, several
prescribers, no naloxone). The history itself is knowledge (`Facts.exposure`), built once per
patient; this kind only asks it questions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.records import conditions_in
from cds.knowledge.store import Knowledge
from cds.rules.models import EscalationRule

#: Naloxone dispensed or ordered this recently still counts as "on file".
NALOXONE_LOOKBACK_DAYS = 730


def _finding(cr: CompiledRule, meds: Iterable[NormalizedMed], values: dict[str, Any]) -> Finding:
    return Finding(cr, tuple(meds), values, 0.0, ("escalation", cr.rule.kind))


#: What counts as naloxone on file: what the no-naloxone escalation rules count by default
#: (their `naloxone:` field), so that no alert advises naloxone the escalation kind finds.
NALOXONE_REFS: tuple[str, ...] = tuple(
    EscalationRule.model_fields["naloxone"].get_default(call_default_factory=True))


def naloxone_on_file(facts: Facts, kb: Knowledge, refs: Iterable[str] = NALOXONE_REFS) -> bool:
    """Is naloxone on file, as the no-naloxone escalation rule decides it: a current
    medication (a draft order included) whose every ingredient is in `refs`, or one in the
    history started, ordered or dispensed within NALOXONE_LOOKBACK_DAYS of the evaluation date.
    Every ingredient: the naloxone of buprenorphine/naloxone deters injection and reverses no
    overdose, and its label asks for a separate naloxone prescription (classes.yaml,
    opioid-overdose-reversal)."""
    wanted = tuple(refs)
    is_a = kb.classes.is_a
    since = facts.as_of - timedelta(days=NALOXONE_LOOKBACK_DAYS)
    for med in (*facts.meds, *facts.history):
        if med.ingredients and all(any(is_a(i, ref) for ref in wanted)
                                   for i in med.ingredients) and (
                med.current or (med.start or med.dispensed or date.min) >= since):
            return True
    return False


def _no_naloxone(cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
    r = cr.rule
    opioids = facts.opioid_meds
    if not opioids:
        return None
    now = facts.mme.total
    reasons = []
    if r.threshold is not None and now >= r.threshold:
        reasons.append(f"{now:.1f} MME/day (>= {r.threshold:g})")
    for c in r.with_classes:
        if facts.has(c):
            names = ", ".join(facts.meds[i].label for i in facts.meds_with(c))
            reasons.append(f"with {c}: {names}")
    if r.with_conditions:
        for _, found in conditions_in(index.kb, facts.condition_records, r.with_conditions,
                                      any_status=True)[:3]:
            reasons.append(f"history: {found.label}")
    if not reasons:
        return None
    if naloxone_on_file(facts, index.kb, r.naloxone):
        return None
    return _finding(cr, opioids, {"mme": round(now, 1), "why": "; ".join(reasons)})


class EscalationKind(RuleKind):
    type = "escalation"
    placeholders: ClassVar[frozenset[str]] = frozenset(
        {"mme", "why", "baseline", "since", "days", "change", "threshold", "before", "covered",
         "count", "prescribers"})

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        r = cr.rule
        if r.kind == "no-naloxone":
            return _no_naloxone(cr, facts, index)
        opioids = facts.opioid_meds
        hist = facts.exposure
        if not opioids and not hist:
            return None
        now = facts.mme.total
        as_of = facts.as_of
        if r.kind == "long-term-opioid":
            if not opioids or not hist.long_term(as_of, r.days):
                return None
            covered = hist.covered_days(as_of - timedelta(days=r.days), as_of + timedelta(days=1))
            earliest = hist.earliest
            assert earliest is not None
            return _finding(cr, opioids, {"days": r.days, "covered": covered,
                                          "since": earliest.isoformat(), "mme": round(now, 1)})
        if r.kind == "multiple-prescribers":
            prescribers = hist.prescribers_since(as_of - timedelta(days=r.days))
            if len(prescribers) < r.min_prescribers:
                return None
            meds = [m for ms in prescribers.values() for m in ms]
            return _finding(cr, meds, {"count": len(prescribers), "days": r.days,
                                       "prescribers": ", ".join(sorted(prescribers))})
        then = as_of - timedelta(days=r.days)
        baseline = hist.mme_on(then)
        if r.kind == "mme-increase":
            if baseline <= 0 or now < baseline * (1 + r.percent / 100):
                return None
            return _finding(cr, opioids, {"mme": round(now, 1), "baseline": round(baseline, 1),
                                          "since": then.isoformat(), "days": r.days,
                                          "change": f"+{(now / baseline - 1) * 100:.0f}%"})
        if r.kind == "mme-decrease":  # any reduction of `percent` or more (a taper to plan)
            if baseline <= 0 or now > baseline * (1 - r.percent / 100):
                return None
            return _finding(cr, opioids or tuple(m for m, _ in hist.active_on(then)), {
                "mme": round(now, 1), "baseline": round(baseline, 1), "since": then.isoformat(),
                "days": r.days,
                "change": "stopped" if now == 0 else f"-{(1 - now / baseline) * 100:.0f}%"})
        if r.kind == "mme-crossing":
            if now < r.threshold:
                return None
            # crossed within the window: somewhere in it the total was still below the threshold
            before = hist.lowest_mme(then, as_of)
            if before >= r.threshold:
                return None
            return _finding(cr, opioids, {"mme": round(now, 1), "threshold": r.threshold,
                                          "before": round(before, 1), "days": r.days})
        # rapid-taper: a fall of `percent` or more within `days` after long-term therapy
        if baseline <= 0 or now > baseline * (1 - r.percent / 100) or not hist.long_term(then):
            return None
        involved = opioids or tuple(m for m, _ in hist.active_on(then))
        return _finding(cr, involved, {
            "mme": round(now, 1), "baseline": round(baseline, 1), "since": then.isoformat(),
            "days": r.days, "change": "stopped" if now == 0 else f"-{(1 - now / baseline) * 100:.0f}%"})

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        out = [Condition("total MME/day now", round(facts.mme.total, 2), None)]
        if rule.days:
            h = facts.exposure
            then = facts.as_of - timedelta(days=rule.days)
            out.append(Condition(f"total MME/day on {then.isoformat()}", round(h.mme_on(then), 2),
                                 None))
            out.append(Condition("long-term opioid therapy as of then", h.long_term(then), None))
        return out
