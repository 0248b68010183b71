"""What the commands share: the consoles, the common options, failing with one line, the
evaluation date, loading an engine, writing standard output in full, the decisions store.

Only light modules are imported here (typer, rich's console): every command module imports
this one, and `cds --help` imports every command module."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder

from cds.errors import CdsError, PackErrors
from cds.limits import MAX_MEDICATIONS

if TYPE_CHECKING:
    from cds.decisions.store import DecisionStore
    from cds.engine.evaluator import Engine
    from cds.patient import Patient

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
AuthorOpt = Annotated[str | None, typer.Option(
    "--author", help="Who decides (default: the login name).")]


#: A FILE argument of '-' is standard input (`cat bundle.json | cds check -`).
STDIN = "-"
STDIN_NAME = "<stdin>"


def input_name(file: Path) -> str:
    """What messages call an input: its path, or <stdin>."""
    return STDIN_NAME if str(file) == STDIN else str(file)


def read_patient_or_fail(file: Path) -> Patient:
    """The patient of a FHIR or native JSON file, or of standard input for '-'; an input
    error is one line naming it (exit 2)."""
    from cds.io.read import read_patient, read_patient_bytes

    try:
        if str(file) == STDIN:
            return read_patient_bytes(sys.stdin.buffer.read(), STDIN_NAME)
        return read_patient(file)
    except CdsError as e:
        fail(str(e))


# -- boolean flags shown as flags ----------------------------------------------------------------

def _flags_untyped(command: TyperCommand | TyperGroup, ctx: Any) -> None:
    """A flag takes no value: no `<bool>` after it in --help (typer shows one for every option
    in its rich help)."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class FlagCommand(TyperCommand):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_untyped(self, ctx)
        super().format_help(ctx, formatter)


class FlagGroup(TyperGroup):
    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_untyped(self, ctx)
        super().format_help(ctx, formatter)


def flags_as_flags(app: typer.Typer) -> None:
    """Every command and group of `app`, sub-apps included, shows its flags as flags: call
    once every command is registered (a test checks the help of every command)."""
    if isinstance(app.info.cls, DefaultPlaceholder) or app.info.cls in (None, TyperGroup):
        app.info.cls = FlagGroup
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = FlagCommand
    for group in app.registered_groups:
        if isinstance(group.cls, DefaultPlaceholder) or group.cls in (None, TyperGroup):
            group.cls = FlagGroup
        if group.typer_instance is not None:
            flags_as_flags(group.typer_instance)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def file_errors(command: Callable[P, R]) -> Callable[P, R]:
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
            if "sqlalchemy" in sys.modules:  # else the store was never opened
                from sqlalchemy.exc import SQLAlchemyError

                if isinstance(e, SQLAlchemyError):  # the decisions store failed under us
                    fail(f"decisions store: {type(e).__name__}: "
                         f"{str(getattr(e, 'orig', None) or e).splitlines()[0]}")
            raise
    return run


def as_of_date(value: str | None) -> date:
    """The evaluation date: the option's, else today (the clock is read here, once per run)."""
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--as-of: {value!r} is not a date (YYYY-MM-DD)")


def load_engine_or_fail(packs: list[str] | None, rulesets: list[Path] | None,
                        backend: str = "indexed", max_medications: int = MAX_MEDICATIONS) -> Engine:
    """The engine of the packs, from the compiled-engine cache when nothing it is built from
    changed (cds/engine/cache.py; CDS_CACHE_DIR=off turns it off)."""
    from cds.engine.cache import cached_engine

    try:
        return cached_engine(packs, roots=rulesets or (), backend=backend,  # type: ignore[arg-type]
                             max_medications=max_medications)
    except PackErrors as e:
        fail("rule packs failed to load:\n" + "\n".join(f"  {x}" for x in e.errors))


def emit(data: bytes) -> None:
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


def open_store(db: str | None) -> DecisionStore:
    from cds.decisions.store import DecisionStore, default_db

    url = db or default_db()
    if not url:
        fail("no decisions store: give --db (an SQLite file or a postgresql:// URL) or set "
             "CDS_DB")
    return DecisionStore(url)


def author_of(author: str | None) -> str:
    import getpass

    return author or getpass.getuser()


def json_bytes(doc: Any) -> bytes:
    import orjson

    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
