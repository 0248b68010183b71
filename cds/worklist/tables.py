"""The served worklist's tables in the decisions database (migration 0003): a panel run's
patients and alerts, imported once from its output folder so the queue pages from SQL with
indexes (100,000 patients and 300,000 alerts), and the prescribers' comments on alerts."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from cds.decisions.schema import metadata

worklist_runs = Table(
    "worklist_runs", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("panel_dir", Text, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("patients", Integer, nullable=False),
    Column("alerts", Integer, nullable=False),
)

worklist_patients = Table(
    "worklist_patients", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("patient_id", String(256), primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("top_severity", String(16), nullable=False),
    Column("alerts", Integer, nullable=False),
    Column("mme_total", Float, nullable=False),
    Column("acb_total", Integer, nullable=False),
    Column("not_assessed", Integer, nullable=False),
    Column("top_alert", Text, nullable=False),
    Column("mrn", String(128)),
    Column("patient_name", Text),
    Column("birth_date", String(10)),
    Column("age", Integer),
    Column("sex", String(16)),
    Column("n_new", Integer, nullable=False),
    Column("n_changed", Integer, nullable=False),
    Column("n_open", Integer, nullable=False),
    Column("n_unchanged", Integer, nullable=False),
    Column("n_gone", Integer, nullable=False),
    Index("ix_worklist_patients_rank", "run_id", "rank"),
)

worklist_alerts = Table(
    "worklist_alerts", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("patient_id", String(256), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("alert_key", String(512), nullable=False),
    Column("rule", String(256), nullable=False),
    Column("pack", String(128), nullable=False),
    Column("family", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("changed_because", Text),
    Column("summary", Text, nullable=False),
    Column("rationale", Text, nullable=False),
    Column("actions", Text),  # "; "-joined
    Column("medications", Text),
    Column("prescriber", Text),
    Column("role", String(32)),
    Column("order_ids", Text),
    Column("band", String(64)),
    Column("level", Float),
    Index("ix_worklist_alerts_filter", "run_id", "family", "severity", "role"),
)

worklist_prescribers = Table(
    "worklist_prescribers", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("prescriber", String(256), primary_key=True),
    Column("patient_id", String(256), primary_key=True),
)

comments = Table(
    "comments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patient_id", String(256), nullable=False),
    Column("alert_key", String(512), nullable=False),
    Column("author", String(256), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_comments_patient", "patient_id"),
)
