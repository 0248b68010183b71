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
    SNOMED,
    as_dict,
    codings,
    concept_text,
    duration_days,
    label,
    normalize_reference,
    parse_time_unit,
    quantity_unit,
    reference_name,
    resource_node,
    time_unit,
)
from cds.io._shape import Node, guarded
from cds.patient import MedicationOrder, OrderSource

SOURCES: dict[str, OrderSource] = {
    "MedicationRequest": "request",
    "MedicationStatement": "statement",
    "MedicationDispense": "dispense",
}

#: SNOMED CT route-of-administration codes -> the route words the rules use.
SNOMED_ROUTES = {
    "26643006": "oral",
    "45890007": "transdermal",
    "54471007": "buccal",
    "37839007": "sublingual",
    "46713006": "nasal",
    "37161004": "rectal",
    "47625008": "intravenous",
    "78421000": "intramuscular",
    "34206005": "subcutaneous",
}

_ROUTE_WORDS = {
    "by mouth": "oral", "po": "oral", "p.o.": "oral", "orally": "oral", "oral use": "oral",
    "iv": "intravenous", "im": "intramuscular", "sc": "subcutaneous", "subq": "subcutaneous",
    "sl": "sublingual", "intranasal": "nasal", "pr": "rectal", "td": "transdermal",
}


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
    node = resource_node(resource, tuple(SOURCES))
    rtype = node.string("resourceType") or ""
    source = SOURCES[rtype]
    status = node.string("status") or ("completed" if source == "dispense" else "active")
    fields: dict[str, Any] = {
        "id": node.string("id") or fallback_id or _content_id(rtype, resource),
        "source": source,
        "status": status,
        "draft": source == "request" and status == "draft",
    }
    fields.update(_medication(node, medications))
    others = resources or {}
    fields.update(_when_and_who(node, source, others))
    fields["reasons"] = _reasons(node, others)
    dosage = node.first("dosage" if source == "statement" else "dosageInstruction")
    if dosage is not None:
        fields.update(_dosage(dosage))
    if source == "request":
        fields.update(_dispense_request(node.obj("dispenseRequest")))
    elif source == "dispense":
        fields.update(_quantity(node.obj("quantity")))
        supply = node.obj("daysSupply")
        if supply is not None:
            fields["supply_days"] = _supply_days(supply)
    return MedicationOrder.model_validate(fields)


def _content_id(rtype: str, resource: dict[str, Any]) -> str:
    """A stable id for an id-less resource (e.g. an unsaved CDS Hooks draft order)."""
    blob = json.dumps(resource, sort_keys=True, default=repr).encode("utf-8", "replace")
    return f"{rtype}-{hashlib.sha256(blob).hexdigest()[:12]}"


def _medication(node: Node, medications: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    concept = node.obj("medicationCodeableConcept")
    if concept is None:
        ref = node.obj("medicationReference")
        if ref is None:
            raise InputError("no medicationCodeableConcept or medicationReference",
                             field=node.at("medication[x]"))
        med = _resolve_medication(node, ref, medications)
        if med is None:
            display = ref.string("display")
            if display is None:
                raise InputError("medicationReference is not in the bundle and has no "
                                 "display", field=ref.at("reference"))
            return {"text": display}
        concept = med.obj("code")
        if concept is None:
            raise InputError("referenced Medication has no code", field=med.at("code"))
    codes = [{"system": s, "code": c, "display": d} for s, c, d in codings(concept)]
    return {"codes": codes, "text": concept_text(concept)}


def _resolve_medication(node: Node, ref: Node,
                        medications: Mapping[str, dict[str, Any]]) -> Node | None:
    target = ref.string("reference")
    if target is None:
        return None
    target = normalize_reference(target)
    if target.startswith("#"):
        for i, contained in enumerate(node.objs("contained")):
            if (contained.string("resourceType") == "Medication"
                    and contained.string("id") == target[1:]):
                return Node(contained.data, node.at("contained") + f"[{i}]")
    candidates = [target]
    if "/Medication/" in target:  # absolute URL of a Medication on some server
        candidates.append("Medication/" + target.rsplit("/Medication/", 1)[1])
    for key in candidates:
        med = as_dict(medications.get(key))
        if med is not None:
            return Node(med, label(med))
    return None


def _reasons(node: Node, resources: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """reasonCode codings, plus the codes of reasonReference Conditions at hand."""
    concepts = node.objs("reasonCode")
    for ref in node.objs("reasonReference"):
        target = ref.string("reference")
        found = as_dict(resources.get(normalize_reference(target))) if target else None
        if found is not None and found.get("resourceType") == "Condition":
            cond = Node(found, label(found)).obj("code")
            if cond is not None:
                concepts.append(cond)
    out: list[dict[str, Any]] = []
    for concept in concepts:
        for s, c, d in codings(concept):
            coding = {"system": s, "code": c, "display": d}
            if coding not in out:
                out.append(coding)
    return out


def _when_and_who(node: Node, source: OrderSource,
                  requests: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if source == "request":
        out["authored"] = node.date("authoredOn")
        out["prescriber"] = reference_name(node.obj("requester"))
    elif source == "statement":
        period = node.obj("effectivePeriod")
        out["authored"] = (node.date("effectiveDateTime")
                           or (period.date("start") if period is not None else None)
                           or node.date("dateAsserted"))
        out["prescriber"] = reference_name(node.obj("informationSource"))
    else:
        handed = node.date("whenHandedOver")
        out["authored"] = handed or node.date("whenPrepared")
        out["dispensed"] = handed
        out["prescriber"] = _dispense_prescriber(node, requests)
    return out


def _dispense_prescriber(node: Node, requests: Mapping[str, dict[str, Any]]) -> str | None:
    """Who prescribed a fill: the requester of the order it fills when that order is at
    hand (what multiple-prescriber rules need), else the dispense performer, else the
    authorizing prescription's own display/reference."""
    auth = node.first("authorizingPrescription")
    if auth is not None:
        target = auth.string("reference")
        request = as_dict(requests.get(normalize_reference(target))) if target else None
        if request is not None and request.get("resourceType") == "MedicationRequest":
            prescriber = reference_name(Node(request, label(request)).obj("requester"))
            if prescriber:
                return prescriber
    performer = node.first("performer")
    who = reference_name(performer.obj("actor")) if performer is not None else None
    return who or reference_name(auth)


def _dosage(dosage: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dose_and_rate = dosage.first("doseAndRate")
    if dose_and_rate is not None:
        out.update(_dose(dose_and_rate))
    out["route"] = _route(dosage.obj("route"))
    timing = dosage.obj("timing")
    if timing is not None:
        out["timing"] = _timing(timing)
    as_needed = dosage.boolean("asNeededBoolean")
    out["as_needed"] = bool(as_needed) or dosage.obj("asNeededCodeableConcept") is not None
    ratio = dosage.data.get("maxDosePerPeriod")
    if isinstance(ratio, list):  # R5 made it repeating; read the first
        first = dosage.first("maxDosePerPeriod")
        out["max_dose_per_period"] = _max_dose(first) if first is not None else None
    elif ratio is not None:
        out["max_dose_per_period"] = _max_dose(dosage.obj("maxDosePerPeriod"))
    return out


def _dose(dose_and_rate: Node) -> dict[str, Any]:
    quantity = dose_and_rate.obj("doseQuantity")
    if quantity is not None:
        return {"dose": quantity.number("value", minimum=0),
                "dose_unit": quantity_unit(quantity)}
    dose_range = dose_and_rate.obj("doseRange")
    if dose_range is None:
        return {}
    low, high = dose_range.obj("low"), dose_range.obj("high")
    dose = low.number("value", minimum=0) if low is not None else None
    dose_high = high.number("value", minimum=0) if high is not None else None
    if dose is not None and dose_high is not None and dose_high < dose:
        raise InputError(f"range high {dose_high:g} is below low {dose:g}",
                         field=dose_range.at("high.value"))
    unit = (quantity_unit(low) if low is not None else None) or (
        quantity_unit(high) if high is not None else None)
    return {"dose": dose, "dose_high": dose_high, "dose_unit": unit}


def _route(route: Node | None) -> str | None:
    """Route word: a known SNOMED code wins (unambiguous), then text, then display."""
    if route is None:
        return None
    found = codings(route)
    for system, code, _ in found:
        if system in (SNOMED, None) and code in SNOMED_ROUTES:
            return SNOMED_ROUTES[code]
    words = [route.string("text")] + [display for _, _, display in found]
    for word in words:
        if word:
            return _route_word(word)
    return found[0][1].lower() if found else None


def _route_word(text: str) -> str:
    word = text.lower().replace("(qualifier value)", "").strip()
    word = word.removesuffix(" route").strip()
    return _ROUTE_WORDS.get(word, word)


def _timing(timing: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    repeat = timing.obj("repeat")
    if repeat is not None:
        out["frequency"] = repeat.integer("frequency")
        out["frequency_max"] = repeat.integer("frequencyMax")
        out["period"] = repeat.number("period", positive=True)
        out["period_max"] = repeat.number("periodMax", positive=True)
        period_unit = repeat.string("periodUnit")
        if period_unit is not None:
            out["period_unit"] = parse_time_unit(period_unit, repeat, "periodUnit")
        out["time_of_day"] = repeat.strings("timeOfDay")
        out["when"] = repeat.strings("when")
        bounds = repeat.obj("boundsPeriod")
        if bounds is not None:
            out["bounds_start"] = bounds.date("start")
            out["bounds_end"] = bounds.date("end")
        duration = repeat.obj("boundsDuration")
        if duration is not None:
            out["bounds_days"] = duration_days(duration)
    code = timing.obj("code")
    if code is not None:
        found = codings(code)
        out["code"] = found[0][1].upper() if found else code.string("text")
    return out


def _max_dose(ratio: Node | None) -> dict[str, Any] | None:
    if ratio is None:
        return None
    numerator = ratio.obj("numerator")
    denominator = ratio.obj("denominator")
    if numerator is None or denominator is None:
        raise InputError("needs a numerator and a denominator", field=ratio.path)
    value = numerator.number("value", positive=True)
    unit = quantity_unit(numerator)
    if value is None or unit is None:
        raise InputError("numerator needs a value and a unit", field=numerator.path)
    period = denominator.number("value", positive=True)
    return {"value": value, "unit": unit, "period": 1.0 if period is None else period,
            "period_unit": time_unit(denominator)}


def _dispense_request(request: Node | None) -> dict[str, Any]:
    if request is None:
        return {}
    out = _quantity(request.obj("quantity"))
    supply = request.obj("expectedSupplyDuration")
    if supply is not None:
        out["supply_days"] = _supply_days(supply)
    return out


def _supply_days(supply: Node) -> float | None:
    """A supply duration in days; a bare number (no unit) is days, as in daysSupply."""
    if supply.has("value") and not (supply.has("unit") or supply.has("code")):
        return supply.number("value", positive=True)
    return duration_days(supply)


def _quantity(quantity: Node | None) -> dict[str, Any]:
    if quantity is None:
        return {}
    return {"quantity": quantity.number("value", minimum=0),
            "quantity_unit": quantity_unit(quantity)}
