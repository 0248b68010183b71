"""The `cds` command. Exit codes: 0 done, 1 findings that fail a check (lint, pack test),
2 bad input (one message naming the file and field, never a traceback)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cds.errors import CdsError, PackErrors
from cds.limits import MAX_MEDICATIONS

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Medication-safety decision support: check patients against rule packs.")
pack_app = typer.Typer(no_args_is_help=True, help="Rule authors' tools: list, lint, test packs.")
app.add_typer(pack_app, name="pack")
review_app = typer.Typer(no_args_is_help=True, help=(
    "Pharmacists' decisions on alerts: import a filled-in worklist, decide, history, letters "
    "to prescribers, FHIR export (docs/review.md)."))
app.add_typer(review_app, name="review")

P = ParamSpec("P")
R = TypeVar("R")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "moderate": "yellow",
                  "low": "cyan", "info": "dim"}


class Format(StrEnum):
    table = "table"
    json = "json"


class EngineName(StrEnum):
    indexed = "indexed"
    durable = "durable"


PacksOpt = Annotated[list[str] | None, typer.Option(
    "--pack", "-p", help="Pack to use, 'id' (newest) or 'id@version'; repeat. Default: all.")]
RulesetsOpt = Annotated[list[Path] | None, typer.Option(
    "--rulesets", help="Extra folder of installed packs; repeat.")]
MaxMedsOpt = Annotated[int, typer.Option(
    "--max-medications", min=1,
    help="Medication records one patient may have (more: an error naming the patient).")]
DbOpt = Annotated[str | None, typer.Option(
    "--db", help="Decisions store: an SQLite file or a postgresql:// URL (default: $CDS_DB; "
                 "for a panel, OUT/decisions.sqlite3; 'none': no store).")]
AsOfOpt = Annotated[str | None, typer.Option(
    "--as-of", help="Evaluation date, YYYY-MM-DD (default: today).")]


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def _file_errors(command: Callable[P, R]) -> Callable[P, R]:
    """A file that cannot be read or written (a folder under a regular file, a full disk,
    no permission), or a decisions store that fails, is one line naming it, exit 2: never a
    traceback."""
    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except OSError as e:
            where = e.filename if e.filename is not None else None
            fail(f"{where}: {e.strerror or e}" if where else str(e))
        except Exception as e:
            from sqlalchemy.exc import SQLAlchemyError

            if isinstance(e, SQLAlchemyError):  # the decisions store failed under us
                fail(f"decisions store: {type(e).__name__}: "
                     f"{str(getattr(e, 'orig', None) or e).splitlines()[0]}")
            raise
    return run


def _as_of(value: str | None) -> date:
    """The evaluation date: the option's, else today (the clock is read here, once per run)."""
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--as-of: {value!r} is not a date (YYYY-MM-DD)")


def _engine(packs: list[str] | None, rulesets: list[Path] | None, backend: str = "indexed",  # type: ignore[no-untyped-def]
            max_medications: int = MAX_MEDICATIONS):
    from cds.engine.evaluator import load_engine

    try:
        return load_engine(packs, roots=rulesets or (), backend=backend,  # type: ignore[arg-type]
                           max_medications=max_medications)
    except PackErrors as e:
        fail("rule packs failed to load:\n" + "\n".join(f"  {x}" for x in e.errors))


@app.command()
@_file_errors
def check(
    file: Annotated[Path, typer.Argument(help="Patient: FHIR R4 Bundle or native JSON.")],
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    pack: PacksOpt = None,
    rulesets: RulesetsOpt = None,
    as_of: AsOfOpt = None,
    engine: Annotated[EngineName, typer.Option("--engine")] = EngineName.indexed,
    max_medications: MaxMedsOpt = MAX_MEDICATIONS,
    db: Annotated[str | None, typer.Option(
        "--db", help="Decisions store (SQLite file or postgresql:// URL): show each alert's "
                     "standing decision and status.")] = None,
) -> None:
    """Check one patient and print the MME, unrecognized medications and alerts."""
    from cds.io import read_patient

    try:
        patient = read_patient(file)
    except CdsError as e:
        fail(str(e))
    eng = _engine(pack, rulesets, engine.value, max_medications)
    try:
        result = eng.evaluate(patient, as_of=_as_of(as_of))
    except CdsError as e:
        fail(f"{file}: {e}")
    judged = _standing(db, result) if db else {}
    if format is Format.json:
        doc = result.to_dict()
        if db:
            for a in doc["alerts"]:
                j = judged[a["key"]]
                a["status"], a["changed_because"] = j.status, j.why
                a["decision"] = _decision_json(j.decision)
        _emit(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return
    _print_result(result, judged)
    _emit(b"")


def _standing(db: str, result):  # type: ignore[no-untyped-def]
    """alert key -> Judged: each alert against the decisions on file for the patient."""
    from cds.decisions.carry import judge, sighting_of

    prescribers = {m.order_id: m.prescriber for m in result.summary.medications if m.prescriber}
    sightings = [sighting_of(result.patient, a, prescribers) for a in result.alerts]
    with _store(db) as store:
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


def _emit(data: bytes) -> None:
    """Write to standard output and make sure all of it was written: a failed or short write
    (a full disk, a closed pipe) exits 4 rather than leaving a truncated result looking done."""
    try:
        stream = sys.stdout.buffer
        written = stream.write(data) if data else 0
        stream.flush()
    except (OSError, ValueError) as e:
        err.print(f"[bold red]error:[/] the output could not be written: {e}", soft_wrap=True)
        raise typer.Exit(4) from None
    if written != len(data):
        err.print(f"[bold red]error:[/] the output was cut short: {written} of {len(data)} "
                  "bytes written", soft_wrap=True)
        raise typer.Exit(4)


def _print_result(result, judged=None) -> None:  # type: ignore[no-untyped-def]
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


@app.command()
@_file_errors
def explain(
    file: Annotated[Path, typer.Argument(help="Patient: FHIR R4 Bundle or native JSON.")],
    rule: Annotated[str, typer.Option("--rule", help="Rule: 'pack/rule-id' or 'rule-id'.")],
    pack: PacksOpt = None,
    rulesets: RulesetsOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Why a rule did or did not fire for a patient: each condition and its value."""
    from cds.authoring.explain import explain as run_explain
    from cds.io import read_patient

    try:
        patient = read_patient(file)
    except CdsError as e:
        fail(str(e))
    eng = _engine(pack, rulesets)
    facts = eng.facts(patient, as_of=_as_of(as_of))
    try:
        ex = run_explain(eng, facts, rule)
    except PackErrors as e:
        fail(str(e))
    verdict = "[bold red]FIRED[/]" if ex.fired else "[green]did not fire[/]"
    out.print(f"[bold]{ex.rule}[/] ({ex.pack}) for patient {patient.id}: {verdict}")
    for c in ex.conditions:
        mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]-[/]"}[c.ok]
        out.print(f"  {mark}  {c.text}: {c.value}")
    if ex.alert_summary:
        out.print(f"  alert: {ex.alert_summary}")


@pack_app.command("list")
@_file_errors
def pack_list(rulesets: RulesetsOpt = None) -> None:
    """Installed packs and versions."""
    from cds.rules.registry import discover, rulesets_roots

    t = Table()
    for col in ("pack", "version", "title", "path"):
        t.add_column(col)
    for p in discover(rulesets_roots(rulesets or ())):
        t.add_row(p.id, p.version, p.title, str(p.path))
    out.print(t)


def _load_pack_or_fail(path: Path):  # type: ignore[no-untyped-def]
    from cds.knowledge.store import default_knowledge
    from cds.rules.loader import load_pack

    kb = default_knowledge()
    try:
        return load_pack(path, kb), kb
    except PackErrors as e:
        for x in e.errors:
            err.print(f"[red]error[/] {x}", soft_wrap=True)
        err.print(f"{len(e.errors)} error(s)")
        raise typer.Exit(1) from None


@pack_app.command("lint")
@_file_errors
def pack_lint(path: Annotated[Path, typer.Argument(help="Pack folder.")]) -> None:
    """Validate a pack: schema, drug and class names, expressions; warn on weak spots."""
    from cds.authoring.lint import lint_warnings

    p, kb = _load_pack_or_fail(path)
    warnings = lint_warnings(p, kb)
    for w in warnings:
        out.print(f"[yellow]warning[/] {w}", soft_wrap=True)
    out.print(f"[green]ok[/] {p.ref}: {len(p.rules)} rules, digest {p.digest}"
              + (f", {len(warnings)} warning(s)" if warnings else ""))


@pack_app.command("test")
@_file_errors
def pack_test(path: Annotated[Path, typer.Argument(help="Pack folder.")]) -> None:
    """Run a pack's cases: expected versus got, and rules no case exercises."""
    from cds.authoring.casetest import test_pack

    p, kb = _load_pack_or_fail(path)
    try:
        report = test_pack(p, kb)
    except PackErrors as e:
        for x in e.errors:
            err.print(f"[red]error[/] {x}", soft_wrap=True)
        raise typer.Exit(1) from None
    for o in report.outcomes:
        where = f"{o.file}:{o.line}" if o.line else o.file
        if o.ok:
            out.print(f"[green]pass[/] {o.name}")
        else:
            out.print(f"[red]FAIL[/] {o.name} ({where})")
            for f in o.failures:
                out.print(f"     {f}")
    if report.unexercised:
        out.print(f"[yellow]rules no case expects to fire:[/] {', '.join(report.unexercised)}")
    if report.untested_negative:
        out.print(f"[yellow]rules no case expects not to fire:[/] "
                  f"{', '.join(report.untested_negative)}")
    failed = sum(not o.ok for o in report.outcomes)
    out.print(f"{len(report.outcomes) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


@pack_app.command("diff")
@_file_errors
def pack_diff(
    old: Annotated[Path, typer.Argument(help="Old pack folder.")],
    new: Annotated[Path, typer.Argument(help="New pack folder.")],
    cases: Annotated[bool, typer.Option(
        "--cases", help="Also run both packs' cases on both versions and show alert changes.")] = False,
) -> None:
    """Compare two versions of a pack: rules added, removed, changed; with --cases, alerts."""
    from cds.authoring.diff import diff_packs

    a, kb = _load_pack_or_fail(old)
    b, _ = _load_pack_or_fail(new)
    d = diff_packs(a, b)
    out.print(f"[bold]{d.old} -> {d.new}[/]")
    for k, x, y in d.meta:
        out.print(f"  pack {k}: {x!r} -> {y!r}")
    for rid in d.added:
        out.print(f"  [green]+ {rid}[/]")
    for rid in d.removed:
        out.print(f"  [red]- {rid}[/]")
    for rid, changes in d.changed.items():
        out.print(f"  [yellow]~ {rid}[/]")
        for k, x, y in changes:
            out.print(f"      {k}: {x!r} -> {y!r}")
    if d.empty:
        out.print("  no rule changes")
    if cases:
        from cds.authoring.cases import load_cases
        from cds.engine.evaluator import Engine

        ea, eb = Engine([a], kb), Engine([b], kb)
        for lc in load_cases(a.path) + load_cases(b.path):
            c = lc.case
            ra = {x.rule.split("/", 1)[1] for x in ea.evaluate(lc.patient, c.as_of, c.draft_orders).alerts}
            rb = {x.rule.split("/", 1)[1] for x in eb.evaluate(lc.patient, c.as_of, c.draft_orders).alerts}
            if ra != rb:
                lost = [f"[red]-{r}[/]" for r in sorted(ra - rb)]
                gained = [f"[green]+{r}[/]" for r in sorted(rb - ra)]
                out.print(f"  case {c.name!r}: " + ", ".join(lost + gained))


@app.command()
@_file_errors
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    allow_unsigned: Annotated[bool, typer.Option(
        "--allow-unsigned", help="Accept requests without a JWT. Development only.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="Service config (YAML).")] = None,
    log_level: Annotated[str, typer.Option(
        "--log-level", help="debug, info, warning or error. Patient data is never logged.")] = "info",
) -> None:
    """Run the CDS Hooks service (docs/cds-hooks.md)."""
    from cds.service.server import run

    run(host=host, port=port, allow_unsigned=allow_unsigned, config=config,
        log_level=log_level.lower())


@app.command()
@_file_errors
def panel(
    input: Annotated[Path, typer.Argument(help="Bulk Data export folder (NDJSON) or CSV folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")],
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted run.")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local worker processes.")] = None,
    pack: PacksOpt = None,
    as_of: AsOfOpt = None,
    shards: Annotated[int | None, typer.Option(
        "--shards", help="Units of work (default: sized from the input).")] = None,
    top: Annotated[int, typer.Option(
        "--top", help="Patients of the worklist shown in detail in report.html.")] = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    max_medications: MaxMedsOpt = MAX_MEDICATIONS,
    db: DbOpt = None,
    fhir: Annotated[bool, typer.Option(
        "--fhir", help="Also write the alerts as FHIR DetectedIssue.ndjson and the referrals "
                       "as Task.ndjson.")] = False,
) -> None:
    """Review a whole panel: alerts, worklist, quarantine and an HTML report."""
    from cds.panel.run import run_panel

    try:
        run_panel(input, out_dir, resume=resume, executor=executor, scheduler=scheduler,
                  workers=workers, packs=pack, as_of=_as_of(as_of), shards=shards, top_n=top,
                  quiet=quiet, max_medications=max_medications, db=db, fhir=fhir)
    except PackErrors as e:
        fail("rule packs failed to load:\n" + "\n".join(f"  {x}" for x in e.errors))
    except CdsError as e:
        fail(str(e))


@app.command()
@_file_errors
def synth(
    patients: Annotated[int, typer.Option("--patients", help="Number of patients.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")],
    seed: Annotated[int, typer.Option("--seed")] = 0,
    gz: Annotated[bool, typer.Option("--gzip", help="Write .ndjson.gz files.")] = False,
    anchor: Annotated[str | None, typer.Option(
        "--anchor", help="'Today' of the synthetic history, YYYY-MM-DD (default 2026-11-26).")] = None,
    dirty: Annotated[float, typer.Option(
        "--dirty", help="Share of records of each dirty kind (0 for a clean panel).")] = 0.01,
    style: Annotated[str, typer.Option(
        "--style", help="clinic, or synthea: records shaped as the Synthea generator writes "
                        "them (unitless doses, no route, deceased patients).")] = "clinic",
) -> None:
    """Write a synthetic FHIR Bulk Data panel for demos, tests and benchmarks."""
    from cds.synth import write_panel

    write_panel(patients, out_dir, seed=seed, gzip=gz,
                anchor=_as_of(anchor) if anchor else None, dirty=dirty, style=style)
    out.print(f"wrote {patients} patients to {out_dir}")


# -- review: the decisions store ---------------------------------------------------------------

AuthorOpt = Annotated[str | None, typer.Option(
    "--author", help="Who decides (default: the login name).")]


def _store(db: str | None):  # type: ignore[no-untyped-def]
    from cds.decisions.store import DecisionStore, default_db

    url = db or default_db()
    if not url:
        fail("no decisions store: give --db (an SQLite file or a postgresql:// URL) or set "
             "CDS_DB")
    return DecisionStore(url)


def _author(author: str | None) -> str:
    import getpass

    return author or getpass.getuser()


@review_app.command("import")
@_file_errors
def review_import(
    file: Annotated[Path, typer.Argument(help="A worklist.csv or alerts.csv with decisions filled in.")],
    db: DbOpt = None,
    author: AuthorOpt = None,
    partial: Annotated[bool, typer.Option(
        "--partial", help="Apply the good rows; write the rejects to --rejects.")] = False,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects", help="Where --partial writes the rejected rows (default FILE.rejects.csv).")] = None,
    pack: PacksOpt = None,
) -> None:
    """Apply the decisions of a filled-in worklist or alerts CSV: every row checked first;
    one bad row applies nothing (unless --partial)."""
    from cds.decisions.csv_import import import_csv, write_rejects
    from cds.decisions.reasons import responses_of

    with _store(db) as store:
        try:
            res = import_csv(store, file, author=_author(author), partial=partial,
                             responses=responses_of(_engine(pack, None).packs))
        except CdsError as e:
            fail(str(e))
    for r in res.rejects[:50]:
        err.print(f"[red]rejected[/] {file}: {r}", soft_wrap=True)
    if len(res.rejects) > 50:
        err.print(f"... and {len(res.rejects) - 50} more")
    if res.rejects and not partial:
        fail(f"{len(res.rejects)} row(s) rejected: nothing applied (fix them, or use --partial)")
    if res.rejects:
        path = rejects or file.with_suffix(".rejects.csv")
        write_rejects(path, res.rejects)
        err.print(f"{len(res.rejects)} rejected row(s) written to {path}")
    out.print(f"applied {len(res.applied)} decision(s); {res.unchanged} row(s) unchanged")
    if res.rejects:
        raise typer.Exit(1)


@review_app.command("decide")
@_file_errors
def review_decide(
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    alert_key: Annotated[str, typer.Argument(help="The alert's key (alert_key column).")],
    state: Annotated[str, typer.Option("--state", help="open, accepted, acted, overridden, "
                                                       "snoozed, referred or resolved.")],
    reason: Annotated[str | None, typer.Option("--reason", help="A reason code the alert offers.")] = None,
    note: Annotated[str | None, typer.Option("--note")] = None,
    follow_up: Annotated[str | None, typer.Option(
        "--follow-up", help="YYYY-MM-DD; for a snooze, the day it ends.")] = None,
    referred_to: Annotated[str | None, typer.Option("--referred-to")] = None,
    expect_version: Annotated[int | None, typer.Option(
        "--expect-version", help="The decision version you read (0: none): a decision taken "
                                 "since is a conflict (exit 3), not overwritten.")] = None,
    db: DbOpt = None,
    author: AuthorOpt = None,
    pack: PacksOpt = None,
) -> None:
    """Record one decision (for scripts); the same checks as an import."""
    from cds.decisions.csv_import import import_row
    from cds.decisions.reasons import responses_of
    from cds.decisions.store import DecisionConflict

    row = {"patient_id": patient, "alert_key": alert_key, "decision": state,
           "reason": reason or "", "note": note or "", "follow_up": follow_up or "",
           "referred_to": referred_to or "",
           "decision_version": "" if expect_version is None else str(expect_version)}
    with _store(db) as store:
        try:
            d = import_row(store, row, author=_author(author),
                           responses=responses_of(_engine(pack, None).packs),
                           check_version=expect_version is not None)
        except DecisionConflict as e:
            fail(str(e), 3)
        except CdsError as e:
            fail(str(e))
    out.print(f"{d.patient_id} {d.alert_key}: {d.state} (version {d.version}) by {d.author}")


@review_app.command("history")
@_file_errors
def review_history(
    patient: Annotated[str | None, typer.Argument(help="Patient id (default: everyone).")] = None,
    alert_key: Annotated[str | None, typer.Option("--key", help="One alert only.")] = None,
    format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    db: DbOpt = None,
) -> None:
    """Who decided what and when: the append-only history, oldest first."""
    from dataclasses import asdict

    with _store(db) as store:
        rows = store.history(patient, alert_key)
    if format is Format.json:
        _emit(orjson.dumps([asdict(d) for d in rows], option=orjson.OPT_INDENT_2) + b"\n")
        return
    t = Table()
    for col in ("when (UTC)", "patient", "alert", "v", "state", "reason", "by", "note"):
        t.add_column(col, overflow="fold")
    for d in rows:
        t.add_row(f"{d.decided_at:%Y-%m-%d %H:%M}", d.patient_id, d.alert_key, str(d.version),
                  d.state + (f" until {d.snooze_until}" if d.snooze_until else ""),
                  d.reason_code or "", d.author, d.note or "")
    out.print(t)
    if not rows:
        out.print("no decisions")


@review_app.command("letters")
@_file_errors
def review_letters(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for one HTML letter per prescriber.")],
    db: DbOpt = None,
    pharmacy: Annotated[str | None, typer.Option("--pharmacy", help="Who the letters are from.")] = None,
    as_of: AsOfOpt = None,
) -> None:
    """One letter per prescriber with the accepted recommendations and referrals, in plain
    language (print to PDF from a browser)."""
    from cds.decisions.letters import write_letters
    from cds.decisions.share import letter_items

    with _store(db) as store:
        items = letter_items(store)
    paths = write_letters(items, out_dir, pharmacy=pharmacy, as_of=_as_of(as_of))
    out.print(f"wrote {len(paths) - 1} letter(s) and an index to {out_dir}")


@review_app.command("export")
@_file_errors
def review_export(
    fhir: Annotated[Path, typer.Option("--fhir", help="Folder for DetectedIssue.ndjson and Task.ndjson.")],
    db: DbOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Every patient's alerts (as of their latest review) as FHIR R4 DetectedIssue resources
    with the decisions as mitigations, and each referral as a Task (Bulk Data NDJSON)."""
    from cds.decisions.share import export_fhir

    with _store(db) as store:
        n_issues, n_tasks = export_fhir(store, fhir, as_of=_as_of(as_of))
    out.print(f"wrote {n_issues} DetectedIssue and {n_tasks} Task resources to {fhir}")


user_app = typer.Typer(no_args_is_help=True, help="Accounts of the served worklist.")
review_app.add_typer(user_app, name="user")


@user_app.command("add")
@_file_errors
def review_user_add(
    name: Annotated[str, typer.Argument(help="Login name: a-z, 0-9, . _ - (2-64).")],
    role: Annotated[str, typer.Option("--role", help="pharmacist, prescriber or admin.")],
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    prescriber_name: Annotated[str | None, typer.Option(
        "--prescriber-name", help="For a prescriber: the name their orders carry (their patients).")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input (else: asked).")] = False,
    db: DbOpt = None,
) -> None:
    """Add an account (its password hashed with argon2id)."""
    from cds.worklist.auth import AccountError, Accounts

    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else typer.prompt("Password (12+ characters)", hide_input=True,
                                  confirmation_prompt=True))
    with _store(db) as store:
        try:
            Accounts(store).add_user(name, role, password, display_name=display_name,
                                     prescriber_name=prescriber_name, by="cli")
        except AccountError as e:
            fail(str(e))
    out.print(f"added {name} ({role})")


@review_app.command("serve")
@_file_errors
def review_serve(
    panel: Annotated[Path, typer.Option("--panel", help="The output folder of `cds panel` to serve.")],
    db: DbOpt = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8090,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    behind_proxy: Annotated[bool, typer.Option(
        "--behind-proxy", help="TLS is terminated by a reverse proxy in front (cookies Secure).")] = False,
    oidc_issuer: Annotated[str | None, typer.Option(
        "--oidc-issuer", help="OpenID Connect issuer URL.")] = None,
    oidc_client_id: Annotated[str | None, typer.Option("--oidc-client-id")] = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="The URL users open (for the OpenID Connect callback).")] = None,
    pharmacy: Annotated[str | None, typer.Option("--pharmacy", help="Who the letters are from.")] = None,
    pack: PacksOpt = None,
) -> None:
    """Serve the pharmacists' worklist in the browser: the queue, patient pages with the
    decision forms, letters, the program dashboard (docs/review.md). Refuses a non-loopback
    address without TLS or --behind-proxy. The OpenID Connect client secret is read from
    CDS_OIDC_CLIENT_SECRET."""
    import os

    import uvicorn

    from cds.decisions.store import default_db
    from cds.worklist.app import WorklistSettings, create_app
    from cds.worklist.auth import OidcSettings
    from cds.worklist.security import check_bind

    tls = tls_cert is not None and tls_key is not None
    try:
        check_bind(host, tls, behind_proxy)
    except CdsError as e:
        fail(str(e))
    url = db or default_db(panel) or str(panel / "decisions.sqlite3")
    oidc = None
    if oidc_issuer:
        if not (oidc_client_id and os.environ.get("CDS_OIDC_CLIENT_SECRET")):
            fail("--oidc-issuer needs --oidc-client-id and CDS_OIDC_CLIENT_SECRET")
        base = public_url or f"{'https' if tls or behind_proxy else 'http'}://{host}:{port}"
        oidc = OidcSettings(oidc_issuer, oidc_client_id, os.environ["CDS_OIDC_CLIENT_SECRET"],
                            base.rstrip("/") + "/login/oidc/callback")
    try:
        app = create_app(WorklistSettings(db=url, panel=panel, secure_cookies=tls or behind_proxy,
                                          oidc=oidc, packs=pack, pharmacy=pharmacy))
    except CdsError as e:
        fail(str(e))
    out.print(f"worklist at {'https' if tls else 'http'}://{host}:{port}/ (log in with an "
              "account made by `cds review user add`)")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning",
                ssl_certfile=str(tls_cert) if tls else None, ssl_keyfile=str(tls_key) if tls else None,
                proxy_headers=behind_proxy, forwarded_allow_ips="*" if behind_proxy else None)


def main() -> None:  # pragma: no cover
    app()
