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
    Boolean,
    CheckConstraint,
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
    # the program's counts for the dashboard's trends (migration 0003)
    Column("patients", Integer),
    Column("mme_50", Integer),
    Column("mme_90", Integer),
    Column("naloxone_missing", Integer),  # at >= 50 MME/day with no naloxone on file
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

# -- accounts (migration 0002): who may use the served worklist, their sessions, and the audit
# trail of who looked at and did what. Names are stored lower-case (the CHECK keeps them so),
# so uniqueness is case-insensitive on both databases; a session is found by the sha256 of its
# token (the cookie holds the token, the database never does); audit_events refuses UPDATE and
# DELETE by trigger (created by the migration, so an application bug cannot rewrite history).

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256)),  # argon2id; NULL: single sign-on only
    Column("prescriber_name", String(256)),  # a prescriber's name as orders carry it
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("oidc_issuer", String(512)),
    Column("oidc_subject", String(256)),
    UniqueConstraint("name", name="uq_users_name"),
    UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc"),
    CheckConstraint("name = lower(name)", name="ck_users_name_lower"),
    CheckConstraint("role IN ('pharmacist', 'prescriber', 'admin')", name="ck_users_role"),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex of the cookie's token
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("expires", DateTime(timezone=True), nullable=False),  # absolute: created + lifetime
    Column("csrf_secret", String(64), nullable=False),
    Index("ix_sessions_user", "user_id"),
)

audit_events = Table(
    "audit_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("patient_id", String(256)),
    Column("detail", Text),  # never a password, token or clinical value
    Index("ix_audit_events_patient", "patient_id"),
    Index("ix_audit_events_at", "at"),
)
