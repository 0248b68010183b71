"""The durable-rules backend gives the alerts of the indexed evaluator, and survives the
limits of durable-rules 2.0.28 (session cap, threads, pickling, ruleset size)."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
import textwrap
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from products import PRODUCTS, dose_unit

from cds.engine.durable_backend import MAX_RULES_PER_RULESET, DurableMatcher
from cds.engine.evaluator import Engine
from cds.knowledge.store import default_knowledge
from cds.patient import Patient
from cds.rules.loader import load_pack
from cds.rules.registry import load_packs

AS_OF = date(2026, 11, 26)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


KB = default_knowledge()
PACKS = load_packs(KB)  # every shipped pack, newest version
INDEXED = Engine(PACKS, KB)
DURABLE = Engine(PACKS, KB, backend="durable")  # one per module: rulesets are never freed




@st.composite
def orders(draw: st.DrawFn, mid: str, current: bool = True) -> dict[str, Any]:
    rxcui, name, form, _ = draw(st.sampled_from(PRODUCTS))
    unit = dose_unit(form)
    o: dict[str, Any] = {
        "id": mid, "dose": draw(st.sampled_from([0.5, 1, 1, 2, 3] if unit != "mL" else [2.5, 5, 10])),
        "dose_unit": unit,
        "timing": {"frequency": draw(st.integers(1, 4)), "period": 1, "period_unit": "d"},
        "draft": current and draw(st.integers(0, 3)) == 0,
        "authored": (AS_OF - timedelta(days=draw(st.integers(0, 400)))).isoformat(),
        "prescriber": draw(st.sampled_from(["dr-a", "dr-b", "dr-c"])),
    }
    if draw(st.booleans()):
        o["codes"] = [{"system": RXNORM, "code": rxcui, "display": name}]
    else:
        o["text"] = name
    if not current:
        if draw(st.booleans()):
            o.update(status="stopped", supply_days=draw(st.sampled_from([7, 30, 90])))
        else:
            o.update(source="dispense", status="completed", dispensed=o["authored"],
                     supply_days=draw(st.sampled_from([7, 30])), draft=False)
    return o


@st.composite
def patients(draw: st.DrawFn, max_meds: int = 10) -> Patient:
    n = draw(st.integers(0, max_meds))
    meds = [draw(orders(f"m{i}")) for i in range(n)]
    meds += [draw(orders(f"h{i}", current=False)) for i in range(draw(st.integers(0, 3)))]
    age = draw(st.integers(18, 95))
    obs: list[dict[str, Any]] = []
    if draw(st.booleans()):
        obs.append({"kind": "creatinine", "value": draw(st.floats(0.4, 6.0)), "unit": "mg/dL",
                    "date": (AS_OF - timedelta(days=draw(st.integers(0, 500)))).isoformat()})
    if draw(st.booleans()):
        obs.append({"kind": "weight", "value": draw(st.floats(35, 150)), "unit": "kg"})
    if draw(st.booleans()):
        obs.append({"kind": "egfr", "value": draw(st.floats(5, 120)), "unit": "mL/min/1.73m2",
                    "date": "2026-10-01"})
    return Patient.model_validate({
        "id": "p", "birth_date": f"{AS_OF.year - age}-05-17",
        "sex": draw(st.sampled_from(["female", "male", "unknown"])), "observations": obs,
        "medications": meds,
        "child_pugh_class": draw(st.sampled_from([None, None, "A", "B", "C"])),
        "conditions": draw(st.sampled_from([[], [{"code": "N18.4", "text": "CKD stage 4"}]])),
    })


def alert_dicts(engine: Engine, p: Patient) -> list[dict[str, Any]]:
    return [a.to_dict() for a in engine.evaluate(p, as_of=AS_OF).alerts]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients())
def test_backends_agree(p: Patient) -> None:
    assert alert_dicts(DURABLE, p) == alert_dicts(INDEXED, p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients(max_meds=40))
def test_backends_agree_on_long_lists(p: Patient) -> None:
    assert alert_dicts(DURABLE, p) == alert_dicts(INDEXED, p)


def _fixed_patient(meds: list[str], pid: str = "p") -> Patient:
    return Patient.model_validate({
        "id": pid, "birth_date": "1945-01-01", "sex": "female",
        "observations": [{"kind": "creatinine", "value": 2.1, "unit": "mg/dL", "date": "2026-10-01"},
                         {"kind": "weight", "value": 60, "unit": "kg"}],
        "medications": [{"id": f"m{i}", "text": t, "dose": 1, "dose_unit": "tablet",
                         "timing": {"frequency": 2, "period": 1, "period_unit": "d"}}
                        for i, t in enumerate(meds)]})


MIXED = ["oxycodone hydrochloride 10 MG Oral Tablet", "alprazolam 0.5 MG Oral Tablet",
         "citalopram 20 MG Oral Tablet", "amiodarone hydrochloride 200 MG Oral Tablet",
         "gabapentin 300 MG Oral Capsule", "amitriptyline hydrochloride 10 MG Oral Tablet"]


def test_known_combinations_agree() -> None:
    # symmetric rules (QT + QT), opioid + benzodiazepine, burden counts and ACB in one patient
    for k in range(2, len(MIXED) + 1):
        p = _fixed_patient(MIXED[:k])
        assert alert_dicts(DURABLE, p) == alert_dicts(INDEXED, p)
        assert alert_dicts(DURABLE, p)  # and there is something to compare


def test_more_patients_than_the_session_cap() -> None:
    """durable-rules allows 1,024 live sessions per ruleset; each patient's is deleted."""
    want = alert_dicts(INDEXED, _fixed_patient(MIXED))
    for n in range(1100):
        got = [a.to_dict() for a in DURABLE.evaluate(_fixed_patient(MIXED, "p"), as_of=AS_OF).alerts]
        if n % 100 == 0:
            assert got == want


def test_ruleset_names_are_versioned_and_unique() -> None:
    a = DurableMatcher(INDEXED.compiled)
    b = DurableMatcher(INDEXED.compiled)
    f = INDEXED.facts(_fixed_patient(MIXED), AS_OF)
    a.match(f)
    b.match(f)
    assert a.ruleset_names and not set(a.ruleset_names) & set(b.ruleset_names)
    joins = {cr.pack_ref for cr in INDEXED.compiled.rules if cr.rule.type in ("interaction", "burden")}
    for pack in PACKS:
        if pack.ref in joins:  # a pack of dose bands only needs no ruleset
            assert any(f"{pack.ref}:{pack.digest[:12]}:" in n for n in a.ruleset_names)


def test_pickled_matcher_registers_again() -> None:
    p = _fixed_patient(MIXED)
    copy = pickle.loads(pickle.dumps(DURABLE))
    assert alert_dicts(copy, p) == alert_dicts(INDEXED, p)
    assert set(copy.matcher.ruleset_names).isdisjoint(DURABLE.matcher.ruleset_names)


def _evaluate_in_child(engines: tuple[Engine, Engine]) -> bool:
    # compared in the child: alert ids and symmetric pairs depend on the hash seed (see
    # test_engine_properties.py), so a spawned child need not match the parent's output
    durable, indexed = engines
    p = _fixed_patient(MIXED)
    return alert_dicts(durable, p) == alert_dicts(indexed, p) != []


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes(method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    alert_dicts(DURABLE, _fixed_patient(MIXED))  # the parent's host exists before the fork
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.map(_evaluate_in_child, [(DURABLE, INDEXED)] * 4)
    assert results == [True] * 4


def test_threads_share_the_host_safely() -> None:
    """Run in a child process: without the lock this crashes (SIGSEGV), taking pytest along."""
    script = textwrap.dedent("""
        import threading
        from datetime import date
        from cds.engine.evaluator import Engine
        from cds.knowledge.store import default_knowledge
        from cds.patient import Patient
        from cds.rules.registry import load_packs
        kb = default_knowledge()
        packs = load_packs(kb)
        durable, indexed = Engine(packs, kb, backend="durable"), Engine(packs, kb)
        texts = TEXTS
        def patient(k):
            return Patient.model_validate({"id": f"p{k}", "birth_date": "1945-01-01", "sex": "female",
                "medications": [{"id": f"m{i}", "text": t, "dose": 1, "dose_unit": "tablet",
                                 "timing": {"frequency": 2, "period": 1, "period_unit": "d"}}
                                for i, t in enumerate(texts[: 2 + k % 5])]})
        day = date(2026, 11, 26)
        want = {k: [a.to_dict() for a in indexed.evaluate(patient(k), as_of=day).alerts] for k in range(5)}
        errors = []
        def work(t):
            for n in range(150):
                k = (n + t) % 5
                got = [a.to_dict() for a in durable.evaluate(patient(k), as_of=day).alerts]
                if got != want[k]:
                    errors.append((t, n))
        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("mismatches", len(errors))
    """).replace("TEXTS", repr(MIXED))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mismatches 0" in out.stdout


def _big_pack(root: Path, n: int) -> Path:
    ingredients = ["oxycodone", "alprazolam", "citalopram", "amiodarone", "gabapentin",
                   "amitriptyline", "sertraline", "warfarin"]
    classes = ["opioid", "benzodiazepine", "serotonergic", "gabapentinoid"]
    refs = ingredients + classes
    rules = [{"id": f"gen-{i:04d}", "type": "interaction", "a": [refs[i % len(refs)]],
              "b": [refs[(i * 7 + 3) % len(refs)]], "severity": ["high", "moderate", "low"][i % 3],
              "summary": "generated {a} + {b}", "rationale": "{a} with {b}", "mechanism": "m",
              "management": "m", "sources": ["tests"]} for i in range(n)]
    folder = root / "big"
    (folder / "rules").mkdir(parents=True)
    (folder / "pack.yaml").write_text(yaml.safe_dump({
        "id": "big", "version": "1.0.0", "title": "t", "description": "d",
        "knowledge": f">={KB.version}", "maintainers": ["tests"],
        "changelog": [{"version": "1.0.0", "date": "2026-11-26", "changes": ["c"]}]}))
    (folder / "rules" / "r.yaml").write_text(yaml.safe_dump({"rules": rules}))
    return folder


def test_pack_larger_than_one_ruleset(tmp_path: Path) -> None:
    """durable-rules hangs at 256 rules per ruleset: big packs are split."""
    pack = load_pack(_big_pack(tmp_path, 2 * MAX_RULES_PER_RULESET + 50), KB)
    # (12 references for 450 rules: also far more rules per ingredient than one fact may reach)
    indexed, durable = Engine([pack], KB), Engine([pack], KB, backend="durable")
    p = _fixed_patient(MIXED + ["sertraline 50 MG Oral Tablet"])
    assert alert_dicts(durable, p) == alert_dicts(indexed, p)
    assert len(durable.matcher.ruleset_names) >= 3  # type: ignore[attr-defined]


# -- the durable-rules limits themselves, so an upgrade that lifts one shows up here -------

def test_durable_rules_still_caps_sessions() -> None:
    from cds.engine.durable_backend import _QuietHost, host_lock

    with host_lock():
        host = _QuietHost()
        host.register_rulesets({"cds-test:cap": {"r": {"all": [{"m": {"t": "x"}}],
                                                       "run": lambda c: None}}})
        with pytest.raises(MemoryError):
            for i in range(1100):
                host.assert_fact("cds-test:cap", {"sid": str(i), "t": "x"})
        assert i == 1024  # sessions 0..1023 live, the 1,025th fails
