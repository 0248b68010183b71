"""Every shipped pack loads, lints clean, and passes its own cases; every rule has a
positive and a negative case."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds.authoring.casetest import test_pack as run_pack_cases
from cds.authoring.lint import lint_warnings
from cds.knowledge.store import default_knowledge
from cds.rules.loader import load_pack
from cds.rules.registry import bundled_rulesets

PACK_DIRS = sorted(p.parent for p in bundled_rulesets().glob("*/pack.yaml"))


def test_packs_are_shipped() -> None:
    ids = {p.name for p in PACK_DIRS}
    assert {"opioid-safety", "interactions-core", "cns-burden", "renal-hepatic-dosing"} <= ids


@pytest.mark.parametrize("folder", PACK_DIRS, ids=lambda p: p.name)
def test_pack_cases(folder: Path) -> None:
    kb = default_knowledge()
    pack = load_pack(folder, kb)
    assert lint_warnings(pack, kb) == []
    report = run_pack_cases(pack, kb)
    failures = [f"{o.name} ({o.file}:{o.line}): {f}" for o in report.outcomes for f in o.failures]
    assert failures == []
    assert report.unexercised == [], "rules with no positive case"
    assert report.untested_negative == [], "rules with no negative case"
