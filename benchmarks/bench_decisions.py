"""The decisions store's cost (#14): a panel run with the store (SQLite, the default; a second
run, which reads the first run's sightings and decisions and records its own) against the same
run without one (`--db none`), measured in the same session; and an import of 10,000 filled-in
decisions. Goals: within 15% of the run without a store on 100,000 patients; the import under
5 s.

    pytest benchmarks/bench_decisions.py -s                      # 10,000 patients
    CDS_BENCH_LARGE=1 pytest benchmarks/bench_decisions.py -s    # and 100,000
"""

from __future__ import annotations

import csv
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench_panel import _panel, review

from cds.decisions.csv_import import import_csv
from cds.decisions.model import Sighting
from cds.decisions.store import DecisionStore, PatientRow
from cds.panel.columns import ALERT_COLUMNS

LARGE = os.environ.get("CDS_BENCH_LARGE") == "1"


def _compare(n: int, tmp_path: Path) -> dict[str, Any]:
    _panel(n)
    db = str(tmp_path / "decisions.sqlite3")
    without = review(n, tmp_path / "none", ("--db", "none"))
    review(n, tmp_path / "first", ("--db", db))  # the store's first run: nothing to read yet
    with_store = review(n, tmp_path / "second", ("--db", db))
    ratio = with_store["wall_seconds"] / without["wall_seconds"]
    run = orjson.loads((tmp_path / "second" / "run.json").read_bytes())
    info = {"patients": n, "without_store_s": without["wall_seconds"],
            "with_store_s": with_store["wall_seconds"], "ratio": round(ratio, 3),
            "store_read_s": run["timings"].get("decisions_read"),
            "store_write_s": run["timings"].get("decisions_write"),
            "statuses": run["statuses"]}
    print(f"\n{n:,} patients: {info}")
    return info


def test_panel_store_overhead_10k(benchmark: Any, tmp_path: Path) -> None:
    info = benchmark.pedantic(lambda: _compare(10_000, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(info)


@pytest.mark.skipif(not LARGE, reason="set CDS_BENCH_LARGE=1 for the 100,000-patient panel")
def test_panel_store_overhead_100k(benchmark: Any, tmp_path: Path) -> None:
    info = benchmark.pedantic(lambda: _compare(100_000, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    assert info["ratio"] <= 1.15, info


def test_import_10k_decisions(benchmark: Any, tmp_path: Path) -> None:
    store = DecisionStore(tmp_path / "decisions.sqlite3")
    sightings = [Sighting(f"p{i:05d}", "opioid-safety/mme-90@MME90+", "opioid-safety/mme-90",
                          "opioid-safety@2.0.1", "mme", "high", "Opioid dosage 95 MME/day",
                          ("oxycodone",), "MME 90+", 95.0, "opioid-safety|mme|")
                 for i in range(10_000)]
    store.record_run(as_of=date(2026, 11, 26), packs=["opioid-safety@2.0.1"], source=None,
                     sightings=[(s, "new") for s in sightings],
                     patients=[PatientRow(s.patient_id) for s in sightings], statuses={"new": 10_000})
    path = tmp_path / "filled.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ALERT_COLUMNS)
        w.writeheader()
        for s in sightings:
            w.writerow({"patient_id": s.patient_id, "rule": s.rule, "pack": s.pack,
                        "family": s.family, "severity": s.severity, "summary": s.summary,
                        "alert_key": s.alert_key, "decision": "overridden",
                        "reason": "taper-plan", "note": "taper agreed with the patient"})
    t0 = time.perf_counter()
    result = benchmark.pedantic(
        lambda: import_csv(store, path, author="jane", responses=lambda rule: (),
                           now=datetime(2026, 11, 27, tzinfo=UTC)), rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    store.close()
    assert len(result.applied) == 10_000 and not result.rejects
    benchmark.extra_info.update({"decisions": 10_000, "seconds": round(seconds, 2)})
    print(f"\nimport of 10,000 decisions: {seconds:.2f} s")
    assert seconds < 5, seconds
