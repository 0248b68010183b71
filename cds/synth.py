"""A synthetic FHIR Bulk Data export of a chronic-pain panel, for demos, tests and benchmarks.

Seeded and deterministic. Real RxNorm products (the knowledge base's product table) in
realistic mixes: opioids at varied doses, benzodiazepines, gabapentinoids, muscle relaxants,
antidepressants and everyday drugs; renal function (creatinine, some eGFR) and weights;
order history (completed orders at lower doses, dispenses by several prescribers) so the
escalation rules fire sometimes; and a small share of dirty records: unknown units, orders
without a drug code, truncated JSON lines, unknown drugs, records without a subject.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from cds.errors import UsageError
from cds.knowledge import Knowledge, default_knowledge
from cds.vocabulary import LOINC, RXNORM, SNOMED, UCUM

FILES = ("Patient", "MedicationRequest", "MedicationDispense", "Observation", "Condition",
         "Medication")
#: The date the synthetic history is anchored to when none is given (the bundled panel's).
DEFAULT_ANCHOR = date(2026, 11, 26)

_FORM_UNITS = {
    "Oral Tablet": ("tablet", "{tablet}"), "Extended Release Oral Tablet": ("tablet", "{tablet}"),
    "Oral Capsule": ("capsule", "{capsule}"),
    "Extended Release Oral Capsule": ("capsule", "{capsule}"),
    "Delayed Release Oral Capsule": ("capsule", "{capsule}"),
    "Delayed Release Oral Tablet": ("tablet", "{tablet}"),
    "Sublingual Tablet": ("tablet", "{tablet}"), "Sublingual Film": ("film", "{film}"),
    "Buccal Film": ("film", "{film}"), "Transdermal System": ("patch", "{patch}"),
    "Nasal Spray": ("spray", "{actuation}"),
}
_ROUTES = {"oral": ("26643006", "Oral route"), "transdermal": ("45890007", "Transdermal route"),
           "sublingual": ("37839007", "Sublingual route"), "buccal": ("54471007", "Buccal route"),
           "nasal": ("46713006", "Nasal route")}
_PRESCRIBERS = [("dr-lee", "Dr. Lee"), ("dr-okafor", "Dr. Okafor"), ("dr-garcia", "Dr. Garcia"),
                ("dr-nguyen", "Dr. Nguyen"), ("dr-schmidt", "Dr. Schmidt"),
                ("dr-haddad", "Dr. Haddad"), ("dr-kowalski", "Dr. Kowalski"),
                ("dr-tanaka", "Dr. Tanaka")]
_PHARMACIES = [("org-main-st", "Main Street Pharmacy"), ("org-mercy", "Mercy Outpatient Pharmacy"),
               ("org-riverside", "Riverside Drug")]
_CONDITIONS = [("82423001", "Chronic pain"), ("279039007", "Low back pain"),
               ("69896004", "Rheumatoid arthritis"), ("396275006", "Osteoarthritis"),
               ("203082005", "Fibromyalgia"), ("709044004", "Chronic kidney disease"),
               ("197480006", "Anxiety disorder"), ("5876000", "Opioid use disorder")]
_UNKNOWN_DRUGS = ["Zorvanex 20 mg tablet", "Herbal sleep blend capsule", "Kratom powder 2 g",
                  "Duloxamine XR 30 mg (trial drug)", "Grandma's pain salve"]

# (group, ingredient sets, weight) of what a chronic-pain clinic's patients take.
_OPIOIDS = [("oxycodone",), ("acetaminophen", "hydrocodone"), ("acetaminophen", "oxycodone"),
            ("tramadol",), ("morphine",), ("hydromorphone",), ("fentanyl",), ("tapentadol",),
            ("methadone",), ("oxymorphone",), ("acetaminophen", "codeine")]
_OPIOID_WEIGHTS = [22, 20, 12, 16, 9, 5, 5, 3, 3, 1, 4]
_BENZOS = [("alprazolam",), ("lorazepam",), ("diazepam",), ("clonazepam",), ("temazepam",)]
_BENZO_KEYS = {tuple(sorted(b)) for b in _BENZOS}
_ADJUVANTS = [("gabapentin",), ("pregabalin",), ("cyclobenzaprine",), ("duloxetine",),
              ("amitriptyline",), ("methocarbamol",), ("carisoprodol",), ("venlafaxine",),
              ("nortriptyline",)]
_OTHERS = [("lisinopril",), ("atorvastatin",), ("simvastatin",), ("sertraline",),
           ("escitalopram",), ("zolpidem",), ("trazodone",), ("warfarin",), ("apixaban",),
           ("furosemide",), ("spironolactone",), ("losartan",), ("quetiapine",),
           ("diphenhydramine",), ("ciprofloxacin",), ("clarithromycin",), ("mirtazapine",),
           ("naproxen",), ("aspirin",), ("rivaroxaban",)]


@dataclass(frozen=True, slots=True)
class Product:
    rxcui: str
    name: str
    ingredients: tuple[str, ...]
    dose_form: str
    route: str
    unit: str
    unit_code: str
    strength: float


def _products(kb: Knowledge) -> dict[tuple[str, ...], list[Product]]:
    """The knowledge base's clinical drugs (SCD) in the dose forms the generator writes, by
    ingredient set."""
    out: dict[tuple[str, ...], list[Product]] = {}
    for p in kb.products.values():
        units = _FORM_UNITS.get(p.dose_form)
        if units is None or p.tty != "SCD":
            continue
        key = tuple(sorted(c.ingredient for c in p.components))
        out.setdefault(key, []).append(Product(p.rxcui, p.name, key, p.dose_form, p.route or "",
                                               *units, p.components[-1].strength))
    return out


class _Writer:
    """One NDJSON file per resource type, plain or gzipped."""

    def __init__(self, out_dir: Path, compress: bool) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, IO[bytes] | gzip.GzipFile] = {}
        for rtype in FILES:
            path = out_dir / (f"{rtype}.ndjson.gz" if compress else f"{rtype}.ndjson")
            if compress:
                self.files[rtype] = gzip.GzipFile(path, "wb", compresslevel=3)
            else:
                self.files[rtype] = open(path, "wb", buffering=1 << 20)  # noqa: SIM115

    def write(self, resource: dict[str, Any]) -> None:
        self.files[resource["resourceType"]].write(orjson.dumps(resource) + b"\n")

    def raw(self, rtype: str, line: bytes) -> None:
        self.files[rtype].write(line + b"\n")

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class _Gen:
    def __init__(self, seed: int, anchor: date, dirty: float) -> None:
        self.r = random.Random(seed)
        self.anchor = anchor
        self.dirty = dirty
        self.kb = default_knowledge()
        self.products = _products(self.kb)
        self.medications: dict[str, dict[str, Any]] = {}

    def pick(self, options: Sequence[tuple[str, ...]], weights: list[int] | None = None,
             low: bool = False) -> Product | None:
        """A product of one of the options; `low` favours the lower strengths (opioids)."""
        key = tuple(sorted(self.r.choices(options, weights)[0]))
        choices = self.products.get(key)
        if not choices:
            return None
        if not low:
            return self.r.choice(choices)
        ranked = sorted(choices, key=lambda p: p.strength)
        return self.r.choices(ranked, [1 / (i + 1) ** 1.5 for i in range(len(ranked))])[0]

    def day(self, days_ago: int) -> str:
        return (self.anchor - timedelta(days=days_ago)).isoformat()

    def patient(self, i: int) -> Iterator[tuple[str, dict[str, Any] | bytes]]:
        r = self.r
        pid = f"pt{i:07d}"
        ref = {"reference": f"Patient/{pid}"}
        age = int(min(96, max(19, r.gauss(58, 15))))
        sex = r.choice(("female", "male"))
        born = self.anchor - timedelta(days=age * 365 + r.randrange(365))
        yield "Patient", {"resourceType": "Patient", "id": pid, "gender": sex,
                          "birthDate": born.isoformat(),
                          "identifier": [{"type": {"coding": [{
                              "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                              "code": "MR"}]}, "value": f"MRN{100000 + i}"}],
                          "name": [{"family": f"Synthetic{i}", "given": ["Pat"]}]}
        n_obs = 0
        weight = round(max(42.0, r.gauss(82 if sex == "male" else 70, 16)), 1)
        yield "Observation", self.observation(pid, n_obs, "29463-7", "Body weight", weight, "kg",
                                              r.randrange(10, 200))
        renal = r.random()
        scr = (r.uniform(0.6, 1.2) if renal < 0.75 else r.uniform(1.3, 2.4) if renal < 0.93
               else r.uniform(2.5, 5.5)) * (1.0 if sex == "male" else 0.85) * (1 + (age - 50) / 300)
        for k in range(r.choice((1, 1, 2, 3))):
            n_obs += 1
            if r.random() < 0.15:
                obs = self.observation(pid, n_obs, "14682-9", "Creatinine [Moles/volume]",
                                       round(scr * 88.4), "umol/L", 20 + 90 * k)
            else:
                obs = self.observation(pid, n_obs, "2160-0", "Creatinine [Mass/volume]",
                                       round(scr, 2), "mg/dL", 20 + 90 * k)
            if r.random() < self.dirty:  # a unit no lab uses
                obs["valueQuantity"]["unit"] = obs["valueQuantity"]["code"] = "mg/furlong"
            yield "Observation", obs
            scr *= r.uniform(0.9, 1.1)
        if r.random() < 0.3:
            n_obs += 1
            egfr = max(5, min(120, round(100 / scr * (1 - (age - 40) / 200))))
            yield "Observation", self.observation(pid, n_obs, "98979-8", "eGFR CKD-EPI 2021",
                                                  egfr, "mL/min/1.73m2", 25)
        # problems
        conds = r.sample(_CONDITIONS[:5], r.choice((1, 1, 2)))
        if renal >= 0.93:
            conds.append(_CONDITIONS[5])
        if r.random() < 0.2:
            conds.append(_CONDITIONS[6])
        oud = r.random() < 0.05
        if oud:
            conds.append(_CONDITIONS[7])
        for k, (code, text) in enumerate(conds):
            yield "Condition", {
                "resourceType": "Condition", "id": f"{pid}-c{k}", "subject": ref,
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"coding": [{"system": SNOMED, "code": code, "display": text}],
                         "text": text},
                "onsetDateTime": self.day(r.randrange(200, 3000))}
        yield from self.medication_list(pid, ref, oud)

    def observation(self, pid: str, k: int, code: str, display: str, value: float, unit: str,
                    days_ago: int) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": f"{pid}-o{k}", "status": "final",
                "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "effectiveDateTime": self.day(days_ago),
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}

    def medication_list(self, pid: str, ref: dict[str, str],
                        oud: bool) -> Iterator[tuple[str, dict[str, Any] | bytes]]:
        r = self.r
        meds: list[tuple[Product, float, int, bool]] = []  # product, dose, per day, prn
        if oud:
            p = self.pick([("buprenorphine", "naloxone")])
            if p:
                meds.append((p, 1, r.choice((1, 2)), False))
        n_opioids = r.choices((0, 1, 2, 3), (35, 50, 13, 2))[0]
        for _ in range(n_opioids):
            p = self.pick(_OPIOIDS, _OPIOID_WEIGHTS, low=True)
            if p is None:
                continue
            if p.unit == "patch":
                meds.append((p, 1, 0, False))
            elif "24 HR" in p.name:
                meds.append((p, 1, 1, False))
            elif "Extended Release" in p.dose_form or "12 HR" in p.name:
                meds.append((p, 1, r.choice((1, 2, 2)), False))
            else:
                prn = r.random() < 0.4
                meds.append((p, r.choices((1, 2), (85, 15))[0],
                             r.choices((1, 2, 3, 4, 6), (15, 30, 30, 20, 5))[0], prn))
        if r.random() < 0.22:
            p = self.pick(_BENZOS)
            if p:
                meds.append((p, 1, r.choice((1, 2, 3)), r.random() < 0.4))
        for _ in range(r.choices((0, 1, 2), (40, 45, 15))[0]):
            p = self.pick(_ADJUVANTS)
            if p:
                meds.append((p, 1, r.choice((1, 2, 3)), False))
        for _ in range(r.choices((0, 1, 2, 3, 4), (15, 30, 30, 15, 10))[0]):
            p = self.pick(_OTHERS)
            if p:
                meds.append((p, 1, r.choice((1, 1, 2)), False))
        on_opioids = any(self.kb.is_opioid(p.ingredients) for p, *_ in meds)
        if on_opioids and r.random() < 0.25:
            p = self.pick([("naloxone",)])
            if p:
                meds.append((p, 1, 1, True))
        for k, (p, dose, per_day, prn) in enumerate(meds):
            oid = f"{pid}-m{k}"
            doctor = r.choice(_PRESCRIBERS)
            started = r.randrange(5, 400)
            history_kind = r.random()
            if history_kind < 0.25 and p.unit != "patch":
                # an earlier, lower-dose order now completed: the dose was raised
                low = max(1, per_day // 2)
                yield "MedicationRequest", self.request(
                    f"{oid}-old", ref, p, dose, low, prn, "completed", started + 60,
                    r.choice(_PRESCRIBERS))
            if history_kind > 0.93:
                # stopped recently after long use: history only, no current order
                yield "MedicationRequest", self.request(oid, ref, p, dose, per_day, prn,
                                                        "stopped", started + 120, doctor)
                continue
            req = self.request(oid, ref, p, dose, per_day, prn, "active", started, doctor)
            roll = r.random()
            if roll < self.dirty:
                del req["medicationCodeableConcept"]  # no drug at all: unusable
            elif roll < 2 * self.dirty:
                req["medicationCodeableConcept"] = {"text": r.choice(_UNKNOWN_DRUGS)}
            elif roll < 3 * self.dirty:
                req["dosageInstruction"][0]["timing"]["repeat"]["periodUnit"] = "fortnight"
            elif roll < 0.12:
                mid = f"med-{p.rxcui}"
                self.medications.setdefault(mid, {
                    "resourceType": "Medication", "id": mid,
                    "code": {"coding": [{"system": RXNORM, "code": p.rxcui, "display": p.name}],
                             "text": p.name}})
                del req["medicationCodeableConcept"]
                req["medicationReference"] = {"reference": f"Medication/{mid}"}
            if r.random() < self.dirty / 2:
                line = orjson.dumps(req)
                yield "MedicationRequest", line[: len(line) // 2]  # truncated in transfer
                continue
            yield "MedicationRequest", req
            # fills: every 30 days since the start, sometimes by another prescriber's order
            controlled = self.kb.is_opioid(p.ingredients) or p.ingredients in _BENZO_KEYS
            fills = min(3, max(1, started // 30)) if controlled else int(r.random() < 0.4)
            for f in range(fills):
                days_ago = max(1, started - 30 * f)
                if days_ago > started:
                    break
                yield "MedicationDispense", self.dispense(
                    f"{oid}-d{f}", ref, oid, p, dose * per_day * 30 if per_day else 10, days_ago,
                    r.choice(_PRESCRIBERS) if r.random() < 0.08 else doctor)
        if r.random() < self.dirty:
            yield "MedicationRequest", {"resourceType": "MedicationRequest", "id": f"{pid}-orphan",
                                        "status": "active", "intent": "order",
                                        "medicationCodeableConcept": {"text": "ibuprofen 400 mg"}}

    def request(self, oid: str, ref: dict[str, str], p: Product, dose: float, per_day: int,
                prn: bool, status: str, days_ago: int, doctor: tuple[str, str]) -> dict[str, Any]:
        if p.unit == "patch":
            repeat: dict[str, Any] = {"frequency": 1, "period": 72, "periodUnit": "h"}
            text = "apply 1 patch every 72 hours"
        else:
            repeat = {"frequency": per_day, "period": 1, "periodUnit": "d"}
            text = f"{dose:g} {p.unit} {per_day} times a day" + (" as needed" if prn else "")
        route = _ROUTES.get(p.route, _ROUTES["oral"])
        return {
            "resourceType": "MedicationRequest", "id": oid, "status": status, "intent": "order",
            "subject": ref,
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": p.rxcui, "display": p.name}],
                "text": p.name},
            "authoredOn": self.day(days_ago),
            "requester": {"reference": f"Practitioner/{doctor[0]}", "display": doctor[1]},
            "dosageInstruction": [{
                "text": text, "asNeededBoolean": prn,
                "route": {"coding": [{"system": SNOMED, "code": route[0], "display": route[1]}]},
                "timing": {"repeat": repeat},
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": p.unit, "system": UCUM,
                                                  "code": p.unit_code}}]}],
            "dispenseRequest": {"quantity": {"value": dose * max(per_day, 1) * 30, "unit": p.unit},
                                "expectedSupplyDuration": {"value": 30, "unit": "days",
                                                           "system": UCUM, "code": "d"}},
        }

    def dispense(self, did: str, ref: dict[str, str], oid: str, p: Product, quantity: float,
                 days_ago: int, doctor: tuple[str, str]) -> dict[str, Any]:
        pharmacy = self.r.choice(_PHARMACIES)
        return {
            "resourceType": "MedicationDispense", "id": did, "status": "completed",
            "subject": ref,
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": p.rxcui, "display": p.name}],
                "text": p.name},
            "authorizingPrescription": [{"reference": f"MedicationRequest/{oid}",
                                         "display": doctor[1]}],
            "performer": [{"actor": {"reference": f"Organization/{pharmacy[0]}",
                                     "display": pharmacy[1]}}],
            "quantity": {"value": quantity, "unit": p.unit, "system": UCUM, "code": p.unit_code},
            "daysSupply": {"value": 30, "unit": "days", "system": UCUM, "code": "d"},
            "whenHandedOver": self.day(days_ago),
        }


def as_synthea(rtype: str, res: dict[str, Any], r: random.Random) -> dict[str, Any] | None:
    """A record as the widely used Synthea generator writes it (R4 Bulk Data export): orders
    with a dose value and no unit (`doseQuantity: {"value": 1.0}`), no route, no sig text,
    periods as decimals; some patients deceased; no pharmacy dispenses (Synthea writes none)."""
    if rtype == "MedicationDispense":
        return None
    if rtype == "Patient" and r.random() < 0.06:
        return {**res, "deceasedDateTime": f"{2020 + r.randrange(6)}-0{1 + r.randrange(9)}-15"
                                           "T08:00:00-05:00"}
    if rtype == "MedicationRequest" and "dosageInstruction" in res:
        dosage = res["dosageInstruction"][0]
        repeat = dict(dosage["timing"]["repeat"])
        repeat["period"] = float(repeat["period"])
        value = float(dosage["doseAndRate"][0]["doseQuantity"]["value"])
        out = {k: v for k, v in res.items() if k != "dispenseRequest"}
        out["dosageInstruction"] = [{
            "sequence": 1, "timing": {"repeat": repeat}, "asNeededBoolean": dosage["asNeededBoolean"],
            "doseAndRate": [{"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/dose-rate-type",
                "code": "ordered", "display": "Ordered"}]}, "doseQuantity": {"value": value}}]}]
        return out
    return res


def write_panel(n: int, out_dir: Path | str, *, seed: int = 0, gzip: bool = False,
                anchor: date | None = None, dirty: float = 0.01, style: str = "clinic",
                progress: Callable[[int], None] | None = None) -> Path:
    """Write `n` synthetic patients as a Bulk Data export (one NDJSON file per type).

    `anchor` is the "today" of the history (default 2026-11-26, so the bundled panel's
    alerts do not drift with the calendar); review it with `--as-of` that date.
    `dirty` is the share of records of each dirty kind. `style` "synthea" writes records
    shaped as the Synthea generator writes them (`as_synthea`).
    """
    if style not in ("clinic", "synthea"):
        raise UsageError(f"unknown style {style!r} (clinic, synthea)")
    out = Path(out_dir)
    gen = _Gen(seed, anchor or DEFAULT_ANCHOR, dirty)
    shape = random.Random(seed + 1)
    w = _Writer(out, gzip)
    try:
        for i in range(n):
            for rtype, res in gen.patient(i):
                if isinstance(res, bytes):
                    w.raw(rtype, res)
                    continue
                shaped = res if style == "clinic" else as_synthea(rtype, res, shape)
                if shaped is not None:
                    w.write(shaped)
            if progress is not None and i % 1000 == 999:
                progress(i + 1)
        for med in gen.medications.values():
            w.write(med)
    finally:
        w.close()
    return out
