"""What evaluation returns: Findings (internal) and Alerts/Results (the public contract).

The JSON shapes are the `cds check` contract (README, "JSON output"); fields are only ever
added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds.knowledge.mme import MmeResult
from cds.knowledge.normalize import NormalizedMed


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with what evaluation needs precomputed: its pack, its reference, its family."""

    pack_id: str
    pack_ref: str  # pack@version
    pack_digest: str
    rule: Any  # cds.rules.models rule
    ref: str  # pack/rule-id
    family: str
    role: str
    when: Any = None  # compiled Expression or None
    #: The rule's own closing sentences (mechanism, evidence status, sources), built once.
    tail: str = ""


@dataclass(slots=True, eq=False)  # built per finding, hot: no frozen __init__ cost
class Finding:
    rule: CompiledRule
    meds: tuple[NormalizedMed, ...]
    values: dict[str, Any]
    specificity: float = 0.0
    key: tuple[Any, ...] = ()  # what makes two findings "the same" for deduplication


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: str  # add-naloxone | remove-draft | reduce-dose | discontinue
    label: str
    order_ids: tuple[str, ...] = ()
    max_daily_dose: float | None = None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 2 us per alert
class Alert:
    id: str
    rule: str
    pack: str
    pack_digest: str
    family: str
    severity: str
    priority: int
    summary: str
    rationale: str
    medications: tuple[str, ...]
    sources: tuple[str, ...]
    actions: tuple[str, ...]
    order_ids: tuple[str, ...] = ()
    also: tuple[str, ...] = ()  # other rules (any pack) that reported the same finding
    role: str = "pharmacist"
    interruptive: bool = True
    draft: bool = False  # involves a draft order (CDS Hooks order-select/order-sign)
    evidence: str = "confirmed"
    suggestions: tuple[Suggestion, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "rule": self.rule, "pack": self.pack, "family": self.family,
            "severity": self.severity, "priority": self.priority, "summary": self.summary,
            "rationale": self.rationale, "medications": list(self.medications),
            "sources": list(self.sources), "actions": list(self.actions),
            "also": list(self.also), "role": self.role, "interruptive": self.interruptive,
            "pack_digest": self.pack_digest, "evidence": self.evidence,
            "order_ids": list(self.order_ids),
        }


def _r(x: float) -> float:
    return round(x, 2)


def mme_to_dict(m: MmeResult) -> dict[str, Any]:
    return {
        "total": _r(m.total),
        "items": [{"medication": i.medication, "ingredient": i.ingredient,
                   "daily_dose": _r(i.daily_dose), "unit": i.unit, "factor": i.factor,
                   "mme": _r(i.mme), "factor_status": i.factor_status, "source": i.source}
                  for i in m.items],
        "excluded": [{"medication": e.medication, "reason": e.reason} for e in m.excluded],
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
        }
