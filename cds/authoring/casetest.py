"""Run a pack's cases: expected versus got, and the rules no case exercises."""

from __future__ import annotations

import time
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
    seconds: float = 0.0

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
    start = time.perf_counter()
    out = _run_case(engine, pack, lc)
    out.seconds = time.perf_counter() - start
    return out


def _run_case(engine: Engine, pack: Pack, lc: LoadedCase) -> CaseOutcome:
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


def junit_xml(report: PackTestReport) -> str:
    """The report as JUnit XML (one testsuite per pack, one testcase per case) for CI systems
    (GitLab, Jenkins, GitHub test reporters); a rule no case exercises is a property."""
    from xml.etree import ElementTree as ET

    failed = [o for o in report.outcomes if not o.ok]
    suite = ET.Element("testsuite", name=report.pack, tests=str(len(report.outcomes)),
                       failures=str(len(failed)), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    for name, rules in (("unexercised", report.unexercised),
                        ("untested_negative", report.untested_negative)):
        ET.SubElement(props, "property", name=name, value=",".join(rules))
    for o in report.outcomes:
        case = ET.SubElement(suite, "testcase", name=o.name, classname=report.pack,
                             file=o.file, time=f"{o.seconds:.3f}")
        if o.line:
            case.set("line", str(o.line))
        if not o.ok:
            failure = ET.SubElement(case, "failure", message=o.failures[0],
                                    type="expectation")
            failure.text = "\n".join(o.failures)
        ET.SubElement(case, "system-out").text = "fired: " + (", ".join(o.fired) or "none")
    root = ET.Element("testsuites", name="cds pack test", tests=suite.get("tests", "0"),
                      failures=suite.get("failures", "0"), errors="0")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


test_pack.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
