"""Child-Pugh score and class (Pugh RN et al., Br J Surg 1973;60:646).

Points per the reference table: bilirubin mg/dL < 2 / 2-3 / > 3; albumin g/dL > 3.5 /
2.8-3.5 / < 2.8; INR < 1.7 / 1.7-2.3 / > 2.3; ascites none / mild / moderate-severe;
encephalopathy none / grade 1-2 / grade 3-4. Class A 5-6, B 7-9, C 10-15.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "Child-Pugh score (Pugh RN et al., Br J Surg 1973;60:646-9)"


@dataclass(frozen=True, slots=True)
class ChildPugh:
    score: int | None  # None when the class was given, not computed
    cls: str
    points: tuple[tuple[str, int], ...] = ()


def _bilirubin(v: float) -> int:
    return 1 if v < 2 else 2 if v <= 3 else 3


def _albumin(v: float) -> int:
    return 1 if v > 3.5 else 2 if v >= 2.8 else 3


def _inr(v: float) -> int:
    return 1 if v < 1.7 else 2 if v <= 2.3 else 3


_ASCITES = {"none": 1, "mild": 2, "moderate-severe": 3}
_ENCEPHALOPATHY = {"none": 1, "grade 1-2": 2, "grade 3-4": 3}


def child_pugh(bilirubin: float, albumin: float, inr: float, ascites: str,
               encephalopathy: str) -> ChildPugh:
    points = (("bilirubin", _bilirubin(bilirubin)), ("albumin", _albumin(albumin)),
              ("INR", _inr(inr)), ("ascites", _ASCITES[ascites]),
              ("encephalopathy", _ENCEPHALOPATHY[encephalopathy]))
    score = sum(p for _, p in points)
    cls = "A" if score <= 6 else "B" if score <= 9 else "C"
    return ChildPugh(score, cls, points)
