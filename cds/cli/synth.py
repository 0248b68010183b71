"""`cds synth`: a synthetic FHIR Bulk Data panel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cds.cli.common import as_of_date, file_errors, out


@file_errors
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
                anchor=as_of_date(anchor) if anchor else None, dirty=dirty, style=style)
    out.print(f"wrote {patients} patients to {out_dir}")
