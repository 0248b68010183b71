"""Compare two versions of a pack: which rules were added, removed or changed, field by field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cds.knowledge.store import Knowledge
from cds.rules.loader import Pack


@dataclass
class PackDiff:
    old: str
    new: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    meta: list[tuple[str, Any, Any]] = field(default_factory=list)

    #: with cases: each case whose alerts differ between the versions (each case once)
    cases: list[CaseChange] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.meta or self.cases)


@dataclass(frozen=True)
class CaseChange:
    name: str
    file: str
    line: int | None
    lost: list[str]  # rules that fire with the old version only
    gained: list[str]  # rules that fire with the new version only


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    fa, fb = _flat(a), _flat(b)
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def diff_packs(old: Pack, new: Pack) -> PackDiff:
    d = PackDiff(old.ref, new.ref)
    a = {r.rule.id: r.rule.model_dump(mode="json") for r in old.rules}
    b = {r.rule.id: r.rule.model_dump(mode="json") for r in new.rules}
    d.added = sorted(set(b) - set(a))
    d.removed = sorted(set(a) - set(b))
    for rid in sorted(set(a) & set(b)):
        ch = _changes(a[rid], b[rid])
        if ch:
            d.changed[rid] = ch
    ma = old.meta.model_dump(mode="json", exclude={"changelog", "version"})
    mb = new.meta.model_dump(mode="json", exclude={"changelog", "version"})
    d.meta = _changes(ma, mb)
    return d


def case_changes(old: Pack, new: Pack, kb: Knowledge) -> list[CaseChange]:
    """Both versions' cases run on both versions: the cases whose alerts differ. A case both
    versions share (the same name, date and patient; its expectations may differ) is run and
    said once."""
    from cds.authoring.cases import load_cases
    from cds.engine.evaluator import Engine

    ea, eb = Engine([old], kb), Engine([new], kb)
    seen: set[str] = set()
    out: list[CaseChange] = []
    for lc in load_cases(old.path) + load_cases(new.path):
        c = lc.case
        key = "|".join([c.name, c.as_of.isoformat(), lc.patient.model_dump_json(),
                        *(o.model_dump_json() for o in c.draft_orders)])
        if key in seen:
            continue
        seen.add(key)
        ra = {x.rule.split("/", 1)[1] for x in ea.evaluate(lc.patient, c.as_of, c.draft_orders).alerts}
        rb = {x.rule.split("/", 1)[1] for x in eb.evaluate(lc.patient, c.as_of, c.draft_orders).alerts}
        if ra != rb:
            out.append(CaseChange(c.name, lc.file, lc.line, sorted(ra - rb), sorted(rb - ra)))
    return out


def as_json(d: PackDiff) -> str:
    """The diff as one JSON document (for scripts and CI)."""
    def change(k: str, x: Any, y: Any) -> dict[str, Any]:
        return {"field": k, "old": x, "new": y}

    doc = {"old": d.old, "new": d.new, "differs": not d.empty,
           "meta": [change(*c) for c in d.meta], "added": d.added, "removed": d.removed,
           "changed": {rid: [change(*c) for c in ch] for rid, ch in d.changed.items()},
           "cases": [{"name": c.name, "file": c.file, "line": c.line, "lost": c.lost,
                      "gained": c.gained} for c in d.cases]}
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def _md(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) \
        else value
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"`{text}`" if text else "(none)"


def as_markdown(d: PackDiff) -> str:
    """The diff as Markdown (a pull request comment, a release note)."""
    lines = [f"## {d.old} → {d.new}", ""]
    if d.empty:
        return "\n".join([*lines, "No differences.", ""])
    if d.meta:
        lines += ["### pack.yaml", "", "| field | old | new |", "|---|---|---|"]
        lines += [f"| {k} | {_md(x)} | {_md(y)} |" for k, x, y in d.meta] + [""]
    if d.added:
        lines += ["### Added rules", ""] + [f"- `{r}`" for r in d.added] + [""]
    if d.removed:
        lines += ["### Removed rules", ""] + [f"- `{r}`" for r in d.removed] + [""]
    for rid, changes in d.changed.items():
        lines += [f"### Changed: `{rid}`", "", "| field | old | new |", "|---|---|---|"]
        lines += [f"| {k} | {_md(x)} | {_md(y)} |" for k, x, y in changes] + [""]
    if d.cases:
        lines += ["### Cases whose alerts change", "", "| case | no longer fires | now fires |",
                  "|---|---|---|"]
        lines += [f"| {_md(c.name)} | {', '.join(c.lost) or '-'} | {', '.join(c.gained) or '-'} |"
                  for c in d.cases] + [""]
    return "\n".join(lines)
