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

from typing import TYPE_CHECKING

__version__ = "0.2.0"

#: Public name -> the module defining it, imported on first use (PEP 562): `import cds` alone
#: (or `cds --help`, `cds --version`) does not load the engine, knowledge and pack models.
_EXPORTS = {
    "Alert": "cds.engine.alerts",
    "Engine": "cds.engine.evaluator",
    "load_engine": "cds.engine.evaluator",
    "Result": "cds.engine.result",
    "PatientSummary": "cds.engine.summary",
    "CdsError": "cds.errors",
    "InputError": "cds.errors",
    "PackError": "cds.errors",
    "PackErrors": "cds.errors",
    "patient_from_fhir": "cds.io",
    "patient_from_native": "cds.io",
    "read_patient": "cds.io",
    "Facts": "cds.knowledge.facts",
    "Knowledge": "cds.knowledge.store",
    "default_knowledge": "cds.knowledge.store",
    "load_knowledge": "cds.knowledge.store",
    "MedicationOrder": "cds.patient",
    "Observation": "cds.patient",
    "Patient": "cds.patient",
    "Pack": "cds.rules.loader",
    "load_pack": "cds.rules.loader",
    "load_packs": "cds.rules.registry",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cds' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})



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
