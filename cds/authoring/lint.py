"""`cds pack lint` beyond loading: errors a pack that loads can still have (a placeholder its
rule type does not fill, cases that name rules or drugs that do not exist), and warnings,
things an author should look at."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from cds.engine.kinds import kind_of
from cds.errors import PackError
from cds.knowledge.store import Knowledge
from cds.rules.loader import Pack, line_of, read_yaml, suggest_name
from cds.rules.messages import near
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


def _fields(template: str) -> set[str] | None:
    """The placeholders of a template (None: its braces do not pair up)."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError:
        return None


def _raw_rules(pack: Pack) -> dict[tuple[str, str], dict[str, Any]]:
    """(file, rule id) -> the rule as read, with its line marks."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for file in sorted({r.file for r in pack.rules}):
        doc = read_yaml(Path(file))
        for raw in doc.get("rules", []) if isinstance(doc, dict) else []:
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                out[(file, raw["id"])] = raw
    return out


def placeholder_errors(pack: Pack) -> list[PackError]:
    """A placeholder its rule type does not fill (`{valeu}`), or braces that do not pair up,
    in a rule's summary or rationale: the alert would show the braces to a clinician."""
    out: list[PackError] = []
    raws = _raw_rules(pack)
    for loaded in pack.rules:
        r = loaded.rule
        allowed = kind_of(r).placeholders
        raw = raws.get((loaded.file, r.id), {})
        for part, text in (("summary", r.summary), ("rationale", r.rationale)):
            line = line_of(raw, part) or loaded.line
            found = _fields(text)
            if found is None:
                out.append(PackError("braces do not pair up: write {name} for a placeholder, "
                                     "{{ and }} for a brace", file=loaded.file, line=line,
                                     rule=r.id, field=part))
                continue
            for name in sorted(found - allowed):
                fill = ", ".join("{" + a + "}" for a in sorted(allowed)) or "none"
                out.append(PackError(
                    f"unknown placeholder {{{name}}}: {r.type} rules fill {fill}",
                    file=loaded.file, line=line, rule=r.id, field=part,
                    suggestion=(f"{{{s}}}" if (s := near(name, sorted(allowed))) else None)))
    return out


def check_cases(pack: Pack, kb: Knowledge) -> tuple[list[PackError], list[PackError]]:
    """(errors, warnings) of a pack's cases: the schema; a rule id in `expect`, `expect_not`
    or `expect_alerts` that the pack does not have; a medication no drug name or code of the
    knowledge base matches (a typo tests an unrecognized drug, not the rule), unless the case
    lists it under `unrecognized:`; and one listed there that the knowledge base knows."""
    from cds.authoring.cases import load_cases
    from cds.knowledge.normalize import identify

    errors: list[PackError] = []
    warnings: list[PackError] = []
    ids = [r.rule.id for r in pack.rules]
    for lc in load_cases(pack.path, errors):
        raw = lc.raw or {}
        c = lc.case
        refs = [(f, rid) for f in ("expect", "expect_not") for rid in getattr(c, f)]
        refs += [(f"expect_alerts[{j}].rule", e.rule) for j, e in enumerate(c.expect_alerts)]
        for field, rid in refs:
            if rid not in ids:
                errors.append(PackError(
                    f"case {c.name!r}: {pack.ref} has no rule {rid!r}", file=lc.file,
                    line=line_of(raw, field, rid) or lc.line, field=field,
                    suggestion=near(rid, ids)))
        orders = [("patient.medications", m) for m in lc.patient.medications]
        orders += [("draft_orders", m) for m in c.draft_orders]
        meant = set(c.unrecognized)
        listed: set[str] = set()
        for where, m in orders:
            said = m.text or ", ".join(f"{x.system or ''}|{x.code}" for x in m.codes) or m.id
            names = {m.id, said} & meant
            listed |= names
            ident = identify(kb, m)
            if ident is not None and names:
                errors.append(PackError(
                    f"case {c.name!r}: medication {said!r} is listed under unrecognized but "
                    f"the knowledge base knows it ({', '.join(ident.ingredients)})",
                    file=lc.file, line=line_of(raw, "unrecognized", next(iter(names))) or lc.line,
                    field="unrecognized"))
            if ident is not None or names:
                continue
            first = (m.text or "").split(" ", 1)[0]
            errors.append(PackError(
                f"case {c.name!r}: medication {said!r} is not a drug the knowledge base knows "
                "(no ingredient name, salt, brand or RxNorm code of it matches; list its id "
                "under unrecognized: if the case means it)",
                file=lc.file, line=_item_line(raw, where, m.id) or lc.line, field=where,
                suggestion=suggest_name(kb, first) if first else None))
        for name in sorted(meant - listed):
            warnings.append(PackError(
                f"case {c.name!r}: unrecognized names {name!r}, which is no medication of the "
                "case", file=lc.file, line=line_of(raw, "unrecognized", name) or lc.line,
                field="unrecognized"))
    return errors, warnings


def _item_line(raw: dict[str, Any], field: str, item_id: str) -> int | None:
    """The line of the list item of `field` whose id is `item_id`."""
    node: Any = raw
    for part in field.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    for i, item in enumerate(node if isinstance(node, list) else []):
        if isinstance(item, dict) and str(item.get("id")) == item_id:
            return line_of(raw, f"{field}[{i}]")
    return line_of(raw, field)


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
        for i, action in enumerate(r.actions):
            out += [f"{where}: field actions[{i}]: {action.text!r} {w}"
                    for w in action_warnings(action)]
    return out
