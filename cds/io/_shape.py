"""Path-aware access to parsed JSON.

FHIR and native input arrive as untyped JSON. Reading it through `Node` means every wrong
shape (a string where an array belongs, a number as text, an impossible date) becomes an
`InputError` that names the exact field, instead of a KeyError or TypeError from deep inside
the reader.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from cds.errors import InputError

P = ParamSpec("P")
R = TypeVar("R")

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?$")


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


class Node:
    """A JSON object and the path it was found at. JSON null counts as absent.

    The path string is built only when something asks for it (an error message): readers
    walk hundreds of fields per patient and almost never fail.
    """

    __slots__ = ("_parent", "_path", "_steps", "data")

    def __init__(self, data: object, path: str = "", *, parent: Node | None = None,
                 steps: tuple[str | int, ...] = ()) -> None:
        self._parent = parent
        self._steps = steps
        self._path: str | None = path if parent is None else None
        if not isinstance(data, dict):
            raise InputError(f"expected an object, got {kind_of(data)}", field=self.path)
        self.data: dict[str, Any] = data

    @property
    def path(self) -> str:
        if self._path is None:
            path = self._parent.path if self._parent is not None else ""
            for step in self._steps:
                path = join(path, step)
            self._path = path
        return self._path

    def at(self, key: str | int) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def obj(self, key: str) -> Node | None:
        v = self.data.get(key)
        return None if v is None else Node(v, parent=self, steps=(key,))

    def objs(self, key: str) -> list[Node]:
        return [Node(v, parent=self, steps=(key, i)) for i, v in enumerate(self._array(key))]

    def first(self, key: str) -> Node | None:
        items = self.objs(key)
        return items[0] if items else None

    def string(self, key: str) -> str | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise InputError(f"expected a string, got {kind_of(v)}", field=self.at(key))
        return v.strip() or None

    def strings(self, key: str) -> list[str]:
        out = []
        for i, v in enumerate(self._array(key)):
            if not isinstance(v, str):
                raise InputError(f"expected a string, got {kind_of(v)}",
                                 field=join(self.at(key), i))
            out.append(v)
        return out

    def number(self, key: str, *, minimum: float | None = None,
               positive: bool = False) -> float | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(f"expected a number, got {kind_of(v)}", field=self.at(key))
        try:
            x = float(v)
        except OverflowError:
            raise InputError(f"number out of range: {v}", field=self.at(key)) from None
        if not math.isfinite(x):
            raise InputError(f"expected a finite number, got {v}", field=self.at(key))
        if positive and x <= 0:
            raise InputError(f"must be greater than 0, got {v}", field=self.at(key))
        if minimum is not None and x < minimum:
            raise InputError(f"must be at least {minimum:g}, got {v}", field=self.at(key))
        return x

    def integer(self, key: str, *, minimum: int = 1) -> int | None:
        x = self.number(key, minimum=minimum)
        if x is None:
            return None
        if not x.is_integer():
            raise InputError(f"expected a whole number, got {x:g}", field=self.at(key))
        return int(x)

    def boolean(self, key: str) -> bool | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not isinstance(v, bool):
            raise InputError(f"expected true or false, got {kind_of(v)}", field=self.at(key))
        return v

    def date(self, key: str) -> date | None:
        v = self.data.get(key)
        if v is None:
            return None
        try:
            return parse_date(v, "")
        except InputError as e:  # the path is built only now, for the message
            raise InputError(e.message, field=self.at(key)) from None

    def _array(self, key: str) -> list[Any]:
        v = self.data.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise InputError(f"expected an array, got {kind_of(v)}", field=self.at(key))
        return v


def loc_path(loc: tuple[int | str, ...]) -> str:
    """Pydantic error location -> `medications[2].dose`."""
    path = ""
    for part in loc:
        path = join(path, part)
    return path


def first_validation_error(e: ValidationError, prefix: str = "") -> InputError:
    """One InputError from a ValidationError: the first failing field, and how many more."""
    errors = e.errors(include_url=False)
    first = errors[0]
    field = loc_path(tuple(first["loc"]))
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    msg = str(first["msg"])
    if len(errors) > 1:
        n = len(errors) - 1
        msg += f" (and {n} more error{'s' if n > 1 else ''})"
    return InputError(msg, field=field or None)


def guarded(where: Callable[..., str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn any stray exception of a resource reader into an InputError naming the resource.

    The readers check shapes as they go; this is the net under them, so a shape nobody
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
                raise first_validation_error(e, where(*args, **kwargs)) from None
            except Exception as e:  # noqa: BLE001 - the point is to catch everything
                raise InputError(f"unexpected shape ({type(e).__name__}: {e})",
                                 field=where(*args, **kwargs)) from None
        return run

    return deco
