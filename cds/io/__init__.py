"""Patient input: FHIR R4 and native JSON, read into the one `Patient` model.

Every failure is an `InputError` naming the file and field; see docs/native-format.md.
"""

from cds.io._fhir import add_medication
from cds.io.builder import Built, LeftOut, Record, build_patient, patient_from_fhir
from cds.io.fhir import (
    fhir_condition,
    fhir_observation,
    fhir_patient_demographics,
)
from cds.io.fhir_meds import fhir_medication_order
from cds.io.native import patient_from_native
from cds.io.read import load_json, read_patient

__all__ = [
    "Built",
    "LeftOut",
    "Record",
    "add_medication",
    "build_patient",
    "fhir_condition",
    "fhir_medication_order",
    "fhir_observation",
    "fhir_patient_demographics",
    "load_json",
    "patient_from_fhir",
    "patient_from_native",
    "read_patient",
]
