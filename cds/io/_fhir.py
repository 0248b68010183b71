"""Small FHIR R4 datatype readers shared by the resource readers.

They read elements whose shape fhir_shapes.py has already checked, so they only interpret;
`where` is the element's path, used in the message when the meaning is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cds.errors import InputError
from cds.io._shape import kind_of, parse_date
from cds.io.fhir_shapes import CODEABLE_CONCEPT, checked
from cds.patient import PeriodUnit
from cds.units import PERIOD_DAYS

_HISTORY = re.compile(r"/_history/[^/]*$")

#: Spellings of FHIR/UCUM time units seen in Duration and Ratio denominators.
_TIME_UNITS: dict[str, PeriodUnit] = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "min": "min", "minute": "min", "minutes": "min",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "wk": "wk", "week": "wk", "weeks": "wk",
    "mo": "mo", "month": "mo", "months": "mo",
    "a": "a", "yr": "a", "year": "a", "years": "a",
}

Element = Mapping[str, Any]  # a checked element (a TypedDict of fhir_shapes)


#: The FHIR R4 `id` datatype.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def label(resource: object) -> str:
    """`MedicationRequest/abc`: how errors name a resource (falls back to the type)."""
    if not isinstance(resource, dict):
        return "resource"
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    rtype = rtype if isinstance(rtype, str) and rtype else "resource"
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else rtype


def check_type(resource: object, expected: str | tuple[str, ...]) -> tuple[str, str]:
    """(resourceType, label) of a resource, after checking it is an object of an expected type."""
    where = label(resource)
    if not isinstance(resource, dict):
        raise InputError(f"expected an object, got {kind_of(resource)}", field=where)
    rtype = resource.get("resourceType")
    allowed = (expected,) if isinstance(expected, str) else expected
    if rtype not in allowed:
        got = rtype if isinstance(rtype, str) or rtype is None else kind_of(rtype)
        raise InputError(f"expected resourceType {' or '.join(allowed)}, got {got!r}",
                         field=f"{where}.resourceType")
    return str(rtype), where


def nonempty(value: str | None) -> str | None:
    """A stripped string, with "" read as absent."""
    return value or None


def date_at(element: Element, key: str, where: str) -> Any:
    """A FHIR date/dateTime element as a date (None when absent)."""
    value = element.get(key)
    if not value:
        return None
    return parse_date(value, f"{where}.{key}")


def codings(concept: Element | None) -> list[tuple[str | None, str, str | None]]:
    """(system, code, display) of every coding that has a code."""
    if not concept:
        return []
    return [(c.get("system") or None, c["code"], c.get("display") or None)
            for c in concept.get("coding") or () if c.get("code")]


def concept_text(concept: Element | None) -> str | None:
    """CodeableConcept.text, else the first coding display."""
    if not concept:
        return None
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or ():
        if c.get("display"):
            return str(c["display"])
    return None


def status_code(resource: Element, key: str, where: str) -> str | None:
    """A status that is a code in R4 but a CodeableConcept in some resources/versions.

    Its element is declared loosely (Any) in the shapes; this reads either form."""
    v = resource.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        return v.strip() or None
    if not isinstance(v, dict):
        raise InputError(f"expected a code or CodeableConcept, got {kind_of(v)}",
                         field=f"{where}.{key}")
    concept = checked(CODEABLE_CONCEPT, v, f"{where}.{key}")
    for c in concept.get("coding") or ():
        if c.get("code"):
            return str(c["code"])
    return nonempty(concept.get("text"))


def reference_name(ref: Element | None) -> str | None:
    """A Reference as a person-readable name: display, else reference, else identifier."""
    if not ref:
        return None
    ident = ref.get("identifier")
    return ref.get("display") or ref.get("reference") or (ident.get("value") if ident else None) \
        or None


def normalize_reference(ref: str) -> str:
    """Drop a version suffix so `Patient/1/_history/2` matches `Patient/1`."""
    ref = ref.strip()
    return _HISTORY.sub("", ref) if "/_history/" in ref else ref


def patient_id_of(reference: str) -> str | None:
    """The patient id a reference names: Patient/1, https://host/fhir/Patient/1 or
    Patient/1/_history/2; None when it names no Patient."""
    ref = normalize_reference(reference)
    if "Patient/" not in ref:
        return None
    pid = ref.rsplit("Patient/", 1)[1]
    return pid if pid and "/" not in pid else None


def time_unit(quantity: Element, where: str) -> PeriodUnit:
    """The FHIR time unit of a Duration (code first: it is the machine-readable one)."""
    for key in ("code", "unit"):
        raw = quantity.get(key)
        if raw:
            return parse_time_unit(raw, f"{where}.{key}")
    raise InputError("a duration needs a time unit", field=f"{where}.unit")


def parse_time_unit(raw: str, where: str) -> PeriodUnit:
    unit = _TIME_UNITS.get(raw.lower())
    if unit is None:
        raise InputError(f"unknown time unit {raw!r} (use one of {', '.join(PERIOD_DAYS)})",
                         field=where)
    return unit


def duration_days(quantity: Element, where: str) -> float | None:
    """A Duration in days, or None if it has no value."""
    value = quantity.get("value")
    if value is None:
        return None
    return float(value) * PERIOD_DAYS[time_unit(quantity, where)]


def quantity_unit(quantity: Element) -> str | None:
    """Quantity.unit, falling back to Quantity.code."""
    return quantity.get("unit") or quantity.get("code") or None


def as_list(value: Any) -> list[Any]:
    """A repeating element, or nothing when it has another shape (for elements only shown to
    a person, such as a name, where a malformed one must not cost the record)."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def add_medication(index: dict[str, dict[str, Any]], key: str, resource: dict[str, Any]) -> None:
    """Index a Medication under `key`. Two different Medications under one key are a
    conflict, never "last wins": an order that refers to it cannot be read (it is left out
    and said), since which drug was meant cannot be told."""
    first = index.setdefault(key, resource)
    if first is not resource and first != resource and not first.get(CONFLICT):
        index[key] = {"resourceType": "Medication", CONFLICT: key}


#: Marks a Medication reference given twice with different content (see add_medication).
CONFLICT = "_cds_conflict"
