"""Pack test cases: a patient, the rules that must fire, the rules that must not.

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
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cds.errors import InputError, PackError, PackErrors
from cds.patient import MedicationOrder, Patient


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


class LoadedCase(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    case: Case
    patient: Patient
    file: str
    line: int | None
    #: the case as read, with its line marks (for errors at a field's line)
    raw: dict[str, Any] | None = Field(default=None, repr=False)


def load_cases(pack_dir: Path, errors: list[PackError] | None = None) -> list[LoadedCase]:
    """Every case of a pack, each patient parsed; errors name the case file and line.
    With `errors`, problems are added to it and the good cases returned (for `cds pack
    lint`); without, any problem raises PackErrors."""
    from cds.io import patient_from_native, read_patient
    from cds.rules.loader import LINE, line_of, read_yaml, strip_marks, validation_errors

    out: list[LoadedCase] = []
    found: list[PackError] = []
    for path in sorted((pack_dir / "cases").glob("*.yaml")):
        try:
            doc = read_yaml(path)
        except PackErrors as e:
            found += e.errors
            continue
        raw_cases = doc.get("cases") if isinstance(doc, dict) else None
        if not isinstance(raw_cases, list):
            found.append(PackError("a case file must be a mapping with 'cases:' (a list of "
                                   "cases)", file=str(path),
                                   line=line_of(doc, "cases") if isinstance(doc, dict) else 1,
                                   field="cases"))
            continue
        for i, raw in enumerate(raw_cases):
            line = raw.get(LINE) if isinstance(raw, dict) else line_of(doc, "cases", raw)
            if not isinstance(raw, dict):
                found.append(PackError("a case must be a mapping (name: ..., as_of: ..., "
                                       "patient: ...)", file=str(path), line=line,
                                       field=f"cases[{i}]"))
                continue
            try:
                case = Case.model_validate(strip_marks(raw))
            except ValidationError as e:
                name = raw.get("name")
                found += [x.at(record=f"case {name!r}") if isinstance(name, str) else x
                          for x in validation_errors(e, raw, str(path), Case)]
                continue
            try:
                if case.patient_file:
                    patient = read_patient(path.parent / case.patient_file)
                else:
                    assert case.patient is not None
                    patient = patient_from_native(case.patient, source=f"{path}:{line}")
            except InputError as e:
                field = "patient_file" if case.patient_file else "patient"
                found.append(PackError(f"case {case.name!r}: {e}", file=str(path),
                                       line=line_of(raw, field) or line, field=field))
                continue
            out.append(LoadedCase(case=case, patient=patient, file=str(path), line=line, raw=raw))
    if errors is not None:
        errors += found
    elif found:
        raise PackErrors(found)
    return out
