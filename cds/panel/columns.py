"""The panel's output schema: the columns of alerts.csv/alerts.parquet and worklist.csv, the
report's histogram bins, and the worklist order. The CSV columns are a contract (docs/panel.md):
columns are only ever added, never renamed."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cds.decisions.model import STATUS_RANK, STATUSES
from cds.vocabulary import FAMILIES

ALERT_COLUMNS = ("patient_id", "rule", "pack", "family", "severity", "priority", "summary",
                 "rationale", "medications",
                 # carry-forward (docs/review.md): the alert's stable key, its status against the
                 # previous run and the decisions on file, and why it changed
                 "alert_key", "status", "changed_because",
                 # who acts and on what, and how a person finds the chart
                 "role", "actions", "prescriber", "order_ids", "mrn", "patient_name",
                 "birth_date", "ingredients", "band", "level",
                 # the decision: the standing one, filled in; a pharmacist edits these columns
                 # and `cds review import` reads them back (decision_version: the version they
                 # were made on, so a decision taken since is a conflict, not overwritten)
                 "decision", "decision_version", "decided_by", "reason", "note", "follow_up",
                 "referred_to")
_INT_COLUMNS = frozenset({"priority", "decision_version"})
ALERT_SCHEMA = pa.schema([(c, pa.int32() if c in _INT_COLUMNS else pa.string())
                          for c in ALERT_COLUMNS])
#: n_<family>: alerts of each family (cds.vocabulary.FAMILIES) per patient; n_<status>: alerts
#: of each carry-forward status; the top alert's key, role, actions and standing decision.
WORKLIST_COLUMNS = ("rank", "patient_id", "age", "sex", "priority", "top_severity", "alerts",
                    *(f"n_{f.replace('-', '_')}" for f in FAMILIES), "mme_total", "acb_total",
                    "not_assessed", "top_alert",
                    "status", *(f"n_{s}" for s in STATUSES), "mrn", "patient_name",
                    "birth_date", "alert_key", "role", "actions", "prescriber", "order_ids",
                    "decision", "decision_version", "decided_by", "reason", "note", "follow_up",
                    "referred_to")
#: The MME histogram of the report: bars of MME_BIN, the last one open-ended.
MME_BIN = 10
MME_BINS = 30  # 0-10, ..., 290-300, then 300+


def sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Worklist order: what needs attention first (a patient with a new alert, then changed,
    then open, then only decided ones), then highest priority, highest MME, patient id."""
    return (STATUS_RANK.get(row["status"], len(STATUS_RANK)), -row["priority"],
            -row["mme_total"], row["patient_id"])
