"""`order-sign` latency over HTTP for a patient with 20 active medications, and the engine's
share of it, measured in the same run.

    /tmp/venv/bin/python -m pytest benchmarks/bench_service.py --benchmark-only -s

The service runs in its own process (uvicorn, as `cds serve` runs it) with JWT verification
on (ES384, a fresh token per call); the client is httpx with keep-alive. Every request
carries the full prefetch (no FHIR server round trips), so what is measured is the service:
auth, JSON, patient assembly, the engine, cards. The engine-only time is the same patient
and draft through `Engine.evaluate` in this process; the Server-Timing header gives the
engine's time inside each HTTP call too. The goal is p99 < 25 ms on a 2-core machine (the
specification asks for "on the order of 500 ms").
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import jwt
import pytest
from serving import ISS, start_server

from cds.engine.evaluator import load_engine
from cds.io import fhir_medication_order
from cds.service.assemble import assemble

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
PID = "bench-20"

#: (RxNorm code or None, text, dose, unit, times a day, as needed)
MEDS = [
    ("1049683", "oxycodone hydrochloride 10 MG Oral Tablet", 1, "tablet", 4, False),
    ("308048", "alprazolam 0.5 MG Oral Tablet", 1, "tablet", 2, False),
    ("312938", "sertraline 100 MG Oral Tablet", 1, "tablet", 1, False),
    ("310431", "gabapentin 300 MG Oral Capsule", 1, "capsule", 3, False),
    ("314076", "lisinopril 10 MG Oral Tablet", 1, "tablet", 1, False),
    ("617312", "atorvastatin 10 MG Oral Tablet", 1, "tablet", 1, False),
    ("309362", "clopidogrel 75 MG Oral Tablet", 1, "tablet", 1, False),
    ("855288", "warfarin sodium 1 MG Oral Tablet", 1, "tablet", 1, False),
    ("856373", "trazodone hydrochloride 100 MG Oral Tablet", 1, "tablet", 1, False),
    ("856783", "amitriptyline hydrochloride 10 MG Oral Tablet", 1, "tablet", 1, False),
    ("854873", "zolpidem tartrate 10 MG Oral Tablet", 1, "tablet", 1, False),
    ("1049630", "diphenhydramine hydrochloride 25 MG Oral Tablet", 1, "tablet", 4, True),
    ("198222", "spironolactone 100 MG Oral Tablet", 1, "tablet", 1, False),
    ("310429", "furosemide 20 MG Oral Tablet", 1, "tablet", 1, False),
    ("283672", "citalopram 10 MG Oral Tablet", 1, "tablet", 1, False),
    ("721791", "24 HR quetiapine 200 MG Extended Release Oral Tablet", 1, "tablet", 1, False),
    (None, "metformin hydrochloride 500 MG Oral Tablet", 1, "tablet", 2, False),
    (None, "amlodipine 5 MG Oral Tablet", 1, "tablet", 1, False),
    (None, "omeprazole 20 MG Delayed Release Oral Capsule", 1, "capsule", 1, False),
    (None, "levothyroxine sodium 0.05 MG Oral Tablet", 1, "tablet", 1, False),
]
DRAFT = ("849561", "12 HR tramadol hydrochloride 150 MG Extended Release Oral Tablet", 1,
         "tablet", 1, False)


def _request(i: int, med: tuple[Any, ...], status: str) -> dict[str, Any]:
    code, text, dose, unit, per_day, prn = med
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [{"system": RX, "code": code, "display": text}]
    return {
        "resourceType": "MedicationRequest", "id": f"{'draft' if status == 'draft' else 'mr'}-{i}",
        "status": status, "intent": "order", "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PID}"}, "authoredOn": "2026-09-01",
        "requester": {"display": "Dr A"},
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
            "asNeededBoolean": prn,
            "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit}}]}],
        "dispenseRequest": {"quantity": {"value": 30 * per_day, "unit": unit},
                            "expectedSupplyDuration": {"value": 30, "unit": "days",
                                                       "system": "http://unitsofmeasure.org",
                                                       "code": "d"}},
    }


def _obs(oid: str, code: str, value: float, unit: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{PID}"}, "effectiveDateTime": "2026-10-15",
        "valueQuantity": {"value": value, "unit": unit}}}]}


def hook_body() -> dict[str, Any]:
    meds = [_request(i, m, "active") for i, m in enumerate(MEDS)]
    return {
        "hook": "order-sign", "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": PID,
                    "draftOrders": {"resourceType": "Bundle",
                                    "entry": [{"resource": _request(0, DRAFT, "draft")}]}},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": PID, "gender": "female",
                        "birthDate": "1948-04-02"},
            "medications": {"resourceType": "Bundle", "type": "searchset",
                            "entry": [{"resource": m} for m in meds]},
            "dispenses": None,
            "weight": _obs("w", "29463-7", 62, "kg"),
            "creatinine": _obs("c", "2160-0", 1.6, "mg/dL"),
            "egfr": _obs("e", "98979-8", 33, "mL/min/1.73m2"),
        },
    }


def _pct(data: list[float], p: float) -> float:
    s = sorted(data)
    k = (len(s) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


RESULTS: dict[str, dict[str, float]] = {}


def _summary(name: str, seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    out = {"n": len(ms), "p50_ms": _pct(ms, 0.5), "p99_ms": _pct(ms, 0.99),
           "mean_ms": statistics.fmean(ms), "max_ms": max(ms)}
    RESULTS[name] = out
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    proc, base, key, _ = start_server(tmp_path_factory.mktemp("bench"))
    try:
        yield base, key
    finally:
        proc.terminate()
        proc.wait(10)


def _tokens(key: Any, aud: str, n: int) -> Iterator[str]:
    now = int(time.time())
    for _ in range(n):
        yield jwt.encode({"iss": ISS, "aud": aud, "iat": now, "exp": now + 300,
                          "jti": uuid.uuid4().hex}, key, algorithm="ES384",
                         headers={"kid": "k1", "typ": "JWT"})


def test_engine_only(benchmark: Any) -> None:
    """The engine's share: the same patient and draft, evaluated in-process."""
    engine = load_engine()
    body = hook_body()
    today = date.today()
    built = assemble(PID, body["prefetch"], body["context"], with_drafts=True)
    assert len(built.patient.medications) == 20
    result = engine.evaluate(built.patient, as_of=today, draft_orders=built.drafts)
    assert result.alerts
    times: list[float] = []

    def once() -> None:
        t0 = time.perf_counter()
        engine.evaluate(built.patient, as_of=today, draft_orders=built.drafts)
        times.append(time.perf_counter() - t0)

    benchmark.pedantic(once, rounds=2000, warmup_rounds=50, iterations=1)
    stats = _summary("engine", times[50:] if len(times) > 2000 else times)
    benchmark.extra_info.update(stats)
    # parsing the FHIR of 20 orders + the draft, separately (part of the HTTP path)
    t0 = time.perf_counter()
    for _ in range(200):
        assemble(PID, body["prefetch"], body["context"], with_drafts=True)
        fhir_medication_order(body["context"]["draftOrders"]["entry"][0]["resource"], {})
    RESULTS["assemble"] = {"mean_ms": (time.perf_counter() - t0) / 200 * 1000}


def test_order_sign_over_http(benchmark: Any, server: tuple[str, Any]) -> None:
    base, key = server
    path = "/cds-services/order-sign"
    rounds = 2000
    tokens = _tokens(key, base + path, rounds + 200)
    payload = json.dumps(hook_body()).encode()
    times: list[float] = []
    engine_ms: list[float] = []
    n_cards: list[int] = []
    with httpx.Client(base_url=base, timeout=10) as client:
        def once() -> None:
            headers = {"Authorization": f"Bearer {next(tokens)}",
                       "Content-Type": "application/json"}
            t0 = time.perf_counter()
            r = client.post(path, content=payload, headers=headers)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            timing = dict(part.strip().split(";dur=") for part in
                          r.headers["server-timing"].split(","))
            engine_ms.append(float(timing["engine"]))
            n_cards.append(len(r.json()["cards"]))

        benchmark.pedantic(once, rounds=rounds, warmup_rounds=100, iterations=1)
    http = _summary("http", times[100:])
    inside = _summary("engine-in-server", [m / 1000 for m in engine_ms[100:]])
    benchmark.extra_info.update(http)
    benchmark.extra_info["engine_in_server_p50_ms"] = inside["p50_ms"]
    benchmark.extra_info["cards"] = n_cards[-1]
    engine = RESULTS.get("engine")
    lines = [
        "",
        f"order-sign over HTTP, 20 active medications + 1 draft, {n_cards[-1]} cards, "
        f"{len(payload) // 1024} KiB request, {os.cpu_count()} CPUs:",
        f"  HTTP round trip      p50 {http['p50_ms']:.2f} ms   p99 {http['p99_ms']:.2f} ms   "
        f"max {http['max_ms']:.2f} ms",
        f"  engine in the server p50 {inside['p50_ms']:.2f} ms   p99 {inside['p99_ms']:.2f} ms "
        f"(Server-Timing)",
    ]
    if engine:
        lines.append(f"  engine only          p50 {engine['p50_ms']:.2f} ms   "
                     f"p99 {engine['p99_ms']:.2f} ms (same run, in-process)")
        lines.append(f"  p99 HTTP / engine-only = {http['p99_ms'] / engine['p99_ms']:.1f}x;  "
                     f"engine share of p50 = {engine['p50_ms'] / http['p50_ms']:.0%}")
        benchmark.extra_info["p99_ratio_http_over_engine"] = http["p99_ms"] / engine["p99_ms"]
    if "assemble" in RESULTS:
        lines.append(f"  FHIR -> Patient (assemble) mean {RESULTS['assemble']['mean_ms']:.2f} ms")
    lines.append(f"  goal p99 < 25 ms: {'met' if http['p99_ms'] < 25 else 'NOT met'}")
    print("\n".join(lines))
