"""Errors that name the place: file, line, field, rule id. One message, never a traceback."""

from __future__ import annotations


class CdsError(Exception):
    """Base of every error `cds` raises on purpose."""


class InputError(CdsError, ValueError):
    """Bad patient input: says which file (or record), which field, and what is wrong."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None,
                 line: int | None = None, record: str | None = None) -> None:
        self.message = message
        self.file = file
        self.field = field
        self.line = line
        self.record = record
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file + (f":{self.line}" if self.line else ""))
        elif self.line:
            where.append(f"line {self.line}")
        if self.record:
            where.append(self.record)
        if self.field:
            where.append(f"field {self.field}")
        return (": ".join([", ".join(where), self.message]) if where else self.message)

    def at(self, *, file: str | None = None, line: int | None = None,
           record: str | None = None) -> InputError:
        """The same error with more of its place filled in."""
        return InputError(self.message, file=file or self.file, field=self.field,
                          line=line or self.line, record=record or self.record)


class PackError(CdsError):
    """A rule pack that does not load: file, line, rule id, field, and a suggestion."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 rule: str | None = None, field: str | None = None,
                 suggestion: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.rule = rule
        self.field = field
        self.suggestion = suggestion
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line else ""))
        if self.rule:
            parts.append(f"rule {self.rule}")
        if self.field:
            parts.append(f"field {self.field}")
        msg = ": ".join([", ".join(parts), self.message]) if parts else self.message
        if self.suggestion:
            msg += f" (did you mean {self.suggestion!r}?)"
        return msg


class PackErrors(CdsError):
    """Several pack errors found in one pass, so an author fixes them all at once."""

    def __init__(self, errors: list[PackError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
