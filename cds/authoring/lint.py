"""Warnings for a pack that loads: things an author should look at, not errors."""

from __future__ import annotations

import string

from cds.engine.kinds import kind_of
from cds.knowledge.store import Knowledge
from cds.rules.loader import Pack


def _fields(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError:
        return {"<malformed braces>"}


def _unconfirmed_within(kb: Knowledge, name: str) -> list[str]:
    """The class itself and every narrower class it covers that is marked unconfirmed."""
    import networkx as nx

    g = kb.classes.graph
    if name not in g or g.nodes[name]["kind"] != "class":
        return []
    nodes = [name, *nx.ancestors(g, name)]
    return sorted(n for n in nodes if g.nodes[n]["kind"] == "class"
                  and g.nodes[n].get("status") == "unconfirmed")


def lint_warnings(pack: Pack, kb: Knowledge) -> list[str]:
    out: list[str] = []
    for loaded in pack.rules:
        r = loaded.rule
        where = f"{loaded.file}:{loaded.line}, rule {r.id}"
        for field, name in r.refs():
            for cls in _unconfirmed_within(kb, name):
                via = "" if cls == name else f" (through its subclass {cls!r})"
                out.append(f"{where}: field {field}: {name!r} reaches class {cls!r}, marked "
                           f"unconfirmed in the knowledge base{via}; confirm it against its "
                           "source before shipping")
        allowed = kind_of(r).placeholders
        for part, text in (("summary", r.summary), ("rationale", r.rationale)):
            unknown = _fields(text) - allowed
            if unknown:
                out.append(f"{where}: field {part}: placeholders {sorted(unknown)} are not "
                           f"filled by {r.type} rules (fillable: {sorted(allowed)})")
    return out
