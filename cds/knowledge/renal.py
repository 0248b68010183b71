"""Kidney function estimates used by renal dosing rules.

Cockcroft-Gault (Cockcroft & Gault, Nephron 1976;16:31): CrCl mL/min =
(140 - age) x weight kg / (72 x SCr mg/dL), x 0.85 if female. The weight used is a documented
choice (see docs/renal-weight.md): actual body weight, except that when height is known and
actual weight exceeds 120% of ideal body weight (Devine), the adjusted body weight
IBW + 0.4 x (actual - IBW) is used, and when actual weight is below IBW, actual weight.
CKD-EPI 2021 (Inker et al., NEJM 2021;385:1737), without a race term.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds.errors import InputError

CG_SOURCE = "Cockcroft DW, Gault MH. Nephron 1976;16:31-41"
CKD_EPI_SOURCE = "CKD-EPI 2021 creatinine equation, Inker LA et al. N Engl J Med 2021;385:1737-49"
IBW_SOURCE = "Devine BJ. Drug Intell Clin Pharm 1974;8:650 (ideal body weight)"


@dataclass(frozen=True, slots=True)
class CrCl:
    value: float
    weight_kg: float
    weight_basis: str  # actual | adjusted | ideal-capped
    formula: str = "Cockcroft-Gault"


def ideal_body_weight(height_cm: float, female: bool) -> float:
    inches_over_60 = max(0.0, height_cm / 2.54 - 60)
    return (45.5 if female else 50.0) + 2.3 * inches_over_60


def dosing_weight(weight_kg: float, height_cm: float | None, female: bool) -> tuple[float, str]:
    if height_cm is None:
        return weight_kg, "actual"
    ibw = ideal_body_weight(height_cm, female)
    if weight_kg > 1.2 * ibw:
        return ibw + 0.4 * (weight_kg - ibw), "adjusted"
    return weight_kg, "actual"


def cockcroft_gault(age: int, weight_kg: float, scr_mg_dl: float, female: bool,
                    height_cm: float | None = None) -> CrCl:
    if scr_mg_dl <= 0 or weight_kg <= 0:
        raise InputError("creatinine and weight must be positive")
    w, basis = dosing_weight(weight_kg, height_cm, female)
    crcl = (140 - age) * w / (72 * scr_mg_dl)
    if female:
        crcl *= 0.85
    return CrCl(max(crcl, 0.0), w, basis)


def ckd_epi_2021(age: int, scr_mg_dl: float, female: bool) -> float:
    if scr_mg_dl <= 0:
        raise InputError("creatinine must be positive")
    k = 0.7 if female else 0.9
    a = -0.241 if female else -0.302
    ratio = scr_mg_dl / k
    egfr = 142 * min(ratio, 1.0) ** a * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return egfr * (1.012 if female else 1.0)
