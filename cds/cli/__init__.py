"""The `cds` command: one module per command group, each importing what it uses only when it
runs (`cds --help` and `cds check` stay fast).

`-` as a FILE reads standard input (`cat bundle.json | cds check -`); `cds --version` prints
the package and knowledge versions; `cds --install-completion` sets up shell completion.

Exit codes:
  0  done;
  1  findings that fail a check (`pack lint`, `pack test`, `pack diff --exit-code` with
     differences, `review import` with rejects, `knowledge search` without a match);
  2  bad input or a file that cannot be read or written (one message naming the file and the
     field, never a traceback);
  3  `check --fail-on SEVERITY`: an alert at or above that severity; `review decide
     --expect-version`: a decision taken since (a conflict);
  4  the output could not be written in full (a full disk, a closed pipe).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cds.cli.check import check
from cds.cli.common import flags_as_flags, out
from cds.cli.explain import explain
from cds.cli.knowledge import knowledge_app
from cds.cli.pack import pack_app
from cds.cli.panel import panel
from cds.cli.review import review_app
from cds.cli.serve import serve
from cds.cli.synth import synth

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="Medication-safety decision support: check patients against rule packs.")


def _knowledge_version() -> str:
    """The shipped knowledge's version (the `version:` of its ingredients file), read without
    loading the knowledge."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "knowledge" / "data" / "ingredients.yaml"
            ).read_text(encoding="utf-8")
    m = re.search(r"""^version:\s*["']?([^"'\s#]+)""", text, re.M)
    return m.group(1) if m else "unknown"


def _version(value: bool) -> None:
    if value:
        from cds import __version__

        out.print(f"cds {__version__} (knowledge {_knowledge_version()})", soft_wrap=True)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version,
        help="Print the version of cds and of its knowledge, and exit.")] = False,
) -> None:
    pass


app.add_typer(pack_app, name="pack")
app.add_typer(review_app, name="review")
app.add_typer(knowledge_app, name="knowledge")
app.command()(check)
app.command()(explain)
app.command()(serve)
app.command()(panel)
app.command()(synth)
flags_as_flags(app)  # last: after every command and group is registered


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "main"]
