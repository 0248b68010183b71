"""Prefetched (or fetched) FHIR data and draft orders -> the Patient the engine checks.

Each resource is read on its own with cds.io's per-resource readers, so one unreadable
record does not sink the whole check: it is left out and named on a "could not check" card.
Draft orders are different: they are what is being signed, so a draft that cannot be read is
a bad request (400) naming the entry and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from cds.errors import CdsError, InputError
from cds.io import fhir_condition, fhir_medication_order, fhir_observation, fhir_patient_demographics
from cds.patient import Condition, MedicationOrder, Observation, Patient
from cds.service.cards import OrderRef

MED_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationDispense")
_WITHDRAWN = frozenset({"entered-in-error", "cancelled"})


class BadRequest(CdsError):
    """A request the service cannot act on: a 400 naming the field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class Assembled:
    patient: Patient
    drafts: list[MedicationOrder]
    orders: dict[str, OrderRef]
    problems: list[str] = field(default_factory=list)  # records left out, for the card


def _resources(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise BadRequest("expected a FHIR resource (or a searchset Bundle) or null", where)
    if value["resourceType"] != "Bundle":
        return [value]
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry is not an array", where)
    out = []
    for e in entries:
        res = e.get("resource") if isinstance(e, dict) else None
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
            out.append(res)
    return out


def _label(res: Mapping[str, Any]) -> str:
    rid = res.get("id")
    return f"{res['resourceType']}/{rid}" if isinstance(rid, str) and rid else str(res["resourceType"])


def _subject(res: Mapping[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        ref = res.get(key)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            return str(ref["reference"])
    return None


def _other_patient(res: Mapping[str, Any], pid: str) -> bool:
    ref = _subject(res)
    if ref is None or "Patient/" not in ref:
        return False
    return ref.split("/_history/")[0].rsplit("Patient/", 1)[1] != pid


def _error(e: Exception) -> str:
    if isinstance(e, InputError):
        return str(e)
    if isinstance(e, ValidationError):
        err = e.errors(include_url=False)[0]
        return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    return type(e).__name__


def drafts_from(context: Mapping[str, Any], index: Mapping[str, dict[str, Any]]
                ) -> tuple[list[MedicationOrder], dict[str, OrderRef]]:
    """context.draftOrders (a Bundle) -> draft MedicationOrders; other order types are skipped."""
    bundle = context.get("draftOrders")
    if bundle is None:
        raise BadRequest("draftOrders is required for this hook", "context.draftOrders")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("draftOrders must be a FHIR Bundle", "context.draftOrders")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("entry must be an array", "context.draftOrders.entry")
    drafts: list[MedicationOrder] = []
    refs: dict[str, OrderRef] = {}
    for i, entry in enumerate(entries):
        where = f"context.draftOrders.entry[{i}].resource"
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            raise BadRequest("entry has no resource", where)
        if res.get("resourceType") != "MedicationRequest":
            continue  # ServiceRequest, NutritionOrder, ...: not medication safety
        try:
            order = fhir_medication_order(res, index)
        except (InputError, ValidationError) as e:
            raise BadRequest(_error(e), where) from None
        order = order.model_copy(update={"draft": True})
        drafts.append(order)
        rid = res.get("id")
        if isinstance(rid, str) and rid:
            refs[order.id] = OrderRef("MedicationRequest", rid, res, True)
    return drafts, refs


def assemble(patient_id: str, values: Mapping[str, Any], context: Mapping[str, Any], *,
             with_drafts: bool, dispense_days: int, today: date) -> Assembled:
    """Build the Patient from prefetch values (key -> resource, Bundle or None)."""
    resources: list[dict[str, Any]] = []
    for key, value in values.items():
        resources += _resources(value, f"prefetch.{key}")
    draft_bundle = context.get("draftOrders") if with_drafts else None
    medications: dict[str, dict[str, Any]] = {}
    others: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for res in resources + _resources(draft_bundle, "context.draftOrders"):
        rid = res.get("id")
        if isinstance(rid, str) and rid:
            k = (res["resourceType"], rid)
            if k in seen:
                continue
            seen[k] = res
            (medications if res["resourceType"] == "Medication" else others)[f"{k[0]}/{rid}"] = res
    drafts: list[MedicationOrder] = []
    orders: dict[str, OrderRef] = {}
    if with_drafts:
        drafts, orders = drafts_from(context, medications)
    draft_ids = {d.id for d in drafts}

    problems: list[str] = []
    demographics: dict[str, Any] = {"id": patient_id}
    observations: list[Observation] = []
    meds: list[MedicationOrder] = []
    conditions: list[Condition] = []
    cutoff = today - timedelta(days=dispense_days)
    for res in resources:
        rtype = res["resourceType"]
        try:
            if rtype == "Patient":
                found = fhir_patient_demographics(res)
                if found["id"] != patient_id:
                    problems.append(f"{_label(res)}: not the patient of this call; left out")
                    continue
                demographics = found
            elif rtype == "Observation":
                if _other_patient(res, patient_id):
                    problems.append(f"{_label(res)}: belongs to another patient; left out")
                    continue
                obs = fhir_observation(res)
                if obs is not None:
                    observations.append(obs)
            elif rtype == "Condition":
                if _other_patient(res, patient_id):
                    problems.append(f"{_label(res)}: belongs to another patient; left out")
                    continue
                conditions.append(fhir_condition(res))
            elif rtype in MED_TYPES:
                if res.get("doNotPerform") is True or res.get("status") in _WITHDRAWN:
                    continue
                if _other_patient(res, patient_id):
                    problems.append(f"{_label(res)}: belongs to another patient; left out")
                    continue
                order = fhir_medication_order(res, medications, resources=others)
                if order.id in draft_ids:
                    continue  # the draft itself, also returned by the search
                if order.source == "dispense" and order.dispensed and order.dispensed < cutoff:
                    continue
                meds.append(order)
                rid = res.get("id")
                if rtype == "MedicationRequest" and isinstance(rid, str) and rid:
                    orders.setdefault(order.id, OrderRef(rtype, rid, res, False))
        except (InputError, ValidationError) as e:
            problems.append(f"{_label(res)}: {_error(e)}")
    try:
        patient = Patient(**demographics, observations=observations, medications=meds,
                          conditions=conditions)
    except ValidationError as e:
        raise BadRequest(_error(e), "prefetch.patient") from None
    return Assembled(patient=patient, drafts=drafts, orders=orders, problems=problems)
