"""Alert burden of the label-based packs: alerts per patient before and after them, on a case
set of 200 generated patients with real products (the synthetic pain-clinic panel of
`cds synth`, clean records). Run:

    python benchmarks/alert_burden.py            # prints the markdown of docs/alert-burden.md

and as a benchmark (`pytest benchmarks/alert_burden.py --benchmark-only -s`), which also
times one evaluation of the case set with each set of packs.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from cds.engine.evaluator import Engine, load_engine
from cds.io import Record, build_patient
from cds.patient import Patient
from cds.rules.registry import discover, rulesets_roots
from cds.synth import write_panel

AS_OF = date(2026, 11, 26)
NEW_PACKS = ("label-dosing", "interactions-label")
N_PATIENTS = 200


def case_set(n: int = N_PATIENTS, seed: int = 2026) -> list[Patient]:
    with tempfile.TemporaryDirectory() as tmp:
        src = write_panel(n, Path(tmp) / "panel", seed=seed, dirty=0.0)
        by_patient: dict[str, list[Record]] = defaultdict(list)
        meds: dict[str, dict[str, Any]] = {}
        for f in sorted(src.glob("*.ndjson")):
            for line in f.read_bytes().splitlines():
                res = orjson.loads(line)
                if res["resourceType"] == "Medication":
                    meds[f"Medication/{res['id']}"] = res
                elif res["resourceType"] == "Patient":
                    by_patient[res["id"]].append(Record(res))
                else:
                    by_patient[res["subject"]["reference"].removeprefix("Patient/")].append(
                        Record(res))
    return [build_patient(recs, patient_id=pid, medications=meds).patient
            for pid, recs in sorted(by_patient.items())]


def engines() -> tuple[Engine, Engine]:
    newest = {p.id for p in discover(rulesets_roots())}
    before = load_engine(sorted(newest - set(NEW_PACKS)))
    return before, load_engine()


def burden(engine: Engine, patients: list[Patient]) -> tuple[list[int], Counter[str]]:
    per_patient, per_rule = [], Counter[str]()
    for p in patients:
        alerts = engine.evaluate(p, as_of=AS_OF).alerts
        per_patient.append(len(alerts))
        per_rule.update(a.rule for a in alerts)
    return per_patient, per_rule


def report() -> str:
    patients = case_set()
    before, after = engines()
    (b, b_rules), (a, a_rules) = burden(before, patients), burden(after, patients)

    def stats(xs: list[int]) -> str:
        q = sorted(xs)
        return (f"{sum(xs)} alerts; per patient mean {statistics.mean(xs):.2f}, median "
                f"{statistics.median(xs):g}, 90th percentile {q[int(0.9 * (len(q) - 1))]}, max {q[-1]}")

    lines = [
        "# Alert burden of the label-based packs",
        "",
        f"Case set: {len(patients)} generated patients of the synthetic pain-clinic panel "
        f"(`cds synth --patients {N_PATIENTS} --seed 2026 --dirty 0`: real RxNorm products in "
        "the mixes a pain clinic sees), evaluated on 2026-11-26. Before: every installed pack "
        f"but {', '.join(NEW_PACKS)}; after: all of them. Produced by "
        "`python benchmarks/alert_burden.py`.",
        "",
        f"- before: {stats(b)}",
        f"- after: {stats(a)}",
        f"- patients with more alerts: {sum(y > x for x, y in zip(b, a, strict=True))} of "
        f"{len(patients)}; with fewer: {sum(y < x for x, y in zip(b, a, strict=True))} (an "
        "alert of an older pack merged into a new pack's alert, listed in `also`)",
        "",
        "| rule | before | after | change |",
        "|---|---:|---:|---:|",
    ]
    for rule in sorted(set(b_rules) | set(a_rules), key=lambda r: (-(a_rules[r] - b_rules[r]), r)):
        if a_rules[rule] != b_rules[rule]:
            lines.append(f"| {rule} | {b_rules[rule]} | {a_rules[rule]} | "
                         f"{a_rules[rule] - b_rules[rule]:+d} |")
    return "\n".join(lines) + "\n"


def test_alert_burden(benchmark: Any) -> None:
    patients = case_set()
    before, after = engines()
    b, _ = burden(before, patients)
    a, _ = benchmark.pedantic(lambda: burden(after, patients), rounds=3, iterations=1)
    benchmark.extra_info.update(alerts_before=sum(b), alerts_after=sum(a),
                                per_patient_before=round(statistics.mean(b), 2),
                                per_patient_after=round(statistics.mean(a), 2))
    print(f"\n  alert burden: {sum(b)} -> {sum(a)} alerts for {len(patients)} patients")


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(report())
