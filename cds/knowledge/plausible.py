"""Screen a record for values no patient can have, before any rule reads it.

A creatinine of 0, a weight of 7,000 kg, a birth date next year, an order authored on
9999-12-31 or a days' supply of a billion are recording errors. Used as they are, they make
alerts fire on nonsense, quietly not fire, or overflow a date. They are not used: each one
becomes a data-quality finding (`implausible`) naming the field and the value, and what it
leaves unchecked. The latest lab of a kind that is implausible blocks the kind (an older value
is not used in its place: the patient may have changed since). The bounds are data, with
their reasons: cds/knowledge/data/plausibility.yaml.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from cds.knowledge.quality import DataIssue
from cds.patient import Condition, MedicationOrder, Observation, Patient


@dataclass(frozen=True, slots=True)
class Bound:
    """The plausible range of one observation kind, in its canonical unit."""

    unit: str
    above: float | None = None
    at_least: float | None = None
    at_most: float | None = None

    def accepts(self, v: float) -> bool:
        return (math.isfinite(v)
                and (self.above is None or v > self.above)
                and (self.at_least is None or v >= self.at_least)
                and (self.at_most is None or v <= self.at_most))

    def text(self) -> str:
        unit = "" if self.unit == "1" else f" {self.unit}"
        parts = [f"above {self.above:g}" if self.above is not None else None,
                 f"at least {self.at_least:g}" if self.at_least is not None else None,
                 f"at most {self.at_most:g}{unit}" if self.at_most is not None else None]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Plausibility:
    observations: dict[str, Bound]
    max_age_years: int
    future_days: int  # a record dated later than this after the evaluation date
    max_supply_days: float


def load_plausibility(path: Path) -> Plausibility:
    with path.open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return Plausibility(
        observations={k: Bound(str(v["unit"]), v.get("above"), v.get("at_least"), v.get("at_most"))
                      for k, v in doc["observations"].items()},
        max_age_years=int(doc["age"]["at_most_years"]),
        future_days=int(doc["dates"]["future_days"]),
        max_supply_days=float(doc["supply"]["at_most_days"]))


#: What a rejected lab leaves unchecked, in the words of the finding.
_LEAVES = {
    "creatinine": "kidney function (CrCl, eGFR) not computed: kidney dosing rules not checked "
                  "unless a reported eGFR is on file",
    "weight": "CrCl not computed (Cockcroft-Gault needs the weight): rules stated in CrCl "
              "use the eGFR where known, else are not checked",
    "height": "CrCl computed with the actual body weight (no height)",
    "egfr": "the reported eGFR not used: the eGFR is computed from the creatinine where one "
            "is on file, else kidney rules stated in eGFR are not checked",
    "bilirubin": "Child-Pugh class computed without it (a lower bound) unless recorded",
    "albumin": "Child-Pugh class computed without it (a lower bound) unless recorded",
    "inr": "Child-Pugh class computed without it (a lower bound) unless recorded",
}

#: Where a medication record's dates and supply are in FHIR (the native field in brackets).
_ORDER_FIELDS = {
    ("request", "authored"): "MedicationRequest.authoredOn",
    ("statement", "authored"): "MedicationStatement.effective[x]",
    ("dispense", "authored"): "MedicationDispense.whenHandedOver",
    ("dispense", "dispensed"): "MedicationDispense.whenHandedOver",
    ("request", "supply_days"): "MedicationRequest.dispenseRequest.expectedSupplyDuration",
    ("dispense", "supply_days"): "MedicationDispense.daysSupply",
}


@dataclass
class Screened:
    """The record with its implausible values taken out, and what was taken out."""

    orders: list[MedicationOrder]
    latest: dict[str, Observation]  # the latest plausible lab of each kind not blocked
    age: int | None
    conditions: Sequence[Condition]
    issues: list[DataIssue] = field(default_factory=list)
    #: kind -> the rejected latest value, in words ("creatinine 0 mg/dL on 2026-11-01")
    rejected: dict[str, str] = field(default_factory=dict)


def screen(rules: Plausibility, patient: Patient, orders: Iterable[MedicationOrder],
           as_of: date) -> Screened:
    """The patient's values that can be used on `as_of`; nothing is copied when all are."""
    latest_day = add_days(as_of, rules.future_days)
    out = Screened([], {}, None, patient.conditions)
    out.age = _age(rules, patient, as_of, out.issues)
    out.orders = [_order(rules, o, latest_day, out.issues) for o in orders]
    _labs(rules, patient.observations, latest_day, out)
    if any(c.onset and c.onset > latest_day or c.recorded and c.recorded > latest_day
           for c in patient.conditions):
        out.conditions = [_condition(c, latest_day, out.issues) for c in patient.conditions]
    for e in patient.events:  # rules never count a future event as done: said, kept
        if e.date is not None and e.date > latest_day:
            out.issues.append(DataIssue(
                "implausible", None, f"{e.kind} {e.id or ''}".strip(),
                f"dated {e.date}, more than {rules.future_days} days after the review date: "
                f"not counted as done", f"{e.kind} date (native: events[].date)"))
    return out


def add_days(day: date, days: float) -> date:
    """`day` + `days`, saturating at the calendar's ends instead of overflowing."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def _age(rules: Plausibility, patient: Patient, as_of: date, issues: list[DataIssue]) -> int | None:
    age, born = patient.age_on(as_of), patient.birth_date
    if age is None or born is None:
        return age
    if born > as_of:
        why = "is after the review date"
    elif age > rules.max_age_years:
        why = f"makes the patient {age} years old (more than {rules.max_age_years})"
    else:
        return age
    issues.append(DataIssue(
        "implausible", None, "birth date",
        f"birth date {born} {why}: not used, so the age is unknown: rules that need the age "
        f"(Beers, CrCl, eGFR, a pack's age scope) are not checked",
        "Patient.birthDate (native: birth_date)"))
    return None


def _order(rules: Plausibility, o: MedicationOrder, latest_day: date,
           issues: list[DataIssue]) -> MedicationOrder:
    drop: dict[str, Any] = {}
    for name in ("authored", "dispensed"):
        day = getattr(o, name)
        if day is not None and day > latest_day:
            if name == "authored" and o.source == "dispense" and day == o.dispensed:
                drop[name] = None  # the same FHIR field as `dispensed`: said once, below
                continue
            drop[name] = None
            issues.append(DataIssue(
                "implausible", o.id, o.label,
                f"{name} date {day} is more than {rules.future_days} days after the review "
                f"date: not used (the medication is checked without it)",
                f"{_ORDER_FIELDS.get((o.source, name), name)} (native: {name})"))
    if o.supply_days is not None and not (o.supply_days <= rules.max_supply_days):
        drop["supply_days"] = None
        issues.append(DataIssue(
            "implausible", o.id, o.label,
            f"days' supply {o.supply_days:g} is more than {rules.max_supply_days:g} days: not "
            f"used (the supply is unknown)",
            f"{_ORDER_FIELDS.get((o.source, 'supply_days'), 'supply_days')} (native: supply_days)"))
    t = o.timing
    if t is not None and t.bounds_start is not None and t.bounds_start > latest_day:
        drop["timing"] = t.model_copy(update={"bounds_start": None})
        issues.append(DataIssue(
            "implausible", o.id, o.label,
            f"start date {t.bounds_start} is more than {rules.future_days} days after the "
            f"review date: not used (the medication is checked without it)",
            "dosageInstruction.timing.repeat.boundsPeriod.start (native: timing.bounds_start)"))
    return o.model_copy(update=drop) if drop else o


def _labs(rules: Plausibility, observations: Sequence[Observation], latest_day: date,
          out: Screened) -> None:
    """The latest lab of each kind (undated ones count as oldest; of two on one date, the
    later in the list), blocked when it is implausible."""
    best: dict[str, Observation] = {}
    for o in observations:
        if o.date is not None and o.date > latest_day:
            out.issues.append(DataIssue(
                "implausible", None, o.kind,
                f"{o.kind} dated {o.date}, more than {rules.future_days} days after the review "
                f"date: not used", _lab_field(o, "effective[x]")))
            continue
        b = best.get(o.kind)
        if b is None or (o.date or date.min) >= (b.date or date.min):
            best[o.kind] = o
    for kind, o in best.items():
        bound = rules.observations.get(kind)
        if bound is None or bound.accepts(o.value):
            out.latest[kind] = o
            continue
        unit = "" if o.unit in (None, "1") else f" {o.unit}"
        value = f"{o.kind} {o.value:g}{unit}" + (f" on {o.date}" if o.date else "")
        out.rejected[kind] = value
        out.issues.append(DataIssue(
            "implausible", None, o.kind,
            f"{value} is not a possible value (plausible: {bound.text()}): not used, and no "
            f"older {o.kind} in its place; {_LEAVES.get(kind, 'rules that need it are not checked')}",
            _lab_field(o, "value[x]")))


def _lab_field(o: Observation, element: str) -> str:
    return f"Observation.{element} ({o.kind}" + (f", code {o.code})" if o.code else ")")


def _condition(c: Condition, latest_day: date, issues: list[DataIssue]) -> Condition:
    drop = {name: None for name in ("onset", "recorded")
            if (getattr(c, name) or date.min) > latest_day}
    if drop:
        what = c.text or c.code or "a condition"
        issues.append(DataIssue(
            "implausible", None, f"condition {what}",
            f"{' and '.join(f'{n} date {getattr(c, n)}' for n in drop)} far in the future: not "
            f"used (the condition counts as current)",
            "Condition.onset[x] / Condition.recordedDate (native: onset, recorded)"))
        return c.model_copy(update=drop)
    return c
