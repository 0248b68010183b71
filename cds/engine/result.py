"""What one evaluation returns: the alerts, the MME, what was not recognized and the patient
summary. `Result.to_dict()` is the `cds check --format json` contract (README): fields are
only ever added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from cds.engine.alerts import Alert
from cds.engine.summary import PatientSummary
from cds.knowledge.mme import MmeResult
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.quality import DataIssue


def _r(x: float) -> float:
    return round(x, 2)


def mme_to_dict(m: MmeResult) -> dict[str, Any]:
    return {
        "total": _r(m.total),
        "lower_bound": m.lower_bound,
        "items": [{"medication": i.medication, "ingredient": i.ingredient,
                   "daily_dose": _r(i.daily_dose), "unit": i.unit, "factor": i.factor,
                   "mme": _r(i.mme), "factor_status": i.factor_status, "source": i.source,
                   "route": i.route, "route_basis": i.route_basis, "assumed": list(i.assumed)}
                  for i in m.items],
        "excluded": [{"medication": e.medication, "reason": e.reason, "uncounted": e.uncounted}
                     for e in m.excluded],
        "factor_set": m.factor_set,
    }


@dataclass(frozen=True)
class Result:
    patient: str
    as_of: date
    packs: tuple[str, ...]
    knowledge: str
    mme: MmeResult
    unrecognized: tuple[NormalizedMed, ...]
    alerts: tuple[Alert, ...]
    summary: PatientSummary
    #: What could not be checked, and why (also said as data-quality alerts)
    issues: tuple[DataIssue, ...] = ()
    #: Why the patient was not reviewed at all (recorded as deceased), else None
    not_reviewed: str | None = None
    #: (pack@version, why): packs whose scope leaves the patient out (hospice, age...)
    out_of_scope: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "packs": list(self.packs),
            "mme": mme_to_dict(self.mme),
            "unrecognized": [{"medication": m.label, "reason": m.reason or "not recognized"}
                             for m in self.unrecognized],
            "alerts": [a.to_dict() for a in self.alerts],
            "as_of": self.as_of.isoformat(),
            "knowledge": self.knowledge,
            "summary": self.summary.to_dict(),
            "not_reviewed": self.not_reviewed,
            "out_of_scope": [{"pack": p, "reason": why} for p, why in self.out_of_scope],
            "not_checked": [{"check": i.check, "medication": i.medication, "reason": i.reason,
                             "field": i.field} for i in self.issues],
        }
