"""The first decisions schema: decisions (append-only), runs, sightings, reviewed, card links.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_id", sa.String(256), nullable=False),
        sa.Column("alert_key", sa.String(512), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason_system", sa.String(256)),
        sa.Column("reason_code", sa.String(128)),
        sa.Column("reason_display", sa.Text),
        sa.Column("note", sa.Text),
        sa.Column("follow_up", sa.Date),
        sa.Column("snooze_until", sa.Date),
        sa.Column("referred_to", sa.String(256)),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pack", sa.String(128)),
        sa.Column("rule", sa.String(256)),
        sa.Column("family", sa.String(32)),
        sa.Column("severity", sa.String(16)),
        sa.Column("summary", sa.Text),
        sa.Column("ingredients", sa.Text),
        sa.Column("band", sa.String(64)),
        sa.Column("level", sa.Float),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rationale", sa.Text),
        sa.Column("actions", sa.Text),  # one per line
        sa.Column("order_ids", sa.Text),  # one per line
        sa.Column("prescribers", sa.Text),  # one per line
        sa.UniqueConstraint("patient_id", "alert_key", "version", name="uq_decisions_version"),
    )
    op.create_index("ix_decisions_patient", "decisions", ["patient_id"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("packs", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("statuses", sa.Text, nullable=False),
    )
    op.create_table(
        "sightings",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("patient_id", sa.String(256), primary_key=True),
        sa.Column("alert_key", sa.String(512), primary_key=True),
        sa.Column("lineage", sa.String(512), nullable=False),
        sa.Column("rule", sa.String(256), nullable=False),
        sa.Column("pack", sa.String(128), nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("ingredients", sa.Text, nullable=False),
        sa.Column("band", sa.String(64)),
        sa.Column("level", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_table(
        "reviewed",
        sa.Column("patient_id", sa.String(256), primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("mrn", sa.String(128)),
        sa.Column("name", sa.Text),
        sa.Column("birth_date", sa.Date),
    )
    op.create_table(
        "card_links",
        sa.Column("uuid", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(256), nullable=False),
        sa.Column("alert_key", sa.String(512), nullable=False),
        sa.Column("rule", sa.String(256), nullable=False),
        sa.Column("pack", sa.String(128), nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("ingredients", sa.Text, nullable=False),
        sa.Column("band", sa.String(64)),
        sa.Column("level", sa.Float),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("card_links", "reviewed", "sightings", "runs", "decisions"):
        op.drop_table(table)
