"""The decisions store: SQLite by default, PostgreSQL by URL, through SQLAlchemy 2, its schema
kept by Alembic migrations (applied when the store opens, so an upgrade of cds never loses a
decision).

Decisions are append-only: `decide` inserts the next version of an alert's decision, and the
unique (patient, alert key, version) makes the second of two concurrent decisions on the same
version fail: it gets a DecisionConflict naming who decided first, never a lost update. A
panel run's sightings are written in one transaction with the run, so a crash leaves the store
as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from cds.decisions import schema as t
from cds.decisions.model import STATES, Decision, Sighting
from cds.errors import CdsError

MIGRATIONS = Path(__file__).parent / "migrations"
#: The environment variable naming the store when no --db is given.
ENV = "CDS_DB"


class StoreError(CdsError):
    """The store cannot be opened or used (a bad URL, a server that refuses, a disk)."""


class DecisionConflict(CdsError):
    """A decision was made on a version of the alert's decision that is no longer the
    current one: someone decided in between."""

    def __init__(self, patient_id: str, alert_key: str, expected: int,
                 current: Decision | None) -> None:
        self.patient_id, self.alert_key, self.expected, self.current = (
            patient_id, alert_key, expected, current)
        who = (f"{current.author} decided {current.state} at {current.decided_at:%Y-%m-%d %H:%M} "
               f"UTC (version {current.version})" if current else "the decision changed")
        super().__init__(f"patient {patient_id}, alert {alert_key}: {who} since version "
                         f"{expected} was read; read it again and decide on the current version")


def database_url(db: str | Path) -> str:
    """A --db value -> an SQLAlchemy URL: a path is an SQLite file; postgresql:// URLs use the
    psycopg 3 driver."""
    text = str(db)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    creds, _, host = tail.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}"


def default_db(out_dir: Path | None = None) -> str | None:
    """--db when not given: $CDS_DB, else (for a panel run) OUT/decisions.sqlite3."""
    env = os.environ.get(ENV)
    if env:
        return env
    return str(out_dir / "decisions.sqlite3") if out_dir is not None else None


@dataclass(frozen=True, slots=True)
class PatientRow:
    """A patient a run reviewed, with what a person needs to find the chart."""

    patient_id: str
    mrn: str | None = None
    name: str | None = None
    birth_date: date | None = None


@dataclass(frozen=True, slots=True)
class Prior:
    """What the store knows of one patient before a run: the alerts of their latest review,
    and the current decision on each alert key."""

    sightings: tuple[Sighting, ...]
    decisions: dict[str, Decision]


class DecisionStore:
    def __init__(self, db: str | Path) -> None:
        self.url = database_url(db)
        if self.url.startswith("sqlite:///") and not self.url.endswith(":memory:"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(self.url, future=True, pool_pre_ping=True)
        except Exception as e:  # noqa: BLE001 - any bad URL is one message
            raise StoreError(f"--db {redact(self.url)}: {e}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self.upgrade()
        except (OperationalError, ProgrammingError) as e:
            raise StoreError(f"--db {redact(self.url)}: cannot open the decisions store "
                             f"({e.orig or e})") from None

    def upgrade(self) -> None:
        """Apply the migrations the database has not had (none on an up-to-date store)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> DecisionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions ------------------------------------------------------------------------
    def decide(self, d: Decision, expected_version: int | None = None) -> Decision:
        """Record `d` as the next version of its alert's decision. `expected_version` is the
        version the author saw (0: none yet); None appends after whatever is current."""
        return self.decide_many([(d, expected_version)])[0]

    def decide_many(self, items: Sequence[tuple[Decision, int | None]]) -> list[Decision]:
        """Record several decisions in one transaction: all of them, or (on a conflict)
        none. Two decisions on one alert in `items` are applied in order."""
        if not items:
            return []
        for d, _ in items:
            if d.state not in STATES:
                raise CdsError(f"decision state {d.state!r} is not one of {', '.join(STATES)}")
        keys = {(d.patient_id, d.alert_key) for d, _ in items}
        versions_read: dict[tuple[str, str], int] = {}
        try:
            with self.engine.begin() as conn:
                versions = _versions(conn, keys)
                versions_read.update(versions)
                rows, out = [], []
                for d, expected in items:
                    k = (d.patient_id, d.alert_key)
                    current = versions.get(k, 0)
                    if expected is not None and expected != current:
                        raise DecisionConflict(d.patient_id, d.alert_key, expected,
                                               _current(conn, *k))
                    versions[k] = current + 1
                    rec = _with_version(d, current + 1)
                    rows.append(_row(rec))
                    out.append(rec)
                conn.execute(insert(t.decisions), rows)
        except IntegrityError:  # a concurrent writer took one of the versions first
            with self.engine.connect() as conn:
                moved = _versions(conn, keys)
                for d, seen in items:  # the first item whose alert another writer decided
                    if moved.get((d.patient_id, d.alert_key), 0) != versions_read.get(
                            (d.patient_id, d.alert_key), 0):
                        raise DecisionConflict(d.patient_id, d.alert_key,
                                               seen if seen is not None else 0,
                                               _current(conn, d.patient_id, d.alert_key)
                                               ) from None
                first, seen = items[0]
                raise DecisionConflict(first.patient_id, first.alert_key,
                                       seen if seen is not None else 0,
                                       _current(conn, first.patient_id, first.alert_key)
                                       ) from None
        return out

    def current(self, patient_id: str, alert_key: str) -> Decision | None:
        with self.engine.connect() as conn:
            return _current(conn, patient_id, alert_key)

    def current_for(self, patient_id: str | None = None) -> dict[tuple[str, str], Decision]:
        """The current decision on every alert (of one patient, or of all)."""
        latest = select(t.decisions.c.patient_id, t.decisions.c.alert_key,
                        func.max(t.decisions.c.version).label("v")).group_by(
            t.decisions.c.patient_id, t.decisions.c.alert_key)
        if patient_id is not None:
            latest = latest.where(t.decisions.c.patient_id == patient_id)
        m = latest.subquery()
        q = select(t.decisions).join(m, and_(
            t.decisions.c.patient_id == m.c.patient_id, t.decisions.c.alert_key == m.c.alert_key,
            t.decisions.c.version == m.c.v))
        with self.engine.connect() as conn:
            return {(d.patient_id, d.alert_key): d for d in map(_decision, conn.execute(q))}

    def current_for_keys(self, keys: Iterable[tuple[str, str]]
                         ) -> dict[tuple[str, str], Decision]:
        """The current decision on each (patient, alert key) that has one."""
        wanted = set(keys)
        out: dict[tuple[str, str], Decision] = {}
        c = t.decisions.c
        patients = sorted({p for p, _ in wanted})
        with self.engine.connect() as conn:
            for i in range(0, len(patients), 500):
                q = select(t.decisions).where(c.patient_id.in_(patients[i:i + 500]))
                for r in conn.execute(q):
                    k = (r.patient_id, r.alert_key)
                    if k in wanted and (k not in out or r.version > out[k].version):
                        out[k] = _decision(r)
        return out

    def known_alerts(self, keys: Iterable[tuple[str, str]]
                     ) -> dict[tuple[str, str], dict[str, str]]:
        """What the store knows of each (patient, alert key) a run or a card showed: its
        rule, pack, family, severity, summary, ingredients, band and level, as last seen (a
        run's sighting dated by the run's start, a card by when it was issued)."""
        wanted = set(keys)
        found: dict[tuple[str, str], tuple[datetime, dict[str, str]]] = {}
        patients = sorted({p for p, _ in wanted})
        cols = ("rule", "pack", "family", "severity", "summary", "ingredients", "band", "level")
        s, c = t.sightings, t.card_links
        with self.engine.connect() as conn:
            for i in range(0, len(patients), 500):
                chunk = patients[i:i + 500]
                queries = (
                    select(c.c.patient_id, c.c.alert_key, c.c.issued_at.label("at"),
                           *(c.c[k] for k in cols)).where(c.c.patient_id.in_(chunk)),
                    select(s.c.patient_id, s.c.alert_key, t.runs.c.started_at.label("at"),
                           *(s.c[k] for k in cols))
                    .join(t.runs, t.runs.c.id == s.c.run_id).where(s.c.patient_id.in_(chunk)))
                for q in queries:
                    for r in conn.execute(q):
                        k = (r.patient_id, r.alert_key)
                        at = _utc(r.at)
                        if k in wanted and (k not in found or at >= found[k][0]):
                            found[k] = (at, {x: "" if getattr(r, x) is None else str(getattr(r, x))
                                             for x in cols})
        return {k: v for k, (_, v) in found.items()}

    def history(self, patient_id: str | None = None, alert_key: str | None = None,
                since: datetime | None = None) -> list[Decision]:
        """Who decided what and when: every row, oldest first (the audit trail)."""
        q = select(t.decisions).order_by(t.decisions.c.decided_at, t.decisions.c.id)
        if patient_id is not None:
            q = q.where(t.decisions.c.patient_id == patient_id)
        if alert_key is not None:
            q = q.where(t.decisions.c.alert_key == alert_key)
        if since is not None:
            q = q.where(t.decisions.c.decided_at >= since)
        with self.engine.connect() as conn:
            return [_decision(r) for r in conn.execute(q)]

    # -- panel runs -----------------------------------------------------------------------
    def prior(self) -> Iterator[tuple[str, Prior]]:
        """(patient id, Prior) for every patient the store knows: the sightings of their
        latest review and their current decisions."""
        for pid, rows, decided in self.prior_rows():
            yield pid, Prior(tuple(sighting_of_row(pid, r) for r in rows), decided)

    def prior_rows(self) -> Iterator[tuple[str, list[tuple[Any, ...]], dict[str, Decision]]]:
        """prior() with each sighting as a plain row (SIGHTING_ROW order): a panel run passes
        them to its workers as they are, and building 369,000 objects in the one main
        process was most of a 100,000-patient run's read of the store."""
        seen: dict[str, list[tuple[Any, ...]]] = {}
        s, rv = t.sightings, t.reviewed
        cols = [s.c[k] for k in ("patient_id", *SIGHTING_ROW)]
        with self.engine.connect() as conn:
            # run by run, so each reads its own sightings by the key's prefix (run_id): one
            # join over the whole table would scan every run's sightings, a cost that grows
            # with each month of history
            runs = [r[0] for r in conn.execute(select(rv.c.run_id).distinct())]
            for run_id in sorted(runs):
                q = select(*cols).join(rv, and_(s.c.patient_id == rv.c.patient_id,
                                                rv.c.run_id == run_id)).where(s.c.run_id == run_id)
                for r in conn.execute(q):
                    seen.setdefault(r[0], []).append(tuple(r[1:]))
        decided: dict[str, dict[str, Decision]] = {}
        for (pid, key), d in self.current_for().items():
            decided.setdefault(pid, {})[key] = d
        for pid in sorted(seen.keys() | decided.keys()):
            yield pid, seen.get(pid, []), decided.get(pid, {})

    def record_run(self, *, as_of: date, packs: Sequence[str], source: str | None,
                   sightings: Iterable[Sequence[Any]], patients: Iterable[PatientRow],
                   statuses: dict[str, int], counts: dict[str, int] | None = None,
                   totals: Callable[[], tuple[dict[str, int], dict[str, int]]] | None = None
                   ) -> int:
        """Store a panel run: its sightings (RUN_SIGHTING_ROW rows, see sighting_row(); the
        first of two with one patient and alert key is kept: two orders of one drug are one
        alert), the program's `counts` (patients, mme_50, mme_90, naloxone_missing) and, for
        every patient it reviewed, that this is now their latest review. One transaction;
        returns the run id.

        `totals`: (statuses, counts) known only later (a panel writes its sightings while it
        merges its report); called before the commit, and an exception from it rolls the
        whole run back."""
        with self.engine.begin() as conn:
            run_id = int(conn.execute(insert(t.runs).values(
                kind="panel", started_at=datetime.now(UTC), as_of=as_of,
                packs=json.dumps(list(packs)), source=source, alerts=sum(statuses.values()),
                statuses=json.dumps(statuses), **_run_counts(counts or {})
            )).inserted_primary_key[0])  # type: ignore[index]
            _insert_rows(conn, t.sightings, RUN_SIGHTING_ROW, sightings, run_id=run_id,
                         on_conflict="(run_id, patient_id, alert_key) DO NOTHING")
            _insert_rows(conn, t.reviewed, ("patient_id", "mrn", "name", "birth_date"),
                         ((p.patient_id, p.mrn, p.name,
                           p.birth_date.isoformat() if p.birth_date else None)
                          for p in patients), run_id=run_id,
                         on_conflict="(patient_id) DO UPDATE SET run_id = excluded.run_id, "
                                     "mrn = excluded.mrn, name = excluded.name, "
                                     "birth_date = excluded.birth_date")
            if totals is not None:
                statuses, counts = totals()
                conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(
                    alerts=sum(statuses.values()), statuses=json.dumps(statuses),
                    **_run_counts(counts)))
        return run_id

    def patients(self, ids: Iterable[str] | None = None) -> dict[str, PatientRow]:
        """The patients' chart identifiers as of their latest review."""
        q = select(t.reviewed)
        wanted = set(ids) if ids is not None else None
        with self.engine.connect() as conn:
            return {r.patient_id: PatientRow(r.patient_id, r.mrn, r.name, r.birth_date)
                    for r in conn.execute(q) if wanted is None or r.patient_id in wanted}

    def runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(t.runs).order_by(t.runs.c.id))]

    # -- CDS Hooks cards ------------------------------------------------------------------
    def link_cards(self, links: Sequence[tuple[str, Sighting]]) -> None:
        """Remember which patient and alert each card uuid was about (feedback names the card
        only). A uuid already linked keeps its first link."""
        if not links:
            return
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            known = set(conn.execute(select(t.card_links.c.uuid).where(
                t.card_links.c.uuid.in_([u for u, _ in links]))).scalars())
            rows = []
            for u, s in links:  # the first link of a uuid wins, in this call as across calls
                if u in known:
                    continue
                known.add(u)
                rows.append({"uuid": u, "patient_id": s.patient_id, "alert_key": s.alert_key,
                             "rule": s.rule, "pack": s.pack, "family": s.family,
                             "severity": s.severity, "summary": s.summary,
                             "ingredients": "+".join(s.ingredients), "band": s.band,
                             "level": s.level, "issued_at": now})
            if rows:
                conn.execute(insert(t.card_links), rows)

    def card(self, uuid: str) -> Sighting | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.card_links).where(t.card_links.c.uuid == uuid)).first()
        if r is None:
            return None
        return Sighting(r.patient_id, r.alert_key, r.rule, r.pack, r.family, r.severity,
                        r.summary, _split(r.ingredients), r.band, r.level)


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _versions(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The current version of each (patient, alert key) that has one: a query per 500
    patients, not per decision (an import of 10,000 decisions)."""
    out: dict[tuple[str, str], int] = {}
    patients = sorted({pid for pid, _ in keys})
    c = t.decisions.c
    for i in range(0, len(patients), 500):
        q = select(c.patient_id, c.alert_key, func.max(c.version)).where(
            c.patient_id.in_(patients[i:i + 500])).group_by(c.patient_id, c.alert_key)
        for pid, key, v in conn.execute(q):
            if (pid, key) in keys:
                out[(pid, key)] = int(v)
    return out


def _current(conn: Connection, patient_id: str, alert_key: str) -> Decision | None:
    c = t.decisions.c
    r = conn.execute(select(t.decisions).where(c.patient_id == patient_id,
                                               c.alert_key == alert_key)
                     .order_by(c.version.desc()).limit(1)).first()
    return _decision(r) if r is not None else None


def _with_version(d: Decision, version: int) -> Decision:
    return replace(d, version=version, decided_at=_utc(d.decided_at))


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _row(d: Decision) -> dict[str, Any]:
    return {"patient_id": d.patient_id, "alert_key": d.alert_key, "version": d.version,
            "state": d.state, "reason_system": d.reason_system, "reason_code": d.reason_code,
            "reason_display": d.reason_display, "note": d.note, "follow_up": d.follow_up,
            "snooze_until": d.snooze_until, "referred_to": d.referred_to, "author": d.author,
            "decided_at": d.decided_at, "pack": d.pack, "rule": d.rule, "family": d.family,
            "severity": d.severity,
            "summary": d.summary, "ingredients": "+".join(d.ingredients), "band": d.band,
            "level": d.level, "source": d.source, "rationale": d.rationale, "actions": "\n".join(d.actions),
            "order_ids": "\n".join(d.order_ids), "prescribers": "\n".join(d.prescribers)}


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(text.split("+")) if text else ()


def _decision(r: Any) -> Decision:
    return Decision(
        patient_id=r.patient_id, alert_key=r.alert_key, state=r.state, author=r.author,
        decided_at=_utc(r.decided_at), version=r.version, reason_system=r.reason_system,
        reason_code=r.reason_code, reason_display=r.reason_display, note=r.note,
        follow_up=r.follow_up, snooze_until=r.snooze_until, referred_to=r.referred_to,
        pack=r.pack, rule=r.rule, family=r.family, severity=r.severity, summary=r.summary,
        ingredients=_split(r.ingredients), band=r.band, level=r.level, source=r.source,
        rationale=r.rationale,
        actions=_lines(r.actions), order_ids=_lines(r.order_ids),
        prescribers=_lines(r.prescribers))


def _run_counts(counts: dict[str, int]) -> dict[str, int]:
    """The program counts a run row keeps."""
    return {k: v for k, v in counts.items()
            if k in ("patients", "mme_50", "mme_90", "naloxone_missing")}


def _insert_rows(conn: Connection, table: Any, columns: Sequence[str],
                 rows: Iterable[Sequence[Any]], *, run_id: int, on_conflict: str) -> None:
    """Rows as tuples through the driver's executemany, in batches, each row with the run's
    id: a panel run writes hundreds of thousands of sightings, and a parameter dict per row
    through the SQL layer cost as much as the inserts themselves. `on_conflict`: the
    ON CONFLICT clause both SQLite and PostgreSQL read."""
    style = conn.dialect.paramstyle
    if style not in ("qmark", "format", "pyformat"):
        raise StoreError(f"the decisions store needs SQLite or PostgreSQL, not "
                         f"{conn.dialect.name}")
    mark = "?" if style == "qmark" else "%s"
    sql = (f"INSERT INTO {table.name} (run_id, {', '.join(columns)}) "
           f"VALUES ({run_id:d}, {', '.join([mark] * len(columns))}) ON CONFLICT {on_conflict}")
    it = iter(rows)
    while batch := list(islice(it, 5000)):
        conn.exec_driver_sql(sql, batch)


def _lines(text: str | None) -> tuple[str, ...]:
    return tuple(text.split("\n")) if text else ()


#: The columns of a sighting as prior_rows() gives them (after the patient id).
SIGHTING_ROW = ("alert_key", "rule", "pack", "family", "severity", "summary", "ingredients",
                "band", "level", "lineage")


def sighting_of_row(patient_id: str, r: Sequence[Any]) -> Sighting:
    """A Sighting from a SIGHTING_ROW row."""
    return Sighting(patient_id, r[0], r[1], r[2], r[3], r[4], r[5], _split(r[6]), r[7], r[8],
                    r[9])


#: The columns of a sighting as record_run() takes them: the patient, SIGHTING_ROW, the status.
RUN_SIGHTING_ROW = ("patient_id", *SIGHTING_ROW, "status")


def sighting_row(s: Sighting, status: str) -> tuple[Any, ...]:
    """A RUN_SIGHTING_ROW row of a sighting seen with `status`."""
    return (s.patient_id, s.alert_key, s.rule, s.pack, s.family, s.severity, s.summary,
            "+".join(s.ingredients), s.band, s.level, s.lineage, status)

