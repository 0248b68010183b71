"""cds: medication-safety clinical decision support.

The public API is what this module exports; everything else may change without notice.

    >>> import cds
    >>> engine = cds.load_engine()                       # newest version of every shipped pack
    >>> patient = cds.read_patient("examples/patient-oxycodone-fentanyl.json")
    >>> result = engine.evaluate(patient)
    >>> result.mme.total, [a.rule for a in result.alerts][:1]
"""

from cds.engine.alerts import Alert, Result
from cds.engine.evaluator import Engine, load_engine
from cds.errors import CdsError, InputError, PackError, PackErrors
from cds.io import patient_from_fhir, patient_from_native, read_patient
from cds.knowledge.store import Knowledge, default_knowledge, load_knowledge
from cds.patient import MedicationOrder, Observation, Patient
from cds.rules.loader import Pack, load_pack
from cds.rules.registry import load_packs

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "CdsError",
    "Engine",
    "InputError",
    "Knowledge",
    "MedicationOrder",
    "Observation",
    "Pack",
    "PackError",
    "PackErrors",
    "Patient",
    "Result",
    "default_knowledge",
    "load_engine",
    "load_knowledge",
    "load_pack",
    "load_packs",
    "patient_from_fhir",
    "patient_from_native",
    "read_patient",
]
