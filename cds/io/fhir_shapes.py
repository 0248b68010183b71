"""The shapes of the FHIR R4 elements the readers use, checked in one pass by pydantic-core.

Only the elements a rule can need are declared; everything else in a resource is ignored.
A wrong shape anywhere (a string where an array belongs, a number as text, a boolean as a
dose) becomes one `InputError` naming the exact field (`MedicationRequest/m1.dosageInstruction
[0].timing.repeat.frequency`), so the readers after this check never look at a type again.
Checking the whole resource in compiled code, then reading plain dicts, is what keeps a
100,000-patient panel review fast; meaning (units, dates, codes) is still read in Python.

JSON null counts as absent, as it does in FHIR. Strings are stripped; an empty string is
read as absent by the readers.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from cds.io._shape import validation_error

Str = Annotated[str, Strict()]
Num = Annotated[float, Strict(), Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=0)]
Positive = Annotated[float, Strict(), Field(allow_inf_nan=False, gt=0)]
Count = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=1)]
Bool = Annotated[bool, Strict()]
#: Validators are built on first use (defer_build): a process that reads one kind of record
#: (`cds check` of one Bundle) builds only the shapes it meets, not all of them at import.
Shape = with_config(ConfigDict(str_strip_whitespace=True, defer_build=True))


@Shape
class Coding(TypedDict, total=False):
    system: Str | None
    code: Str | None
    display: Str | None


@Shape
class CodeableConcept(TypedDict, total=False):
    coding: list[Coding] | None
    text: Str | None


@Shape
class Identifier(TypedDict, total=False):
    value: Str | None


@Shape
class Reference(TypedDict, total=False):
    reference: Str | None
    display: Str | None
    identifier: Identifier | None


@Shape
class Quantity(TypedDict, total=False):
    value: Num | None
    comparator: Str | None
    unit: Str | None
    code: Str | None


@Shape
class Amount(TypedDict, total=False):
    """A dose or a dispensed quantity: never negative."""

    value: NonNegative | None
    unit: Str | None
    code: Str | None


@Shape
class PositiveQuantity(TypedDict, total=False):
    """A duration, or a side of a maximum-dose ratio: greater than 0."""

    value: Positive | None
    unit: Str | None
    code: Str | None


@Shape
class Period(TypedDict, total=False):
    start: Str | None
    end: Str | None


# --- Patient, Observation, Condition --------------------------------------------------------

@Shape
class PatientShape(TypedDict, total=False):
    id: Str | None
    gender: Str | None
    birthDate: Str | None
    deceasedBoolean: bool | None
    deceasedDateTime: Str | None


@Shape
class ObservationShape(TypedDict, total=False):
    id: Str | None
    status: Str | None
    code: CodeableConcept | None
    valueQuantity: Quantity | None
    valueString: Str | None
    dataAbsentReason: Any
    effectiveDateTime: Str | None
    effectiveInstant: Str | None
    effectivePeriod: Period | None
    issued: Str | None


@Shape
class ConditionShape(TypedDict, total=False):
    id: Str | None
    code: CodeableConcept | None
    clinicalStatus: Any  # a code in some versions, a CodeableConcept in R4: read in Python
    verificationStatus: Any
    category: list[CodeableConcept] | None
    onsetDateTime: Str | None
    onsetPeriod: Period | None
    recordedDate: Str | None
    encounter: Reference | None


@Shape
class EventShape(TypedDict, total=False):
    """Procedure, Encounter, CarePlan, ServiceRequest and a coded Observation, as one shape:
    what the guideline rules read of each."""

    id: Str | None
    status: Str | None
    intent: Str | None
    code: CodeableConcept | None
    type: list[CodeableConcept] | None
    category: Any  # a CodeableConcept (ServiceRequest: a list) or a list of them
    performedDateTime: Str | None
    performedPeriod: Period | None
    effectiveDateTime: Str | None
    effectivePeriod: Period | None
    issued: Str | None
    period: Period | None
    authoredOn: Str | None
    occurrenceDateTime: Str | None
    created: Str | None
    valueString: Str | None
    valueCodeableConcept: CodeableConcept | None
    hospitalization: Any  # dischargeDisposition is read in Python


# --- Medication, MedicationRequest / Statement / Dispense -----------------------------------

@Shape
class MedicationShape(TypedDict, total=False):
    resourceType: Str | None
    id: Str | None
    code: CodeableConcept | None


@Shape
class DoseRange(TypedDict, total=False):
    low: Amount | None
    high: Amount | None


@Shape
class Dose(TypedDict, total=False):
    doseQuantity: Amount | None
    doseRange: DoseRange | None


@Shape
class Repeat(TypedDict, total=False):
    frequency: Count | None  # a whole number: checked by the reader
    frequencyMax: Count | None
    period: Positive | None
    periodMax: Positive | None
    periodUnit: Str | None
    timeOfDay: list[Str] | None
    when: list[Str] | None
    boundsPeriod: Period | None
    boundsDuration: PositiveQuantity | None


@Shape
class Timing(TypedDict, total=False):
    repeat: Repeat | None
    code: CodeableConcept | None


@Shape
class Ratio(TypedDict, total=False):
    numerator: PositiveQuantity | None
    denominator: PositiveQuantity | None


@Shape
class Dosage(TypedDict, total=False):
    asNeededBoolean: Bool | None
    asNeededCodeableConcept: CodeableConcept | None
    route: CodeableConcept | None
    timing: Timing | None
    doseAndRate: list[Dose] | None
    maxDosePerPeriod: Any  # one Ratio in R4, a list of them in R5: checked by the reader


@Shape
class DispenseRequest(TypedDict, total=False):
    quantity: Amount | None
    expectedSupplyDuration: PositiveQuantity | None


@Shape
class Performer(TypedDict, total=False):
    actor: Reference | None


@Shape
class MedicationUse(TypedDict, total=False):
    """MedicationRequest, MedicationStatement and MedicationDispense, as one shape."""

    id: Str | None
    status: Str | None
    doNotPerform: Bool | None
    medicationCodeableConcept: CodeableConcept | None
    medicationReference: Reference | None
    contained: list[dict[str, Any]] | None
    authoredOn: Str | None
    requester: Reference | None
    informationSource: Reference | None
    effectiveDateTime: Str | None
    effectivePeriod: Period | None
    dateAsserted: Str | None
    whenHandedOver: Str | None
    whenPrepared: Str | None
    authorizingPrescription: list[Reference] | None
    performer: list[Performer] | None
    reasonCode: list[CodeableConcept] | None
    reasonReference: list[Reference] | None
    dosageInstruction: list[Dosage] | None
    dosage: list[Dosage] | None
    dispenseRequest: DispenseRequest | None
    category: list[CodeableConcept] | CodeableConcept | None  # a list (request) or one (statement)
    quantity: Amount | None
    daysSupply: PositiveQuantity | None


@Shape
class Requester(TypedDict, total=False):
    """What a dispense needs of the order it fills."""

    requester: Reference | None


@Shape
class ConditionCode(TypedDict, total=False):
    """What an order needs of the Condition its reasonReference points to."""

    code: CodeableConcept | None


@Shape
class BundleEntry(TypedDict, total=False):
    fullUrl: Str | None
    resource: dict[str, Any] | None


@Shape
class Bundle(TypedDict, total=False):
    entry: list[BundleEntry] | None


T = TypeVar("T")

PATIENT = TypeAdapter(PatientShape)
OBSERVATION = TypeAdapter(ObservationShape)
CONDITION = TypeAdapter(ConditionShape)
EVENT = TypeAdapter(EventShape)
MEDICATION = TypeAdapter(MedicationShape)
MEDICATION_USE = TypeAdapter(MedicationUse)
REQUESTER = TypeAdapter(Requester)
CONDITION_CODE = TypeAdapter(ConditionCode)
RATIO = TypeAdapter(Ratio)
BUNDLE = TypeAdapter(Bundle)
CODEABLE_CONCEPT = TypeAdapter(CodeableConcept)


def checked(shape: TypeAdapter[T], data: object, where: str) -> T:
    """`data` read through `shape`; a wrong shape is an InputError naming `where.field`."""
    try:
        # the compiled validator itself: TypeAdapter.validate_python's wrapper costs as much
        return shape.validator.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError as e:
        raise validation_error(e, where) from None
