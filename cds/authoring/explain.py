"""Why a rule did or did not fire for a patient: each condition, its value, its verdict.

The conditions are the rule kind's own (cds/engine/kinds/); the `when:` expression is traced
step by step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cds.engine.compile import CompiledPacks
from cds.engine.evaluator import Engine
from cds.engine.kinds import Condition, kind_of
from cds.engine.scope import record
from cds.errors import PackError, PackErrors
from cds.knowledge.facts import Facts
from cds.rules.expression import compile_expression
from cds.rules.loader import Pack


@dataclass(frozen=True)
class Explanation:
    rule: str
    pack: str
    fired: bool
    conditions: list[Condition]
    alert_summary: str | None


def find_rule(packs: list[Pack], ref: str) -> tuple[Pack, Any]:
    pack_id, _, rule_id = ref.rpartition("/")
    for p in packs:
        if pack_id and p.id != pack_id:
            continue
        r = p.rule(rule_id)
        if r is not None:
            return p, r
    known = ", ".join(f"{p.id}/{r.rule.id}" for p in packs for r in p.rules)
    raise PackErrors([PackError(f"no rule {ref!r} in the loaded packs", field="--rule",
                                suggestion=next((k for k in known.split(", ") if ref in k),
                                                None))])


def conditions(compiled: CompiledPacks, rule: Any, facts: Facts) -> list[Condition]:
    out = []
    scope = compiled.out_of_scope(facts)
    for pack in compiled.packs:
        if pack.meta.scope is not None:
            why = scope.get(pack.ref)
            out.append(Condition(f"in the scope of {pack.ref}", why and f"no: {why}" or "yes",
                                 why is None))
    out += kind_of(rule).explain(rule, facts, compiled.index)
    for u in rule.unless:
        found = record(u, facts, compiled.kb)
        value = (f"{found.kind} {found.label}" + (f" on {found.date}" if found.date else "")
                 if found else "not checked: no such data was available"
                 if facts.unavailable.intersection(u.kinds) else "none")
        out.append(Condition(f"no {u.label} within {u.within_days} days", value,
                             found is None and not facts.unavailable.intersection(u.kinds)))
    if rule.when:
        ok, trace = compile_expression(rule.when).explain(facts)
        out += [Condition(text, value, None) for text, value in trace]
        out.append(Condition(f"when: {rule.when}", ok, ok))
    return out


def explain(engine: Engine, facts: Facts, ref: str) -> Explanation:
    pack, rule = find_rule(list(engine.packs), ref)
    compiled = CompiledPacks(engine.kb, [pack])
    findings = [f for f in compiled.match(facts) if f.rule.rule.id == rule.id
                and pack.ref not in compiled.out_of_scope(facts)]
    alerts = [a for a in engine.alerts(facts) if a.rule == f"{pack.id}/{rule.id}"
              or f"{pack.id}/{rule.id}" in a.also]
    return Explanation(f"{pack.id}/{rule.id}", pack.ref, bool(findings),
                       conditions(compiled, rule, facts),
                       alerts[0].summary if alerts else None)
