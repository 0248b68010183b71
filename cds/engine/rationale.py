"""Rationale text: the rule's template, then the values used, then the sources.

Every alert states the numbers it stands on (doses, MME arithmetic, CrCl with its inputs,
Child-Pugh points) so that a pharmacist can check it without opening the engine.
"""

from __future__ import annotations

from typing import Any

from cds.engine.alerts import Finding
from cds.knowledge.facts import Facts
from cds.knowledge.mme import MmeItem


class _Safe(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, values: dict[str, Any]) -> str:
    try:
        return template.format_map(_Safe(values))
    except (ValueError, IndexError, AttributeError):
        return template


def _g(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def renal_inputs(facts: Facts) -> str:
    r = facts.renal
    parts = []
    if r.crcl is not None:
        scr = r.creatinine
        when = f" on {scr.date.isoformat()}" if scr and scr.date else ""
        parts.append(
            f"CrCl {_g(r.crcl.value)} mL/min (Cockcroft-Gault: age {facts.age}, {facts.sex}, "
            f"{r.crcl.weight_basis} weight {_g(r.crcl.weight_kg)} kg, "
            f"SCr {scr.value:.2f} mg/dL{when})" if scr else f"CrCl {_g(r.crcl.value)} mL/min")
    if r.egfr is not None:
        bound = {">": "above ", ">=": "at least ", "<": "below ", "<=": "at most "}.get(
            r.egfr_comparator or "", "")
        parts.append(f"eGFR {bound}{_g(r.egfr)} mL/min/1.73m2 ({r.egfr_basis})"
                     + (" as reported, a bound" if bound else ""))
        if r.crcl is None:
            parts.append("no CrCl could be computed (creatinine, weight or age missing): limits "
                         "stated in CrCl were checked against the eGFR")
    return "; ".join(parts) or "no kidney function on file"


def _mme_item(i: MmeItem) -> str:
    notes = ([*i.assumed] + (["analytic factor"] if i.factor_status == "analytic" else []))
    return (f"{i.medication}: {_g(i.daily_dose)} {i.unit}{'' if i.unit == 'mcg/h' else '/day'}"
            f" x {i.factor:g} = {_g(i.mme)}" + (f" ({'; '.join(notes)})" if notes else ""))


def mme_breakdown(facts: Facts) -> str:
    """The MME arithmetic: each counted item (with what was assumed), what was not counted
    and why, and whether the total is only a lower bound."""
    m = facts.mme
    out = f"Total {_g(m.total)} MME/day ({m.factor_set} factors)"
    if m.items:
        out += ": " + "; ".join(_mme_item(i) for i in m.items)
    if m.excluded:
        out += ". Not counted: " + "; ".join(f"{e.medication} ({e.reason})" for e in m.excluded)
    if m.lower_bound:
        out += (". The total is a lower bound: an opioid on the list could not be counted, so "
                "the true MME/day may be higher")
    return out


def _patient_values(family: str, facts: Facts) -> str:
    """The patient's values a family's alerts state (the same for every alert of a family)."""
    if family in ("mme", "escalation"):
        return mme_breakdown(facts) + "." if (family == "mme" or facts.mme.items) else ""
    if family == "renal":
        return f"Values: {renal_inputs(facts)}."
    if family == "hepatic" and facts.hepatic is not None:
        cp = facts.hepatic
        if cp.score is None:
            return f"Values: Child-Pugh class {cp.cls} (as recorded)."
        pts = ", ".join(f"{n} {p}" for n, p in cp.points)
        if cp.lower_bound:
            return (f"Values: Child-Pugh class at least {cp.cls}, score at least {cp.score} "
                    f"({pts}; {'; '.join(cp.assumed)}): the true class may be higher.")
        return f"Values: Child-Pugh class {cp.cls}, score {cp.score} ({pts})."
    if family == "burden":
        extra = []
        if facts.age is not None:
            extra.append(f"age {facts.age}")
        extra.append(f"{len(facts.cns_active)} CNS-active medication(s)")
        if facts.acb_items:
            extra.append(f"anticholinergic burden {facts.acb_total} ("
                         + ", ".join(f"{i} {s}" for _, i, s in facts.acb_items) + ")")
        return "Values: " + "; ".join(extra) + "."
    return ""


def values_used(f: Finding, facts: Facts, cache: dict[str, str]) -> str:
    """The patient's values of the finding's family (computed once per patient and family:
    `cache` lives as long as one patient's alerts), unless its kind states a mechanism instead."""
    if not f.rule.kind.states_patient_values:
        return ""
    text = cache.get(f.rule.family)
    if text is None:
        text = cache[f.rule.family] = _patient_values(f.rule.family, facts)
    return text


def _sentence(p: str) -> str:
    return p if p.endswith((".", ")")) else p + "."


def rule_tail(rule: Any, kind: Any) -> str:
    """What a rule's rationale always ends with: what its kind always says (an interaction's
    mechanism and management), the evidence status when not confirmed, and the sources."""
    parts = list(kind.tail(rule))
    if rule.unless:
        parts.append("It goes away when the record shows " + "; or ".join(
            f"{u.label} within {u.within_days} days" for u in rule.unless))
    if rule.evidence != "confirmed":
        parts.append(f"Evidence status: {rule.evidence} (see the pack's sources).")
    parts.append("Sources: " + "; ".join(rule.sources) + ".")
    return " ".join(_sentence(p) for p in parts)


def rationale(f: Finding, facts: Facts, cache: dict[str, str]) -> str:
    """The rule's template filled, the values used, then the rule's tail."""
    parts = [_sentence(fill(f.rule.rule.rationale.strip(), f.values))]
    if f.values.get("pair_count", 0) > 1:
        parts.append(_sentence(f"{f.values['pair_count']} pairs: {f.values['pairs']}"))
    used = values_used(f, facts, cache)
    if used:
        parts.append(_sentence(used))
    parts.append(f.rule.tail)
    return " ".join(parts)
