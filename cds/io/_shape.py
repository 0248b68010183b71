"""Errors that name the field, for the readers of untyped JSON.

FHIR and native input arrive as untyped JSON; their shapes are checked by pydantic (see
fhir_shapes.py and the Patient model). These helpers turn what goes wrong into an `InputError`
that names the exact field, in words a pharmacist can act on, never a KeyError or TypeError
from deep inside a reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from cds.errors import InputError

P = ParamSpec("P")
R = TypeVar("R")

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?$", re.ASCII)


def kind_of(value: object) -> str:
    """JSON name of a value's type, for messages a non-programmer can read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_date(value: object, path: str) -> date:
    """FHIR date/dateTime -> date. Partial dates take the first day of their period.

    The date part of a dateTime is taken as written (local to its time zone): a clinical
    date is the day the clinician saw, not the UTC day.
    """
    if not isinstance(value, str):
        raise InputError(f"expected a date string, got {kind_of(value)}", field=path)
    if len(value) == 10 and value[4] == "-" and value[7] == "-" and value.isascii() \
            and value[:4].isdigit() and value[5:7].isdigit() and value[8:].isdigit():
        try:  # the common YYYY-MM-DD, read in C; an impossible day falls through to the message
            return date.fromisoformat(value)
        except ValueError:
            pass
    m = _DATE.match(value.strip())
    if m is None:
        raise InputError(f"not a FHIR date: {value!r}", field=path)
    try:
        return date(int(m[1]), int(m[2] or 1), int(m[3] or 1))
    except ValueError as e:
        raise InputError(f"not a valid date: {value!r} ({e})", field=path) from None


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def loc_path(loc: tuple[int | str, ...]) -> str:
    """Pydantic error location -> `medications[2].dose`."""
    path = ""
    for part in loc:
        path = join(path, part)
    return path


#: pydantic error types -> wording a non-programmer can read (the value's JSON kind appended).
_EXPECTED = {
    "string_type": "expected a string", "float_type": "expected a number",
    "int_type": "expected a number", "bool_type": "expected true or false",
    "list_type": "expected an array", "dict_type": "expected an object",
    "model_type": "expected an object", "typed_dict_type": "expected an object",
}


def _message(error: Any) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return f"number out of range: {value}"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {kind_of(value)}"
    if kind == "finite_number":
        return f"expected a finite number, got {value}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']:g}, got {value}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']:g}, got {value}"
    if kind == "missing":
        return "is required"
    return str(error["msg"]).removeprefix("Value error, ")


def validation_error(e: ValidationError, prefix: str = "") -> InputError:
    """One InputError from a ValidationError: the first failing field, and how many more."""
    errors = e.errors(include_url=False)
    first = errors[0]
    field = loc_path(tuple(first["loc"]))
    if prefix:
        field = f"{prefix}.{field}" if field and not field.startswith("[") else prefix + field
    msg = _message(first)
    if len(errors) > 1:
        n = len(errors) - 1
        msg += f" (and {n} more error{'s' if n > 1 else ''})"
    return InputError(msg, field=field or None)


def guarded(where: Callable[..., str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn any stray exception of a resource reader into an InputError naming the resource.

    The shapes are checked first; this is the net under the readers, so a shape nobody
    thought of still comes out as an InputError, never a KeyError or TypeError.
    """

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except InputError:
                raise
            except ValidationError as e:
                raise validation_error(e, where(*args, **kwargs)) from None
            except Exception as e:  # noqa: BLE001 - the point is to catch everything
                raise InputError(f"unexpected shape ({type(e).__name__}: {e})",
                                 field=where(*args, **kwargs)) from None
        return run

    return deco
