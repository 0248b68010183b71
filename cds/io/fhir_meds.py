"""FHIR R4 MedicationRequest / MedicationStatement / MedicationDispense -> MedicationOrder.

One reader for all three so an order, a patient's own statement and a pharmacy fill look
the same to the rules; `source` says which it was. Only the first dosage line is read:
the rules compare one dose per order, and a taper is reviewed by a person anyway.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cds.errors import InputError
from cds.io._fhir import (
    CONFLICT,
    Element,
    as_dict,
    check_type,
    codings,
    concept_text,
    date_at,
    duration_days,
    label,
    nonempty,
    normalize_reference,
    parse_time_unit,
    quantity_unit,
    reference_name,
    time_unit,
)
from cds.io._shape import guarded
from cds.io.fhir_shapes import CONDITION_CODE, MEDICATION, MEDICATION_USE, RATIO, REQUESTER, checked
from cds.patient import MedicationOrder, OrderSource
from cds.vocabulary import SNOMED, SNOMED_ROUTES, route_word

SOURCES: dict[str, OrderSource] = {
    "MedicationRequest": "request",
    "MedicationStatement": "statement",
    "MedicationDispense": "dispense",
}

_SOURCE_TYPES = tuple(SOURCES)

@guarded(lambda resource, *a, **k: label(resource))
def fhir_medication_order(resource: dict[str, Any], medications: Mapping[str, dict[str, Any]],
                          *, resources: Mapping[str, dict[str, Any]] | None = None,
                          fallback_id: str | None = None) -> MedicationOrder:
    """One FHIR medication resource -> MedicationOrder.

    `medications` maps references ("Medication/<id>", a bundle fullUrl, or "#<id>") to
    Medication resources; contained Medications of the resource itself are found without
    it. `resources` maps references to the other resources at hand (a bundle's), so a
    dispense's prescriber can be the requester of the order it fills and a reasonReference
    to a Condition gives that condition's codes. An id-less resource gets `fallback_id` (a
    bundle passes the entry's fullUrl), else a stable hash of its content.
    """
    rtype, where = check_type(resource, _SOURCE_TYPES)
    use = checked(MEDICATION_USE, resource, where)
    source = SOURCES[rtype]
    status = use.get("status") or ("completed" if source == "dispense" else "active")
    fields: dict[str, Any] = {
        "id": use.get("id") or fallback_id or _content_id(rtype, resource),
        "source": source,
        "status": status,
        "draft": source == "request" and status == "draft",
    }
    fields.update(_medication(use, where, medications))
    others = resources or {}
    fields.update(_when_and_who(use, where, source, others))
    fields["reasons"] = _reasons(use, others)
    fields["category"] = _category(use.get("category"))
    key = "dosage" if source == "statement" else "dosageInstruction"
    dosages = use.get("dosage") if source == "statement" else use.get("dosageInstruction")
    if dosages:
        fields.update(_dosage(dosages[0], f"{where}.{key}[0]"))
    if source == "request":
        request = use.get("dispenseRequest")
        if request:
            fields.update(_quantity(request.get("quantity")))
            supply = request.get("expectedSupplyDuration")
            if supply:
                fields["supply_days"] = _supply_days(
                    supply, f"{where}.dispenseRequest.expectedSupplyDuration")
    elif source == "dispense":
        fields.update(_quantity(use.get("quantity")))
        supply = use.get("daysSupply")
        if supply:
            fields["supply_days"] = _supply_days(supply, f"{where}.daysSupply")
    return MedicationOrder.model_validate(fields)


#: FHIR medicationrequest-category codes (MedicationStatement uses the same words).
_CATEGORIES = frozenset({"inpatient", "outpatient", "community", "discharge"})


def _category(raw: Any) -> str | None:
    """The setting: the first category coding that is a medicationrequest-category code."""
    for concept in raw if isinstance(raw, list) else [raw] if raw else ():
        for _, code, _ in codings(concept):
            if code.lower() in _CATEGORIES:
                return code.lower()
    return None


def _content_id(rtype: str, resource: dict[str, Any]) -> str:
    """A stable id for an id-less resource (e.g. an unsaved CDS Hooks draft order)."""
    blob = json.dumps(resource, sort_keys=True, default=repr).encode("utf-8", "replace")
    return f"{rtype}-{hashlib.sha256(blob).hexdigest()[:12]}"


def _medication(use: Element, where: str,
                medications: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    concept = use.get("medicationCodeableConcept")
    if concept is None:
        ref = use.get("medicationReference")
        if ref is None:
            raise InputError("no medicationCodeableConcept or medicationReference",
                             field=f"{where}.medication[x]")
        found = _resolve_medication(use, where, ref, medications)
        if found is None:
            display = ref.get("display")
            if not display:
                raise InputError("medicationReference is not in the bundle and has no "
                                 "display", field=f"{where}.medicationReference.reference")
            return {"text": display}
        med, med_where = found
        concept = med.get("code")
        if concept is None:
            raise InputError("referenced Medication has no code", field=f"{med_where}.code")
    codes = [{"system": s, "code": c, "display": d} for s, c, d in codings(concept)]
    return {"codes": codes, "text": concept_text(concept)}


def _resolve_medication(use: Element, where: str, ref: Element,
                        medications: Mapping[str, dict[str, Any]]) -> tuple[Element, str] | None:
    """The referenced Medication (its shape checked) and its path, if it is at hand."""
    target = ref.get("reference")
    if not target:
        return None
    target = normalize_reference(target)
    if target.startswith("#"):
        for i, contained in enumerate(use.get("contained") or ()):
            if contained.get("resourceType") == "Medication" and contained.get("id") == target[1:]:
                at = f"{where}.contained[{i}]"
                return checked(MEDICATION, contained, at), at
    candidates = [target]
    if "/Medication/" in target:  # absolute URL of a Medication on some server
        candidates.append("Medication/" + target.rsplit("/Medication/", 1)[1])
    for key in candidates:
        med = as_dict(medications.get(key))
        if med is not None and med.get(CONFLICT):
            raise InputError(f"{key} is given twice with different content: which drug was "
                             "meant cannot be told", field=f"{where}.medicationReference.reference")
        if med is not None:
            at = label(med)
            return checked(MEDICATION, med, at), at
    return None


def _reasons(use: Element, resources: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """reasonCode codings, plus the codes of reasonReference Conditions at hand."""
    concepts = list(use.get("reasonCode") or ())
    for ref in use.get("reasonReference") or ():
        target = ref.get("reference")
        found = as_dict(resources.get(normalize_reference(target))) if target else None
        if found is not None and found.get("resourceType") == "Condition":
            cond = checked(CONDITION_CODE, found, label(found)).get("code")
            if cond is not None:
                concepts.append(cond)
    out: list[dict[str, Any]] = []
    for concept in concepts:
        for s, c, d in codings(concept):
            coding = {"system": s, "code": c, "display": d}
            if coding not in out:
                out.append(coding)
    return out


def _when_and_who(use: Element, where: str, source: OrderSource,
                  requests: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if source == "request":
        out["authored"] = date_at(use, "authoredOn", where)
        out["prescriber"] = reference_name(use.get("requester"))
    elif source == "statement":
        period = use.get("effectivePeriod")
        out["authored"] = (date_at(use, "effectiveDateTime", where)
                           or (date_at(period, "start", f"{where}.effectivePeriod")
                               if period else None)
                           or date_at(use, "dateAsserted", where))
        out["prescriber"] = reference_name(use.get("informationSource"))
    else:
        handed = date_at(use, "whenHandedOver", where)
        out["authored"] = handed or date_at(use, "whenPrepared", where)
        out["dispensed"] = handed
        out["prescriber"] = _dispense_prescriber(use, requests)
    return out


def _dispense_prescriber(use: Element, requests: Mapping[str, dict[str, Any]]) -> str | None:
    """Who prescribed a fill: the requester of the order it fills when that order is at
    hand (what multiple-prescriber rules need), else the dispense performer, else the
    authorizing prescription's own display/reference."""
    auths = use.get("authorizingPrescription")
    auth = auths[0] if auths else None
    if auth is not None:
        target = auth.get("reference")
        request = as_dict(requests.get(normalize_reference(target))) if target else None
        if request is not None and request.get("resourceType") == "MedicationRequest":
            try:
                prescriber = reference_name(
                    checked(REQUESTER, request, label(request)).get("requester"))
            except InputError:  # that order's own problem is reported with it, not this fill
                prescriber = None
            if prescriber:
                return prescriber
    performers = use.get("performer")
    who = reference_name(performers[0].get("actor")) if performers else None
    return who or reference_name(auth)


def _dosage(dosage: Element, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    doses = dosage.get("doseAndRate")
    if doses:
        out.update(_dose(doses[0], f"{where}.doseAndRate[0]"))
    out["route"] = _route(dosage.get("route"))
    timing = dosage.get("timing")
    if timing is not None:
        out["timing"] = _timing(timing, f"{where}.timing")
    out["as_needed"] = bool(dosage.get("asNeededBoolean")) or \
        dosage.get("asNeededCodeableConcept") is not None
    ratio = dosage.get("maxDosePerPeriod")
    if isinstance(ratio, list):  # R5 made it repeating; read the first
        if ratio:
            out["max_dose_per_period"] = _max_dose(ratio[0], f"{where}.maxDosePerPeriod[0]")
    elif ratio is not None:
        out["max_dose_per_period"] = _max_dose(ratio, f"{where}.maxDosePerPeriod")
    return out


def _dose(dose_and_rate: Element, where: str) -> dict[str, Any]:
    quantity = dose_and_rate.get("doseQuantity")
    if quantity is not None:
        return {"dose": quantity.get("value"), "dose_unit": quantity_unit(quantity),
                "dose_field": f"{where}.doseQuantity.unit"}
    dose_range = dose_and_rate.get("doseRange")
    if dose_range is None:
        return {}
    low, high = dose_range.get("low"), dose_range.get("high")
    dose = low.get("value") if low is not None else None
    dose_high = high.get("value") if high is not None else None
    if dose is not None and dose_high is not None and dose_high < dose:
        raise InputError(f"range high {dose_high:g} is below low {dose:g}",
                         field=f"{where}.doseRange.high.value")
    unit = (quantity_unit(low) if low is not None else None) or (
        quantity_unit(high) if high is not None else None)
    return {"dose": dose, "dose_high": dose_high, "dose_unit": unit,
            "dose_field": f"{where}.doseRange.{'low' if low is not None else 'high'}.unit"}


def _route(route: Element | None) -> str | None:
    """Route word: a known SNOMED code wins (unambiguous), then text, then display."""
    if route is None:
        return None
    found = codings(route)
    for system, code, _ in found:
        if system in (SNOMED, None) and code in SNOMED_ROUTES:
            return SNOMED_ROUTES[code]
    words = [route.get("text")] + [display for _, _, display in found]
    for word in words:
        if word:
            return route_word(word)
    return found[0][1].lower() if found else None


def _whole(value: float | None, where: str) -> int | None:
    if value is None:
        return None
    if not value.is_integer():
        raise InputError(f"expected a whole number, got {value:g}", field=where)
    return int(value)


def _timing(timing: Element, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    repeat = timing.get("repeat")
    if repeat is not None:
        at = f"{where}.repeat"
        out["frequency"] = _whole(repeat.get("frequency"), f"{at}.frequency")
        out["frequency_max"] = _whole(repeat.get("frequencyMax"), f"{at}.frequencyMax")
        out["period"] = repeat.get("period")
        out["period_max"] = repeat.get("periodMax")
        period_unit = repeat.get("periodUnit")
        if period_unit:
            out["period_unit"] = parse_time_unit(period_unit, f"{at}.periodUnit")
        out["time_of_day"] = repeat.get("timeOfDay") or []
        out["when"] = repeat.get("when") or []
        bounds = repeat.get("boundsPeriod")
        if bounds is not None:
            out["bounds_start"] = date_at(bounds, "start", f"{at}.boundsPeriod")
            out["bounds_end"] = date_at(bounds, "end", f"{at}.boundsPeriod")
        duration = repeat.get("boundsDuration")
        if duration is not None:
            out["bounds_days"] = duration_days(duration, f"{at}.boundsDuration")
    code = timing.get("code")
    if code is not None:
        found = codings(code)
        out["code"] = found[0][1].upper() if found else nonempty(code.get("text"))
    return out


def _max_dose(raw: object, where: str) -> dict[str, Any]:
    ratio = checked(RATIO, raw, where)
    numerator = ratio.get("numerator")
    denominator = ratio.get("denominator")
    if numerator is None or denominator is None:
        raise InputError("needs a numerator and a denominator", field=where)
    value = numerator.get("value")
    unit = quantity_unit(numerator)
    if value is None or unit is None:
        raise InputError("numerator needs a value and a unit", field=f"{where}.numerator")
    period = denominator.get("value")
    return {"value": value, "unit": unit, "period": 1.0 if period is None else period,
            "period_unit": time_unit(denominator, f"{where}.denominator")}


def _supply_days(supply: Element, where: str) -> float | None:
    """A supply duration in days; a bare number (no unit) is days, as in daysSupply."""
    if supply.get("value") is not None and not (supply.get("unit") or supply.get("code")):
        return supply.get("value")
    return duration_days(supply, where)


def _quantity(quantity: Element | None) -> dict[str, Any]:
    if quantity is None:
        return {}
    return {"quantity": quantity.get("value"), "quantity_unit": quantity_unit(quantity)}
