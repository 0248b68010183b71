"""What matching produces: compiled rules, Findings (internal) and Alerts (the public contract).

The JSON shapes are the `cds check` contract (README, "JSON output"); fields are only ever
added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    kind: Any = None  # cds.engine.kinds.RuleKind: the one home of the rule type's behaviour


@dataclass(slots=True, eq=False)  # built per finding, hot: no frozen __init__ cost
class Finding:
    rule: CompiledRule
    meds: tuple[NormalizedMed, ...]
    values: dict[str, Any]
    specificity: float = 0.0
    key: tuple[Any, ...] = ()  # what makes two findings "the same" for deduplication
    #: rules that reported the same finding and were merged into this one before it was built
    #: (the indexed evaluator groups a pair's rules as it goes): they become the alert's `also`
    also: tuple[CompiledRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: str  # add-naloxone | remove-draft | reduce-dose | discontinue
    label: str
    order_ids: tuple[str, ...] = ()
    max_daily_dose: float | None = None
    unit: str | None = None  # of max_daily_dose: mg (per day) or mcg/h


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
    #: (code, display, snooze days or None): the coded responses the rule offers
    responses: tuple[tuple[str, str, int | None], ...] = ()
    #: The stable alert key a decision is filed under (alert_key): the rule without its
    #: version, the drug of a per-medication finding, the dose or function band
    key: str = ""
    #: The ingredients the finding involves, sorted (a new one re-opens a decided alert)
    ingredients: tuple[str, ...] = ()
    band: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "rule": self.rule, "pack": self.pack, "family": self.family,
            "severity": self.severity, "priority": self.priority, "summary": self.summary,
            "rationale": self.rationale, "medications": list(self.medications),
            "sources": list(self.sources), "actions": list(self.actions),
            "also": list(self.also), "role": self.role, "interruptive": self.interruptive,
            "pack_digest": self.pack_digest, "evidence": self.evidence,
            "order_ids": list(self.order_ids), "key": self.key,
            "ingredients": list(self.ingredients), "band": self.band,
        }


def alert_key(rule: str, subject: str, band: str | None) -> str:
    """The stable key of an alert for one patient: `pack/rule[:subject][@band]`. Stable across
    pack versions (the rule id has no version), runs and medication-list order; the drugs of a
    pairwise finding are not in it (a new drug in the pair is a change of the same alert)."""
    return rule + (f":{subject}" if subject else "") + (f"@{band.replace(' ', '')}" if band else "")
