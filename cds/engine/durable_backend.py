"""The durable-rules (Rete) backend: the same findings as `CompiledPacks.match`, with the joins
of interaction and burden rules run by durable-rules' C core.

Selected with `Engine(packs, backend="durable")`; the default indexed evaluator stays the
reference (docs/decisions/durable-rules.md has the measurements behind that decision).

What runs where
---------------
Per patient, one batch of facts is asserted into each of the matcher's rulesets:

* one ``ing`` fact per (current medication, ingredient): ``{med, pos, ing, cls}`` where ``cls`` is
  the ingredient with every class it belongs to (the class graph's ancestors);
* for packs with combination rules, the same facts again as ``slot`` facts, one copy per
  position of the widest combination (``slot`` 0, 1, ...), because durable-rules never binds one
  fact to two positions of a rule while a combination may count one drug for two of its parts;
* one ``patient`` fact carrying the anticholinergic burden total.

Rules compiled into durable rules (the Rete network does the matching and the joins):

* interaction: one durable rule per (a, b) reference pair of the rule, joining two ``ing``
  facts whose ``cls`` hold a and b. Which of the join's results becomes the finding (the first
  ingredient pair in medication order, the side orientation, the specificity of the first
  reference pair) is then decided in Python exactly as the indexed table decides it; only for a
  symmetric rule whose two orientations tie on the same ingredient pair is the compiled pair
  table consulted, so both backends agree;
* burden ``combination``: one durable rule joining one ``slot`` fact per part;
* burden ``cns-count``: one durable rule per counted class (membership; counted in Python);
* burden ``anticholinergic``: one durable rule on the ``patient`` fact (``acb >= min``).

Which rules are joined is asked of their kind (`_PLANNERS`, keyed by rule type: interaction
and burden); the findings are built by the same public builders the kinds use. Every other
rule (renal and hepatic dose bands, MME tiers, renal monitoring, escalation, expressions) is
matched by its kind after the durable stage, through `CompiledPacks.match_drugs` and
`match_patient_wide`; every rule's ``when`` expression is evaluated in Python, as in the
indexed evaluator.

durable-rules 2.0.28 problems this module works around (each reproduced on this machine;
docs/decisions/durable-rules.md has the experiments):

* its C core is not safe to share between threads, and the stock ``Host`` starts dispatcher
  and timer threads that call into the C core on their own: concurrent callers crash the
  process (SIGSEGV). Here: one host per process, created lazily, without those threads
  (`_QuietHost`), every call into it under one module lock, the host and lock recreated in a
  forked child (``os.register_at_fork``) or after unpickling in another process;
* joins with an inequality (``$neq``/``$lt``/``$gt`` between two facts) read freed or
  uninitialised memory (valgrind: invalid reads in ``reduceExpressionSequence``) and crash
  when called off the main thread. Here: no inequality joins; two facts of one medication or
  one ingredient are told apart in Python;
* ``delete_state`` on a session in which no action has run crashes the process. Here: every
  ruleset has a sentinel rule on the ``patient`` fact, so an action always runs;
* at most 1,024 live sessions per ruleset (the 1,025th raises ``MemoryError``). Here: each
  patient is its own session, deleted right after its actions ran;
* a ruleset cannot be unregistered and a name cannot be registered twice. Here: ruleset names
  carry the pack ref, its digest and a process-wide counter, so two engines never collide;
  the memory of a dropped engine's rulesets is not returned (about 55 KB per ruleset);
* a batch with a fact no rule matches raises ``MessageNotHandledException`` and leaves the
  matched actions to the host's timer thread (run about 0.1 s later, on another thread).
  Here: every ruleset has a catch-all rule (``ing``/``slot`` joined with a fact type never
  posted), so every fact is matched and all actions run synchronously inside the call;
* a ruleset of 256 or more rules hangs in creation or in its first assertion, and a fact
  that reaches more than 64 rules fails the whole assertion (error 303). Here: each pack is
  split, first fit, into rulesets of at most `MAX_RULES_PER_RULESET` rules in which no
  ingredient (per slot) and no patient fact reaches more than `MAX_RULES_PER_FACT` rules.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from durable import engine as durable_engine  # type: ignore[import-untyped]

from cds.engine.alerts import CompiledRule, Finding
from cds.engine.compile import CompiledPacks
from cds.engine.kinds.burden import anticholinergic_finding, cns_count_finding, combination_finding
from cds.engine.kinds.interaction import pair_finding, pair_specificities
from cds.errors import CdsError
from cds.knowledge.facts import Facts

#: Rules per durable ruleset, the sentinel and catch-all rules included (durable-rules 2.0.28
#: hangs at 256).
MAX_RULES_PER_RULESET = 200
_FIXED_RULES = 3  # sentinel, catch-all for ``ing``, catch-all for ``slot``
#: Rules one fact may reach (durable-rules 2.0.28 fails the assertion with error 303 at 65).
MAX_RULES_PER_FACT = 56


class _QuietHost(durable_engine.Host):  # type: ignore[misc]
    """A durable-rules host without its dispatcher and timer threads.

    Those threads call into the C core concurrently with the caller; nothing here needs
    them, because every action runs synchronously inside the assertion that triggered it.
    """

    def _run(self) -> None:
        return None


# -- the one host of this process ----------------------------------------------------------

_LOCK = threading.RLock()
_HOST: _QuietHost | None = None
_HOST_PID: int | None = None
_GENERATION = 0  # bumped with every new host; matchers re-register when it changes
_RULESET_SEQ = itertools.count(1)
_SESSION_SEQ = itertools.count(1)


def _after_fork_in_child() -> None:
    """A forked child gets a fresh lock (the parent's may have been held) and, lazily, a new
    host: the parent's threads and C state are not the child's to use."""
    global _LOCK, _HOST, _HOST_PID
    _LOCK = threading.RLock()
    _HOST = None
    _HOST_PID = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _host() -> tuple[_QuietHost, int]:
    """The process's host, created on first use (call with `_LOCK` held)."""
    global _HOST, _HOST_PID, _GENERATION
    pid = os.getpid()
    if _HOST is None or pid != _HOST_PID:
        _HOST = _QuietHost()
        _HOST_PID = pid
        _GENERATION += 1
    return _HOST, _GENERATION


def host_lock() -> threading.RLock:
    """The lock every call into durable-rules holds (for tests and diagnostics)."""
    return _LOCK


# -- the plan: which durable rules a compiled pack set becomes ----------------------------

@dataclass(frozen=True, slots=True)
class _Pattern:
    alias: str
    fact: str  # "ing" | "slot" | "patient"
    ref: str | None = None  # class or ingredient the fact's `cls` must hold
    slot: int | None = None
    acb_min: float | None = None


@dataclass(frozen=True, slots=True)
class _DRule:
    tag: tuple[Any, ...]  # ("x", rule index, pair index) | ("combo" | "cns" | "acb", rule index)
    patterns: tuple[_Pattern, ...]


@dataclass(frozen=True, slots=True)
class _RulesetPlan:
    label: str  # pack ref and digest
    rules: tuple[_DRule, ...]
    slots: int  # slot facts to post per ingredient (widest combination)


def _pattern_json(p: _Pattern) -> dict[str, Any]:
    conds: list[dict[str, Any]] = [{"t": p.fact}]
    if p.slot is not None:
        conds.append({"slot": p.slot})
    if p.ref is not None:
        conds.append({"$iany": {"cls": {"$i": p.ref}}})
    if p.acb_min is not None:
        conds.append({"$gte": {"acb": p.acb_min}})
    return {p.alias: {"$and": conds} if len(conds) > 1 else conds[0]}


class _Collector:
    """Where the actions of the patient being evaluated put their matches."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out: list[tuple[tuple[Any, ...], dict[str, Any]]] | None = None


def _collect(collector: _Collector, tag: tuple[Any, ...]) -> Callable[[Any], None]:
    # durable-rules tells sync from async actions by the argument count: exactly one here
    def action(c: Any) -> None:
        out = collector.out
        if out is not None:
            out.append((tag, c._m))

    return action


def _noop(c: Any) -> None:
    return None


class DurableMatcher:
    """`match(facts) -> list[Finding]` with the joins in durable-rules; see the module doc."""

    def __init__(self, compiled: CompiledPacks) -> None:
        self.compiled = compiled
        self._prepare()

    # -- pickling: the plan is rebuilt, the durable rulesets re-registered lazily ---------

    def __getstate__(self) -> dict[str, Any]:
        return {"compiled": self.compiled}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.compiled = state["compiled"]
        self._prepare()

    def _prepare(self) -> None:
        self._index = {id(cr): n for n, cr in enumerate(self.compiled.rules)}
        self._pairs_spec: dict[int, list[float]] = {}
        plans: list[_RulesetPlan] = []
        by_pack: dict[str, list[_DRule]] = defaultdict(list)
        labels: dict[str, str] = {}
        #: rule ref -> rule index, of the patient-wide rules the joins match
        self._joined: dict[str, int] = {}
        for n, cr in enumerate(self.compiled.rules):
            planner = _PLANNERS.get(cr.rule.type)
            if planner is None:
                continue  # matched by its kind after the durable stage
            key = cr.pack_ref + "\0" + cr.pack_digest
            labels[key] = f"{cr.pack_ref}:{cr.pack_digest[:12]}"
            by_pack[key] += planner(self, n, cr)
        for key, drules in by_pack.items():
            for chunk in self._partition(drules):
                slots = max((len(d.patterns) for d in chunk if d.tag[0] == "combo"), default=0)
                plans.append(_RulesetPlan(labels[key], tuple(chunk), slots))
        self._plans = tuple(plans)
        self._cls: dict[str, list[str]] = {}
        self._collector = _Collector()
        self._names: list[tuple[str, int]] = []
        self._generation = -1

    def _partition(self, drules: list[_DRule]) -> list[list[_DRule]]:
        """Split one pack's durable rules into rulesets within durable-rules' limits: at most
        `MAX_RULES_PER_RULESET` rules, and no fact reaching more than `MAX_RULES_PER_FACT`
        rule positions (counted per ingredient, slot and the patient fact), first fit."""
        g = self.compiled.kb.classes
        budget = MAX_RULES_PER_FACT - 1  # the catch-all or sentinel rule takes one
        chunks: list[tuple[list[_DRule], dict[tuple[str, int], int]]] = []
        for d in drules:
            need: dict[tuple[str, int], int] = defaultdict(int)
            for p in d.patterns:
                if p.fact == "patient":
                    need[("patient", -1)] += 1
                    continue
                slot = p.slot if p.slot is not None else -1
                for ing in g.members(p.ref) if p.ref is not None else ():
                    need[(ing, slot)] += 1
            for rules, load in chunks:
                if len(rules) < MAX_RULES_PER_RULESET - _FIXED_RULES and all(
                        load.get(k, 0) + v <= budget for k, v in need.items()):
                    break
            else:
                rules, load = [], {}
                chunks.append((rules, load))
            rules.append(d)
            for k, v in need.items():
                load[k] = load.get(k, 0) + v
        return [rules for rules, _ in chunks]

    def _register(self, host: _QuietHost, generation: int) -> None:
        """Register this matcher's rulesets in the host (call with `_LOCK` held)."""
        names = []
        seq = next(_RULESET_SEQ)
        for n, plan in enumerate(self._plans):
            definition: dict[str, Any] = {
                # an action always runs: deleting a session without one crashes the C core
                "sentinel": {"all": [{"s": {"t": "patient"}}], "run": _noop},
                # every fact is matched, so no batch is left to the timer thread
                "catch_ing": {"all": [{"c0": {"t": "ing"}}, {"c1": {"t": "-never-"}}], "run": _noop},
                "catch_slot": {"all": [{"c0": {"t": "slot"}}, {"c1": {"t": "-never-"}}], "run": _noop},
            }
            for i, d in enumerate(plan.rules):
                pats: list[dict[str, Any]] = [_pattern_json(p) for p in d.patterns]
                definition[f"r{i}"] = {"all": pats, "run": _collect(self._collector, d.tag)}
            name = f"cds:{plan.label}:{seq}:{n}"
            host.register_rulesets({name: definition})
            names.append((name, plan.slots))
        self._names = names
        self._generation = generation

    @property
    def ruleset_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self._names)

    # -- matching --------------------------------------------------------------------------

    def _classes(self, ing: str) -> list[str]:
        cls = self._cls.get(ing)
        if cls is None:
            cls = sorted({ing, *self.compiled.kb.classes.ancestors(ing)})
            self._cls[ing] = cls
        return cls

    def _durable(self, facts: Facts) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """Assert the patient's facts into every ruleset; the matches the actions collected."""
        if not self._plans:
            return []
        sid = f"p{next(_SESSION_SEQ)}"
        ings: list[dict[str, Any]] = []
        for i, med in enumerate(facts.meds):
            for pos, ing in enumerate(med.ingredients):
                ings.append({"sid": sid, "t": "ing", "med": i, "pos": pos, "ing": ing,
                             "cls": self._classes(ing)})
        patient = {"sid": sid, "t": "patient", "acb": facts.acb_total}
        batches: dict[int, list[dict[str, Any]]] = {}
        records: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        with _LOCK:
            host, generation = _host()
            if generation != self._generation:
                self._register(host, generation)
            self._collector.out = records
            try:
                for name, slots in self._names:
                    batch = batches.get(slots)
                    if batch is None:
                        batch = [*ings, *({**f, "t": "slot", "slot": s}
                                          for s in range(slots) for f in ings), patient]
                        batches[slots] = batch
                    try:
                        host.assert_facts(name, batch)
                    except durable_engine.MessageNotHandledException as e:  # pragma: no cover
                        raise CdsError(f"durable-rules left a fact of {name} unmatched; "
                                           "the catch-all rule should prevent this") from e
                    host.delete_state(name, sid)
            finally:
                self._collector.out = None
        return records

    def match(self, facts: Facts) -> list[Finding]:
        records = self._durable(facts)
        pair_hits: dict[tuple[int, int], dict[str, list[tuple[int, int, int, bool, int]]]] = {}
        members: dict[int, list[set[int]]] = {}
        fired: set[int] = set()
        for tag, msg in records:
            kind = tag[0]
            if kind == "x":
                a, b = msg["a"], msg["b"]
                if a["med"] == b["med"] or a["ing"] == b["ing"]:
                    continue
                n, k = tag[1], tag[2]
                if a["med"] < b["med"]:
                    i, j, pi, pj, a_first = a["med"], b["med"], a["pos"], b["pos"], True
                else:
                    i, j, pi, pj, a_first = b["med"], a["med"], b["pos"], a["pos"], False
                ref = self.compiled.rules[n].ref
                pair_hits.setdefault((i, j), {}).setdefault(ref, []).append((pi, pj, n, a_first, k))
            elif kind == "combo":
                n = tag[1]
                groups = members.setdefault(n, [set() for _ in msg])
                for s in range(len(groups)):
                    groups[s].add(msg[f"p{s}"]["med"])
            elif kind == "cns":
                members.setdefault(tag[1], [set()])[0].add(msg["p0"]["med"])
            else:
                fired.add(tag[1])
        out: list[Finding] = []
        for i, j in sorted(pair_hits):
            for cands in pair_hits[(i, j)].values():
                hit = self._interaction(facts, i, j, cands)
                if hit is not None:
                    out.append(hit)
        self.compiled.match_drugs(facts, out)
        rules = self.compiled.rules

        def supplier(n: int) -> Callable[[], Finding | None]:
            return lambda: self._burden(facts, rules[n], members, fired)

        self.compiled.match_patient_wide(facts, out, {ref: supplier(n)
                                                      for ref, n in self._joined.items()})
        return out

    def _interaction(self, facts: Facts, i: int, j: int,
                     cands: list[tuple[int, int, int, bool, int]]) -> Finding | None:
        """The finding the indexed table yields for medications i < j and one rule ref.

        The table is scanned ingredient pair by ingredient pair (medication order); for the
        first pair with a match, the rule's entry listed first wins: the orientation whose
        first (a, b) reference pair comes first in the rule, its specificity with it.
        """
        first = min((pi, pj) for pi, pj, _, _, _ in cands)
        at = [cand for cand in cands if (cand[0], cand[1]) == first]
        n = min(cand[2] for cand in at)
        cr = self.compiled.rules[n]
        k_a = min((cand[4] for cand in at if cand[2] == n and cand[3]), default=None)
        k_b = min((cand[4] for cand in at if cand[2] == n and not cand[3]), default=None)
        sides: set[bool]
        if k_b is None or (k_a is not None and k_a < k_b):
            sides, k = {True}, k_a
        elif k_a is None or k_b < k_a:
            sides, k = {False}, k_b
        else:  # a symmetric rule (QT + QT): pair_finding orients it by name
            sides, k = {True, False}, k_a
        assert k is not None
        if not self.compiled.passes(cr, facts):
            return None
        return pair_finding(cr, facts.meds[i], facts.meds[j], sides, self._pairs_spec[n][k])

    def _burden(self, facts: Facts, cr: CompiledRule,
                members: dict[int, list[set[int]]], fired: set[int]) -> Finding | None:
        r = cr.rule
        n = self._index[id(cr)]
        if r.kind == "cns-count":
            found = members.get(n, [set()])[0]
            return cns_count_finding(cr, r, [facts.meds[i] for i in sorted(found)])
        if r.kind == "combination":
            if n not in members:
                return None  # no join result: some part has no drug
            groups = [[facts.meds[i] for i in sorted(g)] for g in members[n]]
            return combination_finding(self.compiled.kb, cr, r, groups)
        # anticholinergic: the durable rule fired when the total reached the rule's minimum
        if n not in fired:
            return None
        return anticholinergic_finding(cr, r, facts)


def _plan_interaction(m: DurableMatcher, n: int, cr: CompiledRule) -> list[_DRule]:
    """One durable rule per (a, b) reference pair, joining two ``ing`` facts."""
    r = cr.rule
    m._pairs_spec[n] = pair_specificities(r, m.compiled.index)
    return [_DRule(("x", n, k), (_Pattern("a", "ing", ra), _Pattern("b", "ing", rb)))
            for k, (ra, rb) in enumerate(itertools.product(r.a, r.b))]


def _plan_burden(m: DurableMatcher, n: int, cr: CompiledRule) -> list[_DRule]:
    """A combination joins one ``slot`` fact per part; a count finds the class's members; the
    anticholinergic total is a test on the ``patient`` fact."""
    r = cr.rule
    m._joined[cr.ref] = n
    if r.kind == "combination":
        return [_DRule(("combo", n), tuple(
            _Pattern(f"p{s}", "slot", ref, slot=s) for s, ref in enumerate(r.all)))]
    if r.kind == "cns-count":
        return [_DRule(("cns", n), (_Pattern("p0", "ing", r.counts),))]
    return [_DRule(("acb", n), (_Pattern("p0", "patient", acb_min=r.min),))]


#: The kinds whose rules durable-rules joins, by rule type; the others need no join.
_PLANNERS: dict[str, Callable[[DurableMatcher, int, CompiledRule], list[_DRule]]] = {
    "interaction": _plan_interaction,
    "burden": _plan_burden,
}
