"""Patient -> Facts: everything rules look at, computed once per patient, then immutable.

Rules never touch the pydantic Patient: they read these plain dataclasses, which keeps
validation out of the hot path and makes evaluation a pure function of (Facts, packs). Facts
hold no scratch space: whatever several rules share (the MME, the opioid history) is computed
here, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from cds.knowledge.exposure import Exposure
from cds.knowledge.hepatic import ChildPugh, child_pugh_bound
from cds.knowledge.mme import MmeResult, assess, total
from cds.knowledge.normalize import NormalizedMed, normalize
from cds.knowledge.plausible import screen
from cds.knowledge.quality import DataIssue, record_issues
from cds.knowledge.renal import CrCl, ckd_epi_2021, cockcroft_gault
from cds.knowledge.store import Knowledge
from cds.patient import Condition, Event, MedicationOrder, Observation, Patient

CNS_ACTIVE_CLASS = "cns-active-beers"


@dataclass(frozen=True, slots=True)
class LabValue:
    value: float
    date: date | None


@dataclass(frozen=True, slots=True)
class RenalFunction:
    crcl: CrCl | None
    egfr: float | None
    egfr_basis: str | None  # "measured" | "CKD-EPI 2021"
    #: the eGFR is a reported bound (">60": above 60; "<15": below 15), or None: a value
    egfr_comparator: str | None
    creatinine: LabValue | None
    measured_on: date | None
    #: kidney labs whose latest value is not possible, in words ("creatinine 0 mg/dL"):
    #: not used (cds/knowledge/plausible.py), so rules needing them say they were not checked
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    patient_id: str
    as_of: date
    age: int | None
    sex: str
    weight_kg: float | None
    height_cm: float | None
    meds: tuple[NormalizedMed, ...]  # current medications, draft orders included
    history: tuple[NormalizedMed, ...]  # stopped orders and dispenses, for escalation rules
    unrecognized: tuple[NormalizedMed, ...]
    renal: RenalFunction
    hepatic: ChildPugh | None
    hepatic_missing: tuple[str, ...]  # inputs missing for Child-Pugh
    mme: MmeResult
    acb_total: int
    acb_items: tuple[tuple[str, str, int], ...]  # (medication, ingredient, score)
    cns_active: tuple[int, ...]  # indexes into meds
    conditions: tuple[tuple[str | None, str | None], ...]  # (code, text) active
    med_classes: tuple[frozenset[str], ...]  # per current med: ingredients and their classes
    present: frozenset[str] = field(default=frozenset())  # union of med_classes
    opioids: tuple[int, ...] = ()  # indexes into meds of current opioids
    opioid_meds: tuple[NormalizedMed, ...] = ()  # the current opioids themselves
    #: order id -> (code, text) of why it was ordered (OUD treatment counts in no MME)
    indications: dict[str, tuple[tuple[str | None, str | None], ...]] = field(
        default_factory=dict, compare=False, repr=False)
    #: What could not be checked in the record, and why (data-quality findings).
    issues: tuple[DataIssue, ...] = ()
    #: Every condition (any status), with its codes, category and dates (value-set look-ups)
    condition_records: tuple[Condition, ...] = ()
    #: Dated procedures, coded observations, encounters, care plans, service requests
    events: tuple[Event, ...] = ()
    #: Record kinds the caller could not provide (a CDS Hooks prefetch key missing): rules
    #: that need them are not checked, and the caller says so
    unavailable: frozenset[str] = frozenset()
    #: Opioid episodes (current and past) with their MME, for the escalation rules.
    exposure: Exposure = field(default_factory=lambda: Exposure(date.min, ()), compare=False,
                               repr=False)

    def meds_with(self, ref: str) -> list[int]:
        """Indexes of current meds whose ingredient is, or belongs to, `ref`."""
        if ref not in self.present:
            return []
        return [i for i, cls in enumerate(self.med_classes) if ref in cls]

    def has(self, ref: str) -> bool:
        return ref in self.present


def _renal(patient: Patient, latest: dict[str, Observation], age: int | None,
           female: bool, rejected: dict[str, str]) -> RenalFunction:
    scr = latest.get("creatinine")
    weight = latest.get("weight")
    height = latest.get("height")
    measured = latest.get("egfr")
    crcl = None
    egfr = None
    basis = None
    comparator = None
    if scr is not None and age is not None and scr.value > 0:
        if weight is not None and weight.value > 0:
            crcl = cockcroft_gault(age, weight.value, scr.value, female,
                                   height.value if height else None)
        if patient.sex in ("female", "male"):
            egfr, basis = ckd_epi_2021(age, scr.value, female), "CKD-EPI 2021"
    if measured is not None and (scr is None or (measured.date or date.min) >= (scr.date or date.min)):
        egfr, basis, comparator = measured.value, "measured", measured.comparator
    dates = [d for d in (scr.date if scr else None, measured.date if measured else None) if d]
    return RenalFunction(crcl, egfr, basis, comparator, LabValue(scr.value, scr.date) if scr else None,
                         max(dates) if dates else None,
                         tuple(v for k, v in rejected.items() if k in _KIDNEY_LABS))


_KIDNEY_LABS = ("creatinine", "egfr", "weight", "height")


def _hepatic(kb: Knowledge, patient: Patient, latest: dict[str, Observation]
             ) -> tuple[ChildPugh | None, tuple[str, ...]]:
    """The Child-Pugh class: as recorded, else computed from the labs and from ascites and
    encephalopathy (as recorded, else from active problem-list conditions), a lower bound when
    parts are missing (cds/knowledge/hepatic.py)."""
    if patient.child_pugh_class:
        return ChildPugh(None, patient.child_pugh_class), ()
    bili, alb, inr = latest.get("bilirubin"), latest.get("albumin"), latest.get("inr")
    if bili is None and alb is None and inr is None:
        return None, ("bilirubin", "albumin", "INR")  # no liver labs: nothing to say
    ascites = patient.ascites or kb.child_pugh_part(patient.conditions, "ascites")
    enceph = patient.encephalopathy or kb.child_pugh_part(patient.conditions, "encephalopathy")
    return child_pugh_bound(bili.value if bili else None, alb.value if alb else None,
                            inr.value if inr else None, ascites, enceph)


def build_facts(kb: Knowledge, patient: Patient, as_of: date,
                extra_orders: Iterable[MedicationOrder] = ()) -> Facts:
    """Everything the rules read about one patient on the evaluation date `as_of` (decided by
    the caller: a renderer reads the clock once per request or run)."""
    day = as_of
    # Values no patient can have are taken out first, each said as a data-quality finding.
    screened = screen(kb.plausibility, patient, (*patient.medications, *extra_orders), day)
    age = screened.age
    female = patient.sex == "female"
    current: list[NormalizedMed] = []
    history: list[NormalizedMed] = []
    unrecognized: list[NormalizedMed] = []
    reasons: dict[str, tuple[tuple[str | None, str | None], ...]] = {}
    orders: dict[str, MedicationOrder] = {}  # those with a dose problem, to name its field
    for order in screened.orders:
        med = normalize(kb, order)
        if med.daily_reason:
            orders[order.id] = order
        if order.reasons:
            reasons[order.id] = tuple((c.code, c.display) for c in order.reasons)
        if not med.recognized:
            if med.current:
                unrecognized.append(med)
            continue
        (current if med.current else history).append(med)
    _dispensed_on_hand(current, history, day)
    # A canonical order: the same list in another order gives the same alerts, word for word.
    for meds in (current, history, unrecognized):
        meds.sort(key=_med_order)
    closure = kb.classes.closure
    med_classes = tuple(closure(m.ingredients) for m in current)
    # Each ingredient scores once (IR + ER of one drug are one drug), whatever the list order.
    scores = kb.anticholinergic.scores
    by_ing: dict[str, list[str]] = {}
    for m in current:
        for ing in m.ingredients:
            if ing in scores:
                by_ing.setdefault(ing, []).append(m.label)
    acb_items = [(", ".join(sorted(set(labels))), ing, scores[ing])
                 for ing, labels in sorted(by_ing.items())]
    cns = tuple(i for i, cls in enumerate(med_classes) if CNS_ACTIVE_CLASS in cls)
    latest = screened.latest
    hepatic, hepatic_missing = _hepatic(kb, patient, latest)
    weight = latest.get("weight")
    height = latest.get("height")
    # Each opioid is assessed once: today's MME and the history's MME by day come from it.
    # The history's assessment keeps the indications too (OUD treatment counts neither now
    # nor then, else steady methadone would read as a taper).
    opioid_idx = tuple(i for i, m in enumerate(current) if kb.is_opioid(m.ingredients))
    opioid_meds = tuple(current[i] for i in opioid_idx)
    now = [assess(kb, m, reasons.get(m.order_id, ())) for m in opioid_meds]
    past = [m for m in history if kb.is_opioid(m.ingredients)]
    then = [assess(kb, m, reasons.get(m.order_id, ())) for m in past]
    mme = total(kb, now)
    exposure = Exposure.build(day, [(m, sum(i.mme for i in items)) for m, (items, _) in
                                    zip((*opioid_meds, *past), (*now, *then), strict=True)])
    return Facts(
        patient_id=patient.id, as_of=day, age=age, sex=patient.sex,
        weight_kg=weight.value if weight else None, height_cm=height.value if height else None,
        meds=tuple(current), history=tuple(history), unrecognized=tuple(unrecognized),
        renal=_renal(patient, latest, age, female, screened.rejected), hepatic=hepatic,
        hepatic_missing=hepatic_missing,
        mme=mme,
        acb_total=sum(s for _, _, s in acb_items), acb_items=tuple(acb_items), cns_active=cns,
        conditions=tuple((c.code, c.text) for c in screened.conditions if c.status == "active"),
        med_classes=med_classes, present=frozenset().union(*med_classes),
        opioids=opioid_idx, opioid_meds=opioid_meds, indications=reasons, exposure=exposure,
        issues=(*screened.issues, *record_issues(current, unrecognized, mme, orders)),
        condition_records=tuple(screened.conditions), events=tuple(patient.events),
        unavailable=frozenset(patient.unavailable),
    )


def _dispensed_on_hand(current: list[NormalizedMed], history: list[NormalizedMed],
                       day: date) -> None:
    """A dispense whose days' supply covers the evaluation date is a current medication when
    no active order for the same drug is on file: claims-only panels (a health plan's
    members) have dispenses and no orders. Of several such dispenses of one drug, the latest
    counts (an early refill is not a second drug)."""
    ordered = {tuple(sorted(m.ingredients)) for m in current}
    on_hand: dict[tuple[str, ...], NormalizedMed] = {}
    for m in history:
        if m.source != "dispense" or m.dispensed is None or not m.supply_days:
            continue
        if not m.dispensed <= day < m.dispensed + timedelta(days=m.supply_days):
            continue
        key = tuple(sorted(m.ingredients))
        if key in ordered:
            continue
        prev = on_hand.get(key)
        if prev is None or (m.dispensed, m.order_id) > (prev.dispensed or date.min, prev.order_id):
            on_hand[key] = m
    for m in on_hand.values():
        history.remove(m)
        current.append(replace(m, current=True))


def _med_order(m: NormalizedMed) -> tuple[str, str]:
    return (m.label.lower(), m.order_id)
