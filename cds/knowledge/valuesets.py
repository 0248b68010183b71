"""Value sets: the codes a guideline rule looks for (sickle cell disease, hospice care, a PDMP
review, a urine drug test), each loaded from `data/valuesets/<id>.yaml` with its source.

Membership is the listed codes, plus, for ICD-10-CM, every code under the ranges of the value
set's compose definition (`include_icd10cm`, minus `exclude_icd10cm`), which makes ICD-10-CM
membership complete even where the published expansion was read only in part (`partial`).
SNOMED CT hierarchies are not computed: a partial SNOMED CT expansion stays partial, and the
data says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cds.vocabulary import ICD10CM


@dataclass(frozen=True, slots=True)
class ValueSet:
    id: str
    name: str
    url: str | None
    source: str
    status: str
    partial: bool
    codes: frozenset[tuple[str, str]]  # (system, code as written; ICD-10-CM without dots)
    include_icd10cm: tuple[str, ...] = ()
    exclude_icd10cm: tuple[str, ...] = ()

    def contains(self, system: str | None, code: str | None) -> bool:
        if not code:
            return False
        if system == ICD10CM or (system is None and _looks_icd(code)):
            key = icd_key(code)
            if (ICD10CM, key) in self.codes:
                return True
            return (any(_icd_in(key, r) for r in self.include_icd10cm)
                    and not any(_icd_in(key, r) for r in self.exclude_icd10cm))
        return (system or "", code) in self.codes

    def any_of(self, codings: Iterable[Any]) -> Any:
        """The first coding (anything with .system and .code) in the value set, or None."""
        for c in codings:
            if self.contains(c.system, c.code):
                return c
        return None


def icd_key(code: str) -> str:
    """ICD-10-CM is written with or without its dot (K70.31, K7031): one key for both."""
    return code.replace(".", "").strip().upper()


def _looks_icd(code: str) -> bool:
    k = icd_key(code)
    return len(k) >= 3 and k[0].isalpha() and k[1].isdigit()


def _icd_in(key: str, spec: str) -> bool:
    """Is the code under `spec`: a category range ("C00-C96": categories C00 to C96 and every
    code below them) or a code and its descendants ("G89.3")?"""
    if "-" in spec:
        lo, hi = (icd_key(p) for p in spec.split("-", 1))
        return lo <= key[:3] <= hi
    return key.startswith(icd_key(spec))


def load_value_sets(folder: Path) -> dict[str, ValueSet]:
    out: dict[str, ValueSet] = {}
    for path in sorted(folder.glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        codes = frozenset(
            (c["system"], icd_key(str(c["code"])) if c["system"] == ICD10CM else str(c["code"]))
            for c in doc.get("codes") or ())
        out[doc["id"]] = ValueSet(
            id=doc["id"], name=doc["name"], url=doc.get("url"), source=doc["source"],
            status=doc["status"], partial=bool(doc.get("partial")), codes=codes,
            include_icd10cm=tuple(doc.get("include_icd10cm") or ()),
            exclude_icd10cm=tuple(doc.get("exclude_icd10cm") or ()))
    return out
