"""The rule-pack schema. Packs are data: these models validate them; cds/engine compiles them.

See docs/rule-packs.md for the authors' guide with an example of every rule type.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cds.errors import FieldError
from cds.vocabulary import Family, Role, Severity

RULE_ID = r"^[a-z0-9][a-z0-9\-.]*$"
SEMVER = r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.\-]+)?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(v: object) -> object:
    return [v] if isinstance(v, str) else v


class Suggestion(_Strict):
    """A concrete change an EHR can apply (CDS Hooks suggestion)."""

    kind: Literal["add-naloxone", "remove-draft", "reduce-dose", "discontinue",
                  "order-toxicology-screen", "refer"]
    label: str = Field(max_length=120)


#: The contexts an action may need (an action's `when:`): `draft`, the finding involves a
#: draft order (CDS Hooks order-select, order-sign); `no-draft`, it does not (a panel review,
#: patient-view, or an order-sign whose finding is about medications already on file);
#: `no-naloxone`, no naloxone is on file (current, or ordered or dispensed within the
#: no-naloxone rules' look-back).
ActionContext = Literal["draft", "no-draft", "no-naloxone"]

#: The context a suggestion kind implies for its action.
IMPLIED_CONTEXT: dict[str, ActionContext] = {"remove-draft": "draft",
                                            "add-naloxone": "no-naloxone"}


class Action(_Strict):
    text: str
    suggestion: Suggestion | None = None
    #: When the action is said at all (see ActionContext); an alert leaves out an action whose
    #: context does not hold. A remove-draft suggestion implies `draft`, an add-naloxone one
    #: `no-naloxone`.
    when: list[ActionContext] = Field(default_factory=list)

    _lists = field_validator("when", mode="before")(_as_list)

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, v: object) -> object:
        return {"text": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _contexts_agree(self) -> Action:
        if {"draft", "no-draft"} <= self.needs:
            raise FieldError("an action cannot need both 'draft' and 'no-draft'"
                             + (f" (its {self.suggestion.kind} suggestion implies "
                                f"'{IMPLIED_CONTEXT[self.suggestion.kind]}')"
                                if self.suggestion and self.suggestion.kind in IMPLIED_CONTEXT
                                else ""), "when")
        return self

    @property
    def needs(self) -> frozenset[str]:
        """The contexts the action is said in: its `when`, and what its suggestion implies."""
        implied = IMPLIED_CONTEXT.get(self.suggestion.kind) if self.suggestion else None
        return frozenset(self.when) | ({implied} if implied else set())


class DoseLimit(_Strict):
    value: float = Field(gt=0)
    unit: Literal["mg", "mcg/h"] = "mg"
    per: Literal["day"] = "day"


EventKind = Literal["procedure", "observation", "encounter", "care-plan", "service-request",
                   "condition"]


class RecordRequirement(_Strict):
    """A record that is looked for in the patient's chart: any of the value sets' codes, of
    the kinds listed, dated within `within_days` before the evaluation date."""

    value_sets: list[str] = Field(min_length=1)
    kinds: list[EventKind] = Field(default_factory=lambda: list[EventKind](
        ["procedure", "observation", "care-plan"]))
    within_days: int = Field(default=90, gt=0)
    #: How a person names the record ("a PDMP review"), in the alert and in `cds explain`.
    label: str

    _lists = field_validator("value_sets", "kinds", mode="before")(_as_list)


class Response(_Strict):
    """A coded response a clinician can give to the alert (CDS Hooks overrideReasons): a
    documentation ("PDMP reviewed") or a snooze; `snooze_days` is how long a decision with it
    stands."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    display: str
    snooze_days: int | None = Field(default=None, gt=0)


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
    #: Records that resolve the finding: when any is on file, the rule does not fire (a PDMP
    #: review within 90 days, a pain treatment plan); the alert says what would resolve it.
    unless: list[RecordRequirement] = Field(default_factory=list)
    #: The coded responses the alert offers (besides the common ones): CDS Hooks overrideReasons.
    responses: list[Response] = Field(default_factory=list)
    #: False: the rule speaks for patients outside the pack's scope too (CDC Rec 12, OUD
    #: treatment, is not limited to the guideline's pain scope)
    scoped: bool = True
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

    def value_set_refs(self) -> list[tuple[str, str]]:
        """(field, id) of every value set the rule names (the loader checks each exists)."""
        return [(f"unless[{i}].value_sets", v) for i, u in enumerate(self.unless)
                for v in u.value_sets]


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
            raise FieldError("a combination rule needs 'all' with two or more drugs or classes",
                             "all")
        if self.kind in ("cns-count", "anticholinergic") and self.min is None:
            raise FieldError(f"a {self.kind} rule needs 'min'", "min")
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
    kind: Literal["mme-increase", "mme-decrease", "mme-crossing", "rapid-taper",
                  "long-term-opioid", "multiple-prescribers", "no-naloxone"]
    percent: float | None = None  # mme-increase: rise of at least; rapid-taper: fall of at least
    days: int | None = None  # look-back window
    threshold: float | None = None  # mme-crossing; no-naloxone minimum MME
    min_prescribers: int = 2
    with_classes: list[str] = Field(default_factory=list)  # no-naloxone: also when present
    #: no-naloxone: also with an active condition in these value sets (overdose or substance
    #: use disorder history, sleep-disordered breathing)
    with_conditions: list[str] = Field(default_factory=list)
    naloxone: list[str] = Field(default_factory=lambda: ["opioid-overdose-reversal"])

    ref_fields: ClassVar[tuple[str, ...]] = ("with_classes", "naloxone")

    @model_validator(mode="after")
    def _params(self) -> EscalationRule:
        need = {"mme-increase": ("percent", "days"), "mme-decrease": ("percent", "days"),
                "mme-crossing": ("threshold", "days"),
                "rapid-taper": ("percent", "days"), "long-term-opioid": ("days",),
                "multiple-prescribers": ("days",), "no-naloxone": ()}[self.kind]
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise FieldError(f"a {self.kind} rule needs {', '.join(missing)}", missing[0])
        if (self.kind == "no-naloxone" and self.threshold is None and not self.with_classes
                and not self.with_conditions):
            raise ValueError("a no-naloxone rule needs 'threshold', 'with_classes' or "
                             "'with_conditions'")
        return self

    @property
    def family(self) -> Family:
        return "escalation"

    def value_set_refs(self) -> list[tuple[str, str]]:
        return super().value_set_refs() + [("with_conditions", v) for v in self.with_conditions]


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
            raise FieldError("an expression rule needs 'when'", "when")
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


class OpioidOrderRule(RuleBase):
    """Each current or draft opioid order (not opioid-use-disorder treatment, not an inpatient
    order) that meets every condition set: it starts opioid therapy (no opioid order,
    statement or dispense in the `naive_days` before it), it began within a window, its
    days' supply is acute (< 28 days, or not given) or subacute/chronic (28 or more), over
    `supply_over_days`, extended-release or long-acting. One alert per rule lists the orders."""

    type: Literal["opioid-order"]
    new_start: bool = False
    naive_days: int = Field(default=90, gt=0)
    #: the order began at most this many days before the evaluation date (a draft: today)
    started_within_days: int | None = Field(default=30, ge=0)
    #: ... and at least this many days before (a follow-up due 7 to 28 days after a start)
    started_at_least_days: int | None = Field(default=None, ge=0)
    supply: Literal["acute", "subacute-chronic"] | None = None
    supply_over_days: float | None = Field(default=None, ge=0)
    extended_release: bool | None = None
    long_acting_drugs: list[str] = Field(default_factory=list)  # long-acting whatever the form

    ref_fields: ClassVar[tuple[str, ...]] = ("long_acting_drugs",)
    _lists = field_validator("long_acting_drugs", mode="before")(_as_list)

    @property
    def family(self) -> Family:
        return "guideline"


class ConditionRule(RuleBase):
    """An active condition in the value sets recorded (or begun) within `within_days`, with
    none of `without_drugs` current or taken within those days (opioid use disorder without
    medication for it)."""

    type: Literal["condition"]
    conditions: list[str] = Field(min_length=1)  # value set ids
    within_days: int = Field(default=90, gt=0)
    without_drugs: list[str] = Field(default_factory=list)

    ref_fields: ClassVar[tuple[str, ...]] = ("without_drugs",)
    _lists = field_validator("conditions", "without_drugs", mode="before")(_as_list)

    def value_set_refs(self) -> list[tuple[str, str]]:
        return super().value_set_refs() + [("conditions", v) for v in self.conditions]

    @property
    def family(self) -> Family:
        return "guideline"


class ToxicologyPanel(_Strict):
    tests: str  # value set id of the tests for the substance
    #: what, prescribed, makes a positive expected (none for a substance never prescribed)
    drugs: list[str] = Field(default_factory=list)
    label: str  # the substance, as said: "oxycodone"

    _lists = field_validator("drugs", mode="before")(_as_list)


class ToxicologyRule(RuleBase):
    """Urine drug test results that are unexpected given the prescriptions: an illicit
    substance detected, a prescribed drug not detected, or a drug detected that was not
    prescribed in the `rx_window_days` before the test. A result reads positive or negative
    from its value text ("Positive", "neg"), as the CDC implementation guide reads it."""

    type: Literal["toxicology"]
    lookback_days: int = Field(default=365, gt=0)
    rx_window_days: int = Field(default=31, gt=0)
    illicit: list[ToxicologyPanel] = Field(default_factory=list)
    prescribed: list[ToxicologyPanel] = Field(default_factory=list)

    def refs(self) -> list[tuple[str, str]]:
        return [(f"{side}.drugs", d) for side, panels in (("illicit", self.illicit),
                                                           ("prescribed", self.prescribed))
                for p in panels for d in p.drugs if side == "prescribed"]

    def value_set_refs(self) -> list[tuple[str, str]]:
        return super().value_set_refs() + [
            (f"{side}.tests", p.tests) for side, panels in (("illicit", self.illicit),
                                                            ("prescribed", self.prescribed))
            for p in panels]

    @property
    def family(self) -> Family:
        return "guideline"


class DataQualityRule(RuleBase):
    """What could not be checked in the record (cds.knowledge.quality): one alert per check,
    listing every medication it concerns with the reason."""

    type: Literal["data-quality"]
    check: Literal["unrecognized", "not-counted", "dose-unit", "code-text-mismatch", "implausible"]

    @property
    def family(self) -> Family:
        return "data-quality"


Rule = Annotated[
    InteractionRule | BurdenRule | MmeRule | RenalRule | RenalMonitoringRule | HepaticRule
    | EscalationRule | ExpressionRule | DuplicationRule | OpioidOrderRule | ConditionRule
    | ToxicologyRule | DataQualityRule,
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


class ScopeExclusion(_Strict):
    """Patients a guideline does not address: a condition in the value sets (active, or of any
    status with `any_status`), or records of the kinds listed within `within_days`, or (for
    active cancer) encounters with such a diagnosis in the window."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    label: str  # how the exclusion is said: "hospice or end-of-life care"
    conditions: list[str] = Field(default_factory=list)  # value set ids
    any_status: bool = False
    problem_list_only: bool = False  # only problem-list conditions count (not encounter diagnoses)
    records: list[RecordRequirement] = Field(default_factory=list)
    #: this many encounters within `encounter_days` with an encounter diagnosis in `conditions`
    encounters: int | None = Field(default=None, gt=0)
    encounter_days: int = Field(default=365, gt=0)
    source: str


class Scope(_Strict):
    """Who a pack addresses, evaluated once per patient: out of scope, none of its rules
    fire, and the result says why."""

    min_age: int | None = None
    #: outpatient: a patient whose current opioid orders are all inpatient orders
    #: (MedicationRequest.category) is out of scope
    setting: Literal["outpatient", "any"] = "any"
    exclusions: list[ScopeExclusion] = Field(default_factory=list)
    source: str

    def value_set_refs(self) -> list[tuple[str, str]]:
        return [(f"scope.exclusions[{i}].{where}", v) for i, e in enumerate(self.exclusions)
                for where, v in ([("conditions", c) for c in e.conditions]
                                 + [(f"records[{j}].value_sets", vs) for j, r in enumerate(e.records)
                                    for vs in r.value_sets])]


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
    scope: Scope | None = None
    license: str | None = None

    @model_validator(mode="after")
    def _changelog_has_version(self) -> PackMeta:
        if self.version not in {c.version for c in self.changelog}:
            raise FieldError(f"changelog has no entry for {self.version} (add one: "
                             f"- {{version: \"{self.version}\", date: YYYY-MM-DD, changes: "
                             "[...]})", "changelog")
        return self
