"""The `cds` command: one module per command group, each importing what it uses only when it
runs (`cds --help` and `cds check` stay fast).

Exit codes:
  0  done;
  1  findings that fail a check (`pack lint`, `pack test`, `review import` with rejects);
  2  bad input or a file that cannot be read or written (one message naming the file and the
     field, never a traceback);
  3  `check --fail-on SEVERITY`: an alert at or above that severity; `review decide
     --expect-version`: a decision taken since (a conflict);
  4  the output could not be written in full (a full disk, a closed pipe).
"""

from __future__ import annotations

import typer

from cds.cli.check import check
from cds.cli.explain import explain
from cds.cli.knowledge import knowledge_app
from cds.cli.pack import pack_app
from cds.cli.panel import panel
from cds.cli.review import review_app
from cds.cli.serve import serve
from cds.cli.synth import synth

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Medication-safety decision support: check patients against rule packs.")
app.add_typer(pack_app, name="pack")
app.add_typer(review_app, name="review")
app.add_typer(knowledge_app, name="knowledge")
app.command()(check)
app.command()(explain)
app.command()(serve)
app.command()(panel)
app.command()(synth)


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "main"]
