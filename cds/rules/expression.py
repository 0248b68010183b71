"""A small, safe condition language for rules the typed rule kinds do not cover.

Syntax is a subset of Python expressions, parsed with `ast` and compiled into closures: no
`eval`, no attribute access, no subscripts, no lambdas, only the names and functions below.
An unknown value (None: no creatinine, no age) makes every comparison with it false, so a rule
never fires on missing data by accident. See docs/expressions.md.

Names:      age, sex, weight, creatinine, crcl, egfr, mme, acb, cns_count, child_pugh, med_count
Functions:  has(ref), count(ref), daily_dose(ingredient), condition(code_or_text),
            count_present([ref, ...]) (how many of the listed drugs or classes are present)
Operators:  and or not, < <= > >= == != in, + - * /, numbers, 'strings', True False None
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cds.errors import ExpressionError
from cds.knowledge.facts import Facts

__all__ = ["FUNCTIONS", "LIST_FUNCTIONS", "NAMES", "Expression", "ExpressionError", "compile_expression"]

Trace = list[tuple[str, Any]]
Fn = Callable[[Facts, Trace | None], Any]


NAMES: dict[str, Callable[[Facts], Any]] = {
    "age": lambda f: f.age,
    "sex": lambda f: f.sex,
    "weight": lambda f: f.weight_kg,
    "creatinine": lambda f: f.renal.creatinine.value if f.renal.creatinine else None,  # mg/dL
    "crcl": lambda f: f.renal.crcl.value if f.renal.crcl else None,
    "egfr": lambda f: f.renal.egfr,
    "mme": lambda f: f.mme.total,
    "acb": lambda f: f.acb_total,
    "cns_count": lambda f: len(f.cns_active),
    "child_pugh": lambda f: f.hepatic.cls if f.hepatic else None,
    "med_count": lambda f: len(f.meds),
}


def _daily_dose(f: Facts, ingredient: str) -> float:
    total = 0.0
    for m in f.meds:
        d = m.daily_of(ingredient)
        if d is not None and d[1] == "mg":
            total += d[0]
    return total


def _condition(f: Facts, needle: str) -> bool:
    n = needle.lower()
    return any((c and c.lower().startswith(n)) or (t and n in t.lower()) for c, t in f.conditions)


FUNCTIONS: dict[str, tuple[Callable[[Facts, str], Any], bool]] = {
    # name: (implementation, argument must be a known drug or class)
    "has": (lambda f, ref: f.has(ref), True),
    "count": (lambda f, ref: len(f.meds_with(ref)), True),
    "daily_dose": (_daily_dose, True),
    "condition": (_condition, False),
}

def _count_present(f: Facts, refs: tuple[str, ...]) -> int:
    """How many of the listed drugs or classes a current medication is, or belongs to (each
    name counted once, however many medications match it)."""
    return sum(1 for ref in refs if f.has(ref))


#: Functions of one list of drug or class names: `count_present(['a', 'b', ...])`.
LIST_FUNCTIONS: dict[str, Callable[[Facts, tuple[str, ...]], Any]] = {
    "count_present": _count_present,
}


def _quoted_list(node: ast.Call) -> tuple[str, ...] | None:
    """The names of a call's one argument, a list of quoted strings (None otherwise)."""
    if node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.List | ast.Tuple):
        return None
    items = node.args[0].elts
    if not items or not all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                            for e in items):
        return None
    return tuple(e.value for e in items)  # type: ignore[attr-defined]


_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


@dataclass(frozen=True)
class Expression:
    text: str
    fn: Fn
    refs: tuple[str, ...]

    def __call__(self, facts: Facts) -> bool:
        return bool(self.fn(facts, None))

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # closures do not pickle: ship the text and compile again on the other side
        return compile_expression, (self.text,)

    def explain(self, facts: Facts) -> tuple[bool, Trace]:
        trace: Trace = []
        return bool(self.fn(facts, trace)), trace


#: Words an author may mean by a name that is not one: Python's constants.
CONSTANTS = ("True", "False", "None")


def _near(name: str, candidates: list[str]) -> str | None:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not close and name.lower() in {c.lower() for c in candidates}:
        close = [c for c in candidates if c.lower() == name.lower()]
    return close[0] if close else None


def compile_expression(text: str, known: Callable[[str], bool] | None = None) -> Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExpressionError(f"expression syntax error at column {e.offset}: {text!r}") from None
    refs: list[str] = []

    def seg(node: ast.AST) -> str:
        return ast.get_source_segment(text.strip(), node) or ast.dump(node)

    def traced(node: ast.AST, fn: Fn) -> Fn:
        label = seg(node)

        def run(f: Facts, t: Trace | None) -> Any:
            v = fn(f, t)
            if t is not None:
                t.append((label, v))
            return v
        return run

    def build(node: ast.AST) -> Fn:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool
                                                         | type(None)):
            value = node.value
            return lambda f, t: value
        if isinstance(node, ast.List | ast.Tuple):
            items = [build(e) for e in node.elts]
            return lambda f, t: tuple(i(f, t) for i in items)
        if isinstance(node, ast.Name):
            if node.id not in NAMES:
                raise ExpressionError(f"unknown name {node.id!r} (known: {', '.join(NAMES)})",
                                      suggestion=_near(node.id, [*NAMES, *CONSTANTS]))
            getter = NAMES[node.id]
            return traced(node, lambda f, t: getter(f))
        if isinstance(node, ast.BoolOp):
            parts = [build(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda f, t: all(p(f, t) for p in parts)
            return lambda f, t: any(p(f, t) for p in parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = build(node.operand)
            return lambda f, t: not inner(f, t)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = build(node.operand)
            return lambda f, t: None if (v := inner(f, t)) is None else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            op = _BIN[type(node.op)]
            left, right = build(node.left), build(node.right)

            def binop(f: Facts, t: Trace | None) -> Any:
                a, b = left(f, t), right(f, t)
                if a is None or b is None:
                    return None
                try:
                    return op(a, b)
                except (ZeroDivisionError, TypeError):
                    return None
            return binop
        if isinstance(node, ast.Compare):
            first = build(node.left)
            rest = [(type(o), build(c)) for o, c in zip(node.ops, node.comparators, strict=True)]
            for o, _ in rest:
                if o not in _CMP:
                    raise ExpressionError(f"operator not allowed in {seg(node)!r}")

            def compare(f: Facts, t: Trace | None) -> bool:
                a = first(f, t)
                for o, c in rest:
                    b = c(f, t)
                    if a is None or b is None:
                        if o in (ast.Eq, ast.NotEq):
                            if not _CMP[o](a, b):
                                return False
                            a = b
                            continue
                        return False
                    try:
                        if not _CMP[o](a, b):
                            return False
                    except TypeError:
                        return False
                    a = b
                return True
            return traced(node, compare)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name not in FUNCTIONS and name not in LIST_FUNCTIONS:
                raise ExpressionError(
                    f"unknown function {name!r} (known: {', '.join([*FUNCTIONS, *LIST_FUNCTIONS])})",
                    suggestion=_near(name, [*FUNCTIONS, *LIST_FUNCTIONS]))
            if name in LIST_FUNCTIONS:
                names = _quoted_list(node)
                if names is None:
                    raise ExpressionError(f"{name}() takes one list of quoted names, as in "
                                          f"{name}(['amitriptyline', 'oxybutynin'])")
                for arg in names:
                    if known is not None and not known(arg):
                        raise ExpressionError(f"unknown drug or class {arg!r} in {name}()")
                refs.extend(names)
                list_impl = LIST_FUNCTIONS[name]
                return traced(node, lambda f, t: list_impl(f, names))
            impl, needs_ref = FUNCTIONS[name]
            if node.keywords or len(node.args) != 1 or not (
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                raise ExpressionError(f"{name}() takes one quoted name, as in {name}('opioid')")
            arg = node.args[0].value
            if needs_ref:
                if known is not None and not known(arg):
                    raise ExpressionError(f"unknown drug or class {arg!r} in {seg(node)!r}")
                refs.append(arg)
            return traced(node, lambda f, t: impl(f, arg))
        raise ExpressionError(f"not allowed in an expression: {seg(node)!r}")

    return Expression(text, build(tree.body), tuple(refs))
