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
from collections.abc import Callable, Iterable

from cds.engine.alerts import Alert, CompiledRule, Finding, Suggestion, alert_key
from cds.engine.kinds.escalation import naloxone_on_file
from cds.engine.kinds.interaction import pairs_finding
from cds.engine.rationale import fill, rationale
from cds.knowledge.facts import Facts
from cds.knowledge.store import Knowledge
from cds.rules.models import Action
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


def preference(cr: CompiledRule, specificity: float) -> tuple[int, float, str]:
    """How a rule ranks as the alert for one finding (lower first): higher severity, then the
    narrower drug references, then the rule id (a stable tie-break)."""
    return (SEVERITY_RANK[cr.rule.severity], -specificity, cr.ref)


def _more_specific(f: Finding, g: Finding) -> bool:
    """Is f preferred over g as the alert for one finding?"""
    return preference(f.rule, f.specificity) < preference(g.rule, g.specificity)


def group_key(cr: CompiledRule) -> tuple[str, str]:
    """Which rules report one pair finding: those sharing a `finding` key, else one family."""
    return ("finding", cr.rule.finding) if cr.rule.finding else ("pair", cr.family)


def deduplicate(findings: Iterable[Finding]) -> list[tuple[Finding, list[Finding]]]:
    """Group findings that say the same thing; keep the most specific of each group.

    Same thing: the same `finding` key on the same medications (across packs), or the same
    family on the same medication pair where one rule's drugs are narrower (a class rule and
    an ingredient rule on oxycodone + alprazolam are one alert).
    """
    groups: dict[tuple[object, ...], list[Finding]] = {}
    for f in findings:
        rule = f.rule.rule
        pair = f.key[1] if f.key and f.key[0] == "pair" else None  # its order ids, made once
        if rule.finding:
            k: tuple[object, ...] = ("finding", rule.finding,
                                     pair or frozenset(m.order_id for m in f.meds))
        elif pair is not None:
            k = ("pair", f.rule.family, pair)
        else:
            k = ("rule", f.rule.ref, f.key)
        group = groups.setdefault(k, [])
        group.append(f)
        if f.also:  # merged before it was built: its other rules come along
            group.extend(Finding(c, (), {}, -1.0) for c in f.also)
    out: list[tuple[Finding, list[Finding]]] = []
    for group in groups.values():
        best = group[0]
        for g in group[1:]:
            # (a rule merged before it was built has no medications: not a candidate)
            if g.meds and (not best.meds or _more_specific(g, best)):
                best = g
        if len(group) == 1:
            out.append((best, []))
            continue
        others = {g.rule.ref for g in group if g is not best}
        out.append((best, [g for g in group if g.rule.ref in others]))
    return out


def merge_pairs(groups: list[tuple[Finding, list[Finding]]]
                ) -> list[tuple[Finding, list[Finding]]]:
    """Pairwise findings of one rule for one patient become one finding listing the pairs
    (the durable backend reports pairs one by one; the indexed evaluator merges them as it
    goes): four opioids with two benzodiazepines are one alert, not eight."""
    by_rule: dict[str, list[int]] = {}
    for n, (best, _) in enumerate(groups):
        if best.key and best.key[0] == "pair" and len(best.meds) == 2:
            by_rule.setdefault(best.rule.ref, []).append(n)
    merged = {ref: idxs for ref, idxs in by_rule.items() if len(idxs) > 1}
    if not merged:
        return groups
    first_of = {idxs[0]: ref for ref, idxs in merged.items()}
    dropped = {i for idxs in merged.values() for i in idxs[1:]}
    out = []
    for n, group in enumerate(groups):
        if n in dropped:
            continue
        ref = first_of.get(n)
        if ref is None:
            out.append(group)
            continue
        items = [groups[i] for i in merged[ref]]
        best = items[0][0]
        out.append((pairs_finding(best.rule, [(f.meds[0], f.meds[1]) for f, _ in items],
                                  max(f.specificity for f, _ in items)),
                    [o for _, os in items for o in os]))
    return out


def fitting_actions(f: Finding, naloxone: Callable[[], bool]) -> list[Action]:
    """The rule's actions that fit the finding's context (an action's `needs`, its `when:`
    and what its suggestion implies): `draft` ones only when a draft order is among the
    finding's medications (never in a panel review or patient-view), `no-draft` ones only
    when none is, `no-naloxone` ones only when `naloxone()` (asked once, when needed) says
    none is on file."""
    draft: bool | None = None
    out = []
    for action in f.rule.rule.actions:
        if action.suggestion is None and not action.when:
            out.append(action)
            continue
        needs = action.needs
        if "draft" in needs or "no-draft" in needs:
            if draft is None:
                draft = any(m.draft for m in f.meds)
            if draft != ("draft" in needs):
                continue
        if "no-naloxone" in needs and naloxone():
            continue
        out.append(action)
    return out


def _suggestions(f: Finding, actions: Iterable[Action]) -> tuple[Suggestion, ...]:
    out = []
    for action in actions:
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


def to_alerts(findings: Iterable[Finding], facts: Facts, kb: Knowledge) -> list[Alert]:
    """The findings as alerts, deduplicated, merged and ordered; each alert says the rule's
    actions that fit its context (fitting_actions). `kb` decides which medications are
    naloxone."""
    base = risk_modifiers(facts)
    values_cache: dict[str, str] = {}
    known: list[bool] = []  # naloxone on file: decided once per patient, when first asked

    def naloxone() -> bool:
        if not known:
            known.append(naloxone_on_file(facts, kb))
        return known[0]

    alerts = []
    for best, others in merge_pairs(deduplicate(findings)):
        rule = best.rule.rule
        meds = best.meds
        order_ids = tuple(sorted({m.order_id for m in meds}))
        # the rule and the medications identify a finding (its key adds nothing to them)
        digest = hashlib.sha1(
            f"{facts.patient_id}|{best.rule.ref}|{'|'.join(order_ids)}".encode()).hexdigest()[:16]
        actions = fitting_actions(best, naloxone)
        subject, band = best.rule.kind.identity(best)
        alerts.append(Alert(
            id=digest, rule=best.rule.ref, pack=best.rule.pack_ref,
            pack_digest=best.rule.pack_digest, family=best.rule.family,
            severity=rule.severity, priority=priority(best, base),
            summary=_summary(rule.summary, best.values),
            rationale=rationale(best, facts, values_cache), medications=tuple(m.label for m in meds),
            sources=(tuple(dict.fromkeys([*rule.sources, *(
                s for o in sorted(others, key=lambda o: o.rule.ref) for s in o.rule.rule.sources)]))
                     if others else tuple(rule.sources)),
            actions=tuple(a.text for a in actions), order_ids=order_ids,
            also=tuple(sorted({o.rule.ref for o in others})) if others else (),
            role=best.rule.role,
            interruptive=rule.interruptive, draft=any(m.draft for m in meds),
            evidence=rule.evidence, suggestions=_suggestions(best, actions),
            values=best.values,
            responses=tuple((r.code, r.display, r.snooze_days) for r in rule.responses),
            key=alert_key(best.rule.ref, subject, band), band=band,
            ingredients=tuple(sorted({i for m in meds for i in m.ingredients})),
        ))
    alerts.sort(key=lambda a: (-a.priority, not a.draft, a.family, a.rule, a.medications, a.id))
    return alerts
