"""FHIR R4 Bundle (or a single resource) -> Patient.

Reads Patient, Observation, Condition, Medication, MedicationRequest, MedicationStatement
and MedicationDispense; every other resource type is ignored. Each resource is read by a
function the bulk NDJSON reader reuses record by record.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from cds.errors import InputError
from cds.io._fhir import (
    Element,
    as_dict,
    as_list,
    check_type,
    codings,
    concept_text,
    date_at,
    label,
    nonempty,
    normalize_reference,
    status_code,
)
from cds.io._shape import guarded, kind_of
from cds.io.fhir_shapes import (
    BUNDLE,
    CODEABLE_CONCEPT,
    CONDITION,
    EVENT,
    OBSERVATION,
    PATIENT,
    checked,
)
from cds.patient import Coding, Condition, Event, EventKind, Observation, ObservationKind
from cds.units import canonical_unit
from cds.vocabulary import LOINC

#: LOINC codes read, and the observation kind each one is.
LOINC_KINDS: dict[str, ObservationKind] = {
    "29463-7": "weight",  # Body weight
    "3141-9": "weight",  # Body weight Measured
    "8302-2": "height",  # Body height
    "2160-0": "creatinine",  # Creatinine [Mass/volume] in Serum or Plasma
    "14682-9": "creatinine",  # Creatinine [Moles/volume] in Serum or Plasma
    "98979-8": "egfr",  # eGFR creatinine-based, CKD-EPI 2021
    "33914-3": "egfr",  # eGFR creatinine-based, MDRD
    "62238-1": "egfr",  # eGFR creatinine-based, CKD-EPI
    "48642-3": "egfr",  # eGFR among non-blacks (MDRD)
    "48643-1": "egfr",  # eGFR among blacks (MDRD)
    "50044-7": "egfr",  # eGFR among females (MDRD)
    "88293-6": "egfr",  # eGFR among blacks (CKD-EPI)
    "88294-4": "egfr",  # eGFR among non-blacks (CKD-EPI)
    "1975-2": "bilirubin",  # Bilirubin.total
    "1751-7": "albumin",  # Albumin
    "6301-6": "inr",  # INR
}

#: Statuses that mean "this resource should not have existed": skipped, not read.
_WITHDRAWN = frozenset({"entered-in-error", "cancelled"})
_SEXES = frozenset({"female", "male", "other", "unknown"})


@guarded(lambda resource: label(resource))
def fhir_patient_demographics(resource: dict[str, Any]) -> dict[str, Any]:
    """Patient resource -> {"id", "birth_date", "sex"[, "deceased", "deceased_on"]} (the
    Patient model's field names)."""
    _, where = check_type(resource, "Patient")
    patient = checked(PATIENT, resource, where)
    rid = nonempty(patient.get("id"))
    if rid is None:
        raise InputError("Patient has no id", field=f"{where}.id")
    gender = nonempty(patient.get("gender"))
    if gender is not None and gender.lower() not in _SEXES:
        raise InputError(f"unknown gender {gender!r} (use {', '.join(sorted(_SEXES))})",
                         field=f"{where}.gender")
    out = {"id": rid, "birth_date": date_at(patient, "birthDate", where),
           "sex": gender.lower() if gender else "unknown"}
    mrn, name = _mrn(resource), _name(resource)
    if mrn:
        out["mrn"] = mrn
    if name:
        out["name"] = name
    died = date_at(patient, "deceasedDateTime", where)
    if died is not None or patient.get("deceasedBoolean") is True:
        out.update(deceased=True, deceased_on=died)
    return out


#: HL7 v2 table 0203 identifier type of a medical record number.
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _mrn(resource: dict[str, Any]) -> str | None:
    """The medical record number (Patient.identifier typed MR), for a person to find the
    chart; other identifiers (a national id) are never copied into the outputs."""
    for ident in as_list(resource.get("identifier")):
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            continue
        kind = as_dict(ident.get("type")) or {}
        if any(isinstance(c, dict) and c.get("code") == "MR" and c.get("system") in (_V2_0203, None)
               for c in as_list(kind.get("coding"))):
            return str(ident["value"]).strip() or None
    return None


def _name(resource: dict[str, Any]) -> str | None:
    """The patient's name as a person writes it: the official name first, else the first."""
    names = [n for n in as_list(resource.get("name")) if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")
    for n in names:
        if isinstance(n.get("text"), str) and n["text"].strip():
            return str(n["text"]).strip()
        given = [g for g in as_list(n.get("given")) if isinstance(g, str)]
        family = n.get("family") if isinstance(n.get("family"), str) else None
        text = " ".join([*given, *([family] if family else [])]).strip()
        if text:
            return text
    return None


def lab_kind(resource: Any) -> ObservationKind | None:
    """The observation kind (weight, creatinine...) of an Observation's LOINC code, or None
    for an observation no dosing rule reads as a lab (it is then an Event)."""
    code = resource.get("code") if isinstance(resource, dict) else None
    coding = code.get("coding") if isinstance(code, dict) else None
    if coding is not None and not isinstance(coding, list):
        raise InputError(f"expected a list of codings, got {kind_of(coding)}",
                         field=f"{label(resource)}.code.coding")
    for c in coding or ():
        code_ = c.get("code") if isinstance(c, dict) else None
        if isinstance(code_, str) and c.get("system") in (LOINC, None) and code_ in LOINC_KINDS:
            return LOINC_KINDS[code_]
    return None


@guarded(lambda resource: label(resource))
def fhir_observation(resource: dict[str, Any]) -> Observation | None:
    """Observation -> Observation, or None if its code is not one the rules use.

    Withdrawn observations (entered-in-error, cancelled) and ones that say why they have no
    value (dataAbsentReason) are skipped; a known code with no value or an unknown unit is
    an error, because silently dropping a creatinine could hide a renal-dose alert.
    A comparator ("<", ">"; or an eGFR reported as text, ">60") is kept: the value is a bound.
    """
    _, where = check_type(resource, "Observation")
    obs = checked(OBSERVATION, resource, where)
    found = [code for system, code, _ in codings(obs.get("code"))
             if system in (LOINC, None) and code in LOINC_KINDS]
    if not found or obs.get("status") in _WITHDRAWN:
        return None
    code = found[0]
    kind = LOINC_KINDS[code]
    quantity = obs.get("valueQuantity")
    comparator: str | None
    value: float | None
    unit: str | None
    if quantity is None and kind == "egfr" and obs.get("valueString") is not None:
        # labs report eGFR as ">60" or "<15" text: a bound in the code's unit
        value, comparator = _bound(str(obs.get("valueString")), f"{where}.valueString")
        unit_key, unit = "valueString", "mL/min/1.73m2"
    elif quantity is None:
        if obs.get("dataAbsentReason") is not None:
            return None
        raise InputError(f"LOINC {code} observation has no valueQuantity",
                         field=f"{where}.valueQuantity")
    else:
        unit_key, unit = _unit(quantity)
        comparator = _comparator(quantity.get("comparator"), f"{where}.valueQuantity.comparator")
        value = quantity.get("value")
    if value is None:
        raise InputError("valueQuantity has no value", field=f"{where}.valueQuantity.value")
    period = obs.get("effectivePeriod")
    when = (date_at(obs, "effectiveDateTime", where) or date_at(obs, "effectiveInstant", where)
            or (date_at(period, "start", f"{where}.effectivePeriod") if period else None)
            or date_at(obs, "issued", where))
    try:
        # model_validate, not __init__: the unit-converting validator returns a copy
        return Observation.model_validate({"kind": kind, "value": value, "unit": unit,
                                           "comparator": comparator, "date": when, "code": code})
    except ValidationError as e:
        msg = str(e.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise InputError(msg, field=f"{where}.valueQuantity.{unit_key}"
                         if unit_key != "valueString" else f"{where}.valueString") from None


_COMPARATORS = ("<=", ">=", "<", ">")
_BOUND = re.compile(r"^\s*(<=|>=|<|>|≤|≥)?\s*(\d+(?:\.\d+)?)\s*(?:ml/min(?:/1\.73\s*m(?:2|\^2|²))?)?\s*$",
                    re.IGNORECASE)


def _comparator(raw: object, field: str) -> str | None:
    if raw is None:
        return None
    if raw not in _COMPARATORS:
        raise InputError(f"unknown comparator {raw!r} (use <, <=, >, >=)", field=field)
    return str(raw)


def _bound(text: str, field: str) -> tuple[float, str | None]:
    """'>60', '< 15', '>=90 mL/min/1.73m2' -> (60.0, '>'); a plain number has no comparator."""
    m = _BOUND.match(text)
    if m is None:
        raise InputError(f"eGFR text {text!r} is not a number or a bound like '>60'", field=field)
    op = {"≤": "<=", "≥": ">="}.get(m.group(1) or "", m.group(1))
    return float(m.group(2)), op or None


def _unit(quantity: Element) -> tuple[str, str | None]:
    """(key, unit): `unit` unless only `code` is one we know (UCUM code beats a display)."""
    unit, code = nonempty(quantity.get("unit")), nonempty(quantity.get("code"))
    if unit is not None and (canonical_unit(unit) is not None or code is None
                             or canonical_unit(code) is None):
        return "unit", unit
    if code is not None:
        return "code", code
    return "unit", None


@guarded(lambda resource: label(resource))
def fhir_condition(resource: dict[str, Any]) -> Condition:
    """Condition -> Condition. A refuted or entered-in-error verification becomes the status,
    so nothing downstream mistakes it for an active problem."""
    _, where = check_type(resource, "Condition")
    cond = checked(CONDITION, resource, where)
    concept = cond.get("code")
    found = codings(concept)
    system, code = (found[0][0], found[0][1]) if found else (None, None)
    status = status_code(cond, "clinicalStatus", where) or "active"
    verification = status_code(cond, "verificationStatus", where)
    if verification in ("refuted", "entered-in-error"):
        status = verification
    period = cond.get("onsetPeriod")
    onset = date_at(cond, "onsetDateTime", where) or (
        date_at(period, "start", f"{where}.onsetPeriod") if period else None)
    category = next((c for concept in cond.get("category") or () for _, c, _ in codings(concept)
                     if c in _CONDITION_CATEGORIES), None)
    encounter_ref = (cond.get("encounter") or {}).get("reference")
    return Condition(code=code, system=system, text=concept_text(concept), status=status,
                     onset=onset, recorded=date_at(cond, "recordedDate", where),
                     category=category,
                     encounter=normalize_reference(encounter_ref) if encounter_ref else None,
                     codes=[Coding(system=s, code=c, display=d) for s, c, d in found])


#: US Core condition categories (condition-category and us-core-condition-category codes).
_CONDITION_CATEGORIES = frozenset({"problem-list-item", "encounter-diagnosis", "health-concern"})

_EVENT_KINDS: dict[str, EventKind] = {
    "Procedure": "procedure", "Encounter": "encounter", "CarePlan": "care-plan",
    "ServiceRequest": "service-request", "Observation": "observation"}
EVENT_TYPES = tuple(_EVENT_KINDS)


@guarded(lambda resource: label(resource))
def fhir_event(resource: dict[str, Any]) -> Event | None:
    """A Procedure, Encounter, CarePlan, ServiceRequest or coded Observation -> Event, or None
    when it never happened (entered-in-error, not-done, revoked) or carries no code at all."""
    rtype, where = check_type(resource, EVENT_TYPES)
    res = checked(EVENT, resource, where)
    status = nonempty(res.get("status"))
    if status in _NEVER:
        return None
    kind = _EVENT_KINDS[rtype]
    concepts = [res.get("code")] if res.get("code") else []
    concepts += res.get("type") or []
    codes = [Coding(system=s, code=c, display=d) for concept in concepts
             for s, c, d in codings(concept)]
    qualifiers = []
    if kind == "encounter" and isinstance(res.get("hospitalization"), dict):
        disposition = res["hospitalization"].get("dischargeDisposition")
        if isinstance(disposition, dict):
            qualifiers = [Coding(system=s, code=c, display=d) for s, c, d in codings(
                checked(CODEABLE_CONCEPT, disposition,
                        f"{where}.hospitalization.dischargeDisposition"))]
    category = res.get("category")
    if kind == "care-plan" and category is not None:
        for i, concept in enumerate(category if isinstance(category, list) else [category]):
            c = checked(CODEABLE_CONCEPT, concept, f"{where}.category[{i}]")
            qualifiers += [Coding(system=s, code=code, display=d) for s, code, d in codings(c)]
    if not codes and not qualifiers:
        return None
    value = res.get("valueString")
    if value is None and res.get("valueCodeableConcept") is not None:
        value = concept_text(res.get("valueCodeableConcept"))
    return Event(kind=kind, id=nonempty(res.get("id")), codes=codes, date=_event_date(res, where),
                 status=status, value=value, qualifiers=qualifiers)


#: statuses of a record that never happened: not read
_NEVER = frozenset({"entered-in-error", "not-done", "revoked", "cancelled"})


def _event_date(res: Element, where: str) -> Any:
    for key in ("performedDateTime", "effectiveDateTime", "occurrenceDateTime", "authoredOn",
                "created", "issued"):
        found = date_at(res, key, where)
        if found is not None:
            return found
    for key in ("performedPeriod", "effectivePeriod", "period"):
        period = res.get(key)
        if period:
            return date_at(period, "start", f"{where}.{key}") or date_at(
                period, "end", f"{where}.{key}")
    return None


def bundle_entries(bundle: object, where: str = "Bundle",
                   depth: int = 0) -> list[tuple[str | None, dict[str, Any], str]]:
    """(fullUrl, resource, where) of every entry that has a resource; the entries of a Bundle
    inside a Bundle are read as the outer bundle's (a transaction wrapping a searchset)."""
    if not isinstance(bundle, dict):
        raise InputError(f"expected a FHIR resource object, got {kind_of(bundle)}")
    rtype = bundle.get("resourceType")
    if rtype is None:
        raise InputError("not a FHIR resource: no resourceType", field="resourceType")
    if not isinstance(rtype, str):
        raise InputError(f"expected a string, got {kind_of(rtype)}", field="resourceType")
    if rtype != "Bundle":
        return [(None, bundle, rtype)]
    if depth > _MAX_NESTING:
        raise InputError(f"Bundles nested more than {_MAX_NESTING} deep", field=where)
    out = []
    for i, entry in enumerate(checked(BUNDLE, bundle, where).get("entry") or ()):
        res = entry.get("resource")
        if res is None:
            continue
        at = f"{where}.entry[{i}]"
        if not isinstance(res.get("resourceType"), str):
            field = f"{at}.resource.resourceType"
            if res.get("resourceType") is None:
                raise InputError("resource has no resourceType", field=field)
            raise InputError(f"expected a string, got {kind_of(res['resourceType'])}", field=field)
        if res["resourceType"] == "Bundle":
            out += bundle_entries(res, f"{at}.resource", depth + 1)
        else:
            out.append((nonempty(entry.get("fullUrl")), res, at))
    return out


#: A Bundle in a Bundle is read; deeper nesting is refused (no EHR sends it).
_MAX_NESTING = 3
