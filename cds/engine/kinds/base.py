"""What every rule kind provides, the index kinds file their rules into, and shared helpers.

A kind is the one home of a rule type's behaviour: how its rules are indexed, how they match a
patient's facts, how `cds explain` states their conditions, and which placeholders their
templates may use. The compiler, the explainer, the linter and the durable backend ask the
kind; none of them tests a rule's type.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cds.engine.alerts import CompiledRule, Finding
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.store import Knowledge

#: One entry of the interaction pair table: (rule, the first medication is side a, specificity).
PairEntry = tuple[CompiledRule, bool, float]


@dataclass(frozen=True, slots=True)
class Condition:
    """One line of `cds explain`: a condition, the patient's value, its verdict."""

    text: str
    value: Any
    ok: bool | None  # None: informational


@dataclass
class Index:
    """The compiled packs' look-up tables, so evaluation cost follows the patient's
    medications, not the packs' size."""

    kb: Knowledge
    #: (ingredient x, ingredient y) -> entries of the rules matching that ordered pair
    pairs: dict[tuple[str, str], list[PairEntry]] = field(default_factory=lambda: defaultdict(list))
    #: ingredient -> rules about a medication containing it
    by_ingredient: dict[str, list[CompiledRule]] = field(default_factory=lambda: defaultdict(list))
    #: rules about the whole list, asked once per patient
    patient_wide: list[CompiledRule] = field(default_factory=list)
    #: (pack id, rule type) -> every ingredient the pack's rules of that type name
    pack_drugs: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def members(self, refs: list[str]) -> frozenset[str]:
        """The ingredients a list of drug and class names covers."""
        g = self.kb.classes
        return frozenset().union(*(g.members(r) for r in refs))

    def add_by_ingredient(self, cr: CompiledRule, refs: list[str]) -> frozenset[str]:
        ings = self.members(refs)
        for i in ings:
            self.by_ingredient[i].append(cr)
        key = (cr.pack_id, cr.rule.type)
        self.pack_drugs[key] = self.pack_drugs.get(key, frozenset()) | ings
        return ings

    def freeze(self) -> None:
        """Plain dicts once built (no default factory to create entries on look-up), and each
        pair's entries deduplicated (a rule listing overlapping classes on one side)."""
        pairs: dict[tuple[str, str], list[PairEntry]] = {}
        for k, entries in self.pairs.items():
            seen: dict[tuple[str, bool], PairEntry] = {}
            for e in entries:
                seen.setdefault((e[0].ref, e[1]), e)
            pairs[k] = list(seen.values())
        self.pairs = pairs
        self.by_ingredient = dict(self.by_ingredient)


class RuleKind:
    """The behaviour of one rule type. The defaults describe a patient-wide rule; a kind
    overrides what differs."""

    #: The rule type (the schema's `type:` value) this kind serves.
    type: ClassVar[str]
    #: Placeholders the kind's findings fill in `summary` and `rationale` templates.
    placeholders: ClassVar[frozenset[str]] = frozenset()
    #: Does the rationale state the patient's values of the rule's family (MME arithmetic,
    #: kidney function...)? Interactions state their mechanism instead.
    states_patient_values: ClassVar[bool] = True

    def index(self, cr: CompiledRule, index: Index) -> None:
        index.patient_wide.append(cr)

    def match(self, cr: CompiledRule, facts: Facts, index: Index) -> Finding | None:
        """A patient-wide rule's finding, if any (before the rule's `when`)."""
        return None

    def match_meds(self, cr: CompiledRule, meds: list[NormalizedMed], facts: Facts,
                   index: Index) -> list[Finding]:
        """An ingredient-indexed rule's findings for the medications that reached it."""
        return []

    def match_pair(self, cr: CompiledRule, mi: NormalizedMed, mj: NormalizedMed,
                   sides: set[bool], spec: float) -> Finding | None:
        """A pair-indexed rule's finding for two medications that reached it through the pair
        table (`sides`: whether mi can be the rule's first side)."""
        return None

    def match_pairs(self, cr: CompiledRule,
                    items: list[tuple[NormalizedMed, NormalizedMed, set[bool], float]]
                    ) -> Finding | None:
        """One finding for every pair the rule matched (each: mi, mj, sides, specificity)."""
        return None

    def explain(self, rule: Any, facts: Facts, index: Index) -> list[Condition]:
        return []

    def dose_limit(self, rule: Any) -> Any:
        """The rule's maximum daily dose (a reduce-dose suggestion's target), if it has one."""
        return None

    def tail(self, rule: Any) -> list[str]:
        """Sentences the rationale always carries before the evidence status and sources."""
        return []

    def identity(self, f: Finding) -> tuple[str, str | None]:
        """(subject, band) of a finding, for its stable alert key (cds.engine.alerts.alert_key):
        what the finding is about beyond its rule (the drug of a per-medication rule) and the
        dose or function band it is in. A patient-wide rule is one finding per patient: ("",
        None)."""
        return "", None


class DrugDoseKind(RuleKind):
    """A rule about named drugs in a patient state (a kidney function band, a Child-Pugh
    class), with an optional maximum daily dose: one finding per medication, only when its
    daily dose is over the maximum if the rule sets one (renal, hepatic)."""

    def index(self, cr: CompiledRule, index: Index) -> None:
        index.add_by_ingredient(cr, cr.rule.drugs)

    def dose_limit(self, rule: Any) -> Any:
        return rule.max_daily_dose

    def per_med(self, cr: CompiledRule, meds: list[NormalizedMed],
                state: dict[str, Any]) -> list[Finding]:
        """The findings of the medications, `state` (the patient's values) in each."""
        limit = cr.rule.max_daily_dose
        # a rule that knows the dose is more specific than one that does not: when rules of
        # two packs report one finding (a label dose band and a Beers row), it is kept
        spec = 1.5 if limit is not None else 1.0
        out = []
        for med in meds:
            values: dict[str, Any] = {"drug": med.label, **state}
            if limit is not None and not dose_over_limit(limit, med, values):
                continue
            out.append(Finding(cr, (med,), values, spec, (self.type, med.order_id, cr.ref)))
        return out

    def identity(self, f: Finding) -> tuple[str, str | None]:
        return "+".join(sorted(f.meds[0].ingredients)) if f.meds else "", self.band(f.rule.rule)

    def band(self, rule: Any) -> str | None:
        """The patient state band the rule fires in (kidney function, Child-Pugh class)."""
        return None

    def explain_drug(self, rule: Any, facts: Facts, state: Condition) -> list[Condition]:
        """Drug present, the patient's state, and the doses when the rule sets a maximum."""
        out = [present(rule.drugs, facts), state]
        if rule.max_daily_dose is not None:
            out.append(dose_condition(rule, facts))
        return out


# -- helpers several kinds share -------------------------------------------------------------

def specificity(kb: Knowledge, ref: str) -> float:
    """An ingredient is as specific as it gets; a class less so the more members it has."""
    if kb.classes.kind(ref) == "ingredient":
        return 1.0
    return 1.0 / (1 + len(kb.classes.members(ref)))


def meds_named(facts: Facts, ref: str) -> list[NormalizedMed]:
    """Current medications whose ingredient is, or belongs to, `ref`."""
    return [facts.meds[i] for i in facts.meds_with(ref)]


def labels_named(facts: Facts, refs: list[str]) -> list[str]:
    return [m.label for ref in refs for m in meds_named(facts, ref)]


def present(refs: list[str], facts: Facts) -> Condition:
    """The explain line "a medication in <refs>"."""
    found = labels_named(facts, refs)
    return Condition(f"a medication in {', '.join(refs)}", found or "none", bool(found))


def dose_over_limit(limit: Any, med: NormalizedMed, values: dict[str, Any]) -> bool:
    """Does the daily dose exceed the rule's maximum (an unknown dose counts as over)?
    Records both in `values` for the rationale."""
    values["max_dose"] = f"{limit.value:g} {limit.unit}/day"
    for _, amount, unit in med.daily:
        if unit == limit.unit:
            values["daily_dose"] = f"{amount:g} {unit}/day"
            return bool(amount > limit.value + 1e-9)
    values["daily_dose"] = "unknown"
    return True


def dose_condition(rule: Any, facts: Facts) -> Condition:
    """The explain line for a rule's maximum daily dose: each matching medication's dose."""
    limit = rule.max_daily_dose
    doses = [f"{m.label}: {', '.join(f'{a:g} {u}' for _, a, u in m.daily) or m.daily_reason}"
             for ref in rule.drugs for m in meds_named(facts, ref)]
    return Condition(f"daily dose > {limit.value:g} {limit.unit}", doses or "none", None)


def distinct_ingredient_meds(meds: list[NormalizedMed]) -> list[NormalizedMed]:
    """One medication per ingredient set: IR + ER oxycodone are one drug for counting."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for m in meds:
        k = tuple(sorted(m.ingredients))
        if k not in seen:
            seen.add(k)
            out.append(m)
    return out
