"""Errors that name the place: file, line, record, rule id, field. One message, never a traceback.

Every error `cds` raises on purpose derives from `CdsError`; those that point at a place in an
input (a patient file, a pack, an expression) derive from `LocatedError`, which formats the
place the same way everywhere.
"""

from __future__ import annotations

from typing import Self


class CdsError(Exception):
    """Base of every error `cds` raises on purpose."""


class LocatedError(CdsError):
    """An error at a place: `file:line, record, rule R, field F: message (did you mean 'x'?)`."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 record: str | None = None, rule: str | None = None, field: str | None = None,
                 suggestion: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.record = record
        self.rule = rule
        self.field = field
        self.suggestion = suggestion
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file + (f":{self.line}" if self.line else ""))
        elif self.line:
            where.append(f"line {self.line}")
        if self.record:
            where.append(self.record)
        if self.rule:
            where.append(f"rule {self.rule}")
        if self.field:
            where.append(f"field {self.field}")
        msg = ": ".join([", ".join(where), self.message]) if where else self.message
        if self.suggestion:
            msg += f" (did you mean {self.suggestion!r}?)"
        return msg

    def at(self, *, file: str | None = None, line: int | None = None,
           record: str | None = None) -> Self:
        """The same error with more of its place filled in."""
        return type(self)(self.message, file=file or self.file, line=line or self.line,
                          record=record or self.record, rule=self.rule, field=self.field,
                          suggestion=self.suggestion)


class InputError(LocatedError, ValueError):
    """Bad patient input: says which file (or record), which field, and what is wrong."""


class PackError(LocatedError):
    """A rule pack that does not load: file, line, rule id, field, and a suggestion."""


class ExpressionError(LocatedError, ValueError):
    """A `when:` expression that does not compile: what is wrong and where in the text."""


class FieldError(CdsError, ValueError):
    """A schema check about one field of a model (a pack's `changelog`, a rule's `all`),
    raised inside a pydantic validator: the pack loader names that field and its line."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[type[FieldError], tuple[str, str]]:
        return type(self), (str(self), self.field)


class UsageError(CdsError, ValueError):
    """A library call with an argument it cannot act on (an unknown backend, say)."""


class TooManyMedications(InputError):
    """A patient with more medication records than the engine accepts: one evaluation's time
    and memory stay bounded (the service answers 413, `cds check` exits 2, the panel
    quarantines the patient with this reason)."""


class PackErrors(CdsError):
    """Several pack errors found in one pass, so an author fixes them all at once."""

    def __init__(self, errors: list[PackError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
