"""Compile loaded packs into indexes, so evaluation cost follows the patient's medications,
not the pack's size: interaction rules become an ingredient-pair table, drug-specific rules an
ingredient index; only patient-wide rules (burden totals, MME tiers) are scanned.

The compiled object holds no per-patient state: it is safe to share between threads and
pickles for process pools and Dask workers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from cds.engine import escalation
from cds.engine.alerts import CompiledRule, Finding
from cds.engine.expression import compile_expression
from cds.engine.rationale import rule_tail
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.store import Knowledge
from cds.rules.loader import Pack
from cds.rules.models import (
    BurdenRule,
    EscalationRule,
    ExpressionRule,
    HepaticRule,
    InteractionRule,
    MmeRule,
    RenalMonitoringRule,
    RenalRule,
)


def route_role(pack: Pack, rule: Any) -> str:
    """Which role acts on the rule's alerts: the rule's own, else the pack policy's."""
    if rule.role:
        return str(rule.role)
    from cds.rules.models import SEVERITIES

    policy = pack.meta.escalation
    for route in policy.routes:
        if route.rules and rule.id not in route.rules:
            continue
        if route.family and route.family != rule.family:
            continue
        if route.min_severity and (SEVERITIES.index(rule.severity)
                                   > SEVERITIES.index(route.min_severity)):
            continue
        return route.role
    return policy.default_role


def _specificity(kb: Knowledge, ref: str) -> float:
    """An ingredient is as specific as it gets; a class less so the more members it has."""
    if kb.classes.kind(ref) == "ingredient":
        return 1.0
    return 1.0 / (1 + len(kb.classes.members(ref)))


@dataclass
class CompiledPacks:
    kb: Knowledge
    packs: list[Pack]
    rules: list[CompiledRule] = field(default_factory=list)
    # (ingredient x, ingredient y) -> [(rule, x is side a, specificity)]
    pairs: dict[tuple[str, str], list[tuple[CompiledRule, bool, float]]] = field(
        default_factory=lambda: defaultdict(list))
    by_ingredient: dict[str, list[CompiledRule]] = field(default_factory=lambda: defaultdict(list))
    patient_wide: list[CompiledRule] = field(default_factory=list)
    renal_drugs: dict[str, frozenset[str]] = field(default_factory=dict)  # pack id -> ingredients

    @classmethod
    def build(cls, kb: Knowledge, packs: list[Pack]) -> CompiledPacks:
        self = cls(kb, packs)
        g = kb.classes
        for pack in packs:
            renal_ings: set[str] = set()
            for loaded in pack.rules:
                r = loaded.rule
                when = compile_expression(r.when, known=kb.known) if r.when else None
                cr = CompiledRule(pack.id, pack.ref, pack.digest, r, f"{pack.id}/{r.id}",
                                  r.family, route_role(pack, r), when, rule_tail(r))
                self.rules.append(cr)
                if isinstance(r, InteractionRule):
                    for ra in r.a:
                        for rb in r.b:
                            spec = _specificity(kb, ra) + _specificity(kb, rb)
                            for x in g.members(ra):
                                for y in g.members(rb):
                                    if x == y:
                                        continue
                                    self.pairs[(x, y)].append((cr, True, spec))
                                    self.pairs[(y, x)].append((cr, False, spec))
                elif isinstance(r, RenalRule | HepaticRule):
                    ings = set().union(*(g.members(d) for d in r.drugs))
                    for i in ings:
                        self.by_ingredient[i].append(cr)
                    if isinstance(r, RenalRule):
                        renal_ings |= ings
                elif isinstance(r, ExpressionRule) and r.drugs:
                    for i in set().union(*(g.members(d) for d in r.drugs)):
                        self.by_ingredient[i].append(cr)
                else:
                    self.patient_wide.append(cr)
            self.renal_drugs[pack.id] = frozenset(renal_ings)
        # dedupe pair entries (a rule listing overlapping classes on one side)
        for k, v in self.pairs.items():
            seen: dict[tuple[str, bool], tuple[CompiledRule, bool, float]] = {}
            for entry in v:
                seen.setdefault((entry[0].ref, entry[1]), entry)
            self.pairs[k] = list(seen.values())
        self.pairs = dict(self.pairs)
        self.by_ingredient = dict(self.by_ingredient)
        return self

    # -- matching -------------------------------------------------------------------------

    def match(self, facts: Facts) -> list[Finding]:
        out: list[Finding] = []
        self._interactions(facts, out)
        self.drug_rules(facts, out)
        self.patient_wide_rules(facts, out, lambda cr, r: _burden(self.kb, cr, r, facts))
        return out

    def patient_wide_rules(self, facts: Facts, out: list[Finding],
                           burden: Callable[[CompiledRule, BurdenRule], Finding | None]) -> None:
        """Rules about the whole list (burden, MME tiers, renal monitoring, escalation,
        drug-less expressions); `burden` is the backend's way of matching burden rules."""
        for cr in self.patient_wide:
            r = cr.rule
            f: Finding | None
            if isinstance(r, BurdenRule):
                f = burden(cr, r)
            elif isinstance(r, MmeRule):
                f = _mme(cr, r, facts)
            elif isinstance(r, RenalMonitoringRule):
                f = _renal_monitoring(self, cr, r, facts)
            elif isinstance(r, EscalationRule):
                f = escalation.match(self.kb, cr, r, facts)
            elif isinstance(r, ExpressionRule):
                f = Finding(cr, (), {}, 0.0, (cr.ref,)) if r.drugs == [] else None
            else:  # pragma: no cover - the schema admits no other type
                f = None
            if f is not None and (cr.when is None or cr.when(facts)):
                out.append(f)

    def _interactions(self, facts: Facts, out: list[Finding]) -> None:
        pairs = self.pairs
        meds = facts.meds
        for i, j in combinations(range(len(meds)), 2):
            mi, mj = meds[i], meds[j]
            hits: dict[str, tuple[CompiledRule, set[bool], float]] = {}
            for x in mi.ingredients:
                for y in mj.ingredients:
                    for cr, i_is_a, spec in pairs.get((x, y), ()):
                        hit = hits.setdefault(cr.ref, (cr, set(), spec))
                        hit[1].add(i_is_a)
            for cr, sides, spec in hits.values():
                if cr.when is None or cr.when(facts):
                    out.append(pair_finding(cr, mi, mj, sides, spec))

    def drug_rules(self, facts: Facts, out: list[Finding]) -> None:
        seen: dict[str, list[NormalizedMed]] = {}
        rules: dict[str, CompiledRule] = {}
        for med in facts.meds:
            for ing in med.ingredients:
                for cr in self.by_ingredient.get(ing, ()):
                    lst = seen.setdefault(cr.ref, [])
                    if med not in lst:
                        lst.append(med)
                    rules[cr.ref] = cr
        for ref in sorted(seen):
            cr = rules[ref]
            r = cr.rule
            if isinstance(r, RenalRule):
                for med in seen[ref]:
                    f = _renal(cr, r, med, facts)
                    if f is not None and (cr.when is None or cr.when(facts)):
                        out.append(f)
            elif isinstance(r, HepaticRule):
                for med in seen[ref]:
                    f = _hepatic(cr, r, med, facts)
                    if f is not None and (cr.when is None or cr.when(facts)):
                        out.append(f)
            elif isinstance(r, ExpressionRule) and cr.when is not None and cr.when(facts):
                meds = tuple(seen[ref])
                out.append(Finding(cr, meds, {"drugs": ", ".join(m.label for m in meds)}, 0.0,
                                   (cr.ref, frozenset(m.order_id for m in meds))))


# -- patient-wide and per-drug matchers ----------------------------------------------------

def _distinct_ingredient_meds(meds: list[NormalizedMed]) -> list[NormalizedMed]:
    """One medication per ingredient set: IR + ER oxycodone are one drug for counting."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for m in meds:
        k = tuple(sorted(m.ingredients))
        if k not in seen:
            seen.add(k)
            out.append(m)
    return out


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


def cns_count_finding(cr: CompiledRule, r: BurdenRule, meds: list[NormalizedMed]) -> Finding | None:
    distinct = _distinct_ingredient_meds(meds)
    if r.min is None or len(distinct) < r.min:
        return None
    return Finding(cr, tuple(meds), {"count": len(distinct), "min": r.min,
                                     "drugs": ", ".join(m.label for m in meds)},
                   0.0, ("burden", r.kind, frozenset(m.order_id for m in meds)))


def combination_finding(kb: Knowledge, cr: CompiledRule, r: BurdenRule,
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
    spec = sum(_specificity(kb, ref) for ref in r.all)
    values = {f"drug{n + 1}": ", ".join(m.label for m in g) for n, g in enumerate(groups)}
    values["drugs"] = ", ".join(m.label for m in combined)
    return Finding(cr, tuple(combined), values, spec,
                   ("pair", frozenset(m.order_id for m in combined)))


def anticholinergic_finding(cr: CompiledRule, r: BurdenRule, facts: Facts) -> Finding | None:
    if r.min is None or facts.acb_total < r.min:
        return None
    scored = {ing for _, ing, _ in facts.acb_items}
    acb_meds = tuple(m for m in facts.meds if scored.intersection(m.ingredients))
    detail = ", ".join(f"{ing} {score}" for _, ing, score in facts.acb_items)
    return Finding(cr, acb_meds, {"acb": facts.acb_total, "min": r.min, "scores": detail}, 0.0,
                   ("burden", r.kind))


def _burden(kb: Knowledge, cr: CompiledRule, r: BurdenRule, facts: Facts) -> Finding | None:
    if r.kind == "cns-count":
        return cns_count_finding(cr, r, [facts.meds[i] for i in facts.meds_with(r.counts)])
    if r.kind == "combination":
        return combination_finding(kb, cr, r, [[facts.meds[i] for i in facts.meds_with(ref)]
                                               for ref in r.all])
    return anticholinergic_finding(cr, r, facts)


def _mme(cr: CompiledRule, r: MmeRule, facts: Facts) -> Finding | None:
    total = facts.mme.total
    if total < r.min or (r.below is not None and total >= r.below):
        return None
    ids = {i.order_id for i in facts.mme.items}
    meds = tuple(m for m in facts.meds if m.order_id in ids)
    return Finding(cr, meds, {"mme": round(total, 1), "threshold": r.min}, 0.0,
                   ("mme", r.min))


def _renal_value(r: RenalRule, facts: Facts) -> float | None:
    if r.measure == "crcl":
        return facts.renal.crcl.value if facts.renal.crcl else None
    return facts.renal.egfr


def _in_band(r: RenalRule, v: float) -> bool:
    hit = ((r.below is not None and v < r.below) or (r.at_or_below is not None and v <= r.at_or_below)
           or (r.above is not None and v > r.above))
    return hit and (r.at_least is None or v >= r.at_least)


def _dose_over_limit(limit: Any, med: NormalizedMed, values: dict[str, Any]) -> bool:
    """Does the daily dose exceed the rule's maximum (an unknown dose counts as over)?
    Records both in `values` for the rationale."""
    values["max_dose"] = f"{limit.value:g} {limit.unit}/day"
    for _, amount, unit in med.daily:
        if unit == limit.unit:
            values["daily_dose"] = f"{amount:g} {unit}/day"
            return bool(amount > limit.value + 1e-9)
    values["daily_dose"] = "unknown"
    return True


def _renal(cr: CompiledRule, r: RenalRule, med: NormalizedMed, facts: Facts) -> Finding | None:
    if r.extended_release is not None and med.extended_release != r.extended_release:
        return None
    v = _renal_value(r, facts)
    if v is None or not _in_band(r, v):
        return None
    values: dict[str, Any] = {"drug": med.label, "measure": "CrCl" if r.measure == "crcl" else "eGFR",
                              "value": round(v, 1), "action": r.action}
    if r.max_daily_dose is not None and not _dose_over_limit(r.max_daily_dose, med, values):
        return None
    return Finding(cr, (med,), values, 1.0, ("renal", med.order_id, cr.ref))


def _renal_monitoring(c: CompiledPacks, cr: CompiledRule, r: RenalMonitoringRule,
                      facts: Facts) -> Finding | None:
    g = c.kb.classes
    drugs = (frozenset().union(*(g.members(d) for d in r.drugs)) if r.drugs
             else c.renal_drugs.get(cr.pack_id, frozenset()))
    meds = tuple(m for m in facts.meds if drugs.intersection(m.ingredients))
    if not meds:
        return None
    renal = facts.renal
    if renal.crcl is not None or renal.egfr is not None:
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


def _hepatic(cr: CompiledRule, r: HepaticRule, med: NormalizedMed, facts: Facts) -> Finding | None:
    cp = facts.hepatic
    if cp is None or cp.cls not in r.child_pugh:
        return None
    values: dict[str, Any] = {"drug": med.label, "child_pugh": cp.cls,
                              "child_pugh_score": cp.score if cp.score is not None else "given",
                              "action": r.action}
    if r.max_daily_dose is not None and not _dose_over_limit(r.max_daily_dose, med, values):
        return None
    return Finding(cr, (med,), values, 1.0, ("hepatic", med.order_id, cr.ref))
