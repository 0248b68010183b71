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
    #: Some parts were not on file (or recorded without a grade) and were counted at their
    #: least points: the true score and class may be higher ("at least B").
    lower_bound: bool = False
    #: Which parts were counted at their least points, and how, in words.
    assumed: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How the class is said: "C", or "at least B" for a lower bound."""
        return f"at least {self.cls}" if self.lower_bound else self.cls


def _bilirubin(v: float) -> int:
    return 1 if v < 2 else 2 if v <= 3 else 3


def _albumin(v: float) -> int:
    return 1 if v > 3.5 else 2 if v >= 2.8 else 3


def _inr(v: float) -> int:
    return 1 if v < 1.7 else 2 if v <= 2.3 else 3


_ASCITES = {"none": 1, "mild": 2, "moderate-severe": 3}
_ENCEPHALOPATHY = {"none": 1, "grade 1-2": 2, "grade 3-4": 3}
#: A condition on the problem list says the part is present but not its grade.
PRESENT = "present"


def _class(score: int) -> str:
    return "A" if score <= 6 else "B" if score <= 9 else "C"


def child_pugh(bilirubin: float, albumin: float, inr: float, ascites: str,
               encephalopathy: str) -> ChildPugh:
    points = (("bilirubin", _bilirubin(bilirubin)), ("albumin", _albumin(albumin)),
              ("INR", _inr(inr)), ("ascites", _ASCITES[ascites]),
              ("encephalopathy", _ENCEPHALOPATHY[encephalopathy]))
    score = sum(p for _, p in points)
    return ChildPugh(score, _class(score), points)


def child_pugh_bound(bilirubin: float | None, albumin: float | None, inr: float | None,
                     ascites: str | None, encephalopathy: str | None
                     ) -> tuple[ChildPugh | None, tuple[str, ...]]:
    """Child-Pugh from what is on file. A part not on file counts at its least (1 point); an
    ascites or encephalopathy recorded only as present counts 2. When nothing was assumed the
    score is exact; otherwise it is a lower bound, reported as "at least B" or "at least C"
    when the least possible score already reaches that class, and as not computable (None,
    with the parts missing) when it does not."""
    points: list[tuple[str, int]] = []
    assumed: list[str] = []
    missing: list[str] = []
    for name, value, points_of in (("bilirubin", bilirubin, _bilirubin),
                                   ("albumin", albumin, _albumin), ("INR", inr, _inr)):
        if value is None:
            points.append((name, 1))
            assumed.append(f"{name} not on file (counted 1)")
            missing.append(name)
        else:
            points.append((name, points_of(value)))
    for name, grade, table in (("ascites", ascites, _ASCITES),
                               ("encephalopathy", encephalopathy, _ENCEPHALOPATHY)):
        if grade is None:
            points.append((name, 1))
            assumed.append(f"{name} not recorded (counted 1)")
            missing.append(name)
        elif grade == PRESENT:
            points.append((name, 2))
            assumed.append(f"{name} recorded without a grade (counted 2)")
            missing.append(f"{name} grade")
        else:
            points.append((name, table[grade]))
    score = sum(p for _, p in points)
    if not assumed:
        return ChildPugh(score, _class(score), tuple(points)), ()
    if _class(score) == "A":
        return None, tuple(missing)
    return ChildPugh(score, _class(score), tuple(points), True, tuple(assumed)), ()
