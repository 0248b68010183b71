"""Fuzz campaign over every door input comes through: the FHIR readers (strict and lenient),
the native reader, file reading, the CDS Hooks request path (assemble, and the service app over
ASGI) and the pack loader.

Inputs are real records (examples/, the 200-patient sample panel, the shipped packs) and
structures generated from the FHIR shapes the readers declare (cds/io/fhir_shapes.py), then
mutated (tests/jsonmutation.py: fields replaced by arbitrary JSON or removed; entries
duplicated; YAML lines cut, doubled, re-indented).

Properties, on every input:
- never an exception other than the documented ones (InputError, PackErrors, an HTTP 4xx
  with `error` and `message`; never a 5xx);
- every error names its place: an InputError a `field` or a `record` (or the file, when the
  whole document is not an object), a PackError its file and a line or a field, a 400 its
  `field` when the body is a JSON object;
- nothing valid is dropped: a record the strict reader accepts is kept by the lenient builder,
  and a native patient read back from its own JSON is the same patient;
- the same input gives the same output (read twice, evaluated twice, posted twice), and the
  reader leaves its input untouched;
- the engine never raises on a patient a reader accepted, and its result is plain JSON.

Budget (docs/testing.md): the default run (`pytest`, what CI runs) gives each property a few
dozen examples, the whole file in well under a minute; `pytest -m fuzz` runs the same
properties for CDS_FUZZ_SECONDS in all (default 1800), shared by weight, in time-boxed rounds
of fresh random examples, and writes the examples run per property to CDS_FUZZ_REPORT
(default out/fuzz-report.json).

Known bugs (see KNOWN): each has a deterministic reproducer below marked xfail(strict=True);
the properties let that one message through so they keep checking everything else. When a
bug is fixed its reproducer passes, strict xfail turns that into a failure, and the entry in
KNOWN and the xfail mark are removed together.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import shutil
import tempfile
import time
import traceback
import types
import typing
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonmutation import json_paths, json_values, mutated
from typing_extensions import is_typeddict

import cds.io.fhir_shapes as shapes
from cds.engine.evaluator import load_engine
from cds.errors import InputError, PackError, PackErrors, TooManyMedications
from cds.io import Record, build_patient, patient_from_fhir, patient_from_native, read_patient
from cds.io._fhir import label
from cds.io.fhir import LOINC_KINDS, bundle_entries
from cds.knowledge.store import default_knowledge
from cds.patient import Patient
from cds.rules.loader import Pack, load_pack
from cds.service.assemble import Assembled, BadRequest, assemble
from cds.service.cards import check_card
from cds.service.prefetch import templates
from cds.vocabulary import SNOMED_ROUTES

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RULESETS = ROOT / "rulesets"
AS_OF = date(2026, 11, 26)
SRC = "fuzz-input.json"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"

#: Known bugs: messages of errors that do not name their place yet. Each has a reproducer
#: below (xfail, strict); remove the entry when the reproducer starts passing.
KNOWN: dict[str, re.Pattern[str]] = {}


def known(message: str) -> str | None:
    return next((name for name, pattern in KNOWN.items() if pattern.search(message)), None)


# --- budget ---------------------------------------------------------------------------------

#: Examples per property in the default (short) run, and each property's share of the long run.
SHORT = {"fhir_mutated": 250, "fhir_generated": 250, "native": 250, "read_file": 100,
         "assemble": 200, "service": 250, "pack": 120}
WEIGHT = {"fhir_mutated": 4, "fhir_generated": 4, "native": 2, "read_file": 1,
          "assemble": 3, "service": 4, "pack": 3}
QUIET = list(HealthCheck)


@dataclass
class Budget:
    long: bool
    seconds: float
    ran: dict[str, int] = field(default_factory=dict)
    took: dict[str, float] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)  # this process, after each property

    def run(self, name: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], None]) -> None:
        """Run `check` on examples of `strategy`: SHORT[name] of them, or, in the long run,
        rounds of fresh examples until this property's share of the time is used."""
        count = [0]

        def body(example: Any) -> None:
            count[0] += 1
            check(example)

        # one example database key per property (the key is derived from the function)
        body.__name__ = body.__qualname__ = f"fuzz_{name}"
        t0 = time.monotonic()
        try:
            if not self.long:
                settings(max_examples=SHORT[name], deadline=None, suppress_health_check=QUIET)(
                    given(strategy)(body))()
            else:
                self._long(name, strategy, body, count, t0)
        finally:
            self.ran[name] = self.ran.get(name, 0) + count[0]
            self.took[name] = self.took.get(name, 0.0) + time.monotonic() - t0
            self.rss_mb[name] = _rss_mb()
        if self.failures.get(name):
            raise AssertionError(f"{len(self.failures[name])} distinct failure(s) of {name}; "
                                 "the first:\n" + self.failures[name][0])

    def _long(self, name: str, strategy: st.SearchStrategy[Any], body: Callable[[Any], None],
              count: list[int], t0: float) -> None:
        """Rounds of fresh random examples until this property's share of the time is used.
        A failure (shrunk, saved in the example database) is recorded and the campaign goes
        on without the database, so one bug does not end the property's run; at most five
        distinct failures are kept."""
        end = t0 + self.seconds * WEIGHT[name] / sum(WEIGHT.values())
        chunk, database = 20, True
        seen: set[str] = set()
        while True:
            r0, n0 = time.monotonic(), count[0]
            try:
                settings(max_examples=chunk, deadline=None, suppress_health_check=QUIET,
                         **({} if database else {"database": None}))(given(strategy)(body))()
            except Exception as e:  # noqa: BLE001 - recorded, raised at the end
                text = "".join(traceback.format_exception(e))
                first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if first not in seen:
                    seen.add(first)
                    self.failures.setdefault(name, []).append(text[-6000:])
                database = False
                if len(seen) >= 5:
                    return
            left = end - time.monotonic()
            if left <= 0:
                return
            per = (time.monotonic() - r0) / max(1, count[0] - n0)
            chunk = max(10, min(100_000, int(min(left, 120) / per)))


def _rss_mb() -> float:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return float("nan")
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
    return round(int(kb) / 1024, 1)


def _long_run(markexpr: str) -> bool:
    """`-m fuzz` (or an expression that selects fuzz positively) runs the long budget."""
    expr = markexpr.strip()
    return bool(expr) and re.search(r"(?<!not )\bfuzz\b", expr) is not None \
        and not re.search(r"\bnot\s+fuzz\b", expr)


@pytest.fixture(scope="module")
def budget(request: pytest.FixtureRequest) -> Iterator[Budget]:
    long = _long_run(request.config.getoption("markexpr", "") or "")
    b = Budget(long, float(os.environ.get("CDS_FUZZ_SECONDS", "1800")))
    yield b
    if long:
        report = Path(os.environ.get("CDS_FUZZ_REPORT", str(ROOT / "out" / "fuzz-report.json")))
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({
            "date": date.today().isoformat(), "seconds": b.seconds,
            "examples": b.ran, "took_seconds": {k: round(v, 1) for k, v in b.took.items()},
            "total_examples": sum(b.ran.values()), "rss_mb_after": b.rss_mb,
            "failures": b.failures}, indent=2) + "\n")


def test_budget_modes() -> None:
    assert not _long_run("") and not _long_run("not slow") and not _long_run("not fuzz")
    assert _long_run("fuzz") and _long_run("fuzz and not slow")


# --- shared checks --------------------------------------------------------------------------

@functools.cache
def engine() -> Any:
    return load_engine()


_NO_DOC = object()


def assert_located(e: InputError, doc: Any = _NO_DOC) -> None:
    """An InputError names a field or a record; one about the whole document (not a JSON
    object at all) names the file."""
    assert e.message, repr(e)
    assert not e.message.startswith("unexpected shape ("), (
        f"a shape the checks missed: the net under the readers caught it, naming only the "
        f"resource: {e}")
    if e.field or e.record or known(e.message):
        return
    whole = doc is not _NO_DOC and not isinstance(doc, dict)
    assert whole and e.file, f"InputError names no field and no record: {e!s}"


def plain_json(value: Any, where: str = "result") -> None:
    """JSON a client can read: str keys, no NaN or infinity."""
    if isinstance(value, float):
        assert math.isfinite(value), f"{where} is {value}"
    elif isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{where} has a key {k!r}"
            plain_json(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            plain_json(v, f"{where}[{i}]")


def evaluate_twice(patient: Patient, drafts: Any = ()) -> None:
    """The engine does not raise on a patient a reader accepted; twice, the same result."""
    try:
        first = engine().evaluate(patient, as_of=AS_OF, draft_orders=list(drafts))
    except TooManyMedications as e:  # documented: bounded work per patient
        assert e.message
        return
    d1 = first.to_dict()
    plain_json(d1)
    orjson.dumps(d1)
    d2 = engine().evaluate(patient, as_of=AS_OF, draft_orders=list(drafts)).to_dict()
    assert d1 == d2


def records_of(doc: Any) -> list[Record]:
    return [Record(res, url, where) for url, res, where in bundle_entries(doc)]


def untouched(before: str, doc: Any) -> None:
    assert repr(doc) == before, "the reader changed its input"


# --- real records ---------------------------------------------------------------------------

def _ndjson(name: str) -> list[dict[str, Any]]:
    """The records of one NDJSON file of the sample panel; its deliberately broken lines (the
    panel's quarantine demonstration) are left out: JSON syntax is fuzzed elsewhere."""
    out = []
    for line in (EXAMPLES / "panel" / f"{name}.ndjson").read_text().split("\n"):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _panel_bundles() -> list[dict[str, Any]]:
    """The sample panel's patients, one collection Bundle each (with the Medications their
    orders refer to)."""
    meds = {f"Medication/{m['id']}": m for m in _ndjson("Medication")}
    by: dict[str, list[dict[str, Any]]] = {}
    for name in ("Condition", "MedicationRequest", "MedicationDispense", "Observation"):
        for res in _ndjson(name):
            subject = res.get("subject") if isinstance(res.get("subject"), dict) else {}
            by.setdefault(str(subject.get("reference")), []).append(res)
    out = []
    for p in _ndjson("Patient"):
        rs = by.get(f"Patient/{p['id']}", [])
        refs = {r.get("medicationReference", {}).get("reference") for r in rs}
        entries = [{"fullUrl": f"urn:uuid:{p['id']}", "resource": p}]
        entries += [{"resource": meds[ref]} for ref in sorted(r for r in refs if r in meds)]
        entries += [{"resource": r} for r in rs]
        out.append({"resourceType": "Bundle", "type": "collection", "entry": entries})
    return out


EXAMPLE = json.loads((EXAMPLES / "patient-oxycodone-fentanyl.json").read_text())
NATIVE_EXAMPLE = json.loads((EXAMPLES / "patient-native.json").read_text())
PANEL = _panel_bundles()
REAL_BUNDLES = [EXAMPLE, *PANEL]


def _concepts() -> list[dict[str, Any]]:
    """Every medication concept of the sample panel: a real vocabulary for generated orders."""
    seen: dict[str, dict[str, Any]] = {}
    for name in ("MedicationRequest", "MedicationDispense", "Medication"):
        for res in _ndjson(name):
            c = res.get("medicationCodeableConcept") or res.get("code")
            if isinstance(c, dict):
                seen.setdefault(json.dumps(c, sort_keys=True), c)
    for e in EXAMPLE["entry"]:
        c = e["resource"].get("medicationCodeableConcept")
        if c:
            seen.setdefault(json.dumps(c, sort_keys=True), c)
    return [seen[k] for k in sorted(seen)]


def _value_set_codings() -> list[dict[str, Any]]:
    """Codes the guideline rules look for (value sets): conditions, procedures, labs..."""
    out = []
    for path in sorted((ROOT / "cds" / "knowledge" / "data" / "valuesets").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for c in (doc.get("codes") or [])[:6]:
            out.append({k: str(c[k]) for k in ("system", "code", "display") if c.get(k)})
    return out


MED_CONCEPTS = _concepts()
VS_CODINGS = _value_set_codings()
MEDICATIONS = [m for m in _ndjson("Medication")]
TEXTS = sorted({c["text"] for c in MED_CONCEPTS if isinstance(c.get("text"), str)})


# --- FHIR generated from the shapes ---------------------------------------------------------

#: (mostly good, sometimes bad) values of the strings the readers interpret
DATES = (["2026-10-01", "2026-11-20T10:00:00Z", "2026-11-25T23:59:59+14:00", "1950", "1950-03",
          "2025-11-27", "2026-08-29", "2026-06-01T08:30:00-05:00"],
         ["2026-02-30", "2026-13-01", "2026-11-26T25:00:00Z", "yesterday", "", " ",
          "0001-01-01", "9999-12-31", "2026-10-01T10:00"])
UNITS = (["mg", "mcg", "tablet", "capsule", "patch", "mL", "mcg/h", "spray", "{tablet}", "d",
          "h", "wk", "days", "mo"],
         ["ug", "g", "furlong", "", "1", "mg/h", "a", "min", "s", "kg"])
TIME_UNITS = (["h", "d", "wk", "mo", "a", "min", "s"], ["hour", "days", "week", "fortnight", ""])
STATUSES = (["active", "on-hold", "draft", "completed", "stopped", "entered-in-error",
             "cancelled", "final", "amended", "preliminary", "intended", "unknown", "not-taken",
             "declined", "not-done", "revoked", "in-progress"], ["ACTIVE", "", "?"])
IDS = (["m1", "m2", "m3", "o1", "o2", "c1", "e1", "med1"], ["x/y", "  ", "p1", ""])
REFS = (["Patient/p1", "urn:uuid:p1", "https://ehr.example/fhir/Patient/p1", "Medication/med1",
         "#med1", "MedicationRequest/m1", "Condition/c1", "Practitioner/dr-1",
         *[f"Medication/{m['id']}" for m in MEDICATIONS[:5]]],
        ["Patient/p2", "urn:uuid:zz", "Medication/nope", ""])
CODES = ([*LOINC_KINDS, *SNOMED_ROUTES, "1049683", "245134", "308048", "310431", "197591",
          "BID", "TID", "Q6H", "QHS", "active", "resolved", "inactive", "refuted",
          *[c["code"] for c in VS_CODINGS[:40]]], ["", " ", "nope"])
SYSTEMS = ([LOINC, RX, SCT, "http://unitsofmeasure.org",
            "http://terminology.hl7.org/CodeSystem/condition-clinical"], ["urn:oid:1.2.3", ""])

_SCALARS: dict[str, tuple[list[str], list[str]]] = {
    "system": SYSTEMS, "code": CODES,
    "display": ([*TEXTS[:30], "Body weight", "Oral route"], [""]),
    "text": ([*TEXTS, "by mouth", "PO", "TD", "intranasal", "1 tablet every 6 hours"], ["", " "]),
    "reference": REFS, "value": (["123", "NPI-9"], [""]), "unit": UNITS,
    "comparator": (["<", "<=", ">", ">="], ["≤", "~", ""]), "id": IDS, "fullUrl": REFS,
    "gender": (["female", "male", "other", "unknown"], ["F", "Female", ""]),
    "status": STATUSES, "intent": (["order", "plan", "proposal", "original-order"], ["x"]),
    "periodUnit": TIME_UNITS, "timeOfDay": (["08:00:00", "20:00:00"], ["20:00", "25:00:00"]),
    "when": (["MORN", "HS", "AC", "C"], ["nope"]),
    "valueString": ([">60", "<15", "45", "Positive", "negative"], [""]),
    "resourceType": (["Medication"], ["Observation"]),
}
_DATE_KEYS = ("date", "Date", "start", "end", "issued", "authoredOn", "whenHandedOver",
              "whenPrepared", "dateAsserted", "created", "DateTime", "Instant")


def rarely(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly `good`, one time in 16 `bad`: a generated bundle must often be valid as a whole,
    or the readers' meaning (units, dates, codes) is never reached past the shape check."""
    return st.integers(0, 15).flatmap(lambda i: bad if i == 0 else good)


def _vocab(name: str) -> st.SearchStrategy[str]:
    if name in _SCALARS:
        good, bad = _SCALARS[name]
    elif any(k in name for k in _DATE_KEYS):
        good, bad = DATES
    else:
        good, bad = TEXTS[:20], ["", "x"]
    return rarely(st.sampled_from(good), st.sampled_from(bad) | st.text(max_size=6))


def _number(meta: list[Any]) -> st.SearchStrategy[Any]:
    lo = None
    for m in meta:
        for c in getattr(m, "metadata", [m]):
            bound = getattr(c, "ge", None)
            if bound is None:
                bound = getattr(c, "gt", None)
            if isinstance(bound, int | float):
                lo = bound
    small = st.integers(max(1, math.ceil(lo or 0)), 12) | st.sampled_from(
        [0.5, 1.5, 2, 3, 4, 6, 8, 12, 24, 30, 72, 90, 120, 400])
    return rarely(small, st.floats(-1e3, 1e6, allow_nan=False) | st.sampled_from(
        [0, -1, 1e308, 10**20, 0.1]))


#: (kind, LOINC code) -> units a reader accepts (and one it does not)
LAB_UNITS = {"weight": ["kg", "lb", "[lb_av]", "g"], "height": ["cm", "in", "m"],
             "creatinine": ["mg/dL", "umol/L"], "egfr": ["mL/min/1.73m2", "mL/min/{1.73_m2}"],
             "bilirubin": ["mg/dL", "umol/L"], "albumin": ["g/dL", "g/L"], "inr": ["1", "{INR}"]}


@st.composite
def lab_observation(draw: st.DrawFn) -> dict[str, Any]:
    """An Observation of a code a rule reads, with a value and unit of its kind."""
    code = draw(st.sampled_from(sorted(LOINC_KINDS)))
    kind = LOINC_KINDS[code]
    unit = draw(rarely(st.sampled_from(LAB_UNITS[kind]), st.sampled_from(["furlong", "", "%"])))
    value = draw(rarely(st.floats(0.1, 200), st.sampled_from([0, -5, 1e308])))
    res = draw(resource("Observation", shapes.ObservationShape, id=st.sampled_from(IDS[0]),
                        subject=SUBJECT, status=st.sampled_from(["final", "amended"]),
                        valueQuantity=st.just({"value": value, "unit": unit}),
                        effectiveDateTime=st.sampled_from(DATES[0])))
    res["code"] = {"coding": [{"system": draw(st.sampled_from([LOINC, LOINC, None])),
                               "code": code}]}
    if res["code"]["coding"][0]["system"] is None:
        del res["code"]["coding"][0]["system"]
    for key in ("valueString", "dataAbsentReason"):
        if draw(st.integers(0, 7)):
            res.pop(key, None)
    return res


def _special(name: str) -> st.SearchStrategy[Any]:
    """Elements the shapes leave to Python (typed Any): R4, R5 and older spellings."""
    concept = shape(shapes.CodeableConcept)
    if name in ("clinicalStatus", "verificationStatus"):
        return st.sampled_from(["active", "resolved", "refuted", "entered-in-error"]) | concept
    if name == "category":
        return concept | st.lists(concept, max_size=2)
    if name == "maxDosePerPeriod":
        return shape(shapes.Ratio) | st.lists(shape(shapes.Ratio), max_size=2)
    if name == "hospitalization":
        return st.fixed_dictionaries({"dischargeDisposition": concept})
    if name == "contained":
        return st.lists(st.sampled_from(MEDICATIONS).map(lambda m: {**m, "id": "med1"}),
                        max_size=1)
    return st.none() | concept  # dataAbsentReason


@functools.cache
def shape(tp: Any, name: str = "") -> st.SearchStrategy[Any]:
    """A strategy for the JSON a shape (a TypedDict of cds/io/fhir_shapes.py) describes, with
    FHIR-ish values for its strings (codes, units, dates, references) by element name."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        if base is str:
            return _vocab(name)
        if base is float:
            return _number(meta)
        if base is bool:
            return st.booleans()
        return shape(base, name)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return st.one_of([shape(a, name) for a in args])
    if origin is list:
        (item,) = get_args(tp)
        return st.lists(shape(item, name), min_size=1, max_size=3)
    if is_typeddict(tp):
        hints = get_type_hints(tp, include_extras=True)
        return st.fixed_dictionaries({}, optional={k: shape(v, k) for k, v in hints.items()})
    if tp is bool:
        return st.booleans()
    if tp is str:
        return _vocab(name)
    return _special(name)


def resource(rtype: str, tp: Any, **required: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    hints = get_type_hints(tp, include_extras=True)
    optional = {k: shape(v, k) for k, v in hints.items()
                if k not in required and k != "resourceType"}
    return st.fixed_dictionaries({"resourceType": st.just(rtype), **required}, optional=optional)


SUBJECT = rarely(st.sampled_from(["Patient/p1", "urn:uuid:p1",
                                  "https://ehr.example/fhir/Patient/p1"]),
                 st.sampled_from(["Patient/p2", "urn:uuid:zz"])).map(lambda r: {"reference": r})
DRUG = st.sampled_from(MED_CONCEPTS) | shape(shapes.CodeableConcept)
LAB_CONCEPT = st.builds(lambda code, unit_sys: {"coding": [{"system": unit_sys, "code": code}]},
                        st.sampled_from(sorted(LOINC_KINDS)), st.sampled_from([LOINC, LOINC, None]))
VS_CONCEPT = st.lists(st.sampled_from(VS_CODINGS), min_size=1, max_size=2).map(
    lambda cs: {"coding": cs})


def _medication_use(rtype: str) -> st.SearchStrategy[Any]:
    med = st.one_of(
        st.fixed_dictionaries({"medicationCodeableConcept": DRUG}),
        st.fixed_dictionaries({"medicationReference": _vocab("reference").map(
            lambda r: {"reference": r})}))
    base = resource(rtype, shapes.MedicationUse, id=_vocab("id"), subject=SUBJECT,
                    status=_vocab("status"))
    return st.builds(lambda b, m: {k: v for k, v in {**b, **m}.items()
                                   if not (k.startswith("medication") and k not in m)}, base, med)


GENERATED_RESOURCE = st.one_of(
    lab_observation(),
    resource("Observation", shapes.ObservationShape, id=_vocab("id"), subject=SUBJECT,
             code=LAB_CONCEPT | VS_CONCEPT),
    resource("Condition", shapes.ConditionShape, id=_vocab("id"), subject=SUBJECT,
             code=VS_CONCEPT | shape(shapes.CodeableConcept)),
    *[resource(t, shapes.EventShape, id=_vocab("id"), subject=SUBJECT, code=VS_CONCEPT)
      for t in ("Procedure", "Encounter", "CarePlan", "ServiceRequest")],
    resource("Medication", shapes.MedicationShape, id=st.sampled_from(["med1", *IDS[0][:3]]),
             code=DRUG),
    *[_medication_use(t) for t in ("MedicationRequest", "MedicationStatement",
                                   "MedicationDispense")],
)
GENERATED_PATIENT = resource("Patient", shapes.PatientShape,
                             id=rarely(st.just("p1"), st.sampled_from(["p2", "", 7])))


@st.composite
def generated_bundle(draw: st.DrawFn) -> dict[str, Any]:
    entries = []
    if draw(st.integers(0, 5)):  # usually a Patient resource
        entries.append({"fullUrl": "urn:uuid:p1", "resource": draw(GENERATED_PATIENT)})
    for res in draw(st.lists(GENERATED_RESOURCE, max_size=8)):
        entry: dict[str, Any] = {"resource": res}
        if draw(st.booleans()) and isinstance(res.get("id"), str):
            entry["fullUrl"] = f"urn:uuid:{res['id']}"
        entries.append(entry)
    bundle = {"resourceType": "Bundle", "type": draw(st.sampled_from(
        ["collection", "searchset", "transaction"])), "entry": entries}
    if draw(st.integers(0, 9)) == 0:  # a searchset inside a transaction
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": bundle}]}
    return bundle


# --- mutation -------------------------------------------------------------------------------

FHIRISH = ["2026-10-01", "2026-10-01T10:00:00Z", "1950", "2026-02-30", "mg", "kg", "lb", "h",
           "d", "wk", "BID", "draft", "active", "stopped", "entered-in-error", "Medication/med1",
           "#med1", "Patient/p1", "Patient/p2", "urn:uuid:p1", LOINC, SCT, RX, "2160-0",
           "29463-7", "98979-8", "26643006", "Medication", "Patient", "Observation",
           "MedicationRequest", "Condition", "MedicationDispense", "Bundle", "resourceType",
           "entry", "resource", "coding", "", " ", "\u0000", "\ud83d\udc8a", "é"]
JSON = json_values(FHIRISH, nan=True)


@st.composite
def entry_shuffled(draw: st.DrawFn, doc: Any) -> Any:
    """Whole-entry mutations: an entry doubled (as is, or changed), dropped or moved."""
    if not (isinstance(doc, dict) and isinstance(doc.get("entry"), list) and doc["entry"]):
        return doc
    doc = copy.deepcopy(doc)
    entries = doc["entry"]
    i = draw(st.integers(0, len(entries) - 1))
    how = draw(st.sampled_from(["double", "double-changed", "drop", "move"]))
    if how == "drop":
        del entries[i]
    elif how == "move":
        entries.insert(draw(st.integers(0, len(entries) - 1)), entries.pop(i))
    else:
        twin = copy.deepcopy(entries[i])
        if how == "double-changed":
            twin = draw(mutated(twin, JSON, max_changes=1))
        entries.insert(draw(st.integers(0, len(entries))), twin)
    return doc


def mutate(base: Any, max_changes: int = 4) -> st.SearchStrategy[Any]:
    return st.one_of(mutated(base, JSON, max_changes=max_changes),
                     entry_shuffled(base),
                     entry_shuffled(base).flatmap(lambda d: mutated(d, JSON, max_changes=2)))


# --- FHIR: strict reader, lenient builder, engine -------------------------------------------

def read_twice(reader: Callable[..., Patient], doc: Any) -> Patient | None:
    """The patient a strict reader reads from `doc`, or None after an error naming its
    place; either way the reader left `doc` as it was and a second read agrees."""
    before = repr(doc)
    try:
        patient = reader(doc, source=SRC)
    except InputError as e:
        assert_located(e, doc)
        untouched(before, doc)
        with pytest.raises(InputError) as again:
            reader(copy.deepcopy(doc), source=SRC)
        assert str(again.value) == str(e), "same input, another error"
        return None
    untouched(before, doc)
    assert reader(copy.deepcopy(doc), source=SRC) == patient
    return patient


def check_fhir(doc: Any) -> None:
    patient = read_twice(patient_from_fhir, doc)
    if patient is not None:
        evaluate_twice(patient)
        # a bundle the strict reader accepts: the lenient builder reads the same patient
        built = build_patient(records_of(doc))
        assert not built.left_out, [lo.reason for lo in built.left_out]
        assert built.patient == patient
    check_lenient(doc)


def check_lenient(doc: Any) -> None:
    """build_patient(strict=False): never raises for a bad record (only for a bundle that
    names no patient, or two); every record left out has a reason and a located InputError;
    a record the strict reader accepts on its own is never left out."""
    try:
        records = records_of(doc)
    except InputError:
        return  # not a bundle of resources: the strict check covered it
    before = repr(doc)
    try:
        built = build_patient(records)
    except InputError as e:
        assert_located(e)
        assert e.field == "Bundle.entry", f"lenient builder raised for one record: {e}"
        return
    untouched(before, doc)
    again = build_patient(records_of(copy.deepcopy(doc)))
    assert again.patient == built.patient
    assert [lo.reason for lo in again.left_out] == [lo.reason for lo in built.left_out]
    for lo in built.left_out:
        assert lo.reason, lo
        assert lo.what.strip(), f"a record left out with no name: {lo}"
        assert isinstance(lo.error, InputError), f"a reader bug, not a bad record: {lo.reason}"
        if isinstance(lo.error, InputError):
            assert_located(lo.error) if lo.error.field else None
    evaluate_twice(built.patient)
    pid = built.patient.id
    left = {id(lo.record.resource) for lo in built.left_out}
    patients = [r for r in records if r.resource.get("resourceType") == "Patient"
                and id(r.resource) not in left]
    meds = [r for r in records if r.resource.get("resourceType") == "Medication"]
    ids = Counter((r.resource["resourceType"], r.resource.get("id")) for r in records
                  if isinstance(r.resource.get("id"), str))
    for r in records:
        rtype, rid = r.resource["resourceType"], r.resource.get("id")
        if rtype in ("Patient", "Medication") or (isinstance(rid, str) and ids[rtype, rid] > 1):
            continue
        try:
            alone = build_patient([*patients, *meds, r], patient_id=pid, strict=True).patient
        except InputError:
            continue  # not valid on its own: may be left out
        p = built.patient
        kept = alone.observations + alone.conditions + alone.events + alone.medications
        if not kept:
            continue  # skipped by policy (withdrawn, a code no rule reads)
        assert id(r.resource) not in left, f"valid record left out: {label(r.resource)}"
        for o in alone.observations:
            assert o in p.observations, f"observation dropped: {label(r.resource)}"
        for c in alone.conditions:
            assert c in p.conditions, f"condition dropped: {label(r.resource)}"
        for ev in alone.events:
            assert ev in p.events, f"event dropped: {label(r.resource)}"
        # ids are unique per resource type: MedicationRequest/1 and MedicationDispense/1 are
        # two records
        by_id = {(m.source, m.id): m for m in p.medications}
        for m in alone.medications:
            assert (m.source, m.id) in by_id, f"medication dropped: {label(r.resource)}"
            # the same order (who prescribed and why may come from other records)
            skip = {"reasons", "prescriber"}
            assert by_id[m.source, m.id].model_dump(exclude=skip) == m.model_dump(exclude=skip), (
                f"medication changed: {label(r.resource)}", by_id[m.source, m.id], m)


def test_fuzz_fhir_real_records_mutated(budget: Budget) -> None:
    budget.run("fhir_mutated", st.sampled_from(REAL_BUNDLES).flatmap(mutate), check_fhir)


def test_fuzz_fhir_generated_from_shapes(budget: Budget) -> None:
    strategy = generated_bundle().flatmap(
        lambda b: st.one_of(st.just(b), mutate(b, max_changes=2)))
    budget.run("fhir_generated", strategy, check_fhir)


def test_real_records_unmutated() -> None:
    """The seeds themselves (the sample panel has a few bad records on purpose)."""
    for doc in REAL_BUNDLES:
        check_fhir(doc)
    assert sum(1 for doc in PANEL if build_patient(records_of(doc)).left_out) < 25


# --- native JSON ----------------------------------------------------------------------------

def _natives() -> list[dict[str, Any]]:
    out = [NATIVE_EXAMPLE]
    for doc in PANEL[:60]:
        patient = build_patient(records_of(doc)).patient  # lenient: the panel has bad records
        native = patient.model_dump(mode="json", exclude_defaults=True)
        out.append({"format": "cds-native/1", **native})
    return out


NATIVES = _natives()
NATIVE_JSON = json_values(["kg", "lb", "umol/L", "weight", "egfr", "creatinine", "2026-01-01",
                           "2026-02-30", "h", "d", "request", "dispense", "draft", "active",
                           "female", "oral", "<", ">=", "cds-native/1", "", "\u0000"], nan=True)


def check_native(doc: Any) -> None:
    patient = read_twice(patient_from_native, doc)
    if patient is None:
        return
    # nothing dropped: the patient's own JSON reads back as the same patient
    dumped = patient.model_dump(mode="json")
    assert patient_from_native(dumped) == patient
    evaluate_twice(patient)


def test_fuzz_native(budget: Budget) -> None:
    strategy = st.sampled_from(NATIVES).flatmap(
        lambda b: mutated(b, NATIVE_JSON, max_changes=3))
    budget.run("native", strategy, check_native)


# --- a patient file: bytes on disk ----------------------------------------------------------

def _file_bytes() -> st.SearchStrategy[bytes]:
    text = st.sampled_from(REAL_BUNDLES[:10] + NATIVES[:5]).flatmap(
        lambda d: mutated(d, JSON, max_changes=2)).map(
        lambda d: json.dumps(d, allow_nan=True).encode())

    @st.composite
    def cut(draw: st.DrawFn) -> bytes:
        raw = json.dumps(draw(st.sampled_from(REAL_BUNDLES[:5] + NATIVES[:3]))).encode()
        i = draw(st.integers(0, len(raw)))
        j = draw(st.integers(i, min(len(raw), i + 40)))
        return raw[:i] + draw(st.binary(max_size=8)) + raw[j:]

    return st.one_of(text, cut(), st.binary(max_size=64),
                     st.sampled_from([b"", b"\xef\xbb\xbf{}", b"[" * 5000, b"{" * 100_000,
                                      b'{"resourceType": "Bundle"', b"null", b"\xff\xfe"]))


def test_fuzz_read_patient_file(budget: Budget, tmp_path: Path) -> None:
    path = tmp_path / "patient.json"

    def check(raw: bytes) -> None:
        path.write_bytes(raw)
        try:
            patient = read_patient(path)
        except InputError as e:
            assert e.file == str(path), f"a file error that does not name the file: {e}"
            assert e.message
            return
        evaluate_twice(patient)
        assert read_patient(path) == patient

    budget.run("read_file", _file_bytes(), check)


# --- CDS Hooks: the request, assembled ------------------------------------------------------

PREFETCH_KEYS = list(templates(180, AS_OF))
UUID = "2a0e1d5c-0f4e-4d8e-9c1b-6a9d7b0f1e01"


def _searchset(rs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r} for r in rs]}


def hook_body(bundle: dict[str, Any], hook: str = "order-sign",
              drafts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A CDS Hooks request carrying the records of `bundle` as prefetch, the way an EHR
    fills the discovery templates."""
    rs = [e["resource"] for e in bundle["entry"]]
    patient = next((r for r in rs if r["resourceType"] == "Patient"), None)
    pid = patient["id"] if patient else "p1"

    def of(t: str, where: Callable[[dict[str, Any]], bool] = lambda r: True) -> dict[str, Any]:
        return _searchset([r for r in rs if r["resourceType"] == t and where(r)])

    def lab(kind: str) -> dict[str, Any]:
        return of("Observation", lambda r: any(LOINC_KINDS.get(c.get("code")) == kind
                                                for c in r.get("code", {}).get("coding", [])))

    prefetch: dict[str, Any] = {
        "patient": patient, "medications": of("MedicationRequest"),
        "dispenses": of("MedicationDispense"), "conditions": of("Condition"),
        "weight": lab("weight"), "creatinine": lab("creatinine"), "egfr": lab("egfr"),
        "procedures": None, "encounters": None, "labs": None, "pdmp": None,
        "careplans": None, "servicerequests": None}
    context: dict[str, Any] = {"userId": "Practitioner/fuzz", "patientId": pid,
                               "encounterId": "enc-1"}
    if hook != "patient-view":
        ds = drafts if drafts is not None else [{
            "resourceType": "MedicationRequest", "id": "draft-1", "status": "draft",
            "intent": "order", "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": "197591",
                                                      "display": "diazepam 5 MG Oral Tablet"}]},
            "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1,
                                                         "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1,
                                                                     "unit": "tablet"}}]}]}]
        context["draftOrders"] = {"resourceType": "Bundle",
                                  "entry": [{"resource": d} for d in ds]}
        if hook == "order-select":
            context["selections"] = [f"MedicationRequest/{d.get('id')}" for d in ds]
    return {"hook": hook, "hookInstance": UUID, "context": context, "prefetch": prefetch}


HOOKS = ["order-sign", "order-select", "patient-view"]
HOOK_BODIES = [hook_body(b, h) for b in REAL_BUNDLES[:40] for h in HOOKS]


@st.composite
def generated_hook_body(draw: st.DrawFn) -> dict[str, Any]:
    bundle = draw(generated_bundle())
    if bundle["entry"] and bundle["entry"][0]["resource"].get("resourceType") == "Bundle":
        bundle = bundle["entry"][0]["resource"]
    drafts = draw(st.lists(_medication_use("MedicationRequest"), min_size=1, max_size=3))
    try:
        return hook_body(bundle, draw(st.sampled_from(HOOKS)), drafts)
    except (KeyError, TypeError, AttributeError):  # a generated Patient without a usable id
        return hook_body({"entry": []}, "patient-view")


HOOK_DOCS = st.one_of(
    st.sampled_from(HOOK_BODIES).flatmap(lambda b: mutated(b, JSON, max_changes=4)),
    generated_hook_body(),
    generated_hook_body().flatmap(lambda b: mutated(b, JSON, max_changes=2)))


def check_assemble(body: Any) -> None:
    """The service's own checks first (as app.py makes them), then assemble: an Assembled or
    a BadRequest naming its field; the engine does not fail on what was assembled."""
    if not isinstance(body, dict):
        return
    context, prefetch = body.get("context"), body.get("prefetch")
    pid = context.get("patientId") if isinstance(context, dict) else None
    if not (isinstance(pid, str) and pid.strip()) or not isinstance(prefetch, dict | None):
        return  # a 400 before assemble (checked over HTTP below)
    values = {k: (prefetch or {})[k] for k in PREFETCH_KEYS if k in (prefetch or {})}
    drafts = body.get("hook") != "patient-view"
    before = repr(body)

    def once() -> Assembled | BadRequest:
        try:
            return assemble(pid, copy.deepcopy(values), copy.deepcopy(context),
                            with_drafts=drafts)
        except BadRequest as e:
            return e

    got = once()
    if isinstance(got, BadRequest):
        assert got.message and got.field, f"a 400 that names no field: {got.message}"
        again = once()
        assert isinstance(again, BadRequest) and (again.message, again.field) == (
            got.message, got.field)
        return
    assert assemble(pid, values, context, with_drafts=drafts) is not None
    untouched(before, body)
    # nothing dropped: the current list is the prefetch's, less only the draft itself (a
    # MedicationRequest with the draft's id, also returned by the medications search)
    whole = assemble(pid, copy.deepcopy(values), copy.deepcopy(context), with_drafts=False)
    draft_ids = {d.id for d in got.drafts}
    kept = {(m.source, m.id) for m in got.patient.medications}
    for m in whole.patient.medications:
        if m.source == "request" and m.id in draft_ids:
            continue
        assert (m.source, m.id) in kept, f"{m.source} {m.id} ({m.label}) silently dropped"
    for problem in got.problems:
        assert isinstance(problem, str) and problem
    evaluate_twice(got.patient, got.drafts)
    again = once()
    assert isinstance(again, Assembled)
    assert (again.patient, again.drafts, again.problems) == (got.patient, got.drafts,
                                                             got.problems)


def test_fuzz_assemble(budget: Budget) -> None:
    budget.run("assemble", HOOK_DOCS, check_assemble)


# --- CDS Hooks: the service over ASGI -------------------------------------------------------

@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with warnings.catch_warnings():  # starlette's note on httpx: not this test's concern
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from cds.service.app import create_app
    from cds.service.config import load_settings

    folder = tmp_path_factory.mktemp("fuzz-service")
    path = folder / "cds-service.yaml"
    # a FHIR server that refuses connections at once: what prefetch leaves out is never
    # fetched from anywhere real (and any other fhirServer is refused by fhir_servers)
    path.write_text("feedback_db: feedback.sqlite3\nfhir_timeout: 0.5\n"
                    "fhir_servers: ['http://127.0.0.1:9/']\nmax_body_bytes: 300000\n")
    app = create_app(load_settings(path), config_path=path, allow_unsigned=True)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


FEEDBACK = {"feedback": [{"card": "0b5f1e9a-2d7c-4e7b-8f1a-3c9d2e6b7a01", "outcome": "overridden",
                          "overrideReason": {"reason": {
                              "system": "urn:cds:CodeSystem:override-reason",
                              "code": "patient-monitored"}, "userComment": "ok"},
                          "outcomeTimestamp": "2026-11-26T10:00:00Z"},
                         {"card": "0b5f1e9a-2d7c-4e7b-8f1a-3c9d2e6b7a02", "outcome": "accepted",
                          "acceptedSuggestions": [{"id": "s1"}],
                          "outcomeTimestamp": "2026-11-26T10:00:00Z"}]}
HOOKISH = ["order-sign", "order-select", "patient-view", "hookInstance", "context", "prefetch",
           "draftOrders", "patientId", "fhirServer", "fhirAuthorization", "access_token",
           "http://127.0.0.1:9/fhir", "https://elsewhere.example/fhir", "Patient/pt0000001",
           "OperationOutcome", *FHIRISH]
HOOK_JSON = json_values(HOOKISH, nan=True)


def _nested(depth: int) -> bytes:
    return b'{"hook": "order-sign", "context": ' + b'{"a": [' * depth + b"1" + b"]}" * depth + b"}"


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """(path, body): mutated and generated hook calls, arbitrary JSON, raw bytes, deep
    nesting, long strings; sometimes to the wrong service, or to feedback."""
    kind = draw(st.sampled_from(["hook", "hook", "hook", "hook", "generated", "json", "bytes",
                                 "hostile", "feedback"]))
    if kind == "feedback":
        doc = draw(mutated(FEEDBACK, HOOK_JSON, max_changes=3) | st.just(FEEDBACK))
        return f"/cds-services/{draw(st.sampled_from(HOOKS))}/feedback", json.dumps(doc).encode()
    if kind in ("hook", "generated"):
        if kind == "hook":
            doc = draw(st.sampled_from(HOOK_BODIES).flatmap(
                lambda b: mutated(b, HOOK_JSON, max_changes=3)))
        else:
            doc = draw(generated_hook_body())
        hook = doc.get("hook") if isinstance(doc, dict) else None
        sid = hook if isinstance(hook, str) and hook in HOOKS and draw(st.integers(0, 9)) \
            else draw(st.sampled_from([*HOOKS, "nope", "order-sign%20x", "%00"]))
        return f"/cds-services/{sid}", json.dumps(doc, allow_nan=True).encode()
    sid = draw(st.sampled_from(HOOKS))
    if kind == "json":
        return f"/cds-services/{sid}", json.dumps(draw(HOOK_JSON), allow_nan=True).encode()
    if kind == "bytes":
        return f"/cds-services/{sid}", draw(st.binary(max_size=64))
    which = draw(st.sampled_from(["deep", "deeper", "long", "unicode", "big-id"]))
    if which == "deep":
        return f"/cds-services/{sid}", _nested(draw(st.integers(200, 2000)))
    if which == "deeper":
        return f"/cds-services/{sid}", b"[" * 200_000
    body = copy.deepcopy(draw(st.sampled_from(HOOK_BODIES)))
    if which == "long":
        body["context"]["userId"] = "x" * 250_000
    elif which == "unicode":
        body["context"]["patientId"] = draw(st.text(min_size=1, max_size=12))
    else:
        body["hookInstance"] = draw(st.text(max_size=200))
    return f"/cds-services/{body['hook']}", json.dumps(body).encode()


def _json_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def check_service(client: Any, path: str, raw: bytes) -> None:
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert r.status_code in (200, 400, 404, 412, 413), f"{r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    if r.status_code == 200:
        if path.endswith("/feedback"):
            assert isinstance(data.get("stored"), int)
            return  # stored once; posted again it is already_stored (another answer)
        assert isinstance(data.get("cards"), list)
        for card in data["cards"]:
            assert check_card(card) == [], (check_card(card), card.get("summary"))
    else:
        assert isinstance(data.get("error"), str) and data["error"], data
        assert isinstance(data.get("message"), str) and data["message"], data
        doc = _json_or_none(raw)
        if r.status_code == 400 and isinstance(doc, dict) and not known(data["message"]):
            assert data.get("field"), f"a 400 that names no field: {data}"
    again = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert again.status_code == r.status_code
    assert again.json() == data, "same request, another answer"


def test_fuzz_service(budget: Budget, client: Any) -> None:
    budget.run("service", requests(), lambda req: check_service(client, *req))


def test_service_seeds_answer_200(client: Any) -> None:
    for i, body in enumerate(HOOK_BODIES[:9]):
        r = client.post(f"/cds-services/{body['hook']}", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["cards"] or i >= 3  # the example patient has alerts on every hook


# --- rule packs -----------------------------------------------------------------------------

PACKS = ["cns-burden", "interactions-core", "opioid-safety", "renal-hepatic-dosing",
         "data-quality", "opioid-safety@1.0.0", "opioid-safety@1.1.0"]


def _pack_files() -> list[tuple[str, str, str]]:
    """(pack, file relative to it, text) of every YAML file the loader reads."""
    out = []
    for pack in PACKS:
        folder = RULESETS / pack
        for path in [folder / "pack.yaml", *sorted((folder / "rules").glob("*.yaml"))]:
            out.append((pack, str(path.relative_to(folder)), path.read_text()))
    return out


PACK_FILES = _pack_files()
PACKISH = ["interaction", "burden", "mme", "renal", "hepatic", "escalation", "duplication",
           "guideline", "expression", "opioid", "benzodiazepine", "oxycodone", "oxycodon",
           "gabapentinoid", "critical", "high", "moderate", "low", "info", "confirmed",
           "secondary", "analytic", "pharmacist", "prescriber", "age >= 65", "age >=",
           "mme > 'x'", "crcl < 30 and", "egfr < 30", "1.0.0", "2.0.0", ">=2026.11.0",
           ">=3000.0", "not-a-version", "rules/*.yaml", "rules/none-*.yaml", "**/*.yaml", "*",
           "rules", "/etc/*.yaml", "../*/rules/*.yaml",
           "id", "type", "rules", "when", "summary", "{count} drugs", "{nope}", "", "\u0000"]
PACK_JSON = json_values(PACKISH)


@st.composite
def pack_change(draw: st.DrawFn) -> tuple[str, str, str]:
    """(pack, file, new text): the file's YAML mutated as data, or its text cut up."""
    pack, name, text = draw(st.sampled_from(PACK_FILES))
    how = draw(st.sampled_from(["data", "data", "data", "lines", "bytes"]))
    if how == "data":
        doc = yaml.safe_load(text)
        doc = draw(mutated(doc, PACK_JSON, max_changes=3))
        return pack, name, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if how == "bytes":
        i = draw(st.integers(0, len(text)))
        return pack, name, text[:i] + draw(st.text(max_size=6)) + text[i + draw(
            st.integers(0, 8)):]
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "double", "indent", "dedent", "swap", "truncate"]))
        if op == "drop":
            del lines[i]
        elif op == "double":
            lines.insert(i, lines[i])
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines = lines[:i]
    return pack, name, "\n".join(lines) + "\n"


def _load(folder: Path) -> Pack | PackErrors:
    try:
        return load_pack(folder, default_knowledge())
    except PackErrors as e:
        return e


def check_pack(change: tuple[str, str, str]) -> None:
    pack, name, text = change
    with tempfile.TemporaryDirectory(prefix="fuzz-pack-") as tmp:
        folder = Path(tmp) / pack
        shutil.copytree(RULESETS / pack, folder, ignore=shutil.ignore_patterns("cases"))
        (folder / name).write_text(text, encoding="utf-8")
        got = _load(folder)
        again = _load(folder)
        if isinstance(got, Pack):
            assert isinstance(again, Pack) and again.digest == got.digest
            assert again.rules == got.rules and again.meta == got.meta
            return
        assert got.errors, "PackErrors with no error"
        for e in got.errors:
            assert isinstance(e, PackError), repr(e)
            assert e.file, f"a pack error that names no file: {e}"
            assert e.line or e.field or known(e.message), f"names no line and no field: {e}"
        assert isinstance(again, PackErrors)
        assert [str(e) for e in again.errors] == [str(e) for e in got.errors]


def test_fuzz_pack_loader(budget: Budget) -> None:
    budget.run("pack", pack_change(), check_pack)


def test_packs_seed_load() -> None:
    for pack in PACKS:
        assert isinstance(_load(RULESETS / pack), Pack), pack


# --- the strategies reach what they are meant to reach --------------------------------------

def test_generated_bundles_are_often_valid() -> None:
    """Generated structures must get past the shape check often enough to reach the readers'
    meaning (units, dates, codes), not only their type errors."""
    ok = []

    @settings(max_examples=80, deadline=None, suppress_health_check=QUIET, database=None,
              derandomize=True)
    @given(generated_bundle())
    def probe(doc: dict[str, Any]) -> None:
        try:
            p = patient_from_fhir(doc)
            ok.append(bool(p.medications or p.observations or p.conditions or p.events))
        except InputError:
            ok.append(False)

    probe()
    assert sum(ok) >= 10, f"only {sum(ok)} of {len(ok)} generated bundles were read"


def test_json_paths_cover_bundles() -> None:
    assert len(json_paths(EXAMPLE)) > 50


# --- what the campaign found: reproducers of the bugs it found, fixed (regressions). A bug found
# --- and not yet fixed gets a reproducer here marked xfail(strict=True) and an entry in KNOWN.

def _pat(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-03-14"}


def _rx(rid: str = "rx1", text: str = "oxycodone hydrochloride 10 MG Oral Tablet",
        rtype: str = "MedicationRequest", **extra: Any) -> dict[str, Any]:
    res = {"resourceType": rtype, "id": rid, "status": "active", "intent": "order",
           "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": text}}
    if rtype != "MedicationRequest":
        del res["intent"]
    res.update(extra)
    return res


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in resources]}


def test_fixed_a_duplicate_id_error_names_the_record() -> None:
    weight = {"resourceType": "Observation", "id": "w1", "status": "final",
              "subject": {"reference": "Patient/p1"},
              "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
              "valueQuantity": {"value": 70, "unit": "kg"}}
    other = {**weight, "valueQuantity": {"value": 71, "unit": "kg"}}
    for doc in (_bundle(_pat(), weight, other), _bundle(_pat(), _pat() | {"gender": "male"})):
        with pytest.raises(InputError) as e:
            patient_from_fhir(doc, source=SRC)
        assert e.value.field or e.value.record, str(e.value)


def test_fixed_a_dispense_is_kept_when_its_prescription_is_malformed() -> None:
    bad_request = _rx("rx1", requester={"reference": {}})
    dispense = _rx("d1", rtype="MedicationDispense", status="completed",
                   authorizingPrescription=[{"reference": "MedicationRequest/rx1"}],
                   whenHandedOver="2026-11-01", quantity={"value": 60, "unit": "tablet"},
                   daysSupply={"value": 30, "unit": "d"})
    built = build_patient([Record(_pat()), Record(bad_request), Record(dispense)])
    assert [lo.record.resource["id"] for lo in built.left_out] == ["rx1"]
    assert [m.id for m in built.patient.medications] == ["d1"]


def test_fixed_an_observation_coding_of_the_wrong_shape_is_named() -> None:
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "subject": {"reference": "Patient/p1"}, "code": {"coding": 7},
           "valueQuantity": {"value": 70, "unit": "kg"}}
    with pytest.raises(InputError) as e:
        patient_from_fhir(_bundle(_pat(), obs))
    assert e.value.field == "Observation/o1.code.coding"
    built = build_patient([Record(_pat()), Record(obs)])
    assert all(isinstance(lo.error, InputError) for lo in built.left_out)


def test_fixed_a_prefetched_record_with_an_array_id_is_no_500(client: Any) -> None:
    body = hook_body(_bundle(_pat(), _rx("rx1")), "patient-view")
    body["prefetch"]["medications"]["entry"][0]["resource"]["id"] = ["rx1"]
    r = client.post("/cds-services/patient-view", json=body)
    assert r.status_code in (200, 400), r.text


def test_fixed_a_dispense_with_the_draft_orders_id_is_kept() -> None:
    dispense = _rx("123", rtype="MedicationDispense", status="completed",
                   whenHandedOver="2026-11-20", quantity={"value": 120, "unit": "tablet"},
                   daysSupply={"value": 30, "unit": "d"})
    draft = _rx("123", "alprazolam 0.5 MG Oral Tablet", status="draft")
    context = {"patientId": "p1", "draftOrders": _bundle(draft)}
    got = assemble("p1", {"patient": _pat(), "dispenses": _searchset([dispense])}, context,
                   with_drafts=True)
    assert [(m.source, m.id) for m in got.patient.medications] == [("dispense", "123")]


def test_fixed_a_left_out_record_with_empty_text_is_named() -> None:
    res = _rx("m1", "", rtype="MedicationStatement")
    built = build_patient([Record(_pat()), Record(res)])
    assert built.left_out and all(lo.what.strip() for lo in built.left_out)


def _pack_copy(tmp_path: Path, pack: str = "cns-burden") -> Path:
    folder = tmp_path / pack
    shutil.copytree(RULESETS / pack, folder, ignore=shutil.ignore_patterns("cases"))
    return folder


@pytest.mark.parametrize("pattern", ["/etc/*.yaml", ""])
def test_fixed_a_bad_rule_files_pattern_is_a_pack_error(tmp_path: Path, pattern: str) -> None:
    folder = _pack_copy(tmp_path)
    meta = folder / "pack.yaml"
    meta.write_text(meta.read_text() + f"rule_files: [{pattern!r}]\n")
    with pytest.raises(PackErrors) as e:
        load_pack(folder, default_knowledge())
    assert all(x.field == "rule_files" or x.line for x in e.value.errors)


@pytest.mark.parametrize(("file", "text"), [
    ("pack.yaml", None),                     # rule_files matching nothing
    ("pack.yaml", "rules"),                  # rule_files matching a directory
    ("pack.yaml", "[]\n"),                   # pack.yaml not a mapping
    ("rules/cns.yaml", "- 1\n"),             # a rule file not a mapping
])
def test_fixed_pack_errors_about_a_whole_file_name_a_line_or_field(tmp_path: Path, file: str,
                                                          text: str | None) -> None:
    folder = _pack_copy(tmp_path)
    meta = folder / "pack.yaml"
    if file == "pack.yaml" and text in (None, "rules"):
        pattern = "rules/none-*.yaml" if text is None else "rules"
        meta.write_text(meta.read_text() + f"rule_files: [{pattern!r}]\n")
    else:
        (folder / file).write_text(text or "")
    with pytest.raises(PackErrors) as e:
        load_pack(folder, default_knowledge())
    for x in e.value.errors:
        assert x.file and (x.line or x.field), str(x)


def test_fixed_a_yaml_control_character_names_its_line(tmp_path: Path) -> None:
    folder = _pack_copy(tmp_path)
    rules = folder / "rules" / "cns.yaml"
    rules.write_text(rules.read_text().replace("rules:", "rules:  # \x07", 1))
    with pytest.raises(PackErrors) as e:
        load_pack(folder, default_knowledge())
    assert all(x.line for x in e.value.errors), [str(x) for x in e.value.errors]


@pytest.mark.parametrize("extra", [{"name": 5}, {"name": [{"given": 5}]}, {"identifier": 3},
                                   {"identifier": [{"value": "1", "type": {"coding": 7}}]}])
def test_fixed_a_patient_name_of_the_wrong_shape_is_ignored(extra: dict[str, Any]) -> None:
    patient = {**_pat(), **extra}
    try:  # read (the element ignored), or an error naming the element
        patient_from_fhir(_bundle(patient))
    except InputError as e:
        assert str(e.field).startswith("Patient/p1."), str(e)


def test_fixed_a_draft_id_that_is_not_a_fhir_id_is_a_400(client: Any) -> None:
    body = hook_body(EXAMPLE, "order-sign")
    body["context"]["draftOrders"]["entry"][0]["resource"]["id"] = "x/y"
    r = client.post("/cds-services/order-sign", json=body)
    if r.status_code == 400:
        assert "field" in r.json()
        return
    assert r.status_code == 200, r.text
    assert [p for c in r.json()["cards"] for p in check_card(c)] == []
