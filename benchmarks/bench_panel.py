"""Panel review throughput and peak memory on synthetic panels.

    pytest benchmarks/bench_panel.py                      # 10,000 patients
    CDS_BENCH_LARGE=1 pytest benchmarks/bench_panel.py -s # and 100,000 (a few minutes)

Each run is `cds panel` in a subprocess, as a user runs it (all cores, all packs). Reported
(pytest-benchmark extra_info, and printed with -s): patients/s end to end, peak memory (the
sum of the RSS of the whole process tree, sampled every 50 ms, and the largest single
process), the engine's share of the workers' busy time, and the phase timings from run.json.
The synthetic panels are cached in $CDS_BENCH_DIR (default: the system temp folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cds.synth import write_panel

BENCH_DIR = Path(os.environ.get("CDS_BENCH_DIR", tempfile.gettempdir())) / "cds-bench-panels"
LARGE = os.environ.get("CDS_BENCH_LARGE") == "1"
PACKS = [p for p in os.environ.get("CDS_BENCH_PACKS", "").split(",") if p]


def _panel(n: int) -> Path:
    path = BENCH_DIR / f"synthetic-{n}"
    if not (path / ".complete").exists():
        write_panel(n, path, seed=2026)
        (path / ".complete").touch()
    return path


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _tree_rss(root: int) -> tuple[int, int]:
    """(sum, max) RSS in bytes of a process and its descendants, from /proc.

    Walks the tree through /proc/PID/task/*/children rather than every process on the
    machine: the sampler must cost the measured run next to nothing (~0.1 ms a sample)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total, biggest, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as fh:
                rss = int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        total += rss
        biggest = max(biggest, rss)
        todo.extend(_children(pid))
    return total, biggest


def review(n: int, out: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    src = _panel(n)
    cmd = [sys.executable, "-c", "from cds.cli import app; app()", "panel", str(src), "--out",
           str(out), "--as-of", "2026-11-26", "-q", *extra]
    for p in PACKS:
        cmd += ["--pack", p]
    peak = {"sum": 0, "max": 0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            s, m = _tree_rss(proc.pid)
            peak["sum"], peak["max"] = max(peak["sum"], s), max(peak["max"], m)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    assert rc == 0
    run = orjson.loads((out / "run.json").read_bytes())
    patients = run["counts"]["patients"]
    return {
        "patients": patients, "wall_seconds": round(wall, 2),
        "patients_per_second": round(patients / wall, 1),
        "peak_tree_rss_mb": round(peak["sum"] / 2**20, 1),
        "peak_process_rss_mb": round(peak["max"] / 2**20, 1),
        "engine_share_of_worker_time": run["engine_share"],
        "worker_seconds": run["worker_seconds"], "timings": run["timings"],
        "workers": run["workers"], "shards": run["shards"],
        "packs": [p["ref"] for p in run["packs"]],
    }


def _bench(benchmark: Any, n: int, tmp_path: Path) -> None:
    _panel(n)  # generate outside the timing
    runs = iter(range(100))
    info = benchmark.pedantic(lambda: review(n, tmp_path / f"out{next(runs)}"),
                              rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    print(f"\n{n:,} patients: {info['patients_per_second']:,.0f} patients/s, "
          f"peak {info['peak_tree_rss_mb']:,.0f} MB (tree) / {info['peak_process_rss_mb']:,.0f} "
          f"MB (largest process), engine {info['engine_share_of_worker_time']:.0%} of worker "
          f"time; {orjson.dumps(info).decode()}")


def test_panel_10k(benchmark: Any, tmp_path: Path) -> None:
    _bench(benchmark, 10_000, tmp_path)


@pytest.mark.skipif(not LARGE, reason="set CDS_BENCH_LARGE=1 for the 100,000-patient panel")
def test_panel_100k(benchmark: Any, tmp_path: Path) -> None:
    _bench(benchmark, 100_000, tmp_path)
