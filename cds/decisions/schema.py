"""The decisions database's tables (SQLAlchemy Core): one definition, read by the store and
by the migrations' tests. A schema change is a new Alembic migration
(cds/decisions/migrations/versions/), never an edit of a released one.

- `decisions`: the append-only history (a change is a new row with the next version; the
  unique (patient, alert key, version) makes two concurrent decisions on one version fail);
- `runs`, `sightings`, `reviewed`: what each panel run found, and each patient's latest run,
  so the next run can tell new, changed, open, unchanged and gone;
- `card_links`: which patient and alert a CDS Hooks card (or a `cds check --db`) showed, so
  feedback on the card becomes a decision and the alert is known to `cds review decide`.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", String(256), nullable=False),
    Column("alert_key", String(512), nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason_system", String(256)),
    Column("reason_code", String(128)),
    Column("reason_display", Text),
    Column("note", Text),
    Column("follow_up", Date),
    Column("snooze_until", Date),
    Column("referred_to", String(256)),
    Column("author", String(256), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("pack", String(128)),
    Column("rule", String(256)),
    Column("family", String(32)),
    Column("severity", String(16)),
    Column("summary", Text),
    Column("ingredients", Text),  # "+"-joined, sorted
    Column("band", String(64)),
    Column("level", Float),
    Column("source", String(16), nullable=False),
    Column("rationale", Text),
    Column("actions", Text),  # one per line
    Column("order_ids", Text),  # one per line
    Column("prescribers", Text),  # one per line
    UniqueConstraint("patient_id", "alert_key", "version", name="uq_decisions_version"),
    Index("ix_decisions_patient", "patient_id"),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # panel
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("packs", Text, nullable=False),  # JSON list of pack@version
    Column("source", Text),  # the input folder
    Column("alerts", Integer, nullable=False),
    Column("statuses", Text, nullable=False),  # JSON {status: count}
)

sightings = Table(
    "sightings", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("patient_id", String(256), primary_key=True),
    Column("alert_key", String(512), primary_key=True),
    Column("lineage", String(512), nullable=False),
    Column("rule", String(256), nullable=False),
    Column("pack", String(128), nullable=False),
    Column("family", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("ingredients", Text, nullable=False),
    Column("band", String(64)),
    Column("level", Float),
    Column("status", String(16), nullable=False),
)

reviewed = Table(
    "reviewed", metadata,
    Column("patient_id", String(256), primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    # how a person finds the chart (letters, exports), as of the patient's latest review
    Column("mrn", String(128)),
    Column("name", Text),
    Column("birth_date", Date),
)

card_links = Table(
    "card_links", metadata,
    Column("uuid", String(64), primary_key=True),
    Column("patient_id", String(256), nullable=False),
    Column("alert_key", String(512), nullable=False),
    Column("rule", String(256), nullable=False),
    Column("pack", String(128), nullable=False),
    Column("family", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("ingredients", Text, nullable=False),
    Column("band", String(64)),
    Column("level", Float),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)
