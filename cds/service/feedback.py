"""The service's store: feedback and issued cards for alert-burden reports, and the JWT ids
seen (replay protection that survives a restart). SQLite, durable.

Three tables, no patient data in any: `cards` (each card issued: its rule, pack, severity,
service, hook instance, suggestion uuids -> kinds), `feedback` (each outcome the EHR reports:
accepted suggestions or override reason; the same outcome posted twice is stored once) and
`tokens` (issuer|jti -> expiry, kept until the token expires). Issued cards are written by a
background thread so the hook's answer never waits on the disk; feedback and token ids are
committed before the call is answered. One connection, one lock: safe from any thread.

The store is an SQLite file (WAL, with a busy timeout: several worker processes of one host
may share it) or, given a postgresql:// URL, a PostgreSQL database (psycopg; the same tables,
for services on several hosts or workers behind one store).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds.errors import CdsError, UsageError

log = logging.getLogger("cds.service")

#: Responses whose issued cards may wait for the writer thread before a request waits.
QUEUE_BATCHES = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    uuid TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    hook_instance TEXT NOT NULL,
    rule TEXT,
    pack TEXT,
    pack_digest TEXT,
    family TEXT,
    severity TEXT,
    indicator TEXT NOT NULL,
    draft INTEGER NOT NULL DEFAULT 0,
    suggestions TEXT NOT NULL DEFAULT '{}',
    issued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id {serial},
    service TEXT NOT NULL,
    card TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    accepted_suggestions TEXT NOT NULL DEFAULT '[]',
    reason_system TEXT,
    reason_code TEXT,
    reason_display TEXT,
    user_comment TEXT,
    outcome_timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL,
    client TEXT{outcome_key}
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card);
CREATE INDEX IF NOT EXISTS cards_rule ON cards (rule);
CREATE TABLE IF NOT EXISTS tokens (
    key TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
"""

_SQLITE_SCHEMA = (_SCHEMA.replace("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT")
                  .replace("{outcome_key}", ""))
_PG_SCHEMA = (_SCHEMA.replace("{serial}", "BIGSERIAL PRIMARY KEY")
              .replace("{outcome_key}", ",\n    outcome_key TEXT"))

#: Feedback stores of cds < 0.2 have no `outcome_key`: add it, key the rows, drop the
#: repeats (the same outcome posted twice), then make it unique.
_MIGRATE_OUTCOME_KEY = """
ALTER TABLE feedback ADD COLUMN outcome_key TEXT;
UPDATE feedback SET outcome_key = service || char(31) || card || char(31) || outcome
    || char(31) || outcome_timestamp || char(31) || accepted_suggestions || char(31)
    || coalesce(reason_system, '') || char(31) || coalesce(reason_code, '')
    || char(31) || coalesce(user_comment, '');
DELETE FROM feedback WHERE id NOT IN (SELECT min(id) FROM feedback GROUP BY outcome_key);
"""


class FeedbackError(CdsError, ValueError):
    """A feedback body that does not follow the specification: a 400 naming the field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class IssuedCard:
    uuid: str
    service: str
    hook_instance: str
    rule: str | None
    pack: str | None
    pack_digest: str | None
    family: str | None
    severity: str | None
    indicator: str
    draft: bool
    suggestions: Mapping[str, str]  # suggestion uuid -> kind
    issued_at: str


@dataclass(frozen=True)
class Outcome:
    card: str
    outcome: str
    accepted: tuple[str, ...]
    reason_system: str | None
    reason_code: str | None
    reason_display: str | None
    user_comment: str | None
    timestamp: str


def _str(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        raise FeedbackError("must be a non-empty string", f"{where}.{key}")
    return v


def _timestamp(v: str, where: str) -> str:
    try:
        ts = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise FeedbackError("is not an ISO 8601 timestamp", where) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    try:
        utc = ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the calendar's first day
        raise FeedbackError("is outside the range of dates (years 1 to 9999, in UTC)",
                            where) from None
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_feedback(body: Any, *, keep_comments: bool = True) -> list[Outcome]:
    """The feedback request body -> outcomes; FeedbackError names the first bad field."""
    if not isinstance(body, dict):
        raise FeedbackError("expected a JSON object with a 'feedback' array", "(body)")
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise FeedbackError("must be a non-empty array", "feedback")
    out = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            raise FeedbackError("must be an object", where)
        card = _str(item, "card", where)
        outcome = item.get("outcome")
        if outcome not in ("accepted", "overridden"):
            raise FeedbackError("must be 'accepted' or 'overridden'", f"{where}.outcome")
        ts = _timestamp(_str(item, "outcomeTimestamp", where) or "", f"{where}.outcomeTimestamp")
        accepted: list[str] = []
        raw = item.get("acceptedSuggestions")
        if outcome == "accepted":
            if not isinstance(raw, list) or not raw:
                raise FeedbackError("is required (a non-empty array) for an accepted outcome",
                                    f"{where}.acceptedSuggestions")
            for j, s in enumerate(raw):
                if not isinstance(s, dict):
                    raise FeedbackError("must be an object", f"{where}.acceptedSuggestions[{j}]")
                accepted.append(_str(s, "id", f"{where}.acceptedSuggestions[{j}]") or "")
        system = code = display = comment = None
        reason = item.get("overrideReason")
        if reason is not None:
            if outcome != "overridden":
                raise FeedbackError("is only for an overridden outcome", f"{where}.overrideReason")
            if not isinstance(reason, dict):
                raise FeedbackError("must be an object", f"{where}.overrideReason")
            coding = reason.get("reason")
            if coding is not None:
                rw = f"{where}.overrideReason.reason"
                if not isinstance(coding, dict):
                    raise FeedbackError("must be a Coding", rw)
                code = _str(coding, "code", rw)
                system = _str(coding, "system", rw, required=False)
                display = _str(coding, "display", rw, required=False)
            comment = _str(reason, "userComment", f"{where}.overrideReason", required=False)
            if coding is None and comment is None:
                raise FeedbackError("needs a reason Coding or a userComment",
                                    f"{where}.overrideReason")
        out.append(Outcome(card=card or "", outcome=outcome, accepted=tuple(accepted),
                           reason_system=system, reason_code=code, reason_display=display,
                           user_comment=comment if keep_comments else None, timestamp=ts))
    return out


class _PostgresConnection:
    """The few sqlite3.Connection methods the store uses, over psycopg (autocommit, with
    explicit BEGIN/COMMIT as the SQLite path has): `?` placeholders become `%s`. A lost
    connection (the server restarted, a proxy closed it) is replaced when the next
    transaction begins."""

    def __init__(self, url: str) -> None:
        self.url = "postgresql://" + url.split("://", 1)[1]
        self._conn = self._connect()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if sql == "BEGIN":  # nothing done yet: a lost connection is replaced, once
            import psycopg

            if self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            try:
                return self._conn.execute(sql)
            except psycopg.OperationalError:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = self._connect()
                return self._conn.execute(sql)
        return self._conn.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def executescript(self, sql: str) -> None:
        self._conn.execute(sql)  # several statements, no parameters

    def close(self) -> None:
        self._conn.close()


def _db_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return (sqlite3.Error, psycopg.Error)


class FeedbackStore:
    def __init__(self, path: Path | str) -> None:
        self.postgres = isinstance(path, str) and path.startswith(("postgresql", "postgres://"))
        self._lock = threading.Lock()
        self._db: Any
        if self.postgres:
            self.path = Path()
            self._db = _PostgresConnection(str(path))
            with self._lock:
                self._db.executescript(_PG_SCHEMA)
                self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS feedback_outcome "
                                 "ON feedback (outcome_key)")
        else:
            self.path = Path(path)
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                       timeout=10)
            with self._lock:
                # several worker processes may open one file: wait for a writer, not fail
                self._db.execute("PRAGMA busy_timeout=10000")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SQLITE_SCHEMA)
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(feedback)")}
                if "outcome_key" not in columns:
                    self._db.executescript("BEGIN;" + _MIGRATE_OUTCOME_KEY + "COMMIT;")
                self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS feedback_outcome "
                                 "ON feedback (outcome_key)")
        # bounded: when the writer falls behind, a request waits for room (nothing is
        # dropped) instead of the queue growing with the server's memory
        self._queue: queue.Queue[list[IssuedCard] | threading.Event | None] = queue.Queue(
            maxsize=QUEUE_BATCHES)
        self._writer = threading.Thread(target=self._write_loop, name="cds-cards-writer",
                                        daemon=True)
        self._writer.start()
        self._closed = False
        self._next_token_purge = 0.0

    # -- issued cards (background) -------------------------------------------------
    def issued(self, cards: list[IssuedCard]) -> None:
        if cards and not self._closed:
            self._queue.put(cards)

    def _write_loop(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:  # take whatever else is waiting: one transaction for all of it
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending: list[IssuedCard] = []
            events: list[threading.Event] = []
            stop = False
            for it in items:
                if it is None:
                    stop = True
                elif isinstance(it, threading.Event):
                    events.append(it)
                else:
                    pending.extend(it)
            if pending:
                try:
                    self._insert_cards(pending)
                except _db_errors() as e:  # never take the service down; say so
                    log.error("could not store %d issued cards: %s", len(pending),
                              type(e).__name__)
            for ev in events:
                ev.set()
            if stop:
                return

    def _insert_cards(self, cards: Iterable[IssuedCard]) -> None:
        rows = [(c.uuid, c.service, c.hook_instance, c.rule, c.pack, c.pack_digest, c.family,
                 c.severity, c.indicator, int(c.draft), json.dumps(dict(c.suggestions)),
                 c.issued_at) for c in cards]
        with self._lock, self._transaction():
            self._db.executemany("INSERT INTO cards VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                                 "ON CONFLICT DO NOTHING", rows)

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            self._db.execute("ROLLBACK")

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every issued card queued so far is on disk."""
        if self._closed:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    # -- feedback (synchronous, durable) ------------------------------------------
    def record(self, service: str, outcomes: list[Outcome],
               client: str | None = None) -> list[Outcome]:
        """Store the outcomes; returns those that were new (an EHR that retries a feedback
        call posts the same outcomes again: they are stored once)."""
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        new: list[Outcome] = []
        with self._lock, self._transaction():
            for o in outcomes:
                accepted = json.dumps(list(o.accepted))
                key = "\x1f".join((service, o.card, o.outcome, o.timestamp, accepted,
                                   o.reason_system or "", o.reason_code or "",
                                   o.user_comment or ""))
                cur = self._db.execute(
                    "INSERT INTO feedback (service, card, outcome, "
                    "accepted_suggestions, reason_system, reason_code, reason_display, "
                    "user_comment, outcome_timestamp, received_at, client, outcome_key) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (service, o.card, o.outcome, accepted, o.reason_system, o.reason_code,
                     o.reason_display, o.user_comment, o.timestamp, now, client, key))
                if cur.rowcount:
                    new.append(o)
        return new

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, or ROLLBACK on any error (the connection stays usable)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        self._db.execute("COMMIT")

    # -- token ids (synchronous, durable) -----------------------------------------
    def remember_token(self, key: str, expires: float, now: float) -> bool:
        """Record a JWT's issuer|jti until it expires; False when it is already on file and
        not expired (a replay, also across restarts)."""
        with self._lock, self._transaction():
            if now >= self._next_token_purge:
                self._db.execute("DELETE FROM tokens WHERE expires <= ?", (now,))
                self._next_token_purge = now + 60
            cur = self._db.execute(
                "INSERT INTO tokens (key, expires) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                "SET expires = excluded.expires WHERE tokens.expires <= ?", (key, expires, now))
            return bool(cur.rowcount > 0)

    def burden(self) -> list[dict[str, Any]]:
        """Per rule: cards issued, accepted, overridden, and the override reasons given."""
        self.flush()
        with self._lock:
            issued = self._db.execute(
                "SELECT rule, pack, severity, COUNT(*) FROM cards GROUP BY rule, pack, severity"
            ).fetchall()
            outcomes = self._db.execute(
                "SELECT c.rule, c.pack, f.outcome, f.reason_code, COUNT(*) FROM feedback f "
                "LEFT JOIN cards c ON c.uuid = f.card GROUP BY c.rule, c.pack, f.outcome, "
                "f.reason_code").fetchall()
        report: dict[tuple[Any, Any], dict[str, Any]] = {}
        for rule, pack, severity, n in issued:
            report[(rule, pack)] = {"rule": rule, "pack": pack, "severity": severity,
                                    "issued": n, "accepted": 0, "overridden": 0,
                                    "override_reasons": {}}
        for rule, pack, outcome, code, n in outcomes:
            row = report.setdefault((rule, pack), {
                "rule": rule, "pack": pack, "severity": None, "issued": 0, "accepted": 0,
                "overridden": 0, "override_reasons": {}})
            row[outcome] += n
            if outcome == "overridden":
                key = code or "(no reason)"
                row["override_reasons"][key] = row["override_reasons"].get(key, 0) + n
        for row in report.values():
            row["override_rate"] = (round(row["overridden"] / row["issued"], 4)
                                    if row["issued"] else None)
        return sorted(report.values(), key=lambda r: (-r["issued"], str(r["rule"])))

    def count(self, table: str) -> int:
        if table not in ("cards", "feedback", "tokens"):
            raise UsageError(f"no table {table!r} (cards, feedback, tokens)")
        self.flush()
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._writer.join(timeout=5)
        with self._lock:
            self._db.close()
