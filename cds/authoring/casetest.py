"""Run a pack's cases: expected versus got, and the rules no case exercises."""

from __future__ import annotations

from dataclasses import dataclass, field

from cds.authoring.cases import LoadedCase, load_cases
from cds.engine.evaluator import Engine
from cds.knowledge.store import Knowledge
from cds.rules.loader import Pack


@dataclass
class CaseOutcome:
    name: str
    file: str
    line: int | None
    failures: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class PackTestReport:
    pack: str
    outcomes: list[CaseOutcome]
    unexercised: list[str]  # rules no case expects to fire
    untested_negative: list[str]  # rules no case expects not to fire

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


def _fired_ids(pack: Pack, rules: list[str]) -> list[str]:
    prefix = pack.id + "/"
    return sorted({r[len(prefix):] for r in rules if r.startswith(prefix)})


def run_case(engine: Engine, pack: Pack, lc: LoadedCase) -> CaseOutcome:
    c = lc.case
    out = CaseOutcome(c.name, lc.file, lc.line)
    try:
        result = engine.evaluate(lc.patient, as_of=c.as_of, draft_orders=c.draft_orders)
    except Exception as e:  # a case that crashes the engine is a failure to report, not a crash
        out.failures.append(f"engine error: {type(e).__name__}: {e}")
        return out
    refs = [a.rule for a in result.alerts] + [r for a in result.alerts for r in a.also]
    fired = _fired_ids(pack, refs)
    out.fired = fired
    for rid in c.expect:
        if rid not in fired:
            out.failures.append(f"expected {rid} to fire; got {fired or 'no alerts'}")
    for rid in c.expect_not:
        if rid in fired:
            out.failures.append(f"expected {rid} not to fire; it fired")
    by_rule = {a.rule.split("/", 1)[1]: a for a in result.alerts if a.rule.startswith(pack.id + "/")}
    for exp in c.expect_alerts:
        a = by_rule.get(exp.rule)
        if a is None:
            out.failures.append(f"expected an alert from {exp.rule}; got {fired or 'no alerts'}")
            continue
        checks = [("severity", exp.severity, a.severity), ("role", exp.role, a.role),
                  ("medications", exp.medications and sorted(exp.medications),
                   sorted(a.medications))]
        for name, want, got in checks:
            if want is not None and want != got:
                out.failures.append(f"{exp.rule}: expected {name} {want!r}, got {got!r}")
        if exp.summary_contains and exp.summary_contains not in a.summary:
            out.failures.append(f"{exp.rule}: summary {a.summary!r} lacks {exp.summary_contains!r}")
        if exp.rationale_contains and exp.rationale_contains not in a.rationale:
            out.failures.append(f"{exp.rule}: rationale lacks {exp.rationale_contains!r}")
    return out


def test_pack(pack: Pack, kb: Knowledge) -> PackTestReport:
    """Evaluate every case against this pack alone, so other packs cannot mask a failure."""
    engine = Engine([pack], kb)
    cases = load_cases(pack.path)
    outcomes = [run_case(engine, pack, lc) for lc in cases]
    ids = [r.rule.id for r in pack.rules]
    positive = {rid for lc in cases for rid in lc.case.expect}
    positive |= {e.rule for lc in cases for e in lc.case.expect_alerts}
    negative = {rid for lc in cases for rid in lc.case.expect_not}
    return PackTestReport(pack.ref, outcomes, [i for i in ids if i not in positive],
                          [i for i in ids if i not in negative])


test_pack.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
