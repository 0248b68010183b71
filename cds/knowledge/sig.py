"""Administrations per day from a FHIR Timing. Where a range is given, the high end counts:
safety checks are about the most a patient may take under the order."""

from __future__ import annotations

import re

from cds.patient import MaxDosePerPeriod, Timing
from cds.units import PERIOD_DAYS

#: FHIR R4 TimingAbbreviation value set (v3 GTSAbbreviation: AM, BED "at bedtime", BID, MO, PM,
#: QnH, QD, QID, QOD, TID, WK), plus common sig spellings (QHS, HS, QAM, QPM, DAILY) -> per day.
TIMING_CODES: dict[str, float] = {
    "QD": 1, "QOD": 0.5, "BID": 2, "TID": 3, "QID": 4, "AM": 1, "PM": 1, "QAM": 1, "QPM": 1,
    "QHS": 1, "HS": 1, "BED": 1, "WK": 1 / 7, "MO": 1 / 30, "DAILY": 1, "ONCE DAILY": 1,
}
_QNH = re.compile(r"^Q(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?H$")


def code_per_day(code: str) -> float | None:
    c = code.strip().upper()
    if c in TIMING_CODES:
        return TIMING_CODES[c]
    m = _QNH.match(c.replace(" ", ""))
    if m:
        hours = float(m.group(1))  # Q4-6H: the shorter interval, more doses
        return 24 / hours if hours > 0 else None
    return None


def doses_per_day(t: Timing | None) -> tuple[float | None, str | None]:
    """(administrations per day, None) or (None, why it cannot be told)."""
    if t is None:
        return None, "no dosing frequency"
    if t.period is not None and t.period_unit is not None:
        freq = t.frequency_max or t.frequency or 1
        # "once a day at 08:00 and 20:00" (frequency 1, two times of day) is two
        # administrations: each listed time counts, whichever of the two is higher.
        events = len(t.time_of_day) or len(t.when)
        return max(freq, events) / (t.period * PERIOD_DAYS[t.period_unit]), None
    if t.period is not None:
        return None, "timing has a period but no period unit"
    if t.code:
        per_day = code_per_day(t.code)
        if per_day is not None:
            return per_day, None
        if not (t.when or t.time_of_day):
            return None, f"unknown timing code {t.code!r}"
    if t.time_of_day:
        return float(len(t.time_of_day)) * (t.frequency_max or t.frequency or 1), None
    if t.when:
        return float(len(t.when)) * (t.frequency_max or t.frequency or 1), None
    if t.frequency is not None:
        return None, "timing has a frequency but no period"
    return None, "no dosing frequency"


def max_per_day(m: MaxDosePerPeriod) -> float:
    """maxDosePerPeriod as an amount per day, in m.unit."""
    return m.value / (m.period * PERIOD_DAYS[m.period_unit])
