"""Warnings for a pack that loads: things an author should look at, not errors."""

from __future__ import annotations

import re
import string

from cds.engine.kinds import kind_of
from cds.knowledge.store import Knowledge
from cds.rules.loader import Pack
from cds.rules.models import Action

#: Words that make an action about an order being placed now: it fits only a finding with a
#: draft order (order-select, order-sign), never a panel review or patient-view.
NEW_ORDER_WORDS = re.compile(
    r"\b(?:newly (?:ordered|prescribed)|new (?:[\w-]+ )?(?:order|prescription)s?|draft"
    r"|being (?:signed|ordered|prescribed)|do not start|don't start"
    r"|before (?:prescribing|signing|ordering)|avoid (?:adding|starting))\b", re.IGNORECASE)
#: Naloxone advice: never said to a patient with naloxone on file.
NALOXONE_WORDS = re.compile(r"\bnaloxone\b", re.IGNORECASE)


def action_warnings(action: Action) -> list[str]:
    """What an action's text says about its context that its marking does not: a new order
    without `when: draft` (or a remove-draft suggestion), naloxone without `when: no-naloxone`
    (or an add-naloxone suggestion)."""
    out = []
    needs = action.needs
    if "draft" not in needs and NEW_ORDER_WORDS.search(action.text):
        out.append("speaks of a new order but is said in every context (a panel review, "
                   "patient-view): mark it `when: draft` (or give it a remove-draft "
                   "suggestion), or word it for medications already on file")
    if "no-naloxone" not in needs and NALOXONE_WORDS.search(action.text):
        out.append("advises naloxone but is said when naloxone is on file too: mark it "
                   "`when: no-naloxone` (or give it an add-naloxone suggestion)")
    return out


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
        for i, action in enumerate(r.actions):
            out += [f"{where}: field actions[{i}]: {action.text!r} {w}"
                    for w in action_warnings(action)]
    return out
