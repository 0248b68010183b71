"""Escalation rules: what the order and dispense history says as of the evaluation date.

Exposure windows (docs/escalation.md): an active order covers its start through the
evaluation date; a stopped order or a dispense covers [start, start + supply days), or
[start, bounds end) when the order says; with neither, its start day only. On a given day a
dispense does not add to an order for the same ingredients (the dispense fills the order).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from cds.engine.alerts import CompiledRule, Finding
from cds.knowledge.facts import Facts
from cds.knowledge.mme import assess
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.store import Knowledge
from cds.rules.models import EscalationRule

#: CDC 2022 glossary: long-term opioid therapy is use on most days for more than 3 months.
LTOT_DAYS = 90
#: Naloxone dispensed or ordered this recently still counts as "on file".
NALOXONE_LOOKBACK_DAYS = 730


def _window(med: NormalizedMed, as_of: date) -> tuple[date, date] | None:
    start = med.start
    if start is None:
        return (as_of, as_of + timedelta(days=1)) if med.current else None
    if med.current:
        end = med.end or as_of + timedelta(days=1)
        return start, max(end, start + timedelta(days=1))
    if med.end is not None:
        return start, med.end
    days = med.supply_days or 1
    return start, start + timedelta(days=days)


class History:
    """Opioid exposure episodes of one patient with their MME, for day-by-day questions."""

    def __init__(self, kb: Knowledge, facts: Facts) -> None:
        self.as_of = facts.as_of
        self._steps: tuple[list[date], list[float]] | None = None
        self.episodes: list[tuple[date, date, NormalizedMed, float]] = []
        #: per episode: (ingredients as a sorted tuple, is a dispense), for active_on
        self._kinds: list[tuple[tuple[str, ...], bool]] = []
        opioids = [facts.meds[i] for i in facts.opioids]
        opioids += [m for m in facts.history if not kb.opioids.isdisjoint(m.ingredients)]
        for med in opioids:
            w = _window(med, facts.as_of)
            if w is None or w[0] > facts.as_of:
                continue
            # assessed as facts.mme assesses today's list, indications included: OUD
            # treatment counts neither now nor then (else steady methadone reads as a taper)
            items, _ = assess(kb, med, facts.indications.get(med.order_id, ()))
            self.episodes.append((w[0], w[1], med, sum(i.mme for i in items)))
            self._kinds.append((tuple(sorted(med.ingredients)), med.source == "dispense"))

    def active_on(self, day: date) -> list[tuple[NormalizedMed, float]]:
        active = [(ep, kind) for ep, kind in zip(self.episodes, self._kinds, strict=True)
                  if ep[0] <= day < ep[1]]
        ordered = {key for _, (key, dispense) in active if not dispense}
        return [(ep[2], ep[3]) for ep, (key, dispense) in active
                if not dispense or key not in ordered]

    def mme_on(self, day: date) -> float:
        """Total MME on a day: a look-up in the step function built once per patient."""
        steps = self._steps
        if steps is None:
            steps = self._steps = self._step_function()
        k = bisect_right(steps[0], day) - 1
        return steps[1][k] if k >= 0 else 0.0

    def _step_function(self) -> tuple[list[date], list[float]]:
        """MME is constant between episode boundaries: one value per boundary."""
        points = sorted({d for s, e, _, _ in self.episodes for d in (s, e)})
        return points, [sum(mme for _, mme in self.active_on(d)) for d in points]

    def days_between(self, start: date, end: date) -> Iterable[date]:
        """Days worth sampling in [start, end): window edges and every episode boundary."""
        days = {start}
        for s, e, _, _ in self.episodes:
            for d in (s, e):
                if start <= d < end:
                    days.add(d)
        return sorted(days)

    def covered_days(self, start: date, end: date) -> int:
        spans = sorted((max(s, start), min(e, end)) for s, e, _, _ in self.episodes
                       if s < end and e > start)
        total = 0
        cur_s: date | None = None
        cur_e: date | None = None
        for s, e in spans:
            if cur_e is None or s > cur_e:
                if cur_s is not None and cur_e is not None:
                    total += (cur_e - cur_s).days
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
        if cur_s is not None and cur_e is not None:
            total += (cur_e - cur_s).days
        return total

    def long_term(self, as_of: date) -> bool:
        start = as_of - timedelta(days=LTOT_DAYS)
        earliest = min((s for s, _, _, _ in self.episodes), default=None)
        return (earliest is not None and earliest <= start
                and self.covered_days(start, as_of + timedelta(days=1)) > LTOT_DAYS / 2)


def _opioids_now(facts: Facts) -> tuple[NormalizedMed, ...]:
    found = facts.memo.get("opioids-now")
    if found is None:
        found = facts.memo["opioids-now"] = tuple(facts.meds[i] for i in facts.opioids)
    return found  # type: ignore[no-any-return]


def history(kb: Knowledge, facts: Facts) -> History:
    """The patient's opioid history, built once per patient and shared by every rule."""
    h = facts.memo.get("opioid-history")
    if h is None:
        h = facts.memo["opioid-history"] = History(kb, facts)
    return h


def _finding(cr: CompiledRule, meds: Iterable[NormalizedMed], values: dict[str, Any]) -> Finding:
    return Finding(cr, tuple(meds), values, 0.0, ("escalation", cr.rule.kind))


def match(kb: Knowledge, cr: CompiledRule, r: EscalationRule, facts: Facts) -> Finding | None:
    now = facts.mme.total
    opioids = _opioids_now(facts)
    if r.kind == "no-naloxone":
        if not opioids:
            return None
        reasons = []
        if r.threshold is not None and now >= r.threshold:
            reasons.append(f"{now:.1f} MME/day (>= {r.threshold:g})")
        for c in r.with_classes:
            if facts.has(c):
                names = ", ".join(facts.meds[i].label for i in facts.meds_with(c))
                reasons.append(f"with {c}: {names}")
        if not reasons:
            return None
        since = facts.as_of - timedelta(days=NALOXONE_LOOKBACK_DAYS)
        for med in (*facts.meds, *facts.history):
            is_naloxone = any(kb.classes.is_a(i, ref) for i in med.ingredients for ref in r.naloxone)
            if is_naloxone and (med.current or (med.start or med.dispensed or date.min) >= since):
                return None
        return _finding(cr, opioids, {"mme": round(now, 1), "why": "; ".join(reasons)})

    if not opioids and not facts.history:
        return None
    hist = history(kb, facts)
    as_of = facts.as_of
    if r.kind == "long-term-opioid":
        assert r.days is not None
        if not opioids:
            return None
        start = as_of - timedelta(days=r.days)
        earliest = min((s for s, _, _, _ in hist.episodes), default=None)
        covered = hist.covered_days(start, as_of + timedelta(days=1))
        if earliest is None or earliest > start or covered <= r.days / 2:
            return None
        return _finding(cr, opioids, {"days": r.days, "covered": covered,
                                      "since": earliest.isoformat(), "mme": round(now, 1)})
    if r.kind == "multiple-prescribers":
        assert r.days is not None
        since = as_of - timedelta(days=r.days)
        prescribers: dict[str, list[NormalizedMed]] = {}
        for s, e, med, _ in hist.episodes:  # any supply overlapping the window counts
            if s <= as_of and e > since and med.prescriber:
                prescribers.setdefault(med.prescriber, []).append(med)
        if len(prescribers) < r.min_prescribers:
            return None
        meds = [m for ms in prescribers.values() for m in ms]
        return _finding(cr, meds, {"count": len(prescribers), "days": r.days,
                                   "prescribers": ", ".join(sorted(prescribers))})
    assert r.days is not None
    then = as_of - timedelta(days=r.days)
    baseline = hist.mme_on(then)
    if r.kind == "mme-increase":
        assert r.percent is not None
        if baseline <= 0 or now < baseline * (1 + r.percent / 100):
            return None
        return _finding(cr, opioids, {"mme": round(now, 1), "baseline": round(baseline, 1),
                                      "since": then.isoformat(), "days": r.days,
                                      "change": f"+{(now / baseline - 1) * 100:.0f}%"})
    if r.kind == "mme-crossing":
        assert r.threshold is not None
        if now < r.threshold:
            return None
        # crossed within the window: somewhere in it the total was still below the threshold
        before = min((hist.mme_on(d) for d in hist.days_between(then, as_of)), default=0.0)
        if before >= r.threshold:
            return None
        return _finding(cr, opioids, {"mme": round(now, 1), "threshold": r.threshold,
                                      "before": round(before, 1), "days": r.days})
    # rapid-taper: a fall of `percent` or more within `days` after long-term therapy
    assert r.percent is not None
    if baseline <= 0 or now > baseline * (1 - r.percent / 100) or not hist.long_term(then):
        return None
    stopped = now == 0
    involved = opioids or tuple(m for m, _ in hist.active_on(then))
    return _finding(cr, involved, {
        "mme": round(now, 1), "baseline": round(baseline, 1), "since": then.isoformat(),
        "days": r.days, "change": "stopped" if stopped else f"-{(1 - now / baseline) * 100:.0f}%"})
