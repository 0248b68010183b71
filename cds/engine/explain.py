"""Why a rule did or did not fire for a patient: each condition, its value, its verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cds.engine.compile import CompiledPacks, _renal_value
from cds.engine.escalation import history
from cds.engine.evaluator import Engine
from cds.errors import PackError, PackErrors
from cds.knowledge.facts import Facts
from cds.rules.loader import Pack
from cds.rules.models import (
    BurdenRule,
    EscalationRule,
    HepaticRule,
    InteractionRule,
    MmeRule,
    RenalMonitoringRule,
    RenalRule,
)


@dataclass(frozen=True)
class Condition:
    text: str
    value: Any
    ok: bool | None  # None: informational


@dataclass(frozen=True)
class Explanation:
    rule: str
    pack: str
    fired: bool
    conditions: list[Condition]
    alert_summary: str | None


def find_rule(packs: list[Pack], ref: str) -> tuple[Pack, Any]:
    pack_id, _, rule_id = ref.rpartition("/")
    for p in packs:
        if pack_id and p.id != pack_id:
            continue
        r = p.rule(rule_id)
        if r is not None:
            return p, r
    known = ", ".join(f"{p.id}/{r.rule.id}" for p in packs for r in p.rules)
    raise PackErrors([PackError(f"no rule {ref!r} in the loaded packs", field="--rule",
                                suggestion=next((k for k in known.split(", ") if ref in k),
                                                None))])


def _meds(facts: Facts, ref: str) -> list[str]:
    return [facts.meds[i].label for i in facts.meds_with(ref)]


def _conditions(engine: Engine, rule: Any, facts: Facts) -> list[Condition]:
    c: list[Condition] = []
    if isinstance(rule, InteractionRule):
        for side, refs in (("a", rule.a), ("b", rule.b)):
            found = [m for ref in refs for m in _meds(facts, ref)]
            c.append(Condition(f"{side}: a medication in {', '.join(refs)}", found or "none",
                               bool(found)))
    elif isinstance(rule, BurdenRule):
        if rule.kind == "cns-count":
            meds = _meds(facts, rule.counts)
            n = len({tuple(sorted(facts.meds[i].ingredients)) for i in facts.meds_with(rule.counts)})
            c.append(Condition(f"distinct {rule.counts} drugs >= {rule.min:g}",
                               f"{n}: {', '.join(meds) or 'none'}", n >= (rule.min or 0)))
        elif rule.kind == "combination":
            for ref in rule.all:
                found = _meds(facts, ref)
                c.append(Condition(f"a medication in {ref}", found or "none", bool(found)))
        else:
            scores = ", ".join(f"{i} {s}" for _, i, s in facts.acb_items) or "none"
            c.append(Condition(f"anticholinergic burden >= {rule.min:g}",
                               f"{facts.acb_total} ({scores})", facts.acb_total >= (rule.min or 0)))
    elif isinstance(rule, MmeRule):
        c.append(Condition(f"total MME/day >= {rule.min:g}", round(facts.mme.total, 2),
                           facts.mme.total >= rule.min))
        if rule.below is not None:
            c.append(Condition(f"total MME/day < {rule.below:g}", round(facts.mme.total, 2),
                               facts.mme.total < rule.below))
    elif isinstance(rule, RenalRule | HepaticRule):
        found = [m for ref in rule.drugs for m in _meds(facts, ref)]
        c.append(Condition(f"a medication in {', '.join(rule.drugs)}", found or "none",
                           bool(found)))
        if isinstance(rule, RenalRule):
            v = _renal_value(rule, facts)
            band = " and ".join(s for s in (
                rule.below is not None and f"< {rule.below:g}",
                rule.at_or_below is not None and f"<= {rule.at_or_below:g}",
                rule.above is not None and f"> {rule.above:g}",
                rule.at_least is not None and f">= {rule.at_least:g}") if s)
            from cds.engine.compile import _in_band

            c.append(Condition(f"{rule.measure} {band}", "unknown" if v is None else round(v, 1),
                               None if v is None else _in_band(rule, v)))
        else:
            cp = facts.hepatic
            c.append(Condition(f"Child-Pugh class in {rule.child_pugh}",
                               cp.cls if cp else f"unknown (missing {', '.join(facts.hepatic_missing)})",
                               None if cp is None else cp.cls in rule.child_pugh))
        if rule.max_daily_dose is not None:
            doses = [f"{m.label}: {', '.join(f'{a:g} {u}' for _, a, u in m.daily) or m.daily_reason}"
                     for ref in rule.drugs for i in facts.meds_with(ref) for m in [facts.meds[i]]]
            c.append(Condition(f"daily dose > {rule.max_daily_dose.value:g} "
                               f"{rule.max_daily_dose.unit}", doses or "none", None))
    elif isinstance(rule, RenalMonitoringRule):
        r = facts.renal
        c.append(Condition("kidney function on file", r.measured_on or ("undated" if (
            r.crcl or r.egfr) else "none"), bool(r.crcl or r.egfr)))
    elif isinstance(rule, EscalationRule):
        c.append(Condition("total MME/day now", round(facts.mme.total, 2), None))
        if rule.days:
            h = history(engine.kb, facts)
            then = facts.as_of - timedelta(days=rule.days)
            c.append(Condition(f"total MME/day on {then.isoformat()}", round(h.mme_on(then), 2),
                               None))
            c.append(Condition("long-term opioid therapy as of then", h.long_term(then), None))
    if rule.when:
        from cds.engine.expression import compile_expression

        ok, trace = compile_expression(rule.when).explain(facts)
        for text, value in trace:
            c.append(Condition(text, value, None))
        c.append(Condition(f"when: {rule.when}", ok, ok))
    return c


def explain(engine: Engine, facts: Facts, ref: str) -> Explanation:
    pack, rule = find_rule(list(engine.packs), ref)
    compiled = CompiledPacks.build(engine.kb, [pack])
    findings = [f for f in compiled.match(facts) if f.rule.rule.id == rule.id]
    alerts = [a for a in engine.alerts(facts) if a.rule == f"{pack.id}/{rule.id}"
              or f"{pack.id}/{rule.id}" in a.also]
    return Explanation(f"{pack.id}/{rule.id}", pack.ref, bool(findings),
                       _conditions(engine, rule, facts),
                       alerts[0].summary if alerts else None)
