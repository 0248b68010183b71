"""`cds pack ...`: the rule authors' tools (list, lint, test, diff)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cds.cli.common import RulesetsOpt, emit, err, file_errors, out
from cds.errors import PackErrors

if TYPE_CHECKING:
    from cds.authoring.diff import PackDiff
    from cds.knowledge.store import Knowledge
    from cds.rules.loader import Pack

class TestFormat(StrEnum):
    text = "text"
    junit = "junit"


class DiffFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


pack_app = typer.Typer(no_args_is_help=True, help="Rule authors' tools: list, lint, test packs.")


@pack_app.command("list")
@file_errors
def pack_list(rulesets: RulesetsOpt = None) -> None:
    """Installed packs and versions."""
    from rich.table import Table

    from cds.rules.registry import discover, rulesets_roots

    t = Table()
    for col in ("pack", "version", "title", "path"):
        t.add_column(col)
    for p in discover(rulesets_roots(rulesets or ())):
        t.add_row(p.id, p.version, p.title, str(p.path))
    out.print(t)


def load_pack_or_fail(path: Path) -> tuple[Pack, Knowledge]:
    """The pack, loaded with the knowledge it is checked with: the shipped data and the site
    folders that apply to it (its own `knowledge/`, and one beside it)."""
    from cds.rules.loader import load_pack
    from cds.rules.overlay import pack_knowledge

    try:
        kb = pack_knowledge(path)
        return load_pack(path, kb), kb
    except PackErrors as e:
        for x in e.errors:
            err.print(f"[red]error[/] {escape(str(x))}", soft_wrap=True)
        err.print(f"{len(e.errors)} error(s)")
        raise typer.Exit(1) from None


@pack_app.command("lint")
@file_errors
def pack_lint(path: Annotated[Path, typer.Argument(help="Pack folder.")]) -> None:
    """Validate a pack: schema, drug and class names, expressions, placeholders, its cases
    (schema, rule ids, drug names); warn on weak spots."""
    from cds.authoring.lint import check_cases, lint_warnings, placeholder_errors

    p, kb = load_pack_or_fail(path)
    case_errors, case_warnings = check_cases(p, kb)
    errors = placeholder_errors(p) + case_errors
    warnings = lint_warnings(p, kb) + [str(w) for w in case_warnings]
    for w in warnings:
        out.print(f"[yellow]warning[/] {escape(w)}", soft_wrap=True)
    if errors:
        for x in errors:
            err.print(f"[red]error[/] {escape(str(x))}", soft_wrap=True)
        err.print(f"{len(errors)} error(s)")
        raise typer.Exit(1)
    out.print(f"[green]ok[/] {p.ref}: {len(p.rules)} rules, digest {p.digest}"
              + (f", {len(warnings)} warning(s)" if warnings else ""))


@pack_app.command("test")
@file_errors
def pack_test(
    path: Annotated[Path, typer.Argument(help="Pack folder.")],
    format: Annotated[TestFormat, typer.Option(
        "--format", help="text, or junit: JUnit XML on standard output for CI systems.")
    ] = TestFormat.text,
) -> None:
    """Run a pack's cases: expected versus got, and rules no case exercises."""
    from cds.authoring.casetest import junit_xml, test_pack

    p, kb = load_pack_or_fail(path)
    try:
        report = test_pack(p, kb)
    except PackErrors as e:
        for x in e.errors:
            err.print(f"[red]error[/] {escape(str(x))}", soft_wrap=True)
        raise typer.Exit(1) from None
    if format is TestFormat.junit:
        emit(junit_xml(report).encode())
        raise typer.Exit(0 if report.ok else 1)
    for o in report.outcomes:
        where = f"{o.file}:{o.line}" if o.line else o.file
        if o.ok:
            out.print(f"[green]pass[/] {escape(o.name)}")
        else:
            out.print(f"[red]FAIL[/] {escape(o.name)} ({escape(where)})")
            for f in o.failures:
                out.print(f"     {escape(f)}")
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
@file_errors
def pack_diff(
    old: Annotated[Path, typer.Argument(help="Old pack folder.")],
    new: Annotated[Path, typer.Argument(help="New pack folder.")],
    cases: Annotated[bool, typer.Option(
        "--cases", help="Also run both packs' cases on both versions and show alert changes.")] = False,
    format: Annotated[DiffFormat, typer.Option(
        "--format", help="text, json (for scripts) or markdown (a pull request comment).")
    ] = DiffFormat.text,
    exit_code: Annotated[bool, typer.Option(
        "--exit-code", help="Exit 1 when the versions differ (as git diff --exit-code).")] = False,
) -> None:
    """Compare two versions of a pack: rules added, removed, changed; with --cases, alerts."""
    from cds.authoring.diff import as_json, as_markdown, case_changes, diff_packs

    a, kb = load_pack_or_fail(old)
    b, _ = load_pack_or_fail(new)
    d = diff_packs(a, b)
    if cases:
        d.cases = case_changes(a, b, kb)
    if format is DiffFormat.json:
        emit(as_json(d).encode())
    elif format is DiffFormat.markdown:
        emit(as_markdown(d).encode())
    else:
        _print_diff(d)
    if exit_code and not d.empty:
        raise typer.Exit(1)


def _print_diff(d: PackDiff) -> None:
    out.print(f"[bold]{d.old} -> {d.new}[/]")
    for k, x, y in d.meta:
        out.print(escape(f"  pack {k}: {x!r} -> {y!r}"))
    for rid in d.added:
        out.print(f"  [green]+ {rid}[/]")
    for rid in d.removed:
        out.print(f"  [red]- {rid}[/]")
    for rid, changes in d.changed.items():
        out.print(f"  [yellow]~ {rid}[/]")
        for k, x, y in changes:
            out.print(escape(f"      {k}: {x!r} -> {y!r}"))
    if not (d.meta or d.added or d.removed or d.changed):
        out.print("  no rule changes")
    for c in d.cases:
        lost = [f"[red]-{r}[/]" for r in c.lost]
        gained = [f"[green]+{r}[/]" for r in c.gained]
        out.print(f"  case {escape(repr(c.name))}: " + ", ".join(lost + gained))
