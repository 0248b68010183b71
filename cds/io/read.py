"""Read a patient file, whichever format it is in, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from cds.errors import InputError
from cds.io._shape import kind_of
from cds.io.builder import patient_from_fhir
from cds.io.native import patient_from_native
from cds.patient import Patient


def read_patient(path: str | os.PathLike[str]) -> Patient:
    """A FHIR R4 Bundle / single FHIR resource, or native JSON, -> Patient.

    The format is told by content, not by file name: anything with a `resourceType` is FHIR.
    """
    name = os.fspath(path)
    return _patient_of(load_json(name), name)


def read_patient_bytes(raw: bytes, name: str = "<stdin>") -> Patient:
    """`read_patient` of JSON already read (standard input, a request body); `name` is what
    errors call it."""
    return _patient_of(parse_json(raw, name), name)


def _patient_of(data: Any, name: str) -> Patient:
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {kind_of(data)}", file=name)
    if "resourceType" in data:
        return patient_from_fhir(data, source=name)
    return patient_from_native(data, source=name)


def load_json(name: str) -> Any:
    """Parsed JSON of a file; every failure is an InputError with `file` (and line) set."""
    try:
        raw = Path(name).read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", file=name) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", file=name) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", file=name) from None
    return parse_json(raw, name)


def parse_json(raw: bytes, name: str) -> Any:
    """Parsed JSON; a failure is an InputError naming `name` (and the line)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        line = e.lineno if raw.strip() else None
        where = f" (line {e.lineno}, column {e.colno})" if line else ""
        raise InputError(f"not valid JSON: {e.msg}{where}", file=name, line=line) from None
