"""The flat CSV layout for sites without FHIR (docs/panel.md): each row becomes the FHIR
resource it stands for, so one reader serves both layouts.

A row that cannot be converted becomes an `_Invalid` record carrying the reason: it goes to
the quarantine, and the patient it names is still reviewed with a note of what was missing.
"""

from __future__ import annotations

import math
from typing import Any

from cds.errors import CdsError
from cds.vocabulary import LOINC, RXNORM, SNOMED

CSV_FILES = ("patients.csv", "medications.csv", "labs.csv", "conditions.csv")

#: labs.csv `kind` -> the LOINC code it is read as.
LAB_KINDS = {"weight": "29463-7", "height": "8302-2", "creatinine": "2160-0",
             "egfr": "98979-8", "bilirubin": "1975-2", "albumin": "1751-7", "inr": "6301-6"}
_SOURCES = {"request": "MedicationRequest", "order": "MedicationRequest",
            "dispense": "MedicationDispense", "fill": "MedicationDispense",
            "statement": "MedicationStatement"}
_TRUE = {"true", "yes", "y", "1", "prn"}
_FALSE = {"false", "no", "n", "0", ""}


class RowError(CdsError, ValueError):
    pass


def _get(row: dict[str, Any], key: str) -> str | None:
    v = row.get(key)
    if v is None:
        return None
    v = str(v).strip()
    return v or None


def _num(row: dict[str, Any], key: str) -> float | None:
    v = _get(row, key)
    if v is None:
        return None
    try:
        x = float(v)
    except ValueError:
        raise RowError(f"column {key}: {v!r} is not a number") from None
    if not math.isfinite(x):  # float() reads "nan" and "inf"; JSON has no such numbers
        raise RowError(f"column {key}: {v!r} is not a finite number")
    return int(x) if x.is_integer() and key in ("frequency",) else x


def csv_record(table: str, row: dict[str, Any], line: int) -> dict[str, Any] | str:
    """One CSV row -> a FHIR resource dict; an `_Invalid` record if the row names a patient
    but is unusable; a reason string if it does not even name a patient."""
    pid = _get(row, "patient_id")
    if pid is None:
        return "column patient_id is empty"
    try:
        if table == "patients":
            return _patient(pid, row)
        if table == "medications":
            return _medication(pid, row, line)
        if table == "labs":
            return _lab(pid, row, line)
        if table == "conditions":
            return _condition(pid, row, line)
        return f"unknown CSV table {table!r}"
    except RowError as e:
        label = _get(row, "name") or _get(row, "rxnorm") or _get(row, "kind") or _get(row, "loinc")
        return {"resourceType": "_Invalid", "subject": {"reference": f"Patient/{pid}"},
                "table": table, "reason": str(e), "label": label or f"{table}.csv row"}


def _patient(pid: str, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if (b := _get(row, "birth_date")) is not None:
        out["birthDate"] = b
    if (s := _get(row, "sex")) is not None:
        out["gender"] = {"f": "female", "m": "male"}.get(s.lower(), s)
    return out


def _medication(pid: str, row: dict[str, Any], line: int) -> dict[str, Any]:
    kind = (_get(row, "type") or "request").lower()
    rtype = _SOURCES.get(kind)
    if rtype is None:
        raise RowError(f"column type: {kind!r} is not one of {', '.join(sorted(_SOURCES))}")
    code, name = _get(row, "rxnorm"), _get(row, "name")
    if code is None and name is None:
        raise RowError("a medication needs column rxnorm or name")
    concept: dict[str, Any] = {}
    if code is not None:
        concept["coding"] = [{"system": RXNORM, "code": code, **({"display": name} if name else {})}]
    if name is not None:
        concept["text"] = name
    res: dict[str, Any] = {"resourceType": rtype, "id": _get(row, "order_id") or f"{pid}-med-{line}",
                           "subject": {"reference": f"Patient/{pid}"},
                           "medicationCodeableConcept": concept}
    if (status := _get(row, "status")) is not None:
        res["status"] = status
    dosage: dict[str, Any] = {}
    dose = _num(row, "dose")
    if dose is not None:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": dose,
                                                   **_unit(_get(row, "dose_unit"))}}]
    freq = _num(row, "frequency")
    if freq is not None:
        dosage["timing"] = {"repeat": {"frequency": int(freq), "period": _num(row, "period") or 1,
                                       "periodUnit": _get(row, "period_unit") or "d"}}
    prn = (_get(row, "as_needed") or "").lower()
    if prn not in _TRUE | _FALSE:
        raise RowError(f"column as_needed: {prn!r} is not yes/no")
    if prn in _TRUE:
        dosage["asNeededBoolean"] = True
    if (route := _get(row, "route")) is not None:
        dosage["route"] = {"text": route}
    prescriber = _get(row, "prescriber")
    quantity = _num(row, "quantity")
    supply = _num(row, "supply_days")
    qty = {"value": quantity, **_unit(_get(row, "quantity_unit"))} if quantity is not None else None
    if rtype == "MedicationDispense":
        if dosage:
            res["dosageInstruction"] = [dosage]
        if (d := _get(row, "dispensed") or _get(row, "authored")) is not None:
            res["whenHandedOver"] = d
        if prescriber:
            res["authorizingPrescription"] = [{"display": prescriber}]
        if qty:
            res["quantity"] = qty
        if supply is not None:
            res["daysSupply"] = {"value": supply, "unit": "d"}
        return res
    key = "dosage" if rtype == "MedicationStatement" else "dosageInstruction"
    if dosage:
        res[key] = [dosage]
    if (d := _get(row, "authored")) is not None:
        res["authoredOn" if rtype == "MedicationRequest" else "effectiveDateTime"] = d
    if prescriber:
        res["requester" if rtype == "MedicationRequest" else "informationSource"] = {
            "display": prescriber}
    if rtype == "MedicationRequest" and (qty or supply is not None):
        res["dispenseRequest"] = {**({"quantity": qty} if qty else {}),
                                  **({"expectedSupplyDuration": {"value": supply, "unit": "d"}}
                                     if supply is not None else {})}
    return res


def _unit(unit: str | None) -> dict[str, Any]:
    return {"unit": unit} if unit else {}


def _lab(pid: str, row: dict[str, Any], line: int) -> dict[str, Any]:
    loinc = _get(row, "loinc")
    kind = (_get(row, "kind") or "").lower()
    if loinc is None:
        if kind not in LAB_KINDS:
            raise RowError(f"column kind: {kind!r} is not one of {', '.join(LAB_KINDS)} "
                           "(or give column loinc)")
        loinc = LAB_KINDS[kind]
    value = _num(row, "value")
    if value is None:
        raise RowError("column value is empty")
    res: dict[str, Any] = {"resourceType": "Observation", "id": _get(row, "lab_id") or f"{pid}-lab-{line}",
                           "status": "final", "subject": {"reference": f"Patient/{pid}"},
                           "code": {"coding": [{"system": LOINC, "code": loinc}]},
                           "valueQuantity": {"value": value, **_unit(_get(row, "unit"))}}
    if (d := _get(row, "date")) is not None:
        res["effectiveDateTime"] = d
    return res


def _condition(pid: str, row: dict[str, Any], line: int) -> dict[str, Any]:
    code, text = _get(row, "code"), _get(row, "text")
    if code is None and text is None:
        raise RowError("a condition needs column code or text")
    concept: dict[str, Any] = {}
    if code is not None:
        concept["coding"] = [{"system": _get(row, "system") or SNOMED, "code": code}]
    if text is not None:
        concept["text"] = text
    res: dict[str, Any] = {"resourceType": "Condition", "id": f"{pid}-cond-{line}",
                           "subject": {"reference": f"Patient/{pid}"}, "code": concept,
                           "clinicalStatus": {"coding": [{"code": _get(row, "status") or "active"}]}}
    if (d := _get(row, "onset")) is not None:
        res["onsetDateTime"] = d
    return res
