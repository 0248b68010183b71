"""The architecture's rules, checked on the source (docs/architecture.md): one way data flows,
no private names across modules, one kind per rule type, placeholders each kind really fills."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from cds.authoring.cases import load_cases
from cds.engine.evaluator import Engine
from cds.engine.kinds import KINDS
from cds.knowledge.store import Knowledge
from cds.rules.loader import load_pack
from cds.rules.models import Rule
from cds.rules.registry import bundled_rulesets

ROOT = Path(__file__).resolve().parent.parent / "cds"

#: Package -> packages it must never import (later stages of the flow, or tools beside it).
FORBIDDEN = {
    "cds.io": ("cds.knowledge", "cds.rules", "cds.engine", "cds.authoring", "cds.service",
               "cds.panel", "cds.cli"),
    "cds.knowledge": ("cds.io", "cds.rules", "cds.engine", "cds.authoring", "cds.service",
                      "cds.panel", "cds.cli"),
    "cds.rules": ("cds.engine", "cds.authoring", "cds.service", "cds.panel", "cds.cli"),
    "cds.engine": ("cds.authoring", "cds.decisions", "cds.service", "cds.panel", "cds.cli"),
    # decisions read the engine's alerts; the renderers (panel, service, CLI) read decisions
    "cds.decisions": ("cds.authoring", "cds.service", "cds.panel", "cds.cli"),
    "cds.authoring": ("cds.service", "cds.panel", "cds.cli"),
}


def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(
            ".__init__")
        out.append((name, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


@pytest.mark.parametrize(("name", "tree"), _modules(), ids=lambda x: x if isinstance(x, str) else "")
def test_data_flows_one_way(name: str, tree: ast.Module) -> None:
    for package, banned in FORBIDDEN.items():
        if name == package or name.startswith(package + "."):
            for module, _ in _imports(tree):
                assert not module.startswith(banned), f"{name} imports {module}"


@pytest.mark.parametrize(("name", "tree"), _modules(), ids=lambda x: x if isinstance(x, str) else "")
def test_no_private_name_crosses_a_module(name: str, tree: ast.Module) -> None:
    for module, names in _imports(tree):
        if module.startswith("cds"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{name} imports {private} from {module}"


def test_every_rule_type_has_a_kind() -> None:
    (union, *_) = get_args(Rule)
    types = {get_args(cls.model_fields["type"].annotation)[0] for cls in get_args(union)}
    assert types == set(KINDS)


def test_findings_fill_only_the_placeholders_their_kind_declares(kb: Knowledge) -> None:
    """Every finding of every shipped case: its values are placeholders its kind declares."""
    seen: set[str] = set()
    for folder in sorted(p.parent for p in bundled_rulesets().glob("*/pack.yaml")):
        engine = Engine([load_pack(folder, kb)], kb)
        for lc in load_cases(folder):
            facts = engine.facts(lc.patient, lc.case.as_of, lc.case.draft_orders)
            for f in engine.compiled.match(facts):
                extra = set(f.values) - f.rule.kind.placeholders
                assert not extra, f"{f.rule.ref}: fills {extra} its kind does not declare"
                seen.add(f.rule.kind.type)
    assert {"interaction", "burden", "mme", "renal", "hepatic", "escalation"} <= seen
