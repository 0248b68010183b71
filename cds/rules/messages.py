"""Schema errors in plain words: what a rule author wrote wrong and what to write instead.

pydantic says "Input should be a valid string" or "String should match pattern '^...$'";
an author needs 'version must be quoted SemVer like "1.1.0"'. `plain()` turns one pydantic
error into a sentence naming the field and, where a near name exists, a suggestion.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

#: What a field holding this pattern expects, said in words.
PATTERNS = {
    r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.\-]+)?$": 'quoted SemVer like "1.1.0"',
    r"^[a-z0-9][a-z0-9\-.]*$": "kebab-case like 'opioid-benzodiazepine' (lower-case letters, "
                               "digits, '-' and '.')",
    r"^[a-z0-9][a-z0-9\-]*$": "kebab-case like 'opioid-safety' (lower-case letters, digits "
                              "and '-')",
}

#: A pydantic error type -> what the value must be.
TYPES = {
    "string_type": "quoted text", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list ([a, b] or one '- item' a line)", "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)", "model_attributes_type": "a mapping (key: value)",
    "date_type": "a date like 2026-11-26", "date_parsing": "a date like 2026-11-26",
    "date_from_datetime_parsing": "a date like 2026-11-26",
    "date_from_datetime_inexact": "a date like 2026-11-26",
}

_BOUNDS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
           "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def _quoted(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


def near(name: object, candidates: list[str] | set[str] | tuple[str, ...]) -> str | None:
    """The one candidate close to `name`, if any (for "did you mean")."""
    if not isinstance(name, str):
        return None
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def plain(err: Mapping[str, Any], field: str, allowed: list[str] | None = None
          ) -> tuple[str, str | None]:
    """(message, suggestion) for one pydantic error at `field` (the dotted field path).
    `allowed`: the keys the mapping at the error's place accepts (for an unknown key)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    name = field.rsplit(".", 1)[-1].split("[", 1)[0] or field
    leaf = field.rsplit(".", 1)[-1] or field  # with its index: "rules[0]", "when[1]"
    if kind == "missing":
        return f"{leaf} is required", None
    if kind == "extra_forbidden":
        known = ", ".join(sorted(allowed)) if allowed else ""
        return (f"unknown field {leaf!r}" + (f" (allowed here: {known})" if known else ""),
                near(leaf, allowed or []))
    if kind == "union_tag_invalid":
        tags = _quoted(str(ctx.get("expected_tags", "")))
        return (f"unknown rule type {ctx.get('tag')!r}; type must be one of: {', '.join(tags)}",
                near(ctx.get("tag"), tags))
    if kind == "union_tag_not_found":
        return "a rule needs 'type:' (interaction, burden, mme, renal, ...)", None
    if kind in ("literal_error", "enum"):
        options = _quoted(str(ctx.get("expected", "")))
        return (f"{leaf} must be one of: {', '.join(options)} (got {_got(value)})",
                near(value, options))
    if kind == "string_pattern_mismatch" or (kind == "string_type" and name == "version"):
        words = PATTERNS.get(str(ctx.get("pattern")), f"match {ctx.get('pattern')}")
        if name == "version" or "SemVer" in words:
            words = PATTERNS[r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.\-]+)?$"]
        return f"{leaf} must be {words} (got {_got(value)})", None
    if kind in TYPES:
        return f"{leaf} must be {TYPES[kind]} (got {_got(value)})", None
    if kind == "string_too_long":
        n = len(value) if isinstance(value, str) else "more"
        return (f"{leaf} is {n} characters long; at most {ctx.get('max_length')} are allowed",
                None)
    if kind == "string_too_short":
        return f"{leaf} must not be empty", None
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return (f"{leaf} needs at least {least} item{'s' if least != 1 else ''}"
                f" (got {ctx.get('actual_length', 0)})"), None
    if kind == "too_long":
        return f"{leaf} has more than {ctx.get('max_length')} items", None
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"{leaf} must be {words} {ctx.get(key)} (got {_got(value)})", None
    if kind in ("value_error", "assertion_error"):
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, "), None
    return f"{leaf}: {err['msg']}", None
