"""`cds panel --fhir`: the run's alerts as FHIR R4 DetectedIssue resources (each with the
decisions on it as mitigations, its run status in an extension) and each current referral as
a Task, written as Bulk Data NDJSON beside the CSVs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from cds.decisions.carry import lineage
from cds.decisions.fhir import detected_issue, task, write_ndjson
from cds.decisions.model import Decision, Sighting
from cds.decisions.store import DecisionStore

_COLUMNS = ["patient_id", "alert_key", "rule", "pack", "family", "severity", "summary",
            "rationale", "ingredients", "band", "level", "status", "actions", "order_ids",
            "prescriber", "role"]


def write_fhir(dirs: list[Path], store: DecisionStore | None, out: Path,
               as_of: date) -> tuple[int, int]:
    """Write OUT/DetectedIssue.ndjson and OUT/Task.ndjson; returns how many of each."""
    history: dict[tuple[str, str], list[Decision]] = {}
    for d in store.history() if store is not None else ():
        history.setdefault((d.patient_id, d.alert_key), []).append(d)
    issues, tasks, seen = [], [], set()
    for folder in dirs:
        table = pq.read_table(folder / "alerts.parquet", columns=_COLUMNS)
        for row in table.to_pylist():
            key = (row["patient_id"], row["alert_key"])
            if key in seen:  # two orders of one drug: one alert key, one issue
                continue
            seen.add(key)
            s = Sighting(
                row["patient_id"], row["alert_key"], row["rule"], row["pack"], row["family"],
                row["severity"], row["summary"], _split(row["ingredients"], "+"),
                row["band"] or None, float(row["level"]) if row["level"] else None,
                lineage(row["pack"], row["family"], row["alert_key"]), row["rationale"] or "",
                _split(row["actions"], "; "), _split(row["order_ids"], "; "),
                _split(row["prescriber"], "; "), row["role"] or "pharmacist")
            decisions = history.get(key, [])
            issues.append(detected_issue(s, decisions, as_of=as_of, status=row["status"]))
            if decisions and decisions[-1].state == "referred" and row["status"] != "gone":
                tasks.append(task(s, decisions[-1]))
    return (write_ndjson(out / "DetectedIssue.ndjson", issues),
            write_ndjson(out / "Task.ndjson", tasks))


def _split(text: str | None, sep: str) -> tuple[str, ...]:
    return tuple(p for p in (text or "").split(sep) if p)
