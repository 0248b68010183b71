"""Pack test cases: loaded from a pack's cases/*.yaml (the format and models:
cds.rules.cases), each patient parsed, errors at the case file's line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cds.errors import InputError, PackError, PackErrors
from cds.patient import Patient
from cds.rules.cases import Case


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
