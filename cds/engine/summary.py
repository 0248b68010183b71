"""The patient summary every renderer shows beside the alerts: the values the rules used.

Built once per evaluation from the Facts, so the CLI, the CDS Hooks service and the panel show
the same numbers and never read `Facts` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from cds.engine.rationale import renal_inputs
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed


@dataclass(frozen=True, slots=True)
class MedicationSummary:
    label: str
    order_id: str
    source: str  # request | statement | dispense
    draft: bool
    prescriber: str | None
    start: date | None
    #: (ingredient, amount per day, unit mg | mcg/h); empty when the daily dose is unknown
    daily: tuple[tuple[str, float, str], ...]
    daily_reason: str | None  # why the daily dose is unknown
    #: how it is taken, in words ("10 mg, 4 times a day, as needed"), when the dose is known
    sig: str | None = None
    #: the latest dispense of the same drug on file, and its days' supply
    last_fill: date | None = None
    supply_days: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"medication": self.label, "order_id": self.order_id, "source": self.source,
                "draft": self.draft, "prescriber": self.prescriber,
                "start": self.start.isoformat() if self.start else None,
                "daily_dose": [{"ingredient": i, "amount": round(a, 2), "unit": u}
                               for i, a, u in self.daily],
                "daily_dose_unknown": self.daily_reason, "sig": self.sig,
                "last_fill": self.last_fill.isoformat() if self.last_fill else None,
                "supply_days": self.supply_days}


@dataclass(frozen=True, slots=True)
class PatientSummary:
    age: int | None
    sex: str
    weight_kg: float | None
    crcl: float | None  # mL/min, Cockcroft-Gault
    crcl_weight_basis: str | None  # actual | adjusted
    egfr: float | None  # mL/min/1.73m2
    egfr_basis: str | None  # measured | CKD-EPI 2021
    creatinine: float | None  # mg/dL
    kidney_measured_on: date | None
    kidney: str  # the kidney values in words, as the rationale states them
    child_pugh: str | None
    child_pugh_score: int | None
    child_pugh_lower_bound: bool  # parts missing: the class and score are at least these
    acb_total: int
    cns_active: int
    medications: tuple[MedicationSummary, ...]

    @classmethod
    def of(cls, facts: Facts) -> PatientSummary:
        fills: dict[tuple[str, ...], NormalizedMed] = {}
        for m in (*facts.meds, *facts.history):  # the latest dispense of each drug
            if m.source == "dispense" and m.dispensed is not None:
                key = tuple(sorted(m.ingredients))
                if key not in fills or m.dispensed > (fills[key].dispensed or date.min):
                    fills[key] = m
        r = facts.renal
        cp = facts.hepatic
        return cls(
            age=facts.age, sex=facts.sex, weight_kg=facts.weight_kg,
            crcl=r.crcl.value if r.crcl else None,
            crcl_weight_basis=r.crcl.weight_basis if r.crcl else None,
            egfr=r.egfr, egfr_basis=r.egfr_basis,
            creatinine=r.creatinine.value if r.creatinine else None,
            kidney_measured_on=r.measured_on, kidney=renal_inputs(facts),
            child_pugh=cp.cls if cp else None, child_pugh_score=cp.score if cp else None,
            child_pugh_lower_bound=bool(cp and cp.lower_bound),
            acb_total=facts.acb_total, cns_active=len(facts.cns_active),
            medications=tuple(MedicationSummary(
                m.label, m.order_id, m.source, m.draft, m.prescriber, m.start, m.daily,
                m.daily_reason, _sig(m), *_last_fill(m, fills)) for m in facts.meds))

    def to_dict(self) -> dict[str, Any]:
        def rnd(x: float | None) -> float | None:
            return None if x is None else round(x, 1)

        return {
            "age": self.age, "sex": self.sex, "weight_kg": rnd(self.weight_kg),
            "kidney": {"crcl": rnd(self.crcl), "crcl_weight_basis": self.crcl_weight_basis,
                       "egfr": rnd(self.egfr), "egfr_basis": self.egfr_basis,
                       "creatinine": None if self.creatinine is None else round(self.creatinine, 2),
                       "measured_on": (self.kidney_measured_on.isoformat()
                                       if self.kidney_measured_on else None),
                       "text": self.kidney},
            "child_pugh": {"class": self.child_pugh, "score": self.child_pugh_score,
                           "lower_bound": self.child_pugh_lower_bound},
            "acb_total": self.acb_total, "cns_active": self.cns_active,
            "medications": [m.to_dict() for m in self.medications],
        }


def _sig(m: NormalizedMed) -> str | None:
    """How the medication is taken, in words, from the dose the engine computed."""
    if any(u == "mcg/h" for _, _, u in m.daily):  # a patch: its rate is the dose
        return ", ".join(f"{a:g} {u}" for _, a, u in m.daily)
    if not m.daily or not m.doses_per_day:
        return None
    n = m.doses_per_day
    per = "; ".join(f"{amount / n:g} {unit}" for _, amount, unit in m.daily)
    times = {1: "once a day", 2: "twice a day"}.get(int(n)) if float(n).is_integer() else None
    return f"{per}, {times or f'{n:g} times a day'}" + (", as needed (at most)" if m.as_needed
                                                         else "")


def _last_fill(m: NormalizedMed, fills: dict[tuple[str, ...], NormalizedMed]
               ) -> tuple[date | None, float | None]:
    fill = fills.get(tuple(sorted(m.ingredients)))
    return (fill.dispensed, fill.supply_days) if fill is not None else (None, None)
