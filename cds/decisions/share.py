"""What leaves the store for other people and systems: the letters to prescribers (from the
decisions to share) and the FHIR export (every patient's alerts as of their latest review,
with the decisions on them)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from cds.decisions.fhir import detected_issue, task, write_ndjson
from cds.decisions.letters import SHARED_STATES, LetterItem, PatientRef
from cds.decisions.model import Decision, Sighting
from cds.decisions.store import DecisionStore


def letter_items(store: DecisionStore) -> list[LetterItem]:
    """One item per prescriber of each current decision to share (accepted recommendations,
    referrals); a decision with no prescriber on file goes to the "not recorded" letter."""
    current = [d for d in store.current_for().values() if d.state in SHARED_STATES]
    people = store.patients({d.patient_id for d in current})
    items = []
    for d in current:
        p = people.get(d.patient_id)
        ref = PatientRef(d.patient_id, p.mrn if p else None, p.name if p else None,
                         p.birth_date if p else None)
        for prescriber in d.prescribers or (None,):
            items.append(LetterItem(prescriber, ref, _sighting(d), d))
    return items


def export_fhir(store: DecisionStore, folder: Path, *, as_of: date) -> tuple[int, int]:
    """DetectedIssue.ndjson (each alert of each patient's latest review, with its decision
    history as mitigations) and Task.ndjson (each current referral)."""
    history: dict[tuple[str, str], list[Decision]] = {}
    for d in store.history():
        history.setdefault((d.patient_id, d.alert_key), []).append(d)
    issues, tasks = [], []
    for _pid, prior in store.prior():
        for s in prior.sightings:
            decisions = history.get((s.patient_id, s.alert_key), [])
            issues.append(detected_issue(s, decisions, as_of=as_of))
            if decisions and decisions[-1].state == "referred":
                tasks.append(task(s, decisions[-1]))
    folder.mkdir(parents=True, exist_ok=True)
    return (write_ndjson(folder / "DetectedIssue.ndjson", issues),
            write_ndjson(folder / "Task.ndjson", tasks))


def _sighting(d: Decision) -> Sighting:
    """The alert as the decision was made on it."""
    return Sighting(d.patient_id, d.alert_key, d.rule or d.alert_key, d.pack or "",
                    d.family or "", d.severity or "info", d.summary or d.alert_key,
                    d.ingredients, d.band, d.level, rationale=d.rationale or "",
                    actions=d.actions, order_ids=d.order_ids, prescribers=d.prescribers)
