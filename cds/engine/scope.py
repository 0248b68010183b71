"""Who a pack addresses (its `scope:`), decided once per patient: out of scope, none of the
pack's rules fire and the result says why, naming the record that excluded the patient."""

from __future__ import annotations

from datetime import timedelta

from cds.knowledge.facts import Facts
from cds.knowledge.records import Found, conditions_in, events_in
from cds.knowledge.store import Knowledge
from cds.rules.models import RecordRequirement, Scope, ScopeExclusion


def out_of_scope(scope: Scope, facts: Facts, kb: Knowledge) -> str | None:
    """Why the patient is outside the scope, in words, or None when inside. An unknown age is
    inside (a rule that never fires on missing data would be silent)."""
    if scope.min_age is not None and facts.age is not None and facts.age < scope.min_age:
        return f"age {facts.age}: the guideline addresses adults {scope.min_age} and over"
    for ex in scope.exclusions:
        found = excluded_by(ex, facts, kb)
        if found is not None:
            when = f" ({found.date.isoformat()})" if found.date else ""
            return f"{ex.label}: {found.kind} {found.label}{when}"
    if scope.setting == "outpatient":
        opioids = facts.opioid_meds
        if opioids and all(m.category == "inpatient" for m in opioids):
            return ("inpatient opioid orders only (MedicationRequest.category inpatient): the "
                    "guideline addresses outpatients")
    return None


def excluded_by(ex: ScopeExclusion, facts: Facts, kb: Knowledge) -> Found | None:
    if ex.conditions:
        hits = conditions_in(kb, facts.condition_records, ex.conditions,
                             any_status=ex.any_status, problem_list_only=ex.problem_list_only)
        if hits:
            return hits[0][1]
        if ex.encounters is not None:
            found = _encounters(ex, facts, kb)
            if found is not None:
                return found
    for req in ex.records:
        found = record(req, facts, kb)
        if found is not None:
            return found
    return None


def _encounters(ex: ScopeExclusion, facts: Facts, kb: Knowledge) -> Found | None:
    """`ex.encounters` or more encounters within the window with an encounter diagnosis in the
    exclusion's value sets (active cancer treated in the past 12 months)."""
    since = facts.as_of - timedelta(days=ex.encounter_days)
    dates = {e.id: e.date for e in facts.events if e.kind == "encounter" and e.id}
    seen: dict[str, Found] = {}
    for c, found in conditions_in(kb, facts.condition_records, ex.conditions, any_status=True):
        if c.category != "encounter-diagnosis" or not c.encounter:
            continue
        when = dates.get(c.encounter.rsplit("/", 1)[-1]) or c.recorded or c.onset
        if when is not None and since <= when <= facts.as_of:
            seen.setdefault(c.encounter, Found("encounters", found.label, when, found.coding))
    if len(seen) >= (ex.encounters or 0):
        latest = max(seen.values(), key=lambda f: f.date or facts.as_of)
        return Found(f"{len(seen)} encounters with the diagnosis", latest.label, latest.date,
                     latest.coding)
    return None


def record(req: RecordRequirement, facts: Facts, kb: Knowledge) -> Found | None:
    """The first record meeting the requirement, or None."""
    since = facts.as_of - timedelta(days=req.within_days)
    if "condition" in req.kinds:
        hits = conditions_in(kb, facts.condition_records, req.value_sets, since=since)
        if hits:
            return hits[0][1]
    found = events_in(kb, facts.events, req.value_sets, req.kinds, since=since,
                      until=facts.as_of)
    return found[0] if found else None


def unresolved(reqs: list[RecordRequirement], facts: Facts, kb: Knowledge) -> bool:
    """True when no record resolves the finding and every record kind could be looked at;
    a kind the caller could not provide means the rule cannot be checked: not fired."""
    for req in reqs:
        if record(req, facts, kb) is not None:
            return False
        if facts.unavailable.intersection(req.kinds):
            return False
    return True
