"""`cds check`: one patient's MME, unrecognized medications and alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cds.cli.common import (
    SEVERITY_STYLE,
    AsOfOpt,
    EngineName,
    Format,
    MaxMedsOpt,
    PacksOpt,
    RulesetsOpt,
    as_of_date,
    emit,
    fail,
    file_errors,
    input_name,
    json_bytes,
    load_engine_or_fail,
    open_store,
    out,
    read_patient_or_fail,
)
from cds.errors import CdsError
from cds.limits import MAX_MEDICATIONS
from cds.vocabulary import SEVERITIES, SEVERITY_RANK, Severity

#: `cds check --fail-on`: an alert at or above the severity exits with this code.
FAILED_CHECK = 3


@file_errors
def check(
    file: Annotated[Path, typer.Argument(
        help="Patient: FHIR R4 Bundle or native JSON; '-' reads standard input.")],
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    pack: PacksOpt = None,
    rulesets: RulesetsOpt = None,
    as_of: AsOfOpt = None,
    engine: Annotated[EngineName, typer.Option("--engine")] = EngineName.indexed,
    max_medications: MaxMedsOpt = MAX_MEDICATIONS,
    db: Annotated[str | None, typer.Option(
        "--db", help="Decisions store (SQLite file or postgresql:// URL): show each alert's "
                     "standing decision and status.")] = None,
    fail_on: Annotated[Severity | None, typer.Option(
        "--fail-on", metavar="SEVERITY", show_choices=True,
        help=f"Exit {FAILED_CHECK} when an alert at or above this severity exists (for scripted "
             f"checks; with --db, not one a standing decision covers): "
             f"{', '.join(SEVERITIES)}.")] = None,
) -> None:
    """Check one patient and print the MME, unrecognized medications and alerts."""
    patient = read_patient_or_fail(file)
    eng = load_engine_or_fail(pack, rulesets, engine.value, max_medications)
    try:
        result = eng.evaluate(patient, as_of=as_of_date(as_of))
    except CdsError as e:
        fail(f"{input_name(file)}: {e}")
    judged = _standing(db, result) if db else {}
    if format is Format.json:
        doc = result.to_dict()
        if db:
            for a in doc["alerts"]:
                j = judged[a["key"]]
                a["status"], a["changed_because"] = j.status, j.why
                a["decision"] = _decision_json(j.decision)
        emit(json_bytes(doc))
    else:
        print_result(result, judged)
        emit(b"")
    # with --db, an alert a standing decision covers (status unchanged) was dealt with: it is
    # printed with its decision, and does not fail the check
    if fail_on is not None and any(
            SEVERITY_RANK[a.severity] <= SEVERITY_RANK[fail_on]
            and not (db and judged[a.key].status == "unchanged") for a in result.alerts):
        raise typer.Exit(FAILED_CHECK)


def _standing(db: str, result):  # type: ignore[no-untyped-def]
    """alert key -> Judged: each alert against the decisions on file for the patient."""
    from cds.decisions.carry import judge, sighting_of

    prescribers = {m.order_id: m.prescriber for m in result.summary.medications if m.prescriber}
    sightings = [sighting_of(result.patient, a, prescribers) for a in result.alerts]
    with open_store(db) as store:
        current = {k: d for (_, k), d in store.current_for(result.patient).items()}
        # known to the store from now on: `cds review decide` can file a decision on them
        store.link_cards([(f"check|{s.patient_id}|{s.alert_key}", s) for s in sightings])
    return {j.sighting.alert_key: j for j in judge(sightings, (), current, result.as_of)
            if j.status != "gone"}


def _decision_json(d):  # type: ignore[no-untyped-def]
    if d is None:
        return None
    return {"state": d.state, "version": d.version, "author": d.author,
            "decided_at": d.decided_at.isoformat(), "reason": d.reason_code, "note": d.note,
            "follow_up": d.follow_up.isoformat() if d.follow_up else None,
            "snooze_until": d.snooze_until.isoformat() if d.snooze_until else None,
            "referred_to": d.referred_to}


def print_result(result, judged=None) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    out.print(f"[bold]Patient[/] {result.patient}   as of {result.as_of}   "
              f"packs: {', '.join(result.packs)}")
    if result.not_reviewed:
        out.print(f"[yellow]Not reviewed:[/] {result.not_reviewed}; no checks were run.")
        return
    for pack, why in result.out_of_scope:
        out.print(f"[yellow]{pack} not applied:[/] out of its scope: {why}")
    m = result.mme
    bound = " (lower bound: an opioid could not be counted)" if m.lower_bound else ""
    t = Table(title=f"MME {m.total:.1f} MME/day ({m.factor_set}){bound}", title_justify="left")
    for col in ("medication", "ingredient", "route", "daily dose", "factor", "MME"):
        t.add_column(col, justify="right" if col in ("factor", "MME") else "left")
    for i in m.items:
        t.add_row(i.medication, i.ingredient,
                  i.route + ("" if i.route_basis == "stated" else f" ({i.route_basis})"),
                  f"{i.daily_dose:g} {i.unit}",
                  f"{i.factor:g}" + (" (analytic)" if i.factor_status == "analytic" else ""),
                  f"{i.mme:.1f}")
    out.print(t)
    for i in m.items:
        for note in i.assumed:
            out.print(f"  [yellow]assumed:[/] {i.medication}: {note}")
    for e in m.excluded:
        out.print(f"  [dim]not counted:[/] {e.medication}: {e.reason}")
    if not result.alerts:
        out.print("[green]No alerts.[/]")
        return
    t = Table(title=f"{len(result.alerts)} alert(s)", title_justify="left", show_lines=True)
    t.add_column("prio", justify="right")
    t.add_column("severity")
    t.add_column("alert")
    t.add_column("for")
    for a in result.alerts:
        j = (judged or {}).get(a.key)
        said = ""
        if j is not None:
            d = j.decision
            said = f"\n[cyan]{j.status}[/]" + (f": {j.why}" if j.why else "") + (
                f"; decision on file: {d.state} by {d.author} on {d.decided_at:%Y-%m-%d}"
                + (f" ({d.reason_code})" if d.reason_code else "") if d else "")
        t.add_row(str(a.priority), f"[{SEVERITY_STYLE[a.severity]}]{a.severity}[/]",
                  f"[bold]{a.summary}[/]\n{a.rationale}\n[dim]{a.rule} ({a.pack})"
                  + (f"; also {', '.join(a.also)}" if a.also else "") + "[/]"
                  + "".join(f"\n-> {x}" for x in a.actions) + said,
                  a.role)
    out.print(t)
