"""`cds explain`: why a rule did or did not fire for a patient."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cds.cli.common import (
    AsOfOpt,
    PacksOpt,
    RulesetsOpt,
    as_of_date,
    fail,
    file_errors,
    load_engine_or_fail,
    out,
    read_patient_or_fail,
)
from cds.errors import PackErrors


@file_errors
def explain(
    file: Annotated[Path, typer.Argument(
        help="Patient: FHIR R4 Bundle or native JSON; '-' reads standard input.")],
    rule: Annotated[str, typer.Option("--rule", help="Rule: 'pack/rule-id' or 'rule-id'.")],
    pack: PacksOpt = None,
    rulesets: RulesetsOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Why a rule did or did not fire for a patient: each condition and its value."""
    from cds.authoring.explain import explain as run_explain

    patient = read_patient_or_fail(file)
    eng = load_engine_or_fail(pack, rulesets)
    facts = eng.facts(patient, as_of=as_of_date(as_of))
    try:
        ex = run_explain(eng, facts, rule)
    except PackErrors as e:
        from cds.authoring.explain import rule_hints

        cwd = Path.cwd()
        hints = rule_hints(rule, list(eng.packs), list(rulesets or ()),
                           [] if rulesets else [cwd, cwd / "rulesets"])
        fail(str(e) + "".join(f"\n  hint: {h}" for h in hints)
             + ("" if hints or rulesets else "\n  (packs outside the installed rulesets need "
                "--rulesets DIR or --pack FOLDER)"))
    verdict = "[bold red]FIRED[/]" if ex.fired else "[green]did not fire[/]"
    out.print(f"[bold]{ex.rule}[/] ({ex.pack}) for patient {patient.id}: {verdict}")
    for c in ex.conditions:
        mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]-[/]"}[c.ok]
        out.print(f"  {mark}  {c.text}: {c.value}")
    if ex.alert_summary:
        out.print(f"  alert: {ex.alert_summary}")
