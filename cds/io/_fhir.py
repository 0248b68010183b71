"""Small FHIR R4 datatype readers shared by the resource readers."""

from __future__ import annotations

import re
from typing import Any

from cds.errors import InputError
from cds.io._shape import Node, kind_of
from cds.patient import PeriodUnit
from cds.units import PERIOD_DAYS

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"

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


def label(resource: object) -> str:
    """`MedicationRequest/abc`: how errors name a resource (falls back to the type)."""
    if not isinstance(resource, dict):
        return "resource"
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    rtype = rtype if isinstance(rtype, str) and rtype else "resource"
    return f"{rtype}/{rid}" if isinstance(rid, str) and rid else rtype


def resource_node(resource: object, expected: str | tuple[str, ...]) -> Node:
    """The resource as a Node, after checking its resourceType."""
    node = Node(resource, label(resource))
    rtype = node.string("resourceType")
    allowed = (expected,) if isinstance(expected, str) else expected
    if rtype not in allowed:
        raise InputError(f"expected resourceType {' or '.join(allowed)}, got {rtype!r}",
                         field=node.at("resourceType"))
    return node


def codings(concept: Node | None) -> list[tuple[str | None, str, str | None]]:
    """(system, code, display) of every coding that has a code."""
    if concept is None:
        return []
    out = []
    for c in concept.objs("coding"):
        code = c.string("code")
        if code is not None:
            out.append((c.string("system"), code, c.string("display")))
    return out


def concept_text(concept: Node | None) -> str | None:
    """CodeableConcept.text, else the first coding display."""
    if concept is None:
        return None
    text = concept.string("text")
    if text:
        return text
    for c in concept.objs("coding"):
        display = c.string("display")
        if display:
            return display
    return None


def concept_code(concept: Node | None) -> str | None:
    """First coding's code, else the text: for status-like concepts."""
    if concept is None:
        return None
    for c in concept.objs("coding"):
        code = c.string("code")
        if code:
            return code
    return concept.string("text")


def status_code(node: Node, key: str) -> str | None:
    """A status that is a code in R4 but a CodeableConcept in some resources/versions."""
    v = node.data.get(key)
    if v is None:
        return None
    if isinstance(v, dict):
        return concept_code(node.obj(key))
    if isinstance(v, str):
        return node.string(key)
    raise InputError(f"expected a code or CodeableConcept, got {kind_of(v)}", field=node.at(key))


def reference_name(ref: Node | None) -> str | None:
    """A Reference as a person-readable name: display, else reference, else identifier."""
    if ref is None:
        return None
    display = ref.string("display")
    if display:
        return display
    target = ref.string("reference")
    if target:
        return target
    ident = ref.obj("identifier")
    return ident.string("value") if ident is not None else None


def normalize_reference(ref: str) -> str:
    """Drop a version suffix so `Patient/1/_history/2` matches `Patient/1`."""
    return _HISTORY.sub("", ref.strip())


def time_unit(quantity: Node) -> PeriodUnit:
    """The FHIR time unit of a Duration (code first: it is the machine-readable one)."""
    for key in ("code", "unit"):
        raw = quantity.string(key)
        if raw is not None:
            return parse_time_unit(raw, quantity, key)
    raise InputError("a duration needs a time unit", field=quantity.at("unit"))


def parse_time_unit(raw: str, node: Node, key: str) -> PeriodUnit:
    """A FHIR time unit; the error names node.key (the path is built only then)."""
    unit = _TIME_UNITS.get(raw.strip().lower())
    if unit is None:
        raise InputError(f"unknown time unit {raw!r} (use one of {', '.join(PERIOD_DAYS)})",
                         field=node.at(key))
    return unit


def duration_days(quantity: Node) -> float | None:
    """A Duration in days, or None if it has no value."""
    value = quantity.number("value", positive=True)
    if value is None:
        return None
    return value * PERIOD_DAYS[time_unit(quantity)]


def quantity_unit(quantity: Node) -> str | None:
    """Quantity.unit, falling back to Quantity.code."""
    return quantity.string("unit") or quantity.string("code")


def as_dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None
