"""Medication order -> ingredients, strengths, form, route and daily amount.

Identification (code or name -> product) is memoized per knowledge base; the daily amount is
arithmetic on the order. Anything that cannot be told is said (`reason`), never guessed: an
order whose drug is unknown is `recognized=False`; a known drug whose daily dose cannot be
computed keeps its ingredients (interaction rules still see it) with `daily_reason` set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Any

from cds.knowledge.names import form_route, free_text_strength, parse_rxnorm_name
from cds.knowledge.plausible import add_days
from cds.knowledge.sig import doses_per_day, max_per_day
from cds.knowledge.store import Knowledge
from cds.patient import MedicationOrder
from cds.units import MASS_TO_MG, RATE_TO_MCG_H
from cds.vocabulary import RXNORM, route_word

_COUNT_UNITS = {
    "tablet": "tablet", "tablets": "tablet", "tab": "tablet", "tabs": "tablet", "{tbl}": "tablet",
    "{tablet}": "tablet", "{tablets}": "tablet",
    "capsule": "capsule", "capsules": "capsule", "cap": "capsule", "caps": "capsule",
    "{capsule}": "capsule", "{cap}": "capsule",
    "patch": "patch", "patches": "patch", "{patch}": "patch", "system": "patch",
    "film": "film", "films": "film", "{film}": "film",
    "lozenge": "lozenge", "troche": "lozenge", "suppository": "suppository",
    "spray": "spray", "sprays": "spray", "actuation": "spray", "{actuation}": "spray",
    "puff": "spray", "each": "each", "ea": "each", "{each}": "each", "dose": "each",
}
#: Dose forms counted in units: a dose with no unit is that many units of the product.
COUNTABLE_FORMS = frozenset({"tablet", "capsule", "patch", "film", "suppository", "lozenge"})
_VOLUME_UNITS = {"ml": 1.0, "milliliter": 1.0, "milliliters": 1.0, "l": 1000.0}


@dataclass(frozen=True, slots=True)
class Identity:
    """What a code or name denotes: ingredients with strengths when the product is known."""

    ingredients: tuple[str, ...]
    strengths: tuple[tuple[float, str] | None, ...]  # per ingredient: (strength, RxNorm unit)
    dose_form: str | None
    form: str | None
    route: str | None
    extended_release: bool
    rxcui: str | None
    matched_by: str  # "rxcui-product" | "rxcui-ingredient" | "rxnorm-name" | "free-text"
    #: ingredients the order's text names when they differ from the coded drug's
    text_names: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)  # identity equality; not frozen: built per order, hot
class NormalizedMed:
    order_id: str
    label: str
    source: str
    current: bool
    draft: bool
    recognized: bool
    reason: str | None  # why not recognized
    ingredients: tuple[str, ...] = ()
    form: str | None = None
    route: str | None = None
    #: How the route is known: "stated" (the order says), "dose form" (the product or the
    #: name's form), "unit" (a dose in mcg/h is transdermal); None: not known
    route_basis: str | None = None
    extended_release: bool = False
    as_needed: bool = False
    doses_per_day: float | None = None
    daily: tuple[tuple[str, float, str], ...] = ()  # (ingredient, amount, "mg" | "mcg/h")
    daily_reason: str | None = None  # why the daily amount is unknown
    prescriber: str | None = None
    authored: date | None = None
    dispensed: date | None = None
    supply_days: float | None = None
    start: date | None = None  # bounds start, else authored, else dispensed
    end: date | None = None  # bounds end (exclusive), when the order says
    status: str = "active"
    rxcui: str | None = None
    matched_by: str | None = None
    #: What was assumed to compute the daily dose, in words ("dose has no unit: read as 1
    #: tablet"), said wherever the dose is used
    assumed: tuple[str, ...] = ()
    #: The drug the order's text names when it differs from the coded product's (the code wins)
    text_names: tuple[str, ...] = ()
    #: Where it is taken: community, outpatient, inpatient, discharge (FHIR category)
    category: str | None = None
    #: Days the order is for: its expected supply, else quantity / daily use (see supply_basis)
    expected_supply_days: float | None = None

    def daily_of(self, ingredient: str) -> tuple[float, str] | None:
        for ing, amount, unit in self.daily:
            if ing == ingredient:
                return amount, unit
        return None


#: Extended-release markers in free text, as whole words ("erythromycin" is not "ER").
_FREE_ER = re.compile(r"\b(?:er|xr|sr|cr|extended|12 hr|24 hr)\b")


@lru_cache(maxsize=8)
def _name_pattern(kb: Knowledge) -> re.Pattern[str]:
    names = sorted(kb.names, key=len, reverse=True)
    return re.compile(r"(?<![a-z])(" + "|".join(re.escape(n) for n in names) + r")(?![a-z])")


def _component_ingredient(kb: Knowledge, name: str) -> str | None:
    """'oxycodone hydrochloride' -> oxycodone; tries shorter prefixes for unlisted salts."""
    found = kb.ingredient_of(name)
    if found:
        return found
    # RxNorm writes some precise names with a comma ("nitrofurantoin, macrocrystals").
    words = name.replace(",", " ").split()
    found = kb.ingredient_of(" ".join(words))
    if found:
        return found
    for n in range(len(words) - 1, 0, -1):
        found = kb.ingredient_of(" ".join(words[:n]))
        if found:
            return found
    return None


def _from_name(kb: Knowledge, text: str) -> Identity | None:
    parsed = parse_rxnorm_name(text)
    if parsed is not None:
        ings = [_component_ingredient(kb, c.name) for c in parsed.components]
        if all(ings):
            return Identity(
                ingredients=tuple(i for i in ings if i),
                strengths=tuple((c.strength, c.unit) for c in parsed.components),
                dose_form=parsed.dose_form, form=parsed.form, route=parsed.route,
                extended_release=parsed.extended_release, rxcui=None, matched_by="rxnorm-name",
            )
    low = text.lower()
    found: list[str] = []
    for m in _name_pattern(kb).finditer(low):
        ing = kb.names[m.group(1)]
        if ing not in found:
            found.append(ing)
    if not found:
        return None
    strength = free_text_strength(low) if len(found) == 1 else None
    route, form = form_route(low)
    er = _FREE_ER.search(low) is not None
    return Identity(tuple(found), (strength,) if len(found) == 1 else (None,) * len(found),
                    None, form, route, er, None, "free-text")


_MISS = object()
_IDENTITIES: dict[tuple[Any, ...], Identity | None] = {}
_IDENTITIES_MAX = 65536
#: Characters of an order's text and code displays beyond which its identity is not memoized
#: (worked out each time): the memo's entry count is bounded, its keys' size must be too.
_MEMO_TEXT_MAX = 512


def identify(kb: Knowledge, order: MedicationOrder) -> Identity | None:
    """What an order's codes and name denote, memoized: panels repeat the same products.

    A plain bounded dict rather than an LRU: this runs for every order of every patient and
    a dict look-up is the cheapest memo there is (and atomic under the GIL)."""
    codes = order.codes
    if len(codes) == 1:  # the common case, without building a list
        c = codes[0]
        key: tuple[Any, ...] = (kb, order.text, (c.system, c.code, c.display))
    else:
        key = (kb, order.text, *[(c.system, c.code, c.display) for c in codes])
    hit = _IDENTITIES.get(key, _MISS)
    if hit is not _MISS:
        return hit  # type: ignore[return-value]
    ident = _identify(kb, tuple((c.system, c.code) for c in codes), order.text,
                      tuple(c.display for c in codes))
    if len(order.text or "") + sum(len(c.display or "") for c in codes) > _MEMO_TEXT_MAX:
        return ident  # unique long texts (a hostile feed) would fill the memory otherwise
    if len(_IDENTITIES) >= _IDENTITIES_MAX:
        _IDENTITIES.clear()
    _IDENTITIES[key] = ident
    return ident


def _identify(kb: Knowledge, codes: tuple[tuple[str | None, str], ...], text: str | None,
              displays: tuple[str | None, ...]) -> Identity | None:
    """The coded drug wins (codes are what the EHR acts on); when the order's text names
    other drugs entirely, the identity says so (`text_names`)."""
    coded = _by_code(kb, codes)
    named = None
    for text_candidate in (text, *displays) if coded is None else (text,):
        if text_candidate:
            named = _from_name(kb, text_candidate)
            if named is not None:
                break
    if coded is None:
        # a name gives strength and form; an ingredient code only the ingredient
        ingredient = _by_ingredient_code(kb, codes)
        if named is None or ingredient is None or not set(named.ingredients).isdisjoint(
                ingredient.ingredients):
            return named or ingredient
        coded = ingredient
    if named is not None and set(named.ingredients).isdisjoint(coded.ingredients):
        coded = replace(coded, text_names=named.ingredients)
    return coded


def _by_code(kb: Knowledge, codes: tuple[tuple[str | None, str], ...]) -> Identity | None:
    for system, code in codes:
        if system not in (None, RXNORM):
            continue
        p = kb.products.get(code)
        if p is not None:
            return Identity(
                tuple(c.ingredient for c in p.components),
                tuple((c.strength, c.unit) for c in p.components),
                p.dose_form, p.form, p.route, p.extended_release, p.rxcui, "rxcui-product",
            )
    return None


def _by_ingredient_code(kb: Knowledge,
                        codes: tuple[tuple[str | None, str], ...]) -> Identity | None:
    for system, code in codes:
        if system in (None, RXNORM) and code in kb.by_rxcui:
            return Identity((kb.by_rxcui[code],), (None,), None, None, None, False, code,
                            "rxcui-ingredient")
    return None


def _per_admin(ident: Identity, amount: float,
               unit: str | None) -> tuple[dict[str, tuple[float, str]] | None, str | None]:
    """Amount of each ingredient in one administration: ({ing: (value, mg|mcg/h)}, None)."""
    if unit is None or not unit.strip():
        if ident.form in COUNTABLE_FORMS:  # the caller says it assumed the product's unit
            return _per_admin(ident, amount, ident.form)
        return None, "dose has no unit"
    u = unit.strip().lower()
    if u in MASS_TO_MG:
        if len(ident.ingredients) > 1:
            return None, f"dose in {unit} is ambiguous for a combination product"
        return {ident.ingredients[0]: (amount * MASS_TO_MG[u], "mg")}, None
    if u in RATE_TO_MCG_H:
        if len(ident.ingredients) > 1:
            return None, f"dose in {unit} is ambiguous for a combination product"
        return {ident.ingredients[0]: (amount * RATE_TO_MCG_H[u], "mcg/h")}, None
    per_unit_ml = _VOLUME_UNITS.get(u)
    count_unit = _COUNT_UNITS.get(u)
    if per_unit_ml is None and count_unit is None:
        return None, f"unknown dose unit {unit!r}"
    out: dict[str, tuple[float, str]] = {}
    for ing, strength in zip(ident.ingredients, ident.strengths, strict=True):
        if strength is None:
            return None, f"dose given in {unit} but the product strength is unknown"
        value, sunit = strength
        su = sunit.upper()
        if per_unit_ml is not None:
            if su == "MG/ML":
                out[ing] = (amount * per_unit_ml * value, "mg")
            elif su == "MCG/ML":
                out[ing] = (amount * per_unit_ml * value / 1000, "mg")
            else:
                return None, f"dose in {unit} does not fit a strength in {sunit}"
        elif su in ("MG/HR", "MCG/HR"):
            out[ing] = (amount * value * (1000 if su == "MG/HR" else 1), "mcg/h")
        elif su.lower() in MASS_TO_MG:
            out[ing] = (amount * value * MASS_TO_MG[su.lower()], "mg")
        elif su in ("MG/ACTUAT", "MCG/ACTUAT"):
            out[ing] = (amount * value * (1 if su == "MG/ACTUAT" else 0.001), "mg")
        else:
            return None, f"dose in {unit} does not fit a strength in {sunit}"
    return out, None


Daily = tuple[tuple[str, float, str], ...]


def _daily(order: MedicationOrder, ident: Identity) -> tuple[Daily, float | None, str | None]:
    """(daily amounts, administrations per day, reason when the amounts are unknown)."""
    if order.dose is None:
        return (), None, "no dose given"
    amount = order.dose_high if order.dose_high is not None else order.dose
    per_admin, why = _per_admin(ident, amount, order.dose_unit)
    if per_admin is None:
        return (), None, why
    if all(u == "mcg/h" for _, u in per_admin.values()):
        # A patch delivers its rate continuously; the patch count worn is the dose.
        return tuple((i, v, u) for i, (v, u) in per_admin.items()), None, None
    per_day, why = doses_per_day(order.timing)
    if order.as_needed and order.max_dose_per_period is not None:
        m = order.max_dose_per_period
        max_admin, why_max = _per_admin(ident, max_per_day(m), m.unit)
        if max_admin is not None:
            return tuple((i, v, u) for i, (v, u) in max_admin.items()), per_day, None
        why = why_max
    if per_day is None:
        return (), None, why
    return tuple((i, v * per_day, u) for i, (v, u) in per_admin.items()), per_day, None


def _window(order: MedicationOrder) -> tuple[date | None, date | None]:
    t = order.timing
    start = (t.bounds_start if t else None) or order.authored or order.dispensed
    end = t.bounds_end if t else None
    if end is None and t is not None and t.bounds_days and start is not None:
        end = add_days(start, t.bounds_days)  # a course of 1e12 days: open-ended, no overflow
    return start, end


def normalize(kb: Knowledge, order: MedicationOrder) -> NormalizedMed:
    start, end = _window(order)
    ident = identify(kb, order)
    if ident is None:
        return NormalizedMed(
            order_id=order.id, label=order.label, source=order.source, category=order.category,
            current=order.is_current, draft=order.draft, recognized=False,
            reason="no RxNorm code or drug name matched the knowledge base",
            as_needed=order.as_needed, prescriber=order.prescriber, authored=order.authored,
            dispensed=order.dispensed, supply_days=order.supply_days, start=start, end=end,
            status=order.status)
    daily, per_day, why = _daily(order, ident)
    if not all(math.isfinite(v) for _, v, _ in daily) or (
            per_day is not None and not math.isfinite(per_day)):
        daily, per_day, why = (), None, "dose too large to compute a daily amount"
    assumed: tuple[str, ...] = ()
    if daily and order.dose is not None and not (order.dose_unit or "").strip():
        amount = order.dose_high if order.dose_high is not None else order.dose
        assumed = (f"dose has no unit: read as {amount:g} {ident.form}(s) of the product",)
    route, basis = _route(order, ident)
    return NormalizedMed(
        order_id=order.id, label=order.label, source=order.source, current=order.is_current,
        draft=order.draft, recognized=True, reason=None, ingredients=ident.ingredients,
        form=ident.form, route=route, route_basis=basis,
        extended_release=ident.extended_release, as_needed=order.as_needed,
        doses_per_day=per_day, daily=daily, daily_reason=why, prescriber=order.prescriber,
        authored=order.authored, dispensed=order.dispensed, supply_days=order.supply_days,
        start=start, end=end, status=order.status, rxcui=ident.rxcui,
        matched_by=ident.matched_by, assumed=assumed, text_names=ident.text_names,
        category=order.category, expected_supply_days=_expected_supply(order, per_day))


def _expected_supply(order: MedicationOrder, per_day: float | None) -> float | None:
    """The days an order is for: its stated supply, else its quantity divided by the daily use
    when both are in units of the product (60 tablets, 2 tablets 3 times a day: 10 days)."""
    if order.supply_days:
        return order.supply_days
    if not (order.quantity and per_day and order.dose):
        return None
    q, d = (order.quantity_unit or "").strip().lower(), (order.dose_unit or "").strip().lower()
    if q and d and _COUNT_UNITS.get(q, q) == _COUNT_UNITS.get(d, d):
        dose = order.dose_high if order.dose_high is not None else order.dose
        return order.quantity / (dose * per_day) if dose * per_day > 0 else None
    return None


def _route(order: MedicationOrder, ident: Identity) -> tuple[str | None, str | None]:
    """The route and how it is known: the order's own, else the dose form's, else the dose
    unit's (mcg/h is a transdermal rate); (None, None) when nothing says."""
    stated = route_word(order.route)
    if stated:
        return stated, "stated"
    if ident.route:
        return ident.route, "dose form"
    if order.dose_unit and order.dose_unit.strip().lower() in RATE_TO_MCG_H:
        return "transdermal", "unit"
    return None, None
