"""Looking up a patient's records against value sets: conditions (problem list, encounter
diagnoses) and dated events (procedures, coded observations, encounters, care plans, service
requests). The guideline rules and the packs' scopes ask these questions; the answers carry
the record found, so an alert can name it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from cds.knowledge.store import Knowledge
from cds.patient import Coding, Condition, Event


@dataclass(frozen=True, slots=True)
class Found:
    """A record that matched: what it is, in words, and its date."""

    kind: str  # condition | procedure | observation | encounter | care-plan | service-request
    label: str
    date: date | None
    coding: Coding | None


def _codings(c: Condition) -> list[Coding]:
    if c.codes:
        return list(c.codes)
    return [Coding(system=c.system, code=c.code)] if c.code else []


def conditions_in(kb: Knowledge, conditions: Iterable[Condition], value_sets: Iterable[str], *,
                  any_status: bool = False, since: date | None = None,
                  problem_list_only: bool = False) -> list[tuple[Condition, Found]]:
    """Conditions with a code in any of the value sets: active ones (or any status), recorded
    or begun on or after `since` when given (an undated one counts as current)."""
    sets = [kb.value_sets[v] for v in value_sets]
    out = []
    for c in conditions:
        if not any_status and c.status != "active":
            continue
        if problem_list_only and c.category not in (None, "problem-list-item"):
            continue
        when = c.recorded or c.onset
        if since is not None and when is not None and when < since:
            continue
        for vs in sets:
            hit = vs.any_of(_codings(c))
            if hit is not None:
                out.append((c, Found("condition", c.text or f"{hit.system}|{hit.code}", when,
                                     hit)))
                break
    return out


def events_in(kb: Knowledge, events: Iterable[Event], value_sets: Iterable[str],
              kinds: Iterable[str], *, since: date | None = None,
              until: date | None = None) -> list[Found]:
    """Events of the kinds with a code (or an encounter's disposition, a care plan's category)
    in any of the value sets, dated within [since, until] (undated events count as current)."""
    sets = [kb.value_sets[v] for v in value_sets]
    wanted = set(kinds)
    out = []
    for e in events:
        if e.kind not in wanted:
            continue
        if e.date is not None and ((since is not None and e.date < since)
                                   or (until is not None and e.date > until)):
            continue
        for vs in sets:
            hit = vs.any_of([*e.codes, *e.qualifiers])
            if hit is not None:
                label = hit.display or f"{hit.system}|{hit.code}"
                out.append(Found(e.kind, label, e.date, hit))
                break
    return out
