"""FHIR resources of one patient -> the Patient every path checks.

`cds check` (a Bundle), the CDS Hooks service (prefetch) and the panel (Bulk Data) all build
the patient here, with one policy for statuses and subjects, so the same records give the same
alerts on every path:

- a medication record that never happened is not read (counted as skipped): `doNotPerform`,
  or status entered-in-error, cancelled, not-taken (statement) or declined (dispense);
  active, on-hold, intended and draft are current; completed, stopped and the rest are history;
- an observation withdrawn, without a value for a stated reason, or of a code no rule uses is
  skipped; a condition entered in error is skipped;
- a record whose subject is another patient is left out and said (`strict`: an error);
- a record that cannot be read is left out with the reason (`strict`: the error).

`strict` is for one patient's file (`cds check`, the library): the first problem is an
InputError naming the record and field. Otherwise (service, panel) every problem is collected
and the rest of the record is still checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from cds.errors import InputError
from cds.io._fhir import add_medication, as_dict, label, normalize_reference, patient_id_of
from cds.io._shape import validation_error
from cds.io.fhir import (
    EVENT_TYPES,
    bundle_entries,
    fhir_condition,
    fhir_event,
    fhir_observation,
    fhir_patient_demographics,
    lab_kind,
)
from cds.io.fhir_meds import SOURCES, fhir_medication_order
from cds.patient import Condition, Event, MedicationOrder, Observation, Patient

MED_TYPES = tuple(SOURCES)
#: Statuses that mean the record never happened: not read.
WITHDRAWN = frozenset({"entered-in-error", "cancelled", "not-taken", "declined"})


@dataclass(frozen=True, slots=True)
class Record:
    resource: dict[str, Any]
    full_url: str | None = None
    #: How an error names a record without an id (a bundle entry, a file and line).
    where: str | None = None
    #: What the caller needs to find the record again (the panel: its file and line).
    origin: Any = None


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A record not used, and why: said to the user (a card, a worklist row)."""

    record: Record
    what: str  # what a pharmacist calls it: the drug's name, "a lab (Observation/o1)"
    reason: str
    error: Exception | None = None


@dataclass
class Built:
    patient: Patient
    left_out: list[LeftOut] = field(default_factory=list)
    skipped: int = 0  # records not read by policy (withdrawn, codes no rule uses)


def patient_from_fhir(bundle: dict[str, Any], *, source: str | None = None) -> Patient:
    """A FHIR R4 Bundle, or one resource, -> Patient (strict: the first problem is an
    InputError naming the record and field). `source` names the input in errors."""
    try:
        records = [Record(res, url, where) for url, res, where in bundle_entries(bundle)]
        return build_patient(records, strict=True).patient
    except InputError as e:
        raise e.at(file=source) from None
    except ValidationError as e:
        raise validation_error(e).at(file=source) from None


def build_patient(records: Sequence[Record], *, patient_id: str | None = None,
                  strict: bool = False,
                  medications: Mapping[str, dict[str, Any]] | None = None) -> Built:
    """The patient of `records` (`patient_id` when the caller knows it: a CDS Hooks context,
    a panel partition; else the bundle's Patient or its records' subject)."""
    meds: dict[str, dict[str, Any]] = dict(medications or {})
    others: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.resource.get("resourceType") == "Medication":
            for key in _keys(r):
                add_medication(meds, key, r.resource)
        else:
            for key in _keys(r):
                others.setdefault(key, r.resource)
    out = _Builder(strict)
    pid, identities, demographics = out.demographics(records, patient_id)
    observations: list[Observation] = []
    conditions: list[Condition] = []
    orders: list[MedicationOrder] = []
    events: list[Event] = []
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        res = r.resource
        rtype = res.get("resourceType")
        if rtype in ("Patient", "Medication"):
            continue
        if rtype not in ("Condition", *EVENT_TYPES, *MED_TYPES):
            out.skipped += 1
            continue
        other = _other_patient(res, pid, identities)
        if other is not None:
            key = "subject" if as_dict(res.get("subject")) else "patient"
            out.problem(r, InputError(f"refers to another patient ({other}, expected Patient/"
                                      f"{pid})", field=f"{label(res)}.{key}.reference"))
            continue
        status = res.get("status")
        if rtype in MED_TYPES and (res.get("doNotPerform") is True
                                   or (isinstance(status, str) and status in WITHDRAWN)):
            out.skipped += 1
            continue
        try:
            if rtype == "Observation" and lab_kind(res) is not None:
                obs = fhir_observation(res)
                if obs is None:
                    out.skipped += 1
                elif out.first(r, seen):
                    observations.append(obs)
            elif rtype in EVENT_TYPES:  # a procedure, an encounter, a coded observation...
                event = fhir_event(res)
                if event is None:
                    out.skipped += 1
                elif out.first(r, seen):
                    events.append(event)
            elif rtype == "Condition":
                cond = fhir_condition(res)
                if cond.status == "entered-in-error":
                    out.skipped += 1
                elif out.first(r, seen):
                    conditions.append(cond)
            else:
                order = fhir_medication_order(res, meds, resources=others,
                                              fallback_id=r.full_url or r.where)
                if out.first(r, seen):
                    orders.append(order)
        except (InputError, ValidationError) as e:
            out.problem(r, e)
        except Exception as e:  # a reader bug must not hide the rest of the record
            if strict:
                raise
            out.problem(r, e)
    try:
        patient = Patient(**demographics, observations=observations, conditions=conditions,
                          medications=orders, events=events)
    except ValidationError as e:
        raise validation_error(e) from None
    return Built(patient, out.left_out, out.skipped)


class _Builder:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.left_out: list[LeftOut] = []
        self.skipped = 0

    def problem(self, r: Record, e: Exception) -> None:
        if isinstance(e, ValidationError):
            e = validation_error(e)
        if self.strict:
            if isinstance(e, InputError):
                raise (e if r.resource.get("id") else e.at(record=r.where)) from None
            raise e
        reason = str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
        self.left_out.append(LeftOut(r, what(r.resource), reason, e))

    def first(self, r: Record, seen: dict[tuple[str, str], dict[str, Any]]) -> bool:
        """Is this the first record of its type and id? The same record again is skipped; a
        different one with the same id is a problem (neither is trusted over the other, the
        first is used)."""
        rid = r.resource.get("id")
        if not (isinstance(rid, str) and rid):
            return True
        rtype = str(r.resource["resourceType"])
        first = seen.setdefault((rtype, rid), r.resource)
        if first is r.resource:
            return True
        if first == r.resource:
            self.skipped += 1  # the same record twice (two prefetch keys, say)
        else:
            self.problem(r, InputError(f"a second, different {rtype}/{rid}: the two records "
                                       "disagree; the first is used", record=f"{rtype}/{rid}"))
        return False

    def demographics(self, records: Sequence[Record], patient_id: str | None
                     ) -> tuple[str, set[str], dict[str, Any]]:
        """(patient id, the references that name the patient, demographics)."""
        patients = [r for r in records if r.resource.get("resourceType") == "Patient"]
        found: list[tuple[Record, dict[str, Any]]] = []
        for r in patients:
            try:
                found.append((r, fhir_patient_demographics(r.resource)))
            except InputError as e:
                self.problem(r, e)
        if patient_id is None:
            ids = sorted({d["id"] for _, d in found})
            if len(ids) > 1:
                raise InputError(f"bundle holds more than one patient: {', '.join(ids)}",
                                 field="Bundle.entry")
            patient_id = ids[0] if ids else _from_subjects(records)
        ours: list[tuple[Record, dict[str, Any]]] = []
        for r, d in found:
            if d["id"] == patient_id:
                ours.append((r, d))
            else:
                self.problem(r, InputError(f"Patient/{d['id']} is not the patient checked "
                                           f"(Patient/{patient_id})"))
        demographics: dict[str, Any] = {"id": patient_id}
        if ours:
            demographics = ours[0][1]
            for r, d in ours[1:]:
                if d != demographics:
                    self.problem(r, InputError("a second, different Patient resource for this "
                                               "patient: the first is used",
                                               record=f"Patient/{patient_id}"))
                else:
                    self.skipped += 1
        identities = {f"Patient/{patient_id}"} | {r.full_url for r, _ in ours if r.full_url}
        return patient_id, identities, demographics


def _keys(r: Record) -> list[str]:
    """Every way another resource may refer to this one."""
    keys = [r.full_url] if r.full_url else []
    rid = r.resource.get("id")
    if isinstance(rid, str) and rid:
        keys.append(f"{r.resource['resourceType']}/{rid}")
    return keys


def subject_of(res: Mapping[str, Any]) -> str | None:
    ref = as_dict(res.get("subject")) or as_dict(res.get("patient"))
    target = ref.get("reference") if ref else None
    return normalize_reference(target) if isinstance(target, str) else None


def _other_patient(res: Mapping[str, Any], pid: str, identities: set[str]) -> str | None:
    """The reference, when the record's subject is another patient than `pid`: relative
    (Patient/1), absolute (https://host/fhir/Patient/1) and urn:uuid references are matched."""
    ref = subject_of(res)
    if ref is None or ref in identities:
        return None
    named = patient_id_of(ref)
    if named is not None:
        return None if named == pid else ref
    if ref.startswith("urn:") and any(i.startswith("urn:") for i in identities):
        return ref  # the bundle's patient is a urn, and this is another one
    return None


def _from_subjects(records: Sequence[Record]) -> str:
    for r in records:
        ref = subject_of(r.resource)
        pid = patient_id_of(ref) if ref else None
        if pid:
            return pid
    raise InputError("no Patient resource and no subject reference to name the patient",
                     field="Bundle.entry")


def what(res: Mapping[str, Any]) -> str:
    """What a pharmacist would call a record: the drug's name, a lab, the demographics."""
    rtype = res.get("resourceType")
    if rtype in MED_TYPES:
        concept = res.get("medicationCodeableConcept")
        if isinstance(concept, dict):
            if _named(concept.get("text")):
                return str(concept["text"])
            codings = concept.get("coding")
            for c in codings if isinstance(codings, list) else ():
                if isinstance(c, dict) and _named(c.get("display")):
                    return str(c["display"])
        ref = res.get("medicationReference")
        if isinstance(ref, dict) and _named(ref.get("display")):
            return str(ref["display"])
        return label(res)
    if rtype == "Observation":
        return f"a lab ({label(res)})"
    if rtype == "Patient":
        return "demographics (age, sex)"
    if rtype == "Condition":
        return f"a condition ({label(res)})"
    return label(res)


def _named(text: Any) -> bool:
    return isinstance(text, str) and bool(text.strip())
