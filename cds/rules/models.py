"""The rule-pack schema. Packs are data: these models validate them; cds/engine compiles them.

See docs/rule-packs.md for the authors' guide with an example of every rule type.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cds.vocabulary import Family, Role, Severity

RULE_ID = r"^[a-z0-9][a-z0-9\-.]*$"
SEMVER = r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.\-]+)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(v: object) -> object:
    return [v] if isinstance(v, str) else v


class Suggestion(_Strict):
    """A concrete change an EHR can apply (CDS Hooks suggestion)."""

    kind: Literal["add-naloxone", "remove-draft", "reduce-dose", "discontinue"]
    label: str = Field(max_length=120)


class Action(_Strict):
    text: str
    suggestion: Suggestion | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, v: object) -> object:
        return {"text": v} if isinstance(v, str) else v


class DoseLimit(_Strict):
    value: float = Field(gt=0)
    unit: Literal["mg", "mcg/h"] = "mg"
    per: Literal["day"] = "day"


class RuleBase(_Strict):
    id: str = Field(pattern=RULE_ID)
    title: str | None = None
    severity: Severity
    summary: str = Field(max_length=139)  # CDS Hooks: "<140 characters"
    rationale: str
    actions: list[Action] = Field(default_factory=list)
    sources: list[str] = Field(min_length=1)
    #: Evidence status of the rule's clinical content, as in the knowledge files.
    evidence: Literal["confirmed", "secondary", "analytic", "consensus"] = "confirmed"
    #: Rules that report the same finding (across packs) share this key and merge into one alert.
    finding: str | None = None
    #: False for pairs meant to be shown passively (e.g. ONC's low-priority list).
    interruptive: bool = True
    #: Who should act on the alert; overrides the pack's escalation policy.
    role: Role | None = None
    #: An extra condition in the expression language (docs/expressions.md).
    when: str | None = None
    tags: list[str] = Field(default_factory=list)

    #: The fields that hold drug or class names (the loader checks each against the knowledge).
    ref_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def family(self) -> Family:
        raise NotImplementedError

    def refs(self) -> list[tuple[str, str]]:
        """(field, name) of every drug or class the rule names."""
        out: list[tuple[str, str]] = []
        for name in self.ref_fields:
            value = getattr(self, name)
            out += [(name, v) for v in ([value] if isinstance(value, str) else value)]
        return out


class InteractionRule(RuleBase):
    type: Literal["interaction"]
    a: list[str] = Field(min_length=1)
    b: list[str] = Field(min_length=1)
    mechanism: str
    management: str

    ref_fields: ClassVar[tuple[str, ...]] = ("a", "b")
    _lists = field_validator("a", "b", mode="before")(_as_list)

    @property
    def family(self) -> Family:
        return "interaction"


class BurdenRule(RuleBase):
    type: Literal["burden"]
    kind: Literal["cns-count", "combination", "anticholinergic"]
    counts: str = "cns-active-beers"  # cns-count: the class whose members are counted
    min: float | None = None  # cns-count: number of drugs; anticholinergic: total score
    all: list[str] = Field(default_factory=list)  # combination: one drug of each

    ref_fields: ClassVar[tuple[str, ...]] = ("all",)

    def refs(self) -> list[tuple[str, str]]:
        return super().refs() + ([("counts", self.counts)] if self.kind == "cns-count" else [])

    @model_validator(mode="after")
    def _shape(self) -> BurdenRule:
        if self.kind == "combination" and len(self.all) < 2:
            raise ValueError("a combination rule needs 'all' with two or more drugs or classes")
        if self.kind in ("cns-count", "anticholinergic") and self.min is None:
            raise ValueError(f"a {self.kind} rule needs 'min'")
        return self

    @property
    def family(self) -> Family:
        return "burden"


class MmeRule(RuleBase):
    type: Literal["mme"]
    min: float = Field(gt=0)
    below: float | None = None
    #: Also say whether the tier was newly reached: the total was below `min` on some day of
    #: the last N days (one alert says both the level and that it is new).
    new_within_days: int | None = Field(default=None, gt=0)

    @property
    def family(self) -> Family:
        return "mme"


class RenalRule(RuleBase):
    type: Literal["renal"]
    drugs: list[str] = Field(min_length=1)
    measure: Literal["crcl", "egfr"] = "crcl"
    below: float | None = None  # fires when measure < below
    at_or_below: float | None = None  # fires when measure <= at_or_below
    at_least: float | None = None  # and measure >= at_least (lower edge of a band)
    above: float | None = None  # fires when measure > above (e.g. edoxaban > 95)
    action: Literal["avoid", "reduce", "extend-interval", "monitor", "review"]
    max_daily_dose: DoseLimit | None = None
    extended_release: bool | None = None  # restrict to ER (True) or IR (False) products

    ref_fields: ClassVar[tuple[str, ...]] = ("drugs",)
    _lists = field_validator("drugs", mode="before")(_as_list)

    @model_validator(mode="after")
    def _band(self) -> RenalRule:
        if self.below is None and self.at_or_below is None and self.above is None:
            raise ValueError("a renal rule needs 'below', 'at_or_below' or 'above'")
        return self

    @property
    def family(self) -> Family:
        return "renal"


class RenalMonitoringRule(RuleBase):
    """Renal function missing or stale while a renally restricted drug is present."""

    type: Literal["renal-monitoring"]
    max_age_days: int = Field(default=365, gt=0)
    drugs: list[str] = Field(default_factory=list)  # empty: every drug of the pack's renal rules

    ref_fields: ClassVar[tuple[str, ...]] = ("drugs",)

    @property
    def family(self) -> Family:
        return "renal"


class HepaticRule(RuleBase):
    type: Literal["hepatic"]
    drugs: list[str] = Field(min_length=1)
    child_pugh: list[Literal["A", "B", "C"]] = Field(min_length=1)
    action: Literal["avoid", "reduce", "extend-interval", "monitor", "review"]
    max_daily_dose: DoseLimit | None = None

    ref_fields: ClassVar[tuple[str, ...]] = ("drugs",)
    _lists = field_validator("drugs", mode="before")(_as_list)

    @property
    def family(self) -> Family:
        return "hepatic"


class EscalationRule(RuleBase):
    type: Literal["escalation"]
    kind: Literal["mme-increase", "mme-crossing", "rapid-taper", "long-term-opioid",
                  "multiple-prescribers", "no-naloxone"]
    percent: float | None = None  # mme-increase: rise of at least; rapid-taper: fall of at least
    days: int | None = None  # look-back window
    threshold: float | None = None  # mme-crossing; no-naloxone minimum MME
    min_prescribers: int = 2
    with_classes: list[str] = Field(default_factory=list)  # no-naloxone: also when present
    naloxone: list[str] = Field(default_factory=lambda: ["opioid-antagonist"])

    ref_fields: ClassVar[tuple[str, ...]] = ("with_classes", "naloxone")

    @model_validator(mode="after")
    def _params(self) -> EscalationRule:
        need = {"mme-increase": ("percent", "days"), "mme-crossing": ("threshold", "days"),
                "rapid-taper": ("percent", "days"), "long-term-opioid": ("days",),
                "multiple-prescribers": ("days",), "no-naloxone": ()}[self.kind]
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.kind} rule needs {', '.join(missing)}")
        if self.kind == "no-naloxone" and self.threshold is None and not self.with_classes:
            raise ValueError("a no-naloxone rule needs 'threshold' or 'with_classes'")
        return self

    @property
    def family(self) -> Family:
        return "escalation"


class ExpressionRule(RuleBase):
    type: Literal["expression"]
    rule_family: Family = Field(alias="family")
    #: Drugs or classes that must be present (the rule's trigger and its reported medications).
    drugs: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    ref_fields: ClassVar[tuple[str, ...]] = ("drugs",)
    _lists = field_validator("drugs", mode="before")(_as_list)

    @model_validator(mode="after")
    def _needs_when(self) -> ExpressionRule:
        if not self.when:
            raise ValueError("an expression rule needs 'when'")
        return self

    @property
    def family(self) -> Family:
        return self.rule_family


class DuplicationRule(RuleBase):
    """Two or more drugs of one therapeutic class at once, where that is rarely intended (two
    NSAIDs, two long-acting opioids): counted as distinct ingredient sets, so IR and ER of one
    drug are one drug; an order ending within `overlap_days` is a taper or a switch, not a
    duplication."""

    type: Literal["duplication"]
    drug_class: str = Field(alias="class")
    min: int = Field(default=2, ge=2)
    overlap_days: int = Field(default=14, ge=0)
    #: members of the class that do not count (low-dose aspirin among NSAIDs, say)
    exclude: list[str] = Field(default_factory=list)
    #: count only extended-release or long-acting products (ER dose forms, transdermal
    #: systems) and the drugs listed in `long_acting_drugs` (methadone)
    long_acting: bool = False
    long_acting_drugs: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _lists = field_validator("exclude", "long_acting_drugs", mode="before")(_as_list)

    def refs(self) -> list[tuple[str, str]]:
        return ([("class", self.drug_class)] + [("exclude", n) for n in self.exclude]
                + [("long_acting_drugs", n) for n in self.long_acting_drugs])

    @property
    def family(self) -> Family:
        return "duplication"


class DataQualityRule(RuleBase):
    """What could not be checked in the record (cds.knowledge.quality): one alert per check,
    listing every medication it concerns with the reason."""

    type: Literal["data-quality"]
    check: Literal["unrecognized", "not-counted", "dose-unit", "code-text-mismatch"]

    @property
    def family(self) -> Family:
        return "data-quality"


Rule = Annotated[
    InteractionRule | BurdenRule | MmeRule | RenalRule | RenalMonitoringRule | HepaticRule
    | EscalationRule | ExpressionRule | DuplicationRule | DataQualityRule,
    Field(discriminator="type"),
]


class RuleFile(_Strict):
    rules: list[Rule]


class RoleRoute(_Strict):
    role: Role
    family: Family | None = None
    min_severity: Severity | None = None
    rules: list[str] = Field(default_factory=list)


class Referral(_Strict):
    """When alerts add up to a referral suggestion (e.g. pain specialist)."""

    role: Role = "pain-specialist"
    min_mme: float | None = None
    min_escalation_alerts: int | None = None
    text: str
    #: Alerts of these families carry the referral and go to `role`.
    families: list[Family] = Field(default_factory=lambda: list[Family](["mme"]))


class EscalationPolicy(_Strict):
    default_role: Role = "pharmacist"
    routes: list[RoleRoute] = Field(default_factory=list)
    referral: Referral | None = None


class ChangelogEntry(_Strict):
    version: str = Field(pattern=SEMVER)
    date: date
    changes: list[str] = Field(min_length=1)


class PackMeta(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    version: str = Field(pattern=SEMVER)
    title: str
    description: str
    knowledge: str = Field(description="knowledge version needed, e.g. '>=2026.11.0'")
    maintainers: list[str] = Field(min_length=1)
    changelog: list[ChangelogEntry] = Field(min_length=1)
    rule_files: list[str] = Field(default_factory=lambda: ["rules/*.yaml"])
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    license: str | None = None

    @model_validator(mode="after")
    def _changelog_has_version(self) -> PackMeta:
        if self.version not in {c.version for c in self.changelog}:
            raise ValueError(f"changelog has no entry for version {self.version}")
        return self
