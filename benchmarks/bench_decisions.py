"""The decisions store's cost (#14): panel runs with the store (SQLite, the default; runs after
the first, which read the previous run's sightings and decisions and record their own) against
the same run without one (`--db none`), interleaved in the same session; and an import of
10,000 filled-in decisions. Goals: within 15% of the run without a store on 100,000 patients; the import under
5 s.

    pytest benchmarks/bench_decisions.py -s                      # 10,000 patients
    CDS_BENCH_LARGE=1 pytest benchmarks/bench_decisions.py -s    # and 100,000
"""

from __future__ import annotations

import csv
import os
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench_panel import _panel, review

from cds.decisions.csv_import import import_csv
from cds.decisions.model import Sighting
from cds.decisions.store import DecisionStore, PatientRow, sighting_row
from cds.panel.columns import ALERT_COLUMNS

LARGE = os.environ.get("CDS_BENCH_LARGE") == "1"


def _compare(n: int, tmp_path: Path, rounds: int = 3) -> dict[str, Any]:
    """Runs without and with the store, interleaved (none, store, none, store...) so that a
    slow spell of the machine falls on both sides; the ratio is of the fastest of each (the
    cost without interference), the median ratio is reported beside it."""
    _panel(n)
    db = str(tmp_path / "decisions.sqlite3")
    review(n, tmp_path / "first", ("--db", db))  # the store's first run: nothing to read yet
    without: list[float] = []
    with_store: list[float] = []
    runs: list[dict[str, Any]] = []
    for i in range(rounds):
        without.append(review(n, tmp_path / f"none-{i}", ("--db", "none"))["wall_seconds"])
        with_store.append(review(n, tmp_path / f"store-{i}", ("--db", db))["wall_seconds"])
        runs.append(orjson.loads((tmp_path / f"store-{i}" / "run.json").read_bytes()))
    info = {"patients": n, "rounds": rounds, "without_store_s": without,
            "with_store_s": with_store, "ratio": round(min(with_store) / min(without), 3),
            "median_ratio": round(statistics.median(with_store) / statistics.median(without), 3),
            "store_read_s": [r["timings"].get("decisions_read") for r in runs],
            "store_write_after_merge_s": [r["timings"].get("decisions_write") for r in runs],
            "statuses": runs[-1]["statuses"]}
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
                          "opioid-safety@2.0.2", "mme", "high", "Opioid dosage 95 MME/day",
                          ("oxycodone",), "MME 90+", 95.0, "opioid-safety|mme|")
                 for i in range(10_000)]
    store.record_run(as_of=date(2026, 11, 26), packs=["opioid-safety@2.0.2"], source=None,
                     sightings=[sighting_row(s, "new") for s in sightings],
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
