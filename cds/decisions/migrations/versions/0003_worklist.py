"""The served worklist: a panel run's patients, alerts and prescribers imported for paging
from SQL; prescribers' comments; per-run program counts on `runs`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("patients", sa.Integer))
        batch.add_column(sa.Column("mme_50", sa.Integer))
        batch.add_column(sa.Column("mme_90", sa.Integer))
        batch.add_column(sa.Column("naloxone_missing", sa.Integer))
    op.create_table(
        "worklist_runs",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("panel_dir", sa.Text, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("patients", sa.Integer, nullable=False),
        sa.Column("alerts", sa.Integer, nullable=False),
    )
    op.create_table(
        "worklist_patients",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("patient_id", sa.String(256), primary_key=True),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("top_severity", sa.String(16), nullable=False),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("mme_total", sa.Float, nullable=False),
        sa.Column("acb_total", sa.Integer, nullable=False),
        sa.Column("not_assessed", sa.Integer, nullable=False),
        sa.Column("top_alert", sa.Text, nullable=False),
        sa.Column("mrn", sa.String(128)),
        sa.Column("patient_name", sa.Text),
        sa.Column("birth_date", sa.String(10)),
        sa.Column("age", sa.Integer),
        sa.Column("sex", sa.String(16)),
        sa.Column("n_new", sa.Integer, nullable=False),
        sa.Column("n_changed", sa.Integer, nullable=False),
        sa.Column("n_open", sa.Integer, nullable=False),
        sa.Column("n_unchanged", sa.Integer, nullable=False),
        sa.Column("n_gone", sa.Integer, nullable=False),
    )
    op.create_index("ix_worklist_patients_rank", "worklist_patients", ["run_id", "rank"])
    op.create_table(
        "worklist_alerts",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("patient_id", sa.String(256), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("alert_key", sa.String(512), nullable=False),
        sa.Column("rule", sa.String(256), nullable=False),
        sa.Column("pack", sa.String(128), nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("changed_because", sa.Text),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("rationale", sa.Text, nullable=False),
        sa.Column("actions", sa.Text),
        sa.Column("medications", sa.Text),
        sa.Column("prescriber", sa.Text),
        sa.Column("role", sa.String(32)),
        sa.Column("order_ids", sa.Text),
        sa.Column("band", sa.String(64)),
        sa.Column("level", sa.Float),
    )
    op.create_index("ix_worklist_alerts_filter", "worklist_alerts",
                    ["run_id", "family", "severity", "role"])
    op.create_table(
        "worklist_prescribers",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("prescriber", sa.String(256), primary_key=True),
        sa.Column("patient_id", sa.String(256), primary_key=True),
    )
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("patient_id", sa.String(256), nullable=False),
        sa.Column("alert_key", sa.String(512), nullable=False),
        sa.Column("author", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_comments_patient", "comments", ["patient_id"])


def downgrade() -> None:
    for table in ("comments", "worklist_prescribers", "worklist_alerts", "worklist_patients",
                  "worklist_runs"):
        op.drop_table(table)
    with op.batch_alter_table("runs") as batch:
        for column in ("naloxone_missing", "mme_90", "mme_50", "patients"):
            batch.drop_column(column)
