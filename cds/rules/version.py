"""Version numbers of packs (SemVer) and of the knowledge base (CalVer YYYY.MM.N)."""

from __future__ import annotations

import re

from cds.errors import PackError

_SPEC = re.compile(r"^\s*(>=|<=|==|>|<|~=)?\s*([0-9][0-9A-Za-z.\-]*)\s*$")


def parse(version: str) -> tuple[tuple[int, ...], str]:
    """(numeric parts, pre-release) so that 1.2.0-rc1 < 1.2.0 < 1.10.0."""
    core, _, pre = version.partition("-")
    return tuple(int(p) for p in core.split(".")), pre


def key(version: str) -> tuple[tuple[int, ...], int, str]:
    nums, pre = parse(version)
    return nums, (0 if pre else 1), pre


def satisfies(version: str, spec: str) -> bool:
    """Does `version` meet every comma-separated clause of `spec` (e.g. '>=2026.11.0,<2027')?"""
    v = key(version)
    for clause in spec.split(","):
        m = _SPEC.match(clause)
        if not m:
            raise PackError(f"bad version specifier {clause!r} (write e.g. '>=2026.11.0')")
        op, target = m.group(1) or "==", key(m.group(2))
        ok = {">=": v >= target, "<=": v <= target, "==": v == target, ">": v > target,
              "<": v < target, "~=": v >= target and v[0][:1] == target[0][:1]}[op]
        if not ok:
            return False
    return True
