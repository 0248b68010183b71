"""Read back a worklist.csv or alerts.csv a pharmacist filled in (the spreadsheet round trip).

Every row is checked before anything is applied: a state that is not one of the decision
states, a reason that is not one the alert offers, a date that is not YYYY-MM-DD, an alert key
the store has never seen for the patient, or a decision taken since the file was written (its
`decision_version` is no longer the current one). Each problem names the row (its line in the
file) and the column. By default one bad row applies nothing; `partial` applies the good rows
and returns the rejects, to be written to a file with their reasons.

A row whose decision columns are empty, or equal to the decision on file, is left alone: the
file can go back and forth without adding a decision per round trip.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO

from cds.decisions.model import STATES, Decision
from cds.decisions.reasons import Responses
from cds.decisions.store import DecisionStore
from cds.errors import CdsError, InputError
from cds.vocabulary import OVERRIDE_REASON_SYSTEM, reasons_for

#: Columns an import reads; the file may have any others.
REQUIRED = ("patient_id", "alert_key", "decision")


@dataclass
class Reject:
    line: int
    column: str
    message: str
    row: dict[str, str]

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass
class ImportResult:
    applied: list[Decision] = field(default_factory=list)
    unchanged: int = 0  # rows equal to the decision on file, or with no decision
    rejects: list[Reject] = field(default_factory=list)


def import_csv(store: DecisionStore, path: Path, *, author: str, responses: Responses,
               partial: bool = False, now: datetime | None = None,
               source: IO[str] | None = None) -> ImportResult:
    """Apply the decisions of a filled-in worklist or alerts CSV (read from `source` when
    given, standard input for instance: `path` then only names it in messages)."""
    now = now or datetime.now(UTC)
    try:
        with (nullcontext(source) if source is not None
              else path.open(newline="", encoding="utf-8-sig")) as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise InputError(f"not a cds worklist or alerts file: no column "
                                 f"{', '.join(missing)}", file=str(path))
            rows = [(reader.line_num, dict(r)) for r in reader]
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e.reason})", file=str(path)) from None
    result = ImportResult()
    pending: list[tuple[int, dict[str, str], Decision, int]] = []
    queued: dict[tuple[str, str], tuple[int, Decision]] = {}
    keys = {((r.get("patient_id") or "").strip(), (r.get("alert_key") or "").strip())
            for _, r in rows}
    known = store.known_alerts(keys)
    current = store.current_for_keys(keys)
    for line, row in rows:
        if not (row.get("decision") or "").strip():
            result.unchanged += 1
            continue
        try:
            d, expected = _decision(row, line, author, now, known, responses)
        except _Bad as e:
            result.rejects.append(Reject(line, e.column, e.message, row))
            continue
        first = queued.get((d.patient_id, d.alert_key))
        if first is not None:  # two rows of one alert (two orders of one drug)
            if _same(first[1], d):
                result.unchanged += 1
            else:
                result.rejects.append(Reject(
                    line, "decision", f"the same alert is decided differently on line "
                    f"{first[0]}: one decision per alert", row))
            continue
        on_file = current.get((d.patient_id, d.alert_key))
        if on_file is not None and _same(on_file, d):
            result.unchanged += 1
            continue
        have = on_file.version if on_file else 0
        if expected != have:
            who = (f"{on_file.author} decided {on_file.state} on {on_file.decided_at:%Y-%m-%d}"
                   if on_file else "the decision was removed")
            result.rejects.append(Reject(
                line, "decision_version", f"decided since this file was written ({who}, "
                f"version {have}; the file has {expected}): export the worklist again", row))
            continue
        pending.append((line, row, d, expected))
        queued[(d.patient_id, d.alert_key)] = (line, d)
    if result.rejects and not partial:
        return result
    result.applied = store.decide_many([(d, expected) for _, _, d, expected in pending])
    return result


def import_row(store: DecisionStore, row: dict[str, str], *, author: str,
               responses: Responses, check_version: bool,
               now: datetime | None = None) -> Decision:
    """One decision given as a row's columns (`cds review decide`): the checks of an import;
    a bad value is an InputError naming the column; with `check_version`, a decision taken
    since `decision_version` is a DecisionConflict."""
    key = (row.get("patient_id", ""), row.get("alert_key", ""))
    try:
        d, expected = _decision(row, 0, author, now or datetime.now(UTC),
                                store.known_alerts([key]), responses)
    except _Bad as e:
        raise InputError(e.message, field=e.column) from None
    return store.decide(d, expected if check_version else None)


def write_rejects(path: Path, rejects: Sequence[Reject]) -> None:
    """The rejected rows with their columns and an `error` column (line, column, reason)."""
    columns: list[str] = []
    for r in rejects:
        columns += [c for c in r.row if c not in columns]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, [*columns, "error"])
        w.writeheader()
        for r in rejects:
            w.writerow({**r.row, "error": str(r)})


class _Bad(CdsError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column, self.message = column, message


def _decision(row: dict[str, str], line: int, author: str, now: datetime,
              known: dict[tuple[str, str], dict[str, str]],
              responses: Responses) -> tuple[Decision, int]:
    pid, key = (row.get("patient_id") or "").strip(), (row.get("alert_key") or "").strip()
    if not pid:
        raise _Bad("patient_id", "empty")
    if not key:
        raise _Bad("alert_key", "empty")
    alert = known.get((pid, key))
    if alert is None:
        raise _Bad("alert_key", f"{key!r} is not an alert the store has seen for patient {pid}")
    state = row["decision"].strip().lower()
    if state not in STATES:
        raise _Bad("decision", f"{state!r} is not a decision state ({', '.join(STATES)})")
    own = responses(alert["rule"])
    offered = reasons_for(alert["family"], [(c, d) for c, d, _ in own])
    reason = (row.get("reason") or "").strip()
    display = None
    if reason:
        display = dict(offered).get(reason)
        if display is None:
            raise _Bad("reason", f"{reason!r} is not a reason this alert offers "
                                 f"({', '.join(c for c, _ in offered)})")
    elif state == "overridden":
        raise _Bad("reason", "an override needs a reason (one of "
                             f"{', '.join(c for c, _ in offered)})")
    follow_up = _date(row.get("follow_up"), "follow_up")
    snooze_until = None
    if state == "snoozed":
        days = next((n for c, _, n in own if c == reason and n), None)
        snooze_until = follow_up or (now.date() + timedelta(days=days) if days else None)
        if snooze_until is None:
            raise _Bad("follow_up", "a snooze needs the date it ends (follow_up) or a snooze "
                                    "reason of the rule")
        follow_up = None
    referred_to = (row.get("referred_to") or "").strip() or None
    if state == "referred" and referred_to is None:
        referred_to = (row.get("role") or "").strip() or None
        if referred_to is None:
            raise _Bad("referred_to", "a referral needs who it is referred to")
    version_text = (row.get("decision_version") or "").strip()
    try:
        expected = int(version_text) if version_text else 0
    except ValueError:
        raise _Bad("decision_version", f"{version_text!r} is not a number") from None
    d = Decision(
        patient_id=pid, alert_key=key, state=state, author=author, decided_at=now,
        reason_system=OVERRIDE_REASON_SYSTEM if reason else None, reason_code=reason or None,
        reason_display=display, note=(row.get("note") or "").strip() or None,
        follow_up=follow_up, snooze_until=snooze_until, referred_to=referred_to,
        pack=alert["pack"], rule=alert["rule"], family=alert["family"],
        severity=row.get("severity") or alert["severity"],
        summary=row.get("summary") or alert["summary"],
        ingredients=tuple(i for i in (row.get("ingredients") or alert["ingredients"]).split("+")
                          if i),
        band=(row.get("band") or alert.get("band") or None), level=_float(alert.get("level")),
        source="csv",
        rationale=row.get("rationale") or None, actions=_parts(row.get("actions")),
        order_ids=_parts(row.get("order_ids")), prescribers=_parts(row.get("prescriber")))
    return d, expected


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _parts(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(";") if p.strip())


def _date(text: str | None, column: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Bad(column, f"{text!r} is not a date (YYYY-MM-DD)") from None


def _same(a: Decision, b: Decision) -> bool:
    """The row says what the decision on file says (a file sent back untouched)."""
    return ((a.state, a.reason_code, a.note or None, a.follow_up, a.snooze_until, a.referred_to)
            == (b.state, b.reason_code, b.note or None, b.follow_up, b.snooze_until,
                b.referred_to))
