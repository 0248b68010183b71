"""The one typed patient model every input format is parsed into.

Native JSON input *is* this model serialized (see docs/native-format.md); the FHIR readers
build it too. Units of observations are converted here, once, at the boundary, so nothing
downstream ever sees a pound or a micromole.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cds.units import LAB_UNITS, convert_lab

Day = date  # alias: a field named `date` would shadow the type in annotations
Comparator = Literal["<", "<=", ">", ">="]
ObservationKind = Literal["weight", "height", "creatinine", "egfr", "bilirubin", "albumin", "inr"]
PeriodUnit = Literal["s", "min", "h", "d", "wk", "mo", "a"]
OrderSource = Literal["request", "statement", "dispense"]

#: FHIR MedicationRequest/Statement status values that make an order "current".
ACTIVE_STATUSES = frozenset({"active", "on-hold", "intended", "draft"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Coding(_Model):
    system: str | None = None
    code: str
    display: str | None = None


class Timing(_Model):
    """FHIR Timing, flattened: repeat.* plus the timing code (BID, Q6H, ...)."""

    frequency: int | None = Field(default=None, ge=1)
    frequency_max: int | None = Field(default=None, ge=1)
    period: float | None = Field(default=None, gt=0)
    period_max: float | None = Field(default=None, gt=0)
    period_unit: PeriodUnit | None = None
    time_of_day: list[str] = Field(default_factory=list)
    when: list[str] = Field(default_factory=list)
    code: str | None = None
    bounds_start: date | None = None
    bounds_end: date | None = None
    bounds_days: float | None = Field(default=None, gt=0)


class MaxDosePerPeriod(_Model):
    """FHIR Ratio numerator/denominator, e.g. 60 mg per 1 d."""

    value: float = Field(gt=0)
    unit: str
    period: float = Field(gt=0)
    period_unit: PeriodUnit


class MedicationOrder(_Model):
    """One medication order, statement or dispense."""

    id: str
    source: OrderSource = "request"
    status: str = "active"
    draft: bool = False
    authored: date | None = None
    prescriber: str | None = None
    codes: list[Coding] = Field(default_factory=list)
    text: str | None = None
    dose: float | None = Field(default=None, ge=0)
    dose_high: float | None = Field(default=None, ge=0)
    dose_unit: str | None = None
    #: Where the dose's unit was read (a FHIR path), so a record problem names its field
    dose_field: str | None = None
    route: str | None = None
    timing: Timing | None = None
    as_needed: bool = False
    max_dose_per_period: MaxDosePerPeriod | None = None
    supply_days: float | None = Field(default=None, gt=0)
    quantity: float | None = Field(default=None, ge=0)
    quantity_unit: str | None = None
    dispensed: date | None = None
    #: Why it was ordered (FHIR reasonCode / reasonReference display): tells OUD treatment apart.
    reasons: list[Coding] = Field(default_factory=list)
    #: Where it is taken (FHIR MedicationRequest.category: community, outpatient, inpatient,
    #: discharge); guideline packs that address outpatients leave inpatient orders out
    category: str | None = None

    @model_validator(mode="after")
    def _named(self) -> MedicationOrder:
        if not self.codes and not self.text:
            raise ValueError("a medication needs a code or a text")
        return self

    @property
    def label(self) -> str:
        """The text a pharmacist recognizes: the order's text, else a code's display."""
        if self.text:
            return self.text
        for c in self.codes:
            if c.display:
                return c.display
        c = self.codes[0]
        return f"{c.system or 'code'}|{c.code}"

    @property
    def is_current(self) -> bool:
        return self.draft or (self.source != "dispense" and self.status in ACTIVE_STATUSES)


class Observation(_Model):
    """A lab or vital; `value` is converted to the kind's canonical unit on validation."""

    kind: ObservationKind
    value: float
    #: A reported bound (an eGFR of ">60"): the true value is beyond `value`, and rules
    #: decide with the bound (">60" never matches "< 30"; "<15" always does)
    comparator: Comparator | None = None
    unit: str | None = None
    date: Day | None = None
    code: str | None = None

    @model_validator(mode="after")
    def _canonical(self) -> Observation:
        canonical = LAB_UNITS[self.kind]
        if self.unit != canonical:
            value = convert_lab(self.kind, self.value, self.unit)
            # frozen model: set the converted fields in place, so every way of building an
            # Observation (constructor, model_validate, nested) gets the canonical unit
            object.__setattr__(self, "value", value)
            object.__setattr__(self, "unit", canonical)
        return self


class Condition(_Model):
    code: str | None = None  # the first coding's (see `codes` for all)
    system: str | None = None
    text: str | None = None
    status: str = "active"
    onset: date | None = None
    recorded: date | None = None
    #: problem-list-item, encounter-diagnosis, health-concern (FHIR Condition.category)
    category: str | None = None
    #: the encounter it was diagnosed in (an encounter diagnosis), as a reference
    encounter: str | None = None
    #: every coding (a problem coded in SNOMED CT and ICD-10-CM has both)
    codes: list[Coding] = Field(default_factory=list)


EventKind = Literal["procedure", "observation", "encounter", "care-plan", "service-request"]


class Event(_Model):
    """A dated clinical record the guideline rules look for: a procedure done (a PDMP review,
    a benefit-risk assessment), a coded observation (a urine drug test and its result), an
    encounter (its types and discharge disposition), a care plan, an order for a service
    (hospice, palliative care)."""

    kind: EventKind
    id: str | None = None
    codes: list[Coding] = Field(default_factory=list)
    date: Day | None = None
    status: str | None = None
    #: an observation's value in words ("Positive", "negative"), lower case kept as written
    value: str | None = None
    #: an encounter's discharge disposition, a care plan's category
    qualifiers: list[Coding] = Field(default_factory=list)


class Patient(_Model):
    id: str
    #: Medical record number and name: for a person to find the chart (worklists, letters);
    #: no rule reads them
    mrn: str | None = None
    name: str | None = None
    birth_date: date | None = None
    sex: Literal["female", "male", "other", "unknown"] = "unknown"
    #: Recorded as deceased (FHIR deceasedBoolean or deceasedDateTime): not reviewed.
    deceased: bool = False
    deceased_on: date | None = None
    observations: list[Observation] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    medications: list[MedicationOrder] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    #: Record kinds the source could not provide (e.g. a CDS Hooks prefetch key missing and
    #: no FHIR server to ask): rules that need them are not checked, never fired on a guess
    unavailable: list[str] = Field(default_factory=list)
    #: "present": recorded (a problem-list condition) without a grade
    ascites: Literal["none", "mild", "moderate-severe", "present"] | None = None
    encephalopathy: Literal["none", "grade 1-2", "grade 3-4", "present"] | None = None
    child_pugh_class: Literal["A", "B", "C"] | None = None

    @field_validator("sex", mode="before")
    @classmethod
    def _sex(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    def latest(self, kind: ObservationKind) -> Observation | None:
        """Most recent observation of a kind (undated ones count as oldest)."""
        return self.latest_by_kind().get(kind)

    def latest_by_kind(self) -> dict[str, Observation]:
        """The most recent observation of each kind, in one pass (undated ones count as
        oldest; of two on the same date, the later in the list)."""
        best: dict[str, Observation] = {}
        for o in self.observations:
            b = best.get(o.kind)
            if b is None or (o.date or date.min) >= (b.date or date.min):
                best[o.kind] = o
        return best

    def age_on(self, day: date) -> int | None:
        """Age in whole years on `day`, never past a date of death."""
        if self.birth_date is None:
            return None
        if self.deceased_on is not None and self.deceased_on < day:
            day = self.deceased_on
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))
