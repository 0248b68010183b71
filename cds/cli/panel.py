"""`cds panel`: review a whole panel in batch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cds.cli.common import (
    AsOfOpt,
    DbOpt,
    MaxMedsOpt,
    PacksOpt,
    RulesetsOpt,
    as_of_date,
    fail,
    file_errors,
)
from cds.errors import CdsError, PackErrors
from cds.limits import MAX_MEDICATIONS


@file_errors
def panel(
    input: Annotated[Path, typer.Argument(help="Bulk Data export folder (NDJSON) or CSV folder.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")],
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted run.")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local or dask.")] = "local",
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local worker processes.")] = None,
    pack: PacksOpt = None,
    rulesets: RulesetsOpt = None,
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
                  workers=workers, packs=pack, as_of=as_of_date(as_of), shards=shards, top_n=top,
                  quiet=quiet, max_medications=max_medications, db=db, fhir=fhir,
                  roots=rulesets)
    except PackErrors as e:
        fail("rule packs failed to load:\n" + "\n".join(f"  {x}" for x in e.errors))
    except CdsError as e:
        fail(str(e))
