"""Compare two versions of a pack: which rules were added, removed or changed, field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cds.rules.loader import Pack


@dataclass
class PackDiff:
    old: str
    new: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    meta: list[tuple[str, Any, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.meta)


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
