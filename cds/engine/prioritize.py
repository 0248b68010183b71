"""Findings -> alerts: deduplicate, score, order. The formula is in docs/priority.md.

priority = severity base (critical 400, high 300, moderate 200, low 100, info 0)
         + patient risk modifiers (0-99): age >= 65: +10; CrCl or eGFR < 30: +10, < 60: +5;
           MME >= 90: +10, >= 50: +5; 3+ CNS-active drugs: +8; anticholinergic burden >= 3:
           +4; a draft order involved: +5; a non-interruptive rule: -50 (floored at 0 within
           its band).
Severity always dominates; modifiers order alerts within a severity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cds.engine.alerts import Alert, Finding, Suggestion
from cds.engine.rationale import fill, rationale
from cds.knowledge.facts import Facts
from cds.vocabulary import SEVERITY_RANK

SEVERITY_BASE = {"critical": 400, "high": 300, "moderate": 200, "low": 100, "info": 0}


def risk_modifiers(facts: Facts) -> int:
    m = 0
    if facts.age is not None and facts.age >= 65:
        m += 10
    kidney = [v for v in (facts.renal.crcl.value if facts.renal.crcl else None, facts.renal.egfr)
              if v is not None]
    if kidney and min(kidney) < 30:
        m += 10
    elif kidney and min(kidney) < 60:
        m += 5
    if facts.mme.total >= 90:
        m += 10
    elif facts.mme.total >= 50:
        m += 5
    if len(facts.cns_active) >= 3:
        m += 8
    if facts.acb_total >= 3:
        m += 4
    return m


def priority(f: Finding, base_modifiers: int) -> int:
    rule = f.rule.rule
    m = base_modifiers + (5 if any(x.draft for x in f.meds) else 0)
    if not rule.interruptive:
        m -= 50
    return SEVERITY_BASE[rule.severity] + max(0, min(99, m))


def _more_specific(f: Finding, g: Finding) -> bool:
    """Is f preferred over g as the alert for one finding?"""
    return (SEVERITY_RANK[f.rule.rule.severity], -f.specificity, f.rule.ref) < (
        SEVERITY_RANK[g.rule.rule.severity], -g.specificity, g.rule.ref)


def deduplicate(findings: Iterable[Finding]) -> list[tuple[Finding, list[Finding]]]:
    """Group findings that say the same thing; keep the most specific of each group.

    Same thing: the same `finding` key on the same medications (across packs), or the same
    family on the same medication pair where one rule's drugs are narrower (a class rule and
    an ingredient rule on oxycodone + alprazolam are one alert).
    """
    groups: dict[tuple[object, ...], list[Finding]] = {}
    for f in findings:
        rule = f.rule.rule
        meds = frozenset(m.order_id for m in f.meds)
        if rule.finding:
            k: tuple[object, ...] = ("finding", rule.finding, meds)
        elif f.key and f.key[0] == "pair":
            k = ("pair", f.rule.family, meds)
        else:
            k = ("rule", f.rule.ref, f.key)
        groups.setdefault(k, []).append(f)
    out: list[tuple[Finding, list[Finding]]] = []
    for group in groups.values():
        best = group[0]
        for g in group[1:]:
            if _more_specific(g, best):
                best = g
        if len(group) == 1:
            out.append((best, []))
            continue
        others = {g.rule.ref for g in group if g is not best}
        out.append((best, [g for g in group if g.rule.ref in others]))
    return out


def _suggestions(f: Finding) -> tuple[Suggestion, ...]:
    out = []
    for action in f.rule.rule.actions:
        s = action.suggestion
        if s is None:
            continue
        if s.kind == "remove-draft":
            ids = tuple(m.order_id for m in f.meds if m.draft)
            if not ids:
                continue
        else:
            ids = tuple(m.order_id for m in f.meds)
        limit = f.rule.kind.dose_limit(f.rule.rule)
        out.append(Suggestion(s.kind, s.label, ids, limit.value if limit else None,
                              limit.unit if limit else None))
    return tuple(out)


def _summary(template: str, values: dict[str, object]) -> str:
    """The summary with its values filled in, under CDS Hooks' 140 characters (at most 139)."""
    text = fill(template, values)
    return text if len(text) < 140 else text[:138] + "…"


def to_alerts(findings: Iterable[Finding], facts: Facts) -> list[Alert]:
    base = risk_modifiers(facts)
    values_cache: dict[str, str] = {}
    alerts = []
    for best, others in deduplicate(findings):
        rule = best.rule.rule
        meds = best.meds
        order_ids = tuple(sorted({m.order_id for m in meds}))
        # the rule and the medications identify a finding (its key adds nothing to them)
        digest = hashlib.sha1(
            f"{facts.patient_id}|{best.rule.ref}|{'|'.join(order_ids)}".encode()).hexdigest()[:16]
        actions = [a.text for a in rule.actions]
        alerts.append(Alert(
            id=digest, rule=best.rule.ref, pack=best.rule.pack_ref,
            pack_digest=best.rule.pack_digest, family=best.rule.family,
            severity=rule.severity, priority=priority(best, base),
            summary=_summary(rule.summary, best.values),
            rationale=rationale(best, facts, values_cache), medications=tuple(m.label for m in meds),
            sources=(tuple(dict.fromkeys([*rule.sources,
                                          *(s for o in others for s in o.rule.rule.sources)]))
                     if others else tuple(rule.sources)),
            actions=tuple(actions), order_ids=order_ids,
            also=tuple(sorted({o.rule.ref for o in others})) if others else (),
            role=best.rule.role,
            interruptive=rule.interruptive, draft=any(m.draft for m in meds),
            evidence=rule.evidence, suggestions=_suggestions(best), values=best.values,
            responses=tuple((r.code, r.display, r.snooze_days) for r in rule.responses),
        ))
    alerts.sort(key=lambda a: (-a.priority, not a.draft, a.family, a.rule, a.medications, a.id))
    return alerts
