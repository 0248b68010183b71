"""`cds pack ...`: the rule authors' tools (list, lint, test, diff)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cds.cli.common import RulesetsOpt, err, file_errors, out
from cds.errors import PackErrors

if TYPE_CHECKING:
    from cds.knowledge.store import Knowledge
    from cds.rules.loader import Pack

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
@file_errors
def pack_lint(path: Annotated[Path, typer.Argument(help="Pack folder.")]) -> None:
    """Validate a pack: schema, drug and class names, expressions; warn on weak spots."""
    from cds.authoring.lint import lint_warnings

    p, kb = load_pack_or_fail(path)
    warnings = lint_warnings(p, kb)
    for w in warnings:
        out.print(f"[yellow]warning[/] {w}", soft_wrap=True)
    out.print(f"[green]ok[/] {p.ref}: {len(p.rules)} rules, digest {p.digest}"
              + (f", {len(warnings)} warning(s)" if warnings else ""))


@pack_app.command("test")
@file_errors
def pack_test(path: Annotated[Path, typer.Argument(help="Pack folder.")]) -> None:
    """Run a pack's cases: expected versus got, and rules no case exercises."""
    from cds.authoring.casetest import test_pack

    p, kb = load_pack_or_fail(path)
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
@file_errors
def pack_diff(
    old: Annotated[Path, typer.Argument(help="Old pack folder.")],
    new: Annotated[Path, typer.Argument(help="New pack folder.")],
    cases: Annotated[bool, typer.Option(
        "--cases", help="Also run both packs' cases on both versions and show alert changes.")] = False,
) -> None:
    """Compare two versions of a pack: rules added, removed, changed; with --cases, alerts."""
    from cds.authoring.diff import diff_packs

    a, kb = load_pack_or_fail(old)
    b, _ = load_pack_or_fail(new)
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
