"""Native JSON -> Patient: the Patient model's own JSON, plus an optional format marker.

The model is the schema, so native input can never drift from what the engine reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cds.errors import InputError
from cds.io._shape import kind_of, validation_error
from cds.patient import Patient

FORMAT = "cds-native/1"


def patient_from_native(data: dict[str, Any], *, source: str | None = None) -> Patient:
    """Native JSON object -> Patient. `source` names the input (a file) in errors.

    A pydantic error becomes one InputError naming the first failing field
    (`medications[2].dose`) and how many more there were.
    """
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {kind_of(data)}", file=source)
    if "format" in data:
        if data["format"] != FORMAT:
            raise InputError(f"unsupported format {data['format']!r} (expected {FORMAT!r})",
                             file=source, field="format")
        data = {k: v for k, v in data.items() if k != "format"}
    try:
        return Patient.model_validate(data)
    except ValidationError as e:
        raise validation_error(e).at(file=source) from None
