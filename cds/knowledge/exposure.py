"""Opioid exposure history: episodes with their MME, day by day, as of the evaluation date.

Built once per patient by `build_facts` from the MME assessment of every opioid order,
statement and dispense (current and past), so the rules that read the history (rising dose,
rapid taper, long-term therapy, several prescribers) never assess a medication again.

Exposure windows (docs/escalation.md): an active order covers its start through the
evaluation date; a stopped order or a dispense covers [start, start + supply days), or
[start, bounds end) when the order says; with neither, its start day only. On a given day a
dispense does not add to an order for the same ingredients (the dispense fills the order).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from cds.knowledge.normalize import NormalizedMed

#: CDC 2022 glossary: long-term opioid therapy is use on most days for more than 3 months.
LTOT_DAYS = 90


@dataclass(frozen=True, slots=True)
class Episode:
    start: date
    end: date  # exclusive
    med: NormalizedMed
    mme: float
    ingredients: tuple[str, ...]  # sorted: the drug, whatever the product
    dispense: bool


def window(med: NormalizedMed, as_of: date) -> tuple[date, date] | None:
    """The days a medication covers, [start, end), or None when it cannot be placed."""
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


class Exposure:
    """The opioid episodes of one patient, immutable once built."""

    __slots__ = ("as_of", "episodes", "_points", "_totals")

    def __init__(self, as_of: date, episodes: Iterable[Episode]) -> None:
        self.as_of = as_of
        self.episodes: tuple[Episode, ...] = tuple(episodes)
        # MME is constant between episode boundaries: one total per boundary (a step function)
        self._points = sorted({d for e in self.episodes for d in (e.start, e.end)})
        self._totals = [sum(mme for _, mme in self.active_on(d)) for d in self._points]

    @classmethod
    def build(cls, as_of: date, assessed: Iterable[tuple[NormalizedMed, float]]) -> Exposure:
        """From each opioid medication (current or past) with its assessed MME per day."""
        episodes = []
        for med, mme in assessed:
            w = window(med, as_of)
            if w is None or w[0] > as_of:
                continue
            episodes.append(Episode(w[0], w[1], med, mme, tuple(sorted(med.ingredients)),
                                    med.source == "dispense"))
        return cls(as_of, episodes)

    def __bool__(self) -> bool:
        return bool(self.episodes)

    @property
    def earliest(self) -> date | None:
        return min((e.start for e in self.episodes), default=None)

    def active_on(self, day: date) -> list[tuple[NormalizedMed, float]]:
        """Medications covering `day` with their MME (a dispense filling an order for the same
        drug that day does not count twice)."""
        active = [e for e in self.episodes if e.start <= day < e.end]
        ordered = {e.ingredients for e in active if not e.dispense}
        return [(e.med, e.mme) for e in active if not e.dispense or e.ingredients not in ordered]

    def mme_on(self, day: date) -> float:
        """Total MME on a day: a look-up in the step function."""
        k = bisect_right(self._points, day) - 1
        return self._totals[k] if k >= 0 else 0.0

    def days_between(self, start: date, end: date) -> list[date]:
        """Days worth sampling in [start, end): window edges and every episode boundary."""
        days = {start}
        for e in self.episodes:
            for d in (e.start, e.end):
                if start <= d < end:
                    days.add(d)
        return sorted(days)

    def lowest_mme(self, start: date, end: date) -> float:
        """The lowest total MME on any day of [start, end) (the step function changes only
        at episode boundaries, so those days are enough)."""
        return min((self.mme_on(d) for d in self.days_between(start, end)), default=0.0)

    def covered_days(self, start: date, end: date) -> int:
        spans = sorted((max(e.start, start), min(e.end, end)) for e in self.episodes
                       if e.start < end and e.end > start)
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

    def long_term(self, as_of: date, days: int = LTOT_DAYS) -> bool:
        """Opioids on more than half the days of the `days` before `as_of`, since before them."""
        start = as_of - timedelta(days=days)
        earliest = self.earliest
        return (earliest is not None and earliest <= start
                and self.covered_days(start, as_of + timedelta(days=1)) > days / 2)

    def prescribers_since(self, since: date) -> dict[str, list[NormalizedMed]]:
        """Prescriber -> medications of theirs whose supply overlaps [since, as_of]."""
        out: dict[str, list[NormalizedMed]] = {}
        for e in self.episodes:
            if e.start <= self.as_of and e.end > since and e.med.prescriber:
                out.setdefault(e.med.prescriber, []).append(e.med)
        return out
