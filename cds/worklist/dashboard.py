"""The program dashboard: the process and outcome measures a pharmacist-prescriber
collaborative-care program tracks, computed from the decisions store and the served run.

Each measure is a small table (what a chart draws, and what a screen reader or a spreadsheet
reads); charts are SVG drawn here with the stylesheet's classes (no inline styles: the
Content-Security-Policy forbids them).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

from markupsafe import Markup
from sqlalchemy import func, select

from cds.decisions import schema as t
from cds.decisions.store import DecisionStore
from cds.worklist import tables as w
from cds.worklist.data import Run

ACCEPTED = ("accepted", "acted")
WEEKS = 12


@dataclass
class Measure:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    chart: Markup
    note: str = ""


def measures(store: DecisionStore, run: Run, today: date) -> list[Measure]:
    with store.engine.connect() as conn:
        decisions = [dict(r._mapping) for r in conn.execute(
            select(t.decisions.c.patient_id, t.decisions.c.alert_key, t.decisions.c.version,
                   t.decisions.c.state, t.decisions.c.reason_code, t.decisions.c.rule,
                   t.decisions.c.pack, t.decisions.c.decided_at))]
        first_seen = {(r[0], r[1]): r[2] for r in conn.execute(
            select(t.sightings.c.patient_id, t.sightings.c.alert_key, func.min(t.runs.c.as_of))
            .join(t.runs, t.runs.c.id == t.sightings.c.run_id)
            .group_by(t.sightings.c.patient_id, t.sightings.c.alert_key))}
        runs = [dict(r._mapping) for r in conn.execute(
            select(t.runs.c.id, t.runs.c.as_of, t.runs.c.patients, t.runs.c.mme_50,
                   t.runs.c.mme_90, t.runs.c.naloxone_missing).order_by(t.runs.c.id))]
        per_patient = [int(r[0]) for r in conn.execute(
            select(w.worklist_patients.c.alerts).where(w.worklist_patients.c.run_id == run.run_id))]
    current: dict[tuple[str, str], dict[str, Any]] = {}
    for d in decisions:
        k = (d["patient_id"], d["alert_key"])
        if k not in current or d["version"] > current[k]["version"]:
            current[k] = d
    return [_reviewed_per_week(decisions, today), _time_to_decision(decisions, first_seen),
            _rates(current.values(), "rule"), _rates(current.values(), "pack"),
            _override_reasons(current.values()), _alerts_per_patient(per_patient),
            _mme_trend(runs), _naloxone(runs)]


def _week(d: datetime) -> date:
    day = d.date()
    return day - timedelta(days=day.weekday())


def _reviewed_per_week(decisions: list[dict[str, Any]], today: date) -> Measure:
    start = today - timedelta(days=today.weekday()) - timedelta(weeks=WEEKS - 1)
    weeks = [start + timedelta(weeks=i) for i in range(WEEKS)]
    seen: dict[date, set[str]] = {wk: set() for wk in weeks}
    for d in decisions:
        wk = _week(_utc(d["decided_at"]))
        if wk in seen:
            seen[wk].add(d["patient_id"])
    rows = [(wk.isoformat(), len(seen[wk])) for wk in weeks]
    return Measure("Patients reviewed per week", ("week of", "patients with a decision"), rows,
                   bars(rows), "A patient counts once a week, whatever the number of decisions.")


def _time_to_decision(decisions: list[dict[str, Any]],
                      first_seen: dict[tuple[str, str], date]) -> Measure:
    days_by_month: dict[str, list[float]] = {}
    for d in decisions:
        if d["version"] != 1:
            continue
        seen = first_seen.get((d["patient_id"], d["alert_key"]))
        if seen is None:
            continue
        decided = _utc(d["decided_at"])
        days = max(0.0, (decided.date() - seen).days)
        days_by_month.setdefault(decided.strftime("%Y-%m"), []).append(days)
    rows = [(m, len(v), round(statistics.median(v), 1), round(_p90(v), 1))
            for m, v in sorted(days_by_month.items())]
    return Measure("Time from alert to first decision (days)",
                   ("month decided", "decisions", "median", "90th percentile"), rows,
                   bars([(m, med) for m, _, med, _ in rows]),
                   "From the date of the first panel run that showed the alert to the first "
                   "decision on it.")


def _p90(v: list[float]) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def _rates(current: Any, by: str) -> Measure:
    counts: dict[str, Counter[str]] = {}
    for d in current:
        key = (d[by] or "(not recorded)") if by == "rule" else (d["pack"] or "(not recorded)")
        if by == "pack":
            key = key.partition("@")[0]
        counts.setdefault(key, Counter())[d["state"]] += 1
    rows = []
    for key, c in counts.items():
        decided = sum(n for s, n in c.items() if s != "open")
        if not decided:
            continue
        acc = sum(c[s] for s in ACCEPTED)
        rows.append((key, decided, acc, c["overridden"], round(acc / decided, 3),
                     round(c["overridden"] / decided, 3)))
    rows.sort(key=lambda r: (-r[1], r[0]))
    title = "Acceptance and override per rule" if by == "rule" else "Acceptance and override per pack"
    return Measure(title, (by, "decided", "accepted or acted", "overridden", "acceptance rate",
                           "override rate"), rows[:40],
                   bars([(r[0], r[5]) for r in rows[:15]], fmt="{:.0%}", kind="warn"),
                   "Current decisions. A rule overridden most of the time is a candidate for "
                   "review by its authors (alert burden).")


def _override_reasons(current: Any) -> Measure:
    c = Counter((d["reason_code"] or "(no reason)") for d in current if d["state"] == "overridden")
    rows = c.most_common()
    return Measure("Override reasons", ("reason", "overrides"), rows, bars(rows))


def _alerts_per_patient(per_patient: list[int]) -> Measure:
    c = Counter(min(n, 10) for n in per_patient)
    rows = [(("10+" if n == 10 else str(n)), c.get(n, 0)) for n in range(11)]
    return Measure("Alerts per patient (this run)", ("alerts", "patients"), rows, bars(rows))


def _mme_trend(runs: list[dict[str, Any]]) -> Measure:
    rows = [(r["as_of"].isoformat() if r["as_of"] else str(r["id"]), r["patients"],
             r["mme_50"], r["mme_90"]) for r in runs if r["patients"] is not None]
    return Measure("Patients at >= 50 and >= 90 MME/day, run after run",
                   ("run of", "patients", ">= 50 MME/day", ">= 90 MME/day"), rows,
                   bars([(d, m50) for d, _, m50, _ in rows], kind="warn"))


def _naloxone(runs: list[dict[str, Any]]) -> Measure:
    rows = []
    for r in runs:
        if r["mme_50"] is None or r["naloxone_missing"] is None:
            continue
        at_risk = r["mme_50"]
        covered = max(0, at_risk - r["naloxone_missing"])
        rows.append((r["as_of"].isoformat(), at_risk, covered,
                     round(covered / at_risk, 3) if at_risk else None))
    return Measure("Naloxone coverage among patients at >= 50 MME/day",
                   ("run of", "at risk", "with naloxone on file", "coverage"), rows,
                   bars([(d, c or 0.0) for d, _, _, c in rows], fmt="{:.0%}"),
                   "At risk: at or above 50 MME/day. Without naloxone: the run's "
                   "naloxone-not-on-file alerts (which also count other risks, so coverage is "
                   "a lower bound).")


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def bars(rows: list[tuple[Any, ...]], *, fmt: str = "{:,.0f}", kind: str = "") -> Markup:
    """Horizontal bars of (label, value) rows, as SVG."""
    items = [(str(r[0]), float(r[1] or 0)) for r in rows]
    if not items:
        return Markup('<p class="muted">No data yet.</p>')
    top = max(v for _, v in items) or 1.0
    row, label_w, width = 20, 220, 560
    h = row * len(items) + 6
    parts = [f'<svg viewBox="0 0 {width} {h}" role="img" aria-label="bar chart">']
    for i, (label, v) in enumerate(items):
        y = i * row + 3
        bw = max(1.0, (width - label_w - 70) * v / top)
        parts.append(f'<text class="tick" x="{label_w - 6}" y="{y + 13}" text-anchor="end">'
                     f'{escape(label if len(label) <= 34 else label[:33] + "…")}</text>')
        parts.append(f'<rect class="bar {kind}" x="{label_w}" y="{y}" width="{bw:.1f}" '
                     f'height="{row - 6}"></rect>')
        parts.append(f'<text class="tick" x="{label_w + bw + 4:.1f}" y="{y + 13}">'
                     f'{escape(fmt.format(v))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
