"""Compile loaded packs into indexes, so evaluation cost follows the patient's medications,
not the packs' size. Each rule's kind files it (cds/engine/kinds/): interaction rules into an
ingredient-pair table, drug-specific rules into an ingredient index; only patient-wide rules
(burden totals, MME tiers, escalation) are asked of every patient.

The compiled object holds no per-patient state: it is safe to share between threads and
pickles for process pools and Dask workers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import combinations

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.kinds import Index, kind_of
from cds.engine.prioritize import group_key, preference
from cds.engine.rationale import rule_tail
from cds.engine.scope import out_of_scope, unresolved
from cds.knowledge.facts import Facts
from cds.knowledge.normalize import NormalizedMed
from cds.knowledge.store import Knowledge
from cds.rules.expression import compile_expression
from cds.rules.loader import Pack
from cds.rules.models import Rule
from cds.vocabulary import SEVERITY_RANK


def route_role(pack: Pack, rule: Rule) -> str:
    """Which role acts on the rule's alerts: the rule's own, else the pack policy's."""
    if rule.role:
        return str(rule.role)
    policy = pack.meta.escalation
    for route in policy.routes:
        if route.rules and rule.id not in route.rules:
            continue
        if route.family and route.family != rule.family:
            continue
        if route.min_severity and SEVERITY_RANK[rule.severity] > SEVERITY_RANK[route.min_severity]:
            continue
        return route.role
    return policy.default_role


#: How a backend that matched some patient-wide rules itself supplies their findings:
#: rule ref -> the finding (or None) for this patient.
Supplied = Mapping[str, Callable[[], Finding | None]]


class CompiledPacks:
    def __init__(self, kb: Knowledge, packs: list[Pack]) -> None:
        self.kb = kb
        self.packs = packs
        self.rules: list[CompiledRule] = []
        self.index = Index(kb)
        for pack in packs:
            for loaded in pack.rules:
                r = loaded.rule
                kind = kind_of(r)
                cr = CompiledRule(
                    pack_id=pack.id, pack_ref=pack.ref, pack_digest=pack.digest, rule=r,
                    ref=f"{pack.id}/{r.id}", family=r.family, role=route_role(pack, r),
                    when=compile_expression(r.when, known=kb.known) if r.when else None,
                    tail=rule_tail(r, kind), kind=kind)
                self.rules.append(cr)
                kind.index(cr, self.index)
        self.index.freeze()

    # -- matching ---------------------------------------------------------------------------

    def passes(self, cr: CompiledRule, facts: Facts) -> bool:
        """The conditions every kind's findings share: the rule's `when`, and no record on file
        that resolves it (`unless`)."""
        if cr.when is not None and not cr.when(facts):
            return False
        return not cr.rule.unless or unresolved(cr.rule.unless, facts, self.kb)

    def out_of_scope(self, facts: Facts) -> dict[str, str]:
        """Pack ref -> why the patient is outside the pack's scope (packs without a scope
        address everyone)."""
        out = {}
        for pack in self.packs:
            if pack.meta.scope is not None:
                why = out_of_scope(pack.meta.scope, facts, self.kb)
                if why is not None:
                    out[pack.ref] = why
        return out

    def match(self, facts: Facts) -> list[Finding]:
        out: list[Finding] = []
        self.match_pairs(facts, out)
        self.match_drugs(facts, out)
        self.match_patient_wide(facts, out)
        return out

    def match_pairs(self, facts: Facts, out: list[Finding]) -> None:
        """Rules of the pair table, for each pair of current medications. The rules reporting
        one pair finding (a shared `finding` key, or one family) are grouped as they are
        found, and each winning rule's pairs make one finding, so the work after matching
        grows with the rules, not with the square of the medication list."""
        pairs = self.index.pairs
        meds = facts.meds
        passed: dict[str, bool] = {}  # `when` and `unless` are about the patient: once per rule
        won: dict[str, list[tuple[NormalizedMed, NormalizedMed, set[bool], float]]] = {}
        rules: dict[str, CompiledRule] = {}
        also: dict[str, dict[str, CompiledRule]] = {}
        for i, j in combinations(range(len(meds)), 2):
            mi, mj = meds[i], meds[j]
            hits: dict[str, tuple[CompiledRule, set[bool], float]] = {}
            for x in mi.ingredients:
                for y in mj.ingredients:
                    for cr, i_is_a, spec in pairs.get((x, y), ()):
                        hit = hits.setdefault(cr.ref, (cr, set(), spec))
                        hit[1].add(i_is_a)
            if not hits:
                continue
            best: dict[tuple[str, str], tuple[CompiledRule, set[bool], float]] = {}
            lost: dict[tuple[str, str], list[CompiledRule]] = {}
            for cr, sides, spec in hits.values():
                ok = passed.get(cr.ref)
                if ok is None:
                    ok = passed[cr.ref] = self.passes(cr, facts)
                if not ok:
                    continue
                k = group_key(cr)
                held = best.get(k)
                if held is None:
                    best[k] = (cr, sides, spec)
                elif preference(cr, spec) < preference(held[0], held[2]):
                    lost.setdefault(k, []).append(held[0])
                    best[k] = (cr, sides, spec)
                else:
                    lost.setdefault(k, []).append(cr)
            for k, (cr, sides, spec) in best.items():
                won.setdefault(cr.ref, []).append((mi, mj, sides, spec))
                rules[cr.ref] = cr
                for other in lost.get(k, ()):
                    also.setdefault(cr.ref, {})[other.ref] = other
        for ref, items in won.items():
            cr = rules[ref]
            f = (cr.kind.match_pair(cr, *items[0]) if len(items) == 1
                 else cr.kind.match_pairs(cr, items))
            if f is not None:
                f.also = tuple(also.get(ref, {}).values())
                out.append(f)

    def match_drugs(self, facts: Facts, out: list[Finding]) -> None:
        """Ingredient-indexed rules, each asked once with every medication that reached it."""
        seen: dict[str, list[NormalizedMed]] = {}
        rules: dict[str, CompiledRule] = {}
        by_ingredient = self.index.by_ingredient
        for med in facts.meds:
            for ing in med.ingredients:
                for cr in by_ingredient.get(ing, ()):
                    lst = seen.setdefault(cr.ref, [])
                    if med not in lst:
                        lst.append(med)
                    rules[cr.ref] = cr
        for ref in sorted(seen):
            cr = rules[ref]
            for f in cr.kind.match_meds(cr, seen[ref], facts, self.index):
                if self.passes(cr, facts):
                    out.append(f)

    def match_patient_wide(self, facts: Facts, out: list[Finding],
                           supplied: Supplied | None = None) -> None:
        """Rules about the whole list; `supplied` gives the findings of rules another backend
        matched itself (the durable backend's joins)."""
        for cr in self.index.patient_wide:
            make = supplied.get(cr.ref) if supplied else None
            f = make() if make is not None else cr.kind.match(cr, facts, self.index)
            if f is not None and self.passes(cr, facts):
                out.append(f)
