"""Guideline rules about the care around opioid orders (CDC 2022): which orders start
therapy or need a follow-up (`opioid-order`), a diagnosis without its treatment
(`condition`), and urine drug test results that the prescriptions do not explain
(`toxicology`). The records they look for come from cds.knowledge.records."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds.base import Condition, Index, RuleKind
from cds.knowledge.exposure import window
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.records import conditions_in

#: CDC 2022 implementation guide: a prescription for less than 28 days is for acute pain.
SUBACUTE_DAYS = 28


def _start(m: NormalizedMed, as_of: date) -> date | None:
    return as_of if m.draft else m.start


def long_acting(m: NormalizedMed, drugs: frozenset[str]) -> bool:
    """Extended-release or long-acting: an ER dose form, a transdermal system, or a drug that
    is long-acting whatever its form (methadone)."""
    return m.extended_release or m.form == "patch" or bool(drugs.intersection(m.ingredients))


def opioid_before(facts: Facts, m: NormalizedMed, start: date, days: int) -> NormalizedMed | None:
    """Another opioid (order, statement or dispense) covering any day of the `days` before
    `start`: the patient was not opioid-naive."""
    since = start - timedelta(days=days)
    for e in facts.exposure.episodes:
        if e.med is not m and e.med.order_id != m.order_id and e.start < start and e.end > since:
            return e.med
    return None


class OpioidOrderKind(RuleKind):
    type = "opioid-order"
    placeholders: ClassVar[frozenset[str]] = frozenset(
        {"drugs", "count", "supply", "started", "naive_days"})

    def _orders(self, r: Any, facts: Facts, index: Index
                ) -> list[tuple[NormalizedMed, date, float | None, str]]:
        """(order, start, days' supply, why it qualifies) of each order meeting the rule."""
        oud = {e.order_id for e in facts.mme.excluded if not e.uncounted}
        la = index.members(r.long_acting_drugs)
        out = []
        for m in facts.opioid_meds:
            if m.category == "inpatient" or m.order_id in oud:
                continue
            start = _start(m, facts.as_of)
            if start is None:
                continue  # no date: when it began cannot be told
            days_ago = (facts.as_of - start).days
            if r.started_within_days is not None and days_ago > r.started_within_days:
                continue
            if r.started_at_least_days is not None and days_ago < r.started_at_least_days:
                continue
            supply = m.expected_supply_days
            if r.supply == "acute" and supply is not None and supply >= SUBACUTE_DAYS:
                continue
            if r.supply == "subacute-chronic" and (supply is None or supply < SUBACUTE_DAYS):
                continue
            if r.supply_over_days is not None and (supply is None or supply <= r.supply_over_days):
                continue
            if r.extended_release is not None and long_acting(m, la) != r.extended_release:
                continue
            if r.new_start and opioid_before(facts, m, start, r.naive_days) is not None:
                continue
            out.append((m, start, supply, "draft" if m.draft else f"started {start.isoformat()}"))
        return out

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        orders = self._orders(cr.rule, facts, index)
        if not orders:
            return None
        supply = "; ".join(f"{m.label}: " + (f"{s:g} days" if s is not None else "not given")
                           for m, _, s, _ in orders)
        return Finding(cr, tuple(m for m, *_ in orders), {
            "drugs": ", ".join(m.label for m, *_ in orders), "count": len(orders),
            "supply": supply, "started": "; ".join(f"{m.label}: {why}" for m, _, _, why in orders),
            "naive_days": cr.rule.naive_days}, 0.0,
            ("guideline", cr.ref, frozenset(m.order_id for m, *_ in orders)))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        out = [Condition("current or draft opioid orders (not OUD treatment, not inpatient)",
                         [m.label for m in facts.opioid_meds] or "none", None)]
        la = index.members(rule.long_acting_drugs)
        for m in facts.opioid_meds:
            start = _start(m, facts.as_of)
            prior = opioid_before(facts, m, start, rule.naive_days) if start else None
            supply = m.expected_supply_days
            form = "extended-release/long-acting" if long_acting(m, la) else "immediate-release"
            before = (f"opioid in the {rule.naive_days} days before: {prior.label}" if prior
                      else f"no opioid in the {rule.naive_days} days before")
            out.append(Condition(m.label, f"start {start or 'unknown'}, supply "
                                 f"{'not given' if supply is None else f'{supply:g} days'}, "
                                 f"{form}, {before}", None))
        qualifying = self._orders(rule, facts, index)
        out.append(Condition("orders meeting the rule", [m.label for m, *_ in qualifying] or
                             "none", bool(qualifying)))
        return out


class ConditionKind(RuleKind):
    type = "condition"
    placeholders: ClassVar[frozenset[str]] = frozenset({"condition", "recorded", "drugs"})

    def _drugs_on_file(self, r: Any, facts: Facts, index: Index) -> list[NormalizedMed]:
        members = index.members(r.without_drugs)
        since = facts.as_of - timedelta(days=r.within_days)
        out = []
        for m in (*facts.meds, *facts.history):
            if not members.intersection(m.ingredients):
                continue
            w = window(m, facts.as_of)
            if m.current or (w is not None and w[1] > since):
                out.append(m)
        return out

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        r = cr.rule
        since = facts.as_of - timedelta(days=r.within_days)
        hits = conditions_in(index.kb, facts.condition_records, r.conditions, since=since)
        if not hits or self._drugs_on_file(r, facts, index):
            return None
        _, found = hits[0]
        return Finding(cr, (), {"condition": found.label,
                                "recorded": found.date.isoformat() if found.date else "undated",
                                "drugs": ", ".join(r.without_drugs)}, 0.0, ("guideline", cr.ref))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        since = facts.as_of - timedelta(days=rule.within_days)
        hits = conditions_in(index.kb, facts.condition_records, rule.conditions, since=since)
        on_file = self._drugs_on_file(rule, facts, index)
        return [Condition(f"active condition in {', '.join(rule.conditions)} since "
                          f"{since.isoformat()}", [f.label for _, f in hits] or "none", bool(hits)),
                Condition(f"none of {', '.join(rule.without_drugs)} on file or taken since "
                          f"{since.isoformat()}", [m.label for m in on_file] or "none",
                          not on_file)]


def _reading(value: str | None) -> str | None:
    """positive | negative | None, as the CDC implementation guide reads a result's text."""
    v = (value or "").strip().lower()
    return "positive" if v.startswith("pos") else "negative" if v.startswith("neg") else None


class ToxicologyKind(RuleKind):
    type = "toxicology"
    placeholders: ClassVar[frozenset[str]] = frozenset({"unexpected", "count", "since"})

    def _prescribed(self, drugs: frozenset[str], facts: Facts, start: date, end: date) -> bool:
        for m in (*facts.meds, *facts.history):
            if drugs.intersection(m.ingredients):
                w = window(m, facts.as_of)
                if w is not None and w[0] <= end and w[1] > start:
                    return True
        return False

    def _unexpected(self, r: Any, facts: Facts, index: Index) -> tuple[list[str], list[str]]:
        """(unexpected results, results that could not be read), in words."""
        since = facts.as_of - timedelta(days=r.lookback_days)
        kb = index.kb
        out: list[str] = []
        unread: list[str] = []
        for e in facts.events:
            if e.kind != "observation" or (e.date is not None and e.date < since):
                continue
            when = e.date.isoformat() if e.date else "undated"
            reading = _reading(e.value)
            for side, panels in (("illicit", r.illicit), ("prescribed", r.prescribed)):
                for p in panels:
                    if kb.value_sets[p.tests].any_of(e.codes) is None:
                        continue
                    if reading is None:
                        unread.append(f"{p.label} test on {when}: result {e.value!r} not read")
                        continue
                    if side == "illicit":
                        if reading == "positive":
                            out.append(f"{p.label} detected ({when})")
                        continue
                    test_day = e.date or facts.as_of
                    given = self._prescribed(index.members(p.drugs), facts,
                                             test_day - timedelta(days=r.rx_window_days),
                                             test_day - timedelta(days=1))
                    if reading == "positive" and not given:
                        out.append(f"{p.label} detected ({when}) but not prescribed in the "
                                   f"{r.rx_window_days} days before")
                    elif reading == "negative" and given:
                        out.append(f"{p.label} prescribed but not detected ({when})")
        return out, unread

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        found, _ = self._unexpected(cr.rule, facts, index)
        if not found:
            return None
        since = facts.as_of - timedelta(days=cr.rule.lookback_days)
        return Finding(cr, (), {"unexpected": "; ".join(found), "count": len(found),
                                "since": since.isoformat()}, 0.0, ("guideline", cr.ref))

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        found, unread = self._unexpected(rule, facts, index)
        out = [Condition(f"unexpected urine drug test results in {rule.lookback_days} days",
                         found or "none", bool(found))]
        if unread:
            out.append(Condition("results that could not be read as positive or negative",
                                 unread, None))
        return out
