"""Prefetched (or fetched) FHIR data and draft orders -> the Patient the engine checks.

The patient is built by the one builder every path uses (cds.io.builder): one unreadable
record does not sink the whole check, it is left out and named on a "could not check" card.
Draft orders are different: they are what is being signed, so a draft that cannot be read,
or whose subject is another patient, is a bad request (400) naming the entry and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cds.errors import CdsError, InputError
from cds.io import Record, build_patient, fhir_medication_order
from cds.io._fhir import FHIR_ID, label, patient_id_of
from cds.io.builder import subject_of
from cds.io.fhir import bundle_entries
from cds.patient import MedicationOrder, Patient
from cds.service.cards import OrderRef


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


def _error(e: Exception) -> str:
    if isinstance(e, InputError):
        return str(e)
    if isinstance(e, ValidationError):
        err = e.errors(include_url=False)[0]
        return f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    return type(e).__name__


def drafts_from(context: Mapping[str, Any], index: Mapping[str, dict[str, Any]],
                pid: str | None = None) -> tuple[list[MedicationOrder], dict[str, OrderRef]]:
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
        rid = res.get("id")
        if rid is not None and not (isinstance(rid, str) and FHIR_ID.fullmatch(rid)):
            raise BadRequest("the draft order's id is not a FHIR id (letters, digits, '-' and "
                             "'.', at most 64): a card could not refer to it", f"{where}.id")
        ref = subject_of(res)
        named = patient_id_of(ref) if ref else None
        if pid is not None and named is not None and named != pid:
            raise BadRequest(f"the draft order is for another patient ({ref}; this call is for "
                             f"Patient/{pid})", f"{where}.subject.reference")
        try:
            order = fhir_medication_order(res, index)
        except (InputError, ValidationError) as e:
            raise BadRequest(_error(e), where) from None
        order = order.model_copy(update={"draft": True})
        drafts.append(order)
        if isinstance(rid, str) and rid:
            refs[order.id] = OrderRef("MedicationRequest", rid, res, True)
    return drafts, refs


def patient_id(raw: str) -> str:
    """`context.patientId` as EHRs send it: "123" or "Patient/123" (the opioid CDS reference
    implementation's examples use the second)."""
    return patient_id_of(raw) or raw.strip()


def assemble(patient_id: str, values: Mapping[str, Any], context: Mapping[str, Any], *,
             with_drafts: bool, unavailable: frozenset[str] = frozenset()) -> Assembled:
    """Build the Patient from prefetch values (key -> resource, Bundle or None) with the one
    builder every path uses (cds.io.builder); the records left out are named for the card."""
    records: list[Record] = []
    for key, value in values.items():
        records += _records(value, f"prefetch.{key}")
    draft_bundle = context.get("draftOrders") if with_drafts else None
    medications: dict[str, dict[str, Any]] = {}
    for r in records + _records(draft_bundle, "context.draftOrders"):
        res = r.resource
        rid = res.get("id")
        if res["resourceType"] == "Medication" and isinstance(rid, str) and rid:
            medications.setdefault(f"Medication/{rid}", res)
    drafts: list[MedicationOrder] = []
    orders: dict[str, OrderRef] = {}
    if with_drafts:
        drafts, orders = drafts_from(context, medications, patient_id)
    draft_ids = {d.id for d in drafts}
    try:
        built = build_patient(records, patient_id=patient_id, medications=medications)
    except InputError as e:
        raise BadRequest(str(e), "prefetch.patient") from None
    patient = built.patient
    if unavailable:  # record kinds the service could not get: rules needing them not checked
        patient = patient.model_copy(update={"unavailable": sorted(unavailable)})
    if draft_ids:  # the draft itself, also returned by the medications search (a fill or a
        # statement with the same id is another record and stays)
        patient = patient.model_copy(update={"medications": [
            m for m in patient.medications if m.source != "request" or m.id not in draft_ids]})
    by_id = {(r.resource["resourceType"], r.resource["id"]): r.resource for r in records
             if isinstance(r.resource.get("id"), str)}
    for m in patient.medications:
        found = by_id.get(("MedicationRequest", m.id))
        if found is not None:
            orders.setdefault(m.id, OrderRef("MedicationRequest", m.id, found, False))
    problems = [f"{label(lo.record.resource)}: {lo.reason}" for lo in built.left_out]
    return Assembled(patient=patient, drafts=drafts, orders=orders, problems=problems)


def _records(value: Any, where: str) -> list[Record]:
    """The resources of a prefetch value (a resource or a searchset Bundle, nested Bundles
    read as one)."""
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise BadRequest("expected a FHIR resource (or a searchset Bundle) or null", where)
    try:
        entries = bundle_entries(value, where)
    except InputError as e:
        raise BadRequest(e.message, e.field or where) from None
    return [Record(res, url, at) for url, res, at in entries]
