"""The models of a pack's test cases: a patient, the rules that must fire, the rules that
must not (loaded and run by cds.authoring).

File format (`rulesets/<pack>/cases/*.yaml`):

    cases:
      - name: oxycodone with alprazolam
        as_of: 2026-11-26
        patient: {id: p1, birth_date: 1950-01-01, sex: female, medications: [...]}  # native
        # or: patient_file: ../../../examples/patient.json  (FHIR Bundle or native, relative)
        draft_orders: [...]          # optional native MedicationOrders, as CDS Hooks drafts
        expect: [opioid-benzodiazepine]        # rule ids of this pack that must fire
        expect_not: [mme-50]                   # rule ids that must not fire
        expect_alerts:                         # optional details of fired alerts
          - {rule: opioid-benzodiazepine, severity: high, medications: [...], role: prescriber}
        unrecognized: [m3]           # medications (id or text) meant to be unknown drugs
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cds.patient import MedicationOrder


class ExpectedAlert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: str
    severity: str | None = None
    medications: list[str] | None = None
    role: str | None = None
    summary_contains: str | None = None
    rationale_contains: str | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    as_of: date
    patient: dict[str, Any] | None = None
    patient_file: str | None = None
    draft_orders: list[MedicationOrder] = Field(default_factory=list)
    expect: list[str] = Field(default_factory=list)
    expect_not: list[str] = Field(default_factory=list)
    expect_alerts: list[ExpectedAlert] = Field(default_factory=list)
    #: Medications (by id or text) the case means the knowledge base not to know: a
    #: data-quality case, a near miss with a drug outside the knowledge. `cds pack lint` fails
    #: on any other medication it does not recognize (a typo), and on a listed one it does.
    unrecognized: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_patient(self) -> Case:
        if (self.patient is None) == (self.patient_file is None):
            raise ValueError("a case needs exactly one of 'patient' or 'patient_file'")
        return self


class CaseFile(BaseModel):
    """A case file as a whole: what its JSON Schema (cds/rules/schema/cases.schema.json)
    describes. The loader reads each case with Case, so one bad case does not hide the rest."""
    cases: list[Case]
