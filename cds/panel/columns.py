"""The panel's output schema: the columns of alerts.csv/alerts.parquet and worklist.csv, the
report's histogram bins, and the worklist order. The CSV columns are a contract (docs/panel.md):
columns are only ever added, never renamed."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from cds.vocabulary import FAMILIES

ALERT_COLUMNS = ("patient_id", "rule", "pack", "family", "severity", "priority", "summary",
                 "rationale", "medications")
ALERT_SCHEMA = pa.schema([(c, pa.int32() if c == "priority" else pa.string())
                          for c in ALERT_COLUMNS])
#: n_<family>: alerts of each family (cds.vocabulary.FAMILIES) per patient.
WORKLIST_COLUMNS = ("rank", "patient_id", "age", "sex", "priority", "top_severity", "alerts",
                    *(f"n_{f.replace('-', '_')}" for f in FAMILIES), "mme_total", "acb_total",
                    "not_assessed", "top_alert")
#: The MME histogram of the report: bars of MME_BIN, the last one open-ended.
MME_BIN = 10
MME_BINS = 30  # 0-10, ..., 290-300, then 300+


def sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Worklist order: highest priority first, then highest MME, then patient id."""
    return (-row["priority"], -row["mme_total"], row["patient_id"])
