"""Total morphine milligram equivalents per day (CDC 2022 factors), with its breakdown.

Nothing is dropped: every current opioid order is either an item (daily dose x factor) or
an exclusion with the reason (buprenorphine, opioid-use-disorder treatment, a route the table
does not cover, a dose that cannot be computed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.store import Knowledge, MmeFactor

#: ICD-10-CM F11 (opioid related disorders) and SNOMED CT opioid dependence / abuse.
OUD_CODE_PREFIXES = ("F11",)
OUD_SNOMED = frozenset({"5602001", "75544000"})
#: Words of a reason text that mean OUD treatment. Matched as whole words after punctuation
#: is blanked out ("Opioid use disorder, severe"). A bare "maintenance" is not among them:
#: "maintenance dose" is said of pain regimens too, and a false match would drop the opioid
#: from the MME total.
OUD_WORDS = ("opioid use disorder", "opioid dependence", "oud", "opioid addiction",
             "medication for opioid", "opioid maintenance", "methadone maintenance",
             "opioid agonist treatment", "opioid agonist therapy", "opioid replacement")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class MmeItem:
    medication: str
    order_id: str
    ingredient: str
    daily_dose: float
    unit: str  # mg | mcg/h | mcg
    factor: float
    mme: float
    factor_status: str
    source: str
    route: str = "oral"
    #: How the route is known: stated | dose form | unit | assumed (none said: counted as oral)
    route_basis: str = "stated"
    #: What was assumed to count it, in words (no route, no dose unit), said in the alert
    assumed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MmeExcluded:
    medication: str
    order_id: str
    ingredient: str | None
    reason: str
    #: False for exclusions by design (opioid-use-disorder treatment); True when the opioid
    #: should count but could not be (no route factor, no daily dose...): the total is then a
    #: lower bound and the record has a data-quality finding.
    uncounted: bool = True


@dataclass(frozen=True, slots=True)
class MmeResult:
    total: float
    items: tuple[MmeItem, ...]
    excluded: tuple[MmeExcluded, ...]
    factor_set: str

    @property
    def uses_analytic_factors(self) -> bool:
        return any(i.factor_status == "analytic" for i in self.items)

    @property
    def lower_bound(self) -> bool:
        """Is the total only a lower bound (an opioid that should count could not be)?"""
        return any(e.uncounted for e in self.excluded)


def _for_oud(med: NormalizedMed, reasons: Iterable[tuple[str | None, str | None]]) -> bool:
    if "buprenorphine" in med.ingredients and "naloxone" in med.ingredients:
        return True
    for code, text in reasons:
        if code and (code.upper().startswith(OUD_CODE_PREFIXES) or code in OUD_SNOMED):
            return True
        if text:
            words = f" {_NON_WORD.sub(' ', text.lower()).strip()} "
            if any(f" {w} " in words for w in OUD_WORDS):
                return True
    return False


def _factor(kb: Knowledge, ingredient: str, route: str | None,
            form: str | None) -> MmeFactor | None:
    for f in kb.mme_factors.get(ingredient, ()):
        if route in f.routes and (not f.forms or form in f.forms):
            return f
    return None


def assess(kb: Knowledge, med: NormalizedMed,
           reasons: tuple[tuple[str | None, str | None], ...] = ()
           ) -> tuple[list[MmeItem], list[MmeExcluded]]:
    """MME items and exclusions of one medication, current or not."""
    items: list[MmeItem] = []
    excluded: list[MmeExcluded] = []
    if not med.recognized:
        return items, excluded
    for ing in med.ingredients:
        if not kb.is_opioid((ing,)):
            continue
        # OUD treatment first: buprenorphine/naloxone is excluded as OUD treatment, not only
        # as an ingredient without a factor.
        if _for_oud(med, reasons):
            excluded.append(MmeExcluded(
                med.label, med.order_id, ing,
                "opioid-use-disorder treatment: CDC 2022 MME factors are not for OUD treatment",
                uncounted=False))
            continue
        if ing in kb.mme_excluded:
            excluded.append(MmeExcluded(med.label, med.order_id, ing, kb.mme_excluded[ing][0]))
            continue
        route, basis = (med.route, med.route_basis or "stated") if med.route else ("oral", "assumed")
        f = _factor(kb, ing, route, med.form)
        if f is None:
            where = (f"route {route!r}" if basis != "assumed"
                     else "route: none given, and no oral factor to assume")
            excluded.append(MmeExcluded(
                med.label, med.order_id, ing,
                f"no {kb.mme_factor_set} conversion factor for {ing} by {where}"))
            continue
        daily = med.daily_of(ing)
        if daily is None:
            excluded.append(MmeExcluded(
                med.label, med.order_id, ing,
                f"daily dose unknown: {med.daily_reason or 'not computed'}"))
            continue
        amount, unit = daily
        if f.basis == "mcg/h" and unit == "mcg/h":
            dose, out_unit = amount, "mcg/h"
        elif f.basis == "mg/day" and unit == "mg":
            dose, out_unit = amount, "mg"
        elif f.basis == "mcg/day" and unit == "mg":
            dose, out_unit = amount * 1000, "mcg"
        else:
            excluded.append(MmeExcluded(
                med.label, med.order_id, ing,
                f"dose in {unit} does not fit the factor's basis ({f.basis})"))
            continue
        if not math.isfinite(dose * f.factor):
            excluded.append(MmeExcluded(med.label, med.order_id, ing,
                                        "dose too large to compute an MME"))
            continue
        assumed = med.assumed + (("route not given: counted as oral",)
                                  if basis == "assumed" else ())
        items.append(MmeItem(med.label, med.order_id, ing, dose, out_unit, f.factor,
                             dose * f.factor, f.status, f.source, route, basis, assumed))
    return items, excluded


def total(kb: Knowledge, assessed: Iterable[tuple[list[MmeItem], list[MmeExcluded]]]) -> MmeResult:
    """The MME result of medications already assessed (`assess`), in their order."""
    items: list[MmeItem] = []
    excluded: list[MmeExcluded] = []
    for i, e in assessed:
        items += i
        excluded += e
    return MmeResult(sum(i.mme for i in items), tuple(items), tuple(excluded), kb.mme_factor_set)


def compute_mme(kb: Knowledge, meds: Iterable[NormalizedMed],
                reasons: dict[str, tuple[tuple[str | None, str | None], ...]] | None = None
                ) -> MmeResult:
    """MME of the current medications. `reasons` maps order id -> (code, text) indications."""
    reasons = reasons or {}
    return total(kb, (assess(kb, m, reasons.get(m.order_id, ())) for m in meds if m.current))
