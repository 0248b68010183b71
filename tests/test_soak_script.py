"""The soak test (benchmarks/soak_service.py) keeps working: a short run of it (two 'minutes'
of 5 s) against a real server passes its own checks and writes its report. The 30-minute run
and its last result are in docs/testing.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_short_soak_passes_its_checks(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    env = {**os.environ, "SOAK_MINUTES": "2", "SOAK_MINUTE_SECONDS": "5", "SOAK_CLIENTS": "2",
           "SOAK_MAX_GROWTH": "0.5", "SOAK_REPORT": str(report)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak_service.py")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["minutes"] == 2 and len(data["rows"]) == 2
    assert all(data["checks"].values()), data["checks"]
    statuses = {key.rsplit(" -> ", 1)[1] for key in data["calls"]}
    assert {"200", "400", "401", "413"} <= statuses, statuses  # valid, invalid and hostile
