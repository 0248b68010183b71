"""`cds knowledge ...`: what the knowledge base makes of a name or a code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape

from cds.cli.common import Format, RulesetsOpt, emit, err, fail, file_errors, out
from cds.errors import PackErrors

knowledge_app = typer.Typer(no_args_is_help=True, help=(
    "The knowledge base: how a drug name or code resolves (shipped data and site folders)."))


@knowledge_app.command("search")
@file_errors
def knowledge_search(
    text: Annotated[str, typer.Argument(help="A name (ingredient, salt, brand, site synonym), "
                                             "a class id, an RxNorm code or a product text.")],
    pack: Annotated[Path | None, typer.Option(
        "--pack", help="Pack folder whose site knowledge applies (its knowledge/ and the one "
                       "beside it).")] = None,
    rulesets: RulesetsOpt = None,
    format: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
) -> None:
    """How TEXT resolves: the ingredient, its classes, and where the data came from. Exit 1
    when nothing matches."""
    from cds.knowledge.search import near, search
    from cds.rules.overlay import knowledge_folders, pack_knowledge, site_knowledge
    from cds.rules.registry import rulesets_roots

    try:
        kb = (pack_knowledge(pack) if pack is not None
              else site_knowledge(knowledge_folders(rulesets_roots(rulesets or ()))))
    except PackErrors as e:
        fail("site knowledge failed to load:\n" + "\n".join(f"  {x}" for x in e.errors))
    hits = search(kb, text)
    if format is Format.json:
        emit(orjson.dumps({"query": text, "knowledge": kb.version, "digest": kb.digest,
                           "hits": [{k: v for k, v in h.__dict__.items() if k != "members"}
                                    for h in hits],
                           "near": [] if hits else near(kb, text)},
                          option=orjson.OPT_INDENT_2) + b"\n")
        raise typer.Exit(0 if hits else 1)
    if not hits:
        close = near(kb, text)
        err.print(escape(f"no ingredient, class, product or code matches {text!r}"
                         + (f"; near: {', '.join(close)}" if close else "")), soft_wrap=True)
        raise typer.Exit(1)
    for h in hits:
        origin = "site" if h.site else "shipped"
        out.print(f"[bold]{h.kind}[/] {escape(h.id)}  [dim](by {h.matched_by}; {origin})[/]",
                  soft_wrap=True)
        if h.detail:
            out.print(f"  {escape(h.detail)}", soft_wrap=True)
        if h.ingredients and h.kind != "class":
            out.print(f"  ingredient: {', '.join(h.ingredients)}", soft_wrap=True)
        elif h.ingredients:
            out.print(f"  members: {', '.join(h.ingredients)}", soft_wrap=True)
        out.print(f"  classes: {', '.join(h.classes) or 'none'}", soft_wrap=True)
        out.print(f"  source: {escape(h.source or 'not given')}"
                  + (f" [dim](status {h.status})[/]" if h.status else ""), soft_wrap=True)
