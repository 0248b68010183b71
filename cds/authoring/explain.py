"""Why a rule did or did not fire for a patient: each condition, its value, its verdict.

The conditions are the rule kind's own (cds/engine/kinds/); the `when:` expression is traced
step by step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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


def rule_hints(ref: str, loaded: list[Pack], roots: list[Path], look_in: list[Path]) -> list[str]:
    """Where a rule that is not among the loaded packs may be: another installed version of
    its pack, or a pack folder under `look_in` (the working directory, say) that is not a
    rulesets root yet, holding a pack of that id or a rule of that id."""
    import yaml

    from cds.rules.registry import discover, rulesets_roots

    pack_id, _, rule_id = ref.rpartition("/")
    loaded_paths = {p.path.resolve() for p in loaded}
    hints: list[str] = []
    installed = discover(rulesets_roots(roots))
    for folder in look_in:
        for info in discover([folder]) if folder.is_dir() else []:
            if info.path.resolve() in loaded_paths or info in installed:
                continue
            if pack_id and info.id != pack_id:
                continue
            holds = _holds_rule(info.path, rule_id, yaml)
            if holds or (pack_id and info.id == pack_id):
                root = info.path.parent
                hints.append(f"{info.ref} ({info.path}) " + ("has it" if holds else "is not "
                             "installed") + f": add --rulesets {root} (or --pack {info.path})")
    for info in installed:
        if info.path.resolve() in loaded_paths or (pack_id and info.id != pack_id):
            continue
        if _holds_rule(info.path, rule_id, yaml):
            hints.append(f"{info.ref} has it: add --pack {info.ref}")
    return hints


def _holds_rule(folder: Path, rule_id: str, yaml: Any) -> bool:
    """Does a rule file of the pack folder define this rule id (a quick read, no validation)?"""
    for path in sorted((folder / "rules").glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        rules = doc.get("rules") if isinstance(doc, dict) else None
        if any(isinstance(r, dict) and r.get("id") == rule_id for r in rules or []):
            return True
    return False


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
