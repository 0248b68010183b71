"""The worst case of one evaluation: the medication cap (300 records), every pair interacting
(opioids, benzodiazepines and QT-prolonging drugs in turn: opioid + benzodiazepine, QT + QT,
serotonergic pairs, duplications), every shipped pack. Goal (issue: bounded cost): under
200 ms and 100 MB; reported as absolute figures and as a ratio to a 20-medication patient
measured in the same run.

    pytest benchmarks/bench_worst_case.py --benchmark-only -q -s
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from datetime import date
from typing import Any

import pytest
from generate import AS_OF, patient

from cds.engine.evaluator import Engine, load_engine
from cds.knowledge.store import default_knowledge
from cds.limits import MAX_MEDICATIONS
from cds.patient import MedicationOrder, Patient, Timing


def worst_patient() -> Patient:
    kb = default_knowledge()
    qt = kb.classes.members("qt-prolonging-known-risk")
    groups = [
        [p.name for p in kb.products.values() if p.tty == "SCD"
         and any(c.ingredient in group for c in p.components)]
        for group in (kb.opioids, kb.classes.members("benzodiazepine"), qt)]
    meds = []
    for i in range(MAX_MEDICATIONS):
        names = groups[i % 3]
        meds.append(MedicationOrder(id=f"m{i:03d}", text=names[(i // 3) % len(names)], dose=1,
                                    dose_unit="tablet", timing=Timing(code="BID")))
    return Patient(id="worst", birth_date=date(1950, 1, 1), sex="female", medications=meds)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_engine()


def test_worst_case_evaluation(benchmark: Any, engine: Engine) -> None:
    p = worst_patient()
    result = engine.evaluate(p, as_of=AS_OF)
    n_rules = len({a.rule for a in result.alerts})
    assert len(result.alerts) == n_rules  # one alert per rule: pairs are listed, not repeated
    benchmark.pedantic(lambda: engine.evaluate(p, as_of=AS_OF), rounds=15, iterations=1,
                       warmup_rounds=2)
    worst = statistics.median(benchmark.stats.stats.data)
    base_p = patient(20, seed=1)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        engine.evaluate(base_p, as_of=AS_OF)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    engine.evaluate(p, as_of=AS_OF)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    benchmark.extra_info.update(worst_ms=round(worst * 1e3, 1), alerts=len(result.alerts),
                                peak_mb=round(peak / 1e6, 1),
                                ratio_to_20_meds=round(worst / statistics.median(times), 1))
    print(f"\n  worst case: {MAX_MEDICATIONS} medications, {len(result.alerts)} alerts, "
          f"median {worst * 1e3:.0f} ms (goal < 200), peak {peak / 1e6:.0f} MB (goal < 100); "
          f"{worst / statistics.median(times):.0f}x a 20-medication patient")
