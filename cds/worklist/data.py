"""The served worklist's data: a panel run imported into the decisions database (once per
run), the queue's filtered and paged queries, and a patient's page (their alerts from the
database, their values from the run's patients.parquet, their decisions from the store).

A page reads only what it shows: the queue is one indexed query per page plus one grouped
count per filter, whatever the size of the panel.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
from sqlalchemy import delete, func, insert, select

from cds.decisions.store import DecisionStore
from cds.errors import CdsError
from cds.worklist import tables as w
from cds.worklist.facets import QueueIndex

PAGE = 50
#: The MME bands of the queue's filter: (label, lowest, highest exclusive).
MME_BANDS = {"under-50": (0.0, 50.0), "50-90": (50.0, 90.0), "90+": (90.0, float("inf"))}


class PanelDataError(CdsError):
    """The panel output folder cannot be served (not a panel run, or run without a store)."""


@dataclass(frozen=True)
class Run:
    run_id: int
    panel_dir: Path
    as_of: date
    patients: int
    alerts: int


def load_run(store: DecisionStore, panel_dir: Path) -> Run:
    """The run of `panel_dir`, imported into the database if it is not yet."""
    info_path = panel_dir / "run.json"
    if not info_path.exists():
        raise PanelDataError(f"{panel_dir}: no run.json (give the output folder of `cds panel`)")
    info = orjson.loads(info_path.read_bytes())
    run_id = info.get("run_id")
    if run_id is None:
        raise PanelDataError(f"{panel_dir}: the run was made without a decisions store "
                             "(--db none); run `cds panel` again with --db")
    as_of = date.fromisoformat(info["as_of"])
    imported = _imported(store, run_id)
    if imported is None:
        _import(store, run_id, panel_dir, as_of)
        imported = _imported(store, run_id)
    assert imported is not None
    return Run(run_id, panel_dir, as_of, imported[0], imported[1])


def _imported(store: DecisionStore, run_id: int) -> tuple[int, int] | None:
    with store.engine.connect() as conn:
        r = conn.execute(select(w.worklist_runs.c.patients, w.worklist_runs.c.alerts).where(
            w.worklist_runs.c.run_id == run_id)).first()
    return (int(r[0]), int(r[1])) if r is not None else None


def _import(store: DecisionStore, run_id: int, panel_dir: Path, as_of: date) -> None:
    """worklist.csv and alerts.parquet into the worklist tables, in one transaction."""
    patients = 0
    alerts = 0
    with store.engine.begin() as conn:
        for table in (w.worklist_prescribers, w.worklist_alerts, w.worklist_patients):
            conn.execute(delete(table).where(table.c.run_id == run_id))
        batch: list[dict[str, Any]] = []
        for row in _worklist(panel_dir / "worklist.csv"):
            batch.append({"run_id": run_id, **row})
            patients += 1
            if len(batch) >= 5000:
                conn.execute(insert(w.worklist_patients), batch)
                batch = []
        if batch:
            conn.execute(insert(w.worklist_patients), batch)
        seen: set[tuple[str, str]] = set()
        rows, links = [], []
        for seq, a in enumerate(_alerts(panel_dir / "alerts.parquet")):
            rows.append({"run_id": run_id, "seq": seq, **a})
            for p in (a["prescriber"] or "").split("; "):
                if p and (p, a["patient_id"]) not in seen:
                    seen.add((p, a["patient_id"]))
                    links.append({"run_id": run_id, "prescriber": p,
                                  "patient_id": a["patient_id"]})
            alerts += 1
            if len(rows) >= 5000:
                conn.execute(insert(w.worklist_alerts), rows)
                rows = []
        if rows:
            conn.execute(insert(w.worklist_alerts), rows)
        for i in range(0, len(links), 5000):
            conn.execute(insert(w.worklist_prescribers), links[i:i + 5000])
        conn.execute(insert(w.worklist_runs).values(
            run_id=run_id, panel_dir=str(panel_dir), imported_at=datetime.now(UTC), as_of=as_of,
            patients=patients, alerts=alerts))


_INT = ("rank", "priority", "alerts", "acb_total", "not_assessed", "n_new", "n_changed",
        "n_open", "n_unchanged", "n_gone")


def _worklist(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            yield {**{k: int(r[k] or 0) for k in _INT},
                   "patient_id": r["patient_id"], "status": r["status"],
                   "top_severity": r["top_severity"], "mme_total": float(r["mme_total"] or 0),
                   "top_alert": r["top_alert"], "mrn": r["mrn"] or None,
                   "patient_name": r["patient_name"] or None,
                   "birth_date": r["birth_date"] or None,
                   "age": int(r["age"]) if r["age"] else None, "sex": r["sex"] or None}


_ALERT_COLUMNS = ["patient_id", "alert_key", "rule", "pack", "family", "severity", "priority",
                  "status", "changed_because", "summary", "rationale", "actions", "medications",
                  "prescriber", "role", "order_ids", "band", "level"]


def _alerts(path: Path) -> Iterator[dict[str, Any]]:
    f = pq.ParquetFile(path)
    for batch in f.iter_batches(columns=_ALERT_COLUMNS, batch_size=10_000):
        for r in batch.to_pylist():
            r["level"] = float(r["level"]) if r["level"] else None
            r["band"] = r["band"] or None
            yield r


# -- the queue --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    status: str | None = None
    severity: str | None = None
    family: str | None = None
    role: str | None = None
    prescriber: str | None = None
    mme: str | None = None  # a MME_BANDS key
    q: str | None = None  # patient id, MRN or name (prefix)

    def as_query(self, **change: str | None) -> dict[str, str]:
        values = {k: getattr(self, k) for k in ("status", "severity", "family", "role",
                                                 "prescriber", "mme", "q")}
        values.update(change)
        return {k: v for k, v in values.items() if v}


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def queue(store: DecisionStore, run: Run, index: QueueIndex, f: Filters, page: int = 1,
          only_prescriber: str | None = None) -> Page:
    """One page of the queue under the filters, and the count each filter value would give
    (with the other filters applied). `only_prescriber`: a prescriber's own patients. The
    filters and counts come from the run's in-memory index; the page's rows from the store."""
    sel = index.select(f, page, PAGE, only_prescriber)
    p = w.worklist_patients
    with store.engine.connect() as conn:
        found = {r.patient_id: dict(r._mapping) for r in conn.execute(
            select(p).where(p.c.run_id == run.run_id, p.c.patient_id.in_(sel.patient_ids)))}
    rows = [found[pid] for pid in sel.patient_ids if pid in found]
    decided = _decided_since(store, run, sel.patient_ids)
    for r in rows:
        r["decided_since_run"] = decided.get(r["patient_id"], 0)
    return Page(rows, sel.total, sel.page, sel.pages, sel.counts)


def _decided_since(store: DecisionStore, run: Run, patients: Sequence[str]) -> dict[str, int]:
    """Decisions made on each patient since the run's date (the queue shows the work done)."""
    if not patients:
        return {}
    from cds.decisions import schema as t

    d = t.decisions
    since = datetime.combine(run.as_of, datetime.min.time(), tzinfo=UTC)
    q = (select(d.c.patient_id, func.count()).where(d.c.patient_id.in_(list(patients)),
                                                    d.c.decided_at >= since)
         .group_by(d.c.patient_id))
    with store.engine.connect() as conn:
        return {str(k): int(v) for k, v in conn.execute(q).all()}


# -- a patient --------------------------------------------------------------------------------

def patient_row(store: DecisionStore, run: Run, patient_id: str) -> dict[str, Any] | None:
    p = w.worklist_patients
    with store.engine.connect() as conn:
        r = conn.execute(select(p).where(p.c.run_id == run.run_id,
                                         p.c.patient_id == patient_id)).first()
    return dict(r._mapping) if r is not None else None


def patient_alerts(store: DecisionStore, run: Run, patient_id: str) -> list[dict[str, Any]]:
    a = w.worklist_alerts
    with store.engine.connect() as conn:
        rows = conn.execute(select(a).where(a.c.run_id == run.run_id,
                                            a.c.patient_id == patient_id).order_by(a.c.seq))
        return [dict(r._mapping) for r in rows]


def is_prescriber_of(store: DecisionStore, run: Run, prescriber: str, patient_id: str) -> bool:
    x = w.worklist_prescribers
    with store.engine.connect() as conn:
        return conn.execute(select(x.c.patient_id).where(
            x.c.run_id == run.run_id, x.c.prescriber == prescriber,
            x.c.patient_id == patient_id)).first() is not None


class PatientValues:
    """Each patient's values (summary, MME, what was not assessed) from patients.parquet: the
    index of patient -> row group is read once; a page reads one row group."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = pq.ParquetFile(path) if path.exists() else None
        self.where: dict[str, tuple[int, int]] = {}
        if self.file is not None:
            for g in range(self.file.num_row_groups):
                ids = self.file.read_row_group(g, columns=["patient_id"]).column(0).to_pylist()
                for i, pid in enumerate(ids):
                    self.where[pid] = (g, i)

    def get(self, patient_id: str) -> dict[str, Any] | None:
        at = self.where.get(patient_id)
        if at is None or self.file is None:
            return None
        g, i = at
        raw = self.file.read_row_group(g, columns=["detail"]).column(0)[i].as_py()
        return dict(orjson.loads(raw))


def comments(store: DecisionStore, patient_id: str) -> list[dict[str, Any]]:
    c = w.comments
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            select(c).where(c.c.patient_id == patient_id).order_by(c.c.at, c.c.id))]


def add_comment(store: DecisionStore, patient_id: str, alert_key: str, author: str,
                text: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(w.comments).values(patient_id=patient_id, alert_key=alert_key,
                                               author=author, at=datetime.now(UTC), text=text))
