"""Soak test of the CDS Hooks service: one server, SOAK_MINUTES of mixed traffic.

    python benchmarks/soak_service.py                  # 30 minutes
    SOAK_MINUTES=2 python benchmarks/soak_service.py   # a smoke run

The service runs in its own process, as `cds serve` runs it (uvicorn, JWT verification on:
ES384, a fresh token per call), on a loopback port. SOAK_CLIENTS threads (default 3), each
with its own keep-alive httpx client, send as fast as the server answers a mix of

- valid calls (about 60%): order-sign, order-select and patient-view for the example patient
  and for generated patients (`cds synth`, anchored today), with full prefetch and a draft;
  discovery; feedback;
- invalid calls (about 25%): bad JSON, a body that is not an object, the wrong hook for the
  service, no context, no patientId, no draftOrders, prefetch values of the wrong shape,
  prefetch keys left out with no FHIR server (412) or with one that refuses connections,
  an unknown service, no token, an expired or badly signed or replayed token, a body over
  max_body_bytes;
- hostile calls (about 15%): 600 alternating opioid/benzodiazepine draft orders (over the
  300-record cap: 413), 290 of them (under the cap: the worst case the engine accepts),
  JSON nested 100,000 deep, a 4 MB string, unicode and control characters in ids.

Every minute it prints the requests, the answers by status, p50/p99 latency (of all calls and
of the valid ones) and the server's resident memory (VmRSS from /proc/<pid>/status). At the
end it checks: no 5xx and no transport error, no "unhandled" or "engine fault" line in the
server's log, and resident memory at the end grew less than SOAK_MAX_GROWTH (default 10%)
over its value at the end of the warm-up (minute 2; minute 1 for a 2-minute run). The
per-minute table is written to SOAK_REPORT (default out/soak-report.json). Exit status 0
when every check holds, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from serving import ISS, start_server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "patient-oxycodone-fentanyl.json"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
MAX_BODY = 5_000_000
HOOKS = ("order-sign", "order-select", "patient-view")

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "3"))
MAX_GROWTH = float(os.environ.get("SOAK_MAX_GROWTH", "0.10"))
REPORT = Path(os.environ.get("SOAK_REPORT", str(ROOT / "out" / "soak-report.json")))
MINUTE = float(os.environ.get("SOAK_MINUTE_SECONDS", "60"))  # shorter only to test the script

DRAFTS = [  # (RxNorm, text, unit, times a day)
    ("197591", "diazepam 5 MG Oral Tablet", "tablet", 2),
    ("308048", "alprazolam 0.5 MG Oral Tablet", "tablet", 2),
    ("1049683", "oxycodone hydrochloride 10 MG Oral Tablet", "tablet", 4),
    ("849561", "12 HR tramadol hydrochloride 150 MG Extended Release Oral Tablet", "tablet", 1),
    ("310431", "gabapentin 300 MG Oral Capsule", "capsule", 3),
    ("312938", "sertraline 100 MG Oral Tablet", "tablet", 1),
    ("314076", "lisinopril 10 MG Oral Tablet", "tablet", 1),
]
OPIOID = ("1049683", "oxycodone hydrochloride 10 MG Oral Tablet", "tablet", 4)
BENZO = ("308048", "alprazolam 0.5 MG Oral Tablet", "tablet", 2)


# --- requests ------------------------------------------------------------------------------

def order(rid: str, pid: str, drug: tuple[str, str, str, int], status: str = "draft"
          ) -> dict[str, Any]:
    code, text, unit, per_day = drug
    return {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
            "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": code,
                                                      "display": text}], "text": text},
            "authoredOn": date.today().isoformat(),
            "dosageInstruction": [{"timing": {"repeat": {"frequency": per_day, "period": 1,
                                                         "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1, "unit": unit}}]}]}


def searchset(rs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]}


@dataclass
class Chart:
    pid: str
    prefetch: dict[str, Any]


def chart(pid: str, resources: list[dict[str, Any]]) -> Chart:
    """The prefetch an EHR sends for this patient's records."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by.setdefault(r["resourceType"], []).append(r)

    def lab(codes: set[str]) -> dict[str, Any] | None:
        found = [o for o in by.get("Observation", [])
                 if any(c.get("code") in codes for c in o.get("code", {}).get("coding", []))]
        return searchset(found[-1:]) if found else None

    patient = (by.get("Patient") or [{"resourceType": "Patient", "id": pid}])[0]
    return Chart(pid, {
        "patient": patient,
        "medications": searchset([r for r in by.get("MedicationRequest", [])
                                  if r.get("status") == "active"]),
        "dispenses": searchset(by.get("MedicationDispense", [])),
        "conditions": searchset(by.get("Condition", [])),
        "weight": lab({"29463-7", "3141-9"}), "creatinine": lab({"2160-0", "14682-9"}),
        "egfr": lab({"98979-8", "62238-1", "33914-3"}),
        "procedures": None, "encounters": None, "labs": None, "pdmp": None, "careplans": None,
        "servicerequests": None})


def load_charts(folder: Path) -> list[Chart]:
    """The example patient, and patients generated by `cds synth` (anchored today, so their
    orders are current for the service's clock)."""
    from cds.synth import write_panel

    example = json.loads(EXAMPLE.read_text())
    charts = [chart("oxy-fent-1", [e["resource"] for e in example["entry"]])]
    write_panel(200, folder, seed=11, anchor=date.today(), dirty=0.02)
    meds = {}
    by: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.ndjson")):
        for line in path.read_text().split("\n"):
            try:
                res = json.loads(line)
            except json.JSONDecodeError:
                continue  # synth writes a few truncated lines on purpose (the panel's test)
            if res.get("resourceType") == "Medication":
                meds[f"Medication/{res.get('id')}"] = res
                continue
            ref = res.get("subject", {}).get("reference") if res.get("resourceType") != "Patient" \
                else f"Patient/{res.get('id')}"
            if isinstance(ref, str):
                by.setdefault(ref.removeprefix("Patient/"), []).append(res)
    for pid, rs in sorted(by.items()):
        used = {r.get("medicationReference", {}).get("reference") for r in rs}
        c = chart(pid, rs)
        # the medications a request refers to, as an EHR includes them in the search result
        c.prefetch["medications"]["entry"] += [{"resource": meds[u]} for u in sorted(
            x for x in used if x in meds)]
        charts.append(c)
    return charts


def hook_body(c: Chart, hook: str, drafts: list[dict[str, Any]] | None = None,
              rng: random.Random | None = None) -> dict[str, Any]:
    rng = rng or random.Random()
    context: dict[str, Any] = {"userId": "Practitioner/soak", "patientId": c.pid,
                               "encounterId": "enc-1"}
    if hook != "patient-view":
        ds = drafts if drafts is not None else [order(f"draft-{rng.randrange(10**6)}", c.pid,
                                                      rng.choice(DRAFTS))]
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": d} for d in ds]}
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d['id']}" for d in ds]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": c.prefetch}


@dataclass
class Call:
    kind: str  # valid | invalid | hostile
    name: str
    method: str
    path: str
    body: bytes | None = None
    token: str = "good"  # good | none | expired | forged | replay


class Mix:
    """The traffic: each call built fresh (new hookInstance, new draft) from a seeded RNG."""

    def __init__(self, charts: list[Chart], seed: int) -> None:
        self.charts = charts
        self.rng = random.Random(seed)
        self.table: list[tuple[float, Callable[[], Call]]] = [
            # valid
            (14, lambda: self.hook("order-sign", self.charts[0])),
            (6, lambda: self.hook("order-select", self.charts[0])),
            (8, lambda: self.hook("patient-view", self.charts[0])),
            (12, lambda: self.hook("order-sign", self.generated())),
            (4, lambda: self.hook("order-select", self.generated())),
            (10, lambda: self.hook("patient-view", self.generated())),
            (3, lambda: Call("valid", "discovery", "GET", "/cds-services")),
            (3, self.feedback),
            # invalid
            (2, lambda: self.raw("invalid", "bad-json", b'{"hook": "order-sign", "context": {')),
            (1, lambda: self.raw("invalid", "not-object", b'["order-sign"]')),
            (2, lambda: self.edit("wrong-hook", lambda b: b.update(hook="patient-view"))),
            (2, lambda: self.edit("no-context", lambda b: b.pop("context"))),
            (2, lambda: self.edit("no-patient", lambda b: b["context"].pop("patientId"))),
            (2, lambda: self.edit("no-drafts", lambda b: b["context"].pop("draftOrders"))),
            (3, self.bad_prefetch),
            (2, lambda: self.edit("missing-keys-412", lambda b: b.update(
                prefetch={"patient": b["prefetch"]["patient"]}))),
            (1, lambda: self.edit("fhir-server-refuses", lambda b: b.update(
                prefetch={"patient": b["prefetch"]["patient"]},
                fhirServer="http://127.0.0.1:9/fhir",
                fhirAuthorization={"access_token": "t", "token_type": "Bearer",
                                   "expires_in": 60, "scope": "patient/*.read",
                                   "subject": "cds"}))),
            (1, lambda: Call("invalid", "unknown-service", "POST", "/cds-services/nope",
                             json.dumps(self.body("order-sign")).encode())),
            (1, lambda: self.token_call("no-token", "none")),
            (1, lambda: self.token_call("expired-token", "expired")),
            (1, lambda: self.token_call("forged-token", "forged")),
            (1, lambda: self.token_call("replayed-token", "replay")),
            (0.3, lambda: self.raw("invalid", "oversized", b'{"hook": "' + b"x" * (MAX_BODY + 10)
                                   + b'"}')),
            # hostile
            (1.5, lambda: self.alternating(600)),
            (1, lambda: self.alternating(290)),
            (2, lambda: self.raw("hostile", "nested-100k", b"[" * 100_000 + b"]" * 100_000)),
            (2, lambda: self.raw("hostile", "nested-object",
                                 b'{"hook": "order-sign", "context": ' + b'{"a": ' * 5000
                                 + b"1" + b"}" * 5000 + b"}")),
            (0.7, lambda: self.edit("huge-string", lambda b: b["context"].update(
                userId="x" * 4_000_000))),
            (3, self.unicode),
        ]
        self.weights = [w for w, _ in self.table]

    def next(self) -> Call:
        _, make = self.rng.choices(self.table, self.weights)[0]
        return make()

    def generated(self) -> Chart:
        return self.rng.choice(self.charts[1:])

    def body(self, hook: str, c: Chart | None = None) -> dict[str, Any]:
        return hook_body(c or self.charts[0], hook, rng=self.rng)

    def hook(self, hook: str, c: Chart) -> Call:
        return Call("valid", hook, "POST", f"/cds-services/{hook}",
                    json.dumps(hook_body(c, hook, rng=self.rng)).encode())

    def raw(self, kind: str, name: str, data: bytes) -> Call:
        return Call(kind, name, "POST", f"/cds-services/{self.rng.choice(HOOKS)}", data)

    def edit(self, name: str, change: Callable[[dict[str, Any]], Any],
             kind: str = "invalid") -> Call:
        body = json.loads(json.dumps(self.body("order-sign", self.rng.choice(self.charts[:5]))))
        change(body)
        return Call(kind, name, "POST", "/cds-services/order-sign", json.dumps(body).encode())

    def bad_prefetch(self) -> Call:
        key = self.rng.choice(["medications", "dispenses", "patient", "weight", "conditions"])
        value = self.rng.choice([
            "MedicationRequest?patient=1", ["a", "list"], 42, {"resourceType": 7},
            {"resourceType": "Bundle", "entry": "not an array"},
            {"resourceType": "Bundle", "entry": [{"resource": {"id": "no-type"}}]},
            {"resourceType": "Bundle", "entry": [{"resource": {
                "resourceType": "MedicationRequest", "id": "m", "subject": {"reference": 5}}}]},
        ])
        return self.edit(f"bad-prefetch-{key}", lambda b: b["prefetch"].__setitem__(key, value))

    def token_call(self, name: str, token: str) -> Call:
        call = self.hook("order-sign", self.charts[0])
        return Call("invalid", name, call.method, call.path, call.body, token)

    def alternating(self, n: int) -> Call:
        c = self.charts[0]
        drafts = [order(f"d{i}", c.pid, OPIOID if i % 2 else BENZO) for i in range(n)]
        body = hook_body(c, "order-sign", drafts, self.rng)
        return Call("hostile", f"alternating-{n}", "POST", "/cds-services/order-sign",
                    json.dumps(body).encode())

    def unicode(self) -> Call:
        weird = self.rng.choice(["患者-١٢٣", "\u202epatient", "p\u0000x", "💊" * 50,
                                 "Patient/" + "é" * 300, "\ud800"])
        body = self.body("order-sign", self.charts[0])
        where = self.rng.choice(["patientId", "userId", "draft-id", "hookInstance"])
        if where == "hookInstance":
            body["hookInstance"] = weird
        elif where == "draft-id":
            body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = weird
        else:
            body["context"][where] = weird
        # ensure_ascii: a lone surrogate travels as its \\ud800 escape
        return Call("hostile", f"unicode-{where}", "POST", "/cds-services/order-sign",
                    json.dumps(body).encode())

    def feedback(self) -> Call:
        hook = self.rng.choice(HOOKS)
        body = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                              "overrideReason": {"reason": {
                                  "system": "urn:cds:CodeSystem:override-reason",
                                  "code": "patient-monitored"}, "userComment": "soak"},
                              "outcomeTimestamp": "2026-11-26T10:00:00Z"}]}
        return Call("valid", "feedback", "POST", f"/cds-services/{hook}/feedback",
                    json.dumps(body).encode())


# --- the server ------------------------------------------------------------------------------

def start_soak_server(folder: Path) -> tuple[subprocess.Popen[bytes], str, Any, Path]:
    return start_server(folder, f"fhir_timeout: 0.5\nmax_body_bytes: {MAX_BODY}\n"
                                "fhir_servers: ['http://127.0.0.1:9/']\n")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- load ------------------------------------------------------------------------------------

@dataclass
class Sample:
    at: float
    kind: str
    name: str
    status: int  # 0: a transport error
    ms: float


@dataclass
class Shared:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: Counter[str] = field(default_factory=Counter)


class Tokens:
    def __init__(self, key: Any, base: str) -> None:
        self.key = key
        self.base = base
        self.other = ec.generate_private_key(ec.SECP384R1())
        self.replayed: dict[str, str] = {}

    def header(self, call: Call) -> dict[str, str]:
        if call.token == "none":
            return {}
        aud = self.base + call.path
        now = int(time.time())
        claims = {"iss": ISS, "aud": aud, "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}
        key = self.key
        if call.token == "expired":
            claims.update(iat=now - 600, exp=now - 300)
        elif call.token == "forged":
            key = self.other
        elif call.token == "replay":
            if aud not in self.replayed:
                self.replayed[aud] = jwt.encode(claims, key, algorithm="ES384",
                                                headers={"kid": "k1", "typ": "JWT"})
            return {"Authorization": f"Bearer {self.replayed[aud]}"}
        token = jwt.encode(claims, key, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})
        return {"Authorization": f"Bearer {token}"}


def client_loop(base: str, key: Any, charts: list[Chart], seed: int, shared: Shared) -> None:
    mix = Mix(charts, seed)
    tokens = Tokens(key, base)
    with httpx.Client(base_url=base, timeout=30) as client:
        while not shared.stop.is_set():
            call = mix.next()
            headers = {"Content-Type": "application/json", **tokens.header(call)}
            t0 = time.perf_counter()
            try:
                if call.method == "GET":
                    r = client.get(call.path, headers=headers)
                else:
                    r = client.post(call.path, content=call.body, headers=headers)
                status = r.status_code
                if status >= 400 and status != 500:
                    data = r.json()  # every error is JSON with error and message
                    if not (isinstance(data, dict) and data.get("error") and data.get("message")):
                        with shared.lock:
                            shared.errors[f"{call.name}: {status} without error/message"] += 1
            except (httpx.HTTPError, ValueError) as e:
                status = 0
                with shared.lock:
                    shared.errors[f"{call.name}: {type(e).__name__}"] += 1
            ms = (time.perf_counter() - t0) * 1000
            with shared.lock:
                shared.samples.append(Sample(time.monotonic(), call.kind, call.name, status, ms))


def pct(data: list[float], p: float) -> float:
    if not data:
        return float("nan")
    s = sorted(data)
    k = (len(s) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def minute_row(n: int, samples: list[Sample], rss: float, rss_max: float) -> dict[str, Any]:
    by_status = Counter(s.status for s in samples)
    valid = [s.ms for s in samples if s.kind == "valid" and s.status == 200]
    return {"minute": n, "requests": len(samples),
            "by_status": {str(k): v for k, v in sorted(by_status.items())},
            "5xx": sum(v for k, v in by_status.items() if k >= 500),
            "transport_errors": by_status.get(0, 0),
            "p50_ms": round(pct([s.ms for s in samples], 0.5), 2),
            "p99_ms": round(pct([s.ms for s in samples], 0.99), 2),
            "valid_p50_ms": round(pct(valid, 0.5), 2), "valid_p99_ms": round(pct(valid, 0.99), 2),
            "rss_mb": round(rss, 1), "rss_max_mb": round(rss_max, 1)}


def fmt(row: dict[str, Any]) -> str:
    statuses = " ".join(f"{k}:{v}" for k, v in row["by_status"].items())
    return (f"min {row['minute']:>3}  req {row['requests']:>6}  [{statuses}]  "
            f"p50 {row['p50_ms']:.1f}  p99 {row['p99_ms']:.1f}  valid p99 "
            f"{row['valid_p99_ms']:.1f} ms  RSS {row['rss_mb']:.1f} MB")


def main() -> int:
    minutes = max(1, round(MINUTES))
    with tempfile.TemporaryDirectory(prefix="cds-soak-") as tmp:
        folder = Path(tmp)
        print("generating patients ...", flush=True)
        charts = load_charts(folder / "panel")
        proc, base, key, log = start_soak_server(folder)
        print(f"service pid {proc.pid} at {base}; {minutes} min, {CLIENTS} clients, "
              f"{len(charts)} charts, {os.cpu_count()} CPUs; RSS at start "
              f"{rss_mb(proc.pid):.1f} MB", flush=True)
        shared = Shared()
        threads = [threading.Thread(target=client_loop, args=(base, key, charts, 1000 + i, shared),
                                    daemon=True) for i in range(CLIENTS)]
        start = time.monotonic()
        for t in threads:
            t.start()
        rows: list[dict[str, Any]] = []
        names: Counter[tuple[str, int]] = Counter()
        try:
            for n in range(1, minutes + 1):
                end = start + n * MINUTE
                rss_max = 0.0
                while (now := time.monotonic()) < end:
                    if proc.poll() is not None:
                        raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
                    rss_max = max(rss_max, rss_mb(proc.pid))
                    time.sleep(min(5.0, max(0.0, end - now)))
                with shared.lock:
                    samples, shared.samples = shared.samples, []
                rss = rss_mb(proc.pid)
                row = minute_row(n, samples, rss, max(rss_max, rss))
                names.update((s.name, s.status) for s in samples)
                rows.append(row)
                print(fmt(row), flush=True)
        finally:
            shared.stop.set()
            for t in threads:
                t.join(40)
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server_log = log.read_text(errors="replace")
    faults = [line for line in server_log.splitlines()
              if "unhandled" in line or "engine fault" in line]
    warm = min(2, minutes - 1) if minutes > 1 else 0
    base_rss = rows[warm - 1]["rss_mb"] if warm else None
    growth = (rows[-1]["rss_mb"] - base_rss) / base_rss if base_rss else 0.0
    checks = {
        "no 5xx": sum(r["5xx"] for r in rows) == 0,
        "no transport errors": sum(r["transport_errors"] for r in rows) == 0
                               and not shared.errors,
        "no unhandled errors in the server log": not faults,
        f"RSS growth after minute {warm} < {MAX_GROWTH:.0%}": growth < MAX_GROWTH,
    }
    report = {"date": date.today().isoformat(), "minutes": minutes, "clients": CLIENTS,
              "cpus": os.cpu_count(), "warmup_minute": warm, "rss_growth": round(growth, 4),
              "requests": sum(r["requests"] for r in rows), "rows": rows,
              "calls": {f"{name} -> {status}": c for (name, status), c in sorted(names.items())},
              "client_errors": dict(shared.errors), "server_faults": faults[:20],
              "checks": checks}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['requests']} requests; RSS {rows[0]['rss_mb']:.1f} -> {rows[-1]['rss_mb']:.1f}"
          f" MB ({growth:+.1%} since minute {warm}); report: {REPORT}")
    for what, c in sorted(report["calls"].items()):
        print(f"  {what}: {c}")
    for what, c in shared.errors.items():
        print(f"  client error: {what} x{c}")
    for line in faults[:10]:
        print(f"  server: {line}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
