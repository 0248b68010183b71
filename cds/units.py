"""Unit conversion at the boundary. An unknown unit raises: a guessed unit is a wrong dose.

Conversion factors are exact definitions except creatinine (umol/L / 88.4 = mg/dL, the
molar-mass conversion used by the Cockcroft-Gault and CKD-EPI literature) and albumin
(g/L / 10 = g/dL, by definition).
"""

from __future__ import annotations

from cds.errors import InputError

#: Canonical unit of each observation kind.
LAB_UNITS: dict[str, str] = {
    "weight": "kg",
    "height": "cm",
    "creatinine": "mg/dL",
    "egfr": "mL/min/1.73m2",
    "bilirubin": "mg/dL",
    "albumin": "g/dL",
    "inr": "1",
}

_ALIASES = {
    "kilogram": "kg", "kilograms": "kg", "kg": "kg",
    "lb": "lb", "lbs": "lb", "[lb_av]": "lb", "pound": "lb", "pounds": "lb",
    "g": "g", "gram": "g",
    "cm": "cm", "m": "m", "in": "in", "[in_i]": "in", "inch": "in", "inches": "in",
    "mg/dl": "mg/dL", "umol/l": "umol/L", "µmol/l": "umol/L", "micromol/l": "umol/L",
    "g/dl": "g/dL", "g/l": "g/L",
    "ml/min/1.73m2": "mL/min/1.73m2", "ml/min/{1.73_m2}": "mL/min/1.73m2",
    "ml/min/1.73_m2": "mL/min/1.73m2", "ml/min/1.73 m2": "mL/min/1.73m2",
    "ml/min/1.73m^2": "mL/min/1.73m2",
    "1": "1", "{inr}": "1", "{ratio}": "1", "ratio": "1", "inr": "1",
}

#: (kind, from unit) -> multiplier into the canonical unit.
_LAB_FACTORS: dict[tuple[str, str], float] = {
    ("weight", "kg"): 1.0,
    ("weight", "lb"): 0.45359237,
    ("weight", "g"): 0.001,
    ("height", "cm"): 1.0,
    ("height", "m"): 100.0,
    ("height", "in"): 2.54,
    ("creatinine", "mg/dL"): 1.0,
    ("creatinine", "umol/L"): 1 / 88.4,
    ("egfr", "mL/min/1.73m2"): 1.0,
    ("bilirubin", "mg/dL"): 1.0,
    ("bilirubin", "umol/L"): 1 / 17.1,
    ("albumin", "g/dL"): 1.0,
    ("albumin", "g/L"): 0.1,
    ("inr", "1"): 1.0,
}


def canonical_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    return _ALIASES.get(unit.strip().lower())


def convert_lab(kind: str, value: float, unit: str | None) -> float:
    """Convert an observation value into its kind's canonical unit."""
    if unit is None or unit == "":
        if kind == "inr":
            return value
        raise InputError(f"{kind} value {value} has no unit (expected {LAB_UNITS[kind]})")
    canon = canonical_unit(unit)
    factor = _LAB_FACTORS.get((kind, canon or ""))
    if factor is None:
        allowed = sorted({u for (k, u) in _LAB_FACTORS if k == kind})
        raise InputError(f"unknown unit {unit!r} for {kind} (allowed: {', '.join(allowed)})")
    return value * factor


#: Mass units of doses and strengths -> mg.
MASS_TO_MG: dict[str, float] = {"mg": 1.0, "mcg": 0.001, "ug": 0.001, "µg": 0.001, "g": 1000.0}
#: Transdermal rate units -> mcg/h.
RATE_TO_MCG_H: dict[str, float] = {"mcg/h": 1.0, "mcg/hr": 1.0, "ug/h": 1.0, "ug/hr": 1.0,
                                   "mg/h": 1000.0, "mg/hr": 1000.0, "mcg/(24.h)": 1 / 24}

#: FHIR period units -> days.
PERIOD_DAYS: dict[str, float] = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0,
                                 "wk": 7.0, "mo": 30.0, "a": 365.0}
