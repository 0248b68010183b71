"""cds: medication-safety clinical decision support.

The public API is what this module exports (`__all__`, listed in the README); everything else
may change without notice.

    >>> from datetime import date
    >>> import cds
    >>> engine = cds.load_engine()                       # newest version of every shipped pack
    >>> patient = cds.read_patient("examples/patient-oxycodone-fentanyl.json")
    >>> result = engine.evaluate(patient, as_of=date(2026, 11, 26))
    >>> result.mme.total, [a.rule for a in result.alerts][:1]
"""

from cds.engine.alerts import Alert
from cds.engine.evaluator import Engine, load_engine
from cds.engine.result import Result
from cds.engine.summary import PatientSummary
from cds.errors import CdsError, InputError, PackError, PackErrors
from cds.io import patient_from_fhir, patient_from_native, read_patient
from cds.knowledge.facts import Facts
from cds.knowledge.store import Knowledge, default_knowledge, load_knowledge
from cds.patient import MedicationOrder, Observation, Patient
from cds.rules.loader import Pack, load_pack
from cds.rules.registry import load_packs

__version__ = "0.2.0"

__all__ = [
    "Alert",
    "CdsError",
    "Engine",
    "Facts",
    "InputError",
    "Knowledge",
    "MedicationOrder",
    "Observation",
    "Pack",
    "PackError",
    "PackErrors",
    "Patient",
    "PatientSummary",
    "Result",
    "__version__",
    "default_knowledge",
    "load_engine",
    "load_knowledge",
    "load_pack",
    "load_packs",
    "patient_from_fhir",
    "patient_from_native",
    "read_patient",
]
